//! Mergeable softmax statistics (online softmax): the blocked path's per-block results and
//! the public [`ShardStats`] of a vocabulary shard are the same thing.
//!
//! A run of classes summarised as `(m, s, ws, W)` with `s = sum exp(y - m)`,
//! `ws = sum w (y - m)` and `W = sum w` merges with another run `(m', s', ws', W')` as
//!
//! ```text
//! M  = max(m, m')
//! S  = s e^(m - M) + s' e^(m' - M)
//! WS = ws + W (m - M) + ws' + W' (m' - M)
//! ```
//!
//! which is associative and commutative (up to rounding), so runs may be computed anywhere
//! and merged in any order. The merge runs in f64 (a handful of scalars per row).

use crate::arch::BlockStats;

/// Mergeable statistics of one row over a run of classes (a vocabulary shard, a block, or
/// the whole row once every run is merged). `y` are the logits the loss sees: soft-capped
/// when that option is on.
///
/// Built by [`CrossEntropy::shard_stats`](crate::CrossEntropy::shard_stats), combined with
/// [`merge`](Self::merge), consumed by [`CrossEntropy::shard_loss`](crate::CrossEntropy::shard_loss)
/// and [`CrossEntropy::shard_backward`](crate::CrossEntropy::shard_backward). The fields are
/// public so that a distributed trainer can pack them into its own messages and rebuild
/// them on the other side.
///
/// ```
/// use xent::ShardStats;
/// // Two runs of the same row: {0.0} and {0.0} at classes 0 and 1.
/// let a = ShardStats { max: 0.0, top: 0.0, argmax: 0, sum: 1.0, ..ShardStats::EMPTY };
/// let b = ShardStats { argmax: 1, ..a };
/// let m = a.merge(b);
/// assert_eq!((m.sum, m.argmax), (2.0, 0)); // ties go to the lower class
/// assert!((m.lse() - 2f64.ln()).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShardStats {
    /// Max of `y` over the run's non-NaN entries (-inf if none).
    pub max: f32,
    /// Max of the raw logits over the run's non-NaN entries: it decides the argmax, which
    /// is taken on the raw logits.
    pub top: f32,
    /// Global class index of the first raw maximum (`usize::MAX` for an empty run).
    pub argmax: usize,
    /// `sum_j exp(y_j - max)`; NaN if the run holds a NaN (or, without capping, +inf).
    pub sum: f64,
    /// `sum_j w_j (y_j - max)` (label smoothing only, else 0).
    pub smooth_sum: f64,
    /// `sum_j w_j` over the run (label smoothing only, else 0).
    pub smooth_weight: f64,
    /// `y_t` if the row's target lies in the run (and the row is not ignored).
    pub target_logit: Option<f32>,
}

impl ShardStats {
    /// The statistics of an empty run: the identity of [`merge`](Self::merge).
    pub const EMPTY: ShardStats = ShardStats {
        max: f32::NEG_INFINITY,
        top: f32::NEG_INFINITY,
        argmax: usize::MAX,
        sum: 0.0,
        smooth_sum: 0.0,
        smooth_weight: 0.0,
        target_logit: None,
    };

    /// A kernel's block result for the run starting at class `offset`, whose smoothing
    /// weights sum to `weight`.
    pub(crate) fn from_block(b: BlockStats, offset: usize, weight: f64) -> Self {
        ShardStats {
            max: b.max,
            top: b.top,
            argmax: offset + b.argmax,
            sum: f64::from(b.sum),
            smooth_sum: b.wsum,
            smooth_weight: weight,
            target_logit: None,
        }
    }

    /// The statistics of the union of two disjoint runs of the same row. Associative and
    /// commutative up to rounding; ties of the maximum go to the lower class index, so the
    /// argmax is the first one whatever the order.
    #[must_use]
    pub fn merge(self, o: ShardStats) -> ShardStats {
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
            if m == max || w == 0.0 {
                0.0
            } else {
                w * (f64::from(m) - f64::from(max))
            }
        };
        let later = o.top > self.top || (o.top == self.top && o.argmax < self.argmax);
        ShardStats {
            max,
            top: if later { o.top } else { self.top },
            argmax: if later { o.argmax } else { self.argmax },
            sum: self.sum * rescale(self.max) + o.sum * rescale(o.max),
            smooth_sum: self.smooth_sum
                + shift(self.max, self.smooth_weight)
                + o.smooth_sum
                + shift(o.max, o.smooth_weight),
            smooth_weight: self.smooth_weight + o.smooth_weight,
            target_logit: self.target_logit.or(o.target_logit),
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

    /// The log-sum-exp of the run, `max + ln sum` (NaN when it has no finite maximum).
    pub fn lse(&self) -> f64 {
        f64::from(self.max) + self.ln_sum()
    }
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats::EMPTY
    }
}

/// The statistics of a whole row (or of the blocks merged so far).
pub(crate) type Merged = ShardStats;

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
