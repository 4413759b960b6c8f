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
//!
//! # Coverage
//!
//! Public statistics also record which classes they cover, so that a shard merged twice,
//! two overlapping shards, or a missing shard is an error rather than a wrong loss: the
//! number of classes (a sum), the first and one-past-last class (a min and a max), and a
//! fingerprint, the XOR over the covered classes `j` of a 64-bit mix of `j`. Merging adds
//! the counts, takes the min and the max, and XORs the fingerprints, all exactly
//! associative and commutative. [`ShardStats::merge`] rejects two runs whose counts add up
//! to more classes than their span holds (certain overlap: a shard twice, or overlapping
//! shards); the consumers ([`CrossEntropy::shard_loss`](crate::CrossEntropy::shard_loss),
//! [`CrossEntropy::shard_backward`](crate::CrossEntropy::shard_backward)) accept only
//! statistics that cover `0..classes` exactly: count `classes`, span `[0, classes)`, and
//! the fingerprint of `0..classes`. An overlap hidden by a gap of the same size inside the
//! span (three or more shards) changes the fingerprint; two different sets of classes with
//! the same count, span and fingerprint would need a 64-bit collision of the mix.

use crate::Error;
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
/// To all-reduce them across workers instead of gathering them (per row): MAX of `max`;
/// SUM of `sum * exp(max - global max)`; SUM of `smooth_sum + smooth_weight * (max -
/// global max)` and of `smooth_weight`; SUM of the target logit over a zero default
/// (exactly one worker holds it); MAX of the pair `(top, -argmax)`; SUM of `classes`,
/// MIN of `first`, MAX of `end`, bitwise XOR of `coverage`. That is what `merge` computes.
///
/// ```
/// use xent::{CrossEntropy, Shard, ShardStats};
/// // Two runs of the same row: {0.0} at class 0 and {0.0} at class 1.
/// let ce = CrossEntropy::new(2);
/// let (mut a, mut b) = ([ShardStats::EMPTY], [ShardStats::EMPTY]);
/// ce.shard_stats(&[0.0], Shard::new(0, 1), &[0u8], &mut a)?;
/// ce.shard_stats(&[0.0], Shard::new(1, 1), &[0u8], &mut b)?;
/// let m = a[0].merge(b[0])?;
/// assert_eq!((m.sum, m.argmax, m.classes), (2.0, 0, 2)); // ties go to the lower class
/// assert!((m.lse() - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), xent::Error>(())
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
    /// How many classes the run covers (all-reduce: SUM).
    pub classes: usize,
    /// The first class covered (`usize::MAX` for an empty run; all-reduce: MIN).
    pub first: usize,
    /// One past the last class covered (0 for an empty run; all-reduce: MAX).
    pub end: usize,
    /// The XOR over the covered classes `j` of a 64-bit mix of `j` (module docs;
    /// all-reduce: bitwise XOR).
    pub coverage: u64,
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
        classes: 0,
        first: usize::MAX,
        end: 0,
        coverage: 0,
    };

    /// A kernel's block result for the `width` classes starting at class `offset`, whose
    /// smoothing weights sum to `weight`. The coverage fingerprint is left at 0: the
    /// crate's own blocks are never checked for coverage ([`ShardStats::covering`] adds
    /// it for public statistics).
    pub(crate) fn from_block(b: BlockStats, offset: usize, width: usize, weight: f64) -> Self {
        ShardStats {
            max: b.max,
            top: b.top,
            argmax: offset + b.argmax,
            sum: f64::from(b.sum),
            smooth_sum: b.wsum,
            smooth_weight: weight,
            target_logit: None,
            classes: width,
            first: if width == 0 { usize::MAX } else { offset },
            end: if width == 0 { 0 } else { offset + width },
            coverage: 0,
        }
    }

    /// The same statistics with the fingerprint `fp` of their classes
    /// ([`coverage_of`]).
    pub(crate) fn covering(self, fp: u64) -> Self {
        ShardStats {
            coverage: fp,
            ..self
        }
    }

    /// The statistics of the union of two disjoint runs of the same row. Associative and
    /// commutative up to rounding; ties of the maximum go to the lower class index, so the
    /// argmax is the first one whatever the order.
    ///
    /// # Errors
    /// [`Error::ShardOverlap`] when the two runs certainly share classes: together they
    /// count more classes than their span `[min first, max end)` holds (the same shard
    /// merged twice, or two overlapping shards). Overlaps this cannot see (hidden by a gap
    /// between other shards) are caught where the merged statistics are used (module
    /// docs).
    ///
    /// ```
    /// use xent::{CrossEntropy, Error, Shard, ShardStats};
    /// let ce = CrossEntropy::new(4);
    /// let mut a = [ShardStats::EMPTY];
    /// ce.shard_stats(&[1.0, 2.0], Shard::new(0, 2), &[0u8], &mut a)?;
    /// assert!(matches!(a[0].merge(a[0]), Err(Error::ShardOverlap { .. })));
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn merge(self, o: ShardStats) -> Result<ShardStats, Error> {
        let merged = self.combine(o);
        let span = merged.end.saturating_sub(merged.first);
        if self.classes.saturating_add(o.classes) > span {
            return Err(Error::ShardOverlap {
                classes: (self.classes, o.classes),
                first: merged.first,
                end: merged.end,
            });
        }
        Ok(merged)
    }

    /// [`merge`](Self::merge) without the overlap check, for the crate's own blocks.
    #[must_use]
    pub(crate) fn combine(self, o: ShardStats) -> ShardStats {
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
            classes: self.classes + o.classes,
            first: self.first.min(o.first),
            end: self.end.max(o.end),
            coverage: self.coverage ^ o.coverage,
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

/// The coverage fingerprint of the classes `[first, first + width)`: the XOR of a 64-bit
/// mix (splitmix64's finaliser) of each class index.
pub(crate) fn coverage_of(first: usize, width: usize) -> u64 {
    (first..first + width).fold(0, |acc, j| {
        let mut x = (j as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        acc ^ (x ^ (x >> 31))
    })
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
