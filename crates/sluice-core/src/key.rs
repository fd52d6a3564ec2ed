//! Key hashing and routing.
//!
//! A key belongs to the worker chosen from the hash of its *encoded* bytes, computed with
//! a fixed seed. Every thread and every process of a job computes the same owner for the
//! same key, whatever the platform, because neither the encoding nor the hash depends on
//! memory layout or a per-process random seed.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed of the key hash; changing it reroutes every key, so it never changes.
pub const KEY_HASH_SEED: u64 = 0x5c0f_fee5_1ce0_0001;

/// The routing hash of an encoded key.
#[inline]
pub fn key_hash(encoded_key: &[u8]) -> u64 {
    xxh3_64_with_seed(encoded_key, KEY_HASH_SEED)
}

/// The worker, out of `workers`, that owns a key with hash `hash`.
#[inline]
pub fn route(hash: u64, workers: usize) -> usize {
    // Multiply-shift maps the full 64-bit range evenly onto 0..workers; unlike `%` it uses
    // the high bits, which xxh3 mixes best.
    ((hash as u128 * workers as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_is_fixed_across_builds() {
        // Pinned values: a change here means keys would move between workers (and between
        // the processes of a cluster built from different versions).
        assert_eq!(key_hash(b""), 0x26531e5af4c9ac99);
        assert_eq!(key_hash(b"\x05hello"), 0x66236805f82c8751);
        assert_eq!(key_hash(b"\x05hellp"), 0x7ea65a8eda82a4f6);
        assert_eq!(key_hash(&1u64.to_le_bytes()), 0x56187a669de01d89);
        assert_eq!(route(0x26531e5af4c9ac99, 4), 0);
        assert_eq!(route(0x66236805f82c8751, 4), 1);
        assert_eq!(route(u64::MAX, 4), 3);
    }

    proptest! {
        #[test]
        fn route_is_in_range(h in any::<u64>(), n in 1usize..64) {
            prop_assert!(route(h, n) < n);
        }
    }

    #[test]
    fn routing_spreads_keys_evenly() {
        let workers = 4;
        let mut counts = [0usize; 4];
        for i in 0..40_000u32 {
            counts[route(key_hash(&i.to_le_bytes()), workers)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
