//! Criterion benchmarks of the language-model options at 4096x32000 and 1024x128256, each
//! group with its rooflines: bf16/f16 against f32 and against a 16-bit in-place memory
//! pass; z-loss, soft-capping, the backward pass from a saved log-sum-exp and the
//! 8-shard protocol against the plain f32 kernel. Throughput counts the bytes the plain
//! f32 kernel moves (8 per logit) so the rates compare directly.
//!
//! `cargo bench --bench llm` (all), `cargo bench --bench llm -- bf16` (a subset).

//!
//! The in-place calls start from a fresh copy of their logits each time, made outside the
//! timing (`common.rs`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{fresh, logits};
use xent::half::{bf16, f16};
use xent::{CrossEntropy, RowOutputs, Shard, ShardStats};

fn llm(c: &mut Criterion) {
    for (rows, classes) in [(4096usize, 32_000usize), (1024, 128_256)] {
        let n = rows * classes;
        let z = logits(n);
        let targets: Vec<u32> = (0..rows as u32)
            .map(|r| r.wrapping_mul(2_654_435_761) % classes as u32)
            .collect();
        let mut x = z.clone();
        let zb: Vec<bf16> = z.iter().map(|&v| bf16::from_f32(v)).collect();
        let zh: Vec<f16> = z.iter().map(|&v| f16::from_f32(v)).collect();
        let (mut xb, mut xh) = (zb.clone(), zh.clone());
        let mut raw: Vec<u16> = zb.iter().map(|v| v.to_bits()).collect();
        let reset = |w: &mut Vec<f32>| w.copy_from_slice(&z);
        let plain = CrossEntropy::new(classes);
        let mut g = c.benchmark_group(format!("llm {rows}x{classes}"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        g.sample_size(10);
        g.bench_function("f32", |b| {
            fresh(b, &mut x, reset, |x| plain.forward_backward(x, &targets))
        });
        g.bench_function("bf16", |b| {
            let reset = |w: &mut Vec<bf16>| w.copy_from_slice(&zb);
            fresh(b, &mut xb, reset, |x| {
                plain.forward_backward_half(x, &targets)
            })
        });
        g.bench_function("f16", |b| {
            let reset = |w: &mut Vec<f16>| w.copy_from_slice(&zh);
            fresh(b, &mut xh, reset, |x| {
                plain.forward_backward_half(x, &targets)
            })
        });
        g.bench_function("memory pass f32 (roofline)", |b| {
            b.iter(|| x.iter_mut().for_each(|v| *v = *v * 0.999 + 1e-6))
        });
        g.bench_function("memory pass 16-bit (roofline)", |b| {
            b.iter(|| {
                raw.iter_mut()
                    .for_each(|v| *v = v.wrapping_mul(3).wrapping_add(1))
            })
        });
        for (name, ce) in [
            ("f32 z-loss", plain.clone().z_loss(1e-4)),
            ("f32 softcap", plain.clone().softcap(30.0)),
            (
                "f32 z-loss+softcap",
                plain.clone().z_loss(1e-4).softcap(30.0),
            ),
        ] {
            g.bench_function(name, |b| {
                fresh(b, &mut x, reset, |x| ce.forward_backward(x, &targets))
            });
        }
        let mut lse = vec![0.0f32; rows];
        plain
            .forward_with(&z, &targets, RowOutputs::new().lse(&mut lse))
            .unwrap();
        let up = vec![1.0 / rows as f32; rows];
        g.bench_function("backward from lse", |b| {
            fresh(b, &mut x, reset, |x| plain.backward(x, &targets, &lse, &up))
        });
        let cuts: Vec<usize> = (0..=8).map(|i| i * i * classes / 64).collect();
        let shards: Vec<Shard> = cuts
            .windows(2)
            .map(|w| Shard::new(w[0], w[1] - w[0]))
            .collect();
        let pristine: Vec<Vec<f32>> = shards
            .iter()
            .map(|s| {
                (0..rows)
                    .flat_map(|r| {
                        z[r * classes + s.offset..r * classes + s.offset + s.width].to_vec()
                    })
                    .collect()
            })
            .collect();
        let mut data = pristine.clone();
        g.bench_function("8 shards", |b| {
            let reset = |d: &mut Vec<Vec<f32>>| {
                for (d, p) in d.iter_mut().zip(&pristine) {
                    d.copy_from_slice(p);
                }
            };
            fresh(b, &mut data, reset, |data| {
                let mut merged = vec![ShardStats::EMPTY; rows];
                let mut part = vec![ShardStats::EMPTY; rows];
                for (d, &s) in data.iter().zip(&shards) {
                    plain.shard_stats(d, s, &targets, &mut part).unwrap();
                    for (m, p) in merged.iter_mut().zip(&part) {
                        *m = m.merge(*p).unwrap();
                    }
                }
                for (d, &s) in data.iter_mut().zip(&shards) {
                    plain.shard_backward(d, s, &targets, &merged).unwrap();
                }
                plain.shard_loss(&merged, &targets).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, llm);
criterion_main!(benches);
