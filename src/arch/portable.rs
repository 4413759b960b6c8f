//! The portable kernel: `wide::f32x8`, whose instructions are fixed when the crate is
//! compiled (SSE2 on a default x86-64 build, NEON on aarch64, scalar elsewhere). It is the
//! fallback on x86 CPUs without AVX2+FMA+F16C and the only kernel on other architectures.

use super::Simd;
use crate::arch::convert::{HalfFormat, widen_one};
use crate::arch::math::EXP_TABLE;
use bytemuck::cast;
use wide::{CmpEq, CmpGt, CmpLt, f32x8, i32x8};

/// Token of the portable kernel; it runs on every CPU, so anyone may build it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable(());

impl Portable {
    pub(crate) const fn new() -> Self {
        Portable(())
    }
}

/// Eight 16-bit values of format `f` from `p`, widened lane by lane (software, exact).
///
/// # Safety
/// `p..p + 8` must be readable u16s.
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn load_half(f: HalfFormat, p: *const u16) -> f32x8 {
    // SAFETY: feature: none needed. bounds: `p..p + 8` readable (caller's obligation);
    // `read_unaligned` has no alignment requirement.
    let h = unsafe { p.cast::<[u16; 8]>().read_unaligned() };
    let mut v = [0.0; 8];
    for (v, h) in v.iter_mut().zip(h) {
        *v = widen_one(f, h);
    }
    f32x8::from(v)
}

// SAFETY: the implementation uses only `wide`'s safe operations and unaligned loads/stores
// whose bounds are the caller's documented obligations; it needs no CPU feature.
unsafe impl Simd for Portable {
    type F = f32x8;
    type M = f32x8;
    type Wide = [f64; 8];
    const LANES: usize = 8;
    const EMULATED: bool = true;

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(self, p: *const f32) -> f32x8 {
        // SAFETY: feature: none needed. bounds: `p..p + 8` readable (caller's obligation);
        // `read_unaligned` has no alignment requirement.
        f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> f32x8 {
        let mut buf = [fill; 8];
        debug_assert!(n < 8);
        // SAFETY: feature: none needed. bounds: reads `p[..n]` (caller's obligation) into
        // the first `n < 8` slots of a local buffer.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(8)) };
        f32x8::from(buf)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32, v: f32x8) {
        // SAFETY: feature: none needed. bounds: `p..p + 8` writable (caller's obligation).
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v.to_array()) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: f32x8) {
        let buf = v.to_array();
        // SAFETY: feature: none needed. bounds: writes `p[..n]`, `n < 8` (caller's
        // obligation) from a local buffer of 8.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(8)) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn prefetch(self, _p: *const f32) {}
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_bf16(self, p: *const u16) -> f32x8 {
        // SAFETY: bounds: `p..p + 8` readable (caller's obligation).
        unsafe { load_half(HalfFormat::Bf16, p) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_f16(self, p: *const u16) -> f32x8 {
        // SAFETY: bounds: `p..p + 8` readable (caller's obligation).
        unsafe { load_half(HalfFormat::F16, p) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]) {
        Portable::narrow(self, f, src, scale, dst)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_zero(self) -> [f64; 8] {
        [0.0; 8]
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_add(self, mut acc: [f64; 8], v: f32x8) -> [f64; 8] {
        for (a, x) in acc.iter_mut().zip(v.to_array()) {
            *a += f64::from(x);
        }
        acc
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn wide_sum(self, acc: [f64; 8]) -> f64 {
        acc.iter().sum()
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn add(self, a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn sub(self, a: f32x8, b: f32x8) -> f32x8 {
        a - b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul(self, a: f32x8, b: f32x8) -> f32x8 {
        a * b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn mul_add(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        // `wide` fuses only where x86's FMA is compiled in; elsewhere it multiplies and
        // adds, two roundings. Every aarch64 CPU with NEON fuses (`FMLA`), so there it is
        // spelt out: one instruction instead of two, and the bits of the fused scalar
        // model that the AVX2 and AVX-512 kernels match.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        {
            use core::arch::aarch64::{float32x4_t, vfmaq_f32};
            // SAFETY: feature: `neon` is enabled for this whole build (the `cfg` above;
            // it is on by default on aarch64 targets). Layout: `f32x8` and
            // `[float32x4_t; 2]` are both 32 bytes of eight f32 lanes in order, with no
            // padding and no invalid bit patterns, so the transmutes only reinterpret.
            unsafe {
                let [a0, a1]: [float32x4_t; 2] = core::mem::transmute(a);
                let [b0, b1]: [float32x4_t; 2] = core::mem::transmute(b);
                let [c0, c1]: [float32x4_t; 2] = core::mem::transmute(c);
                // `vfmaq_f32(c, a, b)` is `c + a * b`, rounded once.
                core::mem::transmute([vfmaq_f32(c0, a0, b0), vfmaq_f32(c1, a1, b1)])
            }
        }
        #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
        a.mul_add(b, c)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_unless_below(self, p: f32x8, n: f32x8, x: f32x8, lo: f32x8) -> f32x8 {
        // Saturate floor(n) to [-127, 129] (NaN n becomes 0 in `round_int`; p is NaN
        // then), and apply it as two exponent-field factors so neither leaves the biased
        // range.
        let n = n
            .floor()
            .fast_max(f32x8::splat(-127.0))
            .fast_min(f32x8::splat(129.0));
        let n: i32x8 = n.round_int();
        let n1 = n >> 1;
        let n2 = n - n1;
        let f1: f32x8 = cast((n1 + 127) << 23);
        let f2: f32x8 = cast((n2 + 127) << 23);
        self.lt(x, lo).blend(f32x8::splat(0.0), p * f1 * f2)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small_unless_below(
        self,
        p: f32x8,
        n: f32x8,
        t: f32x8,
        x: f32x8,
        lo: f32x8,
    ) -> f32x8 {
        self.lt(x, lo)
            .blend(f32x8::splat(0.0), self.scale_pow2_small(p, n, t))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small(self, p: f32x8, _n: f32x8, t: f32x8) -> f32x8 {
        // `2^floor(n)` from the rounding's own bits, as the AVX2 kernel builds it (see
        // `Avx2::scale_pow2_small_unless_below`): integer adds and shifts, where the
        // general `scale_pow2_unless_below` needs a `floor`, which `wide` has no SSE2
        // instruction for (eight `floorf` calls per vector on a default x86-64 build,
        // 44% of the portable kernel's time there). For `floor(n)` in [-126, 127] one
        // exact product by `2^floor(n)` rounds as the two by its halves do, so the bits
        // are the same; a NaN `t` gives a zero-mantissa factor (a power of two, zero or
        // infinity), and the product keeps `p`'s NaN.
        let bits: i32x8 = cast(t);
        let pow2: f32x8 = cast(((bits + i32x8::splat(8 * 127)) >> 3) << 23);
        p * pow2
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn exp2_eighths(self, t: f32x8) -> f32x8 {
        // `wide` has no lane permute; eight table reads.
        f32x8::from(t.to_array().map(|v| EXP_TABLE[(v.to_bits() & 7) as usize]))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn lt(self, a: f32x8, b: f32x8) -> f32x8 {
        a.cmp_lt(b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn gt(self, a: f32x8, b: f32x8) -> f32x8 {
        a.cmp_gt(b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn select(self, m: f32x8, a: f32x8, b: f32x8) -> f32x8 {
        m.blend(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn to_array(self, a: f32x8) -> [f32; 16] {
        let mut out = [0.0; 16];
        out[..8].copy_from_slice(&a.to_array());
        out
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn eq(self, a: f32x8, b: f32x8) -> f32x8 {
        a.cmp_eq(b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn max(self, a: f32x8, b: f32x8) -> f32x8 {
        // Spelled out: `wide` leaves max's NaN behaviour to the platform.
        a.cmp_gt(b).blend(a, b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn abs(self, a: f32x8) -> f32x8 {
        a & f32x8::splat(f32::from_bits(0x7fff_ffff))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn xor_sign(self, a: f32x8, b: f32x8) -> f32x8 {
        a ^ (b & f32x8::splat(-0.0))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn all(self, m: f32x8) -> bool {
        m.move_mask() == 0xff
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn first_lane(self, m: f32x8) -> Option<usize> {
        let bits = m.move_mask();
        (bits != 0).then(|| bits.trailing_zeros() as usize)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn div(self, a: f32x8, b: f32x8) -> f32x8 {
        a / b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn split_exponent(self, x: f32x8) -> (f32x8, f32x8) {
        // Exponent field minus the bias; mantissa with the exponent field of 1.0. A NaN
        // keeps a NaN mantissa (its fraction bits are non-zero).
        let bits: i32x8 = cast(x);
        let e: i32x8 = (bits >> 23) - i32x8::splat(127);
        let m: f32x8 = cast((bits & i32x8::splat(0x007f_ffff)) | i32x8::splat(0x3f80_0000));
        (e.round_float(), x.is_nan().blend(x, m))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn gather(self, p: *const f32, stride: usize) -> f32x8 {
        // SAFETY: feature: none needed. bounds: reads `p[k * stride]`, k < 8 (caller's
        // obligation).
        f32x8::from(core::array::from_fn::<f32, 8, _>(|k| unsafe {
            *p.add(k * stride)
        }))
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn scatter(self, p: *mut f32, stride: usize, v: f32x8) {
        for (k, x) in v.to_array().into_iter().enumerate() {
            // SAFETY: feature: none needed. bounds: writes `p[k * stride]`, k < 8 (caller's
            // obligation).
            unsafe { *p.add(k * stride) = x };
        }
    }
}

super::instantiate_kernel!(Portable);
