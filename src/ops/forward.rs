//! The forward entry points on f32 logits (loss; loss and gradient in place or into a
//! buffer; with per-row outputs) and the choice of path for a validated call: the
//! row-group path (at most `SMALL_MAX_CLASSES` classes, plain options), the fused rows
//! (at most `FUSED_MAX_CLASSES`), or the blocked path ([`super::blocked`]).

use super::blocked::blocked;
use crate::arch::small::SmallJob;
use crate::arch::{Io, RowOut, RowPlan, RowsJob};
use crate::kernel::with_backend;
use crate::ops::scratch::with_scratch;
use crate::outputs::{RowOutputs, Sinks};
use crate::parallel::{for_chunks_of_rows, for_row_chunks, rows_per_chunk, rows_per_linked_chunk};
use crate::paths::{FUSED_MAX_CLASSES, SMALL_MAX_CLASSES, stages_into, trails};
use crate::plan::{Checked, RowSums};
use crate::stats::Merged;
use crate::{CrossEntropy, Error, Loss, Target};

impl CrossEntropy {
    /// The loss without a gradient; the logits are only read. Non-finite logits follow
    /// PyTorch (see the crate docs): NaN or +inf makes the row's loss NaN, -inf is a mask.
    ///
    /// # Errors
    /// Any option error, and [`Error::LogitsShape`], [`Error::TargetsLength`],
    /// [`Error::TargetOutOfRange`] for inconsistent inputs.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2);
    /// let loss = ce.forward(&[0.0, 0.0], &[1u8])?;
    /// assert!((loss.value - std::f32::consts::LN_2).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward<T: Target>(&self, logits: &[f32], targets: &[T]) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        Ok(self.run(&ck, Io::Read(logits), targets, Sinks::default()))
    }

    /// The loss, with the gradient `dLoss/dlogits` written over the logits.
    ///
    /// # Errors
    /// As [`forward`](Self::forward). On error the logits are unchanged.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2).reduction(xent::Reduction::Sum);
    /// let mut z = [0.0f32, 0.0];
    /// ce.forward_backward(&mut z, &[1u8])?;
    /// assert_eq!(z, [0.5, -0.5]); // softmax - onehot
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward<T: Target>(
        &self,
        logits: &mut [f32],
        targets: &[T],
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        Ok(self.run(&ck, Io::InPlace(logits), targets, Sinks::default()))
    }

    /// The loss, with the gradient written into `grad` (same length as `logits`).
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`Error::OutputLength`] for a wrong `grad`
    /// length. On error `grad` is unchanged.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2);
    /// let mut g = [0.0f32; 2];
    /// ce.forward_backward_into(&[0.0, 0.0], &[0i64], &mut g)?;
    /// assert_eq!(g, [-0.5, 0.5]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward_into<T: Target>(
        &self,
        logits: &[f32],
        targets: &[T],
        grad: &mut [f32],
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, Some(grad.len()))?;
        Ok(self.run(&ck, Io::Into(logits, grad), targets, Sinks::default()))
    }

    /// [`forward`](Self::forward), also writing per-row results into the buffers of
    /// `outputs` (one value per row): the unreduced row losses (PyTorch's
    /// `reduction='none'`, z-loss included) and the rows' log-sum-exp, which
    /// [`backward`](Self::backward) takes to form a gradient later without the max and sum
    /// passes. Ignored rows get a loss of 0 and an LSE of 0. The LSE is NaN where the
    /// row's log-sum-exp is undefined (a NaN or +inf logit, or every logit -inf); a row
    /// whose loss is NaN only through its smoothing term (a class of weight 0 whose logit
    /// is -inf: `0 * -inf`, as in PyTorch) keeps its finite log-sum-exp, which is the
    /// right one for [`backward`](Self::backward).
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`Error::OutputLength`] for a per-row buffer
    /// whose length is not the number of rows. On error the buffers are unchanged.
    ///
    /// ```
    /// use xent::{CrossEntropy, Reduction, RowOutputs};
    /// let ce = CrossEntropy::new(2).reduction(Reduction::None);
    /// let (mut losses, mut lse) = ([0.0f32; 2], [0.0f32; 2]);
    /// let z = [0.0, 0.0, 5.0, 0.0];
    /// let loss = ce.forward_with(&z, &[0u8, 0], RowOutputs::new().losses(&mut losses).lse(&mut lse))?;
    /// assert!((losses[0] - std::f32::consts::LN_2).abs() < 1e-6);
    /// assert!(losses[1] < losses[0]);
    /// assert!((loss.value - (losses[0] + losses[1])).abs() < 1e-6);
    /// assert!((lse[0] - std::f32::consts::LN_2).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_with<T: Target>(
        &self,
        logits: &[f32],
        targets: &[T],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        let sinks = outputs.checked(targets.len())?;
        Ok(self.run(&ck, Io::Read(logits), targets, sinks))
    }

    /// [`forward_backward`](Self::forward_backward), also writing the per-row results of
    /// [`forward_with`](Self::forward_with).
    ///
    /// # Errors
    /// As [`forward_with`](Self::forward_with); on error nothing is written.
    ///
    /// ```
    /// use xent::{CrossEntropy, RowOutputs};
    /// let mut lse = [0.0f32; 1];
    /// let mut z = [0.0f32, 0.0];
    /// CrossEntropy::new(2).forward_backward_with(&mut z, &[1u8], RowOutputs::new().lse(&mut lse))?;
    /// assert_eq!(z, [0.5, -0.5]);
    /// assert!((lse[0] - std::f32::consts::LN_2).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward_with<T: Target>(
        &self,
        logits: &mut [f32],
        targets: &[T],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        let sinks = outputs.checked(targets.len())?;
        Ok(self.run(&ck, Io::InPlace(logits), targets, sinks))
    }

    /// Runs a validated call on the row-group, fused or blocked path and reduces the loss.
    pub(crate) fn run<T: Target>(
        &self,
        ck: &Checked<'_>,
        io: Io<'_>,
        targets: &[T],
        sinks: Sinks<'_>,
    ) -> Loss {
        let sums = ck.run_rows(io, targets, sinks, None);
        self.reduce(ck, sums)
    }
}

impl Checked<'_> {
    /// The unreduced sums over all rows, by the path the shape and options select; per-row
    /// results go to `sinks`.
    pub(crate) fn run_rows<T: Target>(
        &self,
        io: Io<'_>,
        targets: &[T],
        sinks: Sinks<'_>,
        prefetch: Option<(usize, usize)>,
    ) -> RowSums {
        // The row-group path computes its losses in f32 at a fixed scale and has no
        // per-row outputs: options beyond PyTorch's take the fused path.
        let plain = self.zc == 0.0 && self.cap.is_none() && sinks.is_empty();
        if self.classes <= SMALL_MAX_CLASSES && plain {
            let (loss, correct) = small(self, io, targets);
            RowSums {
                loss,
                z: 0.0,
                correct,
            }
        } else if self.classes <= FUSED_MAX_CLASSES {
            fused(self, io, targets, sinks, prefetch)
        } else {
            blocked(self, io, targets, sinks)
        }
    }
}

/// Rows of at most 64 classes: the row-group kernel, chunks of rows across threads,
/// chunk losses summed in chunk order.
fn small<T: Target>(ck: &Checked<'_>, io: Io<'_>, targets: &[T]) -> (f64, usize) {
    let job = SmallJob {
        classes: ck.classes,
        eps1: (1.0 - ck.eps) as f32,
        k: ck.k as f32,
        sum_w: ck.sum_w as f32,
        scale: ck.scale as f32,
        zero_grad: ck.zero_grad,
        smooth: ck.smooth(),
        beta: ck.beta(),
        unit_weights: ck.weights.is_none(),
    };
    let (mut total, mut correct) = (0f64, 0usize);
    for_row_chunks(
        ck.run,
        io,
        ck.classes,
        |row0, chunk| {
            let targets = &targets[row0..];
            let ignore = ck.ignore.map(|i| i as i64);
            // Called once per batch, through a trait object; the conversion itself runs
            // at the kernel's vector width.
            let mut plan = |r0: usize, tg: &mut [f32], wt: &mut [f32]| {
                with_backend!(ck.backend, k => {
                    k.plan_targets(&targets[r0..], ignore, ck.weights, tg, wt)
                })
            };
            with_backend!(ck.backend, k => k.ce_small(chunk, &job, &mut plan))
        },
        |(l, c)| {
            total += l;
            correct += c;
        },
    );
    (total, correct)
}

/// Rows that fit in L2: three passes per row inside the kernel, chunks of rows across
/// threads (longer chunks where the kernel links consecutive rows), chunk sums added in
/// chunk order. A separate gradient output of rows that [`stages_into`] is formed in the
/// thread's scratch row and streamed out.
fn fused<T: Target>(
    ck: &Checked<'_>,
    io: Io<'_>,
    targets: &[T],
    sinks: Sinks<'_>,
    prefetch: Option<(usize, usize)>,
) -> RowSums {
    let job = |row0: usize| RowsJob {
        classes: ck.classes,
        smooth: ck.smooth(),
        beta: ck.beta(),
        cap: ck.cap,
        prefetch: prefetch.map(|(base, stride)| (base.wrapping_add(row0 * stride), stride)),
        group_long: ck.backend.groups_long_rows(),
    };
    let mut sums = RowSums::default();
    let c = ck.classes;
    let linked = ck.backend.stages_linked_rows();
    let per = if trails(c) {
        rows_per_linked_chunk(c, io.len() / c)
    } else {
        rows_per_chunk(c)
    };
    for_chunks_of_rows(
        ck.run,
        io,
        sinks,
        c,
        per,
        |row0, chunk, mut sinks| {
            let mut sums = RowSums::default();
            // The callbacks borrow `sums` until they are dropped, at the block's end.
            {
                let targets = &targets[row0..];
                let plan = &mut row_plans(ck, targets);
                let out = &mut row_outs(ck, targets, &mut sinks, &mut sums);
                if matches!(chunk, Io::Into(..)) && stages_into(c, ck.cap.is_some(), linked) {
                    with_scratch(
                        c,
                        |stage| with_backend!(ck.backend, k => k.ce_rows(chunk, stage, &job(row0), plan, out)),
                    );
                } else {
                    with_backend!(ck.backend, k => k.ce_rows(chunk, &mut [], &job(row0), plan, out));
                }
            }
            sums
        },
        |s| sums.add(s),
    );
    sums
}

/// The fused kernels' `plan` for one chunk whose rows start at `targets[0]`:
/// `plan(r0, plans)` gives the targets and gradient coefficients of rows `r0..`.
pub(crate) fn row_plans<'a, T: Target>(
    ck: &'a Checked<'_>,
    targets: &'a [T],
) -> impl FnMut(usize, &mut [RowPlan]) + 'a {
    move |r0: usize, plans: &mut [RowPlan]| {
        debug_assert!(r0 + plans.len() <= targets.len());
        for (p, &t) in plans.iter_mut().zip(&targets[r0..]) {
            *p = ck.plan(t);
        }
    }
}

/// The fused kernels' `out` for the same chunk: `out(r0, stats)` forms each counted
/// row's loss from its statistics, writes it to `sinks` (whose ignored rows are zeroed
/// first) and adds it to `sums`.
pub(crate) fn row_outs<'a, T: Target>(
    ck: &'a Checked<'_>,
    targets: &'a [T],
    sinks: &'a mut Sinks<'_>,
    sums: &'a mut RowSums,
) -> impl FnMut(usize, &[Option<RowOut>]) + 'a {
    sinks.fill_ignored();
    move |r0: usize, stats: &[Option<RowOut>]| {
        for (k, o) in stats.iter().enumerate() {
            let (Some(o), Some(t)) = (o, ck.target(targets[r0 + k])) else {
                continue;
            };
            let m = Merged::from_block(o.stats, 0, ck.classes, 0.0);
            let row = ck.row_loss(t, &m, o.target_logit);
            sinks.put(r0 + k, &row);
            sums.add(RowSums {
                loss: row.loss,
                z: row.z,
                correct: usize::from(row.correct),
            });
        }
    }
}
