//! The SIMD kernels: the only place in the crate with `unsafe`.
//!
//! # The kernel contract
//!
//! Every kernel variant implements the small [`Simd`] trait of vector primitives (load,
//! masked tail load, store, fused multiply-add, compare/select, power-of-two scaling). The
//! row algorithms are written once over that trait ([`math`], [`pass`], [`rows`],
//! [`small`], [`softmax`]), and each variant instantiates them behind one
//! `#[target_feature]` boundary per batch of rows (the [`instantiate_kernel!`] macro), so
//! the helpers inline into code compiled for that ISA.
//!
//! A row of `C` logits is processed in three passes:
//!
//! 1. **max pass**: read the row once for the maximum, as lane-wise maxima tested block by
//!    block (512 classes); the first index of the maximum (argmax) comes from rescanning
//!    the one block that first reached it, still in L1. NaN never wins, so the max is over
//!    the non-NaN entries; a NaN still poisons the row through pass 2.
//! 2. **exp pass**: `e = exp(z - max)`, summed into `S`, and stored (in place, or into the
//!    output buffer) when a gradient or softmax is wanted. With label smoothing the same pass
//!    also accumulates `sum_j w_j (z_j - max)`.
//! 3. **scale pass**: `g = alpha * e - beta_j` over the stored `e` (the row is in cache from
//!    pass 2 when it fits in L2), then the target entry is corrected last.
//!
//! Rows of 16 384 classes and more (64 KiB, beyond L1), without smoothing or capping, fuse
//! passes 1 and 2 block by block (`pass::online::online_pass`): a block's max, then its exps
//! while it is still in L1, relative to the running max. A block that raises the max opens
//! a segment; pass 3 scales each segment by `alpha exp(reference - max)`, so a row is read
//! from L2 (or DRAM) twice rather than three times. From 8192 to 32 768 classes (rows
//! beyond L1, three rows within L2), without smoothing or capping, a row's pass 3 runs
//! inside the next row's pass 2 (`rows::TRAIL_MAX_CLASSES`): alone it waits on the L2,
//! while the exps wait on the multiply-add pipes, so side by side they overlap.
//! The driver gives such rows chunks of up to eight rows, since a chunk's last row runs
//! its pass 3 alone.
//!
//! Rows longer than [`FUSED_MAX_CLASSES`] are cut into blocks of [`BLOCK_CLASSES`]: each block
//! yields mergeable statistics ([`BlockStats`]: max, sum of exps relative to it, argmax), the
//! row's statistics are merged in block order, and a second sweep writes the gradient from
//! `exp(z - max)` recomputed per block. Blocks are also the unit of parallel work for rows
//! too few to keep every thread busy.
//!
//! Rows of at most [`SMALL_MAX_CLASSES`] classes take the row-group path instead
//! (`small::ce_small`): `LANES` rows at a time, one row per lane. A group's `LANES * C`
//! contiguous floats are loaded whole and transposed in registers
//! ([`Simd::load_columns`], [`Simd::load_block`]: AVX-512 uses `vpermps` with lane masks
//! for `C < 8` and a 16x16 shuffle transpose per 16 classes from 8, AVX2 an 8x8
//! transpose per 8 classes, the portable kernel strided accesses), so that class `j` of
//! every row sits in one vector and the max, the sum of exps, the log and the loss are
//! vertical operations: no horizontal reduction per row or per group (each lane keeps its
//! own f64 loss sum). Up to [`FIXED_MAX_CLASSES`] the path is instantiated per class
//! count; above, one instance loops over a runtime count. Groups go in batches of 16:
//! first every group's exps and gradient (up to 12 classes, each gradient one group late,
//! after the next group's exps; from 8 classes two groups per step, which trade the two
//! arrays of exps rather than swap them), then every group's loss, so that the long dependent
//! chains of neighbouring groups overlap. Without class weights a batch takes one log per
//! lane, of the product of its rows' sums of exps (at most `64^16`, no overflow); with
//! them, one log per group. Targets are converted to f32 a batch at a time. The last,
//! partial group runs on a zero-padded local copy.
//!
//! # Tails
//!
//! A row's length is arbitrary. Full vectors are loaded while `i + LANES <= len`; the last
//! `len - i < LANES` elements go through [`Simd::load_tail`] / [`Simd::store_tail`], which
//! never touch memory past the row (AVX-512 uses masked loads and stores; the others copy
//! through a stack buffer padded with the pass's identity element).
//!
//! # Determinism
//!
//! Which lane and which accumulator an element lands in depends only on its index in the
//! row, never on the row's address or on which thread runs it, so every result is a
//! function of the input values alone.

pub(crate) mod convert;
pub(crate) mod math;
pub(crate) mod pass;
pub(crate) mod portable;
pub(crate) mod rows;
pub(crate) mod small;
pub(crate) mod softmax;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

/// Rows of at most this many classes take the fused three-pass path: the row (up to 512 KiB
/// of f32) stays in the 1-2 MiB L2 between passes, so DRAM sees one read and one write.
pub(crate) const FUSED_MAX_CLASSES: usize = 1 << 17;

/// Rows of at most this many classes take the row-group path: one row per lane, so the
/// per-row work (max, sums, log) is vertical and nothing is reduced across lanes.
pub(crate) const SMALL_MAX_CLASSES: usize = 64;

/// Up to this many classes the row-group path is instantiated per class count (its class
/// vectors stay in registers and its loops unroll); above, one instance per variant runs
/// loops over a runtime class count, its columns in a stack array. The class vectors
/// spill past this count anyway, and unrolled instances for every count up to
/// `SMALL_MAX_CLASSES` would cost minutes of compile time in every build of the crate.
pub(crate) const FIXED_MAX_CLASSES: usize = 32;

/// Block width of the blocked path for long rows: 64 KiB, so a block's second read
/// (the exp pass) hits L2 and the first block of the next task can be in flight.
pub(crate) const BLOCK_CLASSES: usize = 1 << 14;

/// The vector primitives a kernel variant provides. All methods are `#[inline(always)]` in
/// implementations so they inherit the caller's `#[target_feature]` set.
///
/// # Safety
///
/// Implementors guarantee that the methods are sound to call whenever a value of `Self`
/// exists (the value is a capability token: it can only be built after the CPU features the
/// implementation uses were detected), given the pointer preconditions of each method.
pub(crate) unsafe trait Simd: Copy {
    /// A vector of `LANES` f32.
    type F: Copy;
    /// A lane mask produced by comparisons.
    type M: Copy;
    /// One f64 accumulator per f32 lane.
    type Wide: Copy;
    /// Number of f32 lanes (at most 16).
    const LANES: usize;
    /// Whether a vector spans several machine registers and operations such as
    /// [`max`](Self::max) take several instructions (the portable kernel). Two choices
    /// of the row-group path that pay with native vectors cost there, and are skipped:
    /// its max chain (1.11x slower at 3 classes) and its pairs of groups (1.28-1.30x
    /// slower at 10 classes).
    const EMULATED: bool = false;

    fn splat(self, x: f32) -> Self::F;
    /// # Safety
    /// `p..p + LANES` must be readable f32s.
    unsafe fn load(self, p: *const f32) -> Self::F;
    /// Loads `n < LANES` elements; the other lanes hold `fill`.
    /// # Safety
    /// `p..p + n` must be readable f32s. Nothing past `p + n` is read.
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> Self::F;
    /// # Safety
    /// `p..p + LANES` must be writable f32s.
    unsafe fn store(self, p: *mut f32, v: Self::F);
    /// Stores the first `n < LANES` lanes.
    /// # Safety
    /// `p..p + n` must be writable f32s. Nothing past `p + n` is written.
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: Self::F);
    /// A hint to start loading the cache line holding `p` into L2. Any address is allowed:
    /// a prefetch never faults.
    fn prefetch(self, p: *const f32);

    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused (one rounding) where the variant has FMA.
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `x < lo ? 0 : p * 2^floor(n)` (or anything at all in lanes where `x < lo`), exact
    /// when the result is a normal float; overflow gives +inf; a NaN `x` keeps the product.
    /// Implementations may saturate `floor(n)` to `[-127, 129]`, which changes no normal
    /// result for `p` in `[0.9, 2]`.
    fn scale_pow2_unless_below(self, p: Self::F, n: Self::F, x: Self::F, lo: Self::F) -> Self::F;
    /// As [`scale_pow2_unless_below`](Self::scale_pow2_unless_below) for `floor(n) <= 127`
    /// only, given also `t = n + ROUND_MAGIC` (the rounding step's result, which holds
    /// `8n` in its low mantissa bits).
    #[inline(always)]
    fn scale_pow2_small_unless_below(
        self,
        p: Self::F,
        n: Self::F,
        t: Self::F,
        x: Self::F,
        lo: Self::F,
    ) -> Self::F {
        let _ = t;
        self.scale_pow2_unless_below(p, n, x, lo)
    }
    /// `2^(j/8)` ([`EXP_TABLE`](crate::arch::math::EXP_TABLE)`[j]`) per lane, for `j` the low three
    /// bits of the lane's bit pattern (`t` from the exp's rounding step).
    fn exp2_eighths(self, t: Self::F) -> Self::F;
    fn lt(self, a: Self::F, b: Self::F) -> Self::M;
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `m ? a : b` per lane.
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// The lanes, in order, in the first `LANES` entries.
    fn to_array(self, a: Self::F) -> [f32; 16];

    fn eq(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a > b ? a : b` per lane: a NaN in `a` gives `b` (one `vmaxps` on x86).
    fn max(self, a: Self::F, b: Self::F) -> Self::F;
    /// The lowest lane set in `m`, if any.
    fn first_lane(self, m: Self::M) -> Option<usize>;
    /// The sum of the lanes in a fixed pairwise order that depends only on `LANES`: for
    /// `w = LANES / 2, LANES / 4, .., 1`, lane `i` gains lane `i + w`. The x86 variants
    /// override this with the same additions done by shuffles in registers, so the
    /// result is bit-identical.
    #[inline(always)]
    fn reduce_add(self, v: Self::F) -> f32 {
        let mut a = self.to_array(v);
        let mut w = Self::LANES;
        while w > 1 {
            w /= 2;
            for i in 0..w {
                a[i] += a[i + w];
            }
        }
        a[0]
    }
    /// The largest lane of a vector without NaN lanes (the order of a max does not
    /// matter then). By default a scalar fold; the x86 variants use shuffles, a chain of
    /// `log2 LANES` steps instead of `LANES`.
    #[inline(always)]
    fn reduce_max(self, v: Self::F) -> f32 {
        let a = self.to_array(v);
        a[..Self::LANES]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// For positive normal `x`: `(e, m)` with `x = m 2^e`, `m` in `[1, 2)`. NaN gives a
    /// NaN `m`. (Zero, infinities and subnormals do not occur where it is used.)
    fn split_exponent(self, x: Self::F) -> (Self::F, Self::F);
    /// Lane `k` loads `p[k * stride]`.
    /// # Safety
    /// `p + k * stride` readable for every `k < LANES`; `(LANES - 1) * stride < 2^31`.
    unsafe fn gather(self, p: *const f32, stride: usize) -> Self::F;
    /// Lane `k` is stored to `p[k * stride]`.
    /// # Safety
    /// `p + k * stride` writable for every `k < LANES`; `(LANES - 1) * stride < 2^31`.
    unsafe fn scatter(self, p: *mut f32, stride: usize, v: Self::F);
    /// Accumulators at zero.
    fn wide_zero(self) -> Self::Wide;
    /// `acc[i] + v[i]` per lane, in f64 (the widening is exact).
    fn wide_add(self, acc: Self::Wide, v: Self::F) -> Self::Wide;
    /// The accumulators added in lane order.
    fn wide_sum(self, acc: Self::Wide) -> f64;
    /// `LANES` rows of `C` classes stored contiguously (`p[r * C + j]`) as `C` vectors:
    /// vector `j` holds class `j` of every row, lane `r` being row `r`. By default
    /// `C` strided gathers; the x86 variants override it with in-register transposes.
    /// # Safety
    /// `p..p + LANES * C` readable; `C <= FIXED_MAX_CLASSES`.
    #[inline(always)]
    unsafe fn load_columns<const C: usize>(self, p: *const f32) -> [Self::F; C] {
        // A loop, not `array::from_fn`: a closure would be compiled outside the caller's
        // `#[target_feature]` set and the gathers would not inline.
        let mut cols = [self.splat(0.0); C];
        for (j, col) in cols.iter_mut().enumerate() {
            // SAFETY: bounds: lane `r` of gather `j` reads `p[r * C + j]`, inside
            // `p..p + LANES * C` (caller's obligation); `(LANES - 1) * C < 2^31`.
            *col = unsafe { self.gather(p.add(j), C) };
        }
        cols
    }
    /// The inverse of [`Simd::load_columns`]: lane `r` of `v[j]` is stored to `p[r * C + j]`.
    /// # Safety
    /// `p..p + LANES * C` writable; `C <= FIXED_MAX_CLASSES`.
    #[inline(always)]
    unsafe fn store_columns<const C: usize>(self, p: *mut f32, v: &[Self::F; C]) {
        for (j, &vj) in v.iter().enumerate() {
            // SAFETY: bounds: lane `r` writes `p[r * C + j]`, inside `p..p + LANES * C`
            // (caller's obligation); `(LANES - 1) * C < 2^31`.
            unsafe { self.scatter(p.add(j), C, vj) };
        }
    }
    /// Block `h` of a group of `LANES` rows of `c` classes (`p[r * c + j]`) as columns:
    /// vector `k` holds class `LANES * h + k` of every row, for
    /// `k < n = min(LANES, c - LANES * h)`; the other vectors are unspecified. By default
    /// `n` strided gathers; the x86 variants override it with one in-register transpose.
    /// # Safety
    /// `p..p + LANES * c` readable; `LANES * h < c`; `LANES * c < 2^31`.
    #[inline(always)]
    unsafe fn load_block(self, p: *const f32, c: usize, h: usize) -> [Self::F; 16] {
        let (l, mut cols) = (Self::LANES, [self.splat(0.0); 16]);
        for (k, col) in cols.iter_mut().enumerate().take((c - l * h).min(l)) {
            // SAFETY: bounds: lane `r` reads `p[r * c + l h + k]`, a class of row `r`
            // (`l h + k < c`), inside `p..p + LANES * c`; the indices fit i32.
            *col = unsafe { self.gather(p.add(l * h + k), c) };
        }
        cols
    }
    /// The inverse of [`Simd::load_block`]: stores classes `LANES * h..LANES * h + n` of
    /// every row, and nothing else.
    /// # Safety
    /// `p..p + LANES * c` writable; `LANES * h < c`; `LANES * c < 2^31`.
    #[inline(always)]
    unsafe fn store_block(self, p: *mut f32, c: usize, h: usize, v: &[Self::F; 16]) {
        let l = Self::LANES;
        for (k, &col) in v.iter().enumerate().take((c - l * h).min(l)) {
            // SAFETY: bounds: as `load_block`, writing.
            unsafe { self.scatter(p.add(l * h + k), c, col) };
        }
    }
}

/// The buffers one call works on: read only, gradient in place, or gradient into a
/// separate output of the same shape.
pub(crate) enum Io<'a> {
    Read(&'a [f32]),
    InPlace(&'a mut [f32]),
    Into(&'a [f32], &'a mut [f32]),
}

impl Io<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Io::Read(s) => s.len(),
            Io::InPlace(s) => s.len(),
            Io::Into(s, _) => s.len(),
        }
    }

    /// The source and (if any) destination pointers. `dst` is null for `Read` and equals
    /// `src` for `InPlace`; the kernels read every element before they write it.
    fn raw(&mut self) -> (*const f32, *mut f32) {
        match self {
            Io::Read(s) => (s.as_ptr(), core::ptr::null_mut()),
            Io::InPlace(s) => (s.as_ptr(), s.as_mut_ptr()),
            Io::Into(s, d) => {
                debug_assert_eq!(s.len(), d.len());
                (s.as_ptr(), d.as_mut_ptr())
            }
        }
    }

    /// Splits off the first `n` elements.
    pub(crate) fn split_at(self, n: usize) -> (Self, Self) {
        match self {
            Io::Read(s) => {
                let (a, b) = s.split_at(n);
                (Io::Read(a), Io::Read(b))
            }
            Io::InPlace(s) => {
                let (a, b) = s.split_at_mut(n);
                (Io::InPlace(a), Io::InPlace(b))
            }
            Io::Into(s, d) => {
                let (sa, sb) = s.split_at(n);
                let (da, db) = d.split_at_mut(n);
                (Io::Into(sa, da), Io::Into(sb, db))
            }
        }
    }

    /// The destination (empty for `Read`).
    pub(crate) fn dst_mut(&mut self) -> &mut [f32] {
        match self {
            Io::Read(_) => &mut [],
            Io::InPlace(s) => s,
            Io::Into(_, d) => d,
        }
    }

    /// A shorter-lived copy of the same borrows.
    pub(crate) fn reborrow(&mut self) -> Io<'_> {
        match self {
            Io::Read(s) => Io::Read(s),
            Io::InPlace(s) => Io::InPlace(s),
            Io::Into(s, d) => Io::Into(s, d),
        }
    }

    pub(crate) fn src(&self) -> &[f32] {
        match self {
            Io::Read(s) => s,
            Io::InPlace(s) => s,
            Io::Into(s, _) => s,
        }
    }
}

/// Mergeable statistics of a run of classes (a block of a row, a whole row, or a
/// vocabulary shard): `sum = sum_j exp(z_j - max)`, `wsum = sum_j w_j (z_j - max)` (only
/// when asked for), and the first index of the maximum relative to the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BlockStats {
    /// Max of the (soft-capped) values.
    pub max: f32,
    /// Max of the raw values (equal to `max` without capping): decides the argmax.
    pub top: f32,
    pub argmax: usize,
    pub sum: f32,
    pub wsum: f64,
}

/// How the per-class constant of the gradient is formed: `g_j = alpha e_j - beta_j`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Beta<'a> {
    /// `beta_j = 0`.
    Zero,
    /// `beta_j = b` for every class (label smoothing without class weights).
    Uniform(f32),
    /// `beta_j = b * w_j` (label smoothing with class weights; the slice is the run's
    /// weights, same length as the run).
    Weighted(f32, &'a [f32]),
}

/// What the exp pass also accumulates besides the sum of exps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Smooth<'a> {
    /// Nothing.
    Off,
    /// `sum_j (z_j - max)`.
    Uniform,
    /// `sum_j w_j (z_j - max)`.
    Weighted(&'a [f32]),
}

pub(crate) use math::Cap;
pub(crate) use rows::{RowOut, RowPlan, RowsJob};

/// Generates, inside a variant's module, the `#[target_feature]` entry points that
/// instantiate the generic algorithms for that variant's token type.
macro_rules! instantiate_kernel {
    ($tok:ty $(, #[$attr:meta])*) => {
        use crate::arch::{math, pass, rows, small, softmax};
        use crate::arch::{Beta, BlockStats, Cap, Io, RowOut, RowPlan, RowsJob, Smooth};

        impl $tok {
            /// Cross-entropy over a chunk of rows on the fused path. `plan(r)` gives row
            /// `r`'s target and coefficients; `out(r, row)` receives its statistics.
            pub(crate) fn ce_rows<P, O>(self, io: Io<'_>, job: &RowsJob<'_>, plan: P, out: O)
            where
                P: FnMut(usize) -> RowPlan,
                O: FnMut(usize, RowOut),
            {
                $(#[$attr])*
                unsafe fn inner<P, O>(t: $tok, mut io: Io<'_>, j: &RowsJob<'_>, p: P, o: O)
                where
                    P: FnMut(usize) -> RowPlan,
                    O: FnMut(usize, RowOut),
                {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src` (and `dst` when non-null) hold `len` f32s,
                    // as `io` borrows them; `rows::ce_rows` stays within `len`.
                    unsafe { rows::ce_rows(t, src, dst, len, j, p, o) }
                }
                assert_eq!(io.len() % job.classes, 0);
                // SAFETY: feature: `self` is a token only built after detecting the
                // features its `try_new` checks. bounds: see `inner`.
                unsafe { inner(self, io, job, plan, out) }
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
                assert!(job.classes <= crate::arch::SMALL_MAX_CLASSES && io.len() % job.classes == 0);
                if let Smooth::Weighted(w) = job.smooth {
                    assert_eq!(w.len(), job.classes);
                }
                if let Beta::Weighted(_, w) = job.beta {
                    assert_eq!(w.len(), job.classes);
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, job, plan) }
            }

            /// Softmax (`log == false`) or log-softmax over a chunk of whole rows.
            pub(crate) fn softmax_rows(self, io: Io<'_>, classes: usize, log: bool) {
                $(#[$attr])*
                unsafe fn inner(t: $tok, mut io: Io<'_>, c: usize, log: bool) {
                    let len = io.len();
                    let (src, dst) = io.raw();
                    // SAFETY: bounds: `src`/`dst` hold `len` f32s (borrowed by `io`).
                    unsafe { softmax::softmax_rows(t, src, dst, len, c, log) }
                }
                // SAFETY: feature: the token proves the enabled features. bounds: see `inner`.
                unsafe { inner(self, io, classes, log) }
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
            /// out of range (see `crate::target::scan`), vectorised at this variant's width.
            pub(crate) fn scan_targets<T: crate::Target>(
                self,
                targets: &[T],
                classes: usize,
                ignore: Option<i64>,
            ) -> (usize, bool) {
                $(#[$attr])*
                unsafe fn inner<T: crate::Target>(_: $tok, ts: &[T], c: usize, i: Option<i64>) -> (usize, bool) {
                    crate::target::scan(ts, c, i)
                }
                // SAFETY: feature: the token proves the enabled features. No pointers.
                unsafe { inner(self, targets, classes, ignore) }
            }

            /// The row-group path's plan for a batch (see `crate::target::plan_batch`),
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
                    crate::target::plan_batch(ts, i, w, tg, wt)
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

#[cfg(test)]
mod tests {
    //! The row-group transposition of every variant this CPU runs, for every class count,
    //! against the memory layout it stands for (lane `r` of column `j` is element
    //! `r C + j`), there and back.

    use super::Simd;

    fn columns_round_trip<S: Simd, const C: usize>(s: S) {
        let n = S::LANES * C;
        let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
        // SAFETY: bounds: `src` holds `LANES * C` floats.
        let cols = unsafe { s.load_columns::<C>(src.as_ptr()) };
        for (j, &col) in cols.iter().enumerate() {
            let lanes = s.to_array(col);
            for r in 0..S::LANES {
                assert_eq!(lanes[r], src[r * C + j], "C={C} column {j} lane {r}");
            }
        }
        let mut back = vec![f32::NAN; n + 1];
        // SAFETY: bounds: `back` holds `LANES * C + 1` floats.
        unsafe { s.store_columns::<C>(back.as_mut_ptr(), &cols) };
        assert_eq!(back[..n], src[..], "C={C} store");
        assert!(back[n].is_nan(), "C={C}: stored past the group");
    }

    /// `load_block`/`store_block` at a runtime class count: every block there and back,
    /// and nothing written outside the block's own classes.
    fn blocks_round_trip<S: Simd>(s: S, c: usize) {
        let (l, n) = (S::LANES, S::LANES * c);
        let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 9.0).collect();
        let mut back = vec![f32::NAN; n + 1];
        for h in 0..c.div_ceil(l) {
            // SAFETY: bounds: `src` holds `LANES * c` floats; `l h < c`.
            let cols = unsafe { s.load_block(src.as_ptr(), c, h) };
            let width = (c - l * h).min(l);
            for (k, &col) in cols.iter().enumerate().take(width) {
                let lanes = s.to_array(col);
                for r in 0..l {
                    assert_eq!(
                        lanes[r],
                        src[r * c + l * h + k],
                        "c={c} block {h} column {k}"
                    );
                }
            }
            // SAFETY: bounds: `back` holds `LANES * c + 1` floats; `l h < c`.
            unsafe { s.store_block(back.as_mut_ptr(), c, h, &cols) };
            for (i, &b) in back.iter().enumerate() {
                let done = i < n && (i % c) < l * h + width;
                assert_eq!(b.is_nan(), !done, "c={c} block {h}: element {i}");
            }
        }
        assert_eq!(back[..n], src[..], "c={c} store");
    }

    fn every_class_count<S: Simd>(s: S) {
        macro_rules! each {
            ($($c:literal)*) => { $(columns_round_trip::<S, $c>(s);)* };
        }
        each!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
        for c in 1..=super::SMALL_MAX_CLASSES {
            blocks_round_trip(s, c);
        }
    }

    #[test]
    fn columns_round_trip_on_every_variant() {
        every_class_count(super::portable::Portable::new());
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = super::x86_64::Avx2::try_new() {
                every_class_count(s);
            }
            if let Some(s) = super::x86_64::Avx512::try_new() {
                every_class_count(s);
            }
        }
    }
}
