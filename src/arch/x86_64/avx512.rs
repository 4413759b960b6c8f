//! The AVX-512F kernel: 16 lanes, masked loads and stores for row tails, `vpermps` for
//! the exp's table and `vscalefps` for its exponent.

use crate::arch::Simd;
use crate::arch::convert::HalfFormat;
use crate::arch::math::EXP_TABLE;
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicU8, Ordering};

/// [`EXP_TABLE`] twice: one 16-lane permute table indexed by four bits.
static EXP_TABLE_TWICE: [f32; 16] = {
    let mut t = [0.0; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = EXP_TABLE[i % 8];
        i += 1;
    }
    t
};

/// Proof that the CPU supports AVX-512F, the only AVX-512 subset the kernel uses (512-bit
/// float arithmetic, FMA, compares into mask registers, masked loads/stores, `scalef`,
/// `vpermps`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, if this CPU has AVX-512F.
    #[inline]
    pub(crate) fn try_new() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }

    /// Whether this CPU is an AMD of family 0x1A (Zen 5) or later, whose 512-bit units
    /// run the exps fast enough that the linked rows of `forward_backward_into` wait on
    /// memory rather than on arithmetic (see
    /// [`stages_into`](crate::paths::stages_into)), and where rows of up to
    /// [`GROUP_LONG_MAX_CLASSES`](crate::paths::GROUP_LONG_MAX_CLASSES) classes measured
    /// faster grouped. Read once, then cached: `cpuid` is a trap to the hypervisor on a
    /// virtual machine.
    pub(crate) fn zen5_or_later(self) -> bool {
        static ZEN5: AtomicU8 = AtomicU8::new(u8::MAX);
        match ZEN5.load(Ordering::Relaxed) {
            u8::MAX => {
                // SAFETY: feature: `cpuid` exists on every x86-64 CPU. The intrinsic is
                // safe in recent Rust and unsafe in older ones (the crate builds from
                // 1.89), hence the block and the allowance.
                #[allow(unused_unsafe)]
                let (vendor, signature) = unsafe { (__cpuid(0), __cpuid(1).eax) };
                let amd =
                    (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
                // The family: the base field, plus the extended one when the base is 0xF.
                let base = (signature >> 8) & 0xf;
                let family = base
                    + if base == 0xf {
                        (signature >> 20) & 0xff
                    } else {
                        0
                    };
                let zen5 = amd && family >= 0x1a;
                ZEN5.store(u8::from(zen5), Ordering::Relaxed);
                zen5
            }
            v => v == 1,
        }
    }
}

/// Lane maps between 16 rows of `c < TRANSPOSE_FROM` contiguous classes (`c` vectors in memory
/// order, element `q = r c + j` being class `j` of row `r`) and `c` column vectors (lane
/// `r` of column `j` holding element `r c + j`). Each column gathers from at most `c`
/// memory vectors and each memory vector from at most `c` columns, so a group moves with
/// at most `c^2` in-register permutes each way instead of `16 c` scalar loads or stores.
struct ColumnMaps {
    /// Lane `r`: `r c`. Plus `j`, the element of column `j`'s lane `r`; its low four bits
    /// are the lane within its memory vector, and `vpermps` reads only those.
    row_start: [i32; 16],
    /// `from_memory[j][k]`: the lanes of column `j` that memory vector `k` holds.
    from_memory: [[u16; 16]; 16],
    /// `to_row[k]` lane `i`: the row (column lane) of element `16 k + i`.
    to_row: [[i32; 16]; 16],
    /// `from_column[k][j]`: the lanes of memory vector `k` that belong to column `j`.
    from_column: [[u16; 16]; 16],
}

/// The maps for `c` classes; empty from [`TRANSPOSE_FROM`] on, where they are not used
/// (and would not fit).
const fn column_maps(c: usize) -> ColumnMaps {
    let mut m = ColumnMaps {
        row_start: [0; 16],
        from_memory: [[0; 16]; 16],
        to_row: [[0; 16]; 16],
        from_column: [[0; 16]; 16],
    };
    if c >= TRANSPOSE_FROM {
        return m;
    }
    let mut r = 0;
    while r < 16 {
        m.row_start[r] = (r * c) as i32;
        let mut j = 0;
        while j < c {
            let q = r * c + j;
            m.from_memory[j][q / 16] |= 1 << r;
            m.to_row[q / 16][q % 16] = r as i32;
            m.from_column[q / 16][j] |= 1 << (q % 16);
            j += 1;
        }
        r += 1;
    }
    m
}

/// Transposes a 16x16 block held as 16 row vectors, in four rounds of 16 shuffles:
/// 32-bit and 64-bit interleaves within 128-bit lanes bring each column's four rows of a
/// quad together, then two rounds of 128-bit lane shuffles gather the four quads.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn transpose16(r: &mut [__m512; 16]) {
    // SAFETY: feature: the caller's obligation. Registers only.
    unsafe {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            // Lane L of t[2i]: rows 2i, 2i+1 of columns 4L, 4L+1; of t[2i+1]: 4L+2, 4L+3.
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let d = _mm512_castps_pd;
        for q in 0..4 {
            // Lane L of u[4q + k]: rows 4q..4q+3 of column 4L + k.
            let (a, b, c, e) = (
                d(t[4 * q]),
                d(t[4 * q + 2]),
                d(t[4 * q + 1]),
                d(t[4 * q + 3]),
            );
            r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
            r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
        }
        for k in 0..4 {
            // Column 4L + k is lane L of u[k], u[4 + k], u[8 + k], u[12 + k]: a 4x4
            // transpose of 128-bit lanes.
            let v0 = _mm512_shuffle_f32x4::<0x44>(r[k], r[4 + k]);
            let v1 = _mm512_shuffle_f32x4::<0xee>(r[k], r[4 + k]);
            let v2 = _mm512_shuffle_f32x4::<0x44>(r[8 + k], r[12 + k]);
            let v3 = _mm512_shuffle_f32x4::<0xee>(r[8 + k], r[12 + k]);
            t[k] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            t[4 + k] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
            t[8 + k] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            t[12 + k] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
        }
        *r = t;
    }
}

/// Class counts from which a group moves through [`transpose16`] (16 masked row loads or
/// stores and 64 shuffles) rather than `ColumnMaps` permutes (about `C^2`).
const TRANSPOSE_FROM: usize = 8;

/// The mask of the low `n` lanes (`n <= 16`).
#[cfg_attr(not(debug_assertions), inline(always))]
fn low_mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

// SAFETY: a value of `Avx512` exists only after `try_new` detected avx512f, the only
// feature the methods below use; pointer bounds are each method's obligations.
unsafe impl Simd for Avx512 {
    type F = __m512;
    type M = __mmask16;
    type Wide = [__m512d; 2];
    const LANES: usize = 16;

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: feature: the `Avx512` token proves avx512f was detected.
        unsafe { _mm512_set1_ps(x) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: feature: token proves avx512f. bounds: `p..p + 16` readable (caller's
        // obligation); `loadu` has no alignment requirement.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> __m512 {
        // SAFETY: feature: token proves avx512f. bounds: the mask enables lanes `0..n` only
        // and `p[..n]` is readable (caller's obligation); masked-off lanes are not accessed
        // (no fault even across a page end) and take `fill`.
        unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), low_mask(n), p) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn tail_of(self, v: __m512, n: usize, fill: f32) -> __m512 {
        // SAFETY: feature: token proves avx512f (`vpermps` on 512 bits, masked blend).
        // Lane `j` takes lane `j + 16 - n` (`vpermps` reads the index's low four bits);
        // lanes `n..16`, whose index wrapped, take `fill`.
        unsafe {
            let iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
            let n = n.min(16);
            let from = _mm512_add_epi32(iota, _mm512_set1_epi32((16 - n) as i32));
            let moved = _mm512_permutexvar_ps(from, v);
            _mm512_mask_blend_ps(low_mask(n), _mm512_set1_ps(fill), moved)
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: feature: token proves avx512f. bounds: `p..p + 16` writable (caller's
        // obligation).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_stream(self, p: *mut f32, v: __m512) {
        // SAFETY: feature: token proves avx512f. bounds: `p..p + 16` writable and `p`
        // 64-byte aligned, as the instruction requires (caller's obligation).
        unsafe { _mm512_stream_ps(p, v) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn store_fence(self) {
        // SAFETY: feature: SSE is part of the x86-64 baseline; a fence touches no memory.
        unsafe { _mm_sfence() }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: __m512) {
        // SAFETY: feature: token proves avx512f. bounds: only lanes `0..n` are written and
        // `p[..n]` is writable (caller's obligation).
        unsafe { _mm512_mask_storeu_ps(p, low_mask(n), v) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn prefetch(self, p: *const f32) {
        // SAFETY: feature: SSE is part of the x86-64 baseline. bounds: a prefetch is a hint
        // that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>()) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f (512-bit FMA is part of AVX-512F).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn neg_mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f (512-bit FMA is part of AVX-512F).
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_unless_below(self, p: __m512, n: __m512, x: __m512, lo: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f. `scalef` computes `p * 2^floor(n)` exactly
        // for any `n` (IEEE overflow to +inf, underflow to 0); the zero-masking form clears
        // the lanes outside `keep` in the same instruction. `keep` is "not less than"
        // (unordered: true for NaN) directly, with no mask negation.
        unsafe {
            let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, lo);
            _mm512_maskz_scalef_ps(keep, p, n)
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small(self, p: __m512, n: __m512, _t: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f. `scalef` as in `scale_pow2_unless_below`,
        // unmasked: no lane to clear.
        unsafe { _mm512_scalef_ps(p, n) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn exp2_eighths(self, t: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f. bounds: reads the 16 floats of a static.
        // `vpermps` indexes with each lane's low four bits; the table repeats its eight
        // entries, so only the low three count.
        unsafe {
            let table = _mm512_loadu_ps(EXP_TABLE_TWICE.as_ptr());
            _mm512_permutexvar_ps(_mm512_castps_si512(t), table)
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn lt(self, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn gt(self, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f. `mask_blend` takes the second operand
        // where the mask bit is set.
        unsafe { _mm512_mask_blend_ps(m, b, a) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn to_array(self, a: __m512) -> [f32; 16] {
        let mut out = [0.0f32; 16];
        // SAFETY: feature: token proves avx512f. bounds: writes the 16 local slots.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), a) };
        out
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn eq(self, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f. `vmaxps` returns its second operand when
        // either is NaN.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn abs(self, a: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f (`_mm512_abs_ps` is an AND in avx512f).
        unsafe { _mm512_abs_ps(a) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn xor_sign(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f (the 512-bit integer AND and XOR are
        // avx512f; the float forms would need avx512dq).
        unsafe {
            let sign = _mm512_and_si512(_mm512_castps_si512(b), _mm512_set1_epi32(i32::MIN));
            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), sign))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn all(self, m: __mmask16) -> bool {
        m == 0xffff
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn first_lane(self, m: __mmask16) -> Option<usize> {
        (m != 0).then(|| m.trailing_zeros() as usize)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_add(self, v: __m512) -> f32 {
        // SAFETY: feature: token proves avx512f (which implies the SSE and AVX used).
        // Each step adds the upper half of the live lanes onto the lower half: lanes
        // `i + 8`, then `i + 4`, `i + 2`, `i + 1`, the trait's order.
        unsafe {
            let h = _mm256_add_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
            );
            let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_max(self, v: __m512) -> f32 {
        // SAFETY: feature: token proves avx512f. The same halving steps as `reduce_add`.
        unsafe {
            let h = _mm256_max_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
            );
            let q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let d = _mm_max_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_max_ss(d, _mm_movehdup_ps(d)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: feature: token proves avx512f.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn split_exponent(self, x: __m512) -> (__m512, __m512) {
        // SAFETY: feature: token proves avx512f (`getexp`/`getmant` are AVX-512F).
        unsafe {
            (
                _mm512_getexp_ps(x),
                _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_SRC>(x),
            )
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_bf16(self, p: *const u16) -> __m512 {
        // SAFETY: feature: token proves avx512f. bounds: `p..p + 16` readable (caller's
        // obligation), 32 bytes; `loadu` has no alignment requirement.
        unsafe {
            let h = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_f16(self, p: *const u16) -> __m512 {
        // SAFETY: feature: token proves avx512f (`vcvtph2ps` on 512 bits is AVX-512F).
        // bounds: `p..p + 16` readable (caller's obligation), 32 bytes, unaligned load.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        Avx512::narrow(self, f, src, scale, dst)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_zero(self) -> [__m512d; 2] {
        // SAFETY: feature: token proves avx512f.
        unsafe { [_mm512_setzero_pd(); 2] }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_add(self, acc: [__m512d; 2], v: __m512) -> [__m512d; 2] {
        // SAFETY: feature: token proves avx512f (`cvtps_pd`, `extractf64x4` are AVX-512F).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            [
                _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v))),
                _mm512_add_pd(acc[1], _mm512_cvtps_pd(hi)),
            ]
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_sum(self, acc: [__m512d; 2]) -> f64 {
        let mut lanes = [0f64; 16];
        // SAFETY: feature: token proves avx512f. bounds: two stores of 8 into 16 slots.
        unsafe {
            _mm512_storeu_pd(lanes.as_mut_ptr(), acc[0]);
            _mm512_storeu_pd(lanes.as_mut_ptr().add(8), acc[1]);
        }
        lanes.iter().sum()
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_block(self, p: *const f32, c: usize, h: usize) -> [__m512; 16] {
        // Row `r` of the block is classes `16 h..16 h + n` of row `r`, one masked load; a
        // transpose turns the 16 rows into 16 columns.
        let n = (c - 16 * h).min(16);
        let mut rows = [self.splat(0.0); 16];
        // SAFETY: feature: token proves avx512f. bounds: row `r` loads lanes `0..n` from
        // `p + r c + 16 h`, that row's own classes, inside `p..p + 16 c` (caller's
        // obligation); masked-off lanes are not accessed.
        unsafe {
            for (r, row) in rows.iter_mut().enumerate() {
                *row = _mm512_maskz_loadu_ps(low_mask(n), p.add(r * c + 16 * h));
            }
            transpose16(&mut rows);
        }
        rows
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_block(self, p: *mut f32, c: usize, h: usize, v: &[__m512; 16]) {
        let n = (c - 16 * h).min(16);
        let mut rows = *v;
        // SAFETY: feature: token proves avx512f. bounds: row `r` stores lanes `0..n` to
        // `p + r c + 16 h`, that row's own classes, inside `p..p + 16 c` (caller's
        // obligation); masked-off lanes are not written.
        unsafe {
            transpose16(&mut rows);
            for (r, &row) in rows.iter().enumerate() {
                _mm512_mask_storeu_ps(p.add(r * c + 16 * h), low_mask(n), row);
            }
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_columns<const C: usize>(self, p: *const f32) -> [__m512; C] {
        if C >= TRANSPOSE_FROM {
            let mut cols = [self.splat(0.0); C];
            for h in 0..C.div_ceil(16) {
                // SAFETY: bounds: the group's `16 C` floats are readable (caller's
                // obligation).
                let rows = unsafe { self.load_block(p, C, h) };
                let n = C.min(16 * h + 16) - 16 * h;
                cols[16 * h..16 * h + n].copy_from_slice(&rows[..n]);
            }
            return cols;
        }
        let maps = const { &column_maps(C) };
        // SAFETY: feature: token proves avx512f. bounds: the `C` loads cover
        // `p..p + 16 C`, readable by the caller's obligation; the rest is registers.
        unsafe {
            let mut mem = [_mm512_setzero_ps(); C];
            for (k, v) in mem.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(p.add(16 * k));
            }
            let start = _mm512_loadu_si512(maps.row_start.as_ptr().cast());
            let mut cols = [_mm512_setzero_ps(); C];
            for (j, col) in cols.iter_mut().enumerate() {
                let idx = _mm512_add_epi32(start, _mm512_set1_epi32(j as i32));
                // Lane 0 (element `j < 16`) is in memory vector 0.
                *col = _mm512_permutexvar_ps(idx, mem[0]);
                for (k, &v) in mem.iter().enumerate().skip(1) {
                    let lanes = maps.from_memory[j][k];
                    if lanes != 0 {
                        *col = _mm512_mask_permutexvar_ps(*col, lanes, idx, v);
                    }
                }
            }
            cols
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_columns<const C: usize>(self, p: *mut f32, v: &[__m512; C]) {
        if C >= TRANSPOSE_FROM {
            for h in 0..C.div_ceil(16) {
                let n = C.min(16 * h + 16) - 16 * h;
                let mut rows = [self.splat(0.0); 16];
                rows[..n].copy_from_slice(&v[16 * h..16 * h + n]);
                // SAFETY: bounds: the group's `16 C` floats are writable (caller's
                // obligation).
                unsafe { self.store_block(p, C, h, &rows) };
            }
            return;
        }
        let maps = const { &column_maps(C) };
        // SAFETY: feature: token proves avx512f. bounds: the `C` stores cover
        // `p..p + 16 C`, writable by the caller's obligation.
        unsafe {
            for k in 0..C {
                let idx = _mm512_loadu_si512(maps.to_row[k].as_ptr().cast());
                // Lane 0 (element `16 k`) belongs to column `16 k mod C`.
                let first = (16 * k) % C;
                let mut out = _mm512_permutexvar_ps(idx, v[first]);
                for (j, &col) in v.iter().enumerate() {
                    let lanes = maps.from_column[k][j];
                    if lanes != 0 && j != first {
                        out = _mm512_mask_permutexvar_ps(out, lanes, idx, col);
                    }
                }
                _mm512_storeu_ps(p.add(16 * k), out);
            }
        }
    }
    // `gather`/`scatter` use 16 scalar accesses through a stack array rather than
    // `vgatherdps`/`vscatterdps`: on the machine we measured (Xeon, with current gather
    // microcode) the scalar form was faster, 0.50 s against 0.58 s for 2048x3 x 20 000
    // forward calls, and equal for scatter.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn gather(self, p: *const f32, stride: usize) -> __m512 {
        // SAFETY: feature: token proves avx512f. bounds: lane `k` reads `p + k * stride`,
        // readable for k < 16 by the caller's obligation.
        unsafe {
            let a: [f32; 16] = core::array::from_fn(|k| *p.add(k * stride));
            _mm512_loadu_ps(a.as_ptr())
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn scatter(self, p: *mut f32, stride: usize, v: __m512) {
        // SAFETY: feature: token proves avx512f. bounds: lane `k` writes `p + k * stride`,
        // writable for k < 16 by the caller's obligation.
        unsafe {
            let mut a = [0f32; 16];
            _mm512_storeu_ps(a.as_mut_ptr(), v);
            for (k, &x) in a.iter().enumerate() {
                *p.add(k * stride) = x;
            }
        }
    }
}

crate::arch::instantiate_kernel!(Avx512, #[target_feature(enable = "avx512f")]);
