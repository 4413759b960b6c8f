//! `cargo run --release --example linear_throughput [-- N V D]`: the fused linear +
//! cross-entropy head against its floor and the unfused path, as ratios from one run.
//!
//! For each thread count (1 and 2), medians of 3 runs of:
//! * `gemm floor`: the three GEMMs of the shape alone (`Z = H W^T`, `dH = G W`,
//!   `dW = G^T H`, full size, `6 N V d` flops) on the same GEMM (faer);
//! * `unfused`: those three GEMMs with xent's `forward_backward` on the full `N x V`
//!   logits between them;
//! * `fused`: `LinearCrossEntropy::forward_backward` (default 64 MiB budget).
//!
//! Then the peak memory of each variant, each run alone in a child process (this program
//! with `--peak VARIANT`): the process's peak resident memory (VmHWM) after one call,
//! less its peak once the inputs and gradients are allocated and written, so the extra
//! memory the call itself takes (the unfused path's `N x V` logits; the fused head's
//! chunk). `--peak VARIANT` alone prints that for one variant.
//!
//! `--filter EPS` measures the gradient filter instead: on logits shaped like a trained
//! language model's (a bias `-ln(1 + j)` over token ids `j`, so probabilities fall off as
//! Zipf's law, and targets drawn from the same law), the fused head with
//! `gradient_filter(EPS)` against the fused head without it, for 1 and 2 threads: the
//! median times, their ratio, and the relative error (Frobenius norm) of `dH` and `dW`.

use faer::{Accum, MatMut, MatRef, Par};
use std::time::Instant;
use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};

fn median(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

fn mm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, threads: usize) {
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, par);
}

/// The process's peak resident memory in bytes (Linux), 0 if unknown.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    kb.unwrap_or(0) * 1024
}

/// `len` values in `[-0.1, 0.1)` from a fixed seed.
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect::<Vec<f32>>()
}

/// One call of `variant` (`unfused` or `fused`) on two threads; prints the extra peak
/// memory in MiB.
fn peak(variant: &str, n: usize, v: usize, d: usize) {
    let (h, w) = (fill(n * d, 1), fill(v * d, 2));
    let t: Vec<u32> = (0..n as u32).map(|i| i * 7919 % v as u32).collect();
    let (mut dh, mut dw) = (vec![1f32; n * d], vec![1f32; v * d]);
    let before = peak_rss();
    let ce = CrossEntropy::new(v);
    if variant == "fused" {
        let head = LinearCrossEntropy::new(ce, d);
        head.forward_backward(&h, &w, None, &t, LinearGrads::new(&mut dh, &mut dw))
            .unwrap();
    } else {
        let mut z = vec![0f32; n * v];
        let hm = MatRef::from_row_major_slice(&h, n, d);
        let wm = MatRef::from_row_major_slice(&w, v, d);
        mm(
            MatMut::from_row_major_slice_mut(&mut z, n, v),
            hm,
            wm.transpose(),
            2,
        );
        ce.forward_backward(&mut z, &t).unwrap();
        let zm = MatRef::from_row_major_slice(&z, n, v);
        mm(MatMut::from_row_major_slice_mut(&mut dh, n, d), zm, wm, 2);
        mm(
            MatMut::from_row_major_slice_mut(&mut dw, v, d),
            zm.transpose(),
            hm,
            2,
        );
    }
    let mib = (peak_rss() - before) as f64 / (1u64 << 20) as f64;
    println!("{mib:.1}");
}

/// `|a - b| / |b|` in the Frobenius norm.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (f64::from(x) - f64::from(y)).powi(2);
        den += f64::from(y).powi(2);
    }
    (num / den).sqrt()
}

/// The gradient filter at `eps` against no filter, on Zipf-shaped logits.
fn filter(eps: f32, n: usize, v: usize, d: usize) {
    let (h, w) = (fill(n * d, 1), fill(v * d, 2));
    let bias: Vec<f32> = (0..v).map(|j| -((1 + j) as f32).ln()).collect();
    // Zipf's law by inversion: t = floor((V + 1)^u) - 1 for u uniform in [0, 1).
    let u = fill(n, 3);
    let t: Vec<u32> = u
        .iter()
        .map(|&x| {
            (((v + 1) as f64).powf(f64::from(x) * 5.0 + 0.5).floor() as u32 - 1).min(v as u32 - 1)
        })
        .collect();
    println!("N {n} V {v} d {d}, Zipf-shaped logits, gradient_filter({eps:e}) against none");
    println!("threads  no filter (s)  filter (s)  speed-up  rel. error dH  rel. error dW");
    for threads in [1usize, 2] {
        let ce = CrossEntropy::new(v).threads(threads);
        let exact = LinearCrossEntropy::new(ce, d);
        let filtered = exact.clone().gradient_filter(Some(eps));
        let (mut dh, mut dw) = (vec![0f32; n * d], vec![0f32; v * d]);
        let (mut fh, mut fw) = (vec![0f32; n * d], vec![0f32; v * d]);
        let call = |head: &LinearCrossEntropy, dh: &mut [f32], dw: &mut [f32]| {
            median(|| {
                let g = LinearGrads::new(dh, dw);
                head.forward_backward(&h, &w, Some(&bias), &t, g).unwrap();
            })
        };
        let a = call(&exact, &mut dh, &mut dw);
        let b = call(&filtered, &mut fh, &mut fw);
        println!(
            "{threads:7}  {a:13.3}  {b:10.3}  {:7.2}x  {:12.2e}  {:12.2e}",
            a / b,
            rel_err(&fh, &dh),
            rel_err(&fw, &dw),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<usize> = args.iter().filter_map(|s| s.parse().ok()).collect();
    let (n, v, d) = match a[..] {
        [n, v, d] => (n, v, d),
        _ => (2048, 32000, 512),
    };
    if let Some(i) = args.iter().position(|a| a == "--filter") {
        let eps = args
            .get(i + 1)
            .and_then(|e| e.parse().ok())
            .unwrap_or(2f32.powi(-12));
        let (n, v, d) = match a[..] {
            [_, n, v, d] => (n, v, d),
            _ => (n, v, d),
        };
        return filter(eps, n, v, d);
    }
    if let Some(i) = args.iter().position(|a| a == "--peak") {
        return peak(args.get(i + 1).map_or("fused", String::as_str), n, v, d);
    }
    let (h, w) = (fill(n * d, 1), fill(v * d, 2));
    let t: Vec<u32> = (0..n as u32).map(|i| i * 7919 % v as u32).collect();
    let flops = 6.0 * (n * v * d) as f64;
    println!("N {n} V {v} d {d}: 6NVd = {:.1} GFLOP", flops / 1e9);
    println!("threads  variant     time (s)  GFLOP/s  vs floor");
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (mut z, mut dh, mut dw) = (vec![0f32; n * v], vec![0f32; n * d], vec![0f32; v * d]);
        let hm = MatRef::from_row_major_slice(&h, n, d);
        let wm = MatRef::from_row_major_slice(&w, v, d);
        let gemms = |z: &mut [f32], dh: &mut [f32], dw: &mut [f32], ce: Option<&CrossEntropy>| {
            mm(
                MatMut::from_row_major_slice_mut(z, n, v),
                hm,
                wm.transpose(),
                threads,
            );
            if let Some(ce) = ce {
                ce.forward_backward(z, &t).unwrap();
            }
            let zm = MatRef::from_row_major_slice(z, n, v);
            mm(MatMut::from_row_major_slice_mut(dh, n, d), zm, wm, threads);
            mm(
                MatMut::from_row_major_slice_mut(dw, v, d),
                zm.transpose(),
                hm,
                threads,
            );
        };
        let floor = pool.install(|| median(|| gemms(&mut z, &mut dh, &mut dw, None)));
        let ce = CrossEntropy::new(v);
        let unfused = pool.install(|| median(|| gemms(&mut z, &mut dh, &mut dw, Some(&ce))));
        let head = LinearCrossEntropy::new(ce.clone(), d);
        let fused = pool.install(|| {
            median(|| {
                let g = LinearGrads::new(&mut dh, &mut dw);
                head.forward_backward(&h, &w, None, &t, g).unwrap();
            })
        });
        for (name, secs) in [
            ("gemm floor", floor),
            ("unfused", unfused),
            ("fused", fused),
        ] {
            println!(
                "{threads:7}  {name:10}  {secs:8.3}  {:7.1}  {:7.1}%",
                flops / secs / 1e9,
                100.0 * floor / secs,
            );
        }
    }
    let inputs = ((n * d + v * d) * 2 * 4) as f64 / (1u64 << 20) as f64;
    println!("extra peak memory of one call (inputs and gradients, {inputs:.1} MiB, excluded):");
    let exe = std::env::current_exe().expect("the program's path");
    for variant in ["unfused", "fused"] {
        let out = std::process::Command::new(&exe)
            .args([
                "--peak",
                variant,
                &n.to_string(),
                &v.to_string(),
                &d.to_string(),
            ])
            .output()
            .expect("a child process");
        let mib = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("  {variant:8} {mib:>8} MiB");
    }
}
