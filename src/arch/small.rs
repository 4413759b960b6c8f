//! The row-group path for rows of at most `SMALL_MAX_CLASSES` classes: `LANES` rows at a
//! time, one row per lane, so that the max, the sums, the log and the loss are vertical
//! operations (see the overview in [`crate::arch`]).

use crate::arch::math::{exp_small, ln, ln_parts};
use crate::arch::pass::{WSUM_SCALE, WSUM_UNSCALE};
use crate::arch::{Beta, FIXED_MAX_CLASSES, SMALL_MAX_CLASSES, Simd, Smooth};

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
