//! The AVX2+FMA kernel: 8 lanes, tails through a stack buffer.

use crate::arch::Simd;
use core::arch::x86_64::*;

/// Proof that the CPU supports AVX2 and FMA (both are used: FMA for every multiply-add of
/// the exp polynomial and the gradient, AVX2 for the 256-bit integer exponent arithmetic).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if this CPU has AVX2 and FMA.
    #[inline]
    pub(crate) fn try_new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

// SAFETY: a value of `Avx2` exists only after `try_new` detected avx2 and fma, which are
// all the features the methods below use; pointer bounds are each method's obligations.
unsafe impl Simd for Avx2 {
    type F = __m256;
    type M = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: feature: the `Avx2` token proves avx2 (AVX is implied) was detected.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` readable (caller's
        // obligation); `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> __m256 {
        let mut buf = [fill; 8];
        // SAFETY: feature: token proves avx2. bounds: copies `p[..n]`, `n < 8` (caller's
        // obligation), into a local buffer of 8, which the load then reads in full.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(8));
            _mm256_loadu_ps(buf.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` writable (caller's
        // obligation).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: __m256) {
        let mut buf = [0.0f32; 8];
        // SAFETY: feature: token proves avx2. bounds: stores 8 lanes into a local buffer,
        // then copies its first `n < 8` to `p[..n]` (caller's obligation).
        unsafe {
            _mm256_storeu_ps(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(8));
        }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: feature: SSE is part of the x86-64 baseline. bounds: a prefetch is a hint
        // that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>()) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: feature: token proves fma.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn scale_pow2(self, p: __m256, n: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2 (256-bit integer shifts and adds).
        unsafe {
            // `n` holds integers, so the conversion is exact (NaN becomes i32::MIN and the
            // product stays NaN since `p` is NaN too).
            let n = _mm256_cvtps_epi32(n);
            let n1 = _mm256_srai_epi32::<1>(n);
            let n2 = _mm256_sub_epi32(n, n1);
            let bias = _mm256_set1_epi32(127);
            let f1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
            let f2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
            _mm256_mul_ps(_mm256_mul_ps(p, f1), f2)
        }
    }
    #[inline(always)]
    fn lt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn gt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2. `blendv` takes the second operand where the
        // mask is set.
        unsafe { _mm256_blendv_ps(b, a, m) }
    }
    #[inline(always)]
    fn to_array(self, a: __m256) -> [f32; 16] {
        let mut out = [0.0f32; 16];
        // SAFETY: feature: token proves avx2. bounds: writes 8 of the 16 local slots.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        out
    }
}

crate::arch::instantiate_kernel!(Avx2, #[target_feature(enable = "avx2,fma")]);
