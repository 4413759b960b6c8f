//! Merging per-block statistics into per-row statistics (online softmax).
//!
//! A run of classes summarised as `(m, s, ws, argmax)` with `s = sum exp(z - m)` and
//! `ws = sum w (z - m)` merges with another run `(m', s', ws')` as
//!
//! ```text
//! M  = max(m, m')
//! S  = s e^(m - M) + s' e^(m' - M)
//! WS = ws + W (m - M) + ws' + W' (m' - M)      (W, W' = sum of the runs' weights)
//! ```
//!
//! which is associative, so blocks may be computed anywhere and merged in a fixed order.
//! The merge runs in f64 (a handful of scalars per row).

use crate::arch::BlockStats;

/// Statistics of a whole row (or of the blocks merged so far).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Merged {
    pub max: f32,
    pub argmax: usize,
    pub sum: f64,
    pub wsum: f64,
    /// Sum of the smoothing weights of the runs merged so far.
    pub weight: f64,
}

impl Merged {
    /// A single run starting at class `offset` whose smoothing weights sum to `weight`.
    pub(crate) fn from_block(b: BlockStats, offset: usize, weight: f64) -> Self {
        Merged {
            max: b.max,
            argmax: offset + b.argmax,
            sum: f64::from(b.sum),
            wsum: b.wsum,
            weight,
        }
    }

    /// Merges a later run (higher class indices) into `self`.
    pub(crate) fn merge(self, o: Merged) -> Merged {
        let max = if o.max > self.max { o.max } else { self.max };
        // Equal maxima (including both -inf) need no rescaling: this also avoids
        // `-inf - -inf = NaN` for runs that are entirely masked.
        let rescale = |m: f32| {
            if m == max {
                1.0
            } else {
                (f64::from(m) - f64::from(max)).exp()
            }
        };
        let shift = |m: f32, w: f64| {
            if m == max {
                0.0
            } else {
                w * (f64::from(m) - f64::from(max))
            }
        };
        Merged {
            max,
            argmax: if o.max > self.max {
                o.argmax
            } else {
                self.argmax
            },
            sum: self.sum * rescale(self.max) + o.sum * rescale(o.max),
            wsum: self.wsum + shift(self.max, self.weight) + o.wsum + shift(o.max, o.weight),
            weight: self.weight + o.weight,
        }
    }

    /// `ln S`, NaN when the row has no finite maximum (all -inf, or +inf/NaN poisoning).
    pub(crate) fn ln_sum(&self) -> f64 {
        if self.max == f32::NEG_INFINITY {
            f64::NAN
        } else {
            self.sum.ln()
        }
    }
}

/// `logsumexp` of a row from its statistics, with PyTorch's `torch.logsumexp` semantics:
/// NaN if any entry is NaN, else +inf if any is +inf, else -inf if all are -inf.
pub(crate) fn logsumexp_of(m: &Merged, row: &[f32]) -> f32 {
    if m.max.is_finite() {
        return (f64::from(m.max) + m.sum.ln()) as f32;
    }
    if row.iter().any(|v| v.is_nan()) {
        f32::NAN
    } else {
        m.max
    }
}
