//! The result of a cross-entropy call.

/// What a cross-entropy call reports.
///
/// `value` is the reduced loss (mean or sum, see [`crate::Reduction`]), accumulated in f64
/// in a fixed order and rounded once to f32; `rows` counts the rows that were not ignored;
/// `correct` counts those whose argmax (first index on ties) equals the target, so
/// `correct / rows` is the batch accuracy. A row whose loss is NaN (a NaN or +inf logit,
/// all logits -inf, or label smoothing meeting a -inf logit of a class of weight 0) is
/// never counted as correct.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Loss {
    /// The reduced loss (z-loss included).
    pub value: f32,
    /// The z-loss part of `value`, reduced the same way (0 without
    /// [`z_loss`](crate::CrossEntropy::z_loss)).
    pub z_loss: f32,
    /// Rows counted (targets not equal to the ignore index).
    pub rows: usize,
    /// Counted rows whose predicted class equals the target.
    pub correct: usize,
    /// The mean's divisor: the sum over counted rows of the target's class weight (equal to
    /// `rows` without class weights).
    pub weight: f64,
}

impl Loss {
    /// `correct / rows`, or 0 when no row was counted.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2);
    /// let loss = ce.forward(&[1.0, 0.0, 1.0, 0.0], &[0u8, 1])?;
    /// assert_eq!((loss.rows, loss.correct, loss.accuracy()), (2, 1, 0.5));
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn accuracy(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.correct as f64 / self.rows as f64
        }
    }
}
