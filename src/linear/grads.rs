//! The gradient buffers of a fused linear head's backward ([`LinearGrads`]).

use super::LinearFloat;

/// Where [`LinearCrossEntropy::forward_backward`](crate::LinearCrossEntropy::forward_backward)
/// writes the gradients: `d_hidden` (the shape of the hidden states), `d_weight` (the
/// shape of the weight), and optionally `d_bias` (one per vocabulary entry). They are
/// overwritten unless [`accumulate`](Self::accumulate) is set, in which case the
/// gradients are added to what the buffers hold (gradient accumulation over
/// micro-batches; the sum is formed in f32 and rounded once for 16-bit buffers).
///
/// ```
/// use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};
/// let head = LinearCrossEntropy::new(CrossEntropy::new(3), 2);
/// let (hidden, weight) = ([1.0f32, 0.0], [1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0]);
/// let (mut dh, mut dw, mut db) = ([0.0f32; 2], [0.0f32; 6], [0.0f32; 3]);
/// let grads = LinearGrads::new(&mut dh, &mut dw).bias(&mut db);
/// head.forward_backward(&hidden, &weight, None, &[0u32], grads)?;
/// // d_bias is the logits' gradient summed over rows: softmax - onehot sums to 0.
/// assert!(db.iter().sum::<f32>().abs() < 1e-6 && db[0] < 0.0);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug)]
pub struct LinearGrads<'a, T: LinearFloat> {
    pub(crate) hidden: &'a mut [T],
    pub(crate) weight: &'a mut [T],
    pub(crate) bias: Option<&'a mut [T]>,
    pub(crate) accumulate: bool,
}

impl<'a, T: LinearFloat> LinearGrads<'a, T> {
    /// Gradient buffers for the hidden states and the weight, overwritten by the call.
    pub fn new(d_hidden: &'a mut [T], d_weight: &'a mut [T]) -> Self {
        LinearGrads {
            hidden: d_hidden,
            weight: d_weight,
            bias: None,
            accumulate: false,
        }
    }

    /// Also write the bias gradient (the logits' gradient summed over rows) into `d_bias`.
    pub fn bias(mut self, d_bias: &'a mut [T]) -> Self {
        self.bias = Some(d_bias);
        self
    }

    /// `true`: add the gradients to the buffers' contents instead of overwriting them.
    ///
    /// ```
    /// use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads, Reduction};
    /// let head = LinearCrossEntropy::new(CrossEntropy::new(2).reduction(Reduction::Sum), 1);
    /// let (mut dh, mut dw) = ([0.0f32], [0.0f32; 2]);
    /// for _ in 0..2 {
    ///     let grads = LinearGrads::new(&mut dh, &mut dw).accumulate(true);
    ///     head.forward_backward(&[1.0f32], &[0.0, 0.0], None, &[0u8], grads)?;
    /// }
    /// // Logits 0 and 0: softmax - onehot = [-0.5, 0.5], times h = 1, twice.
    /// assert_eq!(dw, [-1.0, 1.0]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn accumulate(mut self, accumulate: bool) -> Self {
        self.accumulate = accumulate;
        self
    }
}
