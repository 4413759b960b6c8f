//! The kernels' elementary functions over [`Simd`] vectors: the exp (and its form for the
//! non-positive domain every `z - max` lies in), tanh and soft-capping with its chain-rule
//! slope, and ln. The derivations, constants and error bounds are in [`crate::exp`], with
//! scalar models the tests compare these with.

use crate::arch::Simd;

/// `1 / ln 2`.
pub const LOG2E: f32 = core::f32::consts::LOG2_E;
/// High part of `ln 2`: `0.693359375 = 355 / 512`, exact in 9 bits.
pub const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`, rounded to f32.
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^20`: adding it to a float of magnitude below `2^19` rounds it to a multiple of
/// `1/8` (the sum's last mantissa bit is worth `1/8`).
pub const ROUND_MAGIC: f32 = 1_572_864.0;
/// Inputs above this are clamped to it (the result is +inf either way), so the reduction
/// never sees an infinite `n`. The kernels' own inputs are never positive and skip it.
pub const EXP_CLAMP_HI: f32 = 89.0;
/// The smallest f32 `x` with `e^x >= f32::MIN_POSITIVE` (`-87.33654022216797`); below it
/// the result is exactly 0.
pub const EXP_UNDERFLOW: f32 = -87.336_54;
/// `2^(j/8)` for `j = 0..8`, each rounded to the nearest f32 (within 0.27 * 2^-23
/// relative).
pub const EXP_TABLE: [f32; 8] = [
    1.0,
    1.090_507_7,
    1.189_207_1,
    1.296_839_6,
    core::f32::consts::SQRT_2,
    1.542_210_8,
    1.681_792_9,
    1.834_008_1,
];

/// `[c2, c3]` of `e^r ~ 1 + r (1 + c2 r + c3 r^2)` on `|r| <= ln(2)/16 * 1.0002`: a
/// minimax fit of the relative error with the two leading coefficients held at 1 (so the
/// evaluation is `T + (T r) q`), found by a direct search over `c2, c3` in 30-digit
/// `mpmath` and rounded to f32. The rounded polynomial is within 2.6e-8 (0.22 * 2^-23)
/// relative of `e^r` on the interval (Taylor's `1/2, 1/6` would give 1.28 * 2^-23).
pub const EXP_Q: [f32; 2] = [0.500_065_6, 0.166_697_58];

/// The maximum relative error of the kernels' exp over `[EXP_UNDERFLOW, 88.72]`, in ulp.
pub const EXP_MAX_ULP: f32 = 2.0;

/// Below this `|x|` the kernels' tanh is the odd polynomial (see the module docs).
pub const TANH_SMALL_MAX: f32 = 0.625;

/// Coefficients of `P`, highest degree first: `tanh a ~ a + (a a^2) P(a^2)` for
/// `a < TANH_SMALL_MAX` (module docs).
pub const TANH_P: [f32; 5] = [
    -0.006_096_714,
    0.020_997_18,
    -0.053_850_908,
    0.133_327_7,
    -0.333_333_28,
];

/// The maximum relative error of the kernels' tanh over every f32, in ulp of the exact
/// value (module docs; `tests/exp.rs` checks it exhaustively).
pub const TANH_MAX_ULP: f32 = 2.0;

/// Logit soft-capping `z -> cap tanh(z / cap)` (Gemma 2), with `inv = 1 / cap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cap {
    pub cap: f32,
    pub inv: f32,
}

impl Cap {
    /// Placeholder for loops instantiated without capping (never read).
    pub(crate) const NONE: Cap = Cap { cap: 1.0, inv: 1.0 };

    /// Whether every `exp(y - m)` of a capped row is free of underflow, so that
    /// [`exp_above_underflow`] may take it: `y` and the capped max `m` lie in
    /// `[-cap, cap]` (`|tanh| <= 1`, and the product with `cap` rounds within it), so
    /// `y - m >= -2 cap` (`2 cap` is exact and the subtraction's rounding is monotone), at
    /// or above [`EXP_UNDERFLOW`] for caps up to 43.67. Gemma 2's final cap is 30.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn exps_never_underflow(self) -> bool {
        -2.0 * self.cap >= EXP_UNDERFLOW
    }
}

/// The fast exp (see `crate::exp` for the derivation and error bound): Cody-Waite range
/// reduction in eighths `x = (k + j/8) ln2 + r`, `2^(j/8)` from an eight-entry table, a
/// cubic for `e^r`, and `2^k` applied exactly.
///
/// The domain is the kernels' one: `x <= EXP_CLAMP_HI`, or NaN (`z - max` is never
/// positive). Inputs below the underflow threshold, -inf included, whatever garbage the
/// reduction makes of them, are replaced by exactly 0 at the end; `scale_pow2` saturates
/// `k` so nothing else can go wrong on the way.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn exp<S: Simd>(s: S, x: S::F) -> S::F {
    exp_with::<S, false, true>(s, x)
}

/// [`exp`] for `x <= EXP_SMALL_MAX` (or NaN), which covers every `z - max`: there
/// `floor(n) <= 127`, and variants without a scaling instruction build `2^floor(n)` in one
/// step from the rounding's own bits (see [`Simd::scale_pow2_small_unless_below`]).
/// Bit-identical to [`exp`] on that domain.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn exp_small<S: Simd>(s: S, x: S::F) -> S::F {
    exp_with::<S, true, true>(s, x)
}

/// [`exp_small`] for `x` known to be at least [`EXP_UNDERFLOW`] (or NaN), where no lane
/// underflows: the test that clears such lanes is left out
/// ([`Simd::scale_pow2_small`]), and every result is the same bits. Soft-capped rows
/// take it when [`Cap::exps_never_underflow`].
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn exp_above_underflow<S: Simd>(s: S, x: S::F) -> S::F {
    exp_with::<S, true, false>(s, x)
}

/// The largest input of [`exp_small`]: `n` (`x / ln2` to the nearest eighth) stays below
/// 128, so `floor(n) <= 127`, below `127.9375 ln 2 = 88.68...`.
const EXP_SMALL_MAX: f32 = 88.0;

/// `SMALL`: `x <= EXP_SMALL_MAX`; `!CHECK`: `x >= EXP_UNDERFLOW` (with `SMALL` only).
#[cfg_attr(not(debug_assertions), inline(always))]
fn exp_with<S: Simd, const SMALL: bool, const CHECK: bool>(s: S, x: S::F) -> S::F {
    const { assert!(CHECK || SMALL) };
    // n = x / ln2 rounded to the nearest eighth: adding 1.5 * 2^20 leaves three fraction
    // bits, and `t` then holds 8n in its low mantissa bits.
    let magic = s.splat(ROUND_MAGIC);
    let t = s.mul_add(x, s.splat(LOG2E), magic);
    let n = s.sub(t, magic);
    let r = s.mul_add(n, s.splat(-LN2_HI), x);
    let r = s.mul_add(n, s.splat(-LN2_LO), r);
    // 2^(j/8) for j = 8n mod 8, then T e^r = T + (T r) q(r).
    let table = s.exp2_eighths(t);
    let q = s.mul_add(s.splat(EXP_Q[1]), r, s.splat(EXP_Q[0]));
    let q = s.mul_add(q, r, s.splat(1.0));
    let y = s.mul_add(s.mul(table, r), q, table);
    let lo = s.splat(EXP_UNDERFLOW);
    if !CHECK {
        s.scale_pow2_small(y, n, t)
    } else if SMALL {
        s.scale_pow2_small_unless_below(y, n, t, x, lo)
    } else {
        s.scale_pow2_unless_below(y, n, x, lo)
    }
}

/// [`exp`] over every f32: large inputs are clamped to `EXP_CLAMP_HI` first, where the
/// result has already overflowed to +inf (NaN is kept: comparisons with NaN are false).
/// Vectors with no lane above [`EXP_SMALL_MAX`] (all of them, in the kernels' use) take
/// [`exp_small`], so the exhaustive test over `[-104, 0]` checks the path the kernels run.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn exp_any<S: Simd>(s: S, x: S::F) -> S::F {
    if s.first_lane(s.gt(x, s.splat(EXP_SMALL_MAX))).is_none() {
        return exp_small(s, x);
    }
    let hi = s.splat(EXP_CLAMP_HI);
    exp(s, s.select(s.gt(x, hi), hi, x))
}

/// `tanh x` (see `crate::exp` for the derivation and the error bound, and
/// [`tanh_model`](crate::exp::tanh_model) for the same steps in scalar code): for
/// `|x| < TANH_SMALL_MAX` the odd polynomial `x + (x x^2) P(x^2)`, accurate in relative
/// terms down to the smallest subnormal; above, `1 - 2e / (1 + e)` with
/// `e = exp(-2 |x|)`, so the exp only sees its own domain (`<= 0`). The sign is put back
/// last on bits, so the function is exactly odd (`-0` gives `-0`); +-inf give +-1 and NaN
/// stays NaN.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn tanh<S: Simd>(s: S, x: S::F) -> S::F {
    let one = s.splat(1.0);
    // On bits: `|x|` (an AND), and the sign of `x` put back on `tanh |x|` at the end (an
    // AND and an XOR); the compare, two negations and two blends this replaces were five.
    let ax = s.abs(x);
    // Small arguments: `|x| + (|x| z) P(z)`, `z = x^2`; the correction is at most 0.13 of
    // `|x|`, so its rounding errors shrink by that much.
    let z = s.mul(ax, ax);
    let mut p = s.splat(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = s.mul_add(p, z, s.splat(c));
    }
    let small = s.mul_add(s.mul(ax, z), p, ax);
    let is_small = s.lt(ax, s.splat(TANH_SMALL_MAX));
    // Every lane small (NaN is not): the large-argument path would only be selected away,
    // so it is skipped, with the same bits. Soft-capped logits mostly lie here (for cap
    // 30, every `|z| < 18.75`), and the exp and division below cost twice the polynomial.
    let t = if s.all(is_small) {
        small
    } else {
        // Large arguments. `1 - 2e / (1 + e)` is exactly 1 once `e` is negligible
        // (saturation, +inf). A division rather than a reciprocal estimate: the scalar
        // model then gives the same bits.
        let e = exp_small(s, s.mul(ax, s.splat(-2.0)));
        let big = s.sub(one, s.div(s.add(e, e), s.add(one, e)));
        s.select(is_small, small, big)
    };
    s.xor_sign(t, x)
}

/// [`tanh`] as the soft-capping passes use it: the same bits for every `x` but `-0`,
/// which gives `+0`. The sign of a zero cannot show there: a capped logit in a pass
/// reaches the loss and the gradient only through differences (`y - m`) and squares
/// (`1 - t^2`); the capped values that are reported come from [`softcap_one`].
///
/// That freedom saves the sign handling of the common case, where every lane is small:
/// the polynomial runs on the signed `x` (`x + (x x^2) P(x^2)` is `-(tanh |x|)` exactly
/// for negative `x`, rounding being symmetric, but `+0` for `-0`: the correction
/// `(x x^2) P` is `+0` there, `P(0)` being negative), and the test is on `x^2`, which the
/// polynomial needs anyway: `x^2 < TANH_SMALL_MAX^2` exactly when `|x| < TANH_SMALL_MAX`
/// (`0.625^2` is exact, and the square of the float below 0.625 rounds 2.5 ulp below
/// it). Three operations fewer per vector (`|x|`, and the AND and XOR of the sign): with
/// `neg_mul_add` for the slope, the capped `forward_backward` took 3-4% less time with
/// `Kernel::Avx2` and 1-2% less with `Kernel::Avx512` (Zen 4, 1 thread, 1000 to 128 256
/// classes). A vector with a large lane (or NaN) takes [`tanh`] whole for those lanes.
#[cfg_attr(not(debug_assertions), inline(always))]
fn tanh_cap<S: Simd>(s: S, x: S::F) -> S::F {
    let z = s.mul(x, x);
    let mut p = s.splat(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = s.mul_add(p, z, s.splat(c));
    }
    let small = s.mul_add(s.mul(x, z), p, x);
    let is_small = s.lt(z, s.splat(TANH_SMALL_MAX * TANH_SMALL_MAX));
    if s.all(is_small) {
        small
    } else {
        s.select(is_small, small, tanh(s, x))
    }
}

/// `cap tanh(z / cap)`, with `z / cap` as `z * (1 / cap)`: `+-inf` give `+-cap`, NaN stays
/// NaN. Within `TANH_MAX_ULP + 1.5` ulp of the exact value relative (`crate::exp`): the
/// product `z (1 / cap)` carries at most one ulp (which `tanh`, whose relative condition
/// number is at most 1, passes on), the final product half of one. So a cap far above
/// every logit gives the logits back to within those few ulps.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn softcap<S: Simd>(s: S, z: S::F, c: Cap) -> S::F {
    s.mul(tanh_cap(s, s.mul(z, s.splat(c.inv))), s.splat(c.cap))
}

/// [`softcap`] and the chain-rule factor of capping from the same tanh:
/// `(cap t, 1 - t^2)` with `t = tanh(z / cap)`. The factor is within `5u` absolute (`t`
/// carries at most `TANH_MAX_ULP`, the fused `1 - t t` half an ulp), and exactly 0 where
/// `t = +-1` (saturation), with no test for it; cheaper and closer than
/// [`softcap_slope`], which has only `y` to start from.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn softcap_and_slope<S: Simd>(s: S, z: S::F, c: Cap) -> (S::F, S::F) {
    let t = tanh_cap(s, s.mul(z, s.splat(c.inv)));
    let slope = s.neg_mul_add(t, t, s.splat(1.0));
    (s.mul(t, s.splat(c.cap)), slope)
}

/// [`softcap`] of one value, through the same vector code so it matches the lanes
/// exactly, but with the exactly odd [`tanh`]: these are the capped values that are
/// reported (a row's max and target logit in `ShardStats`), where `-0` stays `-0` as in
/// `cap * tanh(z / cap)` elsewhere; in the loss and the exps the two agree.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn softcap_one<S: Simd>(s: S, z: f32, c: Cap) -> f32 {
    let t = tanh(s, s.mul(s.splat(z), s.splat(c.inv)));
    s.to_array(s.mul(t, s.splat(c.cap)))[0]
}

/// `v` soft-capped when `cap` is set, else `v` (one value, as [`softcap_one`]). A `match`
/// rather than `Option::map_or` with a closure: a closure is compiled outside the
/// variant's `#[target_feature]` boundary, so its vector intrinsics would become calls
/// (they did: per row, twice, which cost soft-capped rows of 1000 classes a third of
/// their time).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn softcap_opt<S: Simd>(s: S, v: f32, cap: Option<Cap>) -> f32 {
    match cap {
        Some(c) => softcap_one(s, v, c),
        None => v,
    }
}

/// The chain-rule factor of soft-capping at a capped value `y = cap tanh(z / cap)`:
/// `dy/dz = 1 - tanh^2 = 1 - (y / cap)^2`, within `13u` absolute. A saturated `y = +-cap`
/// gets exactly 0, as autograd through `tanh` gives (`y * (1 / cap)` alone could be an
/// ulp away from 1).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn softcap_slope<S: Simd>(s: S, y: S::F, c: Cap) -> S::F {
    let zero = s.splat(0.0);
    let t = s.mul(y, s.splat(c.inv));
    let f = s.neg_mul_add(t, t, s.splat(1.0));
    let saturated = s.eq(s.select(s.lt(y, zero), s.sub(zero, y), y), s.splat(c.cap));
    s.select(saturated, zero, f)
}

/// The target entry of a soft-capped row's gradient, in f64 from the row's statistics
/// (it is stored last, over what the scale pass wrote there):
/// `(alpha e_t - beta_t - tfix) (1 - (y_t / cap)^2)` with `e_t = exp(y_t - m)`, `m` the
/// row's max (or its log-sum-exp, for a backward pass from a saved one).
pub(crate) fn capped_target_grad(
    alpha: f64,
    yt: f32,
    m: f64,
    beta_t: f64,
    tfix: f64,
    cap: f32,
) -> f32 {
    let y = f64::from(yt) / f64::from(cap);
    let e = (f64::from(yt) - m).exp();
    ((alpha * e - beta_t - tfix) * ((1.0 - y) * (1.0 + y))) as f32
}

/// `ln x` for positive normal `x` (NaN gives NaN): `x = m 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))`, `ln m = 2 atanh(t) = 2 (t + t^3/3 + .. + t^9/9)` with
/// `t = (m - 1) / (m + 1)`, `|t| <= 0.1716`: the truncation error is below `t^10 / 11 <
/// 3e-9` relative, and `m - 1` is exact (Sterbenz), so the result is within about 2 ulp.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn ln<S: Simd>(s: S, x: S::F) -> S::F {
    let (e, ln_m) = ln_parts(s, x);
    s.mul_add(e, s.splat(LN2_HI), s.mul_add(e, s.splat(LN2_LO), ln_m))
}

/// [`ln`] in two parts, `ln x = e ln 2 + ln m`: the exponent `e` (an integer, as f32)
/// and `ln m` for the mantissa `m` in `[sqrt(1/2), sqrt(2))`, `|ln m| <= 0.35`. A sum of
/// many logs keeps the integer parts exact this way.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn ln_parts<S: Simd>(s: S, x: S::F) -> (S::F, S::F) {
    let (e, m) = s.split_exponent(x);
    let big = s.gt(m, s.splat(core::f32::consts::SQRT_2));
    let m = s.select(big, s.mul(m, s.splat(0.5)), m);
    let e = s.select(big, s.add(e, s.splat(1.0)), e);
    let one = s.splat(1.0);
    let t = s.div(s.sub(m, one), s.add(m, one));
    let t2 = s.mul(t, t);
    let mut p = s.splat(1.0 / 9.0);
    for c in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = s.mul_add(p, t2, s.splat(c));
    }
    (e, s.mul(s.add(t, t), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`tanh_cap`] against [`tanh`] on one variant, bit for bit but `-0 -> +0`: vectors
    /// of small lanes only (the signed polynomial), and mixed ones (the select).
    fn tanh_cap_is_tanh_but_for_minus_zero<S: Simd>(s: S) {
        let some: Vec<f32> = (0..=u32::MAX)
            .step_by(65_537)
            .map(f32::from_bits)
            .chain([0.625, 0.624_999_94, 1e-45, 0.0, f32::INFINITY])
            .flat_map(|x| [x, -x])
            .collect();
        let n = some.len();
        // Neighbours in bits (mostly all-small or all-large vectors), then scattered.
        let xs: Vec<f32> = some
            .iter()
            .copied()
            .chain((0..n).map(|i| some[i * 7919 % n]))
            .collect();
        let mut small_only = 0;
        for v in xs.chunks_exact(S::LANES) {
            // SAFETY: bounds: `v` holds `LANES` floats (`chunks_exact`).
            let x = unsafe { s.load(v.as_ptr()) };
            let (got, want) = (s.to_array(tanh_cap(s, x)), s.to_array(tanh(s, x)));
            small_only += usize::from(v.iter().all(|x| x.abs() < TANH_SMALL_MAX));
            for (l, &x) in v.iter().enumerate() {
                let want = if x.to_bits() == (-0.0f32).to_bits() {
                    0.0f32.to_bits()
                } else {
                    want[l].to_bits()
                };
                assert_eq!(got[l].to_bits(), want, "tanh_cap({x:e})");
            }
        }
        assert!(small_only > 100, "{small_only} vectors of small lanes only");
    }

    #[test]
    fn tanh_cap_on_every_variant() {
        crate::arch::on_every_variant!(tanh_cap_is_tanh_but_for_minus_zero);
    }

    /// [`exp_above_underflow`] against [`exp_small`] on one variant, bit for bit, from
    /// `EXP_UNDERFLOW` up to 0 (every 997th float, the ends, NaN), and the edge of
    /// [`Cap::exps_never_underflow`]: the largest cap it accepts keeps `-2 cap` in range.
    fn exp_above_underflow_is_exp_small<S: Simd>(s: S) {
        let (lo, hi) = (EXP_UNDERFLOW.to_bits(), (-0.0f32).to_bits());
        let xs: Vec<f32> = (hi..=lo)
            .step_by(997)
            .map(f32::from_bits)
            .chain([EXP_UNDERFLOW, -0.0, 0.0, f32::NAN, -1.0, -87.0])
            .collect();
        for v in xs.chunks(S::LANES) {
            let mut lanes = [0.0f32; 16];
            lanes[..v.len()].copy_from_slice(v);
            // SAFETY: bounds: `lanes` holds 16 >= LANES floats.
            let x = unsafe { s.load(lanes.as_ptr()) };
            let (got, want) = (
                s.to_array(exp_above_underflow(s, x)),
                s.to_array(exp_small(s, x)),
            );
            for (l, &x) in v.iter().enumerate() {
                assert_eq!(got[l].to_bits(), want[l].to_bits(), "exp({x:e})");
            }
        }
        let edge = Cap {
            cap: -EXP_UNDERFLOW / 2.0,
            inv: 1.0,
        };
        let above = Cap {
            cap: f32::from_bits(edge.cap.to_bits() + 1),
            inv: 1.0,
        };
        assert!(edge.exps_never_underflow() && -edge.cap - edge.cap >= EXP_UNDERFLOW);
        assert!(!above.exps_never_underflow() && -above.cap - above.cap < EXP_UNDERFLOW);
    }

    #[test]
    fn exp_above_underflow_on_every_variant() {
        crate::arch::on_every_variant!(exp_above_underflow_is_exp_small);
    }

    /// [`exp_small`] against [`exp`] on one variant, bit for bit, over `exp_small`'s
    /// domain: every 4099th float from -104 to +0 and from +0 to `EXP_SMALL_MAX`, the
    /// underflow threshold and its neighbours, -inf, and NaNs with payloads of both signs.
    /// The two build `2^floor(n)` differently on the AVX2 and portable kernels (from the
    /// rounding's bits, against `floor` and two exponent factors).
    fn exp_small_is_exp<S: Simd>(s: S) {
        let below = |x: f32| f32::from_bits(x.to_bits() + 1);
        let above = |x: f32| f32::from_bits(x.to_bits() - 1);
        let xs: Vec<f32> = ((-0.0f32).to_bits()..=(-104.0f32).to_bits())
            .step_by(4099)
            .chain((0.0f32.to_bits()..=EXP_SMALL_MAX.to_bits()).step_by(4099))
            .map(f32::from_bits)
            .chain([EXP_UNDERFLOW, below(EXP_UNDERFLOW), above(EXP_UNDERFLOW)])
            .chain([EXP_SMALL_MAX, f32::NEG_INFINITY, -0.0, 0.0])
            .chain(
                [
                    0x7fc0_0000,
                    0x7fc1_2345,
                    0x7fff_ffff,
                    0xffc0_0001,
                    0xffff_ffff,
                ]
                .map(f32::from_bits),
            )
            .collect();
        for v in xs.chunks(S::LANES) {
            let mut lanes = [0.0f32; 16];
            lanes[..v.len()].copy_from_slice(v);
            // SAFETY: bounds: `lanes` holds 16 >= LANES floats.
            let x = unsafe { s.load(lanes.as_ptr()) };
            let (got, want) = (s.to_array(exp_small(s, x)), s.to_array(exp(s, x)));
            for (l, &x) in v.iter().enumerate() {
                assert_eq!(
                    got[l].to_bits(),
                    want[l].to_bits(),
                    "exp({x:e}) {:#x}",
                    x.to_bits()
                );
            }
        }
    }

    #[test]
    fn exp_small_on_every_variant() {
        crate::arch::on_every_variant!(exp_small_is_exp);
    }
}
