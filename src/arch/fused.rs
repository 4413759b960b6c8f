//! The fused row driver: a chunk of whole rows of at most `FUSED_MAX_CLASSES` classes
//! through passes 1 to 3, short rows in groups side by side, long rows online, and rows of
//! `TRAIL_MIN_CLASSES..=TRAIL_MAX_CLASSES` linked (each row's pass 3 inside the next row's
//! pass 2); and rows of 16-bit logits without label smoothing read in 16-bit
//! ([`ce_rows_half`]). Every function is `#[inline(always)]` (see [`crate::arch`]).

use crate::arch::convert::{HalfFormat, widen_one};
use crate::arch::math::{Cap, capped_target_grad, softcap_opt};
use crate::arch::pass::Half16;
use crate::arch::pass::exp::{Ahead, SMOOTH_OFF, TrailBlock, exp_pass, exp_pass_mode};
use crate::arch::pass::map::{affine_pass, fill_zero, scale_pass, scale_stream, stream_copy};
use crate::arch::pass::max::{first_equal, lane_max, max_argmax};
use crate::arch::pass::online::{
    F32Row, HalfGradient, HalfRow, NoTrail, ONLINE_MAX_SEGMENTS, RowBlocks, Segment, TargetEntry,
    TrailRow, online_pass, segment_factor,
};
use crate::arch::{Beta, BlockStats, Simd, Smooth};
use crate::paths::{
    GROUP_LONG_MAX_CLASSES, GROUP_MAX_CLASSES, GROUP_ROWS, MAX_BLOCK, ONLINE_MIN_CLASSES,
    PREFETCH_MIN_CLASSES, STAGE_MIN_CLASSES, TRAIL_MIN_CLASSES, links_half, reads_half, trails,
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
    /// Whether rows of up to [`GROUP_LONG_MAX_CLASSES`] are grouped as the short ones
    /// are (the driver's choice, `Backend::groups_long_rows`).
    pub group_long: bool,
}

impl RowsJob<'_> {
    /// No label smoothing (sum or gradient constant) and no capping: the rows that may
    /// run online.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn plain(&self) -> bool {
        self.unsmoothed() && self.cap.is_none()
    }

    /// No label smoothing, capped or not: the rows that may run linked. Their pass 3 is
    /// the plain scale of what pass 2 stored (with capping, the exps times the chain
    /// factor), which fits in the next row's pass 2 as well.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn unsmoothed(&self) -> bool {
        matches!((self.smooth, self.beta), (Smooth::Off, Beta::Zero))
    }
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

/// `plan(r0, plans)`: the targets and gradient coefficients of rows `r0..r0 +
/// plans.len()`, called once per batch of rows ([`CALLBACK_ROWS`] in [`ce_rows`], one
/// row in [`ce_rows_half`], whose rows are long). A trait object (as [`RowsDone`]) so
/// that the kernels are instantiated in this crate, at its own opt-level, whatever the
/// caller's closure (see [`crate::arch`]).
pub(crate) type PlanRows<'a> = dyn FnMut(usize, &mut [RowPlan]) + 'a;

/// `out(r0, stats)`: the statistics of rows `r0..r0 + stats.len()`, `None` for a row
/// without a target, once per batch of rows.
pub(crate) type RowsDone<'a> = dyn FnMut(usize, &[Option<RowOut>]) + 'a;

/// Rows per call of the callbacks in [`ce_rows`]: `plan` for the next `CALLBACK_ROWS`
/// rows, then `out` once they are done; one group of grouped rows. A call between the
/// passes spills the live vector registers: one pair of calls per row ran 5-10% slower
/// at 300-1000 classes (Zen 4, AVX-512). With 4 rows a call, the times were within 4% of
/// inlined callbacks at 65-32000 classes, and 3-5% faster at 65-200 (8, 16 or 32 rows
/// ran up to 8% slower at 1000 classes, a layout effect, not a trend).
const CALLBACK_ROWS: usize = 4;

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
    /// The row's statistics for the driver.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn out(&self) -> RowOut {
        RowOut {
            stats: BlockStats {
                max: self.m,
                top: self.top,
                argmax: self.argmax,
                sum: self.sum,
                wsum: self.wsum,
            },
            target_logit: self.zt,
        }
    }

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
/// [`GROUP_ROWS`] rows (one row per group for rows longer than [`GROUP_MAX_CLASSES`], or
/// with `job.group_long` than [`GROUP_LONG_MAX_CLASSES`]): pass 1 (max and argmax) of
/// every row of the group, then pass 2 (exps and sums, [`exp_pass`]), then each counted
/// row's statistics to `out`, then the gradients (pass 3, [`scale_pass`]). Rows of at
/// least [`ONLINE_MIN_CLASSES`] without smoothing or capping fuse passes 1 and 2
/// ([`online_pass`]). Without smoothing (capped or not), from [`TRAIL_MIN_CLASSES`] to
/// [`TRAIL_MAX_CLASSES`](crate::paths::TRAIL_MAX_CLASSES), a row's pass 3 runs inside
/// the next row's pass 2 (or after the last row). With a staging row `stage` (non-null,
/// the driver's choice for a separate `dst`, see
/// [`stages_into`](crate::paths::stages_into)), each row's pass 2 stores its exps there;
/// without smoothing, pass 3 streams the gradient from there to `dst`
/// ([`streamed_gradient`]), with smoothing it forms the gradient there, copied out
/// ([`stream_copy`]).
///
/// # Safety
/// `src..src + len` readable; `dst` null (forward only) or `dst..dst + len` writable (it
/// may equal `src`); `len` a multiple of `job.classes`; every planned target
/// `< job.classes`; weights in `job` hold `job.classes` values; `stage` null, or
/// `stage..stage + job.classes` writable and disjoint from `src` and `dst`, with `dst`
/// non-null and `job.classes > GROUP_MAX_CLASSES`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn ce_rows<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    stage: *mut f32,
    job: &RowsJob<'_>,
    plan: &mut PlanRows<'_>,
    out: &mut RowsDone<'_>,
) {
    // One instance per group size: with one row the group loops vanish, and long rows run
    // as tight a loop as before grouping.
    // SAFETY: the caller's obligations, forwarded.
    unsafe {
        let c = job.classes;
        if c <= GROUP_MAX_CLASSES || (job.group_long && c <= GROUP_LONG_MAX_CLASSES) {
            // Staged rows are longer (their rows come one per group).
            const { assert!(GROUP_LONG_MAX_CLASSES < STAGE_MIN_CLASSES) };
            debug_assert!(stage.is_null());
            let none = core::ptr::null_mut();
            ce_row_groups::<S, GROUP_ROWS>(s, (src, dst, none), len, job, plan, out)
        } else {
            ce_row_groups::<S, 1>(s, (src, dst, stage), len, job, plan, out)
        }
    }
}

/// [`ce_rows`] in groups of `G` rows: per group, pass 1 of every row ([`first_pass`]),
/// then pass 2 of every row (plain, linked or online), then the counted rows' statistics
/// to `out`, then the gradients ([`gradients`]); staged (`stage` non-null, `G == 1`),
/// the row's `dst` in pass 2 is the staging row, and pass 3 streams the gradient out
/// ([`streamed_gradient`], without smoothing) or forms it there to be copied out.
///
/// # Safety
/// As [`ce_rows`], with `stage` null unless `G == 1`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn ce_row_groups<S: Simd, const G: usize>(
    s: S,
    (src, dst, stage): (*const f32, *mut f32, *mut f32),
    len: usize,
    job: &RowsJob<'_>,
    plan: &mut PlanRows<'_>,
    out: &mut RowsDone<'_>,
) {
    let c = job.classes;
    let rows = len / c;
    let plain = job.plain();
    let online = c >= ONLINE_MIN_CLASSES && plain;
    // Not in the portable kernel (vectors of two registers): it ran 2-6% slower linked.
    let trail = job.unsmoothed() && G == 1 && trails(c) && !S::EMULATED && stage.is_null();
    const { assert!(GROUP_LONG_MAX_CLASSES < TRAIL_MIN_CLASSES) };
    debug_assert!(!online || G == 1);
    // Staged rows are not linked (`stages_into`): their `dst` is the staging row only
    // from pass 2 to the copy.
    debug_assert!(stage.is_null() || (G == 1 && !trail && !dst.is_null()));
    let mut links = Links::new();
    let mut group = [GroupRow::IDLE; G];
    // The callbacks' batch: its first row, and its rows' plans and statistics.
    let mut b0 = 0;
    let mut plans = [GroupRow::IDLE.plan; CALLBACK_ROWS];
    let mut done = [None; CALLBACK_ROWS];
    const { assert!(CALLBACK_ROWS.is_multiple_of(GROUP_ROWS)) };
    let mut r0 = 0;
    while r0 < rows {
        let g = G.min(rows - r0);
        let group = &mut group[..g];
        // `G` divides `CALLBACK_ROWS`, so a group never straddles two batches.
        let k0 = r0 - b0;
        if k0 == 0 {
            plan(r0, &mut plans[..CALLBACK_ROWS.min(rows - r0)]);
        }
        // SAFETY: bounds: rows `r0..r0 + g` lie inside `src` (and `dst`), `r0 + g <= rows`.
        unsafe { first_pass(s, job, (src, dst), r0, group, &plans[k0..k0 + g], online) };
        // Staged: passes 2 and 3 of the group's one row in the staging row.
        let out_row = group[0].dst;
        if !stage.is_null() {
            group[0].dst = stage;
        }
        for (k, row) in group.iter_mut().enumerate() {
            if row.plan.target.is_none() {
                continue;
            }
            // The row a group ahead: the next row when rows come one per group, else the
            // same row of the next group (pass 2 prefetches only rows of at least
            // `PREFETCH_MIN_CLASSES`, so grouped rows only with `job.group_long`).
            let next = match job.prefetch {
                // Only linked rows prefetch a separate destination (see `Ahead`).
                None if trail => Ahead::rows(row.src, row.dst, g * c),
                None => Ahead::source(row.src.wrapping_add(g * c)),
                Some((base, stride)) => Ahead::source(core::ptr::without_provenance(
                    base.wrapping_add((r0 + k + g).wrapping_mul(stride)),
                )),
            };
            let store = !dst.is_null() && !row.plan.zero_grad;
            // SAFETY: bounds: the row of `src` and `dst`, `c <= FUSED_MAX_CLASSES`
            // elements (the driver's limit for whole rows); a pending row is an earlier
            // row of `dst`, `c` elements, disjoint from this one, its target inside it.
            unsafe {
                if online {
                    online_row(s, row, c, store, next, &mut links);
                } else if let Some(p) = links.pending.take() {
                    linked_row(s, job.cap, row, &p, c, store, next);
                } else {
                    (row.sum, row.wsum) = if store {
                        exp_pass::<S, true>(
                            s, row.src, row.dst, c, row.m, job.smooth, job.cap, next,
                        )
                    } else {
                        exp_pass::<S, false>(
                            s, row.src, row.dst, c, row.m, job.smooth, job.cap, next,
                        )
                    };
                }
            }
        }
        for (d, row) in done[k0..k0 + g].iter_mut().zip(group.iter()) {
            *d = row.plan.target.map(|_| row.out());
        }
        let counted = group[0].plan.target.is_some() && !group[0].plan.zero_grad;
        if !dst.is_null() {
            if !stage.is_null() && job.unsmoothed() && counted {
                // An online row's segments, as `gradients` takes them.
                let segs = if online { links.segs(links.cur) } else { &[] };
                // SAFETY: bounds: the staging row and the row of `dst`, `c` elements
                // each, disjoint (caller's obligation); the segments lie inside the row.
                unsafe { streamed_gradient(s, job, &group[0], out_row, c, segs) };
            } else {
                // SAFETY: bounds: the group's rows of `dst`, `c` elements each.
                unsafe { gradients(s, job, group, c, online, trail, &mut links) };
                if !stage.is_null() {
                    // SAFETY: bounds: the staging row and the row of `dst`, `c`
                    // elements each, disjoint (caller's obligation).
                    unsafe { stream_copy(s, stage, out_row, c) };
                }
            }
        }
        r0 += g;
        if r0 - b0 == CALLBACK_ROWS || r0 == rows {
            out(b0, &done[..r0 - b0]);
            b0 = r0;
        }
    }
    if !stage.is_null() {
        // The streamed stores are weakly ordered: done before the gradient is handed back.
        s.store_fence();
    }
    if let Some(p) = links.pending {
        let segs = links.segs(1 - links.cur);
        // SAFETY: bounds: the row of `dst`, `c` elements, with its segments.
        unsafe { row_gradient(s, job, &p, c, segs) };
    }
}

/// Whether rows of 16-bit logits take [`ce_rows_half`]: rows without label smoothing
/// (soft-capped or not) of `HALF_ROWS_MIN_CLASSES` to `FUSED_MAX_CLASSES` classes
/// ([`reads_half`]).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn reads_half_rows(job: &RowsJob<'_>) -> bool {
    job.unsmoothed() && reads_half(job.classes)
}

/// Whether [`ce_rows_half`] runs its rows online and may link them ([`links_half`]):
/// plain rows (without capping) of the linked range. The driver cuts such rows into
/// linked chunks, and the scratch holds two rows.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn links_half_job(job: &RowsJob<'_>) -> bool {
    job.plain() && links_half(job.classes)
}

/// [`ce_rows`] on `len / job.classes` whole rows of 16-bit logits (format `format`), for
/// the rows [`reads_half_rows`] accepts. Per row: passes 1 and 2 read the logits widened
/// in registers as they are loaded ([`HalfRow`]) and store the exps in `exps`, an f32 row
/// that stays in L1 or L2; pass 3 ([`HalfGradient`]) scales it block by block, forms the
/// target entry in f32, and narrows each block into the row of `dst`. DRAM sees 2 bytes
/// read and 2 written per logit, and no f32 copy of the logits is made. Rows that
/// [`ce_rows`] runs online (plain, from `ONLINE_MIN_CLASSES`) take the one-sweep passes 1
/// and 2 ([`online_pass`]); shorter rows and soft-capped ones take them apart, grouped
/// where [`ce_rows`] groups them ([`half_row_groups`]).
///
/// Online rows of the f32 path's linked range ([`links_half`]) are linked too, block by
/// block:
/// while the passes of row `r + 1` sweep its blocks, pass 3 of row `r` (a
/// [`HalfGradient`] as [`online_pass`]'s trailing row) forms and narrows its own block of
/// the same place just before each, from the other of two scratch rows of exps. The row's
/// pass 3 then no longer waits on a sweep of its own. On the Zen 5 host (bf16, alternating
/// builds, ns per logit) it took 0.175-0.183 against 0.182-0.191 at 4096x32000 on one
/// thread and 0.086-0.088 against 0.101-0.103 on two; 0.171-0.174 against 0.180-0.184 at
/// 8192x16384 on one, 0.091-0.093 against 0.099-0.108 on two; with `Kernel::Avx2`
/// 0.370-0.375 against 0.377-0.388 (4096x32000, one thread). On the Zen 4 host an earlier
/// form, which widened each block into an f32 buffer first, was no faster linked (bf16
/// over f32 at 4096x32000 on two threads 1.12-1.24x linked, 1.09-1.16x not).
///
/// The f32 arithmetic is [`ce_rows`]'s on the widened rows, in the same blocks and
/// segments (neither grouping nor linking changes a value): the row statistics are the
/// same bits, and the gradient is the same f32 values rounded once.
///
/// # Safety
/// `src..src + len` readable; `dst` null (forward only) or `dst..dst + len` writable (it
/// may equal `src`); `exps..exps + half_scratch(job.classes)` writable, disjoint from
/// both; `len` a multiple of `job.classes`; `reads_half_rows(job)`; every planned target
/// `< job.classes`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn ce_rows_half<S: Simd>(
    s: S,
    format: HalfFormat,
    src: *const u16,
    dst: *mut u16,
    len: usize,
    exps: *mut f32,
    job: &RowsJob<'_>,
    plan: &mut PlanRows<'_>,
    out: &mut RowsDone<'_>,
) {
    let c = job.classes;
    debug_assert!(reads_half_rows(job));
    if c < ONLINE_MIN_CLASSES || !job.plain() {
        // SAFETY: the caller's obligations, forwarded.
        unsafe {
            match format {
                HalfFormat::Bf16 => {
                    half_row_groups::<S, true>(s, (src, dst), len, exps, job, plan, out)
                }
                HalfFormat::F16 => {
                    half_row_groups::<S, false>(s, (src, dst), len, exps, job, plan, out)
                }
            }
        }
        return;
    }
    let linked = links_half_rows::<S>(job) && !dst.is_null();
    // Two sets of segments and, linked, two rows of exps: the pending row's, whose
    // gradient is formed inside this row's passes, and this row's (`cur`).
    let mut segs = [[Segment::EMPTY; ONLINE_MAX_SEGMENTS]; 2];
    let mut nsegs = [0; 2];
    let mut cur = 0;
    let mut pending: Option<(GroupRow, *mut u16)> = None;
    for r in 0..len / c {
        // SAFETY: bounds: row `r` lies inside `src` (`r < len / c`).
        let row_src = unsafe { src.add(r * c) };
        let row_dst = dst.wrapping_add(r * c);
        let mut p = GroupRow::IDLE.plan;
        plan(r, core::slice::from_mut(&mut p));
        let Some(t) = p.target else {
            if !dst.is_null() {
                // An ignored row's gradient is +0 (all bits clear in both formats).
                // SAFETY: bounds: the row of `dst`, `c` elements.
                unsafe { row_dst.write_bytes(0, c) };
            }
            continue;
        };
        debug_assert!(t < c);
        // SAFETY: bounds: `t < c` (plan contract, checked by the driver's validation).
        let zt = widen_one(format, unsafe { *row_src.add(t) });
        let store = !dst.is_null() && !p.zero_grad;
        let [a, b] = &mut segs;
        let (mine, theirs) = if cur == 0 { (a, &*b) } else { (b, &*a) };
        let theirs = &theirs[..nsegs[1 - cur]];
        // A row without a gradient to store takes no trailing row: the pending one is
        // finished first.
        if let (false, Some((row, d))) = (store, pending) {
            pending = None;
            // SAFETY: bounds: the pending row's exps with its segments, and its row of
            // `dst`, disjoint.
            unsafe { half_gradient(format, &row, d, theirs, None).all(s, c) };
        }
        let row_exps = exps.wrapping_add(cur * c);
        // SAFETY: bounds: the row of `src` holds `c` readable logits (the next row's
        // address is only prefetched), `row_exps..row_exps + c` writable (the scratch
        // holds two rows when linked), `c <= FUSED_MAX_CLASSES` (`reads_half_rows`); the
        // pending row's exps are the other scratch row, with its segments, and its row
        // of `dst` is an earlier row, disjoint from this one; rows are linked only from
        // `ONLINE_MIN_CLASSES` (`links_half`).
        let (m, argmax, sum, nseg) = unsafe {
            let trail = pending
                .take()
                .map(|(row, d)| half_gradient(format, &row, d, theirs, None));
            match format {
                HalfFormat::Bf16 => {
                    half_passes::<S, true>(s, row_src, c, row_exps, mine, store, trail)
                }
                HalfFormat::F16 => {
                    half_passes::<S, false>(s, row_src, c, row_exps, mine, store, trail)
                }
            }
        };
        nsegs[cur] = nseg;
        let row = GroupRow {
            src: core::ptr::null(),
            dst: row_exps,
            plan: p,
            zt,
            m,
            top: m,
            argmax,
            sum,
            wsum: 0.0,
        };
        out(r, &[Some(row.out())]);
        if store && linked {
            pending = Some((row, row_dst));
            cur = 1 - cur;
        } else if store {
            let segs = &segs[cur][..nseg];
            // SAFETY: bounds: `row_exps` holds the row's exps with its segments; the row
            // of `dst`, `c` elements, disjoint from `row_exps`.
            unsafe { half_gradient(format, &row, row_dst, segs, None).all(s, c) };
        } else if !dst.is_null() {
            // SAFETY: bounds: the row of `dst`, `c` elements.
            unsafe { row_dst.write_bytes(0, c) };
        }
    }
    if let Some((row, d)) = pending {
        let segs = &segs[1 - cur][..nsegs[1 - cur]];
        // SAFETY: bounds: the last stored row's exps with its segments (flipped since),
        // and its row of `dst`.
        unsafe { half_gradient(format, &row, d, segs, None).all(s, c) };
    }
}

/// Whether [`ce_rows_half`] links its rows (with a gradient to form): each row's pass 3
/// inside the next row's passes 1 and 2, block by block, from a second scratch row of
/// exps. The online rows of the f32 rows' range ([`links_half_job`]), and not on the
/// portable kernel (as `ce_row_groups`). Up to 65536 classes (two scratch rows of 256
/// KiB) it gained nothing there (Zen 5, bf16 at 2048x65536, alternating builds, three
/// rounds, ns per logit: 0.174-0.185 linked against 0.170-0.181 on one thread,
/// 0.098-0.106 against 0.091-0.109 on two).
#[cfg_attr(not(debug_assertions), inline(always))]
fn links_half_rows<S: Simd>(job: &RowsJob<'_>) -> bool {
    links_half_job(job) && !S::EMULATED
}

/// The scratch that [`ce_rows_half`] asks for, in f32: one row of exps, two for rows it
/// may link, or one per row of a group ([`groups_half`]).
pub(crate) fn half_scratch(job: &RowsJob<'_>) -> usize {
    let c = job.classes;
    if links_half_job(job) {
        2 * c
    } else if groups_half(job) {
        GROUP_ROWS * c
    } else {
        c
    }
}

/// Passes 1 and 2 of a row of [`ce_rows_half`] ([`online_pass`] on a [`HalfRow`] of
/// format bf16 when `BF16`, else f16), storing the exps in `exps` when `store`, and
/// forming the gradient of `trail` (the row before, if any) block by block alongside.
///
/// # Safety
/// `src..src + c` readable 16-bit logits, `exps..exps + c` writable,
/// `c <= FUSED_MAX_CLASSES`; `trail` a row of `c` classes (as [`HalfGradient::new`]),
/// disjoint from both; no `trail` unless `store`; `c >= ONLINE_MIN_CLASSES`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn half_passes<S: Simd, const BF16: bool>(
    s: S,
    src: *const u16,
    c: usize,
    exps: *mut f32,
    segs: &mut [Segment; ONLINE_MAX_SEGMENTS],
    store: bool,
    trail: Option<HalfGradient<'_>>,
) -> (f32, usize, f32, usize) {
    debug_assert!(store || trail.is_none());
    // SAFETY: bounds: the caller's obligations; the next row's address, `src + c`, is
    // only prefetched.
    unsafe {
        let blocks = HalfRow::<S, BF16>::new(s, src, src.wrapping_add(c));
        match (store, trail) {
            (true, Some(t)) => online_pass::<S, _, _, true, false>(s, blocks, exps, c, segs, t),
            (true, None) => online_pass::<S, _, _, true, false>(s, blocks, exps, c, segs, NoTrail),
            (false, _) => online_pass::<S, _, _, false, false>(s, blocks, exps, c, segs, NoTrail),
        }
    }
}

/// [`ce_rows_half`] on the rows whose passes run apart, as [`ce_rows`] runs them: rows
/// shorter than `ONLINE_MIN_CLASSES`, and soft-capped rows of any length. In groups of
/// [`GROUP_ROWS`] rows where [`groups_half`] says (else one row at a time), as
/// [`ce_row_groups`] groups them: pass 1 of every row of the group ([`half_max_argmax`]),
/// then pass 2 of every row (the exp loop on the 16-bit logits widened in registers,
/// [`exp_pass_mode`] on [`Half16`], into the row's scratch row of exps; capped, the exps
/// of the capped logits times the chain factor), then the statistics to `out`, then each
/// row's pass 3 ([`HalfGradient`], one segment; capped, the target entry from the
/// statistics). Each row's values are what they are alone, the bits that [`ce_rows`]
/// computes on the widened rows: the same max and first argmax (capped: the cap of the
/// max), the same exp loop and sum, and the gradient coefficient `alpha` itself (a
/// segment whose reference is the max has the factor `exp(0) = 1`; a max that is not
/// finite makes the sum NaN, so `alpha` and the coefficient are NaN alike).
///
/// # Safety
/// As [`ce_rows_half`], with `c < ONLINE_MIN_CLASSES` or the rows capped: `exps` holds
/// `half_scratch(job)` f32, one row per row of a group.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn half_row_groups<S: Simd, const BF16: bool>(
    s: S,
    (src, dst): (*const u16, *mut u16),
    len: usize,
    exps: *mut f32,
    job: &RowsJob<'_>,
    plan: &mut PlanRows<'_>,
    out: &mut RowsDone<'_>,
) {
    let c = job.classes;
    let rows = len / c;
    let g_max = if groups_half(job) { GROUP_ROWS } else { 1 };
    let format = Half16::<BF16>::FORMAT;
    let mut plans = [GroupRow::IDLE.plan; GROUP_ROWS];
    let mut group = [GroupRow::IDLE; GROUP_ROWS];
    let mut done = [None; GROUP_ROWS];
    let mut r0 = 0;
    while r0 < rows {
        let g = g_max.min(rows - r0);
        plan(r0, &mut plans[..g]);
        for (k, (row, &p)) in group[..g].iter_mut().zip(&plans[..g]).enumerate() {
            *row = GroupRow {
                plan: p,
                dst: exps.wrapping_add(k * c),
                ..GroupRow::IDLE
            };
            let Some(t) = p.target else {
                continue;
            };
            debug_assert!(t < c);
            // Rows that pass 2 prefetches for (as `ce_rows` does) have the same row of the
            // next group prefetched there, spread through the exp loop. From pass 1 the
            // prefetches went out in a burst, which likely stalled its loads once they
            // filled the fill buffers (Zen 5, bf16, one thread, ns per logit: 0.171-0.175
            // against 0.212-0.215 at 4096x10000, 0.174-0.181 against 0.193-0.197 at
            // 8192x4000; no change at 1000 classes and below).
            // SAFETY: bounds: row `r0 + k < rows` lies inside `src`, `t < c` (plan
            // contract, checked by the driver's validation); the same row of the next
            // group is only prefetched.
            unsafe {
                let row_src = src.add((r0 + k) * c);
                row.zt = softcap_opt(s, widen_one(format, *row_src.add(t)), job.cap);
                let rows = (row_src, row_src.wrapping_add(g * c));
                (row.top, row.argmax) = if c >= PREFETCH_MIN_CLASSES {
                    half_max_argmax::<S, BF16, false>(s, rows, c)
                } else {
                    half_max_argmax::<S, BF16, true>(s, rows, c)
                };
            }
            // Capping is monotone: the capped max is the cap of the max (`first_pass`).
            row.m = softcap_opt(s, row.top, job.cap);
        }
        for (k, row) in group[..g].iter_mut().enumerate() {
            if row.plan.target.is_none() {
                continue;
            }
            let store = !dst.is_null() && !row.plan.zero_grad;
            let z = Half16::<BF16>(src.wrapping_add((r0 + k) * c));
            let (row_exps, m) = (row.dst, row.m);
            let ahead = Ahead::half_source(src.wrapping_add((r0 + k + g) * c));
            let (null, trail) = (core::ptr::null(), TrailBlock::NONE);
            macro_rules! pass {
                ($store:literal, $cap:literal, $c:expr) => {
                    exp_pass_mode::<S, _, $store, SMOOTH_OFF, $cap, false>(
                        s, z, row_exps, c, m, null, $c, ahead, trail,
                    )
                };
            }
            // SAFETY: bounds: the row of `src`, `c` readable logits, and its scratch row
            // `row.dst..row.dst + c` inside `exps` (`k < GROUP_ROWS`, caller's
            // obligation), disjoint; no smoothing weights are read; the same row of the
            // next group is only prefetched.
            (row.sum, _) = unsafe {
                match (store, job.cap) {
                    (true, None) => pass!(true, false, Cap::NONE),
                    (false, None) => pass!(false, false, Cap::NONE),
                    (true, Some(cp)) => pass!(true, true, cp),
                    (false, Some(cp)) => pass!(false, true, cp),
                }
            };
        }
        for (d, row) in done[..g].iter_mut().zip(&group[..g]) {
            *d = row.plan.target.map(|_| row.out());
        }
        out(r0, &done[..g]);
        if !dst.is_null() {
            for (k, row) in group[..g].iter().enumerate() {
                let row_dst = dst.wrapping_add((r0 + k) * c);
                if row.plan.target.is_none() || row.plan.zero_grad {
                    // An ignored row's gradient is +0 (all bits clear in both formats).
                    // SAFETY: bounds: the row of `dst`, `c` elements.
                    unsafe { row_dst.write_bytes(0, c) };
                    continue;
                }
                let seg = [Segment {
                    start: 0,
                    reference: row.m,
                    sum: row.sum,
                }];
                // SAFETY: bounds: the row's exps with its one segment, and its row of
                // `dst`, disjoint (caller's obligation).
                unsafe { half_gradient(format, row, row_dst, &seg, job.cap).all(s, c) };
            }
        }
        r0 += g;
    }
}

/// Whether [`half_row_groups`] groups its rows: where [`ce_rows`] groups f32 rows of the
/// same length (up to [`GROUP_MAX_CLASSES`], or [`GROUP_LONG_MAX_CLASSES`] with
/// `job.group_long`).
#[cfg_attr(not(debug_assertions), inline(always))]
fn groups_half(job: &RowsJob<'_>) -> bool {
    let c = job.classes;
    c <= GROUP_MAX_CLASSES || (job.group_long && c <= GROUP_LONG_MAX_CLASSES)
}

/// Pass 1 of a row of [`half_row_groups`]: the max over the row's non-NaN entries and
/// its first index (0 if every entry is -inf or NaN), the bits [`max_argmax`] gives on
/// the widened row. Blocks of `MAX_BLOCK`; with `AHEAD`, handed out by a [`HalfRow`],
/// which prefetches the matching lines of `next`; a block that beats the best so far (the
/// same strict test) is rescanned for the first entry equal to its max.
///
/// `AHEAD` is a const parameter rather than a null `next` tested in [`HalfRow`]: with
/// that test in `HalfRow::block`, the online rows, whose pass reads its blocks too, ran
/// twice as slow at 16384, 24576 and 32768 classes (0.33-0.39 against 0.18-0.19 ns per
/// logit, bf16 at 8192x16384, Zen 5), `perf` putting the samples on their block loads, as
/// if nothing had been prefetched.
///
/// # Safety
/// `src` holds a row of `c` readable 16-bit logits.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn half_max_argmax<S: Simd, const BF16: bool, const AHEAD: bool>(
    s: S,
    (src, next): (*const u16, *const u16),
    c: usize,
) -> (f32, usize) {
    // SAFETY: `src` holds the row (caller's obligation); `next` is only prefetched.
    let mut blocks = unsafe { HalfRow::<S, BF16>::new(s, src, next) };
    let (mut best, mut argmax) = (f32::NEG_INFINITY, 0);
    let mut b = 0;
    while b < c {
        let len = (c - b).min(MAX_BLOCK);
        let blk = if AHEAD {
            // SAFETY: bounds: `b + len <= c`, the row's length, `len <= MAX_BLOCK`, blocks
            // in order (`RowBlocks`' contract).
            unsafe { blocks.block(b, len).0 }
        } else {
            Half16(src.wrapping_add(b))
        };
        // SAFETY: bounds: `b + len <= c`, so the block's entries `0..len` are readable.
        let m = s.reduce_max(unsafe { lane_max(s, blk, len) });
        if m > best {
            best = m;
            // SAFETY: as above.
            let k = unsafe { first_equal(s, blk, len, m) };
            // `m` is an entry of the block (`lane_max` drops NaN), so `k < len`.
            argmax = b + if k < len { k } else { 0 };
        }
        b += len;
    }
    (best, argmax)
}

/// The pass 3 of a counted row of [`ce_rows_half`] whose exps (capped: times the chain
/// factor) are at `row.dst`; the target entry as [`row_gradient`] forms it: the
/// correction `g_t -= tfix`, or with `cap` the entry in f64 from the statistics.
///
/// # Safety
/// As [`HalfGradient::new`], with `row.dst` the exps and `row.plan.target` set.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn half_gradient<'a>(
    format: HalfFormat,
    row: &GroupRow,
    dst: *mut u16,
    segs: &'a [Segment],
    cap: Option<Cap>,
) -> HalfGradient<'a> {
    let t = row.plan.target.unwrap_or(0);
    let alpha = grad_alpha(row);
    let tfix = row.plan.tfix;
    let entry = match cap {
        None => TargetEntry::Subtract(tfix),
        Some(cp) => TargetEntry::Value(capped_target_grad(
            alpha,
            row.zt,
            f64::from(row.m),
            0.0,
            f64::from(tfix),
            cp.cap,
        )),
    };
    // SAFETY: forwarded.
    unsafe { HalfGradient::new(format, row.dst, dst, segs, (row.m, alpha), (t, entry)) }
}

/// What consecutive rows of [`ce_row_groups`] hand on to each other: the row whose
/// gradient waits to be formed inside the next row's pass 2 (`pending`, linked rows), and
/// two sets of segments for online rows. Online rows come one per group
/// (`GROUP_LONG_MAX_CLASSES < TRAIL_MIN_CLASSES <= ONLINE_MIN_CLASSES`), so `segs[cur]`
/// holds the segments of the group's only row when its gradient is formed; linked, that
/// gradient waits, so its segments live on in the other set while the next row fills
/// `segs[cur]`, flipped.
struct Links {
    segs: [[Segment; ONLINE_MAX_SEGMENTS]; 2],
    nsegs: [usize; 2],
    cur: usize,
    pending: Option<GroupRow>,
}

impl Links {
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn new() -> Links {
        Links {
            segs: [[Segment::EMPTY; ONLINE_MAX_SEGMENTS]; 2],
            nsegs: [0; 2],
            cur: 0,
            pending: None,
        }
    }

    /// The segments of set `k`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn segs(&self, k: usize) -> &[Segment] {
        &self.segs[k][..self.nsegs[k]]
    }
}

/// Pass 1 of a group of rows `r0..r0 + group.len()`: each row's place and plan (from
/// `plans`, one per row), its (capped) target logit and, unless pass 2 is online, its
/// max and argmax.
///
/// # Safety
/// Rows `r0..r0 + group.len()` of `c` elements lie inside `src` (and `dst` unless null);
/// every planned target `< c`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn first_pass<S: Simd>(
    s: S,
    job: &RowsJob<'_>,
    (src, dst): (*const f32, *mut f32),
    r0: usize,
    group: &mut [GroupRow],
    plans: &[RowPlan],
    online: bool,
) {
    let c = job.classes;
    debug_assert_eq!(plans.len(), group.len());
    for (k, (row, &p)) in group.iter_mut().zip(plans).enumerate() {
        let off = (r0 + k) * c;
        // SAFETY: bounds: row `r0 + k` lies inside `src` (caller's obligation).
        row.src = unsafe { src.add(off) };
        row.dst = if dst.is_null() {
            dst
        } else {
            dst.wrapping_add(off)
        };
        row.plan = p;
        let Some(t) = row.plan.target else {
            continue;
        };
        debug_assert!(t < c);
        // SAFETY: bounds: `t < c` (plan contract, checked by the driver's validation).
        let zt = unsafe { *row.src.add(t) };
        row.zt = softcap_opt(s, zt, job.cap);
        if !online {
            // SAFETY: bounds: the row is `c` readable elements.
            let (m, am) = unsafe { max_argmax(s, row.src, c) };
            // Capping is monotone: the capped max is the cap of the max, and the
            // argmax is taken on the raw logits.
            row.m = softcap_opt(s, m, job.cap);
            (row.top, row.argmax) = (m, am);
        }
    }
}

/// Passes 1 and 2 of an online row ([`online_pass`]), with the pending row's gradient
/// formed alongside when rows are linked; the row's segments go to `links.segs[cur]`.
///
/// # Safety
/// The row of `src` and `dst`, `c <= FUSED_MAX_CLASSES` elements; the pending row, if
/// any, an earlier row of `dst`, `c` elements, disjoint from this one.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn online_row<S: Simd>(
    s: S,
    row: &mut GroupRow,
    c: usize,
    store: bool,
    next: Ahead,
    links: &mut Links,
) {
    let cur = links.cur;
    let [a, b] = &mut links.segs;
    let (mine, theirs) = if cur == 0 { (a, &*b) } else { (b, &*a) };
    let theirs = &theirs[..links.nsegs[1 - cur]];
    let trail = links.pending.map(|p| {
        // SAFETY: bounds: the pending row's exps, `c` elements, with its segments (the
        // caller's obligations).
        unsafe { TrailRow::new(p.dst, theirs, p.m, grad_alpha(&p)) }
    });
    let (src, dst) = (F32Row { src: row.src, next }, row.dst);
    // SAFETY: bounds: the caller's obligations.
    let (m, am, sum, count) = unsafe {
        match (store, trail) {
            (true, None) => online_pass::<S, _, _, true, false>(s, src, dst, c, mine, NoTrail),
            (false, None) => online_pass::<S, _, _, false, false>(s, src, dst, c, mine, NoTrail),
            (true, Some(t)) => online_pass::<S, _, _, true, true>(s, src, dst, c, mine, t),
            (false, Some(t)) => online_pass::<S, _, _, false, true>(s, src, dst, c, mine, t),
        }
    };
    if let Some(p) = links.pending.take() {
        // SAFETY: bounds: the pending row's target lies inside its row of `dst`.
        unsafe { finish_target(&p, None) };
    }
    links.nsegs[cur] = count;
    (row.m, row.top, row.argmax, row.sum, row.wsum) = (m, m, am, sum, 0.0);
}

/// Pass 2 of a row without smoothing (the plain exp loop, or the capped one with `cap`)
/// with the pending row's pass 3 inside it ([`exp_pass_mode`] with a trailing block).
///
/// # Safety
/// The row of `src` and `dst`, `c` elements each; `pending` an earlier row of `dst`, `c`
/// elements, disjoint from this one, its target inside it.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn linked_row<S: Simd>(
    s: S,
    cap: Option<Cap>,
    row: &mut GroupRow,
    pending: &GroupRow,
    c: usize,
    store: bool,
    next: Ahead,
) {
    let tb = TrailBlock {
        dst: pending.dst,
        alpha: grad_alpha(pending) as f32,
    };
    let (src, dst, m, null) = (row.src, row.dst, row.m, core::ptr::null());
    macro_rules! pass {
        ($store:literal, $cap:literal, $c:expr) => {
            exp_pass_mode::<S, _, $store, SMOOTH_OFF, $cap, true>(
                s, src, dst, c, m, null, $c, next, tb,
            )
        };
    }
    // SAFETY: bounds: the caller's obligations.
    unsafe {
        (row.sum, row.wsum) = match (store, cap) {
            (true, None) => pass!(true, false, Cap::NONE),
            (false, None) => pass!(false, false, Cap::NONE),
            (true, Some(cp)) => pass!(true, true, cp),
            (false, Some(cp)) => pass!(false, true, cp),
        };
        finish_target(pending, cap);
    }
}

/// Pass 3 of a group's rows, each from its stored exps; with `trail`, a counted row's
/// waits in `links.pending` for the next row's pass 2 instead (or for the end of the
/// chunk; an ignored row in between runs no pass 2 and leaves it waiting).
///
/// # Safety
/// Each row's `dst..dst + c` writable; weighted beta holds `c` values.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn gradients<S: Simd>(
    s: S,
    job: &RowsJob<'_>,
    group: &[GroupRow],
    c: usize,
    online: bool,
    trail: bool,
    links: &mut Links,
) {
    for row in group {
        if trail && row.plan.target.is_some() && !row.plan.zero_grad {
            links.pending = Some(*row);
            links.cur = 1 - links.cur;
            continue;
        }
        let segs = if online { links.segs(links.cur) } else { &[] };
        // SAFETY: bounds: the row of `dst`, `c` elements, with its segments.
        unsafe { row_gradient(s, job, row, c, segs) };
    }
}

/// `g = (alpha / S) e_j`'s coefficient of one counted row: `(grad_a + zloss lse) / S`.
#[cfg_attr(not(debug_assertions), inline(always))]
fn grad_alpha(row: &GroupRow) -> f64 {
    let p = &row.plan;
    let (m, sum) = (row.m, f64::from(row.sum));
    let mut a = p.grad_a;
    if p.zloss != 0.0 {
        a += p.zloss * (f64::from(m) + sum.ln());
    }
    a / sum
}

/// The target entry of an unsmoothed row whose scale pass is done: the correction
/// `g_t -= tfix`, or with capping the entry in f64 from the statistics, as
/// [`row_gradient`] forms them.
///
/// # Safety
/// `row.dst..row.dst + c` writable, with `row.plan.target < c`.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn finish_target(row: &GroupRow, cap: Option<Cap>) {
    if let Some(t) = row.plan.target {
        let tfix = row.plan.tfix;
        // SAFETY: bounds: `t < c` (caller's obligation).
        unsafe {
            *row.dst.add(t) = match cap {
                None => *row.dst.add(t) - tfix,
                Some(cp) => {
                    let m = f64::from(row.m);
                    let alpha = grad_alpha(row);
                    capped_target_grad(alpha, row.zt, m, 0.0, f64::from(tfix), cp.cap)
                }
            }
        };
    }
}

/// Pass 3 of one row of [`ce_rows`], from its exps (capped: times the chain factor, or
/// with smoothing the capped logits, see [`exp_pass`]) in `row.dst`:
/// `g_j = alpha e_j - beta_j`, then `g_t -= tfix`; zeros for an ignored row or
/// one whose gradient is zero. `segs` are the row's segments when pass 2 was
/// [`online_pass`], else empty.
///
/// # Safety
/// `row.dst..row.dst + c` writable; weighted beta holds `c` values; the segments lie
/// inside the row.
#[cfg_attr(not(debug_assertions), inline(always))]
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
            // SAFETY: bounds: as above. Without smoothing pass 2 stored `e_j` times the
            // chain factor there, so the plain scale gives the gradient; with smoothing it
            // stored the capped logits `y`, and the exps are recomputed.
            unsafe {
                if let Beta::Zero = job.beta {
                    scale_pass(s, row.dst, c, alpha as f32, Beta::Zero);
                } else {
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
                }
            };
            // The target entry, in f64 from the statistics, stored last.
            let (beta_t, tfix) = (beta_at(job.beta, t), f64::from(p.tfix));
            let g = capped_target_grad(alpha, row.zt, f64::from(m), beta_t, tfix, cp.cap);
            // SAFETY: bounds: `t < c`, inside the row of `dst`.
            unsafe { *row.dst.add(t) = g };
        }
    }
}

/// Pass 3 of a counted staged row without smoothing (see
/// [`stages_into`](crate::paths::stages_into)), whose exps (capped: times the chain
/// factor) are in the staging row `row.dst`: [`row_gradient`]'s values written straight
/// to `out` with non-temporal stores ([`scale_stream`]), rather than formed in the staging
/// row and copied out. `segs` are the row's segments when pass 2 was [`online_pass`]
/// (each run scaled by its own coefficient, as `row_gradient` does), else empty. The
/// target entry's vector gets plain stores, and no non-temporal store covers it (the
/// streams stop and start around it), so the target entry cannot be overwritten out of
/// order.
///
/// # Safety
/// `row.dst..row.dst + c` readable, `out..out + c` writable, disjoint; the row's target
/// `< c`; the segments lie inside the row, the first at 0.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn streamed_gradient<S: Simd>(
    s: S,
    job: &RowsJob<'_>,
    row: &GroupRow,
    out: *mut f32,
    c: usize,
    segs: &[Segment],
) {
    debug_assert!(job.unsmoothed() && !row.plan.zero_grad);
    debug_assert!(segs.is_empty() || (job.cap.is_none() && segs[0].start == 0));
    let p = &row.plan;
    let t = p.target.unwrap_or(0);
    let alpha = grad_alpha(row);
    // Run `k` of the row (the whole row without segments): its end and coefficient.
    let run = |k: usize| match segs.get(k) {
        None => (c, alpha as f32),
        Some(seg) => (
            segs.get(k + 1).map_or(c, |next| next.start),
            (alpha * segment_factor(seg.reference, row.m)) as f32,
        ),
    };
    let g = match job.cap {
        None => {
            // `scale_pass`'s product from the same vector code with the target's run
            // coefficient, then the correction.
            let k = segs.iter().rposition(|seg| seg.start <= t).unwrap_or(0);
            // SAFETY: bounds: `t < c` (caller's obligation).
            let mut e = [unsafe { *row.dst.add(t) }];
            // SAFETY: bounds: one element.
            unsafe { scale_pass(s, e.as_mut_ptr(), 1, run(k).1, Beta::Zero) };
            e[0] - p.tfix
        }
        Some(cp) => {
            let (m, tfix) = (f64::from(row.m), f64::from(p.tfix));
            capped_target_grad(alpha, row.zt, m, 0.0, tfix, cp.cap)
        }
    };
    let l = S::LANES;
    // The whole aligned vector of `out` that holds the target, `[v, v + LANES)`, if any
    // (else the target lies in a stream's masked head or tail, which `scale_stream` writes
    // with plain stores, and nothing is held back): the streams stop and start around it.
    let head = out.align_offset(4 * l).min(c);
    let v = head + t.saturating_sub(head) / l * l;
    let (hold, held) = if t >= head && v + l <= c {
        (v, v + l)
    } else {
        (t, t)
    };
    let mut lo = 0;
    for k in 0..segs.len().max(1) {
        let (hi, a) = run(k);
        let (x0, x1) = (hold.clamp(lo, hi), held.clamp(lo, hi));
        // SAFETY: bounds: `lo <= x0 <= x1 <= hi <= c`, inside both rows, which are
        // disjoint (caller's obligation); the held entries are fewer than `LANES`.
        unsafe {
            scale_stream(s, row.dst.add(lo), out.add(lo), x0 - lo, a);
            if x1 > x0 {
                // `scale_pass`'s `alpha e + (-0)`, with plain stores.
                let mut e = [0.0f32; 16];
                core::ptr::copy_nonoverlapping(row.dst.add(x0), e.as_mut_ptr(), x1 - x0);
                scale_pass(s, e.as_mut_ptr(), x1 - x0, a, Beta::Zero);
                core::ptr::copy_nonoverlapping(e.as_ptr(), out.add(x0), x1 - x0);
            }
            scale_stream(s, row.dst.add(x1), out.add(x1), hi - x1, a);
        }
        lo = hi;
    }
    // SAFETY: bounds: `t < c`; its vector was written with plain stores above, or by a
    // stream's masked head or tail.
    unsafe { *out.add(t) = g };
}

/// `beta_t` of one class, in f64.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn beta_at(beta: Beta<'_>, j: usize) -> f64 {
    match beta {
        Beta::Zero => 0.0,
        Beta::Uniform(b) => f64::from(b),
        Beta::Weighted(b, w) => f64::from(b) * f64::from(w[j]),
    }
}
