//! Pass 1: the max over a run's non-NaN entries and the first index holding it.

use crate::arch::Simd;
use crate::arch::pass::{LANE_INDEX, Logits, load_upto};
use crate::paths::{ARGMAX_BLOCK, ARGMAX_SWEEP};

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
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn max_argmax<S: Simd>(s: S, p: *const f32, n: usize) -> (f32, usize) {
    let neg_inf = s.splat(f32::NEG_INFINITY);
    let (mut best, mut bv, mut win) = (f32::NEG_INFINITY, neg_inf, 0);
    let mut b = 0;
    while b < n {
        let len = (n - b).min(ARGMAX_BLOCK);
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
    let len = (n - win).min(ARGMAX_BLOCK);
    // SAFETY: bounds: `win + len <= n`.
    let k = unsafe { first_equal(s, p.add(win), len, best) };
    // `k == len` (no equal entry) cannot happen: `best` is an entry of the winning block.
    (best, win + if k < len { k } else { 0 })
}

/// The first index `k < n` with `p[k] == b`, or `n`: branch-free for short blocks,
/// stopping at the first hit for long ones.
///
/// # Safety
/// `p`'s entries `0..n` must be readable; `n <= MAX_BLOCK`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn first_equal<S: Simd, L: Logits<S>>(s: S, p: L, n: usize, b: f32) -> usize {
    // SAFETY: forwarded.
    unsafe {
        if n <= ARGMAX_SWEEP * S::LANES {
            first_equal_sweep(s, p, n, s.splat(b))
        } else {
            first_equal_exit(s, p, n, s.splat(b))
        }
    }
}

/// The first index `k < n` with `p[k] == b` (lanes of `bv`), from a sweep of all `n`
/// entries that keeps, per lane, the largest `-k` of an equal entry (-inf if none); `n`
/// if no entry is equal. Indices below 2^24 are exact in f32.
///
/// # Safety
/// `p`'s entries `0..n` must be readable; `n <= MAX_BLOCK`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn first_equal_sweep<S: Simd, L: Logits<S>>(s: S, p: L, n: usize, bv: S::F) -> usize {
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
/// `p`'s entries `0..n` must be readable.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn first_equal_exit<S: Simd, L: Logits<S>>(s: S, p: L, n: usize, bv: S::F) -> usize {
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
/// `p`'s entries `0..n` must be readable.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn lane_max<S: Simd, L: Logits<S>>(s: S, p: L, n: usize) -> S::F {
    let l = S::LANES;
    let neg_inf = s.splat(f32::NEG_INFINITY);
    // Four independent maxima: `vmaxps` has a latency of 4 cycles and two loads issue per
    // cycle, so fewer chains would make this pass latency-bound.
    let (mut b0, mut b1, mut b2, mut b3) = (neg_inf, neg_inf, neg_inf, neg_inf);
    let mut i = 0;
    while i + 4 * l <= n {
        // SAFETY: bounds: `i + 4 * LANES <= n` by the loop condition.
        let v = unsafe {
            [
                p.load(s, i),
                p.load(s, i + l),
                p.load(s, i + 2 * l),
                p.load(s, i + 3 * l),
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
