//! Per-row outputs of a call ([`RowOutputs`]: unreduced losses, log-sum-exp), checked and
//! cut along with the rows ([`Sinks`]).

#[cfg(doc)]
use crate::CrossEntropy;
use crate::Error;
use crate::arch::Beta;
use crate::parallel::SplitRows;

/// Caller buffers for per-row results, one `f32` per row, for
/// [`CrossEntropy::forward_with`] and [`CrossEntropy::forward_backward_with`].
///
/// ```
/// let (mut losses, mut lse) = (vec![0.0f32; 4], vec![0.0f32; 4]);
/// let outputs = xent::RowOutputs::new().losses(&mut losses).lse(&mut lse);
/// # drop(outputs);
/// ```
#[derive(Debug, Default)]
pub struct RowOutputs<'a> {
    losses: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
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

    /// The buffers, after checking their lengths against `rows`.
    pub(crate) fn checked(self, rows: usize) -> Result<Sinks<'a>, Error> {
        for b in [&self.losses, &self.lse].into_iter().flatten() {
            if b.len() != rows {
                return Err(Error::OutputLength {
                    len: b.len(),
                    expected: rows,
                });
            }
        }
        Ok(Sinks {
            loss: self.losses,
            lse: self.lse,
        })
    }
}

/// Length-checked per-row output buffers, cut along with the rows.
#[derive(Debug, Default)]
pub(crate) struct Sinks<'a> {
    loss: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
}

impl Sinks<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.loss.is_none() && self.lse.is_none()
    }

    /// Zeros every buffer (the value of ignored rows).
    pub(crate) fn fill_zero(&mut self) {
        for b in [&mut self.loss, &mut self.lse].into_iter().flatten() {
            b.fill(0.0);
        }
    }

    /// Row `r`'s results.
    pub(crate) fn put(&mut self, r: usize, loss: f64, lse: f64) {
        if let Some(b) = &mut self.loss {
            b[r] = loss as f32;
        }
        if let Some(b) = &mut self.lse {
            b[r] = lse as f32;
        }
    }
}

/// Splits an optional per-row buffer after `rows` rows.
fn split_opt(b: Option<&mut [f32]>, rows: usize) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
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
        (Sinks { loss: l0, lse: s0 }, Sinks { loss: l1, lse: s1 })
    }
}

/// Keeps `Beta` in the signature of `upstream_plan` readable.
pub(crate) type UpstreamPlan<'a> = Option<(usize, f64, f64, Beta<'a>)>;
