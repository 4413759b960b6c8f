//! Per-row outputs of a call ([`RowOutputs`]: unreduced losses, log-sum-exp, predicted
//! classes), checked and cut along with the rows ([`Sinks`]).

#[cfg(doc)]
use crate::CrossEntropy;
use crate::Error;
use crate::arch::Beta;
use crate::parallel::SplitRows;
use crate::plan::RowLoss;

/// Caller buffers for per-row results, one value per row, for
/// [`CrossEntropy::forward_with`], [`CrossEntropy::forward_backward_with`] and their
/// half-precision forms. Any of them may be given; rows the ignore index skips get 0 (a
/// loss or log-sum-exp) and `usize::MAX` (a prediction).
///
/// ```
/// let ce = xent::CrossEntropy::new(3).ignore_index(-1);
/// let mut logits = vec![0.0f32, 2.0, 1.0, /* row 2 */ 5.0, 0.0, 0.0, /* ignored */ 0.0, 0.0, 9.0];
/// let (mut losses, mut lse, mut predicted) = (vec![0.0f32; 3], vec![0.0f32; 3], vec![0usize; 3]);
/// let outputs = xent::RowOutputs::new()
///     .losses(&mut losses)
///     .lse(&mut lse)
///     .predictions(&mut predicted);
/// // The predicted classes outlive the logits, which now hold the gradient.
/// let loss = ce.forward_backward_with(&mut logits, &[1i64, 2, -1], outputs)?;
/// assert_eq!(predicted, [1, 0, usize::MAX]);
/// assert_eq!((loss.rows, loss.correct), (2, 1));
/// assert_eq!(losses[2], 0.0);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct RowOutputs<'a> {
    losses: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    predictions: Option<&'a mut [usize]>,
}

impl<'a> RowOutputs<'a> {
    /// No per-row outputs.
    pub fn new() -> Self {
        RowOutputs::default()
    }

    /// Write each row's unreduced loss (weighted, smoothed, z-loss included; 0 for an
    /// ignored row) into `buf`, one value per row.
    pub fn losses(mut self, buf: &'a mut [f32]) -> Self {
        self.losses = Some(buf);
        self
    }

    /// Write each row's log-sum-exp (of the soft-capped logits when capping is on; 0 for
    /// an ignored row; NaN where it is undefined: a NaN or +inf logit, or every logit
    /// -inf) into `buf`, one value per row. A row whose loss is NaN only through label
    /// smoothing (`0 * -inf` for a -inf logit of a class of weight 0) keeps its finite
    /// log-sum-exp.
    pub fn lse(mut self, buf: &'a mut [f32]) -> Self {
        self.lse = Some(buf);
        self
    }

    /// Write each row's predicted class into `buf`, one per row: the first index of the
    /// row's largest logit (of the raw logits, before any soft-capping; NaN entries never
    /// win; 0 if no entry is a number above -inf), the class that
    /// [`Loss::correct`](crate::Loss::correct) compares with the target. An ignored row
    /// gets `usize::MAX`. The gradient overwrites the logits, so this is the way to keep
    /// the predictions of a `forward_backward` call.
    pub fn predictions(mut self, buf: &'a mut [usize]) -> Self {
        self.predictions = Some(buf);
        self
    }

    /// The buffers, after checking their lengths against `rows`.
    pub(crate) fn checked(self, rows: usize) -> Result<Sinks<'a>, Error> {
        let lens = [
            self.losses.as_ref().map(|b| b.len()),
            self.lse.as_ref().map(|b| b.len()),
            self.predictions.as_ref().map(|b| b.len()),
        ];
        if let Some(len) = lens.into_iter().flatten().find(|&len| len != rows) {
            return Err(Error::OutputLength {
                len,
                expected: rows,
            });
        }
        Ok(Sinks {
            loss: self.losses,
            lse: self.lse,
            pred: self.predictions,
        })
    }
}

/// Length-checked per-row output buffers, cut along with the rows.
#[derive(Debug, Default)]
pub(crate) struct Sinks<'a> {
    loss: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    pred: Option<&'a mut [usize]>,
}

impl Sinks<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.loss.is_none() && self.lse.is_none() && self.pred.is_none()
    }

    /// Every buffer set to the value of an ignored row (the counted rows are then
    /// written by [`put`](Self::put)).
    pub(crate) fn fill_ignored(&mut self) {
        for b in [&mut self.loss, &mut self.lse].into_iter().flatten() {
            b.fill(0.0);
        }
        if let Some(b) = &mut self.pred {
            b.fill(usize::MAX);
        }
    }

    /// Row `r`'s results.
    pub(crate) fn put(&mut self, r: usize, row: &RowLoss) {
        if let Some(b) = &mut self.loss {
            b[r] = row.loss as f32;
        }
        if let Some(b) = &mut self.lse {
            b[r] = row.lse as f32;
        }
        if let Some(b) = &mut self.pred {
            b[r] = row.predicted;
        }
    }
}

/// Splits an optional per-row buffer after `rows` rows.
fn split_opt<T>(b: Option<&mut [T]>, rows: usize) -> (Option<&mut [T]>, Option<&mut [T]>) {
    match b {
        None => (None, None),
        Some(b) => {
            let (x, y) = b.split_at_mut(rows);
            (Some(x), Some(y))
        }
    }
}

impl SplitRows for Sinks<'_> {
    fn split_rows(self, rows: usize) -> (Self, Self) {
        let (l0, l1) = split_opt(self.loss, rows);
        let (s0, s1) = split_opt(self.lse, rows);
        let (p0, p1) = split_opt(self.pred, rows);
        (
            Sinks {
                loss: l0,
                lse: s0,
                pred: p0,
            },
            Sinks {
                loss: l1,
                lse: s1,
                pred: p1,
            },
        )
    }
}

/// Keeps `Beta` in the signature of `upstream_plan` readable.
pub(crate) type UpstreamPlan<'a> = Option<(usize, f64, f64, Beta<'a>)>;
