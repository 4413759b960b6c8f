//! Vocabulary-sharded cross-entropy: each worker holds the classes
//! `[offset, offset + width)` of every row, and the loss and gradient come out the same as
//! for the whole row.
//!
//! The three steps (statistics, the trainer's merge or all-reduce, loss and gradient) and
//! the all-reduce recipe are in the crate docs (`Vocabulary shards`).
//!
//! DRAM traffic per shard: two reads and one write of the shard (the unsharded fused path
//! needs one of each, as it keeps the row in cache between passes; a shard does not know
//! its row's statistics until the merge).

use crate::arch::{BlockStats, Io, Smooth};
use crate::kernel::with_backend;
use crate::ops::blocked::write_grad_run;
use crate::ops::softmax::fused_row_stats;
use crate::parallel::for_row_chunks_with;
use crate::paths::FUSED_MAX_CLASSES;
use crate::plan::{Checked, RowGrad, RowSums};
use crate::stats::{ShardStats, coverage_of};
use crate::{CrossEntropy, Error, Loss, RowOutputs, Target};

/// A class shard `[offset, offset + width)` of every row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// First class of the shard.
    pub offset: usize,
    /// Number of classes in the shard (may be 0).
    pub width: usize,
}

impl Shard {
    /// The classes `[offset, offset + width)`.
    pub fn new(offset: usize, width: usize) -> Self {
        Shard { offset, width }
    }
}

impl CrossEntropy {
    /// Checks a shard's geometry against the options and the targets; returns the
    /// validated call (with the mean divisor of the whole batch).
    fn check_shard<T: Target>(
        &self,
        len: usize,
        shard: Shard,
        targets: &[T],
    ) -> Result<Checked<'_>, Error> {
        let classes = self.get_classes();
        let rows = targets.len();
        // The options and targets first, as for the unsharded entry points.
        let ck = self.check(rows.saturating_mul(classes), targets, None)?;
        if shard
            .offset
            .checked_add(shard.width)
            .is_none_or(|end| end > classes)
        {
            return Err(Error::ShardRange {
                offset: shard.offset,
                width: shard.width,
                classes,
            });
        }
        if shard.width == 0 {
            if len != 0 {
                return Err(Error::LogitsShape { len, classes: 0 });
            }
        } else if !len.is_multiple_of(shard.width) {
            return Err(Error::LogitsShape {
                len,
                classes: shard.width,
            });
        } else if len / shard.width != rows {
            return Err(Error::TargetsLength {
                targets: rows,
                rows: len / shard.width,
            });
        }
        Ok(ck)
    }

    /// Step 1 of sharded cross-entropy (see the module docs): the statistics of each row
    /// of `logits`, which holds the classes of `shard` for every row (row-major, `width`
    /// per row), into `out` (one per row). `targets` are the global class indices of the
    /// whole batch, as for [`forward`](Self::forward); `self` describes the whole
    /// vocabulary ([`classes`](Self::classes) is the full width). Shards of up to 131072
    /// classes are read as [`forward`](Self::forward) reads rows that long, on the same
    /// passes.
    ///
    /// # Errors
    /// As [`forward`](Self::forward) for the options and targets, then
    /// [`Error::ShardRange`] if the shard does not fit in the classes,
    /// [`Error::LogitsShape`] / [`Error::TargetsLength`] if `logits` is not
    /// `targets.len()` rows of `width`, and [`Error::OutputLength`] for `out`. On error
    /// `out` is unchanged.
    ///
    /// ```
    /// use xent::{CrossEntropy, Shard, ShardStats};
    /// let ce = CrossEntropy::new(5);
    /// let row = [1.0f32, 2.0, 0.5, 3.0, -1.0];
    /// let t = [3u32];
    /// // Two workers hold classes 0..2 and 2..5.
    /// let (mut a, mut b) = ([ShardStats::EMPTY], [ShardStats::EMPTY]);
    /// ce.shard_stats(&row[..2], Shard::new(0, 2), &t, &mut a)?;
    /// ce.shard_stats(&row[2..], Shard::new(2, 3), &t, &mut b)?;
    /// let merged = [a[0].merge(b[0])?];
    /// let sharded = ce.shard_loss(&merged, &t)?;
    /// let whole = ce.forward(&row, &t)?;
    /// assert!((sharded.value - whole.value).abs() < 1e-6);
    /// assert_eq!(sharded.correct, 1);
    /// // Each worker's gradient, from the merged statistics.
    /// let (mut ga, mut gb) = (row[..2].to_vec(), row[2..].to_vec());
    /// ce.shard_backward(&mut ga, Shard::new(0, 2), &t, &merged)?;
    /// ce.shard_backward(&mut gb, Shard::new(2, 3), &t, &merged)?;
    /// let mut g = row;
    /// ce.forward_backward(&mut g, &t)?;
    /// for (x, y) in ga.iter().chain(&gb).zip(&g) {
    ///     assert!((x - y).abs() < 1e-6);
    /// }
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn shard_stats<T: Target>(
        &self,
        logits: &[f32],
        shard: Shard,
        targets: &[T],
        out: &mut [ShardStats],
    ) -> Result<(), Error> {
        let ck = self.check_shard(logits.len(), shard, targets)?;
        if out.len() != targets.len() {
            return Err(Error::OutputLength {
                len: out.len(),
                expected: targets.len(),
            });
        }
        let (lo, w) = (shard.offset, shard.width);
        if w == 0 {
            out.fill(ShardStats::EMPTY);
            return Ok(());
        }
        let smooth = match ck.smooth() {
            Smooth::Weighted(ws) => Smooth::Weighted(&ws[lo..lo + w]),
            other => other,
        };
        let weight = match smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => w as f64,
            Smooth::Weighted(ws) => ws.iter().map(|&v| f64::from(v)).sum(),
        };
        if out.is_empty() {
            // No rows: nothing to write (and `w` is not bounded by the logits' length).
            return Ok(());
        }
        // O(w) once per call; `w <= logits.len()` here, since there is a row.
        let fp = coverage_of(lo, w);
        // Row `r`'s entry from its shard `z` and the shard's statistics.
        let entry = |r: usize, z: &[f32], b: BlockStats| {
            let mut s = ShardStats::from_block(b, lo, w, weight).covering(fp);
            s.target_logit = ck
                .target(targets[r])
                .filter(|&t| t >= lo && t < lo + w)
                .map(|t| match ck.cap {
                    Some(cap) => with_backend!(ck.backend, k => k.softcap(z[t - lo], cap)),
                    None => z[t - lo],
                });
            s
        };
        if w <= FUSED_MAX_CLASSES {
            // The passes `forward` runs (grouped, prefetched, online), not one `stats`
            // call per row.
            let each = |r: usize, z: &[f32], b: BlockStats| {
                // A shard without a finite max takes `stats`' values (a zero or NaN sum,
                // the plain weighted sum), which merge as nothing or poison the row.
                let b = if b.max.is_finite() {
                    b
                } else {
                    with_backend!(ck.backend, k => k.stats(z, smooth, ck.cap))
                };
                entry(r, z, b)
            };
            fused_row_stats((ck.backend, ck.run), logits, w, (smooth, ck.cap), out, each);
            return Ok(());
        }
        for_row_chunks_with(
            ck.run,
            Io::Read(logits),
            out,
            w,
            |row0, chunk, out| {
                for (r, (z, o)) in chunk.src().chunks_exact(w).zip(out).enumerate() {
                    let b = with_backend!(ck.backend, k => k.stats(z, smooth, ck.cap));
                    *o = entry(row0 + r, z, b);
                }
            },
            |()| {},
        );
        Ok(())
    }

    /// Step 3a of sharded cross-entropy: the [`Loss`] from every row's merged statistics
    /// (all shards merged), with this configuration's reduction, z-loss and smoothing.
    ///
    /// # Errors
    /// As [`forward`](Self::forward) for the options and targets;
    /// [`Error::InputLength`] if `stats` does not hold one entry per row;
    /// [`Error::ShardCoverage`] if a row's statistics do not cover `0..classes` exactly
    /// (a shard missing, merged twice, or overlapping another);
    /// [`Error::ShardMissingTarget`] if a counted row's statistics have no target logit
    /// (the shard holding the target was not merged in).
    pub fn shard_loss<T: Target>(
        &self,
        stats: &[ShardStats],
        targets: &[T],
    ) -> Result<Loss, Error> {
        self.shard_loss_with(stats, targets, RowOutputs::new())
    }

    /// [`shard_loss`](Self::shard_loss), also writing each row's loss, log-sum-exp and
    /// predicted class into the buffers of `outputs`, as
    /// [`forward_with`](Self::forward_with) does for whole rows (`Reduction::None`'s
    /// per-row losses of a sharded head, for example).
    ///
    /// ```
    /// use xent::{CrossEntropy, RowOutputs, Shard, ShardStats};
    /// let ce = CrossEntropy::new(3);
    /// let (t, mut a, mut b) = ([2u8], [ShardStats::EMPTY], [ShardStats::EMPTY]);
    /// ce.shard_stats(&[1.0], Shard::new(0, 1), &t, &mut a)?;
    /// ce.shard_stats(&[2.0, 3.0], Shard::new(1, 2), &t, &mut b)?;
    /// let (mut losses, mut lse) = ([0.0f32], [0.0f32]);
    /// let out = RowOutputs::new().losses(&mut losses).lse(&mut lse);
    /// ce.shard_loss_with(&[a[0].merge(b[0])?], &t, out)?;
    /// let mut whole = ([0.0f32], [0.0f32]);
    /// ce.forward_with(&[1.0, 2.0, 3.0], &t, RowOutputs::new().losses(&mut whole.0).lse(&mut whole.1))?;
    /// assert!((losses[0] - whole.0[0]).abs() < 1e-6 && (lse[0] - whole.1[0]).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`shard_loss`](Self::shard_loss), and [`Error::OutputLength`] for a buffer that
    /// does not hold one value per row; nothing is written on error.
    pub fn shard_loss_with<T: Target>(
        &self,
        stats: &[ShardStats],
        targets: &[T],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check_merged(stats, targets)?;
        let mut sinks = outputs.checked(targets.len())?;
        sinks.fill_ignored();
        let mut sums = RowSums::default();
        for (r, (s, &t)) in stats.iter().zip(targets).enumerate() {
            if let Some(t) = ck.target(t) {
                let row = ck.row_loss(t, s, s.target_logit.unwrap_or(f32::NAN));
                sinks.put(r, &row);
                sums.add(RowSums {
                    loss: row.loss,
                    z: row.z,
                    correct: usize::from(row.correct),
                });
            }
        }
        Ok(self.reduce(&ck, sums))
    }

    /// Step 3b of sharded cross-entropy: the gradient of the reduced loss with respect to
    /// this shard's logits, written over them, from every row's merged statistics. One
    /// read-and-write pass over the shard.
    ///
    /// # Errors
    /// The errors of [`shard_stats`](Self::shard_stats) for the shard and of
    /// [`shard_loss`](Self::shard_loss) for the statistics; on error the logits are
    /// unchanged.
    pub fn shard_backward<T: Target>(
        &self,
        logits: &mut [f32],
        shard: Shard,
        targets: &[T],
        stats: &[ShardStats],
    ) -> Result<(), Error> {
        let ck = self.check_shard(logits.len(), shard, targets)?;
        self.check_merged(stats, targets)?;
        let (lo, w) = (shard.offset, shard.width);
        if w == 0 {
            return Ok(());
        }
        let beta = ck.beta();
        for_row_chunks_with(
            ck.run,
            Io::InPlace(logits),
            (),
            w,
            |row0, chunk, ()| {
                let mut rest = chunk;
                for (r, s) in stats[row0..row0 + rest.len() / w].iter().enumerate() {
                    let (piece, tail) = rest.split_at(w);
                    rest = tail;
                    let plan = ck.plan(targets[row0 + r]);
                    let g = match plan.target {
                        None => RowGrad::IGNORED,
                        Some(_) => {
                            let yt = s.target_logit.unwrap_or(f32::NAN);
                            ck.row_grad(&plan, s, s.lse(), yt)
                        }
                    };
                    write_grad_run(&ck, piece, lo, &g, beta);
                }
            },
            |()| {},
        );
        Ok(())
    }

    /// Validates the options, the targets and merged statistics of a batch.
    fn check_merged<T: Target>(
        &self,
        stats: &[ShardStats],
        targets: &[T],
    ) -> Result<Checked<'_>, Error> {
        let ck = self.check(
            targets.len().saturating_mul(self.get_classes()),
            targets,
            None,
        )?;
        if stats.len() != targets.len() {
            return Err(Error::InputLength {
                what: "stats",
                len: stats.len(),
                expected: targets.len(),
            });
        }
        let classes = self.get_classes();
        // The fingerprint of `0..classes` costs O(classes): computed once, and only when a
        // row's count and span already match (so never for statistics that cannot cover
        // the classes, whatever `classes` is).
        let mut full = None;
        for (row, (s, &t)) in stats.iter().zip(targets).enumerate() {
            let spans = s.classes == classes && s.first == 0 && s.end == classes;
            let covers =
                spans && s.coverage == *full.get_or_insert_with(|| coverage_of(0, classes));
            if !covers {
                return Err(Error::ShardCoverage {
                    row,
                    covered: s.classes,
                    first: s.first,
                    end: s.end,
                    classes,
                });
            }
            if ck.target(t).is_some() && s.target_logit.is_none() {
                return Err(Error::ShardMissingTarget { row });
            }
        }
        Ok(ck)
    }
}
