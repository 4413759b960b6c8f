//! What the language-model options cost: bf16/f16 logits against f32 and against a 16-bit
//! memory pass; the gradient into a separate buffer, z-loss and soft-capping (on f32 and
//! on bf16 logits) against the plain kernel; the backward pass from a saved log-sum-exp,
//! and the vocabulary-sharded protocol, all measured in the same run.
//!
//! ```text
//! cargo run --release --example llm_throughput
//! cargo run --release --example llm_throughput -- --quick   # 4096x32000 only
//! ```
//!
//! Each line is a median time per logit at 1 and 2 threads; `%` columns compare with the
//! in-place memory pass over the same bytes (4 bytes per logit for f32, 2 for bf16/f16)
//! or with the plain f32 kernel in the same run. Every call that overwrites its input runs
//! on the logits, restored by an untimed copy before it (the memory passes too, so that
//! they start from the same cache state).

use std::hint::black_box;
use xent::half::{bf16, f16};
use xent::{CrossEntropy, RowOutputs, Shard, ShardStats};

mod roofline;
use roofline::{median_fresh, memory_pass, memory_pass16};

/// The buffers the timed calls write: logits (overwritten by their gradient) and the
/// separate gradient of `forward_backward_into`.
struct Bufs {
    x: Vec<f32>,
    xb: Vec<bf16>,
    xh: Vec<f16>,
    raw16: Vec<u16>,
    into: Vec<f32>,
    shards: Vec<Vec<f32>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut shapes = vec![(4096usize, 32_000usize)];
    if !quick {
        shapes.push((1024, 128_256));
    }
    println!(
        "kernel {:?}; {} logical CPUs; ns per logit (median)",
        xent::Kernel::Auto.resolve()?,
        std::thread::available_parallelism()?
    );
    for (rows, c) in shapes {
        let n = rows * c;
        let mut s = 0x2545_f491u32;
        let z: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
            })
            .collect();
        let targets: Vec<u32> = (0..rows as u32)
            .map(|r| r.wrapping_mul(2_654_435_761) % c as u32)
            .collect();
        let zb: Vec<bf16> = z.iter().map(|&v| bf16::from_f32(v)).collect();
        let zh: Vec<f16> = z.iter().map(|&v| f16::from_f32(v)).collect();
        let raw: Vec<u16> = zb.iter().map(|v| v.to_bits()).collect();
        let plain = CrossEntropy::new(c);
        let zl = plain.clone().z_loss(1e-4);
        let cap = plain.clone().softcap(30.0);
        let both = plain.clone().z_loss(1e-4).softcap(30.0);
        let reps = (1_500_000_000 / (n * 4)).clamp(7, 11);
        let mut lse = vec![0.0f32; rows];
        plain.forward_with(&z, &targets, RowOutputs::new().lse(&mut lse))?;
        let up = vec![1.0 / rows as f32; rows];
        // Eight uneven shards for the sharded protocol.
        let cuts: Vec<usize> = (0..=8).map(|i| i * i * c / 64).collect();
        let shards: Vec<Shard> = cuts
            .windows(2)
            .map(|w| Shard::new(w[0], w[1] - w[0]))
            .collect();
        let shard_logits: Vec<Vec<f32>> = shards
            .iter()
            .map(|s| {
                (0..rows)
                    .flat_map(|r| z[r * c + s.offset..r * c + s.offset + s.width].to_vec())
                    .collect()
            })
            .collect();
        let mut bufs = Bufs {
            x: z.clone(),
            xb: zb.clone(),
            xh: zh.clone(),
            raw16: raw.clone(),
            // Written once first, so its pages are mapped before the timing, as a
            // trainer's reused gradient buffer would be.
            into: vec![1.0f32; n],
            shards: shard_logits.clone(),
        };
        // What each line restores before its call.
        let x = |b: &mut Bufs| b.x.copy_from_slice(&z);
        let xb = |b: &mut Bufs| b.xb.copy_from_slice(&zb);
        let xh = |b: &mut Bufs| b.xh.copy_from_slice(&zh);
        let raw16 = |b: &mut Bufs| b.raw16.copy_from_slice(&raw);
        let shard_data = |b: &mut Bufs| {
            for (d, p) in b.shards.iter_mut().zip(&shard_logits) {
                d.copy_from_slice(p);
            }
        };
        println!("\n{rows}x{c}");
        println!(
            "{:<42} {:>9} {:>6} {:>9} {:>6}",
            "", "1 thread", "%", "2 thr", "%"
        );
        type Step<'a> = &'a (dyn Fn(&mut Bufs) + Sync);
        let mut line =
            |name: &str, reset: Step<'_>, what: Step<'_>, base: &dyn Fn(usize) -> f64| {
                let mut cells = Vec::new();
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .expect("thread pool");
                    let t = pool.install(|| median_fresh(reps, &mut bufs, reset, what));
                    let t = t * 1e9 / n as f64;
                    cells.push((t, 100.0 * base(threads) / t));
                }
                let pct = |p: f64| {
                    if p.is_nan() {
                        String::new()
                    } else {
                        format!("{p:.0}%")
                    }
                };
                println!(
                    "{name:<42} {:>9.3} {:>6} {:>9.3} {:>6}",
                    cells[0].0,
                    pct(cells[0].1),
                    cells[1].0,
                    pct(cells[1].1)
                );
                [cells[0].0, cells[1].0]
            };
        let none = |_: usize| f64::NAN;
        let mem = line(
            "memory pass f32 (roofline)",
            &x,
            &|b| memory_pass(&mut b.x),
            &none,
        );
        let mem16 = line(
            "memory pass 16-bit (roofline)",
            &raw16,
            &|b| memory_pass16(&mut b.raw16),
            &none,
        );
        let vs_mem = |t: usize| mem[t - 1];
        let vs_mem16 = |t: usize| mem16[t - 1];
        let f32_fb = line(
            "f32 forward_backward (% mem)",
            &x,
            &|b| {
                black_box(plain.forward_backward(&mut b.x, &targets).unwrap());
            },
            &vs_mem,
        );
        let vs_plain = |t: usize| f32_fb[t - 1];
        line(
            "bf16 forward_backward (% mem16)",
            &xb,
            &|b| {
                black_box(plain.forward_backward_half(&mut b.xb, &targets).unwrap());
            },
            &vs_mem16,
        );
        line(
            "f16 forward_backward (% mem16)",
            &xh,
            &|b| {
                black_box(plain.forward_backward_half(&mut b.xh, &targets).unwrap());
            },
            &vs_mem16,
        );
        line(
            "f32 forward_backward_into (% plain)",
            // Nothing to restore (`z` is only read), but the same copy as the in-place
            // line's, so both calls start from the cache state that copy leaves.
            &x,
            &|b| {
                black_box(
                    plain
                        .forward_backward_into(&z, &targets, &mut b.into)
                        .unwrap(),
                );
            },
            &vs_plain,
        );
        line(
            "f32 + z-loss (% plain)",
            &x,
            &|b| {
                black_box(zl.forward_backward(&mut b.x, &targets).unwrap());
            },
            &vs_plain,
        );
        line(
            "f32 + softcap (% plain)",
            &x,
            &|b| {
                black_box(cap.forward_backward(&mut b.x, &targets).unwrap());
            },
            &vs_plain,
        );
        line(
            "f32 + z-loss + softcap (% plain)",
            &x,
            &|b| {
                black_box(both.forward_backward(&mut b.x, &targets).unwrap());
            },
            &vs_plain,
        );
        line(
            "bf16 + softcap (% plain)",
            &xb,
            &|b| {
                black_box(cap.forward_backward_half(&mut b.xb, &targets).unwrap());
            },
            &vs_plain,
        );
        line(
            "backward from saved lse (% plain)",
            &x,
            &|b| plain.backward(&mut b.x, &targets, &lse, &up).unwrap(),
            &vs_plain,
        );
        line(
            "8 shards: stats+merge+loss+bwd (% plain)",
            &shard_data,
            &|b| {
                let mut merged = vec![ShardStats::EMPTY; rows];
                let mut part = vec![ShardStats::EMPTY; rows];
                for (d, &s) in b.shards.iter().zip(&shards) {
                    plain.shard_stats(d, s, &targets, &mut part).unwrap();
                    for (m, p) in merged.iter_mut().zip(&part) {
                        *m = m.merge(*p).unwrap();
                    }
                }
                black_box(plain.shard_loss(&merged, &targets).unwrap());
                for (d, &s) in b.shards.iter_mut().zip(&shards) {
                    plain.shard_backward(d, s, &targets, &merged).unwrap();
                }
            },
            &vs_plain,
        );
    }
    Ok(())
}
