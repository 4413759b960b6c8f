//! What the throughput examples share: the median of repeated timings, and the memory
//! passes each kernel is compared with in the same run (the rooflines).

// Each example uses a part of these.
#![allow(dead_code)]

use rayon::prelude::*;
use std::time::Instant;

/// Median seconds of `reps` runs of `f`.
pub fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: page faults, caches, thread pool
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
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
