//! The row algorithms, written once over [`Simd`] and instantiated per kernel variant.
//!
//! Every function here is `#[inline(always)]` so that it is compiled inside the variant's
//! `#[target_feature]` boundary (see `instantiate_kernel!`). Pointer preconditions are
//! stated per function; the callers in this crate derive every pointer and length from
//! live slices.

use super::{
    Beta, BlockStats, FIXED_MAX_CLASSES, FUSED_MAX_CLASSES, SMALL_MAX_CLASSES, Simd, Smooth,
};
use crate::exp::{
    EXP_CLAMP_HI, EXP_Q, EXP_UNDERFLOW, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC, TANH_P, TANH_SMALL_MAX,
};

/// Per-call constants of the fused cross-entropy rows.
pub(crate) struct RowsJob<'a> {
    /// Classes per row.
    pub classes: usize,
    /// What the exp pass accumulates besides the sum (label smoothing).
    pub smooth: Smooth<'a>,
    /// The per-class constant of the gradient (label smoothing); weights span a whole row.
    pub beta: Beta<'a>,
    /// Logit soft-capping, if any.
    pub cap: Option<Cap>,
    /// Where to prefetch from while a row is computed: `(address of the chunk's row 0,
    /// bytes per row)` of the memory the next rows really come from (the 16-bit logits
    /// when the rows are an f32 tile widened from them); `None` prefetches the next row
    /// of `src`. Addresses only: a prefetch never faults and nothing is dereferenced.
    pub prefetch: Option<(usize, usize)>,
}

/// Logit soft-capping `z -> cap tanh(z / cap)` (Gemma 2), with `inv = 1 / cap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cap {
    pub cap: f32,
    pub inv: f32,
}

impl Cap {
    /// Placeholder for loops instantiated without capping (never read).
    const NONE: Cap = Cap { cap: 1.0, inv: 1.0 };
}

/// One row's target and gradient coefficients, from the driver.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowPlan {
    /// The target class, or `None` for an ignored row (no loss, gradient zero).
    pub target: Option<usize>,
    /// The gradient is `g_j = (grad_a / S) e_j - beta_j`, then `g_t -= tfix`.
    pub grad_a: f64,
    /// z-loss: `2 coefficient scale`; the gradient gains `zloss lse p_j`.
    pub zloss: f64,
    pub tfix: f32,
    /// Write a zero gradient for this row (mean over a zero total weight).
    pub zero_grad: bool,
}

/// One counted row's statistics, for the driver to form the loss.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowOut {
    pub stats: BlockStats,
    /// `z_t`, read in pass 1 before anything is overwritten.
    pub target_logit: f32,
}

/// The smoothing sum `sum_j w_j (z_j - max)` is accumulated at this scale (an exact power
/// of two) so that it cannot overflow f32 even when the logits span +-3.4e38; it is
/// scaled back in f64.
const WSUM_SCALE: f32 = 1.0 / 18_446_744_073_709_551_616.0; // 2^-64
const WSUM_UNSCALE: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// The fast exp (see `crate::exp` for the derivation and error bound): Cody-Waite range
/// reduction in eighths `x = (k + j/8) ln2 + r`, `2^(j/8)` from an eight-entry table, a
/// cubic for `e^r`, and `2^k` applied exactly.
///
/// The domain is the kernels' one: `x <= EXP_CLAMP_HI`, or NaN (`z - max` is never
/// positive). Inputs below the underflow threshold, -inf included, whatever garbage the
/// reduction makes of them, are replaced by exactly 0 at the end; `scale_pow2` saturates
/// `k` so nothing else can go wrong on the way.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::F) -> S::F {
    exp_with::<S, false>(s, x)
}

/// [`exp`] for `x <= EXP_SMALL_MAX` (or NaN), which covers every `z - max`: there
/// `floor(n) <= 127`, and variants without a scaling instruction build `2^floor(n)` in one
/// step from the rounding's own bits (see [`Simd::scale_pow2_small_unless_below`]).
/// Bit-identical to [`exp`] on that domain.
#[inline(always)]
pub(crate) fn exp_small<S: Simd>(s: S, x: S::F) -> S::F {
    exp_with::<S, true>(s, x)
}

/// The largest input of [`exp_small`]: `n` (`x / ln2` to the nearest eighth) stays below
/// 128, so `floor(n) <= 127`, below `127.9375 ln 2 = 88.68...`.
const EXP_SMALL_MAX: f32 = 88.0;

#[inline(always)]
fn exp_with<S: Simd, const SMALL: bool>(s: S, x: S::F) -> S::F {
    // n = x / ln2 rounded to the nearest eighth: adding 1.5 * 2^20 leaves three fraction
    // bits, and `t` then holds 8n in its low mantissa bits.
    let magic = s.splat(ROUND_MAGIC);
    let t = s.mul_add(x, s.splat(LOG2E), magic);
    let n = s.sub(t, magic);
    let r = s.mul_add(n, s.splat(-LN2_HI), x);
    let r = s.mul_add(n, s.splat(-LN2_LO), r);
    // 2^(j/8) for j = 8n mod 8, then T e^r = T + (T r) q(r).
    let table = s.exp2_eighths(t);
    let q = s.mul_add(s.splat(EXP_Q[1]), r, s.splat(EXP_Q[0]));
    let q = s.mul_add(q, r, s.splat(1.0));
    let y = s.mul_add(s.mul(table, r), q, table);
    let lo = s.splat(EXP_UNDERFLOW);
    if SMALL {
        s.scale_pow2_small_unless_below(y, n, t, x, lo)
    } else {
        s.scale_pow2_unless_below(y, n, x, lo)
    }
}

/// [`exp`] over every f32: large inputs are clamped to `EXP_CLAMP_HI` first, where the
/// result has already overflowed to +inf (NaN is kept: comparisons with NaN are false).
/// Vectors with no lane above [`EXP_SMALL_MAX`] (all of them, in the kernels' use) take
/// [`exp_small`], so the exhaustive test over `[-104, 0]` checks the path the kernels run.
#[inline(always)]
fn exp_any<S: Simd>(s: S, x: S::F) -> S::F {
    if s.first_lane(s.gt(x, s.splat(EXP_SMALL_MAX))).is_none() {
        return exp_small(s, x);
    }
    let hi = s.splat(EXP_CLAMP_HI);
    exp(s, s.select(s.gt(x, hi), hi, x))
}

/// `tanh x` (see `crate::exp` for the derivation and the error bound, and
/// [`tanh_model`](crate::exp::tanh_model) for the same steps in scalar code): for
/// `|x| < TANH_SMALL_MAX` the odd polynomial `x + (x x^2) P(x^2)`, accurate in relative
/// terms down to the smallest subnormal; above, `1 - 2e / (1 + e)` with
/// `e = exp(-2 |x|)`, so the exp only sees its own domain (`<= 0`). The sign is put back
/// last, so the function is exactly odd; +-inf give +-1 and NaN stays NaN.
#[inline(always)]
pub(crate) fn tanh<S: Simd>(s: S, x: S::F) -> S::F {
    let (zero, one) = (s.splat(0.0), s.splat(1.0));
    let neg = s.lt(x, zero);
    let ax = s.select(neg, s.sub(zero, x), x);
    // Large arguments. `1 - 2e / (1 + e)` is exactly 1 once `e` is negligible
    // (saturation, +inf). A division rather than a reciprocal estimate: the scalar model
    // then gives the same bits.
    let e = exp_small(s, s.mul(ax, s.splat(-2.0)));
    let big = s.sub(one, s.div(s.add(e, e), s.add(one, e)));
    // Small arguments: `|x| + (|x| z) P(z)`, `z = x^2`; the correction is at most 0.13 of
    // `|x|`, so its rounding errors shrink by that much.
    let z = s.mul(ax, ax);
    let mut p = s.splat(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = s.mul_add(p, z, s.splat(c));
    }
    let small = s.mul_add(s.mul(ax, z), p, ax);
    let t = s.select(s.lt(ax, s.splat(TANH_SMALL_MAX)), small, big);
    s.select(neg, s.sub(zero, t), t)
}

/// `cap tanh(z / cap)`, with `z / cap` as `z * (1 / cap)`: `+-inf` give `+-cap`, NaN stays
/// NaN. Within `TANH_MAX_ULP + 1.5` ulp of the exact value relative (`crate::exp`): the
/// product `z (1 / cap)` carries at most one ulp (which `tanh`, whose relative condition
/// number is at most 1, passes on), the final product half of one. So a cap far above
/// every logit gives the logits back to within those few ulps.
#[inline(always)]
pub(crate) fn softcap<S: Simd>(s: S, z: S::F, c: Cap) -> S::F {
    s.mul(tanh(s, s.mul(z, s.splat(c.inv))), s.splat(c.cap))
}

/// [`softcap`] of one value, through the same vector code so it matches the lanes exactly.
#[inline(always)]
pub(crate) fn softcap_one<S: Simd>(s: S, z: f32, c: Cap) -> f32 {
    s.to_array(softcap(s, s.splat(z), c))[0]
}

/// The chain-rule factor of soft-capping at a capped value `y = cap tanh(z / cap)`:
/// `dy/dz = 1 - tanh^2 = 1 - (y / cap)^2`, within `13u` absolute. A saturated `y = +-cap`
/// gets exactly 0, as autograd through `tanh` gives (`y * (1 / cap)` alone could be an
/// ulp away from 1).
#[inline(always)]
fn softcap_slope<S: Simd>(s: S, y: S::F, c: Cap) -> S::F {
    let zero = s.splat(0.0);
    let t = s.mul(y, s.splat(c.inv));
    let f = s.mul_add(s.sub(zero, t), t, s.splat(1.0));
    let saturated = s.eq(s.select(s.lt(y, zero), s.sub(zero, y), y), s.splat(c.cap));
    s.select(saturated, zero, f)
}

/// Ones, for building a lane-validity mask with a tail load.
static LANE_ONES: [f32; 16] = [1.0; 16];

/// Lane indices as floats, for the branch-free argmax.
static LANE_INDEX: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// `p[i..i + LANES]`, or, when fewer than `LANES` entries remain before `n`, exactly
/// `p[i..n]` with the other lanes set to `fill`.
///
/// # Safety
/// `p..p + n` must be readable; `i < n`.
#[inline(always)]
unsafe fn load_upto<S: Simd>(s: S, p: *const f32, i: usize, n: usize, fill: f32) -> S::F {
    // SAFETY: bounds: a full load when `i + LANES <= n`, else a tail load of exactly
    // `p[i..n]` (`0 < n - i < LANES`).
    unsafe {
        if i + S::LANES <= n {
            s.load(p.add(i))
        } else {
            s.load_tail(p.add(i), n - i, fill)
        }
    }
}

/// Classes per block of the max sweep: long enough that the per-block test is cheap,
/// short enough that rescanning one block for the argmax is.
const MAX_BLOCK: usize = 512;

/// Max over the non-NaN entries of `p[..n]` and the first index holding it (0 if every
/// entry is -inf or NaN).
///
/// The sweep keeps only lane-wise maxima (one `vmaxps` per vector), block by block; a
/// block whose maxima beat the best so far becomes the winner (a strict test, so the
/// first block to reach the row's max keeps it). The argmax is then the first position of
/// the max inside the winning block, found by rescanning that block alone (it is in L1):
/// branch-free for short blocks, stopping at the first hit for long ones.
/// Carrying an index vector through the whole sweep instead would cost a compare and two
/// blends per vector, and this pass is compute-bound.
///
/// # Safety
/// `p..p + n` must be readable.
#[inline(always)]
unsafe fn max_argmax<S: Simd>(s: S, p: *const f32, n: usize) -> (f32, usize) {
    let neg_inf = s.splat(f32::NEG_INFINITY);
    let (mut best, mut bv, mut win) = (f32::NEG_INFINITY, neg_inf, 0);
    let mut b = 0;
    while b < n {
        let len = (n - b).min(MAX_BLOCK);
        // SAFETY: bounds: `b + len <= n`.
        let m = unsafe { lane_max(s, p.add(b), len) };
        if s.first_lane(s.gt(m, bv)).is_some() {
            // `lane_max` drops NaN, so the lanes are NaN-free.
            best = s.reduce_max(m);
            bv = s.splat(best);
            win = b;
        }
        b += len;
    }
    if best == f32::NEG_INFINITY {
        return (best, 0);
    }
    let len = (n - win).min(MAX_BLOCK);
    // SAFETY: bounds: `win + len <= n`.
    let k = unsafe { first_equal(s, p.add(win), len, best) };
    // `k == len` (no equal entry) cannot happen: `best` is an entry of the winning block.
    (best, win + if k < len { k } else { 0 })
}

/// The first index `k < n` with `p[k] == b`, or `n`: branch-free for short blocks,
/// stopping at the first hit for long ones.
///
/// # Safety
/// `p..p + n` must be readable; `n <= MAX_BLOCK`.
#[inline(always)]
unsafe fn first_equal<S: Simd>(s: S, p: *const f32, n: usize, b: f32) -> usize {
    // SAFETY: forwarded.
    unsafe {
        if n <= ARGMAX_SWEEP * S::LANES {
            first_equal_sweep(s, p, n, s.splat(b))
        } else {
            first_equal_exit(s, p, n, s.splat(b))
        }
    }
}

/// Blocks of at most this many vectors find the argmax without a data-dependent branch:
/// an exit at the max's position is mispredicted about once per row, which costs more
/// than comparing a few vectors to the end.
const ARGMAX_SWEEP: usize = 8;

/// The first index `k < n` with `p[k] == b` (lanes of `bv`), from a sweep of all `n`
/// entries that keeps, per lane, the largest `-k` of an equal entry (-inf if none); `n`
/// if no entry is equal. Indices below 2^24 are exact in f32.
///
/// # Safety
/// `p..p + n` must be readable; `n <= MAX_BLOCK`.
#[inline(always)]
unsafe fn first_equal_sweep<S: Simd>(s: S, p: *const f32, n: usize, bv: S::F) -> usize {
    let (l, neg_inf) = (S::LANES, s.splat(f32::NEG_INFINITY));
    // SAFETY: bounds: `LANE_INDEX` holds 16 >= LANES values.
    let iota = unsafe { s.load(LANE_INDEX.as_ptr()) };
    let mut found = neg_inf;
    // `-(i + lane)`, stepped by a subtraction (exact: integers below 2^24) rather than
    // converted from `i` on each vector.
    let (mut neg_index, step) = (s.sub(s.splat(0.0), iota), s.splat(l as f32));
    let mut i = 0;
    while i < n {
        // SAFETY: bounds: `i < n`, `p..p + n` readable. The -inf pads never equal a finite
        // or +inf `b`.
        let v = unsafe { load_upto(s, p, i, n, f32::NEG_INFINITY) };
        found = s.max(s.select(s.eq(v, bv), neg_index, neg_inf), found);
        neg_index = s.sub(neg_index, step);
        i += l;
    }
    let k = -s.reduce_max(found);
    if k <= n as f32 { k as usize } else { n }
}

/// As [`first_equal_sweep`], stopping at the first vector holding an equal entry.
///
/// # Safety
/// `p..p + n` must be readable.
#[inline(always)]
unsafe fn first_equal_exit<S: Simd>(s: S, p: *const f32, n: usize, bv: S::F) -> usize {
    let l = S::LANES;
    let mut i = 0;
    while i < n {
        // SAFETY: bounds: `i < n`, `p..p + n` readable. The -inf pads never equal a finite
        // or +inf `b`.
        let v = unsafe { load_upto(s, p, i, n, f32::NEG_INFINITY) };
        if let Some(k) = s.first_lane(s.eq(v, bv)) {
            return i + k;
        }
        i += l;
    }
    n
}

/// Lane-wise maxima of `p[..n]` over the non-NaN entries (-inf where there are none).
///
/// # Safety
/// `p..p + n` must be readable.
#[inline(always)]
unsafe fn lane_max<S: Simd>(s: S, p: *const f32, n: usize) -> S::F {
    let l = S::LANES;
    let neg_inf = s.splat(f32::NEG_INFINITY);
    // Four independent maxima: `vmaxps` has a latency of 4 cycles and two loads issue per
    // cycle, so fewer chains would make this pass latency-bound.
    let (mut b0, mut b1, mut b2, mut b3) = (neg_inf, neg_inf, neg_inf, neg_inf);
    let mut i = 0;
    while i + 4 * l <= n {
        // SAFETY: bounds: `i + 4 * LANES <= n` by the loop condition.
        let v = unsafe {
            let p = p.add(i);
            [
                s.load(p),
                s.load(p.add(l)),
                s.load(p.add(2 * l)),
                s.load(p.add(3 * l)),
            ]
        };
        // A NaN entry is dropped: `max` gives its second operand for a NaN first one.
        b0 = s.max(v[0], b0);
        b1 = s.max(v[1], b1);
        b2 = s.max(v[2], b2);
        b3 = s.max(v[3], b3);
        i += 4 * l;
    }
    while i < n {
        // SAFETY: bounds: `i < n`, `p..p + n` readable. -inf pads change no maximum.
        let v = unsafe { load_upto(s, p, i, n, f32::NEG_INFINITY) };
        b0 = s.max(v, b0);
        i += l;
    }
    s.max(s.max(b0, b1), s.max(b2, b3))
}

/// Rows at least this long take [`online_pass`] instead of separate max and exp passes
/// (when neither smoothing nor capping is on): 64 KiB, twice L1, where a separate max
/// pass would read the row from L2 (or DRAM) once more. Below it the per-block overhead
/// costs more than it saves (measured 2-10% slower at 4096 and 8192 classes, 4-5%
/// faster at 16384, 5-10% at 32000 and more).
const ONLINE_MIN_CLASSES: usize = 16_384;

/// The most segments [`online_pass`] can open on one row: one per block.
const ONLINE_MAX_SEGMENTS: usize = FUSED_MAX_CLASSES.div_ceil(MAX_BLOCK);

/// A run of blocks of one row whose exps [`online_pass`] took relative to one reference
/// value (the running max when the run began).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    /// Offset of the run's first class in the row.
    start: usize,
    /// The reference: the run's exps are `exp(z_j - reference)`.
    reference: f32,
    /// Their sum.
    sum: f32,
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
/// f64. The argmax is the three-pass one: the winning block is the last that raised the
/// max (the same strict test on the same blocks as [`max_argmax`]); it is rescanned when
/// it raises the max, while it is in L1 and before its exps overwrite it in place.
///
/// A reference of -inf (every entry so far -inf or NaN) is replaced by 0 for the exps:
/// they are 0 (or NaN) either way, and the segment's factor `exp(-inf - max)` is 0 (NaN
/// when the max is -inf too, as the three-pass sum is then NaN).
///
/// With `TRAIL`, the same sweep also forms the gradient of `trail`, the row before (of the
/// same length): block `b` of it is scaled by its segment's factor while block `b` of this
/// row computes its exps (see [`TRAIL_MAX_CLASSES`]).
///
/// # Safety
/// `src..src + n` readable; if `STORE`, `dst..dst + n` writable (it may equal `src`);
/// `n <= FUSED_MAX_CLASSES`. With `TRAIL`: `trail.dst..trail.dst + n` readable and
/// writable, disjoint from both, and `trail.segs` segments of a row of `n` classes (as
/// this function returns them).
#[inline(always)]
unsafe fn online_pass<S: Simd, const STORE: bool, const TRAIL: bool>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    next: Ahead,
    segs: &mut [Segment; ONLINE_MAX_SEGMENTS],
    trail: TrailRow<'_>,
) -> (f32, usize, f32, usize) {
    let mut nseg = 0;
    let mut tk = 0;
    let mut ta = 0.0f32;
    let (mut best, mut am) = (f32::NEG_INFINITY, 0);
    let mut b = 0;
    while b < n {
        let len = (n - b).min(MAX_BLOCK);
        // SAFETY: bounds: `b + len <= n`.
        let m = s.reduce_max(unsafe { lane_max(s, src.add(b), len) });
        if nseg == 0 || m > best {
            if m > best {
                best = m;
                // The argmax now, while the block is in L1 and before its exps may
                // overwrite it (in place).
                // SAFETY: bounds: `b + len <= n`.
                let k = unsafe { first_equal(s, src.add(b), len, m) };
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
        let mut tr = TrailBlock::NONE;
        if TRAIL {
            // The trailing row's segment holding block `b` (segments start on block
            // boundaries, in order, the first at 0), and its factor as `row_gradient`
            // computes it.
            let mut moved = b == 0;
            while trail.segs.get(tk + 1).is_some_and(|g| g.start <= b) {
                tk += 1;
                moved = true;
            }
            if moved {
                let seg = trail.segs[tk];
                ta = (trail.alpha * segment_factor(seg.reference, trail.m)) as f32;
            }
            tr = TrailBlock {
                dst: trail.dst.wrapping_add(b),
                alpha: ta,
            };
        }
        // SAFETY: bounds: `[b, b + len)` of `src` and `dst`; no smoothing weights read.
        let (sum, _) = unsafe {
            exp_pass_mode::<S, STORE, 0, false, TRAIL>(
                s,
                src.add(b),
                dst.wrapping_add(b),
                len,
                reference,
                core::ptr::null(),
                Cap::NONE,
                next.add(b),
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

/// A row whose gradient [`online_pass`] forms while it computes the next row's exps (the
/// trailing row): where its exps are stored, its segments, its max, and its gradient
/// coefficient `alpha` (before the segments' factors). The target's correction is left to
/// the caller.
#[derive(Clone, Copy)]
struct TrailRow<'a> {
    dst: *mut f32,
    segs: &'a [Segment],
    m: f32,
    alpha: f64,
}

impl TrailRow<'_> {
    const NONE: TrailRow<'static> = TrailRow {
        dst: core::ptr::null_mut(),
        segs: &[],
        m: 0.0,
        alpha: 0.0,
    };
}

/// `exp(reference - max)` in f64: the factor that puts a segment's exps on the row's max.
#[inline(always)]
fn segment_factor(reference: f32, max: f32) -> f64 {
    (f64::from(reference) - f64::from(max)).exp()
}

/// Where the next row's lines are, for pass 2 to prefetch while it computes this row: its
/// source, and its destination when that is a separate buffer. Addresses only (a prefetch
/// never faults), so any values will do.
///
/// A separate destination (`forward_backward_into`) matters on linked rows
/// ([`TRAIL_MIN_CLASSES`]..=[`TRAIL_MAX_CLASSES`]): a store to a line that is not in cache
/// waits for the line to be read first, and in the exp loop those waits stalled the core.
/// Prefetching the next row's destination lines as well took `forward_backward_into`
/// from 0.52-0.54 to 0.41-0.43 ns per logit at 4096x32000 on one thread (0.28-0.31 to
/// 0.22-0.28 on two), 0.59-0.60 to 0.46-0.47 at 8192x8192 and 0.52-0.53 to 0.37-0.38 at
/// 4096x16384; the in-place call takes 0.27, 0.28-0.29 and 0.31-0.36. Elsewhere it lost: 0.46 to 0.70 at 16384x1000 (the hardware
/// prefetcher already follows short rows' stores), 0.43 to 0.47 at 1024x128256 (four rows
/// of 512 KiB no longer fit in L2). Forming the gradient in a staging row and streaming it
/// out with non-temporal stores, which saves the reads, did worse than this prefetch at
/// 4096x32000 (0.47 copied out row by row, 0.68 block by block).
#[derive(Clone, Copy)]
struct Ahead {
    src: *const f32,
    /// Null when the destination is the source (in place) or absent.
    dst: *const f32,
}

impl Ahead {
    /// Nothing to prefetch.
    const NONE: Ahead = Ahead {
        src: core::ptr::null(),
        dst: core::ptr::null(),
    };

    /// Only the source, at `src`.
    fn source(src: *const f32) -> Ahead {
        Ahead {
            src,
            dst: core::ptr::null(),
        }
    }

    /// The row `ahead` floats past `src`, and past `dst` too when that is a separate buffer.
    fn rows(src: *const f32, dst: *const f32, ahead: usize) -> Ahead {
        let into = !dst.is_null() && dst != src;
        Ahead {
            src: src.wrapping_add(ahead),
            dst: if into {
                dst.wrapping_add(ahead)
            } else {
                core::ptr::null()
            },
        }
    }

    /// The same, `k` floats on (null stays null).
    fn add(self, k: usize) -> Ahead {
        let on = |p: *const f32| if p.is_null() { p } else { p.wrapping_add(k) };
        Ahead {
            src: on(self.src),
            dst: on(self.dst),
        }
    }

    /// Prefetches the lines `i` floats on in the source and, if any, the destination.
    #[inline(always)]
    fn prefetch<S: Simd>(self, s: S, i: usize) {
        s.prefetch(self.src.wrapping_add(i));
        if !self.dst.is_null() {
            s.prefetch(self.dst.wrapping_add(i));
        }
    }
}

/// Pass 2: `e_j = exp(z_j - m)`, returns `(sum e_j, smoothing sum)`, storing `e` to `dst`
/// when `STORE`. The next row's lines are prefetched alongside ([`Ahead`]).
///
/// With soft-capping, `z_j` is first replaced by `y_j = cap tanh(z_j / cap)` (and `m` must
/// be the capped max); the pass then stores `y` rather than `e`, since the gradient's chain
/// factor `1 - (y / cap)^2` needs `y`, and the scale pass recomputes `e` from it.
///
/// # Safety
/// `src..src + n` readable; if `STORE`, `dst..dst + n` writable (it may equal `src`);
/// weighted smoothing slices hold `n` values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn exp_pass<S: Simd, const STORE: bool>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    smooth: Smooth<'_>,
    cap: Option<Cap>,
    next: Ahead,
) -> (f32, f64) {
    // The smoothing and capping variants are separate loops so the common case carries
    // no extra work.
    let null = core::ptr::null();
    macro_rules! mode {
        ($sm:literal, $cap:literal, $w:expr, $c:expr) => {
            exp_pass_mode::<S, STORE, $sm, $cap, false>(
                s,
                src,
                dst,
                n,
                m,
                $w,
                $c,
                next,
                TrailBlock::NONE,
            )
        };
    }
    // SAFETY: the caller's obligations are forwarded unchanged.
    unsafe {
        match (smooth, cap) {
            (Smooth::Off, None) => mode!(0, false, null, Cap::NONE),
            (Smooth::Uniform, None) => mode!(1, false, null, Cap::NONE),
            (Smooth::Weighted(w), None) => mode!(2, false, w.as_ptr(), Cap::NONE),
            (Smooth::Off, Some(c)) => mode!(0, true, null, c),
            (Smooth::Uniform, Some(c)) => mode!(1, true, null, c),
            (Smooth::Weighted(w), Some(c)) => mode!(2, true, w.as_ptr(), c),
        }
    }
}

/// The stretch of a trailing row's stored exps (see [`TrailRow`]) that [`exp_pass_mode`]
/// turns into gradient, `g = alpha e`, alongside its own exps: `dst[..n]`, the `n` of that
/// call.
#[derive(Clone, Copy)]
struct TrailBlock {
    dst: *mut f32,
    alpha: f32,
}

impl TrailBlock {
    const NONE: TrailBlock = TrailBlock {
        dst: core::ptr::null_mut(),
        alpha: 0.0,
    };
}

/// [`exp_pass`] for one smoothing mode `SM` (0 off, 1 uniform, 2 weighted) and capping
/// `CAP`. With `TRAIL` (plain mode only) also `trail.dst[j] = alpha trail.dst[j]` for
/// `j < n`, in the same loop: the multiply, load and store of the trailing row fill slots
/// that the exps leave free. Each value is what [`scale_pass`] would make of it, so the
/// results do not depend on this.
///
/// # Safety
/// As [`exp_pass`]; `w..w + n` readable when `SM == 2`; with `TRAIL`,
/// `trail.dst..trail.dst + n` readable and writable, disjoint from `src..src + n` and
/// `dst..dst + n`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn exp_pass_mode<
    S: Simd,
    const STORE: bool,
    const SM: u8,
    const CAP: bool,
    const TRAIL: bool,
>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    w: *const f32,
    cap: Cap,
    next: Ahead,
    trail: TrailBlock,
) -> (f32, f64) {
    const { assert!(!TRAIL || (SM == 0 && !CAP)) };
    let l = S::LANES;
    // `alpha e + (-0)`, the scale pass's own form (its `beta` term is -0 without smoothing).
    let (tv, nz) = (s.splat(trail.alpha), s.splat(-0.0));
    let mv = s.splat(m);
    let sc = s.splat(WSUM_SCALE);
    let msc = s.splat(m * WSUM_SCALE);
    let zero = s.splat(0.0);
    let (mut s0, mut s1) = (zero, zero);
    let (mut d0, mut d1) = (zero, zero);
    let prefetch = !next.src.is_null() && n >= PREFETCH_MIN_CLASSES;
    let mut i = 0;
    if SM == 0 && !CAP {
        // The plain case, four vectors per step: four independent exp chains in flight
        // rather than two (3-6% faster on rows in L2). Lanes' sums are index-determined.
        let (mut s2, mut s3) = (zero, zero);
        while i + 4 * l <= n {
            if prefetch {
                for k in 0..4 {
                    next.prefetch(s, i + k * l);
                }
            }
            // Written out: a closure (`array::map`) would not inherit the caller's target
            // features, and its vector operations would not inline.
            // SAFETY: bounds: `i + 4 * LANES <= n` by the loop condition.
            let z = unsafe {
                [
                    s.load(src.add(i)),
                    s.load(src.add(i + l)),
                    s.load(src.add(i + 2 * l)),
                    s.load(src.add(i + 3 * l)),
                ]
            };
            let e = [
                exp_small(s, s.sub(z[0], mv)),
                exp_small(s, s.sub(z[1], mv)),
                exp_small(s, s.sub(z[2], mv)),
                exp_small(s, s.sub(z[3], mv)),
            ];
            if STORE {
                for (k, &e) in e.iter().enumerate() {
                    // SAFETY: bounds: as the loads; `dst` holds `n` (caller's obligation).
                    unsafe { s.store(dst.add(i + k * l), e) };
                }
            }
            if TRAIL {
                for k in 0..4 {
                    // SAFETY: bounds: `i + 4 * LANES <= n`, and `trail.dst` holds `n`
                    // (caller's obligation).
                    unsafe {
                        let p = trail.dst.add(i + k * l);
                        s.store(p, s.mul_add(s.load(p), tv, nz));
                    }
                }
            }
            s0 = s.add(s0, e[0]);
            s1 = s.add(s1, e[1]);
            s2 = s.add(s2, e[2]);
            s3 = s.add(s3, e[3]);
            i += 4 * l;
        }
        s0 = s.add(s0, s2);
        s1 = s.add(s1, s3);
        if TRAIL && i < n {
            // The rest of the stretch (a short last block).
            // SAFETY: bounds: `i < n`, and `trail.dst` holds `n`.
            unsafe { scale_pass(s, trail.dst.add(i), n - i, trail.alpha, Beta::Zero) };
        }
    }
    while i + 2 * l <= n {
        if prefetch {
            next.prefetch(s, i);
            next.prefetch(s, i + l);
        }
        // SAFETY: bounds: `i + 2 * LANES <= n` by the loop condition.
        let (mut z0, mut z1) = unsafe { (s.load(src.add(i)), s.load(src.add(i + l))) };
        if CAP {
            (z0, z1) = (softcap(s, z0, cap), softcap(s, z1, cap));
        }
        let (x0, x1) = (s.sub(z0, mv), s.sub(z1, mv));
        let (e0, e1) = (exp_small(s, x0), exp_small(s, x1));
        if STORE {
            let (o0, o1) = if CAP { (z0, z1) } else { (e0, e1) };
            // SAFETY: bounds: as the loads; `dst` holds `n` (caller's obligation).
            unsafe {
                s.store(dst.add(i), o0);
                s.store(dst.add(i + l), o1);
            }
        }
        s0 = s.add(s0, e0);
        s1 = s.add(s1, e1);
        if SM != 0 {
            // (z - m) at scale 2^-64, which cannot overflow (see WSUM_SCALE).
            let x0 = s.sub(s.mul(z0, sc), msc);
            let x1 = s.sub(s.mul(z1, sc), msc);
            if SM == 1 {
                d0 = s.add(d0, x0);
                d1 = s.add(d1, x1);
            } else {
                // SAFETY: bounds: `w` holds `n` (caller's obligation), `i + 2 * LANES <= n`.
                let (w0, w1) = unsafe { (s.load(w.add(i)), s.load(w.add(i + l))) };
                d0 = s.mul_add(w0, x0, d0);
                d1 = s.mul_add(w1, x1, d1);
            }
        }
        i += 2 * l;
    }
    while i < n {
        let r = (n - i).min(l);
        // Both loads happen before the store: in place, `dst == src`.
        // SAFETY: bounds: a full load when `r == LANES` (`i + LANES <= n`), otherwise a
        // tail load of exactly `src[i..n]` (and of `LANE_ONES[..r]`, 16 >= LANES values).
        // Without capping, -inf pads give e = 0 and pads of `m` give `z - m = 0` for the
        // smoothing sum; capping would turn a -inf pad into -cap, so there the pads are
        // replaced after the transform through the lane mask.
        let (z, zd) = unsafe {
            if r == l {
                let z = s.load(src.add(i));
                let z = if CAP { softcap(s, z, cap) } else { z };
                (z, z)
            } else if CAP {
                let y = softcap(s, s.load_tail(src.add(i), r, 0.0), cap);
                let valid = s.gt(s.load_tail(LANE_ONES.as_ptr(), r, 0.0), zero);
                (
                    s.select(valid, y, s.splat(f32::NEG_INFINITY)),
                    s.select(valid, y, mv),
                )
            } else {
                (
                    s.load_tail(src.add(i), r, f32::NEG_INFINITY),
                    s.load_tail(src.add(i), r, m),
                )
            }
        };
        let e = exp_small(s, s.sub(z, mv));
        if STORE {
            let o = if CAP { zd } else { e };
            // SAFETY: bounds: as the load.
            unsafe {
                if r == l {
                    s.store(dst.add(i), o)
                } else {
                    s.store_tail(dst.add(i), r, o)
                }
            }
        }
        s0 = s.add(s0, e);
        if SM != 0 {
            let x = s.sub(s.mul(zd, sc), msc);
            if SM == 1 {
                d0 = s.add(d0, x);
            } else {
                // Pads of weight 0 give w x = 0.
                // SAFETY: bounds: `w` holds `n` (caller's obligation), same range as the load.
                let wv = unsafe {
                    if r == l {
                        s.load(w.add(i))
                    } else {
                        s.load_tail(w.add(i), r, 0.0)
                    }
                };
                d0 = s.mul_add(wv, x, d0);
            }
        }
        i += r;
    }
    let sum = s.reduce_add(s.add(s0, s1));
    let dsum = if SM == 0 {
        0.0
    } else {
        f64::from(s.reduce_add(s.add(d0, d1))) * WSUM_UNSCALE
    };
    (sum, dsum)
}

/// Pass 3: `dst_j = alpha * dst_j - beta_j` in place.
///
/// # Safety
/// `dst..dst + n` readable and writable; `Beta::Weighted` slices hold `n` values.
#[inline(always)]
unsafe fn scale_pass<S: Simd>(s: S, dst: *mut f32, n: usize, alpha: f32, beta: Beta<'_>) {
    // SAFETY: `dst` is both source and destination; obligations forwarded.
    unsafe { affine_pass::<S, false, false, false>(s, dst, dst, n, 0.0, alpha, beta, Cap::NONE) }
}

/// `dst_j = (alpha * f(y_j) - beta_j) * slope(y_j)`: `y = cap tanh(src / cap)` when
/// `CAP_IN`, else `y = src`; `f(y) = exp(y - m)` when `EXP`, else the identity; `slope` is
/// the soft-capping chain factor `1 - (y / cap)^2` when `CHAIN`, else 1.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`); `Beta::Weighted`
/// slices hold `n` values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn affine_pass<S: Simd, const EXP: bool, const CAP_IN: bool, const CHAIN: bool>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    alpha: f32,
    beta: Beta<'_>,
    cap: Cap,
) {
    let (bconst, wptr) = match beta {
        Beta::Zero => (0.0, core::ptr::null()),
        Beta::Uniform(b) => (b, core::ptr::null()),
        Beta::Weighted(b, w) => (b, w.as_ptr()),
    };
    let map = Affine::<S, EXP, CAP_IN, CHAIN> {
        av: s.splat(alpha),
        mv: s.splat(m),
        bv: s.splat(-bconst),
        w: wptr,
        n,
        cap,
    };
    // Two loops rather than a test per vector: the weighted form is the rare one.
    // SAFETY: `src`/`dst` hold `n` (caller's obligation); so does `w` when not null.
    unsafe {
        if wptr.is_null() {
            map_stream::<S, _, false>(s, src, dst, n, &map)
        } else {
            map_stream::<S, _, true>(s, src, dst, n, &map)
        }
    }
}

/// A per-vector map for [`map_stream`]. A trait rather than a closure: a closure body is
/// compiled outside the variant's `#[target_feature]` boundary, and its intrinsics would
/// become calls.
trait LaneMap<S: Simd> {
    /// The output vector for the input vector `v` at entry `i` of the stream; with
    /// `INDEXED`, the map may also read its own per-entry data there.
    ///
    /// # Safety
    /// `i` is below the stream length and, for `INDEXED` maps, that length is one the map
    /// was built for.
    unsafe fn apply<const INDEXED: bool>(&self, s: S, v: S::F, i: usize) -> S::F;
}

/// `(alpha * f(y) - beta_j) * slope(y)`, see [`affine_pass`]; `beta_j = -bv * w_j` when
/// indexed, `-bv` otherwise.
struct Affine<S: Simd, const EXP: bool, const CAP_IN: bool, const CHAIN: bool> {
    av: S::F,
    mv: S::F,
    bv: S::F,
    w: *const f32,
    n: usize,
    cap: Cap,
}

impl<S: Simd, const EXP: bool, const CAP_IN: bool, const CHAIN: bool> LaneMap<S>
    for Affine<S, EXP, CAP_IN, CHAIN>
{
    #[inline(always)]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, z: S::F, i: usize) -> S::F {
        let y = if CAP_IN { softcap(s, z, self.cap) } else { z };
        let e = if EXP { exp(s, s.sub(y, self.mv)) } else { y };
        let nb = if INDEXED {
            // SAFETY: bounds: `i < n` and `w..w + n` readable (the map's contract); the
            // pads of 0 are never stored.
            s.mul(unsafe { load_upto(s, self.w, i, self.n, 0.0) }, self.bv)
        } else {
            self.bv
        };
        let g = s.mul_add(e, self.av, nb);
        if CHAIN {
            s.mul(g, softcap_slope(s, y, self.cap))
        } else {
            g
        }
    }
}

/// `(z - m) - sh`, for [`shift_run`].
struct Shift<S: Simd> {
    mv: S::F,
    shv: S::F,
}

impl<S: Simd> LaneMap<S> for Shift<S> {
    #[inline(always)]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, z: S::F, _: usize) -> S::F {
        s.sub(s.sub(z, self.mv), self.shv)
    }
}

/// A constant, for [`fill_zero`].
struct Splat<S: Simd>(S::F);

impl<S: Simd> LaneMap<S> for Splat<S> {
    #[inline(always)]
    unsafe fn apply<const INDEXED: bool>(&self, _: S, _: S::F, _: usize) -> S::F {
        self.0
    }
}

/// The kernels' exp over every f32, for [`exp_slice`].
struct ExpAny;

impl<S: Simd> LaneMap<S> for ExpAny {
    #[inline(always)]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, x: S::F, _: usize) -> S::F {
        exp_any(s, x)
    }
}

/// The kernels' tanh, for [`tanh_slice`].
struct Tanh;

impl<S: Simd> LaneMap<S> for Tanh {
    #[inline(always)]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, x: S::F, _: usize) -> S::F {
        tanh(s, x)
    }
}

/// `dst[i..] = f.apply(src[i..], i)` vector by vector over `n` entries: whole vectors at a fixed
/// stride, two per step (independent, and the loop counter carries no dependency on the
/// tail arithmetic), then one tail of exactly the remaining entries, loaded with 0 pads
/// that are never stored. In place (`dst == src`) is fine: each vector is loaded before it
/// is stored, and no vector is read after another's store.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable; with `INDEXED`, `f` was built for `n`
/// entries.
#[inline(always)]
unsafe fn map_stream<S: Simd, M: LaneMap<S>, const INDEXED: bool>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    f: &M,
) {
    let l = S::LANES;
    let mut i = 0;
    while i + 2 * l <= n {
        // SAFETY: bounds: `i + 2 * LANES <= n` by the loop condition.
        unsafe {
            let (z0, z1) = (s.load(src.add(i)), s.load(src.add(i + l)));
            let (y0, y1) = (
                f.apply::<INDEXED>(s, z0, i),
                f.apply::<INDEXED>(s, z1, i + l),
            );
            s.store(dst.add(i), y0);
            s.store(dst.add(i + l), y1);
        }
        i += 2 * l;
    }
    while i < n {
        // SAFETY: bounds: `i < n`; a full vector when `i + LANES <= n`, else exactly
        // `[i..n]`.
        unsafe {
            let y = f.apply::<INDEXED>(s, load_upto(s, src, i, n, 0.0), i);
            if i + l <= n {
                s.store(dst.add(i), y)
            } else {
                s.store_tail(dst.add(i), n - i, y)
            }
        }
        i += l;
    }
}

/// Writes `n` zeros.
///
/// # Safety
/// `dst..dst + n` writable.
#[inline(always)]
unsafe fn fill_zero<S: Simd>(s: S, dst: *mut f32, n: usize) {
    let z = s.splat(0.0);
    // SAFETY: `dst` is both ends; `dst..dst + n` readable as it is writable (the loaded
    // values are ignored).
    unsafe { map_stream::<S, _, false>(s, dst, dst, n, &Splat(z)) }
}

/// Rows per group in [`ce_rows`] (for rows of at most [`GROUP_MAX_CLASSES`]).
///
/// A row's passes are chains of dependent steps: the exps wait for the horizontal max,
/// the scale for the horizontal sum and a division. On a short row those waits are a
/// large part of the row's time, and the next row's work sits too far ahead in the
/// instruction stream for the core to overlap it. So the rows of a group run each pass
/// side by side: every row's max, then every row's exps, then every gradient, and one
/// row's waits overlap another's work. Each row's arithmetic is what it is alone, so the
/// results do not depend on the grouping. Groups of two gained less (a first prototype at
/// 100 classes: 0.86 of the ungrouped time, against 0.79 with four).
const GROUP_ROWS: usize = 4;

/// The longest rows that [`ce_rows`] groups: those that pass 2 does not prefetch for.
/// With longer rows, grouped, the prefetches run a whole group ahead rather than one row,
/// and rows from DRAM got slower (7-10% at 256 classes, 10-16% at 1000), though rows in
/// L2 or L3 still gained.
const GROUP_MAX_CLASSES: usize = PREFETCH_MIN_CLASSES - 1;

/// Pass 2 prefetches the next row only for rows at least this long (1 KiB): shorter rows
/// are covered by the hardware stream prefetcher.
const PREFETCH_MIN_CLASSES: usize = 256;

/// One row of a group in [`ce_rows`]: where it is, its plan, and what its passes found.
#[derive(Clone, Copy)]
struct GroupRow {
    src: *const f32,
    dst: *mut f32,
    plan: RowPlan,
    /// The (capped) target logit.
    zt: f32,
    /// The (capped) max, which the exps are taken from.
    m: f32,
    /// The raw max and its first index.
    top: f32,
    argmax: usize,
    sum: f32,
    wsum: f64,
}

impl GroupRow {
    const IDLE: GroupRow = GroupRow {
        src: core::ptr::null(),
        dst: core::ptr::null_mut(),
        plan: RowPlan {
            target: None,
            grad_a: 0.0,
            zloss: 0.0,
            tfix: 0.0,
            zero_grad: false,
        },
        zt: 0.0,
        m: 0.0,
        top: 0.0,
        argmax: 0,
        sum: 0.0,
        wsum: 0.0,
    };
}

/// Fused cross-entropy over `len / job.classes` whole rows, in groups of up to
/// [`GROUP_ROWS`] rows (one row per group for long rows): pass 1 (max and argmax) of every
/// row of the group, then pass 2 (exps and sums, [`exp_pass`]), then each counted row's
/// statistics to `out`, then the gradients (pass 3, [`scale_pass`]). Rows of at least
/// [`ONLINE_MIN_CLASSES`] without smoothing or capping fuse passes 1 and 2
/// ([`online_pass`]). Without smoothing or capping, from [`TRAIL_MIN_CLASSES`] to
/// [`TRAIL_MAX_CLASSES`], a row's pass 3 runs inside the next row's pass 2 (or after the
/// last row).
///
/// # Safety
/// `src..src + len` readable; `dst` null (forward only) or `dst..dst + len` writable (it
/// may equal `src`); `len` a multiple of `job.classes`; every planned target
/// `< job.classes`; weights in `job` hold `job.classes` values.
#[inline(always)]
pub(crate) unsafe fn ce_rows<S: Simd, P, O>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    job: &RowsJob<'_>,
    plan: P,
    out: O,
) where
    P: FnMut(usize) -> RowPlan,
    O: FnMut(usize, RowOut),
{
    // One instance per group size: with one row the group loops vanish, and long rows run
    // as tight a loop as before grouping.
    // SAFETY: the caller's obligations, forwarded.
    unsafe {
        if job.classes <= GROUP_MAX_CLASSES {
            ce_row_groups::<S, P, O, GROUP_ROWS>(s, src, dst, len, job, plan, out)
        } else {
            ce_row_groups::<S, P, O, 1>(s, src, dst, len, job, plan, out)
        }
    }
}

/// [`ce_rows`] in groups of `G` rows.
///
/// # Safety
/// As [`ce_rows`].
#[inline(always)]
unsafe fn ce_row_groups<S: Simd, P, O, const G: usize>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    job: &RowsJob<'_>,
    mut plan: P,
    mut out: O,
) where
    P: FnMut(usize) -> RowPlan,
    O: FnMut(usize, RowOut),
{
    let c = job.classes;
    let rows = len / c;
    let plain = matches!(
        (job.smooth, job.beta, job.cap),
        (Smooth::Off, Beta::Zero, None)
    );
    let online = c >= ONLINE_MIN_CLASSES && plain;
    // Not in the portable kernel (vectors of two registers): it ran 2-6% slower linked.
    let trail = plain && G == 1 && trails(c) && !S::EMULATED;
    // Online rows are longer than `GROUP_MAX_CLASSES`, so they come one per group, and
    // `segs[cur]` holds the segments of the group's only row when its gradient is formed.
    // With `trail`, that gradient waits (`pending`) for the next row's pass 2, so its
    // segments live on in the other set while that row fills `segs[cur]`, flipped.
    const { assert!(GROUP_MAX_CLASSES < ONLINE_MIN_CLASSES) };
    debug_assert!(!online || G == 1);
    let mut segs = [[Segment::EMPTY; ONLINE_MAX_SEGMENTS]; 2];
    let mut nsegs = [0; 2];
    let mut cur = 0;
    let mut pending: Option<GroupRow> = None;
    let mut group = [GroupRow::IDLE; G];
    let mut r0 = 0;
    while r0 < rows {
        let g = G.min(rows - r0);
        let group = &mut group[..g];
        // Pass 1: plans, target logits, maxima.
        for (k, row) in group.iter_mut().enumerate() {
            let off = (r0 + k) * c;
            // SAFETY: bounds: `off + c <= len` since `r0 + k < rows = len / c`.
            row.src = unsafe { src.add(off) };
            row.dst = if dst.is_null() {
                dst
            } else {
                dst.wrapping_add(off)
            };
            row.plan = plan(r0 + k);
            let Some(t) = row.plan.target else {
                continue;
            };
            debug_assert!(t < c);
            // SAFETY: bounds: `t < c` (plan contract, checked by the driver's validation).
            let zt = unsafe { *row.src.add(t) };
            row.zt = job.cap.map_or(zt, |cp| softcap_one(s, zt, cp));
            if !online {
                // SAFETY: bounds: the row is `c` readable elements.
                let (m, am) = unsafe { max_argmax(s, row.src, c) };
                // Capping is monotone: the capped max is the cap of the max, and the
                // argmax is taken on the raw logits.
                row.m = job.cap.map_or(m, |cp| softcap_one(s, m, cp));
                (row.top, row.argmax) = (m, am);
            }
        }
        // Pass 2: exps and sums (and, online, the max with them).
        for (k, row) in group.iter_mut().enumerate() {
            if row.plan.target.is_none() {
                continue;
            }
            // The row a group ahead: the next row when rows come one per group (grouped
            // rows are too short for pass 2 to prefetch, `GROUP_MAX_CLASSES`).
            let ahead = r0 + k + g;
            let next = match job.prefetch {
                // Only linked rows prefetch a separate destination (see `Ahead`).
                None if trail => Ahead::rows(row.src, row.dst, g * c),
                None => Ahead::source(row.src.wrapping_add(g * c)),
                Some((base, stride)) => Ahead::source(core::ptr::without_provenance(
                    base.wrapping_add(ahead.wrapping_mul(stride)),
                )),
            };
            let store = !dst.is_null() && !row.plan.zero_grad;
            if online {
                let [a, b] = &mut segs;
                let (mine, theirs) = if cur == 0 { (a, &*b) } else { (b, &*a) };
                let trail = pending.map(|p| TrailRow {
                    dst: p.dst,
                    segs: &theirs[..nsegs[1 - cur]],
                    m: p.m,
                    alpha: grad_alpha(&p),
                });
                // SAFETY: bounds: the row of `src` and `dst`, `c <= FUSED_MAX_CLASSES`
                // elements (the driver's limit for whole rows); the trailing row is an
                // earlier row of `dst`, `c` elements, disjoint from this one.
                let (m, am, sum, count) = unsafe {
                    match (store, trail) {
                        (true, None) => online_pass::<S, true, false>(
                            s,
                            row.src,
                            row.dst,
                            c,
                            next,
                            mine,
                            TrailRow::NONE,
                        ),
                        (false, None) => online_pass::<S, false, false>(
                            s,
                            row.src,
                            row.dst,
                            c,
                            next,
                            mine,
                            TrailRow::NONE,
                        ),
                        (true, Some(t)) => {
                            online_pass::<S, true, true>(s, row.src, row.dst, c, next, mine, t)
                        }
                        (false, Some(t)) => {
                            online_pass::<S, false, true>(s, row.src, row.dst, c, next, mine, t)
                        }
                    }
                };
                if let Some(p) = pending.take() {
                    // SAFETY: bounds: the pending row's target lies inside its row of `dst`.
                    unsafe { finish_target(&p) };
                }
                nsegs[cur] = count;
                (row.m, row.top, row.argmax, row.sum, row.wsum) = (m, m, am, sum, 0.0);
            } else if let Some(p) = pending.take() {
                // Plain rows (no smoothing or capping), so pass 2 is the plain exp loop.
                let tb = TrailBlock {
                    dst: p.dst,
                    alpha: grad_alpha(&p) as f32,
                };
                let null = core::ptr::null();
                // SAFETY: bounds: the row of `src` and `dst`, `c` elements each; the
                // trailing row is an earlier row of `dst`, `c` elements, disjoint from
                // this one, and its target lies inside it.
                (row.sum, row.wsum) = unsafe {
                    macro_rules! linked {
                        ($store:literal) => {
                            exp_pass_mode::<S, $store, 0, false, true>(
                                s,
                                row.src,
                                row.dst,
                                c,
                                row.m,
                                null,
                                Cap::NONE,
                                next,
                                tb,
                            )
                        };
                    }
                    let r = if store { linked!(true) } else { linked!(false) };
                    finish_target(&p);
                    r
                };
            } else {
                // SAFETY: bounds: the row of `src` and `dst`, `c` elements each.
                (row.sum, row.wsum) = unsafe {
                    if store {
                        exp_pass::<S, true>(
                            s, row.src, row.dst, c, row.m, job.smooth, job.cap, next,
                        )
                    } else {
                        exp_pass::<S, false>(
                            s, row.src, row.dst, c, row.m, job.smooth, job.cap, next,
                        )
                    }
                };
            }
        }
        for (k, row) in group.iter().enumerate() {
            if row.plan.target.is_some() {
                let stats = BlockStats {
                    max: row.m,
                    top: row.top,
                    argmax: row.argmax,
                    sum: row.sum,
                    wsum: row.wsum,
                };
                out(
                    r0 + k,
                    RowOut {
                        stats,
                        target_logit: row.zt,
                    },
                );
            }
        }
        if !dst.is_null() {
            for row in group.iter() {
                if trail && row.plan.target.is_some() && !row.plan.zero_grad {
                    // Formed during the next row's pass 2 (or below, after the last row;
                    // an ignored row in between runs no pass 2 and leaves it waiting).
                    pending = Some(*row);
                    cur = 1 - cur;
                    continue;
                }
                let segs = if online {
                    &segs[cur][..nsegs[cur]]
                } else {
                    &[]
                };
                // SAFETY: bounds: the row of `dst`, `c` elements, with its segments.
                unsafe { row_gradient(s, job, row, c, segs) };
            }
        }
        r0 += g;
    }
    if let Some(p) = pending {
        // SAFETY: bounds: the row of `dst`, `c` elements, with its segments.
        unsafe { row_gradient(s, job, &p, c, &segs[1 - cur][..nsegs[1 - cur]]) };
    }
}

/// The longest rows whose pass 3 [`ce_row_groups`] runs inside the next row's pass 2
/// ([`exp_pass_mode`], or [`online_pass`] with a trailing row). Alone, pass 3 took about
/// a quarter of a long row's time (at 32000 classes in L2, by `perf`) for one multiply
/// per vector: it streams the row from L2 and back. Beside the exps, which keep the
/// multiply-add pipes busy, most of that time is hidden. It keeps
/// three rows in L2 (the trailing row, this one, and the next one being prefetched), so
/// only rows up to 128 KiB. Measured with two builds linked and called alternately
/// (1 thread, median of the per-call ratios): rows in cache took 0.87-0.96 of the time
/// without at 16384-32768 classes; from DRAM, in the driver's chunks of eight rows, 0.92
/// at 32000 (0.89 on 2 threads), 0.96 at 16384 and 0.97 at 20000. At 40000 classes it
/// gained nothing in L2, and at 65536 and 128256 it was up to 6% slower from DRAM.
const TRAIL_MAX_CLASSES: usize = 32_768;

/// The shortest rows that [`ce_row_groups`] links (see [`TRAIL_MAX_CLASSES`]): 32 KiB, an
/// L1. Shorter rows run their pass 3 from L1, where it costs little, and linked they
/// lost: from DRAM 1.22 times the time without at 1000 classes and 1.03-1.04 at 4096, in
/// cache 1.03 at 1000 and 2000. From 8192 classes they gained: 0.93-0.96 at 8192 in cache
/// and from DRAM, 0.88-0.92 at 10000 in cache and 0.83-1.02 from DRAM.
const TRAIL_MIN_CLASSES: usize = 8192;

/// Whether [`ce_rows`] links consecutive rows of `classes` (without smoothing or
/// capping): each row's pass 3 inside the next row's pass 2. The driver gives
/// such rows longer chunks, since a chunk's last row has no next row.
pub(crate) const fn trails(classes: usize) -> bool {
    TRAIL_MIN_CLASSES <= classes && classes <= TRAIL_MAX_CLASSES
}

/// `g = (alpha / S) e_j`'s coefficient of one counted row: `(grad_a + zloss lse) / S`.
#[inline(always)]
fn grad_alpha(row: &GroupRow) -> f64 {
    let p = &row.plan;
    let (m, sum) = (row.m, f64::from(row.sum));
    let mut a = p.grad_a;
    if p.zloss != 0.0 {
        a += p.zloss * (f64::from(m) + sum.ln());
    }
    a / sum
}

/// The target correction `g_t -= tfix` of a row whose scale pass is done.
///
/// # Safety
/// `row.dst..row.dst + c` writable, with `row.plan.target < c`.
#[inline(always)]
unsafe fn finish_target(row: &GroupRow) {
    if let Some(t) = row.plan.target {
        // SAFETY: bounds: `t < c` (caller's obligation).
        unsafe { *row.dst.add(t) -= row.plan.tfix };
    }
}

/// Pass 3 of one row of [`ce_rows`], from its exps (or, capped, its capped logits) in
/// `row.dst`: `g_j = alpha e_j - beta_j`, then `g_t -= tfix`; zeros for an ignored row or
/// one whose gradient is zero. `segs` are the row's segments when pass 2 was
/// [`online_pass`], else empty.
///
/// # Safety
/// `row.dst..row.dst + c` writable; weighted beta holds `c` values; the segments lie
/// inside the row.
#[inline(always)]
unsafe fn row_gradient<S: Simd>(
    s: S,
    job: &RowsJob<'_>,
    row: &GroupRow,
    c: usize,
    segs: &[Segment],
) {
    let p = &row.plan;
    let Some(t) = p.target.filter(|_| !p.zero_grad) else {
        // SAFETY: bounds: the row of `dst` (caller's obligation).
        unsafe { fill_zero(s, row.dst, c) };
        return;
    };
    let m = row.m;
    let alpha = grad_alpha(row);
    match job.cap {
        // SAFETY: bounds: the row of `dst` (and each segment inside it); weighted beta
        // spans a whole row of `c`.
        None => unsafe {
            if segs.is_empty() {
                scale_pass(s, row.dst, c, alpha as f32, job.beta);
            }
            for (k, seg) in segs.iter().enumerate() {
                let end = segs.get(k + 1).map_or(c, |next| next.start);
                let a = alpha * segment_factor(seg.reference, m);
                scale_pass(
                    s,
                    row.dst.add(seg.start),
                    end - seg.start,
                    a as f32,
                    Beta::Zero,
                );
            }
            // The target correction goes last, onto the stored probability term.
            *row.dst.add(t) -= p.tfix;
        },
        Some(cp) => {
            // SAFETY: bounds: as above; pass 2 stored the capped logits `y` there.
            unsafe {
                affine_pass::<S, true, false, true>(
                    s,
                    row.dst,
                    row.dst,
                    c,
                    m,
                    alpha as f32,
                    job.beta,
                    cp,
                )
            };
            // The target entry, in f64 from the statistics, stored last:
            // `(alpha e_t - beta_t - tfix) (1 - (y_t / cap)^2)`.
            let zt = row.zt;
            let yt = f64::from(zt) / f64::from(cp.cap);
            let g = (alpha * (f64::from(zt) - f64::from(m)).exp()
                - beta_at(job.beta, t)
                - f64::from(p.tfix))
                * ((1.0 - yt) * (1.0 + yt));
            // SAFETY: bounds: `t < c`, inside the row of `dst`.
            unsafe { *row.dst.add(t) = g as f32 };
        }
    }
}

/// `beta_t` of one class, in f64.
#[inline(always)]
pub(crate) fn beta_at(beta: Beta<'_>, j: usize) -> f64 {
    match beta {
        Beta::Zero => 0.0,
        Beta::Uniform(b) => f64::from(b),
        Beta::Weighted(b, w) => f64::from(b) * f64::from(w[j]),
    }
}

/// Softmax (`log == false`) or log-softmax of whole rows, `dst` written.
///
/// # Safety
/// `src..src + len` readable, `dst..dst + len` writable (may equal `src`), `len` a
/// multiple of `c`.
#[inline(always)]
pub(crate) unsafe fn softmax_rows<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    c: usize,
    log: bool,
) {
    // Short rows in groups, pass by pass, as in `ce_rows` (see `GROUP_ROWS`).
    // SAFETY: the caller's obligations, forwarded.
    unsafe {
        if c <= GROUP_MAX_CLASSES {
            softmax_row_groups::<S, GROUP_ROWS>(s, src, dst, len, c, log)
        } else {
            softmax_row_groups::<S, 1>(s, src, dst, len, c, log)
        }
    }
}

/// [`softmax_rows`] in groups of `G` rows: every row's max, then every row's exps and
/// sum, then every row's output.
///
/// # Safety
/// As [`softmax_rows`].
#[inline(always)]
unsafe fn softmax_row_groups<S: Simd, const G: usize>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    c: usize,
    log: bool,
) {
    let rows = len / c;
    let (mut m, mut sum) = ([0f32; G], [0f32; G]);
    let mut r0 = 0;
    while r0 < rows {
        let g = G.min(rows - r0);
        // SAFETY: bounds: rows `r0..r0 + g` (`r0 + g <= rows = len / c`) are
        // `src[r0 c..(r0 + g) c]` / `dst[..]`, in range; `next` is only prefetched.
        unsafe {
            let (row, out) = (src.add(r0 * c), dst.add(r0 * c));
            for (k, m) in m[..g].iter_mut().enumerate() {
                *m = max_argmax(s, row.add(k * c), c).0;
            }
            for (k, (&m, sum)) in m[..g].iter().zip(&mut sum[..g]).enumerate() {
                let (row, out) = (row.add(k * c), out.add(k * c));
                let next = Ahead::source(row.wrapping_add(g * c));
                *sum = if log {
                    exp_pass::<S, false>(s, row, out, c, m, Smooth::Off, None, next).0
                } else {
                    exp_pass::<S, true>(s, row, out, c, m, Smooth::Off, None, next).0
                };
            }
            for (k, (&m, &sum)) in m[..g].iter().zip(&sum[..g]).enumerate() {
                let (row, out) = (row.add(k * c), out.add(k * c));
                if log {
                    let lse = f64::from(sum).ln() as f32;
                    // `(z - m) - lse` rather than `z - (m + lse)`: `z - m` is exact for
                    // nearby values, so large logits keep their small log-probabilities.
                    shift_run(s, row, out, c, m, lse);
                } else {
                    scale_pass(s, out, c, (1.0 / f64::from(sum)) as f32, Beta::Zero);
                }
            }
        }
        r0 += g;
    }
}

/// `dst_j = (src_j - m) - sh`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`).
#[inline(always)]
unsafe fn shift_run<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize, m: f32, sh: f32) {
    let (mv, shv) = (s.splat(m), s.splat(sh));
    // SAFETY: forwarded.
    unsafe { map_stream::<S, _, false>(s, src, dst, n, &Shift { mv, shv }) }
}

/// Public face of [`shift_run`] for the blocked path.
///
/// # Safety
/// As [`shift_run`].
#[inline(always)]
pub(crate) unsafe fn shift<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    sh: f32,
) {
    // SAFETY: forwarded.
    unsafe { shift_run(s, src, dst, n, m, sh) }
}

/// Statistics of one run (no stores). A run whose max is -inf (every entry -inf or NaN)
/// gets `sum = 0` when all are -inf and NaN when any is NaN, so that merging it with other
/// runs contributes nothing (or poisons the row); its `wsum` is the plain `sum w_j z_j`.
///
/// # Safety
/// `z..z + n` readable; weighted smoothing slices hold `n`.
#[inline(always)]
pub(crate) unsafe fn stats<S: Simd>(
    s: S,
    z: *const f32,
    n: usize,
    smooth: Smooth<'_>,
    cap: Option<Cap>,
) -> BlockStats {
    // SAFETY: obligations forwarded.
    let (m, am) = unsafe { max_argmax(s, z, n) };
    // Capped logits are never -inf, so capping needs no special case.
    let top = m;
    let m = cap.map_or(m, |cp| softcap_one(s, m, cp));
    if m == f32::NEG_INFINITY && n > 0 {
        // Rare: no finite value. Scalar scan (exp would see -inf - -inf = NaN).
        // SAFETY: bounds: `z[..n]` readable (caller's obligation).
        let zs = unsafe { core::slice::from_raw_parts(z, n) };
        let nan = zs.iter().any(|v| v.is_nan());
        let wsum = match smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => zs.iter().map(|&a| f64::from(a)).sum(),
            Smooth::Weighted(w) => zs
                .iter()
                .zip(w)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum(),
        };
        return BlockStats {
            max: m,
            top,
            argmax: am,
            sum: if nan { f32::NAN } else { 0.0 },
            wsum,
        };
    }
    // SAFETY: obligations forwarded; `dst` is unused without STORE.
    let (sum, wsum) = unsafe {
        exp_pass::<S, false>(s, z, core::ptr::null_mut(), n, m, smooth, cap, Ahead::NONE)
    };
    BlockStats {
        max: m,
        top,
        argmax: am,
        sum,
        wsum,
    }
}

/// `dst_j = alpha * exp(y_j - m) - beta_j` with `y = z`, or with soft-capping
/// `dst_j = (alpha * exp(y_j - m) - beta_j) (1 - (y_j / cap)^2)`, `y = cap tanh(z / cap)`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`); weighted slices
/// hold `n`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn grad_from_stats<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    alpha: f32,
    beta: Beta<'_>,
    cap: Option<Cap>,
) {
    // SAFETY: forwarded.
    unsafe {
        match cap {
            None => affine_pass::<S, true, false, false>(s, src, dst, n, m, alpha, beta, Cap::NONE),
            Some(c) => affine_pass::<S, true, true, true>(s, src, dst, n, m, alpha, beta, c),
        }
    }
}

/// The kernel's exp in place.
///
/// # Safety
/// `p..p + n` readable and writable.
#[inline(always)]
pub(crate) unsafe fn exp_slice<S: Simd>(s: S, p: *mut f32, n: usize) {
    // SAFETY: `p` is both ends; forwarded.
    unsafe { map_stream::<S, _, false>(s, p, p, n, &ExpAny) }
}

/// The kernel's tanh in place.
///
/// # Safety
/// `p..p + n` readable and writable.
#[inline(always)]
pub(crate) unsafe fn tanh_slice<S: Simd>(s: S, p: *mut f32, n: usize) {
    // SAFETY: `p` is both ends; forwarded.
    unsafe { map_stream::<S, _, false>(s, p, p, n, &Tanh) }
}

/// `ln x` for positive normal `x` (NaN gives NaN): `x = m 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))`, `ln m = 2 atanh(t) = 2 (t + t^3/3 + .. + t^9/9)` with
/// `t = (m - 1) / (m + 1)`, `|t| <= 0.1716`: the truncation error is below `t^10 / 11 <
/// 3e-9` relative, and `m - 1` is exact (Sterbenz), so the result is within about 2 ulp.
#[inline(always)]
pub(crate) fn ln<S: Simd>(s: S, x: S::F) -> S::F {
    let (e, ln_m) = ln_parts(s, x);
    s.mul_add(e, s.splat(LN2_HI), s.mul_add(e, s.splat(LN2_LO), ln_m))
}

/// [`ln`] in two parts, `ln x = e ln 2 + ln m`: the exponent `e` (an integer, as f32)
/// and `ln m` for the mantissa `m` in `[sqrt(1/2), sqrt(2))`, `|ln m| <= 0.35`. A sum of
/// many logs keeps the integer parts exact this way.
#[inline(always)]
fn ln_parts<S: Simd>(s: S, x: S::F) -> (S::F, S::F) {
    let (e, m) = s.split_exponent(x);
    let big = s.gt(m, s.splat(core::f32::consts::SQRT_2));
    let m = s.select(big, s.mul(m, s.splat(0.5)), m);
    let e = s.select(big, s.add(e, s.splat(1.0)), e);
    let one = s.splat(1.0);
    let t = s.div(s.sub(m, one), s.add(m, one));
    let t2 = s.mul(t, t);
    let mut p = s.splat(1.0 / 9.0);
    for c in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = s.mul_add(p, t2, s.splat(c));
    }
    (e, s.mul(s.add(t, t), p))
}

/// Groups the row-group path takes through each of its two phases at a time: the exps
/// and gradients of a batch of groups, then the batch's logs and losses. The log and the
/// loss sit at the end of a long chain of dependent operations that starts at a group's
/// loads; leaving them to a second loop lets the out-of-order core overlap the groups'
/// chains instead of waiting out each one.
const BATCH_GROUPS: usize = 16;

// A batch multiplies up to `BATCH_GROUPS` sums of at most `SMALL_MAX_CLASSES` each into
// one lane (`small_batch`): the product must stay below f32's 2^128.
const _: () = assert!(BATCH_GROUPS as u32 * SMALL_MAX_CLASSES.ilog2() < 127);

/// Class counts up to which a group's gradient is computed one group late, after the next
/// group's exps are issued (`small_batch`). Each group's work is one long chain of
/// dependent steps (loads, transpose, max, exps, sum, division, gradient, transpose,
/// stores), too long for the scheduler to overlap consecutive groups on its own; with
/// the lag, the next group's first steps and this one's last steps are ready together.
/// Above, the two groups' columns no longer fit in registers and the spills cost more
/// than the overlap gains (measured: 10% faster at 3-12 classes, 8-10% slower at 20-32).
const PIPELINE_MAX_CLASSES: usize = 12;

/// Pipelined class counts from which `small_batch` takes groups in pairs, the two arrays
/// of exps trading roles between the pair's calls, instead of swapping them after each
/// group: there `mem::swap` of the two arrays went through the stack. Measured on rows in
/// cache: pairs took 0.86-0.88 of the time at 8-12 classes, but 1.04-1.06 at 3-6 (where
/// the swap stays in registers), and the same at 7. Not in the portable kernel
/// ([`Simd::EMULATED`]), where they were 1.3x slower.
const PAIRED_MIN_CLASSES: usize = 8;

/// Rows of one batch at most (`BATCH_GROUPS` groups of at most 16 lanes).
const BATCH_ROWS: usize = BATCH_GROUPS * 16;

/// Per-call constants of the row-group path.
pub(crate) struct SmallJob<'a> {
    pub classes: usize,
    /// `1 - eps`.
    pub eps1: f32,
    /// `eps / C`.
    pub k: f32,
    /// Sum of class weights.
    pub sum_w: f32,
    /// Gradient scale (`1 / weight` for mean).
    pub scale: f32,
    pub zero_grad: bool,
    pub smooth: Smooth<'a>,
    pub beta: Beta<'a>,
    /// No class weights: every counted row's `ln S` has the same coefficient
    /// `eps1 + k sum_w` (which is 1), so a batch's logs are one log of a product.
    pub unit_weights: bool,
}

/// Cross-entropy over `len / C` rows of `C <= SMALL_MAX_CLASSES` classes, `LANES` rows at
/// a time with one row per lane (the group's `LANES * C` contiguous floats transposed in
/// registers, [`Simd::load_columns`]), so that the max, the sums, the log and the loss are
/// all vertical. `plan(r0, targets, weights)` fills, for rows `r0..r0 + n` (`n` the
/// slices' length), each row's target as f32 (-1 for an ignored row) and its class weight
/// (0 for an ignored row). Returns the loss sum and the correct count.
///
/// The row loss is formed in f32 at scale 2^-64 (so a spread of +-3.4e38 cannot overflow),
/// a group's rows are added by a fixed pairwise tree, and the group sums in f64.
///
/// # Safety
/// `src..src + len` readable; `dst` null or `dst..dst + len` writable (may equal `src`);
/// `len` a multiple of `job.classes`, which is at most `SMALL_MAX_CLASSES`; planned
/// targets are `-1` or in `0..C`; weighted slices hold `C` values.
#[inline(always)]
pub(crate) unsafe fn ce_small<S: Simd, P>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    job: &SmallJob<'_>,
    plan: P,
) -> (f64, usize)
where
    P: FnMut(usize, &mut [f32], &mut [f32]),
{
    // One instantiation per class count up to `FIXED_MAX_CLASSES`: the class vectors live
    // in registers and the loops over classes unroll. Above, one instantiation for every
    // count, with room for `SMALL_MAX_CLASSES`.
    macro_rules! by_classes {
        ($($n:literal)*) => {
            match job.classes {
                // SAFETY: the caller's obligations, with `N == job.classes`.
                $($n => unsafe { ce_small_c::<S, P, $n>(s, src, dst, len, job, plan) },)*
                // SAFETY: the caller's obligations, with `job.classes <= N`.
                _ => unsafe { ce_small_c::<S, P, SMALL_MAX_CLASSES>(s, src, dst, len, job, plan) },
            }
        };
    }
    by_classes!(
        1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
    )
}

/// Class weights of 1, for uniform label smoothing on the row-group path.
static UNIT_WEIGHTS: [f32; SMALL_MAX_CLASSES] = [1.0; SMALL_MAX_CLASSES];

/// The class count of an instance of the row-group path with room for `N` classes: `N`
/// itself (a constant) for the fixed instances, else the job's.
#[inline(always)]
fn classes_of<const N: usize>(job: &SmallJob<'_>) -> usize {
    if N <= FIXED_MAX_CLASSES {
        N
    } else {
        job.classes.min(N)
    }
}

/// [`ce_small`] with room for `N` classes (see [`classes_of`]).
///
/// # Safety
/// As [`ce_small`], with `job.classes == N` if `N <= FIXED_MAX_CLASSES`, else
/// `job.classes <= N`.
#[inline(always)]
unsafe fn ce_small_c<S: Simd, P, const N: usize>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    job: &SmallJob<'_>,
    mut plan: P,
) -> (f64, usize)
where
    P: FnMut(usize, &mut [f32], &mut [f32]),
{
    let (g, c) = (S::LANES, classes_of::<N>(job));
    let rows = len / c;
    let zero = s.splat(0.0);
    let empty = GroupStats {
        m: zero,
        zt: zero,
        am: zero,
        sum: zero,
        wsum: zero,
    };
    let mut st = SmallState {
        tg: [-1.0; BATCH_ROWS + 16],
        wt: [0.0; BATCH_ROWS + 16],
        stats: [empty; BATCH_GROUPS],
        loss: s.wide_zero(),
        ln_exp: s.wide_zero(),
        correct: zero,
    };
    // Buffers for a partial group (only a call's last batch has one), `LANES * c` floats
    // (sized by the instance: a few hundred bytes to zero for small class counts).
    let (mut zb, mut gb) = ([[0f32; N]; 16], [[0f32; N]; 16]);
    let mut b0 = 0;
    while b0 < rows {
        let nb = (rows - b0).min(BATCH_GROUPS * g);
        plan(b0, &mut st.tg[..nb], &mut st.wt[..nb]);
        st.tg[nb..nb + 16].fill(-1.0);
        st.wt[nb..nb + 16].fill(0.0);
        let (full, n) = (nb / g, nb % g);
        let d = if dst.is_null() {
            dst
        } else {
            dst.wrapping_add(b0 * c)
        };
        // The last, partial group of a call runs on a zero-padded copy; its padding lanes
        // are ignored rows (`st` is padded), and only the real rows are copied back.
        let r0 = b0 + full * g;
        let spare = if n > 0 {
            // SAFETY: bounds: `n * c < 16 N` elements from row `r0` lie
            // inside `src`.
            unsafe {
                core::ptr::copy_nonoverlapping(src.add(r0 * c), zb.as_mut_ptr().cast(), n * c)
            };
            let out = if dst.is_null() {
                dst
            } else {
                gb.as_mut_ptr().cast()
            };
            Some((zb.as_ptr().cast(), out))
        } else {
            None
        };
        // SAFETY: bounds: the batch's full groups, rows `b0..b0 + full * LANES`, lie
        // inside `src` (and `dst`); the local buffers hold a group of `LANES * c`.
        unsafe { small_batch::<S, N>(s, (src.add(b0 * c), d), full, spare, job, &mut st) };
        if n > 0 && !dst.is_null() {
            // SAFETY: bounds: rows `r0..r0 + n` of `dst`, `n * c` elements.
            unsafe { core::ptr::copy_nonoverlapping(gb.as_ptr().cast(), dst.add(r0 * c), n * c) };
        }
        b0 += nb;
    }
    let count = s.to_array(st.correct)[..g]
        .iter()
        .map(|&v| v as usize)
        .sum();
    // The exponents' part of the batches' logs (see `small_batch`), exact until here.
    let ln_coef = f64::from(job.eps1) + f64::from(job.k) * f64::from(job.sum_w);
    let ln_exp = s.wide_sum(st.ln_exp) * core::f64::consts::LN_2 * ln_coef;
    (s.wide_sum(st.loss) * WSUM_UNSCALE + ln_exp, count)
}

/// The row-group path's state over one call: a batch's planned targets (f32, -1 for an
/// ignored row) and weights, with 16 slots past the batch kept "ignored" for a partial
/// group's padding lanes; the exp phase's results for the loss phase; and the
/// accumulators. Each lane sums its rows' losses (at scale 2^-64) in f64: the widening is
/// exact, no group needs a horizontal add, and the order is the same whatever the thread
/// count. Without class weights the logs' exponent parts are summed apart, unscaled
/// (integers, exact in f64).
struct SmallState<S: Simd> {
    tg: [f32; BATCH_ROWS + 16],
    wt: [f32; BATCH_ROWS + 16],
    stats: [GroupStats<S::F>; BATCH_GROUPS],
    loss: S::Wide,
    ln_exp: S::Wide,
    correct: S::F,
}

/// What a group's exp phase leaves for its loss phase: per row, the max, the target
/// logit, the argmax (as f32), the sum of exps and the smoothing sum at scale 2^-64.
#[derive(Clone, Copy)]
struct GroupStats<F> {
    m: F,
    zt: F,
    am: F,
    sum: F,
    wsum: F,
}

/// One batch: `full` consecutive groups of `LANES` rows from `src`, then, if `spare` is
/// given, one more group read from and written to its buffers (the zero-padded copy of a
/// partial group), all planned in `st` from row 0. The exp and gradient phases of every
/// group (up to [`PIPELINE_MAX_CLASSES`] classes, each gradient one group late), then the
/// loss phase of every group, which adds each row's loss to its lane's accumulator and
/// counts the correct predictions. (The spare group goes through the same calls as the
/// full ones, [`batch_group`], so the group code is inlined once per loop shape: once, or
/// twice where groups go in pairs.)
///
/// # Safety
/// `src..src + full * LANES * c` readable (`c` the class count, [`classes_of`]); the same
/// writable from `dst` unless it is null; `spare`'s source holds `LANES * c` readable
/// floats and its destination is null exactly when `dst` is, else `LANES * c` writable.
#[inline(always)]
unsafe fn small_batch<S: Simd, const N: usize>(
    s: S,
    (src, dst): (*const f32, *mut f32),
    full: usize,
    spare: Option<(*const f32, *mut f32)>,
    job: &SmallJob<'_>,
    st: &mut SmallState<S>,
) {
    let (g, c) = (S::LANES, classes_of::<N>(job));
    let groups = full + usize::from(spare.is_some());
    assert!(groups <= BATCH_GROUPS);
    let (tg, wt) = (&st.tg, &st.wt);
    // SAFETY: bounds: group `k`'s targets and weights are `tg`/`wt[k * LANES..][..LANES]`,
    // inside the arrays for `k < groups <= BATCH_GROUPS` (asserted).
    let lanes = |k: usize| unsafe {
        (
            s.load(tg.as_ptr().add(k * g)),
            s.load(wt.as_ptr().add(k * g)),
        )
    };
    // The group's columns and a tree's scratch, declared once per batch: for the looped
    // instance (64 vectors each) a per-group array would be zeroed and copied each time.
    // On the pipelined instances one of `a` and `b` holds a group's exps while the
    // previous group's gradient, from the other, waits (`pending`).
    let mut a = [s.splat(0.0); N];
    let mut b = [s.splat(0.0); N];
    let mut tmp = [s.splat(0.0); N];
    let mut pending = None;
    let place = |k: usize| match spare {
        Some(buffers) if k == full => buffers,
        // A null `dst` (forward only) must stay null, not become a small offset.
        _ if dst.is_null() => (src.wrapping_add(k * g * c), dst),
        _ => (src.wrapping_add(k * g * c), dst.wrapping_add(k * g * c)),
    };
    // Start loading the same group of the next batch: computing a batch takes long enough
    // for its lines to arrive. (Addresses only: a prefetch never faults.)
    let next = |k: usize| src.wrapping_add((BATCH_GROUPS + k) * g * c);
    // Group `$k` (statistics into `$stats`) through `batch_group`, its exps into `$cur`
    // while the pending gradient reads `$prev`.
    macro_rules! group {
        ($k:expr, $stats:expr, $cur:ident, $prev:ident) => {
            // SAFETY: bounds: group `k < full` is rows `k * LANES..(k + 1) * LANES`,
            // inside `src` (and `dst`) by the contract, the spare group is the caller's
            // buffers, and the pending gradient is the previous group's, likewise.
            unsafe {
                let arrays = [&mut $cur, &mut $prev];
                let (io, t, next) = (place($k), lanes($k), next($k));
                batch_group::<S, N>(s, job, io, t, next, $stats, pending, arrays, &mut tmp)
            }
        };
    }
    let pairs = !S::EMULATED && (PAIRED_MIN_CLASSES..=PIPELINE_MAX_CLASSES).contains(&N);
    if pairs {
        // Groups in pairs, the arrays' roles swapped between the two calls.
        for (p, pair) in st.stats[..groups].chunks_mut(2).enumerate() {
            if let [first, rest @ ..] = pair {
                pending = group!(2 * p, first, a, b);
                if let [second] = rest {
                    pending = group!(2 * p + 1, second, b, a);
                }
            }
        }
    } else {
        for (k, stats) in st.stats[..groups].iter_mut().enumerate() {
            pending = group!(k, stats, a, b);
            if N <= PIPELINE_MAX_CLASSES {
                core::mem::swap(&mut a, &mut b);
            }
        }
    }
    if let Some(g) = pending {
        // The last group's exps: in `a` after an odd number of paired groups, else in `b`
        // (after the swap, when unpaired).
        // SAFETY: bounds: the last group's rows, as above.
        unsafe {
            if pairs && groups % 2 == 1 {
                group_grad::<S, N>(s, job, &g, &mut a);
            } else {
                group_grad::<S, N>(s, job, &g, &mut b);
            }
        }
    }
    // Without class weights every counted row's `ln S` has the same coefficient, so the
    // batch takes one log, of each lane's product of its counted rows' sums, instead of
    // one per group. Each sum lies in `[1, C]` (or is NaN, which poisons the loss as it
    // should), so the product of at most 16 is below `64^16 = 2^96`: no overflow, and 16
    // roundings of 2^-24 are about one per row, as the logs had.
    let mut prod = s.splat(1.0);
    for (k, stats) in st.stats[..groups].iter().enumerate() {
        let (t, w_t) = lanes(k);
        let (l, ok) = group_loss(s, job, stats, t, w_t);
        st.loss = s.wide_add(st.loss, l);
        st.correct = s.add(st.correct, ok);
        if job.unit_weights {
            let counted = s.gt(t, s.splat(-0.5));
            prod = s.mul(prod, s.select(counted, stats.sum, s.splat(1.0)));
        }
    }
    if job.unit_weights {
        let (e, ln_m) = ln_parts(s, prod);
        let coef = s.mul_add(s.splat(job.k), s.splat(job.sum_w), s.splat(job.eps1));
        st.loss = s.wide_add(st.loss, s.mul(s.mul(ln_m, s.splat(WSUM_SCALE)), coef));
        st.ln_exp = s.wide_add(st.ln_exp, e);
    }
}

/// One group of [`small_batch`]: its exps (into `cur`, for its gradient) and statistics,
/// then, on the pipelined instances, the gradient `pending` from the group before it
/// (whose exps are in `prev`), and the group's own gradient step, returned to wait for
/// the next group. Above [`PIPELINE_MAX_CLASSES`] the gradient is formed at once and
/// nothing waits. `next` is where this group's lines start in the next batch.
///
/// # Safety
/// `gs..gs + LANES * c` readable (`c` the class count, [`classes_of`]); `gd` null or
/// `gd..gd + LANES * c` writable; `pending`, if any, names `LANES * c` writable floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn batch_group<S: Simd, const N: usize>(
    s: S,
    job: &SmallJob<'_>,
    (gs, gd): (*const f32, *mut f32),
    (t, w_t): (S::F, S::F),
    next: *const f32,
    stats: &mut GroupStats<S::F>,
    pending: Option<GroupGrad<S::F>>,
    [cur, prev]: [&mut [S::F; N]; 2],
    tmp: &mut [S::F; N],
) -> Option<GroupGrad<S::F>> {
    for i in 0..classes_of::<N>(job) {
        s.prefetch(next.wrapping_add(16 * i));
    }
    // SAFETY: bounds: the group's floats from `gs` (caller's obligation).
    *stats = unsafe { group_exps::<S, N>(s, gs, job, t, cur, tmp) };
    let grad = (!gd.is_null()).then_some(GroupGrad {
        dst: gd,
        t,
        w_t,
        sum: stats.sum,
    });
    if N > PIPELINE_MAX_CLASSES {
        if let Some(g) = grad {
            // SAFETY: bounds: `gd`'s floats (caller's obligation).
            unsafe { group_grad::<S, N>(s, job, &g, cur) };
        }
        return None;
    }
    if let Some(g) = pending {
        // SAFETY: bounds: the pending group's floats (caller's obligation).
        unsafe { group_grad::<S, N>(s, job, &g, prev) };
    }
    grad
}

/// The exp phase of one group of `LANES` rows (targets `t`, -1 for ignored): max, argmax
/// and target logit, and the exps (left in `v[..c]` for [`group_grad`]) and their sums.
/// `tmp` is scratch for the sums' trees.
///
/// # Safety
/// `src..src + LANES * c` readable (`c` the class count, [`classes_of`]).
#[inline(always)]
unsafe fn group_exps<S: Simd, const N: usize>(
    s: S,
    src: *const f32,
    job: &SmallJob<'_>,
    t: S::F,
    v: &mut [S::F; N],
    tmp: &mut [S::F; N],
) -> GroupStats<S::F> {
    let zero = s.splat(0.0);
    let c = classes_of::<N>(job);
    // Pass 1: the classes as columns (class j of every row in one vector), max and argmax.
    // SAFETY: bounds: the group's `LANES * c` floats from `src` are readable (contract).
    unsafe { load_group::<S, N>(s, src, c, v) };
    let (mut m, mut am, mut zt) = (s.splat(f32::NEG_INFINITY), zero, zero);
    if S::EMULATED || N > FIXED_MAX_CLASSES {
        // One compare per class, shared by the max and the argmax (a strict `>`: the
        // first of equal maxima wins). Kept for the portable kernel (see
        // `Simd::EMULATED`) and for the looped instance, where the separate argmax loop
        // below made 33 and 40 classes 1.14x slower.
        for (j, vj) in v[..c].iter().enumerate() {
            let jv = s.splat(j as f32);
            let gt = s.gt(*vj, m);
            m = s.select(gt, *vj, m);
            am = s.select(gt, jv, am);
            zt = s.select(s.eq(t, jv), *vj, zt);
        }
    } else {
        // The max as a chain of one `max` per class (one instruction on x86, with a
        // shorter latency than a compare into a mask followed by a blend, which the
        // argmax would ride on). `max` keeps `m` for a NaN or an equal entry, so `m` is
        // the running max of a strict `>` test, as above. The argmax, the first class
        // equal to the max, then comes from compares that all wait on `m` alone, not on
        // each other.
        for (j, vj) in v[..c].iter().enumerate() {
            m = s.max(*vj, m);
            zt = s.select(s.eq(t, s.splat(j as f32)), *vj, zt);
        }
        for (j, vj) in v[..c].iter().enumerate().rev() {
            am = s.select(s.eq(*vj, m), s.splat(j as f32), am);
        }
        // (A row of only -inf and NaN entries keeps `m` at -inf and may get the index of
        // its first -inf here rather than 0 as above; its sum of exps is NaN, so
        // `group_loss` counts it correct for no target either way.)
    }
    // Pass 2: exps and their sum (and the smoothing sum at scale 2^-64), each summed by a
    // pairwise tree over the classes: at most 6 levels (`6u`) for 64 classes.
    let (msc, scv) = (s.mul(m, s.splat(WSUM_SCALE)), s.splat(WSUM_SCALE));
    let wsum = match job.smooth {
        Smooth::Off => zero,
        // One loop for both kinds (a weight of 1 is exact): fewer copies of the code.
        // Loops, not `array::map`: a closure would be compiled outside the variant's
        // target features.
        Smooth::Uniform | Smooth::Weighted(_) => {
            let w = match job.smooth {
                Smooth::Weighted(w) => w,
                _ => &UNIT_WEIGHTS[..],
            };
            for ((d, vj), &wj) in tmp[..c].iter_mut().zip(&v[..c]).zip(w) {
                *d = s.mul(s.splat(wj), s.sub(s.mul(*vj, scv), msc));
            }
            tree_sum(s, &mut tmp[..c])
        }
    };
    for (d, vj) in tmp[..c].iter_mut().zip(v[..c].iter_mut()) {
        *vj = exp_small(s, s.sub(*vj, m));
        *d = *vj;
    }
    GroupStats {
        m,
        zt,
        am,
        sum: tree_sum(s, &mut tmp[..c]),
        wsum,
    }
}

/// What a group's gradient needs besides its exps: where it goes, the targets (-1 for
/// ignored) and their weights, and the sums of exps.
#[derive(Clone, Copy)]
struct GroupGrad<F> {
    dst: *mut f32,
    t: F,
    w_t: F,
    sum: F,
}

/// The gradient phase of one group, from its exps in `v[..c]`:
/// `g_j = alpha e_j - beta_j - tfix [j = t]` (zero for ignored rows), which needs the sum
/// but not its log, stored to `g.dst`.
///
/// # Safety
/// `g.dst..g.dst + LANES * c` writable (`c` the class count, [`classes_of`]).
#[inline(always)]
unsafe fn group_grad<S: Simd, const N: usize>(
    s: S,
    job: &SmallJob<'_>,
    g: &GroupGrad<S::F>,
    v: &mut [S::F; N],
) {
    let (zero, one) = (s.splat(0.0), s.splat(1.0));
    let (c, t, w_t, sum) = (classes_of::<N>(job), g.t, g.w_t, g.sum);
    // g_j = alpha e_j - beta_j - tfix [j = t], zero for ignored rows.
    let cw = s.mul(s.splat(job.eps1), w_t);
    let scale = s.splat(job.scale);
    let a = s.mul(scale, s.mul_add(s.splat(job.k), s.splat(job.sum_w), cw));
    let alpha = s.div(a, sum);
    let tfix = s.mul(scale, cw);
    let keep = if job.zero_grad {
        s.lt(one, zero)
    } else {
        s.gt(t, s.splat(-0.5))
    };
    for (j, vj) in v[..c].iter_mut().enumerate() {
        let b = match job.beta {
            Beta::Zero => 0.0,
            Beta::Uniform(b) => b,
            Beta::Weighted(b, w) => b * w[j],
        };
        let gj = s.mul_add(*vj, alpha, s.splat(-b));
        let gj = s.sub(gj, s.select(s.eq(t, s.splat(j as f32)), tfix, zero));
        *vj = s.select(keep, gj, zero);
    }
    // SAFETY: bounds: the group's `LANES * c` floats from `g.dst` are writable (contract).
    unsafe { store_group::<S, N>(s, g.dst, c, v) };
}

/// A group's `LANES` rows of `c` classes as `c` columns, into `v[..c]` (the rest left as
/// it was): [`Simd::load_columns`] for the fixed instances, blocks of `LANES` classes
/// ([`Simd::load_block`]) above.
///
/// # Safety
/// `p..p + LANES * c` readable; `c == N` if `N <= FIXED_MAX_CLASSES`, else `c <= N`.
#[inline(always)]
unsafe fn load_group<S: Simd, const N: usize>(s: S, p: *const f32, c: usize, v: &mut [S::F; N]) {
    if N <= FIXED_MAX_CLASSES {
        // SAFETY: the caller's obligations, with `c == N`.
        *v = unsafe { s.load_columns::<N>(p) };
        return;
    }
    let l = S::LANES;
    for h in 0..c.div_ceil(l) {
        // SAFETY: bounds: `l h < c`, the group's `l c` floats are readable.
        let block = unsafe { s.load_block(p, c, h) };
        for (vj, &b) in v[l * h..c.min(l * h + l)].iter_mut().zip(&block) {
            *vj = b;
        }
    }
}

/// The inverse of [`load_group`]: stores the first `c` columns.
///
/// # Safety
/// `p..p + LANES * c` writable; `c` as for [`load_group`].
#[inline(always)]
unsafe fn store_group<S: Simd, const N: usize>(s: S, p: *mut f32, c: usize, v: &[S::F; N]) {
    if N <= FIXED_MAX_CLASSES {
        // SAFETY: the caller's obligations, with `c == N`.
        return unsafe { s.store_columns::<N>(p, v) };
    }
    let l = S::LANES;
    for h in 0..c.div_ceil(l) {
        // The block's vectors in place where 16 follow it in `v` (all but AVX2's last
        // block): a copy of a 16-vector block costs as much as the stores.
        let copy;
        let block = match v[l * h..].first_chunk::<16>() {
            Some(b) => b,
            None => {
                let mut b = [s.splat(0.0); 16];
                for (b, &vj) in b.iter_mut().zip(&v[l * h..c.min(l * h + l)]) {
                    *b = vj;
                }
                copy = b;
                &copy
            }
        };
        // SAFETY: bounds: `l h < c`, the group's `l c` floats are writable.
        unsafe { s.store_block(p, c, h, block) };
    }
}

/// The lanes of `a` summed over the slice by a fixed pairwise tree (`ceil(log2 len)`
/// levels), in place; unrolled in the fixed instances, where the length is a constant.
#[inline(always)]
fn tree_sum<S: Simd>(s: S, a: &mut [S::F]) -> S::F {
    let mut w = a.len();
    while w > 1 {
        let half = w.div_ceil(2);
        for i in 0..w - half {
            a[i] = s.add(a[i], a[i + half]);
        }
        w = half;
    }
    a.first().copied().unwrap_or(s.splat(0.0))
}

/// The loss phase of one group: its rows' losses at scale 2^-64 (0 for ignored rows) and
/// a vector of 1.0 in the lanes whose prediction is correct.
#[inline(always)]
fn group_loss<S: Simd>(
    s: S,
    job: &SmallJob<'_>,
    st: &GroupStats<S::F>,
    t: S::F,
    w_t: S::F,
) -> (S::F, S::F) {
    let (zero, one, scv) = (s.splat(0.0), s.splat(1.0), s.splat(WSUM_SCALE));
    // Row loss at scale 2^-64: c (ln S - (z_t - m)) + k (W ln S - sum_j w_j (z_j - m)),
    // without the `ln S` terms when the batch adds them (`small_batch`).
    let cw = s.mul(s.splat(job.eps1), w_t);
    let ln_sc = if job.unit_weights {
        zero
    } else {
        s.mul(ln(s, st.sum), scv)
    };
    let msc = s.mul(st.m, scv);
    let mut row = s.mul(cw, s.sub(ln_sc, s.sub(s.mul(st.zt, scv), msc)));
    if !matches!(job.smooth, Smooth::Off) {
        let sm = s.sub(s.mul(s.splat(job.sum_w), ln_sc), st.wsum);
        row = s.mul_add(s.splat(job.k), sm, row);
    }
    let valid = s.gt(t, s.splat(-0.5));
    let loss = s.select(valid, row, zero);
    let ok = s.select(s.eq(st.am, t), one, zero);
    // A NaN loss counts no prediction correct: a NaN sum (a NaN or +inf logit, or a row
    // of -inf; with unit weights its log is not in `row`), or a NaN `row` (the smoothing
    // term's `0 w_j * -inf z_j`, with a finite sum).
    let ok = s.select(s.eq(row, row), ok, zero);
    (loss, s.select(s.eq(st.sum, st.sum), ok, zero))
}
