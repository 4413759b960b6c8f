//! The passes over one run of classes (a row, a block of a row, a shard), each written once
//! over [`Simd`]:
//!
//! * [`max`]: pass 1, the max and the first index of it (argmax);
//! * [`exp`]: pass 2, `e = exp(z - max)` summed and stored, with the smoothing sum;
//! * [`online`]: passes 1 and 2 fused block by block for long rows;
//! * [`map`]: pass 3 (`g = alpha e - beta`) and the other element-wise maps;
//! * [`stats`]: the mergeable statistics of a run, without stores.
//!
//! Every function is `#[inline(always)]` (in optimised builds, see [`crate::arch`]) so
//! that it compiles inside the variant's `#[target_feature]` boundary; pointer preconditions are stated per function.

pub(crate) mod exp;
pub(crate) mod map;
pub(crate) mod max;
pub(crate) mod online;
pub(crate) mod stats;

use crate::arch::Simd;
use crate::arch::convert::{HalfFormat, widen_one};

/// The smoothing sum `sum_j w_j (z_j - max)` is accumulated at this scale (an exact power
/// of two) so that it cannot overflow f32 even when the logits span +-3.4e38; it is
/// scaled back in f64.
pub(crate) const WSUM_SCALE: f32 = 1.0 / 18_446_744_073_709_551_616.0; // 2^-64

pub(crate) const WSUM_UNSCALE: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// Ones, for building a lane-validity mask with a tail load.
pub(crate) static LANE_ONES: [f32; 16] = [1.0; 16];

/// Lane indices as floats, for the branch-free argmax.
pub(crate) static LANE_INDEX: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// Where a pass reads its logits from, a vector at a time: an f32 run (`*const f32`), or
/// a run of 16-bit logits widened in registers as they are loaded ([`Half16`]). The
/// widening is exact, so a pass computes the same bits from either.
pub(crate) trait Logits<S: Simd>: Copy {
    /// Entries `i..i + LANES` as f32.
    ///
    /// # Safety
    /// Entries `0..i + LANES` of the run must be readable.
    unsafe fn load(self, s: S, i: usize) -> S::F;
    /// Entries `i..i + n` (`n < LANES`) as f32, the other lanes `fill`. Nothing past
    /// entry `i + n` is read.
    ///
    /// # Safety
    /// Entries `0..i + n` of the run must be readable.
    unsafe fn load_tail(self, s: S, i: usize, n: usize, fill: f32) -> S::F;
}

impl<S: Simd> Logits<S> for *const f32 {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(self, s: S, i: usize) -> S::F {
        // SAFETY: bounds: the caller's obligation.
        unsafe { s.load(self.add(i)) }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_tail(self, s: S, i: usize, n: usize, fill: f32) -> S::F {
        // SAFETY: bounds: the caller's obligation.
        unsafe { s.load_tail(self.add(i), n, fill) }
    }
}

/// A run of 16-bit logits: bf16 when `BF16`, else f16.
#[derive(Clone, Copy)]
pub(crate) struct Half16<const BF16: bool>(pub(crate) *const u16);

impl<const BF16: bool> Half16<BF16> {
    pub(crate) const FORMAT: HalfFormat = if BF16 {
        HalfFormat::Bf16
    } else {
        HalfFormat::F16
    };
}

impl<S: Simd, const BF16: bool> Logits<S> for Half16<BF16> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(self, s: S, i: usize) -> S::F {
        // SAFETY: bounds: the caller's obligation.
        unsafe {
            if BF16 {
                s.load_bf16(self.0.add(i))
            } else {
                s.load_f16(self.0.add(i))
            }
        }
    }
    /// The vector that ends where the tail ends, loaded whole and moved down
    /// ([`Simd::tail_of`]); a run shorter than a vector is widened one entry at a time
    /// into a buffer on the stack. Widening the tail's entries one by one at the end of
    /// every row cost bf16 rows of 300 classes 12% of their time (Zen 5, 0.40 ns per
    /// logit against 0.355 at 288 and 304 classes, which have no tail).
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load_tail(self, s: S, i: usize, n: usize, fill: f32) -> S::F {
        if i + n >= S::LANES {
            // SAFETY: bounds: entries `i + n - LANES..i + n` lie in `0..i + n`, readable
            // (the caller's obligation).
            return s.tail_of(unsafe { self.load(s, i + n - S::LANES) }, n, fill);
        }
        let mut buf = [fill; 16];
        for (k, v) in buf.iter_mut().enumerate().take(n.min(S::LANES)) {
            // SAFETY: bounds: `i + k < i + n`, readable (caller's obligation).
            *v = widen_one(Self::FORMAT, unsafe { *self.0.add(i + k) });
        }
        // SAFETY: bounds: `buf` holds 16 >= LANES values.
        unsafe { s.load(buf.as_ptr()) }
    }
}

/// `p[i..i + LANES]`, or, when fewer than `LANES` entries remain before `n`, exactly
/// `p[i..n]` with the other lanes set to `fill`.
///
/// # Safety
/// `p`'s entries `0..n` must be readable; `i < n`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn load_upto<S: Simd, L: Logits<S>>(
    s: S,
    p: L,
    i: usize,
    n: usize,
    fill: f32,
) -> S::F {
    // SAFETY: bounds: a full load when `i + LANES <= n`, else a tail load of exactly
    // `p[i..n]` (`0 < n - i < LANES`).
    unsafe {
        if i + S::LANES <= n {
            p.load(s, i)
        } else {
            p.load_tail(s, i, n - i, fill)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The 16-bit loads of every variant this CPU runs against the software widening.

    use super::{Half16, Logits};
    use crate::arch::Simd;
    use crate::arch::convert::widen_one;

    fn same(got: f32, want: f32) -> bool {
        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
    }

    /// Every 16-bit pattern, a vector at a time; then tails of every count below `LANES`
    /// at the end of the run, the other lanes holding the fill.
    fn half_loads<S: Simd, const BF16: bool>(s: S) {
        let f = Half16::<BF16>::FORMAT;
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let src = Half16::<BF16>(all.as_ptr());
        let l = S::LANES;
        for i in (0..all.len()).step_by(l) {
            // SAFETY: bounds: 65 536 is a multiple of `LANES`, so `i + LANES <= len`.
            let v = s.to_array(unsafe { src.load(s, i) });
            for k in 0..l {
                let want = widen_one(f, all[i + k]);
                assert!(same(v[k], want), "{f:?} {:#06x}: {}", all[i + k], v[k]);
            }
        }
        // Tails of every count below `LANES`: at the end of a run of 64 entries (the
        // whole vector that ends there, moved down) and as a run of their own (widened
        // entry by entry). Patterns from 0x3f00 up are finite in both formats (0.5 and
        // 1.75 onwards), so every lane shows where it came from.
        let base = 0x3f00;
        for n in 0..l {
            for fill in [0.0, f32::NEG_INFINITY, -1.5] {
                for (run, i) in [(64, 64 - n), (n, 0)] {
                    let src = Half16::<BF16>(all[base..base + run].as_ptr());
                    // SAFETY: bounds: entries `0..i + n` of the run, `i + n = run`, lie
                    // inside `all`.
                    let v = s.to_array(unsafe { src.load_tail(s, i, n, fill) });
                    for k in 0..l {
                        let want = if k < n {
                            widen_one(f, all[base + i + k])
                        } else {
                            fill
                        };
                        assert!(same(v[k], want), "{f:?} tail n={n} of {run}, lane {k}");
                    }
                }
            }
        }
    }

    fn both_formats<S: Simd>(s: S) {
        half_loads::<S, true>(s);
        half_loads::<S, false>(s);
    }

    #[test]
    fn half_loads_widen_exactly_on_every_variant() {
        crate::arch::on_every_variant!(both_formats);
    }
}
