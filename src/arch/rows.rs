//! The fused row driver: a chunk of whole rows of at most `FUSED_MAX_CLASSES` classes
//! through passes 1 to 3, short rows in groups side by side, long rows online, and rows of
//! `TRAIL_MIN_CLASSES..=TRAIL_MAX_CLASSES` linked (each row's pass 3 inside the next row's
//! pass 2). Every function is `#[inline(always)]` (see [`crate::arch`]).

use crate::arch::math::{Cap, capped_target_grad, softcap_one};
use crate::arch::pass::exp::{
    Ahead, PREFETCH_MIN_CLASSES, SMOOTH_OFF, TrailBlock, exp_pass, exp_pass_mode,
};
use crate::arch::pass::map::{affine_pass, fill_zero, scale_pass};
use crate::arch::pass::max::max_argmax;
use crate::arch::pass::online::{
    ONLINE_MAX_SEGMENTS, ONLINE_MIN_CLASSES, Segment, TrailRow, online_pass, segment_factor,
};
use crate::arch::{Beta, BlockStats, Simd, Smooth};

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
pub(crate) const GROUP_ROWS: usize = 4;

/// The longest rows that [`ce_rows`] groups: those that pass 2 does not prefetch for.
/// With longer rows, grouped, the prefetches run a whole group ahead rather than one row,
/// and rows from DRAM got slower (7-10% at 256 classes, 10-16% at 1000), though rows in
/// L2 or L3 still gained.
pub(crate) const GROUP_MAX_CLASSES: usize = PREFETCH_MIN_CLASSES - 1;

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
                            exp_pass_mode::<S, $store, SMOOTH_OFF, false, true>(
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
            // The target entry, in f64 from the statistics, stored last.
            let (beta_t, tfix) = (beta_at(job.beta, t), f64::from(p.tfix));
            let g = capped_target_grad(alpha, row.zt, f64::from(m), beta_t, tfix, cp.cap);
            // SAFETY: bounds: `t < c`, inside the row of `dst`.
            unsafe { *row.dst.add(t) = g };
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
