//! The pseudo-random generator of Java's `java.util.Random`, bit for bit.
//!
//! Beam's Nexmark generator seeds one `java.util.Random` per event with the event's id and
//! draws every field from it, so reproducing its events means reproducing this generator:
//! a 48-bit linear congruential generator (multiplier `0x5DEECE66D`, increment `0xB`)
//! whose `nextInt(bound)` rejects draws that would bias the result, with Java's 32-bit
//! signed arithmetic.

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

/// A `java.util.Random`.
#[derive(Clone, Debug)]
pub struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    /// `new Random(seed)`.
    pub fn new(seed: i64) -> JavaRandom {
        JavaRandom {
            seed: (seed as u64 ^ MULTIPLIER) & MASK,
        }
    }

    /// `next(bits)`: the top `bits` bits of the next state, as a Java `int`.
    #[inline]
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`: any `int`.
    #[inline]
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)`: uniform in `0..bound`. Panics unless `bound > 0`, as Java throws.
    #[inline]
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        assert!(bound > 0, "bound must be positive");
        let r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            // A power of two: the high bits are the better ones.
            return ((bound as i64 * r as i64) >> 31) as i32;
        }
        let mut u = r;
        loop {
            let r = u % bound;
            // Java's overflow test: a draw from the last, incomplete run of `bound` is
            // rejected.
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }

    /// `nextLong()`: any `long`.
    #[inline]
    pub fn next_long(&mut self) -> i64 {
        let high = self.next(32) as i64;
        let low = self.next(32) as i64;
        (high << 32).wrapping_add(low)
    }

    /// `nextDouble()`: uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_double(&mut self) -> f64 {
        let high = self.next(26) as i64;
        let low = self.next(27) as i64;
        ((high << 27) + low) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by a JVM (OpenJDK 17) for the same calls.
    #[test]
    fn matches_the_jvm() {
        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_int(), -1155484576);
        assert_eq!(r.next_int_bounded(10), 8);
        assert_eq!(r.next_long(), 4437113781045784766);
        assert_eq!(r.next_double(), 0.6374174253501083);
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int_bounded(7), 1);
        assert_eq!(r.next_int_bounded(1 << 20), 57320);
        assert_eq!(r.next_int_bounded(1_000_000_007), 467211241);
        let mut r = JavaRandom::new(-123_456_789);
        assert_eq!(r.next_int(), 1442175866);
        assert_eq!(r.next_double(), 0.7767187798827738);
    }
}
