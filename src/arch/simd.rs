//! The [`Simd`] trait: the vector primitives every kernel variant provides, and the one
//! contract its `unsafe` rests on (a value of the type proves the CPU features).

use crate::arch::convert::HalfFormat;

/// The vector primitives a kernel variant provides. All methods are `#[inline(always)]` in
/// implementations (in optimised builds: see [`crate::arch`]) so they inherit the caller's
/// `#[target_feature]` set.
///
/// # Safety
///
/// Implementors guarantee that the methods are sound to call whenever a value of `Self`
/// exists (the value is a capability token: it can only be built after the CPU features the
/// implementation uses were detected), given the pointer preconditions of each method.
pub(crate) unsafe trait Simd: Copy {
    /// A vector of `LANES` f32.
    type F: Copy;
    /// A lane mask produced by comparisons.
    type M: Copy;
    /// One f64 accumulator per f32 lane.
    type Wide: Copy;
    /// Number of f32 lanes (at most 16).
    const LANES: usize;
    /// Whether a vector spans several machine registers and operations such as
    /// [`max`](Self::max) take several instructions (the portable kernel). Two choices
    /// of the row-group path that pay with native vectors cost there, and are skipped:
    /// its max chain (1.11x slower at 3 classes) and its pairs of groups (1.28-1.30x
    /// slower at 10 classes).
    const EMULATED: bool = false;

    fn splat(self, x: f32) -> Self::F;
    /// # Safety
    /// `p..p + LANES` must be readable f32s.
    unsafe fn load(self, p: *const f32) -> Self::F;
    /// Loads `n < LANES` elements; the other lanes hold `fill`.
    /// # Safety
    /// `p..p + n` must be readable f32s. Nothing past `p + n` is read.
    unsafe fn load_tail(self, p: *const f32, n: usize, fill: f32) -> Self::F;
    /// The last `n <= LANES` lanes of `v` moved down to lanes `0..n`, in order (lane `j`
    /// takes lane `LANES - n + j`); the other lanes hold `fill`. A run's tail of `n`
    /// entries is then the whole vector that ends where the run ends, loaded and moved:
    /// the same lanes as [`load_tail`](Self::load_tail) gives, for sources (16-bit
    /// logits) that have no masked load. By default through an array on the stack.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn tail_of(self, v: Self::F, n: usize, fill: f32) -> Self::F {
        let (a, l) = (self.to_array(v), Self::LANES);
        let n = n.min(l);
        let mut buf = [fill; 16];
        buf[..n].copy_from_slice(&a[l - n..l]);
        // SAFETY: bounds: `buf` holds 16 >= LANES values.
        unsafe { self.load(buf.as_ptr()) }
    }
    /// # Safety
    /// `p..p + LANES` must be writable f32s.
    unsafe fn store(self, p: *mut f32, v: Self::F);
    /// Stores the first `n < LANES` lanes.
    /// # Safety
    /// `p..p + n` must be writable f32s. Nothing past `p + n` is written.
    unsafe fn store_tail(self, p: *mut f32, n: usize, v: Self::F);
    /// A store of a whole vector that bypasses the caches where the variant can
    /// (non-temporal: the line is written without being read first); a plain store here.
    /// Weakly ordered: a run of them ends with [`store_fence`](Self::store_fence).
    /// # Safety
    /// `p..p + LANES` must be writable f32s and `p` aligned to `4 LANES` bytes.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_stream(self, p: *mut f32, v: Self::F) {
        // SAFETY: bounds: `p..p + LANES` writable (caller's obligation).
        unsafe { self.store(p, v) }
    }
    /// Orders the [`store_stream`](Self::store_stream) stores before every later store
    /// (nothing to do where those are plain stores).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn store_fence(self) {}
    /// A hint to start loading the cache line holding `p` into L2. Any address is allowed:
    /// a prefetch never faults.
    fn prefetch(self, p: *const f32);

    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused (one rounding) where the variant has FMA.
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `c - a * b`, fused where the variant has FMA (one instruction, `vfnmadd`).
    /// [`mul_add`](Self::mul_add) of `0 - a` gives the same bits unless `a = +0` and `c`
    /// is a zero (`0 - a` is `-a` but for `a = +0`, and a zero product only shows
    /// against a zero `c`).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn neg_mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        self.mul_add(self.sub(self.splat(0.0), a), b, c)
    }
    /// `x < lo ? 0 : p * 2^floor(n)` (or anything at all in lanes where `x < lo`), exact
    /// when the result is a normal float; overflow gives +inf; a NaN `x` keeps the product.
    /// Implementations may saturate `floor(n)` to `[-127, 129]`, which changes no normal
    /// result for `p` in `[0.9, 2]`.
    fn scale_pow2_unless_below(self, p: Self::F, n: Self::F, x: Self::F, lo: Self::F) -> Self::F;
    /// As [`scale_pow2_unless_below`](Self::scale_pow2_unless_below) for `floor(n) <= 127`
    /// only, given also `t = n + ROUND_MAGIC` (the rounding step's result, which holds
    /// `8n` in its low mantissa bits).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn scale_pow2_small_unless_below(
        self,
        p: Self::F,
        n: Self::F,
        t: Self::F,
        x: Self::F,
        lo: Self::F,
    ) -> Self::F {
        let _ = t;
        self.scale_pow2_unless_below(p, n, x, lo)
    }
    /// [`scale_pow2_small_unless_below`](Self::scale_pow2_small_unless_below) where no
    /// lane's `x` is below `lo` (or the caller knows the inputs never underflow): the test
    /// and the clearing are left out, the product is the same. Each variant writes its
    /// own: leaving out the test is the point.
    fn scale_pow2_small(self, p: Self::F, n: Self::F, t: Self::F) -> Self::F;
    /// `2^(j/8)` ([`EXP_TABLE`](crate::arch::math::EXP_TABLE)`[j]`) per lane, for `j` the low three
    /// bits of the lane's bit pattern (`t` from the exp's rounding step).
    fn exp2_eighths(self, t: Self::F) -> Self::F;
    fn lt(self, a: Self::F, b: Self::F) -> Self::M;
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `m ? a : b` per lane.
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// The lanes, in order, in the first `LANES` entries.
    fn to_array(self, a: Self::F) -> [f32; 16];

    /// `|a|` per lane: the sign bit cleared (NaN stays NaN, `-0` gives `+0`).
    fn abs(self, a: Self::F) -> Self::F;
    /// `a` with its sign bit flipped where `b`'s is set (`a` times the sign of `b`, for
    /// a non-negative `a`, exactly; on bits, so zeros and NaN too).
    fn xor_sign(self, a: Self::F, b: Self::F) -> Self::F;
    /// Whether every lane of `m` is set.
    fn all(self, m: Self::M) -> bool;
    fn eq(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a > b ? a : b` per lane: a NaN in `a` gives `b` (one `vmaxps` on x86).
    fn max(self, a: Self::F, b: Self::F) -> Self::F;
    /// The lowest lane set in `m`, if any.
    fn first_lane(self, m: Self::M) -> Option<usize>;
    /// The sum of the lanes in a fixed pairwise order that depends only on `LANES`: for
    /// `w = LANES / 2, LANES / 4, .., 1`, lane `i` gains lane `i + w`. The x86 variants
    /// override this with the same additions done by shuffles in registers, so the
    /// result is bit-identical.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_add(self, v: Self::F) -> f32 {
        let mut a = self.to_array(v);
        let mut w = Self::LANES;
        while w > 1 {
            w /= 2;
            for i in 0..w {
                a[i] += a[i + w];
            }
        }
        a[0]
    }
    /// The largest lane of a vector without NaN lanes (the order of a max does not
    /// matter then). By default a scalar fold; the x86 variants use shuffles, a chain of
    /// `log2 LANES` steps instead of `LANES`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn reduce_max(self, v: Self::F) -> f32 {
        let a = self.to_array(v);
        a[..Self::LANES]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// For positive normal `x`: `(e, m)` with `x = m 2^e`, `m` in `[1, 2)`. NaN gives a
    /// NaN `m`. (Zero, infinities and subnormals do not occur where it is used.)
    fn split_exponent(self, x: Self::F) -> (Self::F, Self::F);
    /// Lane `k` loads `p[k * stride]`.
    /// # Safety
    /// `p + k * stride` readable for every `k < LANES`; `(LANES - 1) * stride < 2^31`.
    unsafe fn gather(self, p: *const f32, stride: usize) -> Self::F;
    /// Lane `k` is stored to `p[k * stride]`.
    /// # Safety
    /// `p + k * stride` writable for every `k < LANES`; `(LANES - 1) * stride < 2^31`.
    unsafe fn scatter(self, p: *mut f32, stride: usize, v: Self::F);
    /// `LANES` bf16 values from `p`, widened to f32 in registers (exact: a shift of
    /// their bits into the top half).
    /// # Safety
    /// `p..p + LANES` must be readable u16s.
    unsafe fn load_bf16(self, p: *const u16) -> Self::F;
    /// `LANES` f16 values from `p`, widened to f32 in registers (exact).
    /// # Safety
    /// `p..p + LANES` must be readable u16s.
    unsafe fn load_f16(self, p: *const u16) -> Self::F;
    /// Narrows `scale * src` into `dst` (same length): the f32 product, rounded to
    /// nearest even (`arch::convert`). The scale lets pass 3 of the 16-bit rows form and
    /// narrow a block of the gradient in registers; elsewhere it is 1 (exact).
    fn narrow(self, f: HalfFormat, src: &[f32], scale: f32, dst: &mut [u16]);
    /// Accumulators at zero.
    fn wide_zero(self) -> Self::Wide;
    /// `acc[i] + v[i]` per lane, in f64 (the widening is exact).
    fn wide_add(self, acc: Self::Wide, v: Self::F) -> Self::Wide;
    /// The accumulators added in lane order.
    fn wide_sum(self, acc: Self::Wide) -> f64;
    /// `LANES` rows of `C` classes stored contiguously (`p[r * C + j]`) as `C` vectors:
    /// vector `j` holds class `j` of every row, lane `r` being row `r`. By default
    /// `C` strided gathers; the x86 variants override it with in-register transposes.
    /// # Safety
    /// `p..p + LANES * C` readable; `C <= FIXED_MAX_CLASSES`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_columns<const C: usize>(self, p: *const f32) -> [Self::F; C] {
        // A loop, not `array::from_fn`: a closure would be compiled outside the caller's
        // `#[target_feature]` set and the gathers would not inline.
        let mut cols = [self.splat(0.0); C];
        for (j, col) in cols.iter_mut().enumerate() {
            // SAFETY: bounds: lane `r` of gather `j` reads `p[r * C + j]`, inside
            // `p..p + LANES * C` (caller's obligation); `(LANES - 1) * C < 2^31`.
            *col = unsafe { self.gather(p.add(j), C) };
        }
        cols
    }
    /// The inverse of [`Simd::load_columns`]: lane `r` of `v[j]` is stored to `p[r * C + j]`.
    /// # Safety
    /// `p..p + LANES * C` writable; `C <= FIXED_MAX_CLASSES`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_columns<const C: usize>(self, p: *mut f32, v: &[Self::F; C]) {
        for (j, &vj) in v.iter().enumerate() {
            // SAFETY: bounds: lane `r` writes `p[r * C + j]`, inside `p..p + LANES * C`
            // (caller's obligation); `(LANES - 1) * C < 2^31`.
            unsafe { self.scatter(p.add(j), C, vj) };
        }
    }
    /// Block `h` of a group of `LANES` rows of `c` classes (`p[r * c + j]`) as columns:
    /// vector `k` holds class `LANES * h + k` of every row, for
    /// `k < n = min(LANES, c - LANES * h)`; the other vectors are unspecified. By default
    /// `n` strided gathers; the x86 variants override it with one in-register transpose.
    /// # Safety
    /// `p..p + LANES * c` readable; `LANES * h < c`; `LANES * c < 2^31`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_block(self, p: *const f32, c: usize, h: usize) -> [Self::F; 16] {
        let (l, mut cols) = (Self::LANES, [self.splat(0.0); 16]);
        for (k, col) in cols.iter_mut().enumerate().take((c - l * h).min(l)) {
            // SAFETY: bounds: lane `r` reads `p[r * c + l h + k]`, a class of row `r`
            // (`l h + k < c`), inside `p..p + LANES * c`; the indices fit i32.
            *col = unsafe { self.gather(p.add(l * h + k), c) };
        }
        cols
    }
    /// The inverse of [`Simd::load_block`]: stores classes `LANES * h..LANES * h + n` of
    /// every row, and nothing else.
    /// # Safety
    /// `p..p + LANES * c` writable; `LANES * h < c`; `LANES * c < 2^31`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store_block(self, p: *mut f32, c: usize, h: usize, v: &[Self::F; 16]) {
        let l = Self::LANES;
        for (k, &col) in v.iter().enumerate().take((c - l * h).min(l)) {
            // SAFETY: bounds: as `load_block`, writing.
            unsafe { self.scatter(p.add(l * h + k), c, col) };
        }
    }
}

#[cfg(test)]
mod tests {
    //! The row-group transposition of every variant this CPU runs, for every class count,
    //! against the memory layout it stands for (lane `r` of column `j` is element
    //! `r C + j`), there and back.

    use super::Simd;

    fn columns_round_trip<S: Simd, const C: usize>(s: S) {
        let n = S::LANES * C;
        let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
        // SAFETY: bounds: `src` holds `LANES * C` floats.
        let cols = unsafe { s.load_columns::<C>(src.as_ptr()) };
        for (j, &col) in cols.iter().enumerate() {
            let lanes = s.to_array(col);
            for r in 0..S::LANES {
                assert_eq!(lanes[r], src[r * C + j], "C={C} column {j} lane {r}");
            }
        }
        let mut back = vec![f32::NAN; n + 1];
        // SAFETY: bounds: `back` holds `LANES * C + 1` floats.
        unsafe { s.store_columns::<C>(back.as_mut_ptr(), &cols) };
        assert_eq!(back[..n], src[..], "C={C} store");
        assert!(back[n].is_nan(), "C={C}: stored past the group");
    }

    /// `load_block`/`store_block` at a runtime class count: every block there and back,
    /// and nothing written outside the block's own classes.
    fn blocks_round_trip<S: Simd>(s: S, c: usize) {
        let (l, n) = (S::LANES, S::LANES * c);
        let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 9.0).collect();
        let mut back = vec![f32::NAN; n + 1];
        for h in 0..c.div_ceil(l) {
            // SAFETY: bounds: `src` holds `LANES * c` floats; `l h < c`.
            let cols = unsafe { s.load_block(src.as_ptr(), c, h) };
            let width = (c - l * h).min(l);
            for (k, &col) in cols.iter().enumerate().take(width) {
                let lanes = s.to_array(col);
                for r in 0..l {
                    assert_eq!(
                        lanes[r],
                        src[r * c + l * h + k],
                        "c={c} block {h} column {k}"
                    );
                }
            }
            // SAFETY: bounds: `back` holds `LANES * c + 1` floats; `l h < c`.
            unsafe { s.store_block(back.as_mut_ptr(), c, h, &cols) };
            for (i, &b) in back.iter().enumerate() {
                let done = i < n && (i % c) < l * h + width;
                assert_eq!(b.is_nan(), !done, "c={c} block {h}: element {i}");
            }
        }
        assert_eq!(back[..n], src[..], "c={c} store");
    }

    fn every_class_count<S: Simd>(s: S) {
        macro_rules! each {
            ($($c:literal)*) => { $(columns_round_trip::<S, $c>(s);)* };
        }
        each!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
        for c in 1..=crate::paths::SMALL_MAX_CLASSES {
            blocks_round_trip(s, c);
        }
    }

    /// `load_tail`/`store_tail` for every count below `LANES` and at every offset within a
    /// vector: lanes `0..n` come from memory, the others hold the fill (zero, a negative
    /// and -inf, as the passes use), and a store writes exactly `p[..n]`.
    fn tails<S: Simd>(s: S) {
        let l = S::LANES;
        let src: Vec<f32> = (0..3 * l).map(|i| i as f32 - 7.5).collect();
        for at in 0..l {
            for n in 0..l {
                for fill in [0.0, -3.25, f32::NEG_INFINITY] {
                    // SAFETY: bounds: `src[at..at + n]` is inside its `3 LANES` floats.
                    let v = s.to_array(unsafe { s.load_tail(src.as_ptr().add(at), n, fill) });
                    for (k, &got) in v.iter().enumerate().take(l) {
                        let want = if k < n { src[at + k] } else { fill };
                        assert_eq!(got.to_bits(), want.to_bits(), "n={n} at={at} lane {k}");
                    }
                    let mut back = vec![f32::NAN; 3 * l];
                    // SAFETY: bounds: `back[at..at + n]` is inside its `3 LANES` floats.
                    unsafe { s.store_tail(back.as_mut_ptr().add(at), n, s.load(src.as_ptr())) };
                    for (i, &b) in back.iter().enumerate() {
                        if (at..at + n).contains(&i) {
                            assert_eq!(b, src[i - at], "n={n} at={at}: element {i}");
                        } else {
                            assert!(b.is_nan(), "n={n} at={at}: wrote element {i}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tails_on_every_variant() {
        crate::arch::on_every_variant!(tails);
    }

    #[test]
    fn columns_round_trip_on_every_variant() {
        crate::arch::on_every_variant!(every_class_count);
    }
}
