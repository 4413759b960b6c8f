//! The mergeable statistics of one run of classes (a block of a long row, or a vocabulary
//! shard): passes 1 and 2 without stores.

use crate::arch::math::{Cap, softcap_opt};
use crate::arch::pass::exp::{Ahead, exp_pass};
use crate::arch::pass::max::max_argmax;
use crate::arch::{BlockStats, Simd, Smooth};

/// Statistics of one run (no stores). A run whose max is -inf (every entry -inf or NaN)
/// gets `sum = 0` when all are -inf and NaN when any is NaN, so that merging it with other
/// runs contributes nothing (or poisons the row); its `wsum` is the plain `sum w_j z_j`.
///
/// # Safety
/// `z..z + n` readable; weighted smoothing slices hold `n`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn stats<S: Simd>(
    s: S,
    z: *const f32,
    n: usize,
    smooth: Smooth<'_>,
    cap: Option<Cap>,
) -> BlockStats {
    // SAFETY: obligations forwarded.
    let (m, am) = unsafe { max_argmax(s, z, n) };
    // Capped logits are never -inf, so capping needs no special case.
    let top = m;
    let m = softcap_opt(s, m, cap);
    if m == f32::NEG_INFINITY && n > 0 {
        // Rare: no finite value. Scalar scan (exp would see -inf - -inf = NaN).
        // SAFETY: bounds: `z[..n]` readable (caller's obligation).
        let zs = unsafe { core::slice::from_raw_parts(z, n) };
        let nan = zs.iter().any(|v| v.is_nan());
        let wsum = match smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => zs.iter().map(|&a| f64::from(a)).sum(),
            Smooth::Weighted(w) => zs
                .iter()
                .zip(w)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum(),
        };
        return BlockStats {
            max: m,
            top,
            argmax: am,
            sum: if nan { f32::NAN } else { 0.0 },
            wsum,
        };
    }
    // SAFETY: obligations forwarded; `dst` is unused without STORE.
    let (sum, wsum) = unsafe {
        exp_pass::<S, false>(s, z, core::ptr::null_mut(), n, m, smooth, cap, Ahead::NONE)
    };
    BlockStats {
        max: m,
        top,
        argmax: am,
        sum,
        wsum,
    }
}
