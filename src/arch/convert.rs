//! Half-precision storage formats and their conversion to and from f32.
//!
//! Logits in bf16 or f16 are widened to f32 one L1 block of a row at a time (long plain
//! rows, `fused::ce_rows_half`) or one L2-sized tile at a time (every other row), and the
//! gradient is narrowed back with round-to-nearest-even, block by block or per tile.
//! The x86 kernels use the CPU's conversion instructions (AVX-512F `vcvtph2ps` /
//! `vcvtps2ph`, AVX-512 BF16 `vcvtneps2bf16` when present, F16C on AVX2 machines) and
//! integer shifts for the bf16 widening; the portable kernel and every tail use the `half`
//! crate's exact software conversions.

/// The 16-bit storage format of a half-precision logit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfFormat {
    /// bfloat16: the top half of an f32 (8 exponent bits, 7 mantissa bits).
    Bf16,
    /// IEEE binary16 (5 exponent bits, 10 mantissa bits).
    F16,
}

/// Exact widening of one value (software).
#[inline]
pub(crate) fn widen_one(f: HalfFormat, bits: u16) -> f32 {
    match f {
        HalfFormat::Bf16 => f32::from_bits(u32::from(bits) << 16),
        HalfFormat::F16 => half::f16::from_bits(bits).to_f32(),
    }
}

/// Round-to-nearest-even narrowing of one value (software); NaN stays a (quiet) NaN.
#[inline]
pub(crate) fn narrow_one(f: HalfFormat, x: f32) -> u16 {
    match f {
        HalfFormat::Bf16 => half::bf16::from_f32(x).to_bits(),
        HalfFormat::F16 => half::f16::from_f32(x).to_bits(),
    }
}

/// Storage types whose values are exactly one `u16` (`#[repr(transparent)]`), so a slice
/// of them may be viewed as a slice of `u16`. Implemented only inside this crate.
///
/// # Safety
/// Implementors are `#[repr(transparent)]` wrappers of `u16` with no invalid bit patterns.
pub unsafe trait Bits16: Copy {}

// SAFETY: `half::bf16` and `half::f16` are `#[repr(transparent)] struct(u16)` and every
// bit pattern is a valid value.
unsafe impl Bits16 for half::bf16 {}
// SAFETY: as above.
unsafe impl Bits16 for half::f16 {}

/// The raw bits of a slice of 16-bit floats.
pub(crate) fn bits<H: Bits16>(s: &[H]) -> &[u16] {
    // SAFETY: bounds: same length, and `H` has the size and alignment of `u16`
    // (`Bits16` contract: repr(transparent) over u16), so the view covers the same bytes
    // for the same lifetime.
    unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u16>(), s.len()) }
}

/// The raw bits of a mutable slice of 16-bit floats.
pub(crate) fn bits_mut<H: Bits16>(s: &mut [H]) -> &mut [u16] {
    // SAFETY: as `bits`; the exclusive borrow moves to the view, and every `u16` written
    // through it is a valid `H` (no invalid bit patterns).
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u16>(), s.len()) }
}

impl super::portable::Portable {
    /// Widens `src` into `dst` (same length).
    pub(crate) fn widen(self, f: HalfFormat, src: &[u16], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = widen_one(f, s);
        }
    }

    /// Narrows `scale * src` into `dst` (same length), rounding to nearest even.
    pub(crate) fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = narrow_one(f, scale * s);
        }
    }
}
