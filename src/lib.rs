//! # xent: fused softmax cross-entropy on SIMD CPUs
//!
//! For rows of `C` logits `z` with integer targets `t`, xent computes in one fused sweep
//! the loss, the gradient `dLoss/dz` (written over the logits or into a buffer), and the
//! number of rows whose argmax equals the target.
//!
//! ```
//! use xent::{CrossEntropy, Reduction};
//! let ce = CrossEntropy::new(4).reduction(Reduction::Mean).ignore_index(-100);
//! let mut logits = vec![
//!     1.0, 2.0, 0.5, -1.0, // row 0, target 1
//!     0.0, 0.0, 0.0, 9.0,  // row 1, ignored
//! ];
//! let loss = ce.forward_backward(&mut logits, &[1i64, -100])?;
//! assert_eq!((loss.rows, loss.correct), (1, 1));
//! assert!(loss.value > 0.0 && loss.value < 1.0);
//! assert_eq!(&logits[4..], &[0.0; 4]); // ignored row: zero gradient
//! # Ok::<(), xent::Error>(())
//! ```
//!
//! ## The maths
//!
//! With `p = softmax(z)` and `m = max_j z_j`:
//!
//! ```text
//! lse(z)     = m + ln sum_j exp(z_j - m)            (stable for any finite input)
//! loss(z, t) = lse(z) - z_t
//! dloss/dz_j = p_j - [j = t]
//! ```
//!
//! Options follow PyTorch's `F.cross_entropy`: [`Reduction::Mean`] (divided by the sum of
//! the counted rows' target weights) or [`Reduction::Sum`]; an ignore index; label
//! smoothing `eps`, which makes the row loss `(1-eps) w_t (lse - z_t) + eps/C sum_j w_j
//! (lse - z_j)`; and per-class weights `w`. [`mod@reference`] spells every formula out in f64.
//!
//! ## Language-model heads
//!
//! * [`CrossEntropy::z_loss`] (PaLM) adds `zc lse^2` per counted row, reported alone in
//!   [`Loss::z_loss`]; [`CrossEntropy::softcap`] (Gemma 2) computes on `cap tanh(z / cap)`
//!   with the chain rule in the gradient. Both are fused into the same three passes.
//! * [`RowOutputs`] with [`forward_with`](CrossEntropy::forward_with) gives per-row losses
//!   ([`Reduction::None`]), log-sum-exp and predicted classes (which outlive the logits
//!   that the gradient overwrites); [`CrossEntropy::backward`] forms the gradient for
//!   per-row upstream gradients from a saved log-sum-exp in one pass.
//! * Half precision and vocabulary shards: the next two sections.
//! * [`LinearCrossEntropy`] (cargo feature `linear`, on by default) fuses the output
//!   layer: loss and the gradients of the hidden states, weight and bias from
//!   `hidden`, `weight`, `bias` and the targets, in row chunks whose logits fit a memory
//!   budget, so the `N x V` logits never exist (its module docs: the passes and the
//!   memory).
//!
//! ## Half precision (bf16, f16)
//!
//! [`CrossEntropy::forward_half`],
//! [`forward_backward_half`](CrossEntropy::forward_backward_half), their `_with` forms and
//! [`backward_half`](CrossEntropy::backward_half) take [`half::bf16`] or [`half::f16`]
//! logits and write the gradient back in the same type. Rows of 128 to 131 072 classes
//! without label smoothing (soft-capped or not) are read in 16-bit: the passes widen each
//! vector of logits in registers as they load it, the row's exps go to an f32 scratch row
//! in L1 or L2, and the gradient is narrowed block by block as it is formed, rounding to
//! nearest even. Other rows are cut into tiles of whole rows of about 64 K logits; each
//! tile is widened into an f32 scratch buffer (256 KiB) that stays in L2, the f32 kernels
//! run on it in place, and the gradient is narrowed back over the 16-bit logits. The
//! scratch is per thread and reused (no allocation after a thread's first call). Either
//! way DRAM sees one 2-byte read and one 2-byte write per logit. Every value is computed
//! in f32: the target entry `(p_t - 1) / N` is formed from the row statistics and rounded
//! to 16 bits once, instead of losing its bits to the cancellation `p_t - 1` would suffer
//! in bf16. Loss, per-row outputs and gradient are those of the f32 call on the widened
//! logits, rounded.
//!
//! ```
//! use xent::half::bf16;
//! let ce = xent::CrossEntropy::new(3);
//! let mut z: Vec<bf16> = [2.0f32, 0.5, -1.0].iter().map(|&v| bf16::from_f32(v)).collect();
//! let loss = ce.forward_backward_half(&mut z, &[0u32])?;
//! assert!(z[0].to_f32() < 0.0 && z[1].to_f32() > 0.0); // p - onehot, in bf16
//! # let _ = loss;
//! # Ok::<(), xent::Error>(())
//! ```
//!
//! ## Vocabulary shards
//!
//! When a head's vocabulary is split across workers, each holding the classes
//! `[offset, offset + width)` of every row ([`Shard`]), three steps give the loss and
//! gradient of the whole rows, the middle one being the trainer's own communication:
//!
//! 1. [`CrossEntropy::shard_stats`]: per row, the mergeable [`ShardStats`] of the local
//!    shard (one read: max, sum of exps, target logit if the target is local, argmax).
//! 2. Combine each row's statistics across shards: gathered, with [`ShardStats::merge`]
//!    (associative and commutative: any order, any tree); or with all-reduces, per row:
//!    MAX of `max`; SUM of `sum * exp(max - global max)`; SUM of the target logit over a
//!    zero default (exactly one worker holds it); MAX of the pair `(top, -argmax)`; with
//!    label smoothing, SUM of `smooth_sum + smooth_weight * (max - global max)` and of
//!    `smooth_weight`; and for the coverage, SUM of `classes`, MIN of `first`, MAX of `end`,
//!    bitwise XOR of `coverage` (the same for every row of a shard, so one all-reduce per
//!    call). So the messages are a few numbers per row, never the logits.
//! 3. [`CrossEntropy::shard_loss`] turns the merged statistics into the [`Loss`] (any
//!    worker can; it reads no logits; [`CrossEntropy::shard_loss_with`] also gives each
//!    row's loss), and [`CrossEntropy::shard_backward`] writes each shard's gradient in
//!    one more pass over the shard.
//!
//! The Python package's `xent.distributed.vocab_parallel_cross_entropy` runs these steps
//! over `torch.distributed`, with the all-reduces above.
//!
//! A shard merged twice, overlapping shards or a missing shard are errors, not a wrong
//! loss ([`Error::ShardOverlap`], [`Error::ShardCoverage`]). Each shard is read twice and
//! written once (the unsharded path reads once, keeping the row in cache between passes).
//!
//! ## Memory passes per row
//!
//! 1. read the row: max, argmax, target logit;
//! 2. `e = exp(z - max)`, summed, and stored in place (or into the gradient buffer);
//! 3. the stored `e` (still in L2) becomes `alpha e - beta`, the target entry last.
//!
//! From 16 384 classes (without smoothing or capping) passes 1 and 2 are one sweep, block
//! by block, with the exps taken relative to the running max and rescaled per segment in
//! pass 3. A large batch thus moves each logit through DRAM once in and once out. Rows
//! longer than 131 072 classes (512 KiB, more than L2 holds between passes) are processed in
//! 16 384-class blocks whose statistics are merged (online softmax), and the blocks are
//! spread across threads. Rows of at most 64 classes are processed 8 or 16 at a time, one
//! row per SIMD lane, so the per-row max, sums and log are vertical vector operations.
//!
//! ## Non-finite input (as PyTorch)
//!
//! * A NaN or +inf logit makes its row's loss and gradient NaN (and so the reduced loss).
//! * `-inf` logits are masks: exactly zero probability. A `-inf` target logit gives a
//!   +inf loss. A row of only `-inf` gives NaN.
//! * With label smoothing and class weights, a `-inf` logit of a class of weight 0 makes
//!   the smoothing term `0 * -inf`, NaN, as in PyTorch; that row's log-sum-exp stays
//!   finite.
//! * A row whose loss is NaN never counts as correct.
//! * A gradient coefficient past f32's range: the gradient is `alpha e - beta` with
//!   `alpha` (in which `2 zc lse` and the class weights enter) rounded to f32. Where
//!   logits, weights or the z-loss coefficient are so large that `alpha` passes
//!   `f32::MAX`, that row's gradient entries may be non-finite: +-inf, or NaN where `e_j`
//!   is 0 (`inf * 0`) or, with soft-capping, where the capping slope is 0. The row-group
//!   path (at most 64 classes, no z-loss) forms `alpha`'s numerator in f32 before dividing
//!   by the sum of exps, so with class weights near `f32::MAX` it overflows a little
//!   before `alpha` itself would. PyTorch's autograd gives the same for a z-loss written
//!   out (`zc * lse**2`, which overflows even earlier). The loss and log-sum-exp, formed
//!   in f64, keep their values.
//! * Ignored rows get a zero gradient whatever they hold.
//! * **Deliberate difference**: a mean over zero weight (every row ignored, an empty batch,
//!   or target weights summing to 0) gives `value == 0.0` and a zero gradient, where
//!   PyTorch gives NaN, which would silently poison a training run.
//!
//! ## Errors
//!
//! Every bad input is an [`Error`], never a panic, and every check runs before the first
//! store: a rejected in-place call leaves the logits exactly as they were.
//!
//! ## Kernels and dispatch
//!
//! [`Kernel::Auto`] picks, once per process, the fastest variant this CPU runs: AVX-512F,
//! then AVX2+FMA (with F16C, which x86-64-v3 requires beside them), then the portable
//! `wide` kernel (SSE2 / NEON). All are compiled into every build, so no `-C target-cpu`
//! flag is needed. Any variant can be forced with
//! [`CrossEntropy::kernel`], which is how the tests cover each one. The exp is a
//! table of eight powers of two and a cubic, with at most 2 ulp of error ([`exp`]
//! module).
//!
//! ## Threads and determinism
//!
//! Large batches (from 262 144 logits) are split across threads in chunks whose
//! boundaries depend only on the shape, and partial sums are added in chunk order. Results
//! are bit-identical for any thread count, and do not depend on the buffers' alignment.
//! Different kernel variants may differ in the last bits.
//!
//! The threads are rayon's: by default the current pool (the global one, as many threads
//! as cores). [`CrossEntropy::threads`] chooses per configuration: `1` keeps every call on
//! the calling thread, `n` gives the configuration a pool of `n` threads of its own, built
//! at its first call and shared by its clones. A parallel call with `n` threads runs on
//! the calling thread and `n - 1` of the pool's: the caller works its share rather than
//! sleeping until the pool is done.
//!
//! ```
//! let ce = xent::CrossEntropy::new(3).threads(2);
//! let mut logits = vec![0.5f32; 3 * 4096];
//! let loss = ce.forward_backward(&mut logits, &vec![1u32; 4096])?;
//! assert_eq!(loss.rows, 4096);
//! # Ok::<(), xent::Error>(())
//! ```
//!
//! To choose per call instead, run the call inside a pool of that size (built once and
//! reused); the call's `Result` comes out of `install`, so `?` goes after it:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
//! let ce = xent::CrossEntropy::new(3);
//! let mut logits = vec![0.5f32; 3 * 4096];
//! let targets = vec![1u32; 4096];
//! let loss = pool.install(|| ce.forward_backward(&mut logits, &targets))?;
//! assert_eq!(loss.rows, 4096);
//! # Ok(())
//! # }
//! ```
//!
//! Every kernel fits a thread with the default 2 MiB stack (rayon's workers, test
//! threads), whatever the caller's build profile. The kernels are instantiated in this
//! crate, at its own opt-level: an unoptimised caller of an optimised `xent` (a doctest
//! under `cargo test --release`, a dev profile that optimises only its dependencies)
//! compiles none of them. Each kernel, on the fused paths (rows grouped, one at a time,
//! linked, online; f32 and bf16):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use xent::{CrossEntropy, Kernel, half::bf16};
//! for kernel in Kernel::available() {
//!     for (rows, classes) in [(9, 100), (4, 1000), (3, 10_000), (2, 20_000)] {
//!         let run = move || {
//!             let ce = CrossEntropy::new(classes).kernel(kernel).threads(1);
//!             let targets = vec![1u32; rows];
//!             let mut h = vec![bf16::from_f32(0.5); rows * classes];
//!             ce.forward_backward_half(&mut h, &targets)?;
//!             let mut z = vec![0.5f32; rows * classes];
//!             ce.forward_backward(&mut z, &targets)
//!         };
//!         let thread = std::thread::Builder::new().stack_size(2 << 20).spawn(run)?;
//!         let loss = thread.join().expect("no stack overflow")?;
//!         assert_eq!(loss.rows, rows);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[allow(unsafe_code)]
mod arch;
#[cfg(feature = "candle")]
pub mod candle;
mod error;
pub mod exp;
mod kernel;
#[cfg(feature = "linear")]
mod linear;
mod loss;
mod ops;
mod options;
mod outputs;
mod parallel;
mod paths;
mod plan;
pub mod reference;
mod stats;
mod target;
mod threads;

pub use error::Error;
pub use half;
pub use kernel::Kernel;
#[cfg(feature = "linear")]
pub use linear::{DEFAULT_MEMORY_BUDGET, LinearCrossEntropy, LinearFloat, LinearGrads};
pub use loss::Loss;
pub use ops::half::HalfFloat;
pub use ops::shard::Shard;
pub use options::{CrossEntropy, Reduction};
pub use outputs::RowOutputs;
pub use stats::ShardStats;
pub use target::Target;

/// Row-wise softmax of `x` (rows of `classes`) in place, with [`Kernel::Auto`]; see
/// [`CrossEntropy::softmax`].
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`].
///
/// ```
/// let mut x = [1.0f32, 1.0];
/// xent::softmax(&mut x, 2)?;
/// assert_eq!(x, [0.5, 0.5]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax(x: &mut [f32], classes: usize) -> Result<(), Error> {
    CrossEntropy::new(classes).softmax(x)
}

/// Row-wise log-softmax of `x` in place; see [`CrossEntropy::log_softmax`].
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`].
///
/// ```
/// let mut x = [0.0f32, 0.0];
/// xent::log_softmax(&mut x, 2)?;
/// assert!((x[0] + std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax(x: &mut [f32], classes: usize) -> Result<(), Error> {
    CrossEntropy::new(classes).log_softmax(x)
}

/// Row-wise log-sum-exp of `x` into `out` (one per row); see [`CrossEntropy::logsumexp`].
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`], [`Error::OutputLength`].
///
/// ```
/// let mut out = [0.0f32];
/// xent::logsumexp(&[0.0, 0.0], 2, &mut out)?;
/// assert!((out[0] - std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn logsumexp(x: &[f32], classes: usize, out: &mut [f32]) -> Result<(), Error> {
    CrossEntropy::new(classes).logsumexp(x, out)
}

/// The README's code blocks, compiled and run as doctests so they stay true (with the
/// default `linear` feature, which the fused head's example needs).
#[cfg(all(doctest, feature = "linear"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
