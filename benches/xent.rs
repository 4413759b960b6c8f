//! Criterion benchmarks: each shape in one group with every available kernel forced, the
//! f64 reference (small shapes only) and an in-place memory pass over the same bytes as
//! the roofline. Throughput counts 8 bytes per logit (one read, one write).
//!
//! `forward_backward` overwrites its logits with the gradient, so each timed call starts
//! from a fresh copy of the same logits, made outside the timing (`common.rs`).
//!
//! `cargo bench --bench xent` (all), `cargo bench --bench xent -- 4096x32000` (one shape).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod common;
use common::{fresh, logits};
use xent::{CrossEntropy, Kernel};

const SHAPES: [(usize, usize); 9] = [
    (1_048_576, 3),
    (65_536, 10),
    (16_384, 127),
    (16_384, 1000),
    (16_384, 1001),
    (4096, 32_000),
    (1024, 128_256),
    (8192, 32_000),
    (1, 300_000),
];

fn shapes(c: &mut Criterion) {
    let only_quick = std::env::var("XENT_BENCH_QUICK").is_ok();
    for (rows, classes) in SHAPES {
        let n = rows * classes;
        if only_quick && n > 1 << 27 {
            continue;
        }
        // Offset by one element so rows are not 64-byte aligned, as in real batches.
        let buf = logits(n + 1);
        let mut work = buf.clone();
        let targets: Vec<u32> = (0..rows as u32)
            .map(|r| r.wrapping_mul(2_654_435_761) % classes as u32)
            .collect();
        let mut g = c.benchmark_group(format!("{rows}x{classes}"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        g.sample_size(10);
        for k in Kernel::available() {
            let ce = CrossEntropy::new(classes).kernel(k);
            g.bench_function(
                BenchmarkId::new("forward_backward", format!("{k:?}")),
                |b| {
                    let reset = |w: &mut Vec<f32>| w.copy_from_slice(&buf);
                    fresh(b, &mut work, reset, |w| {
                        ce.forward_backward(&mut w[1..], &targets)
                    })
                },
            );
            g.bench_function(BenchmarkId::new("forward", format!("{k:?}")), |b| {
                b.iter(|| black_box(ce.forward(&buf[1..], &targets).unwrap()))
            });
        }
        if n <= 1 << 22 {
            let ce = CrossEntropy::new(classes);
            g.bench_function("reference", |b| {
                b.iter(|| {
                    black_box(xent::reference::cross_entropy(&ce, &buf[1..], &targets).unwrap())
                })
            });
        }
        g.bench_function("memory pass (roofline)", |b| {
            b.iter(|| work[1..].iter_mut().for_each(|v| *v = *v * 0.999 + 1e-6))
        });
        g.finish();
    }
}

criterion_group!(benches, shapes);
criterion_main!(benches);
