//! Deterministic weight initialisation for an untrained hypernetwork.
//!
//! Every tensor gets its own SplitMix64 stream seeded by (model seed, tensor name), so the
//! same seed yields the same weights on every machine and in every process, independently of
//! burn's RNG and of the order tensors are created in.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for the small n used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Where the stream is: `SplitMix64::new(s.state())` continues it exactly.
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Uniform in [-1, 1), from the top 24 bits (exactly representable in f32).
    pub fn next_symmetric(&mut self) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }
}

/// FNV-1a 64-bit, used to derive per-tensor seeds from names.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `len` values uniform in [-bound, bound), the PyTorch default for Linear and GRU weights
/// with bound = 1/sqrt(fan_in).
pub fn uniform(seed: u64, name: &str, len: usize, bound: f32) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ fnv1a64(name.as_bytes()));
    (0..len).map(|_| rng.next_symmetric() * bound).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        assert_eq!(uniform(7, "a", 5, 1.0), uniform(7, "a", 5, 1.0));
        assert_ne!(uniform(7, "a", 5, 1.0), uniform(7, "b", 5, 1.0));
        assert_ne!(uniform(7, "a", 5, 1.0), uniform(8, "a", 5, 1.0));
        assert!(uniform(1, "x", 1000, 0.5).iter().all(|v| (-0.5..0.5).contains(v)));
    }
}
