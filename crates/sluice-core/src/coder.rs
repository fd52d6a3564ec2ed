//! Coders: how element types become bytes and back.
//!
//! Standard types have coders built in — integers (varint; signed ones zigzag), floats,
//! `bool`, `char`, `String`, `()`, and `Vec`, `Option`, `Result`, tuples, arrays and maps
//! of types that have coders — so `(K, V)`, `(K, Vec<V>)` or `Option<T>` have a coder
//! whenever their parts do. A serde type gets a coder by opting in with one line,
//! [`serde_coder!`](crate::serde_coder) (postcard's compact binary format); any other
//! type implements [`Coder`] by hand. A type with no coder cannot be put in a
//! `PCollection`: the compiler rejects it.
//!
//! Keys are grouped by their encoded bytes, so a key type's coder must be deterministic:
//! equal keys must encode to equal bytes. Floats and hash maps are not.
//!
//! ```
//! use sluice_core::{Coder, CoderError};
//!
//! /// A type with a hand-written coder.
//! #[derive(Clone, Debug, PartialEq)]
//! struct Celsius(f32);
//!
//! impl Coder for Celsius {
//!     fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
//!         self.0.encode_to(out)
//!     }
//!     fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
//!         Ok(Celsius(f32::decode_from(input)?))
//!     }
//!     fn is_deterministic() -> bool { false } // -0.0 and 0.0 are equal but encode differently
//! }
//!
//! /// A serde type, opted in.
//! #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Reading { sensor: String, value: Celsius2 }
//! #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Celsius2(i32);
//! sluice_core::serde_coder!(Reading);
//!
//! let mut bytes = vec![];
//! (Celsius(21.5), Reading { sensor: "a".into(), value: Celsius2(3) }).encode_to(&mut bytes).unwrap();
//! let (c, r) = <(Celsius, Reading)>::decode_from(&mut &bytes[..]).unwrap();
//! assert_eq!((c, r.sensor), (Celsius(21.5), "a".to_string()));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

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
        CoderError::decode(type_name, "the input ended inside the value")
    }

    /// Decoding a `type_name` failed.
    pub fn decode(type_name: &'static str, reason: impl Into<String>) -> Self {
        CoderError {
            action: "decode",
            type_name,
            reason: reason.into(),
        }
    }
}

/// How a type's values are written as bytes and read back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no coder, so it cannot be an element of a PCollection",
    label = "no coder for `{Self}`",
    note = "for a serde type, add `sluice::serde_coder!({Self});`; otherwise implement `sluice::Coder` for it"
)]
pub trait Coder: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError>;

    /// Reads one value from the front of `input`, advancing `input` past exactly the bytes
    /// that `encode_to` wrote for it.
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError>;

    /// Whether equal values always have equal encodings, as grouping by key requires.
    fn is_deterministic() -> bool {
        true
    }
}

/// Opts a serde type into a coder: postcard's compact binary format. Usually written
/// with [`serde_coder!`](crate::serde_coder). Serde coders are assumed deterministic;
/// do not use one for a key type containing floats or hash maps.
pub trait SerdeCoder: Serialize + DeserializeOwned {}

impl<T: SerdeCoder> Coder for T {
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
            Err(e) => Err(CoderError::decode(
                std::any::type_name::<T>(),
                e.to_string(),
            )),
        }
    }
}

/// Gives serde types a coder: `serde_coder!(Bid, Person, Auction);`.
#[macro_export]
macro_rules! serde_coder {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::coder::SerdeCoder for $t {})+
    };
}

/// A type that can be an element of a `PCollection`: it has a coder, can be cloned (for
/// fan-out to several consumers), printed in error reports, and moved between threads.
pub trait Element: Coder + Clone + Debug + Send + 'static {}

impl<T: Coder + Clone + Debug + Send + 'static> Element for T {}

#[inline]
fn write_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn read_varint(
    input: &mut &[u8],
    type_name: &'static str,
    max_bits: u32,
) -> Result<u128, CoderError> {
    let mut v = 0u128;
    for (i, &b) in input.iter().enumerate() {
        let shift = 7 * i as u32;
        if shift >= max_bits + 7 {
            break;
        }
        v |= ((b & 0x7f) as u128) << shift;
        if b < 0x80 {
            *input = &input[i + 1..];
            if max_bits < 128 && v >> max_bits != 0 {
                return Err(CoderError::decode(type_name, "the value is out of range"));
            }
            return Ok(v);
        }
    }
    Err(CoderError::truncated(type_name))
}

#[inline]
fn take<'a>(
    input: &mut &'a [u8],
    n: usize,
    type_name: &'static str,
) -> Result<&'a [u8], CoderError> {
    let (head, rest) = input
        .split_at_checked(n)
        .ok_or_else(|| CoderError::truncated(type_name))?;
    *input = rest;
    Ok(head)
}

/// Reads a length prefix, rejecting lengths the remaining input cannot hold (each item
/// takes at least `min_item_bytes`), so corrupt input cannot cause a huge allocation.
fn read_len(
    input: &mut &[u8],
    type_name: &'static str,
    min_item_bytes: usize,
) -> Result<usize, CoderError> {
    let n = read_varint(input, type_name, 64)? as usize;
    if min_item_bytes > 0 && n > input.len() / min_item_bytes {
        return Err(CoderError::truncated(type_name));
    }
    Ok(n)
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Coder for $t {
            #[inline]
            fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
                write_varint(out, *self as u128);
                Ok(())
            }
            #[inline]
            fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
                Ok(read_varint(input, stringify!($t), <$t>::BITS)? as $t)
            }
        }
    )*};
}
unsigned!(u16, u32, u64, u128, usize);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Coder for $t {
            #[inline]
            fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
                let zigzag = ((*self << 1) ^ (*self >> (<$t>::BITS - 1))) as $u;
                write_varint(out, zigzag as u128);
                Ok(())
            }
            #[inline]
            fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
                let z = read_varint(input, stringify!($t), <$t>::BITS)? as $u;
                Ok(((z >> 1) as $t) ^ -((z & 1) as $t))
            }
        }
    )*};
}
signed!(i16 => u16, i32 => u32, i64 => u64, i128 => u128, isize => usize);

impl Coder for u8 {
    #[inline]
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        out.push(*self);
        Ok(())
    }
    #[inline]
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(take(input, 1, "u8")?[0])
    }
}

impl Coder for i8 {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        out.push(*self as u8);
        Ok(())
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(take(input, 1, "i8")?[0] as i8)
    }
}

macro_rules! float {
    ($($t:ty),*) => {$(
        impl Coder for $t {
            #[inline]
            fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
                out.extend_from_slice(&self.to_le_bytes());
                Ok(())
            }
            #[inline]
            fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
                let bytes = take(input, std::mem::size_of::<$t>(), stringify!($t))?;
                let mut array = [0u8; std::mem::size_of::<$t>()];
                array.copy_from_slice(bytes);
                Ok(<$t>::from_le_bytes(array))
            }
            fn is_deterministic() -> bool {
                // 0.0 == -0.0 but their bytes differ; NaN != NaN though its bytes match.
                false
            }
        }
    )*};
}
float!(f32, f64);

impl Coder for bool {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        out.push(*self as u8);
        Ok(())
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        match take(input, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CoderError::decode(
                "bool",
                format!("byte {b} is neither 0 nor 1"),
            )),
        }
    }
}

impl Coder for char {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, *self as u128);
        Ok(())
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let v = read_varint(input, "char", 32)? as u32;
        char::from_u32(v).ok_or_else(|| {
            CoderError::decode("char", format!("{v:#x} is not a Unicode scalar value"))
        })
    }
}

impl Coder for String {
    #[inline]
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }
    #[inline]
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let n = read_len(input, "String", 1)?;
        let bytes = take(input, n, "String")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| CoderError::decode("String", e.to_string()))
    }
}

impl Coder for () {
    #[inline]
    fn encode_to(&self, _out: &mut Vec<u8>) -> Result<(), CoderError> {
        Ok(())
    }
    #[inline]
    fn decode_from(_input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(())
    }
}

impl<T: Coder> Coder for Vec<T> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        self.iter().try_for_each(|v| v.encode_to(out))
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        // Zero-sized encodings (`()`) make any count plausible; cap the preallocation instead.
        let n = read_len(input, "Vec", 0)?;
        let mut v = Vec::with_capacity(n.min(input.len().max(16)));
        for _ in 0..n {
            v.push(T::decode_from(input)?);
        }
        Ok(v)
    }
    fn is_deterministic() -> bool {
        T::is_deterministic()
    }
}

impl<T: Coder> Coder for Option<T> {
    #[inline]
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        match self {
            None => {
                out.push(0);
                Ok(())
            }
            Some(v) => {
                out.push(1);
                v.encode_to(out)
            }
        }
    }
    #[inline]
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        match take(input, 1, "Option")?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(input)?)),
            b => Err(CoderError::decode(
                "Option",
                format!("tag {b} is neither 0 nor 1"),
            )),
        }
    }
    fn is_deterministic() -> bool {
        T::is_deterministic()
    }
}

impl<T: Coder, E: Coder> Coder for Result<T, E> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        match self {
            Ok(v) => {
                out.push(0);
                v.encode_to(out)
            }
            Err(e) => {
                out.push(1);
                e.encode_to(out)
            }
        }
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        match take(input, 1, "Result")?[0] {
            0 => Ok(Ok(T::decode_from(input)?)),
            1 => Ok(Err(E::decode_from(input)?)),
            b => Err(CoderError::decode(
                "Result",
                format!("tag {b} is neither 0 nor 1"),
            )),
        }
    }
    fn is_deterministic() -> bool {
        T::is_deterministic() && E::is_deterministic()
    }
}

impl<T: Coder, const N: usize> Coder for [T; N] {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.iter().try_for_each(|v| v.encode_to(out))
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let mut items = Vec::with_capacity(N);
        for _ in 0..N {
            items.push(T::decode_from(input)?);
        }
        items
            .try_into()
            .map_err(|_| CoderError::decode("array", "wrong number of items"))
    }
    fn is_deterministic() -> bool {
        T::is_deterministic()
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Coder),+> Coder for ($($name,)+) {
            #[inline]
            #[allow(non_snake_case)]
            fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
                let ($($name,)+) = self;
                $($name.encode_to(out)?;)+
                Ok(())
            }
            #[inline]
            fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
                Ok(($($name::decode_from(input)?,)+))
            }
            fn is_deterministic() -> bool {
                true $(&& $name::is_deterministic())+
            }
        }
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);

impl<K: Coder + Ord, V: Coder> Coder for BTreeMap<K, V> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        self.iter().try_for_each(|(k, v)| {
            k.encode_to(out)?;
            v.encode_to(out)
        })
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let n = read_len(input, "BTreeMap", 0)?;
        (0..n)
            .map(|_| Ok((K::decode_from(input)?, V::decode_from(input)?)))
            .collect()
    }
    fn is_deterministic() -> bool {
        K::is_deterministic() && V::is_deterministic()
    }
}

impl<T: Coder + Ord> Coder for BTreeSet<T> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        self.iter().try_for_each(|v| v.encode_to(out))
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let n = read_len(input, "BTreeSet", 0)?;
        (0..n).map(|_| T::decode_from(input)).collect()
    }
    fn is_deterministic() -> bool {
        T::is_deterministic()
    }
}

impl<K: Coder + Eq + Hash, V: Coder> Coder for HashMap<K, V> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        self.iter().try_for_each(|(k, v)| {
            k.encode_to(out)?;
            v.encode_to(out)
        })
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let n = read_len(input, "HashMap", 0)?;
        (0..n)
            .map(|_| Ok((K::decode_from(input)?, V::decode_from(input)?)))
            .collect()
    }
    fn is_deterministic() -> bool {
        // Iteration order differs between equal maps.
        false
    }
}

impl<T: Coder + Eq + Hash> Coder for HashSet<T> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        write_varint(out, self.len() as u128);
        self.iter().try_for_each(|v| v.encode_to(out))
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let n = read_len(input, "HashSet", 0)?;
        (0..n).map(|_| T::decode_from(input)).collect()
    }
    fn is_deterministic() -> bool {
        false
    }
}

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
        Err(CoderError::decode(
            std::any::type_name::<T>(),
            format!("{} bytes left over after the value", input.len()),
        ))
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

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Bid {
        auction: u64,
        bidder: String,
        price: i64,
    }
    crate::serde_coder!(Bid);

    proptest! {
        #[test]
        fn integers_round_trip(a in any::<u64>(), b in any::<i64>(), c in any::<i32>(), d in any::<u128>(), e in any::<i8>(), f in any::<u16>()) {
            round_trip((a, b, c, d, e, f));
        }

        #[test]
        fn floats_round_trip_bit_for_bit(x in any::<f64>(), y in any::<f32>()) {
            let bytes = encode_to_vec(&(x, y)).unwrap();
            let (x2, y2) = decode_exact::<(f64, f32)>(&bytes).unwrap();
            prop_assert_eq!(x.to_bits(), x2.to_bits());
            prop_assert_eq!(y.to_bits(), y2.to_bits());
        }

        #[test]
        fn strings_and_chars_round_trip(s in ".*", c in any::<char>()) { round_trip((s, c)); }

        #[test]
        fn containers_round_trip(
            v in proptest::collection::vec(any::<u64>(), 0..50),
            o in proptest::option::of(".{0,5}"),
            m in proptest::collection::btree_map(".{0,4}", any::<i16>(), 0..10),
            a in any::<[u8; 3]>(),
            r in any::<Result<bool, u8>>(),
        ) {
            round_trip((v, o, m, a, r, ()));
        }

        #[test]
        fn serde_types_round_trip(auction in any::<u64>(), bidder in ".{0,10}", price in any::<i64>()) {
            round_trip(vec![(Bid { auction, bidder, price }, 1u8)]);
        }

        #[test]
        fn concatenated_values_decode_in_order(a in ".{0,10}", b in any::<u64>(), c in proptest::option::of(any::<i32>())) {
            let mut bytes = vec![];
            a.encode_to(&mut bytes).unwrap();
            b.encode_to(&mut bytes).unwrap();
            c.encode_to(&mut bytes).unwrap();
            let mut input = &bytes[..];
            prop_assert_eq!(String::decode_from(&mut input).unwrap(), a);
            prop_assert_eq!(u64::decode_from(&mut input).unwrap(), b);
            prop_assert_eq!(Option::<i32>::decode_from(&mut input).unwrap(), c);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn equal_keys_built_apart_encode_equally(s in ".{0,30}", n in any::<i64>()) {
            // The same key, built once as given and once rebuilt char by char, with its
            // map entries inserted in opposite orders.
            let rebuilt: String = s.chars().collect();
            let forward: BTreeMap<i64, String> = [(n, s.clone()), (n.wrapping_add(1), String::new())].into();
            let backward: BTreeMap<i64, String> = [(n.wrapping_add(1), String::new()), (n, rebuilt.clone())].into();
            prop_assert_eq!(encode_to_vec(&(s, n, forward)).unwrap(), encode_to_vec(&(rebuilt, n, backward)).unwrap());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_exact::<(String, Vec<u64>, Option<i32>, BTreeMap<u8, String>)>(&bytes);
            let _ = decode_exact::<Bid>(&bytes);
        }
    }

    #[test]
    fn small_values_are_compact() {
        assert_eq!(encode_to_vec(&5u64).unwrap(), [5]);
        assert_eq!(encode_to_vec(&-1i64).unwrap(), [1]);
        assert_eq!(encode_to_vec(&"ab".to_string()).unwrap(), [2, b'a', b'b']);
        assert_eq!(encode_to_vec(&()).unwrap(), [0u8; 0]);
    }

    #[test]
    fn encodings_are_pinned() {
        // A change here changes every shuffle key and every stored accumulator.
        let value = ("hello".to_string(), -3i64, Some(300u32), vec![1u8, 2]);
        assert_eq!(
            encode_to_vec(&value).unwrap(),
            [5, b'h', b'e', b'l', b'l', b'o', 5, 1, 172, 2, 2, 1, 2]
        );
    }

    #[test]
    fn determinism_follows_the_parts() {
        assert!(<(String, u64)>::is_deterministic());
        assert!(!<(String, f64)>::is_deterministic());
        assert!(!Vec::<f32>::is_deterministic());
        assert!(!HashMap::<u8, u8>::is_deterministic());
        assert!(BTreeMap::<String, Option<u8>>::is_deterministic());
    }

    #[test]
    fn truncated_input_is_an_error_naming_the_type() {
        let bytes = encode_to_vec(&"hello".to_string()).unwrap();
        let err = decode_exact::<String>(&bytes[..3]).unwrap_err();
        assert!(err.to_string().contains("String"), "{err}");
        let err = decode_exact::<u8>(&[1, 2]).unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
        let err = decode_exact::<u8>(&[]).unwrap_err();
        assert!(err.to_string().contains("ended"), "{err}");
        let err = decode_exact::<u16>(&[0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
