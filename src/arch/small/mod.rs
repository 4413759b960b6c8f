//! The row-group path for rows of at most `SMALL_MAX_CLASSES` classes: `LANES` rows at a
//! time, one row per lane, so that the max, the sums, the log and the loss are vertical
//! operations (see the overview in [`crate::arch`]).

mod group;

use crate::arch::math::ln_parts;
use crate::arch::pass::{WSUM_SCALE, WSUM_UNSCALE};
use crate::arch::{Beta, Simd, Smooth};
use crate::paths::{
    BATCH_GROUPS, FIXED_MAX_CLASSES, PAIRED_MIN_CLASSES, PIPELINE_MAX_CLASSES, SMALL_MAX_CLASSES,
};
use group::{GroupStats, batch_group, group_grad, group_loss};

// A batch multiplies up to `BATCH_GROUPS` sums of at most `SMALL_MAX_CLASSES` each into
// one lane (`small_batch`): the product must stay below f32's 2^128.
const _: () = assert!(BATCH_GROUPS as u32 * SMALL_MAX_CLASSES.ilog2() < 127);

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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn small_batch<S: Simd, const N: usize>(
    s: S,
    (src, dst): (*const f32, *mut f32),
    full: usize,
    spare: Option<(*const f32, *mut f32)>,
    job: &SmallJob<'_>,
    st: &mut SmallState<S>,
) {
    let groups = full + usize::from(spare.is_some());
    assert!(groups <= BATCH_GROUPS);
    // SAFETY: the caller's obligations, forwarded; `groups <= BATCH_GROUPS` (asserted).
    unsafe { batch_exps::<S, N>(s, (src, dst), full, spare, job, st) };
    // SAFETY: `groups <= BATCH_GROUPS` (asserted).
    unsafe { batch_losses(s, job, st, groups) };
}

/// Group `k`'s planned targets and weights, as vectors.
///
/// # Safety
/// `k < BATCH_GROUPS`, so that `k * LANES + LANES <= BATCH_ROWS + 16`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn group_lanes<S: Simd>(s: S, tg: &[f32], wt: &[f32], k: usize) -> (S::F, S::F) {
    debug_assert!(k < BATCH_GROUPS && tg.len() == BATCH_ROWS + 16 && wt.len() == tg.len());
    // SAFETY: bounds: group `k`'s targets and weights are `tg`/`wt[k * LANES..][..LANES]`,
    // inside the arrays for `k < BATCH_GROUPS` (caller's obligation).
    unsafe {
        (
            s.load(tg.as_ptr().add(k * S::LANES)),
            s.load(wt.as_ptr().add(k * S::LANES)),
        )
    }
}

/// The exp and gradient phases of [`small_batch`]: each group's statistics into
/// `st.stats`, each gradient stored (one group late up to [`PIPELINE_MAX_CLASSES`]
/// classes, the last one before returning).
///
/// # Safety
/// As [`small_batch`], with `full + spare.is_some() <= BATCH_GROUPS`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn batch_exps<S: Simd, const N: usize>(
    s: S,
    (src, dst): (*const f32, *mut f32),
    full: usize,
    spare: Option<(*const f32, *mut f32)>,
    job: &SmallJob<'_>,
    st: &mut SmallState<S>,
) {
    let (g, c) = (S::LANES, classes_of::<N>(job));
    let groups = full + usize::from(spare.is_some());
    let (tg, wt) = (&st.tg, &st.wt);
    // SAFETY: `k < groups <= BATCH_GROUPS` (caller's obligation) at every call below.
    let lanes = |k: usize| unsafe { group_lanes(s, tg, wt, k) };
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
}

/// The loss phase of [`small_batch`]: each group's rows' losses into their lanes'
/// accumulators, and the correct predictions counted.
///
/// # Safety
/// `groups <= BATCH_GROUPS`, and the batch's exp phase has filled `st.stats[..groups]`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn batch_losses<S: Simd>(s: S, job: &SmallJob<'_>, st: &mut SmallState<S>, groups: usize) {
    // Without class weights every counted row's `ln S` has the same coefficient, so the
    // batch takes one log, of each lane's product of its counted rows' sums, instead of
    // one per group. Each sum lies in `[1, C]` (or is NaN, which poisons the loss as it
    // should), so the product of at most 16 is below `64^16 = 2^96`: no overflow, and 16
    // roundings of 2^-24 are about one per row, as the logs had.
    let mut prod = s.splat(1.0);
    for (k, stats) in st.stats[..groups].iter().enumerate() {
        // SAFETY: `k < groups <= BATCH_GROUPS` (caller's obligation).
        let (t, w_t) = unsafe { group_lanes(s, &st.tg, &st.wt, k) };
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
