//! Passes 1 and 2 in one sweep for rows of at least `ONLINE_MIN_CLASSES` classes: block
//! by block, exps relative to the running max, in segments rescaled in pass 3.

use crate::arch::Simd;
use crate::arch::math::Cap;
use crate::arch::pass::exp::{Ahead, SMOOTH_OFF, TrailBlock, exp_pass_mode};
use crate::arch::pass::max::{first_equal, lane_max};
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
/// f64. The argmax is the three-pass one: the winning block is the last that raised the
/// max (the same strict test on the same blocks as [`max_argmax`](crate::arch::pass::max::max_argmax)); it is rescanned when
/// it raises the max, while it is in L1 and before its exps overwrite it in place.
///
/// A reference of -inf (every entry so far -inf or NaN) is replaced by 0 for the exps:
/// they are 0 (or NaN) either way, and the segment's factor `exp(-inf - max)` is 0 (NaN
/// when the max is -inf too, as the three-pass sum is then NaN).
///
/// With `TRAIL`, the same sweep also forms the gradient of `trail`, the row before (of the
/// same length): block `b` of it is scaled by its segment's factor while block `b` of this
/// row computes its exps (see [`TRAIL_MAX_CLASSES`](crate::paths::TRAIL_MAX_CLASSES)).
///
/// # Safety
/// `src..src + n` readable; if `STORE`, `dst..dst + n` writable (it may equal `src`);
/// `n <= FUSED_MAX_CLASSES`. With `TRAIL`: `trail.dst..trail.dst + n` readable and
/// writable, disjoint from both, and `trail.segs` segments of a row of `n` classes (as
/// this function returns them).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn online_pass<S: Simd, const STORE: bool, const TRAIL: bool>(
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
            exp_pass_mode::<S, STORE, SMOOTH_OFF, false, TRAIL>(
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
pub(crate) struct TrailRow<'a> {
    pub(crate) dst: *mut f32,
    pub(crate) segs: &'a [Segment],
    pub(crate) m: f32,
    pub(crate) alpha: f64,
}

impl TrailRow<'_> {
    pub(crate) const NONE: TrailRow<'static> = TrailRow {
        dst: core::ptr::null_mut(),
        segs: &[],
        m: 0.0,
        alpha: 0.0,
    };
}

/// `exp(reference - max)` in f64: the factor that puts a segment's exps on the row's max.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn segment_factor(reference: f32, max: f32) -> f64 {
    (f64::from(reference) - f64::from(max)).exp()
}
