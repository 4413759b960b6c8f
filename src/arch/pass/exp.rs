//! Pass 2: `e_j = exp(z_j - max)`, summed, stored when a gradient is wanted, with the
//! label-smoothing sum and soft-capping; and the prefetch of the next row's lines.

use crate::arch::math::{Cap, exp_above_underflow, exp_small, softcap, softcap_and_slope};
use crate::arch::pass::map::scale_pass;
use crate::arch::pass::{LANE_ONES, Logits, WSUM_SCALE, WSUM_UNSCALE};
use crate::arch::{Beta, Simd, Smooth};
use crate::paths::PREFETCH_MIN_CLASSES;

/// Where the next row's lines are, for pass 2 to prefetch while it computes this row: its
/// source (f32, or 16-bit logits, [`Ahead::half_source`]), and its destination when that
/// is a separate buffer. Addresses only (a prefetch never faults), so any values will do.
///
/// A separate destination (`forward_backward_into`) matters on linked rows
/// ([`TRAIL_MIN_CLASSES`](crate::paths::TRAIL_MIN_CLASSES)..=[`TRAIL_MAX_CLASSES`](crate::paths::TRAIL_MAX_CLASSES)): a store to a line that is not in cache
/// waits for the line to be read first, and in the exp loop those waits stalled the core.
/// Prefetching the next row's destination lines as well took `forward_backward_into`
/// from 0.52-0.54 to 0.41-0.43 ns per logit at 4096x32000 on one thread (0.28-0.31 to
/// 0.22-0.28 on two), 0.59-0.60 to 0.46-0.47 at 8192x8192 and 0.52-0.53 to 0.37-0.38 at
/// 4096x16384; the in-place call takes 0.27, 0.28-0.29 and 0.31-0.36. Elsewhere it lost: 0.46 to 0.70 at 16384x1000 (the hardware
/// prefetcher already follows short rows' stores), 0.43 to 0.47 at 1024x128256 (four rows
/// of 512 KiB no longer fit in L2). Forming the gradient in a staging row and streaming it
/// out with non-temporal stores, which saves the reads, did worse than this prefetch at
/// 4096x32000 then (Zen 4: 0.47 copied out row by row, 0.68 block by block); on the Zen 5
/// host's AVX-512 kernel, streamed straight from the staging row, it did better, so
/// there a separate output of linked rows is staged and unlinked unless the rows are
/// soft-capped ([`stages_into`](crate::paths::stages_into)); this prefetch serves the
/// other cases.
#[derive(Clone, Copy)]
pub(crate) struct Ahead {
    src: *const f32,
    /// Null when the destination is the source (in place) or absent.
    dst: *const f32,
    /// The source holds 16-bit logits: class `i` lies `2 i` bytes on, not `4 i`.
    half: bool,
}

impl Ahead {
    /// Nothing to prefetch.
    pub(crate) const NONE: Ahead = Ahead {
        src: core::ptr::null(),
        dst: core::ptr::null(),
        half: false,
    };

    /// Only the source, at `src`.
    pub(crate) fn source(src: *const f32) -> Ahead {
        Ahead {
            src,
            dst: core::ptr::null(),
            half: false,
        }
    }

    /// Only a source of 16-bit logits, at `src`.
    pub(crate) fn half_source(src: *const u16) -> Ahead {
        Ahead {
            src: src.cast(),
            dst: core::ptr::null(),
            half: true,
        }
    }

    /// The row `ahead` floats past `src`, and past `dst` too when that is a separate buffer.
    pub(crate) fn rows(src: *const f32, dst: *const f32, ahead: usize) -> Ahead {
        let into = !dst.is_null() && dst != src;
        Ahead {
            src: src.wrapping_add(ahead),
            dst: if into {
                dst.wrapping_add(ahead)
            } else {
                core::ptr::null()
            },
            half: false,
        }
    }

    /// The same, `k` floats on (null stays null).
    pub(crate) fn add(self, k: usize) -> Ahead {
        let on = |p: *const f32| if p.is_null() { p } else { p.wrapping_add(k) };
        debug_assert!(!self.half);
        Ahead {
            src: on(self.src),
            dst: on(self.dst),
            half: false,
        }
    }

    /// Prefetches the lines `i` floats on in the source and, if any, the destination.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn prefetch<S: Simd>(self, s: S, i: usize) {
        if self.half {
            s.prefetch(self.src.cast::<u16>().wrapping_add(i).cast());
            return;
        }
        s.prefetch(self.src.wrapping_add(i));
        if !self.dst.is_null() {
            s.prefetch(self.dst.wrapping_add(i));
        }
    }
}

/// The smoothing modes of [`exp_pass_mode`] (a const parameter): no smoothing sum,
/// `sum_j (z_j - max)`, or `sum_j w_j (z_j - max)` (see [`Smooth`]).
pub(crate) const SMOOTH_OFF: u8 = 0;
/// See [`SMOOTH_OFF`].
pub(crate) const SMOOTH_UNIFORM: u8 = 1;
/// See [`SMOOTH_OFF`].
pub(crate) const SMOOTH_WEIGHTED: u8 = 2;

/// Pass 2: `e_j = exp(z_j - m)`, returns `(sum e_j, smoothing sum)`, storing `e` to `dst`
/// when `STORE`. The next row's lines are prefetched alongside ([`Ahead`]).
///
/// With soft-capping, `z_j` is first replaced by `y_j = cap tanh(z_j / cap)` (and `m` must
/// be the capped max). Without smoothing the pass then stores `e_j (1 - t_j^2)` with
/// `t_j = tanh(z_j / cap)` from the same tanh: the exp times the chain factor of capping,
/// so that the scale pass is the plain one (`g = alpha e s`, no transcendental): capped
/// rows compute one tanh and one exp per logit. With smoothing it stores `y` (the gradient's `-beta_j` is multiplied by the
/// chain factor too), and the scale pass recomputes `e` from it.
///
/// # Safety
/// `src..src + n` readable; if `STORE`, `dst..dst + n` writable (it may equal `src`);
/// weighted smoothing slices hold `n` values.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn exp_pass<S: Simd, const STORE: bool>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    m: f32,
    smooth: Smooth<'_>,
    cap: Option<Cap>,
    next: Ahead,
) -> (f32, f64) {
    // The smoothing and capping variants are separate loops so the common case carries
    // no extra work.
    let null = core::ptr::null();
    macro_rules! mode {
        ($sm:ident, $cap:literal, $w:expr, $c:expr) => {
            exp_pass_mode::<S, _, STORE, $sm, $cap, false>(
                s,
                src,
                dst,
                n,
                m,
                $w,
                $c,
                next,
                TrailBlock::NONE,
            )
        };
    }
    // SAFETY: the caller's obligations are forwarded unchanged.
    unsafe {
        match (smooth, cap) {
            (Smooth::Off, None) => mode!(SMOOTH_OFF, false, null, Cap::NONE),
            (Smooth::Uniform, None) => mode!(SMOOTH_UNIFORM, false, null, Cap::NONE),
            (Smooth::Weighted(w), None) => mode!(SMOOTH_WEIGHTED, false, w.as_ptr(), Cap::NONE),
            (Smooth::Off, Some(c)) => mode!(SMOOTH_OFF, true, null, c),
            (Smooth::Uniform, Some(c)) => mode!(SMOOTH_UNIFORM, true, null, c),
            (Smooth::Weighted(w), Some(c)) => mode!(SMOOTH_WEIGHTED, true, w.as_ptr(), c),
        }
    }
}

/// The stretch of a trailing row's stored exps (see [`TrailRow`](crate::arch::pass::online::TrailRow)) that [`exp_pass_mode`]
/// turns into gradient, `g = alpha e`, alongside its own exps: `dst[..n]`, the `n` of that
/// call.
#[derive(Clone, Copy)]
pub(crate) struct TrailBlock {
    pub(crate) dst: *mut f32,
    pub(crate) alpha: f32,
}

impl TrailBlock {
    pub(crate) const NONE: TrailBlock = TrailBlock {
        dst: core::ptr::null_mut(),
        alpha: 0.0,
    };
}

/// [`exp_pass`] for one smoothing mode `SM` ([`SMOOTH_OFF`], [`SMOOTH_UNIFORM`],
/// [`SMOOTH_WEIGHTED`]) and capping
/// `CAP`. With `TRAIL` (no smoothing) also `trail.dst[j] = alpha trail.dst[j]` for
/// `j < n`, in the same loop: the multiply, load and store of the trailing row fill slots
/// that the exps leave free. Each value is what [`scale_pass`] would make of it, so the
/// results do not depend on this.
///
/// # Safety
/// As [`exp_pass`]; `w..w + n` readable when `SM == SMOOTH_WEIGHTED`; with `TRAIL`,
/// `trail.dst..trail.dst + n` readable and writable, disjoint from `src..src + n` and
/// `dst..dst + n`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn exp_pass_mode<
    S: Simd,
    L: Logits<S>,
    const STORE: bool,
    const SM: u8,
    const CAP: bool,
    const TRAIL: bool,
>(
    s: S,
    src: L,
    dst: *mut f32,
    n: usize,
    m: f32,
    w: *const f32,
    cap: Cap,
    next: Ahead,
    trail: TrailBlock,
) -> (f32, f64) {
    const { assert!(!TRAIL || SM == SMOOTH_OFF) };
    let zero = s.splat(0.0);
    let mut acc = Sums {
        s0: zero,
        s1: zero,
        d0: zero,
        d1: zero,
    };
    let prefetch = !next.src.is_null() && n >= PREFETCH_MIN_CLASSES;
    let next = if prefetch { next } else { Ahead::NONE };
    let mut i = 0;
    // SAFETY: the caller's obligations, forwarded; each step starts where the last ended.
    unsafe {
        if SM == SMOOTH_OFF && !CAP {
            i = plain_quads::<S, L, STORE, TRAIL>(s, src, dst, n, m, next, trail, &mut acc);
        }
        // The plain mode's trailing stretch is done by now; a capped row's is scaled along
        // its pairs, and what the pairs leave, after them.
        macro_rules! pairs_checking {
            ($check:literal) => {
                pairs::<S, L, STORE, SM, CAP, $check, TRAIL>(
                    s,
                    (src, dst),
                    (i, n),
                    m,
                    w,
                    cap,
                    next,
                    trail,
                    &mut acc,
                )
            };
        }
        i = if CAP && cap.exps_never_underflow() {
            pairs_checking!(false)
        } else {
            pairs_checking!(true)
        };
        if TRAIL && CAP && i < n {
            // `trail.dst` holds `n` (caller's obligation), and `i < n`.
            scale_pass(s, trail.dst.add(i), n - i, trail.alpha, Beta::Zero);
        }
        rest::<S, L, STORE, SM, CAP>(s, (src, dst), (i, n), m, w, cap, &mut acc);
    }
    let sum = s.reduce_add(s.add(acc.s0, acc.s1));
    let dsum = if SM == SMOOTH_OFF {
        0.0
    } else {
        f64::from(s.reduce_add(s.add(acc.d0, acc.d1))) * WSUM_UNSCALE
    };
    (sum, dsum)
}

/// The accumulators of [`exp_pass_mode`]: two of the sum of exps, two of the smoothing
/// sum (at scale 2^-64). Which one an element lands in depends only on its index.
struct Sums<F> {
    s0: F,
    s1: F,
    d0: F,
    d1: F,
}

/// The plain case of [`exp_pass_mode`] (no smoothing, no capping), four vectors per step:
/// four independent exp chains in flight rather than two (3-6% faster on rows in L2).
/// With `TRAIL`, the whole trailing stretch `trail.dst[..n]` is scaled by the end.
/// Returns where the next step starts. `next` is [`Ahead::NONE`] when nothing is
/// prefetched.
///
/// # Safety
/// As [`exp_pass_mode`].
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn plain_quads<S: Simd, L: Logits<S>, const STORE: bool, const TRAIL: bool>(
    s: S,
    src: L,
    dst: *mut f32,
    n: usize,
    m: f32,
    next: Ahead,
    trail: TrailBlock,
    acc: &mut Sums<S::F>,
) -> usize {
    let l = S::LANES;
    // `alpha e + (-0)`, the scale pass's own form (its `beta` term is -0 without smoothing).
    let (tv, nz) = (s.splat(trail.alpha), s.splat(-0.0));
    let mv = s.splat(m);
    let zero = s.splat(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (acc.s0, acc.s1, zero, zero);
    let mut i = 0;
    while i + 4 * l <= n {
        if !next.src.is_null() {
            for k in 0..4 {
                next.prefetch(s, i + k * l);
            }
        }
        // Written out: a closure (`array::map`) would not inherit the caller's target
        // features, and its vector operations would not inline.
        // SAFETY: bounds: `i + 4 * LANES <= n` by the loop condition.
        let z = unsafe {
            [
                src.load(s, i),
                src.load(s, i + l),
                src.load(s, i + 2 * l),
                src.load(s, i + 3 * l),
            ]
        };
        let e = [
            exp_small(s, s.sub(z[0], mv)),
            exp_small(s, s.sub(z[1], mv)),
            exp_small(s, s.sub(z[2], mv)),
            exp_small(s, s.sub(z[3], mv)),
        ];
        if STORE {
            for (k, &e) in e.iter().enumerate() {
                // SAFETY: bounds: as the loads; `dst` holds `n` (caller's obligation).
                unsafe { s.store(dst.add(i + k * l), e) };
            }
        }
        if TRAIL {
            for k in 0..4 {
                // SAFETY: bounds: `i + 4 * LANES <= n`, and `trail.dst` holds `n`
                // (caller's obligation).
                unsafe {
                    let p = trail.dst.add(i + k * l);
                    s.store(p, s.mul_add(s.load(p), tv, nz));
                }
            }
        }
        s0 = s.add(s0, e[0]);
        s1 = s.add(s1, e[1]);
        s2 = s.add(s2, e[2]);
        s3 = s.add(s3, e[3]);
        i += 4 * l;
    }
    acc.s0 = s.add(s0, s2);
    acc.s1 = s.add(s1, s3);
    if TRAIL && i < n {
        // The rest of the stretch (a short last block).
        // SAFETY: bounds: `i < n`, and `trail.dst` holds `n`.
        unsafe { scale_pass(s, trail.dst.add(i), n - i, trail.alpha, Beta::Zero) };
    }
    i
}

/// [`exp_pass_mode`] two vectors per step from `i`, while two full vectors remain: the
/// only loop of the smoothing and capping modes, the plain mode's last pair. Returns where
/// the tail starts. A capped row without `CHECK` (its exps never underflow,
/// [`Cap::exps_never_underflow`]) takes the exp without its underflow test, with the same
/// bits. A capped row with `TRAIL` also scales `trail.dst[i..]`, as far as the pairs go
/// (the plain mode's trailing stretch is [`plain_quads`]'s). `CHECK` and `TRAIL` are
/// ignored without `CAP`.
///
/// # Safety
/// As [`exp_pass_mode`], with `i <= n`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn pairs<
    S: Simd,
    L: Logits<S>,
    const STORE: bool,
    const SM: u8,
    const CAP: bool,
    const CHECK: bool,
    const TRAIL: bool,
>(
    s: S,
    (src, dst): (L, *mut f32),
    (mut i, n): (usize, usize),
    m: f32,
    w: *const f32,
    cap: Cap,
    next: Ahead,
    trail: TrailBlock,
    acc: &mut Sums<S::F>,
) -> usize {
    let l = S::LANES;
    // `alpha e + (-0)`, the scale pass's own form, as in `plain_quads`.
    let (tv, nz) = (s.splat(trail.alpha), s.splat(-0.0));
    let mv = s.splat(m);
    let sc = s.splat(WSUM_SCALE);
    let msc = s.splat(m * WSUM_SCALE);
    let Sums {
        mut s0,
        mut s1,
        mut d0,
        mut d1,
    } = *acc;
    while i + 2 * l <= n {
        if !next.src.is_null() {
            next.prefetch(s, i);
            next.prefetch(s, i + l);
        }
        // SAFETY: bounds: `i + 2 * LANES <= n` by the loop condition.
        let (mut z0, mut z1) = unsafe { (src.load(s, i), src.load(s, i + l)) };
        // The chain factors of capping, when this pass stores `e` times them.
        let (mut f0, mut f1) = (mv, mv);
        if CAP && STORE && SM == SMOOTH_OFF {
            ((z0, f0), (z1, f1)) = (softcap_and_slope(s, z0, cap), softcap_and_slope(s, z1, cap));
        } else if CAP {
            (z0, z1) = (softcap(s, z0, cap), softcap(s, z1, cap));
        }
        let (x0, x1) = (s.sub(z0, mv), s.sub(z1, mv));
        let (e0, e1) = if CHECK || !CAP {
            (exp_small(s, x0), exp_small(s, x1))
        } else {
            (exp_above_underflow(s, x0), exp_above_underflow(s, x1))
        };
        if TRAIL && CAP {
            for k in 0..2 {
                // SAFETY: bounds: `i + 2 * LANES <= n`, and `trail.dst` holds `n`
                // (caller's obligation).
                unsafe {
                    let p = trail.dst.add(i + k * l);
                    s.store(p, s.mul_add(s.load(p), tv, nz));
                }
            }
        }
        if STORE {
            let (o0, o1) = if CAP && SM == SMOOTH_OFF {
                (s.mul(e0, f0), s.mul(e1, f1))
            } else if CAP {
                (z0, z1)
            } else {
                (e0, e1)
            };
            // SAFETY: bounds: as the loads; `dst` holds `n` (caller's obligation).
            unsafe {
                s.store(dst.add(i), o0);
                s.store(dst.add(i + l), o1);
            }
        }
        s0 = s.add(s0, e0);
        s1 = s.add(s1, e1);
        if SM != SMOOTH_OFF {
            // (z - m) at scale 2^-64, which cannot overflow (see WSUM_SCALE).
            let x0 = s.sub(s.mul(z0, sc), msc);
            let x1 = s.sub(s.mul(z1, sc), msc);
            if SM == SMOOTH_UNIFORM {
                d0 = s.add(d0, x0);
                d1 = s.add(d1, x1);
            } else {
                // SAFETY: bounds: `w` holds `n` (caller's obligation), `i + 2 * LANES <= n`.
                let (w0, w1) = unsafe { (s.load(w.add(i)), s.load(w.add(i + l))) };
                d0 = s.mul_add(w0, x0, d0);
                d1 = s.mul_add(w1, x1, d1);
            }
        }
        i += 2 * l;
    }
    *acc = Sums { s0, s1, d0, d1 };
    i
}

/// The last `n - i < 2 LANES` elements of [`exp_pass_mode`]: a full vector, then a tail
/// that never touches memory past the row.
///
/// # Safety
/// As [`exp_pass_mode`], with `i <= n`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn rest<S: Simd, L: Logits<S>, const STORE: bool, const SM: u8, const CAP: bool>(
    s: S,
    (src, dst): (L, *mut f32),
    (mut i, n): (usize, usize),
    m: f32,
    w: *const f32,
    cap: Cap,
    acc: &mut Sums<S::F>,
) {
    let l = S::LANES;
    let mv = s.splat(m);
    let sc = s.splat(WSUM_SCALE);
    let msc = s.splat(m * WSUM_SCALE);
    let zero = s.splat(0.0);
    while i < n {
        let r = (n - i).min(l);
        // Both loads happen before the store: in place, `dst == src`.
        // SAFETY: bounds: a full load when `r == LANES` (`i + LANES <= n`), otherwise a
        // tail load of exactly `src[i..n]` (and of `LANE_ONES[..r]`, 16 >= LANES values).
        // Without capping, -inf pads give e = 0 and pads of `m` give `z - m = 0` for the
        // smoothing sum; capping would turn a -inf pad into -cap, so there the pads are
        // replaced after the transform through the lane mask.
        // With capping, `f` is the chain factor (unused unless stored, see `pairs`).
        let (z, zd, f) = unsafe {
            if r == l {
                let z = src.load(s, i);
                if CAP {
                    let (y, f) = softcap_and_slope(s, z, cap);
                    (y, y, f)
                } else {
                    (z, z, zero)
                }
            } else if CAP {
                let (y, f) = softcap_and_slope(s, src.load_tail(s, i, r, 0.0), cap);
                let valid = s.gt(s.load_tail(LANE_ONES.as_ptr(), r, 0.0), zero);
                (
                    s.select(valid, y, s.splat(f32::NEG_INFINITY)),
                    s.select(valid, y, mv),
                    f,
                )
            } else {
                (
                    src.load_tail(s, i, r, f32::NEG_INFINITY),
                    src.load_tail(s, i, r, m),
                    zero,
                )
            }
        };
        let e = exp_small(s, s.sub(z, mv));
        if STORE {
            let o = if CAP && SM == SMOOTH_OFF {
                s.mul(e, f)
            } else if CAP {
                zd
            } else {
                e
            };
            // SAFETY: bounds: as the load.
            unsafe {
                if r == l {
                    s.store(dst.add(i), o)
                } else {
                    s.store_tail(dst.add(i), r, o)
                }
            }
        }
        acc.s0 = s.add(acc.s0, e);
        if SM != SMOOTH_OFF {
            let x = s.sub(s.mul(zd, sc), msc);
            if SM == SMOOTH_UNIFORM {
                acc.d0 = s.add(acc.d0, x);
            } else {
                // Pads of weight 0 give w x = 0.
                // SAFETY: bounds: `w` holds `n` (caller's obligation), same range as the load.
                let wv = unsafe {
                    if r == l {
                        s.load(w.add(i))
                    } else {
                        s.load_tail(w.add(i), r, 0.0)
                    }
                };
                acc.d0 = s.mul_add(wv, x, acc.d0);
            }
        }
        i += r;
    }
}
