//! The fused linear + cross-entropy head of a language model ([`LinearCrossEntropy`]):
//! loss and gradients of `cross_entropy(hidden W^T + b, targets)` without the `N x V`
//! logits.
//!
//! # The maths
//!
//! With hidden states `H` (`N x d`), weight `W` (`V x d`, `nn.Linear`'s layout), bias `b`
//! and `Z = H W^T + b`, let `G = dLoss/dZ` (the gradient the cross-entropy kernels write
//! over the logits, reduction scale included). Then
//!
//! ```text
//! dLoss/dH = G W        dLoss/dW = G^T H        dLoss/db = sum over rows of G
//! ```
//!
//! # Memory passes
//!
//! The rows are cut into chunks of `R` rows, `R` from the memory budget (the chunk's f32
//! logits, `4 R V` bytes, fit in it; at least one row). For each chunk, in row order:
//!
//! 1. `Z_R = H_R W^T` into the chunk buffer (the bias copied in first): GEMM, `2 R V d`;
//! 2. the cross-entropy kernels on `Z_R`, in place: loss, per-row outputs and `G_R`,
//!    scaled by the divisor of the whole batch (counted before the first chunk);
//! 3. with gradients: `dH_R = G_R W` (`2 R V d`), `dW += G_R^T H_R` (`2 R V d`) and the
//!    bias gradient's column sums (f64, row order).
//!
//! That is Liger Kernel's scheme: the gradient is formed during the forward, `6 N V d`
//! flops in all, not the `8 N V d` of recomputing the logits in a backward. Chunks run one
//! after the other and the GEMMs and kernels are deterministic for any thread count, so
//! every output is bit-identical whatever the threads (for one memory budget and one
//! kernel variant: the budget moves the chunk boundaries, hence the order of `dW`'s sums).
//!
//! 16-bit element types widen the weight once per call into f32 (`4 V d` bytes, reused
//! by every chunk), each chunk's hidden rows into f32, and accumulate `dW` in an f32
//! buffer (`4 V d` bytes) that is rounded into the caller's buffer at the end.

mod chunks;
mod elem;
mod filter;
mod gemm;
mod grads;

pub use elem::LinearFloat;
pub use grads::LinearGrads;

use crate::outputs::RowOutputs;
use crate::plan::Checked;
use crate::{CrossEntropy, Error, Loss, Target};

/// The default memory budget for a chunk's logits: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

/// A language-model head: a linear layer (`weight`, optional `bias`) followed by
/// cross-entropy, fused so that the `N x V` logits are never held in memory. Every
/// [`CrossEntropy`] option applies with the meaning it has on the logits; the result is
/// the unfused call's ([`Loss`], per-row outputs), and `forward_backward` also gives the
/// gradients of the hidden states, the weight and the bias.
///
/// **How.** With `Z = H W^T + b` and `G = dLoss/dZ` (what [`CrossEntropy::forward_backward`]
/// writes over the logits, the reduction's scale included), `dLoss/dH = G W`,
/// `dLoss/dW = G^T H` and `dLoss/db` is `G` summed over rows. The rows are cut into
/// chunks of [`chunk_rows`](Self::chunk_rows) rows whose f32 logits fit the
/// [`memory_budget`](Self::memory_budget); per chunk, in row order: the logits by one
/// GEMM, the cross-entropy kernels on them in place (scaled by the whole batch's mean
/// divisor), then `dH` of the chunk and its share of `dW` by two more GEMMs. That is
/// `6 N V d` flops, nothing recomputed (Liger Kernel's scheme). The GEMMs are `faer`'s,
/// with its own runtime choice of AVX-512 or AVX2 kernels (independent of
/// [`CrossEntropy::kernel`], which picks the cross-entropy kernel), on the threads of
/// [`CrossEntropy::threads`].
///
/// **Exactness.** Results are bit-identical for any thread count, for a given memory
/// budget and CPU (the budget moves the chunk boundaries, and so the order of `dW`'s
/// sums; other CPUs may take other GEMM kernels). Against the f64 reference
/// ([`reference::linear_cross_entropy`](crate::reference::linear_cross_entropy)) the
/// logits carry the f32 GEMM's rounding, about `d * 2^-23 * max |h||w|`, on top of the
/// cross-entropy kernels' own error; the tests' tolerance model is in
/// `tests/check/linear.rs`. 16-bit inputs are widened to f32 exactly, everything is
/// computed as for f32 on the widened values, and each gradient is rounded once.
///
/// ```
/// use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};
/// let (vocab, dim) = (5, 3);
/// let head = LinearCrossEntropy::new(CrossEntropy::new(vocab).ignore_index(-100), dim);
/// let hidden = vec![0.5f32; 2 * dim]; // 2 rows
/// let weight: Vec<f32> = (0..vocab * dim).map(|i| (i as f32 * 0.1).sin()).collect();
/// let targets = [4i64, -100];
/// let loss = head.forward(&hidden, &weight, None, &targets)?;
/// assert_eq!(loss.rows, 1);
/// let (mut d_hidden, mut d_weight) = (vec![0.0; hidden.len()], vec![0.0; weight.len()]);
/// let again = head.forward_backward(&hidden, &weight, None, &targets,
///     LinearGrads::new(&mut d_hidden, &mut d_weight))?;
/// assert_eq!(again, loss);
/// assert!(d_hidden[dim..].iter().all(|&g| g == 0.0)); // the ignored row
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinearCrossEntropy {
    ce: CrossEntropy,
    dim: usize,
    budget: usize,
    filter: Option<f32>,
}

impl LinearCrossEntropy {
    /// Rows per tile of the [gradient filter](Self::gradient_filter).
    pub const FILTER_TILE_ROWS: usize = filter::TILE_ROWS;
    /// Vocabulary entries per tile of the [gradient filter](Self::gradient_filter).
    pub const FILTER_TILE_VOCAB: usize = filter::TILE_VOCAB;

    /// A head with the vocabulary and options of `ce` over hidden states of `dim` values
    /// per row, with the default memory budget ([`DEFAULT_MEMORY_BUDGET`]). Never fails;
    /// `dim == 0` is reported by the first call ([`Error::ZeroDim`]).
    pub fn new(ce: CrossEntropy, dim: usize) -> Self {
        LinearCrossEntropy {
            ce,
            dim,
            budget: DEFAULT_MEMORY_BUDGET,
            filter: None,
        }
    }

    /// The bytes a chunk's f32 logits may take (default 64 MiB): the chunk holds
    /// `max(1, bytes / (4 V))` rows, at most the batch. The extra memory of a call is then
    /// about `4 R V` bytes (`R` the chunk's rows, [`chunk_rows`](Self::chunk_rows)),
    /// plus `8 V` for the bias gradient's sums, `8 R d` for 16-bit hidden states and their
    /// gradient, `4 V d` for a 16-bit weight widened to f32 and, with gradients,
    /// `4 V d` more for a 16-bit `dW` accumulated in f32, plus the GEMM's packing buffers
    /// (a few MiB). Larger budgets make the GEMMs more efficient up to a few hundred rows.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Cut Cross-Entropy's gradient filter, off by default: the backward products skip
    /// each tile of [`FILTER_TILE_ROWS`](Self::FILTER_TILE_ROWS) rows by
    /// [`FILTER_TILE_VOCAB`](Self::FILTER_TILE_VOCAB) vocabulary entries whose gradient
    /// entries, apart from the rows' targets, are all at most `eps` times the row's
    /// softmax coefficient; for plain cross-entropy that is every softmax probability
    /// `p_ij <= eps` in the tile. The tiles are cut within each chunk of
    /// [`chunk_rows`](Self::chunk_rows) rows (a chunk's first row starts a tile), so the
    /// memory budget moves them. The target entries, the loss, the per-row outputs and
    /// the bias gradient stay exact. `None` turns it off.
    ///
    /// **Approximate.** The skipped entries' share of `dH` and `dW` is lost: at most
    /// `eps a_i sum_j |W_j|` per row of `dH`, where `a_i` is the row's softmax coefficient
    /// (`1 / N` for a plain mean). It pays where the softmax is concentrated on a part of
    /// the vocabulary, as in a trained language model whose token ids follow frequency:
    /// `examples/linear_throughput.rs --filter` measures its speed and error. Cut
    /// Cross-Entropy's authors use `eps = 2^-12`, the resolution of bf16 near 1.
    ///
    /// # Errors
    /// A call with an `eps` that is negative, above 1 or NaN returns
    /// [`Error::GradientFilter`].
    ///
    /// ```
    /// use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};
    /// let head = LinearCrossEntropy::new(CrossEntropy::new(4), 2).gradient_filter(Some(0.99));
    /// let (mut dh, mut dw) = ([0.0f32; 2], [0.0f32; 8]);
    /// let weight = [1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0];
    /// head.forward_backward(&[4.0f32, 0.0], &weight, None, &[1u8],
    ///     LinearGrads::new(&mut dh, &mut dw))?;
    /// // p = [0.964, 0.018, 0.0003, 0.018]: no entry but the target's exceeds 0.99, so the
    /// // one tile is skipped; the target's entry (p_1 - 1) h stays exact.
    /// assert_eq!((dw[0], dw[4], dw[6]), (0.0, 0.0, 0.0));
    /// assert!((dw[2] - 4.0 * (0.01766 - 1.0)).abs() < 1e-3);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn gradient_filter(mut self, eps: Option<f32>) -> Self {
        self.filter = eps;
        self
    }

    /// The gradient filter's threshold, if on.
    pub fn get_gradient_filter(&self) -> Option<f32> {
        self.filter
    }

    /// The cross-entropy configuration.
    pub fn get_cross_entropy(&self) -> &CrossEntropy {
        &self.ce
    }

    /// The hidden size.
    pub fn get_dim(&self) -> usize {
        self.dim
    }

    /// The memory budget in bytes.
    pub fn get_memory_budget(&self) -> usize {
        self.budget
    }

    /// The rows of a chunk for a batch of `rows` rows: `max(1, budget / (4 V))`, at most
    /// `rows` (0 for an empty batch).
    ///
    /// ```
    /// let head = xent::LinearCrossEntropy::new(xent::CrossEntropy::new(32000), 512)
    ///     .memory_budget(64 << 20);
    /// assert_eq!(head.chunk_rows(4096), 524);
    /// ```
    pub fn chunk_rows(&self, rows: usize) -> usize {
        let per_row = 4 * self.ce.get_classes().max(1);
        (self.budget / per_row).max(1).min(rows)
    }

    /// The loss of `cross_entropy(hidden weight^T + bias, targets)`; nothing is written.
    /// `hidden` is `N x dim` and `weight` `V x dim`, both row-major; `bias` has `V` entries;
    /// `targets` one per row.
    ///
    /// # Errors
    /// [`Error::ZeroDim`], [`Error::HiddenShape`], [`Error::LinearLength`] for the
    /// weight or bias, and every error of [`CrossEntropy::forward`] on `N x V` logits.
    pub fn forward<T: LinearFloat, U: Target>(
        &self,
        hidden: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        targets: &[U],
    ) -> Result<Loss, Error> {
        self.forward_with(hidden, weight, bias, targets, RowOutputs::new())
    }

    /// [`forward`](Self::forward), also writing the per-row results of `outputs` (losses,
    /// log-sum-exp, predicted classes) as [`CrossEntropy::forward_with`] does.
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`Error::OutputLength`] for a per-row buffer
    /// of the wrong length. Nothing is written on error.
    pub fn forward_with<T: LinearFloat, U: Target>(
        &self,
        hidden: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        targets: &[U],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check_inputs(hidden.len(), weight.len(), bias.map(<[T]>::len), targets)?;
        let sinks = outputs.checked(targets.len())?;
        let input = chunks::Input {
            hidden,
            weight,
            bias,
        };
        let sums = chunks::run(self, &ck, input, targets, None, sinks);
        Ok(self.ce.reduce(&ck, sums))
    }

    /// The loss, with the gradients of the hidden states, the weight and (if asked for)
    /// the bias written into `grads`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`Error::LinearLength`] for a gradient buffer
    /// of the wrong length. Nothing is written on error.
    pub fn forward_backward<T: LinearFloat, U: Target>(
        &self,
        hidden: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        targets: &[U],
        grads: LinearGrads<'_, T>,
    ) -> Result<Loss, Error> {
        self.forward_backward_with(hidden, weight, bias, targets, grads, RowOutputs::new())
    }

    /// [`forward_backward`](Self::forward_backward), also writing the per-row results of
    /// `outputs`.
    ///
    /// # Errors
    /// As [`forward_backward`](Self::forward_backward) and
    /// [`forward_with`](Self::forward_with).
    ///
    /// ```
    /// use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads, Reduction, RowOutputs};
    /// let head = LinearCrossEntropy::new(CrossEntropy::new(2).reduction(Reduction::None), 1);
    /// let (mut dh, mut dw, mut losses) = ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
    /// let loss = head.forward_backward_with(&[1.0f32, 2.0], &[1.0, -1.0], None, &[0u8, 1],
    ///     LinearGrads::new(&mut dh, &mut dw), RowOutputs::new().losses(&mut losses))?;
    /// assert!(losses[1] > losses[0]); // row 1's logits favour class 0 more strongly
    /// assert!((loss.value - (losses[0] + losses[1])).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward_with<T: LinearFloat, U: Target>(
        &self,
        hidden: &[T],
        weight: &[T],
        bias: Option<&[T]>,
        targets: &[U],
        grads: LinearGrads<'_, T>,
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check_inputs(hidden.len(), weight.len(), bias.map(<[T]>::len), targets)?;
        let want = |what, len: usize, expected| {
            if len == expected {
                Ok(())
            } else {
                Err(Error::LinearLength {
                    what,
                    len,
                    expected,
                })
            }
        };
        want("d_hidden", grads.hidden.len(), hidden.len())?;
        want("d_weight", grads.weight.len(), weight.len())?;
        if let Some(b) = &grads.bias {
            want("d_bias", b.len(), self.ce.get_classes())?;
        }
        let sinks = outputs.checked(targets.len())?;
        let input = chunks::Input {
            hidden,
            weight,
            bias,
        };
        let sums = chunks::run(self, &ck, input, targets, Some(grads), sinks);
        Ok(self.ce.reduce(&ck, sums))
    }

    /// Every check of the inputs, before anything is written; the cross-entropy call on
    /// `N x V` logits validated as a whole (so the mean's divisor is the batch's).
    pub(crate) fn check_inputs<U: Target>(
        &self,
        hidden: usize,
        weight: usize,
        bias: Option<usize>,
        targets: &[U],
    ) -> Result<Checked<'_>, Error> {
        let (dim, vocab) = (self.dim, self.ce.get_classes());
        if dim == 0 {
            return Err(Error::ZeroDim);
        }
        if !hidden.is_multiple_of(dim) {
            return Err(Error::HiddenShape { len: hidden, dim });
        }
        self.ce.check_options()?;
        if let Some(eps) = self.filter.filter(|e| !(0.0..=1.0).contains(e)) {
            return Err(Error::GradientFilter(eps));
        }
        let expected = vocab.saturating_mul(dim);
        if weight != expected {
            return Err(Error::LinearLength {
                what: "weight",
                len: weight,
                expected,
            });
        }
        if let Some(len) = bias.filter(|&b| b != vocab) {
            return Err(Error::LinearLength {
                what: "bias",
                len,
                expected: vocab,
            });
        }
        let rows = hidden / dim;
        if targets.len() != rows {
            return Err(Error::TargetsLength {
                targets: targets.len(),
                rows,
            });
        }
        // Far beyond any memory, but a count, not a buffer: say so rather than wrap.
        let Some(logits) = rows.checked_mul(vocab) else {
            return Err(Error::LinearLength {
                what: "hidden (rows x vocabulary overflows usize)",
                len: hidden,
                expected: usize::MAX / vocab * dim,
            });
        };
        self.ce.check(logits, targets, None)
    }
}
