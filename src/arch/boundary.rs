//! The `#[target_feature]` boundary: [`instantiate_kernel!`] expands, inside each
//! variant's module, to the entry points that instantiate the generic algorithms for that
//! variant's token type. Everything below an entry point is `#[inline(always)]` in
//! optimised builds (see [`crate::arch`]), so it is compiled for the variant's ISA
//! (`.ci/check-inlining` fails if a generic kernel function shows up as a symbol of its
//! own).

/// Generates, inside a variant's module, the `#[target_feature]` entry points that
/// instantiate the generic algorithms for that variant's token type.
macro_rules! instantiate_kernel {
    ($tok:ty $(, #[$attr:meta])*) => {
        use crate::arch::{fused, math, pass, small, softmax};
        use crate::arch::{Beta, BlockStats, Cap, Io, PlanRows, RowsDone, RowsJob, Smooth};

        impl $tok {
            /// Cross-entropy over a chunk of rows on the fused path. `plan(r0, plans)`
            /// gives a batch of rows' targets and coefficients; `out(r0, stats)`
            /// receives their statistics. `stage` is empty, or (for `Io::Into` rows
            /// longer than `GROUP_MAX_CLASSES`) a staging row of `job.classes` f32 in
            /// which each row's gradient is formed before it is streamed out.
            ///
            /// `plan` and `out` are trait objects, called once per batch: a generic
            /// closure would instantiate the kernel in the caller's crate, at the
            /// caller's opt-level. An unoptimised caller of an optimised `xent` (a
            /// doctest under `cargo test --release`, a dev build that optimises only
            /// its dependencies) then compiled the forced-inline tree at opt-level 0,
            /// into a 4 MiB frame (see [`crate::arch`]).
            pub(crate) fn ce_rows(
                self,
                io: Io<'_>,
                stage: &mut [f32],
                job: &RowsJob<'_>,
                plan: &mut PlanRows<'_>,
                out: &mut RowsDone<'_>,
            ) {
                $(#[$attr])*
                unsafe fn inner(
                    t: $tok,
                    mut io: Io<'_>,
                    stage: *mut f32,
                    j: &RowsJob<'_>,
                    p: &mut PlanRows<'_>,
                    o: &mut RowsDone<'_>,
                ) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src` (and `dst` when non-null) hold `len` f32s,
                    // as `io` borrows them, and `stage` (when non-null) a row, a
                    // separate borrow; `fused::ce_rows` stays within them.
                    unsafe { fused::ce_rows(t, src, dst, len, stage, j, p, o) }
                }
                assert_eq!(io.len() % job.classes, 0);
                let stage = if stage.is_empty() {
                    core::ptr::null_mut()
                } else {
                    assert!(
                        stage.len() == job.classes
                            && job.classes > crate::paths::GROUP_MAX_CLASSES
                            && matches!(io, Io::Into(..))
                    );
                    stage.as_mut_ptr()
                };
                // SAFETY: feature: `self` is a token only built after detecting the
                // features its `try_new` checks. bounds: see `inner`.
                unsafe { inner(self, io, stage, job, plan, out) }
            }

            /// Cross-entropy over a chunk of rows of 16-bit logits read in 16-bit
            /// (`fused::ce_rows_half`: plain rows that `fused::reads_half_rows` accepts),
            /// with `exps` a scratch of `fused::half_scratch(job)` f32; `plan` and
            /// `out` as in `ce_rows`.
            pub(crate) fn ce_rows_half(
                self,
                format: crate::arch::convert::HalfFormat,
                io: crate::arch::Io16<'_>,
                exps: &mut [f32],
                job: &RowsJob<'_>,
                plan: &mut PlanRows<'_>,
                out: &mut RowsDone<'_>,
            ) {
                $(#[$attr])*
                #[allow(clippy::too_many_arguments)]
                unsafe fn inner(
                    t: $tok,
                    f: crate::arch::convert::HalfFormat,
                    mut io: crate::arch::Io16<'_>,
                    exps: &mut [f32],
                    j: &RowsJob<'_>,
                    p: &mut PlanRows<'_>,
                    o: &mut RowsDone<'_>,
                ) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src` (and `dst` when non-null) hold `len` 16-bit
                    // logits, as `io` borrows them, and `exps` a row, disjoint from
                    // both; the row shape and path are checked below.
                    unsafe { fused::ce_rows_half(t, f, src, dst, len, exps.as_mut_ptr(), j, p, o) }
                }
                assert!(io.len() % job.classes == 0 && exps.len() == fused::half_scratch(job));
                assert!(fused::reads_half_rows(job));
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, format, io, exps, job, plan, out) }
            }

            /// Cross-entropy over a chunk of rows of at most `SMALL_MAX_CLASSES` classes on
            /// the row-group path; returns the loss sum and the correct count.
            ///
            /// `plan` is a trait object, called once per batch of rows: the path is
            /// instantiated for every class count, and a generic `plan` would have every
            /// caller's crate compile all of them again for each target type.
            pub(crate) fn ce_small(
                self,
                io: Io<'_>,
                job: &small::SmallJob<'_>,
                plan: &mut dyn FnMut(usize, &mut [f32], &mut [f32]),
            ) -> (f64, usize) {
                $(#[$attr])*
                unsafe fn inner(
                    t: $tok,
                    mut io: Io<'_>,
                    j: &small::SmallJob<'_>,
                    p: &mut dyn FnMut(usize, &mut [f32], &mut [f32]),
                ) -> (f64, usize) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src`/`dst` hold `len` f32s (borrowed by `io`); the
                    // class count and weights are checked below.
                    unsafe { small::ce_small(t, src, dst, len, j, p) }
                }
                assert!(job.classes <= crate::paths::SMALL_MAX_CLASSES && io.len() % job.classes == 0);
                if let Smooth::Weighted(w) = job.smooth {
                    assert_eq!(w.len(), job.classes);
                }
                if let Beta::Weighted(_, w) = job.beta {
                    assert_eq!(w.len(), job.classes);
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, job, plan) }
            }

            /// Softmax (`log == false`) or log-softmax over a chunk of whole rows; rows
            /// of up to `GROUP_LONG_MAX_CLASSES` grouped with `group_long`.
            pub(crate) fn softmax_rows(
                self,
                io: Io<'_>,
                classes: usize,
                log: bool,
                group_long: bool,
            ) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, mut io: Io<'_>, c: usize, log: bool, g: bool) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src`/`dst` hold `len` f32s (borrowed by `io`).
                    unsafe { softmax::softmax_rows(t, src, dst, len, c, log, g) }
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, classes, log, group_long) }
            }

            /// Statistics of one run of classes (a block, a row, a shard).
            pub(crate) fn stats(self, z: &[f32], smooth: Smooth<'_>, cap: Option<Cap>) -> BlockStats {
                $(#[$attr])*
                unsafe fn inner(t: $tok, z: &[f32], s: Smooth<'_>, c: Option<Cap>) -> BlockStats {
                    // SAFETY: bounds: `z` is a live slice of `z.len()` f32s and
                    // `Smooth::Weighted` slices are as long as `z` (checked below).
                    unsafe { pass::stats::stats(t, z.as_ptr(), z.len(), s, c) }
                }
                if let Smooth::Weighted(w) = smooth {
                    assert_eq!(w.len(), z.len());
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, z, smooth, cap) }
            }

            /// Gradient of one run from merged statistics:
            /// `g_j = alpha * exp(z_j - max) - beta_j` (times the soft-capping factor).
            pub(crate) fn grad_from_stats(self, io: Io<'_>, max: f32, alpha: f32, beta: Beta<'_>, cap: Option<Cap>) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, mut io: Io<'_>, m: f32, a: f32, b: Beta<'_>, c: Option<Cap>) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src`/`dst` hold `len` f32s (borrowed by `io`),
                    // and `Beta::Weighted` slices hold `len` (checked below).
                    unsafe { pass::map::grad_from_stats(t, src, dst, len, m, a, b, c) }
                }
                assert!(!matches!(io, Io::Read(_)));
                if let Beta::Weighted(_, w) = beta {
                    assert_eq!(w.len(), io.len());
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, max, alpha, beta, cap) }
            }

            /// `out_j = (z_j - max) - shift` (log-softmax of a run from merged statistics).
            pub(crate) fn shift(self, io: Io<'_>, max: f32, shift: f32) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, mut io: Io<'_>, m: f32, s: f32) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src`/`dst` hold `len` f32s (borrowed by `io`).
                    unsafe { pass::map::shift(t, src, dst, len, m, s) }
                }
                assert!(!matches!(io, Io::Read(_)));
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, max, shift) }
            }

            /// `cap * tanh(z / cap)` of one value, as the kernels compute it.
            pub(crate) fn softcap(self, z: f32, cap: Cap) -> f32 {
                $(#[$attr])*
                unsafe fn inner(t: $tok, z: f32, c: Cap) -> f32 {
                    math::softcap_one(t, z, c)
                }
                // SAFETY: feature: the token proves the enabled features. No pointers.
                unsafe { inner(self, z, cap) }
            }

            /// One sweep over the targets: the rows that count and whether any target is
            /// out of range (see `crate::arch::targets::scan`), vectorised at this variant's width.
            pub(crate) fn scan_targets<T: crate::Target>(
                self,
                targets: &[T],
                classes: usize,
                ignore: Option<i64>,
            ) -> (usize, bool) {
                $(#[$attr])*
                unsafe fn inner<T: crate::Target>(_: $tok, ts: &[T], c: usize, i: Option<i64>) -> (usize, bool) {
                    crate::arch::targets::scan(ts, c, i)
                }
                // SAFETY: feature: the token proves the enabled features. No pointers.
                unsafe { inner(self, targets, classes, ignore) }
            }

            /// The row-group path's plan for a batch (see `crate::arch::targets::plan_batch`),
            /// vectorised at this variant's width.
            pub(crate) fn plan_targets<T: crate::Target>(
                self,
                targets: &[T],
                ignore: Option<i64>,
                weights: Option<&[f32]>,
                tg: &mut [f32],
                wt: &mut [f32],
            ) {
                $(#[$attr])*
                unsafe fn inner<T: crate::Target>(
                    _: $tok,
                    ts: &[T],
                    i: Option<i64>,
                    w: Option<&[f32]>,
                    tg: &mut [f32],
                    wt: &mut [f32],
                ) {
                    crate::arch::targets::plan_batch(ts, i, w, tg, wt)
                }
                // SAFETY: feature: the token proves the enabled features. No pointers.
                unsafe { inner(self, targets, ignore, weights, tg, wt) }
            }

            /// The kernel's tanh, in place over a slice.
            pub(crate) fn tanh(self, xs: &mut [f32]) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, xs: &mut [f32]) {
                    // SAFETY: bounds: `xs` is a live mutable slice of `xs.len()` f32s.
                    unsafe { pass::map::tanh_slice(t, xs.as_mut_ptr(), xs.len()) }
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, xs) }
            }

            /// The kernel's exp, in place over a slice.
            pub(crate) fn exp(self, xs: &mut [f32]) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, xs: &mut [f32]) {
                    // SAFETY: bounds: `xs` is a live mutable slice of `xs.len()` f32s.
                    unsafe { pass::map::exp_slice(t, xs.as_mut_ptr(), xs.len()) }
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, xs) }
            }
        }
    };
}
pub(crate) use instantiate_kernel;
