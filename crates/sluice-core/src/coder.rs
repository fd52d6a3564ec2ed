//! Coders: how element types become bytes and back.
//!
//! Every type that implements serde's `Serialize` and `DeserializeOwned` has a coder that
//! writes postcard's compact binary format (varint integers, length-prefixed strings). A
//! type that is not serde-capable implements [`Coder`] by hand. A type with neither cannot
//! be put in a `PCollection`: the bound is checked by the compiler.
//!
//! Keys are grouped by their encoded bytes, so a key type's coder must be deterministic:
//! equal keys must encode to equal bytes.
//!
//! ```
//! use sluice_core::{Coder, CoderError};
//!
//! /// A type that is not serde-capable, with a hand-written coder.
//! #[derive(Clone, Debug, PartialEq)]
//! struct Celsius(f32);
//!
//! impl Coder for Celsius {
//!     fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
//!         out.extend_from_slice(&self.0.to_le_bytes());
//!         Ok(())
//!     }
//!     fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
//!         let (head, rest) = input.split_at_checked(4).ok_or_else(|| CoderError::truncated("Celsius"))?;
//!         *input = rest;
//!         Ok(Celsius(f32::from_le_bytes(head.try_into().unwrap())))
//!     }
//!     fn is_deterministic() -> bool { false } // -0.0 and 0.0 are equal but encode differently
//! }
//!
//! let mut bytes = vec![];
//! Celsius(21.5).encode_to(&mut bytes).unwrap();
//! assert_eq!(Celsius::decode_from(&mut &bytes[..]).unwrap(), Celsius(21.5));
//! ```

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An element could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} a value of type {type_name}: {reason}")]
pub struct CoderError {
    /// "encode" or "decode".
    pub action: &'static str,
    /// The Rust type involved.
    pub type_name: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl CoderError {
    /// The input ended before a whole value of `type_name` was read.
    pub fn truncated(type_name: &'static str) -> Self {
        CoderError {
            action: "decode",
            type_name,
            reason: "the input ended inside the value".into(),
        }
    }
}

/// How a type's values are written as bytes and read back.
///
/// Implemented for every serde type; implement it by hand for other types.
pub trait Coder: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError>;

    /// Reads one value from the front of `input`, advancing `input` past it.
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError>;

    /// Whether equal values always have equal encodings, as grouping by key requires.
    fn is_deterministic() -> bool {
        true
    }
}

impl<T: Serialize + DeserializeOwned> Coder for T {
    #[inline]
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        // `to_extend` appends to the buffer in place: no intermediate allocation.
        let buf = std::mem::take(out);
        match postcard::to_extend(self, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(CoderError {
                action: "encode",
                type_name: std::any::type_name::<T>(),
                reason: e.to_string(),
            }),
        }
    }

    #[inline]
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        match postcard::take_from_bytes::<T>(input) {
            Ok((value, rest)) => {
                *input = rest;
                Ok(value)
            }
            Err(e) => Err(CoderError {
                action: "decode",
                type_name: std::any::type_name::<T>(),
                reason: e.to_string(),
            }),
        }
    }
}

/// A type that can be an element of a `PCollection`: it has a coder, can be cloned (for
/// fan-out to several consumers), printed in error reports, and moved between threads.
pub trait Element: Coder + Clone + Debug + Send + 'static {}

impl<T: Coder + Clone + Debug + Send + 'static> Element for T {}

/// Encodes `value` into a fresh buffer.
pub fn encode_to_vec<T: Coder>(value: &T) -> Result<Vec<u8>, CoderError> {
    let mut out = Vec::new();
    value.encode_to(&mut out)?;
    Ok(out)
}

/// Decodes one value that must fill `bytes` exactly.
pub fn decode_exact<T: Coder>(bytes: &[u8]) -> Result<T, CoderError> {
    let mut input = bytes;
    let value = T::decode_from(&mut input)?;
    if input.is_empty() {
        Ok(value)
    } else {
        Err(CoderError {
            action: "decode",
            type_name: std::any::type_name::<T>(),
            reason: format!("{} bytes left over after the value", input.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T: Coder + PartialEq + Debug>(value: T) {
        let bytes = encode_to_vec(&value).unwrap();
        assert_eq!(decode_exact::<T>(&bytes).unwrap(), value);
    }

    proptest! {
        #[test]
        fn strings_round_trip(s in ".*") { round_trip(s); }

        #[test]
        fn tuples_round_trip(k in ".{0,20}", v in any::<i64>(), f in any::<u32>()) {
            round_trip((k, v, f));
        }

        #[test]
        fn vectors_round_trip(v in proptest::collection::vec(any::<u64>(), 0..50)) {
            round_trip(v);
        }

        #[test]
        fn concatenated_values_decode_in_order(a in ".{0,10}", b in any::<u64>()) {
            let mut bytes = vec![];
            a.encode_to(&mut bytes).unwrap();
            b.encode_to(&mut bytes).unwrap();
            let mut input = &bytes[..];
            prop_assert_eq!(String::decode_from(&mut input).unwrap(), a);
            prop_assert_eq!(u64::decode_from(&mut input).unwrap(), b);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn equal_keys_encode_equally(s in ".{0,30}") {
            prop_assert_eq!(encode_to_vec(&s).unwrap(), encode_to_vec(&s.clone()).unwrap());
        }
    }

    #[test]
    fn truncated_input_is_an_error_naming_the_type() {
        let bytes = encode_to_vec(&"hello".to_string()).unwrap();
        let err = decode_exact::<String>(&bytes[..3]).unwrap_err();
        assert!(err.to_string().contains("String"), "{err}");
        let err = decode_exact::<u8>(&[1, 2]).unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
    }
}
