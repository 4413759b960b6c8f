//! The fast exp and tanh used by every kernel, and scalar models of them.
//!
//! # Algorithm
//!
//! For `x` in the kernels' domain (`z - max <= 0`, or NaN):
//!
//! 1. **Range reduction** (Cody-Waite, in eighths): `n = round(8 x / ln 2) / 8`, a multiple
//!    of `1/8`, and `r = x - n ln 2` with `|r| <= ln(2)/16 + tiny`. Rounding uses the
//!    `1.5 * 2^20` trick ([`ROUND_MAGIC`]): the sum `t = x / ln 2 + ROUND_MAGIC` keeps three
//!    fraction bits, so the addition itself rounds to the nearest eighth, and `t`'s low
//!    mantissa bits hold `8n`. `ln 2` is split into [`LN2_HI`] (9 significant bits, so
//!    `n * LN2_HI` is exact: `8|n| <= 1032` needs 11) and [`LN2_LO`], each
//!    subtracted with one fused multiply-add.
//! 2. **Table**: `n = k + j/8` with `k = floor(n)` and `j` the low three bits of `t`:
//!    `2^(j/8)` is [`EXP_TABLE`]`[j]`, one in-register permute per vector (`vpermps`; the
//!    table is eight floats, one AVX2 register or half an AVX-512 one). The portable
//!    kernel reads the table once per lane (`wide` has no lane permute).
//! 3. **Polynomial**: `e^r = 1 + r q(r)` with `q = 1 + c2 r + c3 r^2` ([`EXP_Q`], a
//!    minimax fit on the short interval, 0.22 * 2^-23 relative). The result
//!    `T e^r = T + (T r) q` is one multiply and one fused multiply-add, so the table
//!    entry's own rounding and the last rounding dominate the error budget.
//! 4. **Exponent**: `e^x = 2^k (T e^r)`, applied exactly (AVX-512 `vscalefps`, which takes
//!    `floor(n)` itself). AVX2 and the portable kernel use one multiply by `2^k` built
//!    from `t`'s bits (one integer add and two shifts), valid for `k <= 127`, i.e.
//!    `x <= 88`, which covers every `z - max`; above that, two exponent-field multiplies
//!    with `k` saturated to `[-127, 129]`, so that `k = 128` does not overflow the bias.
//!    Lanes below the underflow threshold are zeroed in the same step (AVX-512: a
//!    zero-masked `vscalefps`), whatever the reduction computed for them.
//!
//! Per vector that is 11 instructions on AVX-512 (2 for the rounding, 2 for `r`, the
//! permute, 4 for the polynomial and the table entry, a compare and the scaling), against
//! 12 for the degree-6 polynomial over `|r| <= ln(2)/2` that the crate used before, and a
//! shorter dependent chain: the table read and `T r` run beside `q`.
//!
//! # Error bound and special values
//!
//! * For `x` in `[EXP_UNDERFLOW, 88.72]` the result is within **2 ulp** of `e^x` (relative
//!   error at most `2 * 2^-23`). `tests/exp.rs` checks this exhaustively over every f32 in
//!   `[-104, 0]` for every kernel variant, and samples the positive range. The worst
//!   error it finds there is 1.17 ulp with FMA and 1.18 ulp for the portable kernel
//!   without.
//! * For `x < EXP_UNDERFLOW` (where `e^x` would be subnormal) and `x = -inf` the result is
//!   exactly `0.0`: no subnormal is produced, so no slow path is taken and `-inf` logits
//!   (masks) get exactly zero probability.
//! * NaN gives NaN; `x > ln(f32::MAX)` and `+inf` give `+inf`.
//!
//! Variants with FMA (AVX2, AVX-512, NEON, and the portable kernel on x86-64 when built
//! with FMA enabled) compute bit-identical results, equal to [`exp_model`]. The portable
//! kernel on x86-64 without FMA rounds each multiply-add twice; its results can differ
//! from the model by an ulp and stay within the same bound (the exhaustive test checks
//! each variant against `f64::exp`).

//!
//! # tanh (soft-capping)
//!
//! [`CrossEntropy::softcap`](crate::CrossEntropy::softcap) computes `cap tanh(z / cap)`.
//! With `x = z / cap` (as `z * (1 / cap)`) and `a = |x|`:
//!
//! * for `a < TANH_SMALL_MAX` (0.625): `tanh a = a + (a a^2) P(a^2)`, with `P` the
//!   degree-4 polynomial [`TANH_P`] fitted to `(tanh a / a - 1) / a^2` on `a^2` in
//!   `[0, 0.390625]` (Chebyshev, 30 digits, rounded to f32; within 1.6e-8 relative of
//!   `tanh`). The correction term is at most 0.13 of `a`, so its roundings shrink by that
//!   much, and the result is accurate in relative terms for every `a`, subnormals
//!   included: a cap far above every logit gives the logits back;
//! * above, `tanh a = 1 - 2e / (1 + e)` with `e = exp(-2a)` (the exp above), where
//!   `tanh a >= 0.55` keeps the cancellation of `1 - q` small;
//! * the sign is put back last, so the function is exactly odd (`tanh(-0) = -0`);
//!   `+-inf` give `+-1`, NaN gives NaN.
//!
//! The kernels take the second branch only for vectors with a lane at or above 0.625 (or
//! NaN): a vector of small lanes skips its exp and division, with the same bits. Capped
//! logits mostly lie there (for a cap of 30, every `|z| < 18.75`). For such a vector,
//! soft-capping also skips `|x|` and the sign: the polynomial on the signed `x` gives the
//! same bits for every `x` but `-0`, which becomes `+0`, a difference no loss or gradient
//! can show (they see the capped logit only in differences and squares). The capped
//! values that are reported (`ShardStats::max`, `ShardStats::target_logit`) keep the
//! exactly odd tanh: a `-0` logit gives `-0` there.
//!
//! The gradient of a capped logit carries the chain factor `1 - tanh^2 x`, formed from
//! the same `t = tanh x` as `1 - t t` (one fused multiply-add: within `5u` absolute,
//! exactly 0 at saturation). The fused pass 2 stores the exp times it, so pass 3 needs
//! no transcendental. Only the fused path with label smoothing, whose pass 2 keeps the
//! capped logit `y` instead, takes the factor from `y` as `1 - (y / cap)^2` (`13u`).
//!
//! **Bound:** within [`TANH_MAX_ULP`] ulp of `tanh x` for every f32 `x`. `tests/exp.rs`
//! checks it exhaustively over every non-negative f32 below 9.1 (above, every result is
//! exactly 1) for every kernel variant, and [`tanh_model`] bit for bit on FMA variants.
//! The worst error it finds is 1.69 ulp (AVX2 and the portable kernel, on a Zen 3).
//! The capped logit `cap tanh(z / cap)` then carries at most `TANH_MAX_ULP + 1.5` ulp
//! relative: the product `z (1 / cap)` one ulp, which `tanh` (relative condition number at
//! most 1) passes on, and the last product half of one.
//!
//! Caps must lie in `[SOFTCAP_MIN, SOFTCAP_MAX]` = `[2^-126, 2^126]`, where `cap` and
//! `1 / cap` are both normal floats ([`Error::Softcap`](crate::Error::Softcap) otherwise):
//! a subnormal cap has no finite reciprocal, and a cap above `2^126` a subnormal one,
//! which would cost `z / cap` its precision.

pub use crate::arch::math::{
    EXP_CLAMP_HI, EXP_MAX_ULP, EXP_Q, EXP_TABLE, EXP_UNDERFLOW, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC,
    TANH_MAX_ULP, TANH_P, TANH_SMALL_MAX,
};

/// The smallest cap [`CrossEntropy::softcap`](crate::CrossEntropy::softcap) accepts,
/// `2^-126` (`f32::MIN_POSITIVE`): below it `1 / cap` overflows.
pub const SOFTCAP_MIN: f32 = f32::MIN_POSITIVE;

/// The largest cap [`CrossEntropy::softcap`](crate::CrossEntropy::softcap) accepts,
/// `2^126`: above it `1 / cap` is subnormal and `z / cap` would lose precision.
pub const SOFTCAP_MAX: f32 = 8.507_059e37;

/// Scalar model of the vector tanh, operation for operation (with fused multiply-adds):
/// FMA variants give the same bits.
///
/// ```
/// use xent::exp::tanh_model;
/// assert_eq!(tanh_model(0.0), 0.0);
/// assert_eq!(tanh_model(-0.0).to_bits(), (-0.0f32).to_bits()); // exactly odd
/// assert_eq!(tanh_model(1e-30), 1e-30); // relative accuracy near 0
/// assert_eq!(tanh_model(f32::INFINITY), 1.0);
/// assert_eq!(tanh_model(-20.0), -1.0);
/// assert!(tanh_model(f32::NAN).is_nan());
/// assert!((tanh_model(0.5) - 0.5f32.tanh()).abs() <= 2.0 * f32::EPSILON);
/// ```
pub fn tanh_model(x: f32) -> f32 {
    let ax = x.abs();
    let e = exp_model(ax * -2.0);
    let big = 1.0 - (e + e) / (1.0 + e);
    let z = ax * ax;
    let mut p = TANH_P[0];
    for &c in &TANH_P[1..] {
        p = p.mul_add(z, c);
    }
    let small = (ax * z).mul_add(p, ax);
    let t = if ax < TANH_SMALL_MAX { small } else { big };
    // The sign of `x` back on, on bits (so `-0` gives `-0`), as the kernels do.
    f32::from_bits(t.to_bits() ^ (x.to_bits() & 0x8000_0000))
}

/// The kernels' tanh applied in place to every element of `xs` by the chosen variant (for
/// the exhaustive accuracy test, and for users who want the same function).
///
/// # Errors
/// [`crate::Error::KernelUnavailable`] if `kernel` cannot run on this CPU.
///
/// ```
/// let mut xs = [0.0f32, 1e-20, -0.25, 3.0, f32::NEG_INFINITY];
/// xent::exp::tanh_slice(xent::Kernel::Auto, &mut xs)?;
/// assert_eq!(&xs[..2], &[0.0, 1e-20]);
/// assert!((xs[2] - (-0.25f32).tanh()).abs() <= 3.0 * f32::EPSILON * 0.25);
/// assert_eq!(xs[4], -1.0);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn tanh_slice(kernel: crate::Kernel, xs: &mut [f32]) -> Result<(), crate::Error> {
    let b = crate::kernel::backend(kernel)?;
    crate::kernel::with_backend!(b, k => k.tanh(xs));
    Ok(())
}

/// Scalar model of the vector exp, operation for operation (with fused multiply-adds).
/// Slow without a hardware FMA (`f32::mul_add` may call libm); for tests and docs. Same
/// special values as the kernels: 0 below [`EXP_UNDERFLOW`] and for -inf, NaN for NaN,
/// +inf past `ln(f32::MAX)`.
///
/// ```
/// use xent::exp::exp_model;
/// assert_eq!(exp_model(0.0), 1.0);
/// assert_eq!(exp_model(-90.0), 0.0); // e^-90 would be subnormal
/// assert_eq!(exp_model(f32::INFINITY), f32::INFINITY);
/// assert!(exp_model(f32::NAN).is_nan());
/// ```
pub fn exp_model(x: f32) -> f32 {
    if x < EXP_UNDERFLOW {
        return 0.0;
    }
    let xc = if x > EXP_CLAMP_HI { EXP_CLAMP_HI } else { x };
    let t = xc.mul_add(LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    let table = EXP_TABLE[(t.to_bits() & 7) as usize];
    let q = EXP_Q[1].mul_add(r, EXP_Q[0]).mul_add(r, 1.0);
    let y = (table * r).mul_add(q, table);
    if n.is_nan() {
        return f32::NAN;
    }
    let k = n.floor() as i32;
    let k1 = k >> 1;
    y * pow2(k1) * pow2(k - k1)
}

/// `2^k` for `k` in `[-126, 127]`, built from the exponent field.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// The kernels' exp applied in place to every element of `xs` by the chosen variant, for
/// users who want the same function (and for the exhaustive accuracy test).
///
/// # Errors
/// [`crate::Error::KernelUnavailable`] if `kernel` cannot run on this CPU.
///
/// ```
/// let mut xs = [0.0f32, -1.0, f32::NEG_INFINITY, -100.0, f32::NAN];
/// xent::exp::exp_slice(xent::Kernel::Auto, &mut xs)?;
/// assert_eq!(xs[0], 1.0);
/// assert!((xs[1] - (-1.0f32).exp()).abs() <= 2.0 * f32::EPSILON * xs[1]);
/// assert_eq!(&xs[2..4], &[0.0, 0.0]);
/// assert!(xs[4].is_nan());
/// # Ok::<(), xent::Error>(())
/// ```
pub fn exp_slice(kernel: crate::Kernel, xs: &mut [f32]) -> Result<(), crate::Error> {
    let b = crate::kernel::backend(kernel)?;
    crate::kernel::with_backend!(b, k => k.exp(xs));
    Ok(())
}
