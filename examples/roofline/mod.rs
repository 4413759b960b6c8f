//! What the throughput examples share: the median of repeated timings, and the memory
//! passes each kernel is compared with in the same run (the rooflines).

// Each example uses a part of these.
#![allow(dead_code)]

use rayon::prelude::*;
use std::time::Instant;

/// Median of `reps` results of `run`, seconds it measured itself, after one warm-up
/// (page faults, caches, thread pool).
pub fn median_of(reps: usize, mut run: impl FnMut() -> f64) -> f64 {
    run();
    let mut t: Vec<f64> = (0..reps).map(|_| run()).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Median seconds of `reps` runs of `f` (for calls that leave their input as it was).
pub fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    median_of(reps, || {
        let s = Instant::now();
        f();
        s.elapsed().as_secs_f64()
    })
}

/// Median seconds of `reps` runs of `f(work)`, each after an untimed `reset(work)` that
/// restores the input: an in-place call overwrites its logits with the gradient, and fed
/// back as the next call's logits the gradient (tiny values in nearly uniform rows, many
/// of them equal) is a different input from the one named. On it the argmax is found in
/// the first vector of every row, which made `Kernel::Avx2` 1.29-1.35x faster at
/// 65536x100 (Zen 4, 1 thread) than on the logits.
pub fn median_fresh<W: ?Sized>(
    reps: usize,
    work: &mut W,
    mut reset: impl FnMut(&mut W),
    mut f: impl FnMut(&mut W),
) -> f64 {
    median_of(reps, || {
        reset(work);
        let s = Instant::now();
        f(work);
        s.elapsed().as_secs_f64()
    })
}

/// The roofline: one read and one write of every element, as the gradient pass does.
pub fn memory_pass(x: &mut [f32]) {
    x.par_chunks_mut(1 << 16)
        .for_each(|c| c.iter_mut().for_each(|v| *v = *v * 0.999 + 1e-6));
}

/// Read-only roofline for `forward`.
pub fn read_pass(x: &[f32]) -> f32 {
    x.par_chunks(1 << 16)
        .map(|c| {
            let mut acc = [0f32; 16];
            for v in c.chunks_exact(16) {
                for i in 0..16 {
                    acc[i] += v[i];
                }
            }
            acc.iter().sum::<f32>()
        })
        .sum()
}

/// In-place read+write pass over 16-bit values (the bf16 roofline).
pub fn memory_pass16(x: &mut [u16]) {
    x.par_chunks_mut(1 << 17).for_each(|c| {
        c.iter_mut()
            .for_each(|v| *v = v.wrapping_mul(3).wrapping_add(1))
    });
}
