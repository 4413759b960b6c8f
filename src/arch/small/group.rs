//! One group of `LANES` rows of the row-group path, one row per lane: its columns loaded
//! and transposed in registers, the exp phase (max, argmax, target logit, exps and their
//! sums), the gradient phase, and the loss phase.

use super::{SmallJob, UNIT_WEIGHTS, classes_of};
use crate::arch::math::{exp_small, ln};
use crate::arch::pass::WSUM_SCALE;
use crate::arch::{Beta, Simd, Smooth};
use crate::paths::{FIXED_MAX_CLASSES, PIPELINE_MAX_CLASSES};

/// What a group's exp phase leaves for its loss phase: per row, the max, the target
/// logit, the argmax (as f32), the sum of exps and the smoothing sum at scale 2^-64.
#[derive(Clone, Copy)]
pub(super) struct GroupStats<F> {
    pub(super) m: F,
    pub(super) zt: F,
    pub(super) am: F,
    pub(super) sum: F,
    pub(super) wsum: F,
}

/// One group of [`small_batch`](super::small_batch): its exps (into `cur`, for its gradient) and statistics,
/// then, on the pipelined instances, the gradient `pending` from the group before it
/// (whose exps are in `prev`), and the group's own gradient step, returned to wait for
/// the next group. Above [`PIPELINE_MAX_CLASSES`] the gradient is formed at once and
/// nothing waits. `next` is where this group's lines start in the next batch.
///
/// # Safety
/// `gs..gs + LANES * c` readable (`c` the class count, [`classes_of`]); `gd` null or
/// `gd..gd + LANES * c` writable; `pending`, if any, names `LANES * c` writable floats.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn batch_group<S: Simd, const N: usize>(
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
pub(super) struct GroupGrad<F> {
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
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn group_grad<S: Simd, const N: usize>(
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn group_loss<S: Simd>(
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
