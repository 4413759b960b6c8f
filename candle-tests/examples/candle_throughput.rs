//! Forward + backward through candle's autograd: `xent::candle::cross_entropy` against
//! `candle_nn::loss::cross_entropy`, on 1 and 2 threads, in one run, with where the time
//! goes.
//!
//! ```text
//! cargo run --release -p xent-candle-tests --example candle_throughput -- [ROWSxCLASSES]
//!     [--dtype f32|bf16|f16] [--repeats N] [--quick]
//! ```
//!
//! Default 2048x32000 f32, 7 repeats; medians in seconds. Columns:
//! - `candle-nn`, `xent`: a training step's loss part, `loss = f(logits)` then
//!   `loss.backward()` (and dropping the gradients), the logits a `Var`;
//! - `x`: candle-nn / xent;
//! - `fwd`, `bwd`: the xent step split at the backward call;
//! - `kernel`: `forward_backward_into` (or the 16-bit in-place call) into a buffer that is
//!   already mapped: the crate alone;
//! - `fresh`: one fresh buffer of the logits' size, written once: the page faults of the
//!   op's own output, which candle takes ownership of (and frees after the backward), so
//!   it cannot be a buffer reused from the last step;
//! - `floor`: what candle's `backward()` does around any op, by itself: a zero tensor of the
//!   logits' size plus the op's gradient added to it (a fresh buffer and a pass);
//! - `of least`: (kernel + fresh + floor) / xent: kernel + fresh + floor is the least an op
//!   that hands candle its gradient can take through candle's autograd; the share says how
//!   close the op comes.

use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;
use std::time::Instant;
use xent_candle_tests::{Rng, batch};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median time of `f` over `repeats` runs, after one warm-up run.
fn time(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        v.push(start.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

struct Args {
    rows: usize,
    classes: usize,
    dtype: DType,
    repeats: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        rows: 2048,
        classes: 32000,
        dtype: DType::F32,
        repeats: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => (a.rows, a.repeats) = (256, 3),
            "--repeats" => a.repeats = it.next().ok_or("--repeats N")?.parse()?,
            "--dtype" => {
                a.dtype = match it.next().as_deref() {
                    Some("f32") => DType::F32,
                    Some("bf16") => DType::BF16,
                    Some("f16") => DType::F16,
                    _ => return Err("--dtype f32|bf16|f16".into()),
                }
            }
            "--help" | "-h" => {
                println!(
                    "candle_throughput [ROWSxCLASSES] [--dtype f32|bf16|f16] [--repeats N] [--quick]"
                );
                std::process::exit(0);
            }
            shape => {
                let (r, c) = shape.split_once('x').ok_or("a shape is ROWSxCLASSES")?;
                (a.rows, a.classes) = (r.parse()?, c.parse()?);
            }
        }
    }
    Ok(a)
}

/// One loss-and-backward step through `loss_fn`, dropping everything before returning.
fn step(
    logits: &Var,
    targets: &Tensor,
    loss_fn: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<()> {
    let loss = loss_fn(logits.as_tensor(), targets)?;
    let grads = loss.backward()?;
    assert!(grads.get(logits.as_tensor()).is_some());
    Ok(())
}

/// The 16-bit kernel alone: a copy of the logits into a mapped buffer, then the in-place
/// call (the op does the same into a fresh one).
fn half_kernel<H>(r: usize, ce: &xent::CrossEntropy, logits: &Var, t: &[u32]) -> Result<f64>
where
    H: xent::HalfFloat + candle_core::WithDType,
{
    let z: Vec<H> = logits.flatten_all()?.to_vec1()?;
    let mut g = z.clone();
    time(r, || {
        g.copy_from_slice(&z);
        ce.forward_backward_half(&mut g, t)?;
        Ok(())
    })
}

fn row(a: &Args, logits: &Var, targets: &Tensor) -> Result<String> {
    let r = a.repeats;
    let nn = time(r, || step(logits, targets, candle_nn::loss::cross_entropy))?;
    let ours = time(r, || step(logits, targets, xent::candle::cross_entropy))?;
    // The same step, split at the backward call.
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for _ in 0..=r {
        let start = Instant::now();
        let loss = xent::candle::cross_entropy(logits.as_tensor(), targets)?;
        let mid = Instant::now();
        drop(loss.backward()?);
        fwd.push((mid - start).as_secs_f64());
        bwd.push(mid.elapsed().as_secs_f64());
    }
    // The crate alone, into a mapped buffer.
    let ce = xent::CrossEntropy::new(a.classes);
    let t: Vec<u32> = targets.to_vec1()?;
    let kernel = match a.dtype {
        DType::F32 => {
            let z: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            let mut g = vec![1.0f32; z.len()];
            time(r, || {
                ce.forward_backward_into(&z, &t, &mut g)?;
                Ok(())
            })?
        }
        DType::BF16 => half_kernel::<xent::half::bf16>(r, &ce, logits, &t)?,
        _ => half_kernel::<xent::half::f16>(r, &ce, logits, &t)?,
    };
    // candle's backward around any op: zeros_like, then an add into a fresh tensor.
    let grad = logits.as_tensor().ones_like()?;
    let floor = time(r, || {
        drop(grad.zeros_like()?.add(&grad)?);
        Ok(())
    })?;
    let bytes = a.rows * a.classes * a.dtype.size_in_bytes();
    let fresh = time(r, || {
        // Touched on every thread, as the kernel's stores touch it.
        let mut v = vec![0u8; bytes];
        v.par_chunks_mut(4096).for_each(|page| page[0] = 1);
        drop(std::hint::black_box(v));
        Ok(())
    })?;
    Ok(format!(
        "| {} | {nn:.4} | {ours:.4} | {:.1} | {:.4} | {:.4} | {kernel:.4} | {fresh:.4} | {floor:.4} | {:.0}% |",
        rayon::current_num_threads(),
        nn / ours,
        median(fwd),
        median(bwd),
        100.0 * (kernel + fresh + floor) / ours,
    ))
}

fn main() -> Result<()> {
    let a = parse()?;
    let mut rng = Rng::new(2024);
    let (logits, targets) = batch(&mut rng, a.rows, a.classes, 4.0, a.dtype)?;
    let logits = Var::from_tensor(&logits)?;
    println!(
        "{}x{} {:?}, medians of {} (seconds)\n",
        a.rows, a.classes, a.dtype, a.repeats
    );
    println!("| threads | candle-nn | xent | x | fwd | bwd | kernel | fresh | floor | of least |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        println!("{}", pool.install(|| row(&a, &logits, &targets))?);
    }
    Ok(())
}
