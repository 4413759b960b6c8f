//! The kernels' exp against `f32::exp`, per element over a 64 KiB slice (L1/L2).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use xent::Kernel;

fn exp(c: &mut Criterion) {
    let xs: Vec<f32> = (0..16_384).map(|i| -(i as f32) * 0.005).collect();
    let mut g = c.benchmark_group("exp");
    g.throughput(Throughput::Elements(xs.len() as u64));
    for k in Kernel::available() {
        let mut buf = xs.clone();
        g.bench_function(format!("{k:?}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&xs);
                xent::exp::exp_slice(k, &mut buf).unwrap();
                black_box(&buf);
            })
        });
    }
    let mut buf = xs.clone();
    g.bench_function("f32::exp", |b| {
        b.iter(|| {
            buf.iter_mut().zip(&xs).for_each(|(y, x)| *y = x.exp());
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group!(benches, exp);
criterion_main!(benches);
