//! Half-precision conversions with the x86 conversion instructions; the tails (fewer than
//! a vector) use the exact software conversions of `arch::convert`.

use super::{Avx2, Avx512};
use crate::arch::convert::{HalfFormat, narrow_one, widen_one};
use core::arch::x86_64::*;

/// Rounds 8 (AVX2) or 16 (AVX-512) f32 bit patterns to bf16 the way `half::bf16::from_f32`
/// does: add `0x7fff` plus the lowest kept bit (round to nearest, ties to even), keep the
/// top 16 bits; a NaN keeps its top bits with the quiet bit set.
const BF16_ROUND: i32 = 0x7fff;
const BF16_QUIET: i32 = 0x40;

/// AVX-512F widening loop (16 lanes), software tail.
#[target_feature(enable = "avx512f")]
fn widen_avx512(f: HalfFormat, src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: bounds: `i + 16 <= n` elements of both slices; unaligned
        // loads/stores. feature: avx512f is enabled on this function.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            let v = match f {
                HalfFormat::Bf16 => {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                }
                HalfFormat::F16 => _mm512_cvtph_ps(h),
            };
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = widen_one(f, src[j]);
    }
}

/// AVX-512F narrowing loop of `scale * src` (16 lanes; bf16 by integer rounding),
/// software tail.
#[target_feature(enable = "avx512f")]
fn narrow_avx512(f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: bounds: `i + 16 <= n` elements of both slices; unaligned
        // loads/stores. feature: avx512f is enabled on this function.
        unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), _mm512_set1_ps(scale));
            let h = match f {
                HalfFormat::Bf16 => {
                    let x = _mm512_castps_si512(v);
                    let hi = _mm512_srli_epi32::<16>(x);
                    let lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
                    let bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(BF16_ROUND));
                    let r = _mm512_srli_epi32::<16>(_mm512_add_epi32(x, bias));
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    let q = _mm512_or_si512(hi, _mm512_set1_epi32(BF16_QUIET));
                    _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q))
                }
                HalfFormat::F16 => {
                    _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
                }
            };
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), h);
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = narrow_one(f, scale * src[j]);
    }
}

/// AVX-512 BF16 narrowing of `scale * src` with `vcvtne2ps2bf16` (32 values per
/// instruction; `vcvtneps2bf16` for a last lone vector), which rounds to nearest even as
/// the software conversion does but flushes subnormal inputs (below 1.2e-38) to zero. A
/// vector that holds one (`vfpclassps`, AVX-512 DQ, one per vector, the masks of four
/// vectors or'ed for one rarely taken branch) has those lanes converted again in software,
/// so that every variant gives the same bits.
///
/// Against one vector a step with a branch each, four a step took bf16
/// `forward_backward` on long rows from 0.168-0.198 to 0.159-0.167 ns per logit at
/// 4096x32000 and from 0.210-0.212 to 0.182-0.198 at 1024x128256 (one thread, a Zen 5,
/// alternating runs), and changed nothing on rows that stay in L2.
#[target_feature(enable = "avx512f,avx512dq,avx512bf16")]
fn narrow_avx512_bf16(src: &[f32], scale: f32, dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: bounds: `i + 64 <= n` elements of both slices; `__m512bh` and
        // `__m512i` are both 64 bytes of plain bits. feature: avx512f, avx512dq and
        // avx512bf16 are enabled on this function.
        let masks = unsafe {
            let (p, sv) = (src.as_ptr().add(i), _mm512_set1_ps(scale));
            let v0 = _mm512_mul_ps(_mm512_loadu_ps(p), sv);
            let v1 = _mm512_mul_ps(_mm512_loadu_ps(p.add(16)), sv);
            let v2 = _mm512_mul_ps(_mm512_loadu_ps(p.add(32)), sv);
            let v3 = _mm512_mul_ps(_mm512_loadu_ps(p.add(48)), sv);
            // The second operand gives the low 16 results.
            let a: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
            let b: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(v3, v2));
            _mm512_storeu_si512(dst.as_mut_ptr().add(i).cast(), a);
            _mm512_storeu_si512(dst.as_mut_ptr().add(i + 32).cast(), b);
            // Class 0x20: denormal.
            [
                _mm512_fpclass_ps_mask::<0x20>(v0),
                _mm512_fpclass_ps_mask::<0x20>(v1),
                _mm512_fpclass_ps_mask::<0x20>(v2),
                _mm512_fpclass_ps_mask::<0x20>(v3),
            ]
        };
        let any = _kor_mask16(
            _kor_mask16(masks[0], masks[1]),
            _kor_mask16(masks[2], masks[3]),
        );
        if any != 0 {
            for (k, &m) in masks.iter().enumerate() {
                let mut m = m;
                while m != 0 {
                    let l = i + 16 * k + m.trailing_zeros() as usize;
                    dst[l] = narrow_one(HalfFormat::Bf16, scale * src[l]);
                    m &= m - 1;
                }
            }
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: bounds: `i + 16 <= n` elements of both slices; `__m256bh` and
        // `__m256i` are both 32 bytes of plain bits. feature: avx512f, avx512dq and
        // avx512bf16 are enabled on this function.
        let subnormal = unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), _mm512_set1_ps(scale));
            let h: __m256i = core::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), h);
            // Class 0x20: denormal.
            _mm512_fpclass_ps_mask::<0x20>(v)
        };
        let mut m = subnormal;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            dst[i + l] = narrow_one(HalfFormat::Bf16, scale * src[i + l]);
            m &= m - 1;
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = narrow_one(HalfFormat::Bf16, scale * src[j]);
    }
}

impl Avx512 {
    /// Widens `src` into `dst` (`src.len() == dst.len()`).
    pub(crate) fn widen(self, f: HalfFormat, src: &[u16], dst: &mut [f32]) {
        // SAFETY: feature: the `Avx512` token proves avx512f was detected.
        unsafe { widen_avx512(f, src, dst) }
    }

    /// Narrows `scale * src` into `dst` with round-to-nearest-even, the same bits as the
    /// software conversion (`narrow_one`) of the f32 product. With AVX-512 BF16 (and DQ,
    /// present wherever BF16 is) the bf16 case uses `vcvtneps2bf16`.
    pub(crate) fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        if f == HalfFormat::Bf16
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: feature: the token proves avx512f; avx512bf16 and avx512dq were
            // just detected.
            unsafe { narrow_avx512_bf16(src, scale, dst) }
        } else {
            // SAFETY: feature: the `Avx512` token proves avx512f was detected.
            unsafe { narrow_avx512(f, src, scale, dst) }
        }
    }
}

/// AVX2+F16C widening loop (8 lanes), software tail.
#[target_feature(enable = "avx2,f16c")]
fn widen_avx2(f: HalfFormat, src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: bounds: `i + 8 <= n` elements of both slices; unaligned
        // loads/stores. feature: avx2 and f16c are enabled on this function.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            let v = match f {
                HalfFormat::Bf16 => {
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                }
                HalfFormat::F16 => _mm256_cvtph_ps(h),
            };
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = widen_one(f, src[j]);
    }
}

/// AVX2+F16C narrowing loop of `scale * src` (8 lanes; bf16 by integer rounding),
/// software tail.
#[target_feature(enable = "avx2,f16c")]
fn narrow_avx2(f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: bounds: `i + 8 <= n` elements of both slices; unaligned
        // loads/stores. feature: avx2 and f16c are enabled on this function.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(src.as_ptr().add(i)), _mm256_set1_ps(scale));
            let h = match f {
                HalfFormat::Bf16 => {
                    let x = _mm256_castps_si256(v);
                    let hi = _mm256_srli_epi32::<16>(x);
                    let lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
                    let bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(BF16_ROUND));
                    let r = _mm256_srli_epi32::<16>(_mm256_add_epi32(x, bias));
                    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                    let q = _mm256_or_si256(hi, _mm256_set1_epi32(BF16_QUIET));
                    let r = _mm256_blendv_epi8(r, q, nan);
                    // Pack the 32-bit lanes (all <= 0xffff) to 16 bits; `packus`
                    // works per 128-bit half, so gather halves 0 and 2.
                    let p = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(r, r));
                    _mm256_castsi256_si128(p)
                }
                HalfFormat::F16 => _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            };
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = narrow_one(f, scale * src[j]);
    }
}

impl Avx2 {
    /// Widens `src` into `dst` (`src.len() == dst.len()`).
    pub(crate) fn widen(self, f: HalfFormat, src: &[u16], dst: &mut [f32]) {
        // SAFETY: feature: the `Avx2` token proves avx2 and f16c were detected.
        unsafe { widen_avx2(f, src, dst) }
    }

    /// Narrows `scale * src` into `dst` with round-to-nearest-even.
    pub(crate) fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        // SAFETY: feature: the `Avx2` token proves avx2 and f16c were detected.
        unsafe { narrow_avx2(f, src, scale, dst) }
    }
}

#[cfg(test)]
mod tests {
    //! Every vector conversion loop against the `half` crate's exact software
    //! conversions: all 65 536 16-bit patterns widened; narrowing (of the inputs times
    //! a few scales) over a stride through all f32 bit patterns plus the special values
    //! and rounding ties. Each loop is called directly, so the AVX-512 software bf16
    //! rounding is covered even on a CPU whose `narrow` would pick `vcvtneps2bf16`.

    use super::*;

    type Widen = unsafe fn(HalfFormat, &[u16], &mut [f32]);
    type Narrow = unsafe fn(HalfFormat, &[f32], f32, &mut [u16]);

    fn f32_samples() -> Vec<f32> {
        let mut v: Vec<f32> = (0..=u32::MAX / 4099)
            .map(|i| f32::from_bits(i * 4099))
            .collect();
        v.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
        ]);
        v.extend([
            f32::MAX,
            f32::MIN,
            65504.0,
            65520.0,
            1e-8,
            -6.0e-8,
            1.0 + 1.0 / 256.0,
        ]);
        // bf16 ties: exactly halfway between two bf16 values, odd and even below.
        v.extend((0..64u32).map(|k| f32::from_bits(0x3f80_8000 + (k << 16))));
        v
    }

    fn check(f: HalfFormat, widen: Widen, narrow: Narrow, what: &str) {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let mut out = vec![0f32; all.len()];
        // SAFETY: feature: the callers below run only after detecting the features.
        unsafe { widen(f, &all, &mut out) };
        for (&b, &x) in all.iter().zip(&out) {
            let want = widen_one(f, b);
            assert!(
                x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan()),
                "{what}: widen {b:#06x}"
            );
        }
        let xs = f32_samples();
        let mut h = vec![0u16; xs.len()];
        // 1 (the tiles), and scales as pass 3's coefficients are, one of which turns
        // normal inputs into subnormal products.
        for scale in [1.0, 0.3, 1.5e-7] {
            // SAFETY: as above.
            unsafe { narrow(f, &xs, scale, &mut h) };
            for (&x, &got) in xs.iter().zip(&h) {
                let want = narrow_one(f, scale * x);
                let nan = x.is_nan() && widen_one(f, got).is_nan();
                assert!(
                    got == want || nan,
                    "{what}: narrow {scale:e} * {x:e} -> {got:#06x}, want {want:#06x}"
                );
            }
        }
    }

    #[test]
    fn vector_conversions_match_software() {
        for f in [HalfFormat::Bf16, HalfFormat::F16] {
            if is_x86_feature_detected!("avx512f") {
                check(f, widen_avx512, narrow_avx512, "avx512");
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                check(f, widen_avx2, narrow_avx2, "avx2");
            }
        }
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bf16")
        {
            // SAFETY: feature: avx512f, avx512dq and avx512bf16 were detected just above.
            let bf16_only: Narrow = |_, s, k, d| unsafe { narrow_avx512_bf16(s, k, d) };
            check(HalfFormat::Bf16, widen_avx512, bf16_only, "avx512bf16");
        }
    }
}
