//! Pass 3 and the other element-wise maps: `g = alpha e - beta` in place, the gradient
//! from merged statistics, the log-softmax shift, and the kernels' exp and tanh over a
//! slice, all through one vector loop ([`map_stream`]).

use crate::arch::math::{Cap, exp, exp_any, softcap_and_slope, softcap_slope, tanh};
use crate::arch::pass::load_upto;
use crate::arch::{Beta, Simd};

/// Pass 3: `dst_j = alpha * dst_j - beta_j` in place.
///
/// # Safety
/// `dst..dst + n` readable and writable; `Beta::Weighted` slices hold `n` values.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn scale_pass<S: Simd>(
    s: S,
    dst: *mut f32,
    n: usize,
    alpha: f32,
    beta: Beta<'_>,
) {
    // SAFETY: `dst` is both source and destination; obligations forwarded.
    unsafe { affine_pass::<S, false, false, false>(s, dst, dst, n, 0.0, alpha, beta, Cap::NONE) }
}

/// `dst_j = (alpha * f(y_j) - beta_j) * slope(y_j)`: `y = cap tanh(src / cap)` when
/// `CAP_IN`, else `y = src`; `f(y) = exp(y - m)` when `EXP`, else the identity; `slope` is
/// the soft-capping chain factor when `CHAIN`, else 1: `1 - t^2` from the same
/// `t = tanh(src / cap)` when `CAP_IN`, else `1 - (y / cap)^2` from the stored `y`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`); `Beta::Weighted`
/// slices hold `n` values.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn affine_pass<
    S: Simd,
    const EXP: bool,
    const CAP_IN: bool,
    const CHAIN: bool,
>(
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
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, z: S::F, i: usize) -> S::F {
        // From the logit itself, the chain factor comes from the same tanh
        // ([`softcap_and_slope`]); from a stored capped logit, from `y` alone.
        let (y, slope) = if CAP_IN {
            softcap_and_slope(s, z, self.cap)
        } else if CHAIN {
            (z, softcap_slope(s, z, self.cap))
        } else {
            (z, z)
        };
        let e = if EXP { exp(s, s.sub(y, self.mv)) } else { y };
        let nb = if INDEXED {
            // SAFETY: bounds: `i < n` and `w..w + n` readable (the map's contract); the
            // pads of 0 are never stored.
            s.mul(unsafe { load_upto(s, self.w, i, self.n, 0.0) }, self.bv)
        } else {
            self.bv
        };
        let g = s.mul_add(e, self.av, nb);
        if CHAIN { s.mul(g, slope) } else { g }
    }
}

/// `(z - m) - sh`, for [`shift_run`].
struct Shift<S: Simd> {
    mv: S::F,
    shv: S::F,
}

impl<S: Simd> LaneMap<S> for Shift<S> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, z: S::F, _: usize) -> S::F {
        s.sub(s.sub(z, self.mv), self.shv)
    }
}

/// A constant, for [`fill_zero`].
struct Splat<S: Simd>(S::F);

impl<S: Simd> LaneMap<S> for Splat<S> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn apply<const INDEXED: bool>(&self, _: S, _: S::F, _: usize) -> S::F {
        self.0
    }
}

/// The kernels' exp over every f32, for [`exp_slice`].
struct ExpAny;

impl<S: Simd> LaneMap<S> for ExpAny {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn apply<const INDEXED: bool>(&self, s: S, x: S::F, _: usize) -> S::F {
        exp_any(s, x)
    }
}

/// The kernels' tanh, for [`tanh_slice`].
struct Tanh;

impl<S: Simd> LaneMap<S> for Tanh {
    #[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
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

/// Copies `n` floats from `src` to `dst` with non-temporal stores ([`stream_map`]).
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable, not overlapping.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn stream_copy<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: forwarded.
    unsafe { stream_map(s, src, dst, n, &Identity) }
}

/// `dst_j = alpha src_j` with non-temporal stores ([`stream_map`]): [`scale_pass`]'s
/// values without smoothing (`alpha e + (-0)`), from exps stored elsewhere, bit for bit.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable, not overlapping.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn scale_stream<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    alpha: f32,
) {
    let map = Affine::<S, false, false, false> {
        av: s.splat(alpha),
        mv: s.splat(0.0),
        bv: s.splat(-0.0),
        w: core::ptr::null(),
        n,
        cap: Cap::NONE,
    };
    // SAFETY: forwarded.
    unsafe { stream_map(s, src, dst, n, &map) }
}

/// The input unchanged, for [`stream_copy`].
struct Identity;

impl<S: Simd> LaneMap<S> for Identity {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn apply<const INDEXED: bool>(&self, _: S, v: S::F, _: usize) -> S::F {
        v
    }
}

/// `dst_j = f(src_j)` over `n` floats, the whole vectors at `LANES`-aligned places of
/// `dst` with non-temporal stores ([`Simd::store_stream`]), which write the lines without
/// reading them first; the entries before the first aligned place and after the last
/// whole vector with one masked load and store each. The caller orders the stores with
/// [`Simd::store_fence`] before the destination is handed back. `f` reads no per-entry
/// data.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable, not overlapping.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn stream_map<S: Simd, M: LaneMap<S>>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    f: &M,
) {
    let l = S::LANES;
    // Entries up to the first vector-aligned place of `dst` (f32s are 4-aligned, so the
    // offset is a whole number of entries, fewer than `LANES`), at most `n`.
    let head = dst.align_offset(4 * l).min(n);
    if head > 0 {
        // SAFETY: bounds: `head <= n` entries of each, `head < LANES` (as the tail
        // contract asks).
        unsafe {
            let y = f.apply::<false>(s, s.load_tail(src, head, 0.0), 0);
            s.store_tail(dst, head, y)
        };
    }
    let mut i = head;
    while i + l <= n {
        // SAFETY: bounds: `i + LANES <= n` by the loop condition; `dst + i` is aligned to
        // `4 LANES` bytes (`head` made it so, and `i` moves by whole vectors).
        unsafe { s.store_stream(dst.add(i), f.apply::<false>(s, s.load(src.add(i)), i)) };
        i += l;
    }
    if i < n {
        // SAFETY: bounds: `[i..n]`, fewer than `LANES` entries (the loop above stopped).
        unsafe {
            let y = f.apply::<false>(s, s.load_tail(src.add(i), n - i, 0.0), i);
            s.store_tail(dst.add(i), n - i, y)
        };
    }
}

/// Writes `n` zeros.
///
/// # Safety
/// `dst..dst + n` writable.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn fill_zero<S: Simd>(s: S, dst: *mut f32, n: usize) {
    let z = s.splat(0.0);
    // SAFETY: `dst` is both ends; `dst..dst + n` readable as it is writable (the loaded
    // values are ignored).
    unsafe { map_stream::<S, _, false>(s, dst, dst, n, &Splat(z)) }
}

/// `dst_j = (src_j - m) - sh`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn shift_run<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    sh: f32,
) {
    let (mv, shv) = (s.splat(m), s.splat(sh));
    // SAFETY: forwarded.
    unsafe { map_stream::<S, _, false>(s, src, dst, n, &Shift { mv, shv }) }
}

/// Public face of [`shift_run`] for the blocked path.
///
/// # Safety
/// As [`shift_run`].
#[cfg_attr(not(debug_assertions), inline(always))]
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

/// `dst_j = alpha * exp(y_j - m) - beta_j` with `y = z`, or with soft-capping
/// `dst_j = (alpha * exp(y_j - m) - beta_j) (1 - t_j^2)`, `y = cap t`, `t = tanh(z / cap)`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable (may equal `src`); weighted slices
/// hold `n`.
#[cfg_attr(not(debug_assertions), inline(always))]
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
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn exp_slice<S: Simd>(s: S, p: *mut f32, n: usize) {
    // SAFETY: `p` is both ends; forwarded.
    unsafe { map_stream::<S, _, false>(s, p, p, n, &ExpAny) }
}

/// The kernel's tanh in place.
///
/// # Safety
/// `p..p + n` readable and writable.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn tanh_slice<S: Simd>(s: S, p: *mut f32, n: usize) {
    // SAFETY: `p` is both ends; forwarded.
    unsafe { map_stream::<S, _, false>(s, p, p, n, &Tanh) }
}
