//! The AVX2+FMA kernel (with F16C): 8 lanes; tails load with `vmaskmovps` and store in
//! pieces of 4, 2 and 1 lanes (AMD's masked stores are slow).

use crate::arch::Simd;
use crate::arch::convert::HalfFormat;
use crate::arch::math::EXP_TABLE;
use core::arch::x86_64::*;

/// Proof that the CPU supports AVX2, FMA and F16C (all are used: FMA for every
/// multiply-add of the exp and the gradient, AVX2 for the 256-bit integer exponent
/// arithmetic, F16C to widen f16 logits in registers). These are three of x86-64-v3's
/// features; no CPU with AVX2 is known to lack the other two.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if this CPU has AVX2, FMA and F16C.
    #[inline]
    pub(crate) fn try_new() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some(Avx2(()))
    }
}

/// Transposes an 8x8 block held as 8 row vectors: 32-bit interleaves, then 64-bit
/// shuffles within 128-bit lanes, then 128-bit lane swaps (24 shuffles).
///
/// # Safety
/// The CPU supports AVX.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn transpose8(r: &mut [__m256; 8]) {
    // SAFETY: feature: the caller's obligation. Registers only.
    unsafe {
        let mut t = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            // Lane L of t[2i]: rows 2i, 2i+1 of columns 4L, 4L+1; of t[2i+1]: 4L+2, 4L+3.
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for h in 0..2 {
            // Lane L of u[4h + k]: rows 4h..4h+3 of column 4L + k.
            let (a, b, c, d) = (t[4 * h], t[4 * h + 2], t[4 * h + 1], t[4 * h + 3]);
            r[4 * h] = _mm256_shuffle_ps::<0x44>(a, b);
            r[4 * h + 1] = _mm256_shuffle_ps::<0xee>(a, b);
            r[4 * h + 2] = _mm256_shuffle_ps::<0x44>(c, d);
            r[4 * h + 3] = _mm256_shuffle_ps::<0xee>(c, d);
        }
        for k in 0..4 {
            t[k] = _mm256_permute2f128_ps::<0x20>(r[k], r[4 + k]);
            t[4 + k] = _mm256_permute2f128_ps::<0x31>(r[k], r[4 + k]);
        }
        *r = t;
    }
}

/// Lane masks for tail loads: the 8 entries from `8 - n` set lanes `0..n` (all bits, as
/// `vmaskmovps` reads each lane's sign bit). 64-byte aligned, so the table is one line.
#[repr(align(64))]
struct Aligned([i32; 16]);
static TAIL_MASK: Aligned = Aligned([-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0]);

// SAFETY: a value of `Avx2` exists only after `try_new` detected avx2, fma and f16c,
// which are all the features the methods below use; pointer bounds are each method's
// obligations.
unsafe impl Simd for Avx2 {
    type F = __m256;
    type M = __m256;
    type Wide = [__m256d; 2];
    const LANES: usize = 8;

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: feature: the `Avx2` token proves avx2 (AVX is implied) was detected.
        unsafe { _mm256_set1_ps(x) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` readable (caller's
        // obligation); `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> __m256 {
        // SAFETY: feature: token proves avx2. bounds: the mask is the 8 entries of
        // `TAIL_MASK` from `8 - n`, inside its 16 (`n <= 8` by the `min`): its lanes
        // `0..n` are set, so `vmaskmovps` reads `p[..n]` (readable, the caller's obligation)
        // and does not access the masked-off lanes (no fault even across a page end).
        unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.0.as_ptr().add(8 - n.min(8)).cast());
            let x = _mm256_maskload_ps(p, m);
            // Masked-off lanes read as +0.0 already; other fills take one blend.
            if fill.to_bits() == 0 {
                x
            } else {
                _mm256_blendv_ps(_mm256_set1_ps(fill), x, _mm256_castsi256_ps(m))
            }
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn tail_of(self, v: __m256, n: usize, fill: f32) -> __m256 {
        // SAFETY: feature: token proves avx2 (`vpermps` on 256 bits, `vblendvps`). The
        // keep mask is the 8 entries of `TAIL_MASK` from `8 - n`, inside its 16 (`n <= 8`
        // by the `min`): lanes `0..n`. Lane `j` takes lane `j + 8 - n` (`vpermps` reads
        // the index's low three bits); lanes `n..8`, whose index wrapped, take `fill`.
        unsafe {
            let n = n.min(8);
            let iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
            let from = _mm256_add_epi32(iota, _mm256_set1_epi32((8 - n) as i32));
            let moved = _mm256_permutevar8x32_ps(v, from);
            let keep = _mm256_loadu_si256(TAIL_MASK.0.as_ptr().add(8 - n).cast());
            _mm256_blendv_ps(_mm256_set1_ps(fill), moved, _mm256_castsi256_ps(keep))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` writable (caller's
        // obligation).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_stream(self, p: *mut f32, v: __m256) {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` writable and `p`
        // 32-byte aligned, as the instruction requires (caller's obligation).
        unsafe { _mm256_stream_ps(p, v) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn store_fence(self) {
        // SAFETY: feature: SSE is part of the x86-64 baseline; a fence touches no memory.
        unsafe { _mm_sfence() }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: __m256) {
        // SAFETY: feature: token proves avx2 (SSE2 is in the x86-64 baseline). bounds:
        // the stores cover `p[..n]` exactly: 4 lanes if bit 2 of `n` is set, then 2 if bit
        // 1 is, then 1 if bit 0 is, each after the last, so `4 + 2 + 1 = 7` at most for
        // `n < 8`, and a whole vector for `n >= 8`; `p[..n]` is writable (the caller's
        // obligation).
        unsafe {
            if n >= 8 {
                return _mm256_storeu_ps(p, v);
            }
            let (mut q, mut x) = (p, _mm256_castps256_ps128(v));
            if n & 4 != 0 {
                _mm_storeu_ps(q, x);
                x = _mm256_extractf128_ps::<1>(v);
                q = q.add(4);
            }
            if n & 2 != 0 {
                _mm_storel_epi64(q.cast(), _mm_castps_si128(x));
                x = _mm_movehl_ps(x, x);
                q = q.add(2);
            }
            if n & 1 != 0 {
                _mm_store_ss(q, x);
            }
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn prefetch(self, p: *const f32) {
        // SAFETY: feature: SSE is part of the x86-64 baseline. bounds: a prefetch is a hint
        // that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>()) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: feature: token proves fma.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn neg_mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: feature: token proves fma.
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_unless_below(self, p: __m256, n: __m256, x: __m256, lo: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2 (256-bit integer shifts and adds).
        unsafe {
            // Saturate floor(n) to [-127, 129] (`max`/`min` return their second operand
            // for a NaN first operand: a NaN n only occurs with a NaN p, which stays NaN),
            // then split it in two halves so both exponent fields stay in the biased range.
            let n = _mm256_min_ps(
                _mm256_max_ps(_mm256_floor_ps(n), _mm256_set1_ps(-127.0)),
                _mm256_set1_ps(129.0),
            );
            let n = _mm256_cvtps_epi32(n);
            let n1 = _mm256_srai_epi32::<1>(n);
            let n2 = _mm256_sub_epi32(n, n1);
            let bias = _mm256_set1_epi32(127);
            let f1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
            let f2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
            let zero = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
            _mm256_andnot_ps(zero, _mm256_mul_ps(_mm256_mul_ps(p, f1), f2))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small_unless_below(
        self,
        p: __m256,
        _n: __m256,
        t: __m256,
        x: __m256,
        lo: __m256,
    ) -> __m256 {
        // SAFETY: feature: token proves avx2 (256-bit integer adds and shifts).
        unsafe {
            // `t`'s bits are those of `ROUND_MAGIC` plus `8n`, and the magic's low 22 bits
            // are 0. Adding `8 * 127` and shifting right by 3 leaves `floor(n) + 127` in
            // the low 9 bits (the magic's bits land at bit 19 and up, which the left
            // shift by 23 drops), so the result is the exponent field of `2^floor(n)`
            // for floor(n) in [-126, 127]. Lanes with floor(n) <= -127 have x < lo and are
            // cleared; a NaN x has a NaN p, and the product stays NaN.
            let bits = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(8 * 127));
            let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_srli_epi32::<3>(bits)));
            let zero = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
            _mm256_andnot_ps(zero, _mm256_mul_ps(p, pow2))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small(self, p: __m256, _n: __m256, t: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2 (256-bit integer adds and shifts). The
        // exponent field as in `scale_pow2_small_unless_below`, with no lane to clear.
        unsafe {
            let bits = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(8 * 127));
            let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_srli_epi32::<3>(bits)));
            _mm256_mul_ps(p, pow2)
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn exp2_eighths(self, t: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2. bounds: reads the 8 floats of a constant.
        // `vpermps` indexes with each lane's low three bits.
        unsafe {
            let table = _mm256_loadu_ps(EXP_TABLE.as_ptr());
            _mm256_permutevar8x32_ps(table, _mm256_castps_si256(t))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn lt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn gt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2. `blendv` takes the second operand where the
        // mask is set.
        unsafe { _mm256_blendv_ps(b, a, m) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn to_array(self, a: __m256) -> [f32; 16] {
        let mut out = [0.0f32; 16];
        // SAFETY: feature: token proves avx2. bounds: writes 8 of the 16 local slots.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        out
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn eq(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2. `vmaxps` returns its second operand when
        // either is NaN.
        unsafe { _mm256_max_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn abs(self, a: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2 (`vandnps` is AVX).
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn xor_sign(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2 (`vandps`, `vxorps` are AVX).
        unsafe { _mm256_xor_ps(a, _mm256_and_ps(b, _mm256_set1_ps(-0.0))) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn all(self, m: __m256) -> bool {
        // SAFETY: feature: token proves avx2 (`vmovmskps` is AVX).
        unsafe { _mm256_movemask_ps(m) == 0xff }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn first_lane(self, m: __m256) -> Option<usize> {
        // SAFETY: feature: token proves avx2 (`vmovmskps` is AVX).
        let bits = unsafe { _mm256_movemask_ps(m) };
        (bits != 0).then(|| bits.trailing_zeros() as usize)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_add(self, v: __m256) -> f32 {
        // SAFETY: feature: token proves avx2 (which implies the SSE used). Lanes `i + 4`,
        // then `i + 2`, `i + 1` are added onto lane `i`, the trait's order.
        unsafe {
            let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_max(self, v: __m256) -> f32 {
        // SAFETY: feature: token proves avx2. The same halving steps as `reduce_add`.
        unsafe {
            let q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let d = _mm_max_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_max_ss(d, _mm_movehdup_ps(d)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: feature: token proves avx2.
        unsafe { _mm256_div_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn split_exponent(self, x: __m256) -> (__m256, __m256) {
        // SAFETY: feature: token proves avx2 (256-bit integer ops).
        unsafe {
            // Exponent field minus the bias; mantissa with the exponent field of 1.0.
            let bits = _mm256_castps_si256(x);
            let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127));
            let mbits = _mm256_or_si256(
                _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x3f80_0000),
            );
            // A NaN keeps a NaN mantissa: its fraction bits are non-zero.
            let m = _mm256_castsi256_ps(mbits);
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
            (_mm256_cvtepi32_ps(e), _mm256_blendv_ps(m, x, nan))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_bf16(self, p: *const u16) -> __m256 {
        // SAFETY: feature: token proves avx2. bounds: `p..p + 8` readable (caller's
        // obligation), 16 bytes; `loadu` has no alignment requirement.
        unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_f16(self, p: *const u16) -> __m256 {
        // SAFETY: feature: token proves f16c. bounds: `p..p + 8` readable (caller's
        // obligation), 16 bytes, unaligned load.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        Avx2::narrow(self, f, src, scale, dst)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_zero(self) -> [__m256d; 2] {
        // SAFETY: feature: token proves avx2.
        unsafe { [_mm256_setzero_pd(); 2] }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_add(self, acc: [__m256d; 2], v: __m256) -> [__m256d; 2] {
        // SAFETY: feature: token proves avx2 (`cvtps_pd` is AVX).
        unsafe {
            [
                _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
                _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v))),
            ]
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_sum(self, acc: [__m256d; 2]) -> f64 {
        let mut lanes = [0f64; 8];
        // SAFETY: feature: token proves avx2. bounds: two stores of 4 into 8 slots.
        unsafe {
            _mm256_storeu_pd(lanes.as_mut_ptr(), acc[0]);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc[1]);
        }
        lanes.iter().sum()
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_block(self, p: *const f32, c: usize, h: usize) -> [__m256; 16] {
        // Rows are read as vectors of 8 and transposed in registers. A row's vector may
        // run into the next rows, which is harmless inside the group; one that would run
        // past the group's `8 c` floats is a tail load of the row's own classes instead.
        let n = (c - 8 * h).min(8);
        let mut block = [self.splat(0.0); 8];
        for (r, row) in block.iter_mut().enumerate() {
            let at = r * c + 8 * h;
            // SAFETY: bounds: a full load reads `p[at..at + 8]`, inside `p..p + 8 c` when
            // `at + 8 <= 8 c`; a tail load reads `p[at..at + n]`, the row's own classes
            // (`n < 8` then, as `at + n <= 8 c`). The caller guarantees `8 c`.
            *row = unsafe {
                if at + 8 <= 8 * c {
                    self.load(p.add(at))
                } else {
                    self.load_tail(p.add(at), n, 0.0)
                }
            };
        }
        // SAFETY: feature: the token proves avx2 (AVX implied).
        unsafe { transpose8(&mut block) };
        let mut cols = [self.splat(0.0); 16];
        cols[..8].copy_from_slice(&block);
        cols
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_block(self, p: *mut f32, c: usize, h: usize, v: &[__m256; 16]) {
        let n = (c - 8 * h).min(8);
        let mut rows = [self.splat(0.0); 8];
        rows.copy_from_slice(&v[..8]);
        // SAFETY: feature: the token proves avx2 (AVX implied).
        unsafe { transpose8(&mut rows) };
        for (r, &row) in rows.iter().enumerate() {
            let at = r * c + 8 * h;
            // SAFETY: bounds: a full store when the block has 8 classes (`p[at..at + 8]`,
            // that row's classes), else a tail store of exactly the row's `n`; inside
            // `p..p + 8 c`, writable by the caller's obligation.
            unsafe {
                if n == 8 {
                    self.store(p.add(at), row);
                } else {
                    self.store_tail(p.add(at), n, row);
                }
            }
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_columns<const C: usize>(self, p: *const f32) -> [__m256; C] {
        let mut cols = [self.splat(0.0); C];
        for h in 0..C.div_ceil(8) {
            // SAFETY: bounds: the group's `8 C` floats are readable (caller's obligation).
            let rows = unsafe { self.load_block(p, C, h) };
            let n = C.min(8 * h + 8) - 8 * h;
            cols[8 * h..8 * h + n].copy_from_slice(&rows[..n]);
        }
        cols
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_columns<const C: usize>(self, p: *mut f32, v: &[__m256; C]) {
        let mut rows = [[self.splat(0.0); 8]; crate::paths::FIXED_MAX_CLASSES / 8];
        for (h, block) in rows.iter_mut().enumerate().take(C.div_ceil(8)) {
            let n = C.min(8 * h + 8) - 8 * h;
            block[..n].copy_from_slice(&v[8 * h..8 * h + n]);
            // SAFETY: feature: the token proves avx2 (AVX implied).
            unsafe { transpose8(block) };
        }
        // Rows in order, each half in order: a full store's excess lanes land on later
        // classes of the group, which their own (later) stores then overwrite; a store
        // that would pass the group's end is a tail store of the row's own classes.
        for r in 0..8 {
            for (h, block) in rows.iter().enumerate().take(C.div_ceil(8)) {
                let (at, n) = (r * C + 8 * h, C.min(8 * h + 8) - 8 * h);
                // SAFETY: bounds: as in `load_block`, every store stays inside
                // `p..p + 8 C`, writable by the caller's obligation.
                unsafe {
                    if at + 8 <= 8 * C {
                        self.store(p.add(at), block[r]);
                    } else {
                        self.store_tail(p.add(at), n, block[r]);
                    }
                }
            }
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn gather(self, p: *const f32, stride: usize) -> __m256 {
        let s = stride as i32;
        // SAFETY: feature: token proves avx2. bounds: lane `k` reads `p + k * stride`,
        // readable by the caller's obligation; the indices fit i32 (also an obligation).
        unsafe {
            let idx = _mm256_mullo_epi32(
                _mm256_set1_epi32(s),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            _mm256_i32gather_ps::<4>(p, idx)
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn scatter(self, p: *mut f32, stride: usize, v: __m256) {
        let a = self.to_array(v);
        for (k, &x) in a[..8].iter().enumerate() {
            // SAFETY: feature: none needed. bounds: `p + k * stride` writable for k < 8
            // (caller's obligation).
            unsafe { *p.add(k * stride) = x };
        }
    }
}

crate::arch::instantiate_kernel!(Avx2, #[target_feature(enable = "avx2,fma,f16c")]);
