//! A quick throughput table: xent's in-place forward+backward against the memory
//! bandwidth limit, measured in the same run.
//!
//! ```text
//! cargo run --release --example throughput            # every shape, 1 and 2 threads
//! cargo run --release --example throughput -- --quick # skip the 1 GiB shape
//! cargo run --release --example throughput -- --kernel avx2
//! cargo run --release --example throughput -- --shape 65536x48 --shape 4096x1000
//! ```
//!
//! For each shape and thread count it prints the median time per logit of
//! `forward_backward` (gradient in place), its bandwidth at 8 bytes per logit, that as a
//! percentage of an in-place `x = a x + b` pass over the same buffer, the speed-up over a
//! naive scalar three-pass loop (1 thread), and `forward` (loss only) against a read-only
//! pass. The last column is the compute bound: `forward_backward` on as many rows of the
//! shape as fit in 256 KiB, repeated so they stay in L2, on one thread. When it is close
//! to `ns/logit` the kernel is compute-bound at that shape, not memory-bound. Medians of
//! several runs; the machine may be shared, so compare the ratios. Every in-place call
//! (and the memory pass, so that both start from the same cache state) runs on the
//! logits, restored by an untimed copy before it.

use std::hint::black_box;
use xent::{CrossEntropy, Kernel};

mod roofline;
use roofline::{median, median_fresh, median_of, memory_pass, read_pass};
use std::time::Instant;

/// What a plain Rust programmer writes: three passes, `f32::exp`, one thread.
fn naive(z: &mut [f32], targets: &[u32], c: usize) -> f64 {
    let mut loss = 0f64;
    let n = targets.len() as f32;
    for (row, &t) in z.chunks_exact_mut(c).zip(targets) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = 0f32;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        loss += f64::from(s.ln() + m - row[t as usize]);
        for v in row.iter_mut() {
            *v /= s * n;
        }
        row[t as usize] -= 1.0 / n;
    }
    loss / n as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let kernel = match args
        .iter()
        .position(|a| a == "--kernel")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("auto") => Kernel::Auto,
        Some("avx512") => Kernel::Avx512,
        Some("avx2") => Kernel::Avx2,
        Some("portable") => Kernel::Portable,
        Some(other) => return Err(format!("unknown kernel {other}").into()),
    };
    let mut shapes = vec![
        (1_048_576usize, 3usize),
        (65_536, 10),
        (16_384, 1000),
        (4096, 32_000),
        (1024, 128_256),
    ];
    if !quick {
        shapes.push((8192, 32_000));
    }
    // `--shape ROWSxCLASSES` (repeatable) replaces the default list.
    let mut custom = Vec::new();
    for (i, _) in args.iter().enumerate().filter(|(_, a)| *a == "--shape") {
        let spec = args.get(i + 1).ok_or("--shape needs ROWSxCLASSES")?;
        let (r, c) = spec
            .split_once('x')
            .ok_or_else(|| format!("bad shape {spec}: expected ROWSxCLASSES"))?;
        let (r, c): (usize, usize) = (r.parse()?, c.parse()?);
        if r == 0 || c == 0 {
            return Err(format!("bad shape {spec}: rows and classes must be positive").into());
        }
        custom.push((r, c));
    }
    if !custom.is_empty() {
        shapes = custom;
    }
    println!(
        "kernel {:?}; {} logical CPUs",
        kernel.resolve()?,
        std::thread::available_parallelism()?
    );
    println!(
        "{:>14} {:>3} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "shape", "thr", "ns/logit", "GB/s", "% mem", "x naive", "fwd ns/l", "% read", "L2 ns/l"
    );
    for (rows, c) in shapes {
        let n = rows * c;
        let mut s = 0x1234_5678u32;
        let z0: Vec<f32> = (0..n)
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
        let mut z = z0.clone();
        let restore = |w: &mut Vec<f32>| w.copy_from_slice(&z0);
        let ce = CrossEntropy::new(c).kernel(kernel);
        let reps = (2_000_000_000 / (n * 8)).clamp(7, 21);
        let naive_ns = {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            pool.install(|| {
                median_fresh(reps.min(5), &mut z, restore, |w| {
                    black_box(naive(w, &targets, c));
                })
            }) * 1e9
                / n as f64
        };
        // The compute bound: the same kernel on as many of the rows as fit in 256 KiB (at
        // least one), which stay in this core's L2 across calls with the copy they are
        // restored from, on one thread. Each call is timed alone, after its restore.
        let l2_ns = {
            let r2 = ((64 * 1024) / c).clamp(1, rows);
            let (src, t2) = (&z0[..r2 * c], &targets[..r2]);
            let mut z2 = src.to_vec();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            let calls = (4_000_000 / (r2 * c)).max(1);
            pool.install(|| {
                median_of(21, || {
                    let mut total = 0.0;
                    for _ in 0..calls {
                        z2.copy_from_slice(src);
                        let t = Instant::now();
                        black_box(ce.forward_backward(&mut z2, t2).unwrap());
                        total += t.elapsed().as_secs_f64();
                    }
                    total
                })
            }) * 1e9
                / (calls * r2 * c) as f64
        };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let (ours, mem, fwd, read) = pool.install(|| {
                let ours = median_fresh(reps, &mut z, restore, |w| {
                    black_box(ce.forward_backward(w, &targets).unwrap());
                });
                let mem = median_fresh(reps, &mut z, restore, |w| memory_pass(w));
                restore(&mut z);
                let fwd = median(reps, || {
                    black_box(ce.forward(&z, &targets).unwrap());
                });
                let read = median(reps, || {
                    black_box(read_pass(&z));
                });
                (ours, mem, fwd, read)
            });
            let per = |t: f64| t * 1e9 / n as f64;
            println!(
                "{:>14} {:>3} {:>9.3} {:>7.1} {:>7.0}% {:>8} {:>9.3} {:>7.0}% {:>8}",
                format!("{rows}x{c}"),
                threads,
                per(ours),
                n as f64 * 8.0 / ours / 1e9,
                100.0 * mem / ours,
                if threads == 1 {
                    format!("{:.1}", naive_ns / per(ours))
                } else {
                    "".into()
                },
                per(fwd),
                100.0 * read / fwd,
                if threads == 1 {
                    format!("{l2_ns:.3}")
                } else {
                    "".into()
                }
            );
        }
    }
    Ok(())
}
