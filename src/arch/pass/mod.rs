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

/// `p[i..i + LANES]`, or, when fewer than `LANES` entries remain before `n`, exactly
/// `p[i..n]` with the other lanes set to `fill`.
///
/// # Safety
/// `p..p + n` must be readable; `i < n`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn load_upto<S: Simd>(
    s: S,
    p: *const f32,
    i: usize,
    n: usize,
    fill: f32,
) -> S::F {
    // SAFETY: bounds: a full load when `i + LANES <= n`, else a tail load of exactly
    // `p[i..n]` (`0 < n - i < LANES`).
    unsafe {
        if i + S::LANES <= n {
            s.load(p.add(i))
        } else {
            s.load_tail(p.add(i), n - i, fill)
        }
    }
}
