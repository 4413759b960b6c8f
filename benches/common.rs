//! What the benchmarks share: their logits, and timing an in-place call on fresh input
//! (the calls overwrite their logits with the gradient, and fed back as the next call's
//! logits the gradient, tiny values in nearly uniform rows, would be a different input
//! from the one named).

use criterion::Bencher;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Times `run(work)` only, after `reset(work)` restores the input before each call (the
/// copy is not timed; it leaves the end of the buffer in cache, as a trainer's logits are
/// after the layer that wrote them, which a sweep from the start evicts before reaching
/// it when the buffer is larger than the cache).
pub fn fresh<W, R>(
    b: &mut Bencher<'_>,
    work: &mut W,
    mut reset: impl FnMut(&mut W),
    mut run: impl FnMut(&mut W) -> R,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            reset(work);
            let t = Instant::now();
            black_box(run(work));
            total += t.elapsed();
        }
        total
    })
}

/// `n` logits uniform in `[-4, 4)` from a fixed xorshift seed.
pub fn logits(n: usize) -> Vec<f32> {
    let mut s = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
        })
        .collect()
}
