//! Passes 1 and 2 in one sweep for rows of at least `ONLINE_MIN_CLASSES` classes: block
//! by block, exps relative to the running max, in segments rescaled in pass 3.
//!
//! The row comes block by block from a [`RowBlocks`]: an f32 row read in place, or a
//! row of 16-bit logits widened in registers as the passes load it ([`HalfRow`]), whose
//! pass 3 ([`HalfGradient`]) narrows each block of the gradient as it forms it. A linked
//! row's pass 3 runs inside the next row's sweep, block by block ([`Trail`]).

use crate::arch::convert::HalfFormat;
use crate::arch::math::Cap;
use crate::arch::pass::exp::{Ahead, SMOOTH_OFF, TrailBlock, exp_pass_mode};
use crate::arch::pass::map::scale_pass;
use crate::arch::pass::max::{first_equal, lane_max};
use crate::arch::pass::{Half16, Logits};
use crate::arch::{Beta, Simd};
use crate::paths::{FUSED_MAX_CLASSES, MAX_BLOCK};

/// The most segments [`online_pass`] can open on one row: one per block.
pub(crate) const ONLINE_MAX_SEGMENTS: usize = FUSED_MAX_CLASSES.div_ceil(MAX_BLOCK);

/// A run of blocks of one row whose exps [`online_pass`] took relative to one reference
/// value (the running max when the run began).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    /// Offset of the run's first class in the row.
    pub(crate) start: usize,
    /// The reference: the run's exps are `exp(z_j - reference)`.
    pub(crate) reference: f32,
    /// Their sum.
    pub(crate) sum: f32,
}

impl Segment {
    pub(crate) const EMPTY: Segment = Segment {
        start: 0,
        reference: 0.0,
        sum: 0.0,
    };
}

/// Passes 1 and 2 in one sweep, block by block (`MAX_BLOCK` classes, in L1): the block's
/// max, then `e_j = exp(z_j - reference)` over the block while it is still in L1, where
/// the reference is the running max. A block that raises the running max opens a new
/// segment. Returns `(max, argmax, sum)` with `sum = sum_j exp(z_j - max)`, combined in
/// f64 as `sum_k S_k exp(reference_k - max)`, and the number of segments written to
/// `segs` (at least 1 for `n > 0`).
///
/// The exps only ever see `z - reference <= 0` (a strict rise opens a segment), the same
/// domain and error as the three-pass form; the gradient of segment `k` is its stored
/// `e_j` times `alpha exp(reference_k - max)`, one rounding more on a factor computed in
/// f64. The argmax is the three-pass one, the first index of the max: the winning block
/// is the last that raised the max (the same strict test as
/// [`max_argmax`](crate::arch::pass::max::max_argmax), on longer blocks); it is rescanned
/// when it raises the max, while it is in L1 and before its exps overwrite it in place.
///
/// A reference of -inf (every entry so far -inf or NaN) is replaced by 0 for the exps:
/// they are 0 (or NaN) either way, and the segment's factor `exp(-inf - max)` is 0 (NaN
/// when the max is -inf too, as the three-pass sum is then NaN).
///
/// The same sweep also forms the gradient of `trail`, the row before (of the same
/// length), block by block (see [`Trail`]): a [`TrailRow`] hands block `b` of it to the
/// exp loop of block `b` of this row, which scales it alongside (`TRAIL`, see
/// [`TRAIL_MAX_CLASSES`](crate::paths::TRAIL_MAX_CLASSES)); a [`HalfGradient`] forms
/// and narrows its block `b` before that loop (`TRAIL` off); [`NoTrail`] does nothing.
///
/// # Safety
/// `src`'s row holds `n` readable classes; if `STORE`, `dst..dst + n` writable (it may
/// be the f32 row `src` reads); `n <= FUSED_MAX_CLASSES`. `trail` a row of `n` classes
/// (its contract), its memory disjoint from both; `TRAIL` only with a [`TrailRow`].
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn online_pass<
    S: Simd,
    R: RowBlocks<S>,
    T: Trail<S>,
    const STORE: bool,
    const TRAIL: bool,
>(
    s: S,
    mut src: R,
    dst: *mut f32,
    n: usize,
    segs: &mut [Segment; ONLINE_MAX_SEGMENTS],
    mut trail: T,
) -> (f32, usize, f32, usize) {
    let mut nseg = 0;
    let (mut best, mut am) = (f32::NEG_INFINITY, 0);
    let mut b = 0;
    while b < n {
        let len = (n - b).min(MAX_BLOCK);
        // SAFETY: bounds: `b + len <= n`, the row's length (caller's obligation).
        let (blk, next) = unsafe { src.block(b, len) };
        // SAFETY: bounds: `blk`'s entries `0..len` readable (`RowBlocks` contract).
        let m = s.reduce_max(unsafe { lane_max(s, blk, len) });
        if nseg == 0 || m > best {
            if m > best {
                best = m;
                // The argmax now, while the block is in L1 and before its exps may
                // overwrite it (in place).
                // SAFETY: bounds: `blk`'s entries `0..len` readable.
                let k = unsafe { first_equal(s, blk, len, m) };
                // `m` is an entry of the block, so `k < len`.
                am = b + if k < len { k } else { 0 };
            }
            // At most one segment per block, and `n <= FUSED_MAX_CLASSES`.
            let seg = &mut segs[nseg.min(ONLINE_MAX_SEGMENTS - 1)];
            *seg = Segment {
                start: b,
                reference: best,
                sum: 0.0,
            };
            nseg += 1;
        }
        let reference = if best == f32::NEG_INFINITY { 0.0 } else { best };
        // SAFETY: bounds: `b + len <= n`, blocks in order on the `MAX_BLOCK` grid (the
        // trail's contract).
        let tr = unsafe { trail.block(s, b, len) };
        // SAFETY: bounds: `blk`'s entries `0..len` readable, `[b, b + len)` of `dst`; no
        // smoothing weights read.
        let (sum, _) = unsafe {
            exp_pass_mode::<S, _, STORE, SMOOTH_OFF, false, TRAIL>(
                s,
                blk,
                dst.wrapping_add(b),
                len,
                reference,
                core::ptr::null(),
                Cap::NONE,
                next,
                tr,
            )
        };
        segs[(nseg - 1).min(ONLINE_MAX_SEGMENTS - 1)].sum += sum;
        b += len;
    }
    let mut total = 0.0f64;
    for seg in &segs[..nseg.min(ONLINE_MAX_SEGMENTS)] {
        total += f64::from(seg.sum) * segment_factor(seg.reference, best);
    }
    (best, am, total as f32, nseg.min(ONLINE_MAX_SEGMENTS))
}

/// Where [`online_pass`] reads a row from, one block at a time: the f32 row itself
/// ([`F32Row`]), or 16-bit logits widened in registers ([`HalfRow`]).
pub(crate) trait RowBlocks<S: Simd> {
    /// What the passes load a block from.
    type Block: Logits<S>;
    /// Classes `b..b + len` of the row as `len` readable logits (valid until the next
    /// call), and where pass 2 of that block prefetches from.
    ///
    /// # Safety
    /// `b + len` is at most the row's length, `len <= MAX_BLOCK`, and blocks are asked
    /// for in order.
    unsafe fn block(&mut self, b: usize, len: usize) -> (Self::Block, Ahead);
}

/// An f32 row read in place, and the next row's lines to prefetch alongside.
#[derive(Clone, Copy)]
pub(crate) struct F32Row {
    pub(crate) src: *const f32,
    pub(crate) next: Ahead,
}

impl<S: Simd> RowBlocks<S> for F32Row {
    type Block = *const f32;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn block(&mut self, b: usize, _: usize) -> (*const f32, Ahead) {
        (self.src.wrapping_add(b), self.next.add(b))
    }
}

/// A row of 16-bit logits (bf16 when `BF16`, else f16), which the passes widen in
/// registers as they load it ([`Half16`]), the next row's 16-bit lines of each block
/// prefetched as the block is handed out. The widening is exact, so the passes see the
/// same f32 values as on a widened copy of the row, in the same blocks.
///
/// Against widening each block into an f32 buffer in L1 first, this saves a store and a
/// load per vector, for a second widening (both sweeps over the block, its max and its
/// exps, widen what they load). On rows in L2 (4x32000 and 2x65536, one thread, a Zen 5,
/// ten alternating runs) bf16 `forward_backward` took 0.154-0.160 ns per logit against
/// 0.151-0.179 (medians 0.157-0.159 against 0.170-0.172) with the narrowing of
/// `Avx512::narrow` unrolled as well; the fastest runs were alike.
pub(crate) struct HalfRow<S, const BF16: bool> {
    s: S,
    src: *const u16,
    /// The next row's first 16-bit logit (for prefetching only; may be past the end).
    next: *const u16,
}

impl<S: Simd, const BF16: bool> HalfRow<S, BF16> {
    /// # Safety
    /// `src` holds the row's 16-bit logits, readable for the row's length while the value
    /// is used.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn new(s: S, src: *const u16, next: *const u16) -> Self {
        HalfRow { s, src, next }
    }
}

impl<S: Simd, const BF16: bool> RowBlocks<S> for HalfRow<S, BF16> {
    type Block = Half16<BF16>;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn block(&mut self, b: usize, len: usize) -> (Half16<BF16>, Ahead) {
        // One prefetch per 64-byte line (32 logits); addresses only, never dereferenced.
        let ahead = self.next.wrapping_add(b);
        for k in (0..len).step_by(32) {
            self.s.prefetch(ahead.wrapping_add(k).cast());
        }
        // `b + len` is at most the row's length (the trait's contract), and `src` holds
        // the row (`new`'s contract), so the block's entries `0..len` are readable.
        (Half16(self.src.wrapping_add(b)), Ahead::NONE)
    }
}

/// Pass 3 of a row of 16-bit logits whose exps [`online_pass`] stored in an f32 row, one
/// block of `MAX_BLOCK` classes at a time: `g_j = a_k e_j` with segment `k`'s coefficient
/// `a_k = alpha exp(reference_k - max)` rounded to f32 (as the f32 rows form it), narrowed
/// into the 16-bit gradient as it is formed, in registers (`Simd::narrow`'s scale). The
/// target's block alone is scaled in place first, so that the target entry
/// ([`TargetEntry`]) is finished on the f32 value before it is narrowed. Against scaling
/// every block in place and narrowing it after, this saves a store and a load per vector:
/// bf16 `forward_backward` took 7-15% less time (Zen 4, BENCHMARKS.md). Narrowing each
/// block inside the next row's exp loop instead, as the f32 trailing row is scaled there,
/// gained 3-5% on rows in L2 and nothing clear from DRAM on the Zen 5 host (BENCHMARKS.md,
/// eighteenth session); bf16 needs `vcvtneps2bf16` for it, outside the kernel's `avx512f`
/// boundary.
pub(crate) struct HalfGradient<'a> {
    format: HalfFormat,
    exps: *mut f32,
    dst: *mut u16,
    coef: Coefficients<'a>,
    target: usize,
    entry: TargetEntry,
}

/// How [`HalfGradient`] finishes the target entry `g_t`, onto the f32 value that the scale
/// of its block left there (the f32 rows' pass 3 finishes it the same way, stored last).
#[derive(Clone, Copy, Debug)]
pub(crate) enum TargetEntry {
    /// `g_t = a e_t - tfix`: the correction onto the stored probability term.
    Subtract(f32),
    /// `g_t` formed apart from the row's statistics, written over the scaled value (a
    /// soft-capped row's, `capped_target_grad`).
    Value(f32),
}

impl<'a> HalfGradient<'a> {
    /// # Safety
    /// `exps..exps + n` readable and writable, holding the exps of a row of `n` classes
    /// whose segments are `segs` (at least one, the first at 0, as [`online_pass`]
    /// returns them); `dst..dst + n` writable, disjoint from it; `target < n`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn new(
        format: HalfFormat,
        exps: *mut f32,
        dst: *mut u16,
        segs: &'a [Segment],
        (max, alpha): (f32, f64),
        (target, entry): (usize, TargetEntry),
    ) -> Self {
        HalfGradient {
            format,
            exps,
            dst,
            coef: Coefficients::new(segs, max, alpha),
            target,
            entry,
        }
    }

    /// Forms block `b..b + len`.
    ///
    /// # Safety
    /// `b + len` at most the row's length; blocks in order, on the `MAX_BLOCK` grid.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn form<S: Simd>(&mut self, s: S, b: usize, len: usize) {
        let (format, a) = (self.format, self.coef.at(b));
        // SAFETY: bounds: `b + len` inside the row of exps and of `dst`, which are
        // disjoint (`new`'s contract), and `target` inside the row.
        unsafe {
            let e = self.exps.add(b);
            let dst = core::slice::from_raw_parts_mut(self.dst.add(b), len);
            if (b..b + len).contains(&self.target) {
                // The target's block is scaled in place so that its entry is finished
                // last, in f32.
                scale_pass(s, e, len, a, Beta::Zero);
                let et = self.exps.add(self.target);
                *et = match self.entry {
                    TargetEntry::Subtract(tfix) => *et - tfix,
                    TargetEntry::Value(g) => g,
                };
                s.narrow(format, core::slice::from_raw_parts(e, len), 1.0, dst);
            } else {
                // Every other block is scaled as it is narrowed, in registers: the same
                // f32 products, without storing them.
                s.narrow(format, core::slice::from_raw_parts(e, len), a, dst);
            }
        }
    }

    /// Forms every block of a row of `n` classes.
    ///
    /// # Safety
    /// `n` is the row's length.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn all<S: Simd>(mut self, s: S, n: usize) {
        let mut b = 0;
        while b < n {
            let len = (n - b).min(MAX_BLOCK);
            // SAFETY: bounds: `b + len <= n`, blocks in order on the grid.
            unsafe { self.form(s, b, len) };
            b += len;
        }
    }
}

impl<S: Simd> Trail<S> for HalfGradient<'_> {
    /// Forms block `b..b + len` of the gradient (before this row's block, so the two rows'
    /// sweeps of L2 interleave block by block).
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn block(&mut self, s: S, b: usize, len: usize) -> TrailBlock {
        // SAFETY: bounds: the trait's contract is `form`'s.
        unsafe { self.form(s, b, len) };
        TrailBlock::NONE
    }
}

/// The row whose gradient [`online_pass`] forms while it computes the next row's exps
/// (the trailing row), one block at a time.
pub(crate) trait Trail<S: Simd> {
    /// Block `b..b + len` of the trailing row, before this row's exps of the same block:
    /// formed here (returning [`TrailBlock::NONE`]), or handed back for the exp loop to
    /// scale alongside its exps.
    ///
    /// # Safety
    /// `b + len` at most the row's length; blocks in order, on the `MAX_BLOCK` grid.
    unsafe fn block(&mut self, s: S, b: usize, len: usize) -> TrailBlock;
}

/// No trailing row.
pub(crate) struct NoTrail;

impl<S: Simd> Trail<S> for NoTrail {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn block(&mut self, _: S, _: usize, _: usize) -> TrailBlock {
        TrailBlock::NONE
    }
}

/// A trailing f32 row scaled in place inside the exp loop: where its exps are stored, its
/// segments, its max, and its gradient coefficient `alpha` (before the segments'
/// factors). The target's correction is left to the caller.
pub(crate) struct TrailRow<'a> {
    dst: *mut f32,
    coef: Coefficients<'a>,
}

impl<'a> TrailRow<'a> {
    /// # Safety
    /// `dst..dst + n` readable and writable, holding the exps of a row of `n` classes
    /// whose segments are `segs` (at least one, the first at 0, as [`online_pass`]
    /// returns them).
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn new(dst: *mut f32, segs: &'a [Segment], m: f32, alpha: f64) -> Self {
        TrailRow {
            dst,
            coef: Coefficients::new(segs, m, alpha),
        }
    }
}

impl<S: Simd> Trail<S> for TrailRow<'_> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn block(&mut self, _: S, b: usize, _: usize) -> TrailBlock {
        TrailBlock {
            dst: self.dst.wrapping_add(b),
            alpha: self.coef.at(b),
        }
    }
}

/// The gradient coefficients of a row's segments, block by block in order: segment `k`'s
/// `a_k = alpha exp(reference_k - max)` rounded to f32, as `row_gradient` forms it.
struct Coefficients<'a> {
    segs: &'a [Segment],
    max: f32,
    alpha: f64,
    /// The segment of the last block asked for, and its coefficient.
    k: usize,
    a: f32,
}

impl<'a> Coefficients<'a> {
    /// `segs` at least one segment, the first at 0 (as [`online_pass`] returns them).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn new(segs: &'a [Segment], max: f32, alpha: f64) -> Self {
        let a = (alpha * segment_factor(segs[0].reference, max)) as f32;
        Coefficients {
            segs,
            max,
            alpha,
            k: 0,
            a,
        }
    }

    /// The coefficient of the block starting at `b`, asked for in order: segments start
    /// on block boundaries, in order, so the one holding `b` is at or after the last.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn at(&mut self, b: usize) -> f32 {
        while self.segs.get(self.k + 1).is_some_and(|g| g.start <= b) {
            self.k += 1;
            let seg = self.segs[self.k];
            self.a = (self.alpha * segment_factor(seg.reference, self.max)) as f32;
        }
        self.a
    }
}

/// `exp(reference - max)` in f64: the factor that puts a segment's exps on the row's max.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn segment_factor(reference: f32, max: f32) -> f64 {
    (f64::from(reference) - f64::from(max)).exp()
}
