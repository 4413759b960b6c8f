//! Criterion benchmarks of the fused linear + cross-entropy head at 1024x32000x256 (f32
//! and bf16), with its floor in the same group: the three GEMMs of the shape alone
//! (`Z = H W^T`, `dH = G W`, `dW = G^T H`, on the same GEMM, faer) and the unfused path
//! (those GEMMs with xent's `forward_backward` on the full logits between them).
//! Throughput is `6 N V d` flops, counted as elements.
//!
//! `cargo bench --bench linear`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faer::{Accum, MatMut, MatRef, Par};
use xent::half::bf16;
use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};

#[allow(dead_code)] // `fresh` is for the in-place kernels
mod common;
use common::logits;

/// `dst = lhs rhs` on rayon's current pool.
fn mm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>) {
    let par = Par::rayon(0);
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, par);
}

fn linear(c: &mut Criterion) {
    let (n, v, d) = (1024usize, 32_000usize, 256usize);
    let h: Vec<f32> = logits(n * d).iter().map(|x| x / 40.0).collect();
    let w: Vec<f32> = logits(v * d).iter().rev().map(|x| x / 40.0).collect();
    let t: Vec<u32> = (0..n as u32)
        .map(|r| r.wrapping_mul(2_654_435_761) % v as u32)
        .collect();
    let (mut z, mut dh, mut dw) = (vec![0f32; n * v], vec![0f32; n * d], vec![0f32; v * d]);
    let ce = CrossEntropy::new(v);
    let head = LinearCrossEntropy::new(ce.clone(), d);
    let mut g = c.benchmark_group(format!("linear {n}x{v}x{d}"));
    g.throughput(Throughput::Elements(6 * (n * v * d) as u64));
    g.sample_size(10);
    let hm = MatRef::from_row_major_slice(&h, n, d);
    let wm = MatRef::from_row_major_slice(&w, v, d);
    let mut gemms = |with_ce: bool| {
        mm(
            MatMut::from_row_major_slice_mut(&mut z, n, v),
            hm,
            wm.transpose(),
        );
        if with_ce {
            ce.forward_backward(&mut z, &t).unwrap();
        }
        let zm = MatRef::from_row_major_slice(&z, n, v);
        mm(MatMut::from_row_major_slice_mut(&mut dh, n, d), zm, wm);
        mm(
            MatMut::from_row_major_slice_mut(&mut dw, v, d),
            zm.transpose(),
            hm,
        );
    };
    g.bench_function("gemm floor (3 GEMMs)", |b| b.iter(|| gemms(false)));
    g.bench_function("unfused (full logits)", |b| b.iter(|| gemms(true)));
    let (mut gh, mut gw) = (vec![0f32; n * d], vec![0f32; v * d]);
    g.bench_function("fused f32", |b| {
        b.iter(|| head.forward_backward(&h, &w, None, &t, LinearGrads::new(&mut gh, &mut gw)))
    });
    let (hb, wb): (Vec<bf16>, Vec<bf16>) = (
        h.iter().map(|&x| bf16::from_f32(x)).collect(),
        w.iter().map(|&x| bf16::from_f32(x)).collect(),
    );
    let (mut bh, mut bw) = (vec![bf16::ZERO; n * d], vec![bf16::ZERO; v * d]);
    g.bench_function("fused bf16", |b| {
        b.iter(|| head.forward_backward(&hb, &wb, None, &t, LinearGrads::new(&mut bh, &mut bw)))
    });
    g.finish();
}

criterion_group!(benches, linear);
criterion_main!(benches);
