//! Row-wise softmax, log-softmax and log-sum-exp, on the same kernels as the loss.
//!
//! Non-finite values follow PyTorch: a row with a NaN or +inf gives a NaN row from
//! `softmax`/`log_softmax`; a row of all -inf gives NaN there too; `-inf` entries of an
//! otherwise finite row get probability exactly 0 (log-probability -inf). `logsumexp`
//! follows `torch.logsumexp`: NaN if the row has a NaN, else +inf if it has a +inf, else
//! -inf if every entry is -inf.

use crate::arch::fused::{RowOut, RowPlan, RowsJob};
use crate::arch::math::Cap;
use crate::arch::{Beta, BlockStats, Io, Smooth};
use crate::kernel::{Backend, with_backend};
use crate::parallel::{for_row_chunks, for_row_chunks_with, go_parallel, par_map, rows_per_chunk};
use crate::paths::{BLOCK_CLASSES, FUSED_MAX_CLASSES};
use crate::stats::{Merged, logsumexp_of};
use crate::threads::Run;
use crate::{CrossEntropy, Error};

impl CrossEntropy {
    /// Softmax of each row of `x` (rows of [`classes`](Self::classes)), in place.
    ///
    /// # Errors
    /// [`Error::ZeroClasses`], [`Error::LogitsShape`], [`Error::KernelUnavailable`];
    /// the data is unchanged on error.
    ///
    /// ```
    /// let mut x = [0.0f32, 0.0, f32::NEG_INFINITY];
    /// xent::CrossEntropy::new(3).softmax(&mut x)?;
    /// assert_eq!(x, [0.5, 0.5, 0.0]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn softmax(&self, x: &mut [f32]) -> Result<(), Error> {
        let b = self.check_rows(x.len(), None)?;
        rows_apply(b, self.get_classes(), Io::InPlace(x), false);
        Ok(())
    }

    /// Softmax of each row of `x` into `out` (same length).
    ///
    /// # Errors
    /// As [`softmax`](Self::softmax), plus [`Error::OutputLength`]; `out` is unchanged on
    /// error.
    ///
    /// ```
    /// let mut p = [0.0f32; 4];
    /// xent::CrossEntropy::new(2).softmax_into(&[0.0, 0.0, f32::NAN, 1.0], &mut p)?;
    /// assert_eq!(&p[..2], &[0.5, 0.5]);
    /// assert!(p[2].is_nan() && p[3].is_nan()); // a NaN poisons its row only
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn softmax_into(&self, x: &[f32], out: &mut [f32]) -> Result<(), Error> {
        let b = self.check_rows(x.len(), Some(out.len()))?;
        rows_apply(b, self.get_classes(), Io::Into(x, out), false);
        Ok(())
    }

    /// Log-softmax of each row, in place: `(z_j - max) - ln sum_k exp(z_k - max)`.
    ///
    /// # Errors
    /// As [`softmax`](Self::softmax).
    ///
    /// ```
    /// let mut x = [1.0f32, 1.0];
    /// xent::CrossEntropy::new(2).log_softmax(&mut x)?;
    /// assert!((x[0] + std::f32::consts::LN_2).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn log_softmax(&self, x: &mut [f32]) -> Result<(), Error> {
        let b = self.check_rows(x.len(), None)?;
        rows_apply(b, self.get_classes(), Io::InPlace(x), true);
        Ok(())
    }

    /// Log-softmax of each row of `x` into `out` (same length).
    ///
    /// # Errors
    /// As [`softmax_into`](Self::softmax_into).
    ///
    /// ```
    /// let mut lp = [0.0f32; 2];
    /// xent::CrossEntropy::new(2).log_softmax_into(&[0.0, f32::NEG_INFINITY], &mut lp)?;
    /// assert_eq!(lp, [0.0, f32::NEG_INFINITY]); // a -inf logit is a mask
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn log_softmax_into(&self, x: &[f32], out: &mut [f32]) -> Result<(), Error> {
        let b = self.check_rows(x.len(), Some(out.len()))?;
        rows_apply(b, self.get_classes(), Io::Into(x, out), true);
        Ok(())
    }

    /// `ln sum_j exp(z_j)` of each row into `out` (one value per row). Rows of up to
    /// 131072 classes are read as [`forward`](Self::forward) reads them, on the same
    /// passes.
    ///
    /// # Errors
    /// [`Error::ZeroClasses`], [`Error::LogitsShape`], [`Error::KernelUnavailable`], and
    /// [`Error::OutputLength`] if `out.len()` is not the number of rows.
    ///
    /// ```
    /// let mut lse = [0.0f32; 2];
    /// xent::CrossEntropy::new(2).logsumexp(&[0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY], &mut lse)?;
    /// assert_eq!(lse, [std::f32::consts::LN_2, f32::NEG_INFINITY]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn logsumexp(&self, x: &[f32], out: &mut [f32]) -> Result<(), Error> {
        let (b, run) = self.check_options()?;
        let c = self.get_classes();
        if !x.len().is_multiple_of(c) {
            return Err(Error::LogitsShape {
                len: x.len(),
                classes: c,
            });
        }
        if out.len() != x.len() / c {
            return Err(Error::OutputLength {
                len: out.len(),
                expected: x.len() / c,
            });
        }
        if c <= FUSED_MAX_CLASSES {
            // The passes `forward` runs (grouped, prefetched, online), not one `stats` call
            // per row.
            let lse = |_, row: &[f32], s| logsumexp_of(&Merged::from_block(s, 0, c, 0.0), row);
            fused_row_stats((b, run), x, c, (Smooth::Off, None), out, lse);
            return Ok(());
        }
        let per = rows_per_chunk(c);
        let chunk = |(xs, os): (&[f32], &mut [f32])| {
            for (row, o) in xs.chunks_exact(c).zip(os.iter_mut()) {
                *o = logsumexp_of(&row_stats(b, row, Smooth::Off, 0.0), row);
            }
        };
        // Rows are independent and nothing is summed across them: any split is exact.
        if go_parallel(run, x.len()) {
            let pieces: Vec<_> = x.chunks(per * c).zip(out.chunks_mut(per)).collect();
            par_map(run, pieces, |_, piece| chunk(piece));
        } else {
            x.chunks(per * c).zip(out.chunks_mut(per)).for_each(chunk);
        }
        Ok(())
    }

    /// Options and shape checks for the row-wise functions (targets are not involved).
    fn check_rows(&self, len: usize, out: Option<usize>) -> Result<(Backend, Run<'_>), Error> {
        let b = self.check_options()?;
        let c = self.get_classes();
        if !len.is_multiple_of(c) {
            return Err(Error::LogitsShape { len, classes: c });
        }
        if let Some(out) = out.filter(|&o| o != len) {
            return Err(Error::OutputLength {
                len: out,
                expected: len,
            });
        }
        Ok(b)
    }
}

/// Every row's statistics (rows of `c <= FUSED_MAX_CLASSES` classes) from the fused row
/// driver without a gradient: the passes `forward` runs, so short rows go in groups, the
/// next row is prefetched, and long plain rows are read once (online). `each(r, row, s)`
/// turns row `r`'s statistics into `out[r]`.
///
/// A row whose max is not finite gets whatever the driver's passes give, not the zero
/// or NaN sum that [`stats`](crate::arch::pass::stats::stats) gives a row without a
/// finite value: `each` decides what such rows get.
pub(crate) fn fused_row_stats<T: Send>(
    (b, run): (Backend, Run<'_>),
    x: &[f32],
    c: usize,
    (smooth, cap): (Smooth<'_>, Option<Cap>),
    out: &mut [T],
    each: impl Fn(usize, &[f32], BlockStats) -> T + Sync,
) {
    debug_assert!(c <= FUSED_MAX_CLASSES && x.len() == out.len() * c);
    let job = RowsJob {
        classes: c,
        smooth,
        beta: Beta::Zero,
        cap,
        prefetch: None,
        group_long: b.groups_long_rows(),
    };
    // Every row is counted (the driver skips rows without a target); the target's logit,
    // read in pass 1, is not used.
    let counted = RowPlan {
        target: Some(0),
        grad_a: 0.0,
        zloss: 0.0,
        tfix: 0.0,
        zero_grad: false,
    };
    for_row_chunks_with(
        run,
        Io::Read(x),
        out,
        c,
        |row0, chunk, out: &mut [T]| {
            let z = chunk.src();
            let plan = &mut |_, plans: &mut [RowPlan]| plans.fill(counted);
            let done = &mut |r0: usize, stats: &[Option<RowOut>]| {
                for (k, s) in stats.iter().enumerate() {
                    if let Some(s) = s {
                        let r = r0 + k;
                        out[r] = each(row0 + r, &z[r * c..(r + 1) * c], s.stats);
                    }
                }
            };
            with_backend!(b, k => k.ce_rows(Io::Read(z), &mut [], &job, plan, done));
        },
        |()| {},
    );
}

/// Statistics of one whole row: one kernel call when it fits the fused path, else merged
/// blocks. `weight` is the sum of the smoothing weights (unused without smoothing).
pub(crate) fn row_stats(b: Backend, row: &[f32], smooth: Smooth<'_>, weight: f64) -> Merged {
    if row.len() <= FUSED_MAX_CLASSES {
        let s: BlockStats = with_backend!(b, k => k.stats(row, smooth, None));
        return Merged::from_block(s, 0, row.len(), weight);
    }
    let mut merged: Option<Merged> = None;
    for (i, z) in row.chunks(BLOCK_CLASSES).enumerate() {
        let s: BlockStats = with_backend!(b, k => k.stats(z, Smooth::Off, None));
        let m = Merged::from_block(s, i * BLOCK_CLASSES, z.len(), 0.0);
        merged = Some(merged.map_or(m, |acc| acc.combine(m)));
    }
    merged.unwrap_or(Merged {
        argmax: 0,
        smooth_weight: weight,
        ..Merged::EMPTY
    })
}

/// Softmax or log-softmax of every row of `io` into its destination.
fn rows_apply((b, run): (Backend, Run<'_>), c: usize, io: Io<'_>, log: bool) {
    if c <= FUSED_MAX_CLASSES {
        // Grouped longer rows gained in place only: into a separate output they lost at
        // 500 classes (`GROUP_LONG_MAX_CLASSES`'s doc).
        let group_long = b.groups_long_rows() && matches!(io, Io::InPlace(_));
        for_row_chunks(
            run,
            io,
            c,
            |_, chunk| with_backend!(b, k => k.softmax_rows(chunk, c, log, group_long)),
            |()| {},
        );
        return;
    }
    // Long rows: statistics from merged blocks, then one more sweep per block.
    for_row_chunks(
        run,
        io,
        c,
        |_, mut chunk| {
            let rows = chunk.len() / c;
            for _ in 0..rows {
                let (mut row, rest) = chunk.split_at(c);
                chunk = rest;
                let m = row_stats(b, row.src(), Smooth::Off, 0.0);
                let ln_s = m.ln_sum();
                let mut off = 0;
                while off < c {
                    let w = BLOCK_CLASSES.min(c - off);
                    let (blk, tail) = row.split_at(w);
                    row = tail;
                    if log {
                        with_backend!(b, k => k.shift(blk, m.max, ln_s as f32));
                    } else {
                        let alpha = (1.0
                            / if m.max == f32::NEG_INFINITY {
                                f64::NAN
                            } else {
                                m.sum
                            }) as f32;
                        with_backend!(b, k => k.grad_from_stats(blk, m.max, alpha, crate::arch::Beta::Zero, None));
                    }
                    off += w;
                }
            }
        },
        |()| {},
    );
}
