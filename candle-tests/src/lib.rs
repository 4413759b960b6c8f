//! Tests (`tests/candle.rs`) and a benchmark (`examples/candle_throughput.rs`) of
//! `xent::candle` against `candle_nn::loss::cross_entropy`; this library holds what both
//! share.

use candle_core::{DType, Device, Result, Tensor};

/// A deterministic generator (SplitMix64), so failures reproduce without a seed file.
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Random logits `(rows, classes)` of spread `scale` in `dtype`, and u32 targets.
pub fn batch(
    rng: &mut Rng,
    rows: usize,
    classes: usize,
    scale: f32,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let z: Vec<f32> = (0..rows * classes).map(|_| rng.uniform(scale)).collect();
    let t: Vec<u32> = (0..rows).map(|_| rng.below(classes) as u32).collect();
    let logits = Tensor::from_vec(z, (rows, classes), &Device::Cpu)?.to_dtype(dtype)?;
    Ok((logits, Tensor::from_vec(t, rows, &Device::Cpu)?))
}
