//! Random numbers that the CPU and the GPU agree on.
//!
//! - [`SplitMix64`]: the host generator for parameter initialisation (sequential, seeded).
//! - [`hash_u32`] / [`dropout_uniform`]: a counter-based generator, a pure function of
//!   `(seed, stream, index)` written with 32-bit integer arithmetic only, so that
//!   `shaders/dropout.wgsl` computes bit-identical masks (WGSL has no 64-bit integers).

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, good enough for initialisation,
/// and trivially reproducible from its one word of state (stored in checkpoints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

/// A 32-bit integer hash with good avalanche ("lowbias32", Chris Wellons).
/// Mirrored exactly by `hash_u32` in `shaders/dropout.wgsl`.
pub fn hash_u32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Uniform in [0, 1) with 24 bits, a pure function of its three counters.
/// `stream` separates the dropout sites of one training step (the host numbers them
/// `step * sites + site`), `index` is the element's position in its tensor.
pub fn dropout_uniform(seed: u32, stream: u32, index: u32) -> f32 {
    let key = hash_u32(seed ^ hash_u32(stream.wrapping_add(0x9e37_79b9)));
    let h = hash_u32(index ^ key);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_reproducible_and_spread() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn dropout_uniform_depends_on_every_counter() {
        let base = dropout_uniform(1, 2, 3);
        assert_ne!(base, dropout_uniform(2, 2, 3));
        assert_ne!(base, dropout_uniform(1, 3, 3));
        assert_ne!(base, dropout_uniform(1, 2, 4));
        let n = 100_000;
        let kept = (0..n).filter(|&i| dropout_uniform(9, 0, i) < 0.35).count();
        let frac = kept as f64 / n as f64;
        assert!((frac - 0.35).abs() < 0.01, "kept fraction {frac}");
    }
}
