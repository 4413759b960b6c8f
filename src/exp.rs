//! The fast exp used by every kernel, and a scalar model of it.
//!
//! # Algorithm
//!
//! For `x` in the kernels' domain (`z - max <= 0`, or NaN):
//!
//! 1. **Range reduction** (Cody-Waite): `n = round(x / ln 2)`, `r = x - n ln 2` with
//!    `|r| <= ln(2)/2 + tiny`. `ln 2` is split into [`LN2_HI`] (9 significant bits, so
//!    `n * LN2_HI` is exact for `|n| <= 2^15`) and [`LN2_LO`], each subtracted with one
//!    fused multiply-add. Rounding uses the `1.5 * 2^23` trick ([`ROUND_MAGIC`]): adding it
//!    leaves no fraction bits, so the addition itself rounds to nearest-even.
//! 2. **Polynomial**: `e^r` by a degree-6 near-minimax polynomial ([`EXP_C`]) in Horner
//!    form. Its own error is 2.0e-8 relative on the reduced range (0.17 * 2^-23); the rest
//!    of the error budget is rounding in the Horner steps and the reduction. (Degree 5
//!    would save one more multiply-add but its error alone reaches 1.3 * 2^-23.)
//! 3. **Exponent**: `e^x = 2^n e^r`, applied exactly (AVX-512 `vscalefps`). AVX2 uses one
//!    multiply by `2^n` built from the rounding's own bits (the sum with [`ROUND_MAGIC`]
//!    holds `n` in its low mantissa bits: one integer add and one shift), valid for
//!    `n <= 127`, i.e. `x <= 88`, which covers every `z - max`; above that, and always in
//!    the portable kernel, two exponent-field multiplies with `n` saturated to `[-127, 129]`, so that `n = 128`
//!    does not overflow the bias. Lanes below the underflow threshold are zeroed in the
//!    same step (AVX-512: a zero-masked `vscalefps`), whatever the reduction computed
//!    for them.
//!
//! # Error bound and special values
//!
//! * For `x` in `[EXP_UNDERFLOW, 88.72]` the result is within **2 ulp** of `e^x` (relative
//!   error at most `2 * 2^-23`). `tests/exp.rs` checks this exhaustively over every f32 in
//!   `[-104, 0]` for every kernel variant, and samples the positive range.
//! * For `x < EXP_UNDERFLOW` (where `e^x` would be subnormal) and `x = -inf` the result is
//!   exactly `0.0`: no subnormal is produced, so no slow path is taken and `-inf` logits
//!   (masks) get exactly zero probability.
//! * NaN gives NaN; `x > ln(f32::MAX)` and `+inf` give `+inf`.
//!
//! Variants with FMA (AVX2, AVX-512, and the portable kernel when built with FMA enabled)
//! compute bit-identical results, equal to [`exp_model`]. The portable kernel without FMA
//! rounds each multiply-add twice; its results can differ from the model by an ulp and stay
//! within the same bound (the exhaustive test checks each variant against `f64::exp`).

/// `1 / ln 2`.
pub const LOG2E: f32 = core::f32::consts::LOG2_E;
/// High part of `ln 2`: `0.693359375 = 355 / 512`, exact in 9 bits.
pub const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`, rounded to f32.
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it to a float of magnitude below `2^22` rounds it to an integer.
pub const ROUND_MAGIC: f32 = 12_582_912.0;
/// Inputs above this are clamped to it (the result is +inf either way), so the reduction
/// never sees an infinite `n`. The kernels' own inputs are never positive and skip it.
pub const EXP_CLAMP_HI: f32 = 89.0;
/// The smallest f32 `x` with `e^x >= f32::MIN_POSITIVE` (`-87.33654022216797`); below it
/// the result is exactly 0.
pub const EXP_UNDERFLOW: f32 = -87.336_54;
/// Coefficients of `e^r ~ sum_k EXP_C[k] r^k` on `[-ln(2)/2, ln(2)/2]`, `k = 0..=6`: a
/// near-minimax Chebyshev fit of degree 6 (`mpmath.chebyfit(mp.exp, [-a, a], 7)` with
/// `a = ln(2)/2 * 1.0001`, 40 digits), each rounded to f32. The fit's error is 1.95e-9; with
/// the rounded coefficients the polynomial is within 2.0e-8 (0.17 * 2^-23) relative of
/// `e^r` on the interval. The three leading coefficients come out exactly 1, 1 and 1/2.
pub const EXP_C: [f32; 7] = [
    1.0,
    1.0,
    0.5,
    0.166_664_15,
    0.041_666_35,
    0.008_375_134,
    0.001_394_111_9,
];

/// The maximum relative error of the kernels' exp over `[EXP_UNDERFLOW, 88.72]`, in ulp.
pub const EXP_MAX_ULP: f32 = 2.0;

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
    let n = xc.mul_add(LOG2E, ROUND_MAGIC) - ROUND_MAGIC;
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = EXP_C[6];
    for k in (0..6).rev() {
        p = p.mul_add(r, EXP_C[k]);
    }
    if n.is_nan() {
        return f32::NAN;
    }
    let n = n as i32;
    let n1 = n >> 1;
    p * pow2(n1) * pow2(n - n1)
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
