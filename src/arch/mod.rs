//! The SIMD kernels: the only place in the crate with `unsafe`.
//!
//! # The kernel contract
//!
//! Every kernel variant implements the small [`Simd`] trait of vector primitives (load,
//! masked tail load, store, fused multiply-add, compare/select, power-of-two scaling). The
//! row algorithms are written once over that trait ([`math`], [`pass`], [`fused`],
//! [`small`], [`softmax`]), and each variant instantiates them behind one
//! `#[target_feature]` boundary per batch of rows (the [`instantiate_kernel!`] macro), so
//! the helpers inline into code compiled for that ISA.
//!
//! A row of `C` logits is processed in three passes:
//!
//! 1. **max pass**: read the row once for the maximum, as lane-wise maxima tested block by
//!    block ([`ARGMAX_BLOCK`](crate::paths::ARGMAX_BLOCK), 256 classes); the first index of
//!    the maximum (argmax) comes from rescanning the one block that first reached it,
//!    still in L1. NaN never wins, so the max is over the non-NaN entries; a NaN still
//!    poisons the row through pass 2.
//! 2. **exp pass**: `e = exp(z - max)`, summed into `S`, and stored (in place, or into the
//!    output buffer) when a gradient or softmax is wanted. With label smoothing the same pass
//!    also accumulates `sum_j w_j (z_j - max)`.
//! 3. **scale pass**: `g = alpha * e - beta_j` over the stored `e` (the row is in cache from
//!    pass 2 when it fits in L2), then the target entry is corrected last.
//!
//! Rows of 16 384 classes and more (64 KiB, beyond L1), without smoothing or capping, fuse
//! passes 1 and 2 block by block (`pass::online::online_pass`): a block's max, then its exps
//! while it is still in L1, relative to the running max. A block that raises the max opens
//! a segment; pass 3 scales each segment by `alpha exp(reference - max)`, so a row is read
//! from L2 (or DRAM) twice rather than three times. From 8192 to 32 768 classes (rows
//! beyond L1, three rows within L2), without smoothing or capping, a row's pass 3 runs
//! inside the next row's pass 2 (`paths::TRAIL_MAX_CLASSES`): alone it waits on the L2,
//! while the exps wait on the multiply-add pipes, so side by side they overlap.
//! The driver gives such rows chunks of up to eight rows, since a chunk's last row runs
//! its pass 3 alone.
//!
//! Rows longer than [`FUSED_MAX_CLASSES`](crate::paths::FUSED_MAX_CLASSES) are cut into blocks of [`BLOCK_CLASSES`](crate::paths::BLOCK_CLASSES): each block
//! yields mergeable statistics ([`BlockStats`]: max, sum of exps relative to it, argmax), the
//! row's statistics are merged in block order, and a second sweep writes the gradient from
//! `exp(z - max)` recomputed per block. Blocks are also the unit of parallel work for rows
//! too few to keep every thread busy.
//!
//! Rows of at most [`SMALL_MAX_CLASSES`](crate::paths::SMALL_MAX_CLASSES) classes take the row-group path instead
//! (`small::ce_small`): `LANES` rows at a time, one row per lane. A group's `LANES * C`
//! contiguous floats are loaded whole and transposed in registers
//! ([`Simd::load_columns`], [`Simd::load_block`]: AVX-512 uses `vpermps` with lane masks
//! for `C < 8` and a 16x16 shuffle transpose per 16 classes from 8, AVX2 an 8x8
//! transpose per 8 classes, the portable kernel strided accesses), so that class `j` of
//! every row sits in one vector and the max, the sum of exps, the log and the loss are
//! vertical operations: no horizontal reduction per row or per group (each lane keeps its
//! own f64 loss sum). Up to [`FIXED_MAX_CLASSES`](crate::paths::FIXED_MAX_CLASSES) the path is instantiated per class
//! count; above, one instance loops over a runtime count. Groups go in batches of 16:
//! first every group's exps and gradient (up to 12 classes, each gradient one group late,
//! after the next group's exps; from 8 classes two groups per step, which trade the two
//! arrays of exps rather than swap them), then every group's loss, so that the long dependent
//! chains of neighbouring groups overlap. Without class weights a batch takes one log per
//! lane, of the product of its rows' sums of exps (at most `64^16`, no overflow); with
//! them, one log per group. Targets are converted to f32 a batch at a time. The last,
//! partial group runs on a zero-padded local copy.
//!
//! # Tails
//!
//! A row's length is arbitrary. Full vectors are loaded while `i + LANES <= len`; the last
//! `len - i < LANES` elements go through [`Simd::load_tail`] / [`Simd::store_tail`], which
//! never touch memory past the row, the other lanes holding the pass's identity element.
//! AVX-512 uses masked loads and stores; AVX2 a masked load (`vmaskmovps`) and up to three
//! plain stores of 4, 2 and 1 lanes (AMD's masked stores are slow); the portable variant
//! copies through a stack buffer.
//!
//! # Determinism
//!
//! Which lane and which accumulator an element lands in depends only on its index in the
//! row, never on the row's address or on which thread runs it, so every result is a
//! function of the input values alone.
//!
//! # Inlining, and unoptimised builds
//!
//! The helpers carry `#[cfg_attr(not(debug_assertions), inline(always))]`: forced inline
//! in optimised builds (`.ci/check-inlining` verifies it), left to the compiler where
//! debug assertions are on. At opt-level 0 a forced-inline tree keeps every inlined
//! body's locals in separate stack slots: the AVX-512 `ce_rows` boundary's frame was
//! 3.2 MiB (AVX2 1.9 MiB), and a dependent's dev build crashed with a stack overflow on
//! a 2 MiB rayon worker. Without the forcing it is a few hundred bytes; the arithmetic,
//! written with explicit intrinsics, is the same.
//!
//! The attribute is read when this crate is compiled, but a generic function is compiled
//! where it is instantiated. So no entry point of [`instantiate_kernel!`] is generic: the
//! row callbacks of `ce_rows` and `ce_rows_half` are trait objects
//! ([`fused::PlanRows`], [`fused::RowsDone`]), and `ce_small`'s too. With generic
//! callbacks, an unoptimised caller of an optimised `xent` (a doctest under `cargo test
//! --release`, a dev profile that optimises only its dependencies) compiled the
//! forced-inline tree at opt-level 0: 4 MiB frames for AVX-512, 2.4 MiB for NEON, and a
//! stack overflow on a 2 MiB thread. The crate docs' "Threads and determinism" has a
//! doctest that runs every kernel on such a thread.

mod boundary;
pub(crate) mod convert;
pub(crate) mod fused;
mod io;
pub(crate) mod math;
pub(crate) mod pass;
pub(crate) mod portable;
mod simd;
pub(crate) mod small;
pub(crate) mod softmax;
pub(crate) mod targets;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

pub(crate) use boundary::instantiate_kernel;
pub(crate) use fused::{PlanRows, RowOut, RowPlan, RowsDone, RowsJob};
pub(crate) use io::{Beta, BlockStats, Io, Io16, Smooth};
pub(crate) use math::Cap;
pub(crate) use simd::Simd;

/// Calls the generic test function `$f` with every variant this CPU has (the portable
/// one always; `Kernel::Neon` runs the portable variant too), for unit tests of the
/// vector helpers below the kernel boundary.
#[cfg(test)]
macro_rules! on_every_variant {
    ($f:ident) => {{
        $f(crate::arch::portable::Portable::new());
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = crate::arch::x86_64::Avx2::try_new() {
                $f(s);
            }
            if let Some(s) = crate::arch::x86_64::Avx512::try_new() {
                $f(s);
            }
        }
    }};
}
#[cfg(test)]
pub(crate) use on_every_variant;

#[cfg(test)]
mod tests {
    use crate::{CrossEntropy, Kernel};

    /// Every kernel this CPU runs, on every path of the fused driver (row groups, three
    /// passes, linked and online rows, blocks; f32 and bf16), fits a thread with the default 2 MiB
    /// stack. It matters in the unoptimised `cargo test --lib`, where the boundaries'
    /// frames are largest (see the module docs).
    #[test]
    fn every_kernel_fits_a_default_thread_stack() {
        for kernel in Kernel::available() {
            for (rows, classes) in [(20, 10), (4, 1000), (3, 20_000), (2, 40_000), (1, 140_000)] {
                let run = move || {
                    let ce = CrossEntropy::new(classes).kernel(kernel).threads(1);
                    let mut z: Vec<f32> = (0..rows * classes).map(|i| (i % 7) as f32).collect();
                    let t: Vec<usize> = (0..rows).map(|i| i % classes).collect();
                    // bf16 too: long rows read 16-bit blocks (`fused::ce_rows_half`).
                    let mut h: Vec<half::bf16> =
                        z.iter().map(|&v| half::bf16::from_f32(v)).collect();
                    ce.forward_backward_half(&mut h, &t)?;
                    ce.forward_backward(&mut z, &t).map(|l| l.rows)
                };
                let got = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn(run)
                    .expect("spawn")
                    .join()
                    .expect("no stack overflow");
                assert_eq!(got, Ok(rows), "{kernel:?} {rows}x{classes}");
            }
        }
    }
}
