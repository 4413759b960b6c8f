//! The options of a cross-entropy call: [`Reduction`] and the [`CrossEntropy`] builder,
//! whose methods never fail (invalid options are reported by the call that uses them,
//! see `crate::plan`).

use crate::Kernel;
use crate::threads::Threads;
#[cfg(doc)]
use crate::{Error, Loss, RowOutputs};
use std::sync::Arc;

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reduction {
    /// Weighted mean: the sum of row losses divided by the sum of the counted rows' target
    /// weights (the row count without class weights), as PyTorch's `reduction='mean'`.
    /// The gradient is scaled by the same divisor.
    #[default]
    Mean,
    /// Plain sum of row losses; the gradient is unscaled.
    Sum,
    /// No reduction, PyTorch's `reduction='none'`: the per-row losses are the result (pass
    /// a buffer for them with [`RowOutputs::losses`] to
    /// [`forward_with`](CrossEntropy::forward_with) or
    /// [`forward_backward_with`](CrossEntropy::forward_backward_with)). [`Loss::value`]
    /// is then their sum and the gradient is each row's own, unscaled, as for `Sum`; for
    /// other per-row upstream gradients use [`backward`](CrossEntropy::backward).
    None,
}

/// Softmax cross-entropy with PyTorch `F.cross_entropy` semantics, configured by builder
/// methods that never fail; invalid options are reported by the call that uses them.
///
/// Each option has a builder method named after it and a getter named `get_` and the
/// option (as `std::process::Command` has): `ce.reduction(Reduction::Sum)` sets,
/// `ce.get_reduction()` reads. Cloning is cheap (the class weights and the thread pool
/// are shared). The struct is `Send + Sync`: one configuration can serve many threads at
/// once, each with its own buffers.
///
/// ```
/// let ce = xent::CrossEntropy::new(3).label_smoothing(0.1);
/// let mut logits = vec![2.0, 0.5, -1.0, /* row 2 */ 0.1, 0.2, 3.0];
/// let loss = ce.forward_backward(&mut logits, &[0u32, 2])?;
/// assert_eq!((loss.rows, loss.correct), (2, 2));
/// // The gradient (softmax - smoothed one-hot, divided by 2 rows) replaced the logits;
/// // each row of it sums to zero.
/// assert!(logits[..3].iter().sum::<f32>().abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CrossEntropy {
    pub(crate) classes: usize,
    pub(crate) reduction: Reduction,
    pub(crate) ignore_index: Option<i64>,
    pub(crate) label_smoothing: f32,
    pub(crate) weights: Option<Arc<[f32]>>,
    pub(crate) z_loss: f32,
    pub(crate) softcap: Option<f32>,
    pub(crate) kernel: Kernel,
    pub(crate) threads: Threads,
}

impl CrossEntropy {
    /// Cross-entropy over rows of `classes` logits: mean reduction, no ignore index, no
    /// label smoothing, no class weights, [`Kernel::Auto`]. Never fails; `classes == 0` is
    /// reported by the first call ([`Error::ZeroClasses`]).
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(0);
    /// assert_eq!(ce.forward(&[], &[0u8; 0]).unwrap_err(), xent::Error::ZeroClasses);
    /// ```
    pub fn new(classes: usize) -> Self {
        CrossEntropy {
            classes,
            reduction: Reduction::Mean,
            ignore_index: None,
            label_smoothing: 0.0,
            weights: None,
            z_loss: 0.0,
            softcap: None,
            kernel: Kernel::Auto,
            threads: Threads::Current,
        }
    }

    /// Sets the reduction (default [`Reduction::Mean`]).
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Rows whose target equals `index` contribute no loss, get a zero gradient, and are
    /// not counted (PyTorch's default is -100; here there is none unless set).
    pub fn ignore_index(mut self, index: i64) -> Self {
        self.ignore_index = Some(index);
        self
    }

    /// Label smoothing `eps` in `[0, 1]`: the target distribution becomes
    /// `(1 - eps) onehot + eps / C`. Checked when used ([`Error::LabelSmoothing`]).
    pub fn label_smoothing(mut self, eps: f32) -> Self {
        self.label_smoothing = eps;
        self
    }

    /// Per-class weights (one finite value per class). Checked when used
    /// ([`Error::WeightsLength`], [`Error::NonFiniteWeight`]).
    pub fn class_weights(mut self, weights: impl Into<Arc<[f32]>>) -> Self {
        self.weights = Some(weights.into());
        self
    }

    /// z-loss (PaLM) with coefficient `coefficient >= 0`: each counted row adds
    /// `coefficient * lse^2`, `lse` the row's log-sum-exp, which pulls the softmax
    /// normaliser towards 1. It is reduced with the main loss (the same divisor), included
    /// in [`Loss::value`] and reported alone in [`Loss::z_loss`]; its gradient
    /// `2 coefficient lse p_j` is fused into the same passes. Unweighted by class weights
    /// and unaffected by label smoothing. Checked when used ([`Error::ZLoss`]).
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2).z_loss(1e-4);
    /// let loss = ce.forward(&[0.0, 0.0], &[0u8])?;
    /// let lse = std::f32::consts::LN_2;
    /// assert!((loss.z_loss - 1e-4 * lse * lse).abs() < 1e-9);
    /// assert!((loss.value - (lse + loss.z_loss)).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn z_loss(mut self, coefficient: f32) -> Self {
        self.z_loss = coefficient;
        self
    }

    /// Logit soft-capping (Gemma 2) with `cap` in `[2^-126, 2^126]`: the loss is computed
    /// on `cap * tanh(z / cap)`, and the gradient with respect to the raw logits includes
    /// the chain factor `1 - tanh^2(z / cap)`, all inside the same passes over memory. As
    /// for the composition in PyTorch, `+-inf` logits cap to `+-cap` (so `-inf` is no
    /// longer a mask) and NaN stays NaN. The predicted class is the argmax of the raw
    /// logits. The capped logits are accurate in relative terms (within a few ulp, see
    /// [`crate::exp`]), so a cap far above every logit gives the uncapped result. Checked
    /// when used ([`Error::Softcap`] outside the range, where `cap` or `1 / cap` would not
    /// be a normal float).
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2).softcap(30.0).reduction(xent::Reduction::Sum);
    /// let mut z = [1000.0f32, 0.0];
    /// let loss = ce.forward_backward(&mut z, &[1u8])?;
    /// // 1000 caps to 30: the loss is about 30 rather than 1000.
    /// assert!((loss.value - 30.0).abs() < 1e-3);
    /// // tanh has saturated at 1000, so that logit gets (almost) no gradient.
    /// assert!(z[0].abs() < 1e-6 && (z[1] + 1.0).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn softcap(mut self, cap: f32) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// Forces a kernel variant (default [`Kernel::Auto`]). Checked when used
    /// ([`Error::KernelUnavailable`]).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the classes per row, keeping every other option: one configuration serves
    /// heads of several sizes (an adapter that learns `C` from a tensor's shape). Class
    /// weights, if set, must then have `classes` entries ([`Error::WeightsLength`] from
    /// the call otherwise).
    ///
    /// ```
    /// use xent::{CrossEntropy, Reduction};
    /// let base = CrossEntropy::new(10).reduction(Reduction::Sum).label_smoothing(0.1);
    /// let wide = base.clone().classes(32000);
    /// assert_eq!((wide.get_classes(), wide.get_reduction()), (32000, Reduction::Sum));
    /// ```
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self
    }

    /// The threads a call runs on: `0` (the default) for rayon's current pool (the global
    /// one, or that of an enclosing `pool.install`), `1` for the calling thread alone, and
    /// `n >= 2` for a pool of `n` threads of this configuration's own, built at its first
    /// call and shared by its clones (an [`Error::ThreadPool`] from that call if the
    /// operating system will not start them). Results are bit-identical whatever the
    /// choice; only the time differs. A parallel call with `n` threads runs on the calling
    /// thread and `n - 1` of the pool's. Calls below 262 144 logits run on the calling
    /// thread alone: waking a pool costs more than a second thread saves there.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(1000).threads(2);
    /// let mut logits = vec![0.5f32; 1000 * 64];
    /// let loss = ce.forward_backward(&mut logits, &[7u32; 64])?;
    /// let one = xent::CrossEntropy::new(1000).threads(1);
    /// let mut again = vec![0.5f32; 1000 * 64];
    /// assert_eq!(one.forward_backward(&mut again, &[7u32; 64])?, loss);
    /// assert_eq!(again, logits);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Threads::with_count(threads);
        self
    }

    /// Classes per row.
    pub fn get_classes(&self) -> usize {
        self.classes
    }

    /// The threads as set by [`threads`](Self::threads) (`0`: rayon's current pool).
    pub fn get_threads(&self) -> usize {
        self.threads.count()
    }

    /// The reduction in use.
    pub fn get_reduction(&self) -> Reduction {
        self.reduction
    }

    /// The ignore index, if any.
    pub fn get_ignore_index(&self) -> Option<i64> {
        self.ignore_index
    }

    /// The label smoothing (as set; validated when used).
    pub fn get_label_smoothing(&self) -> f32 {
        self.label_smoothing
    }

    /// The class weights, if any (as set; validated when used).
    pub fn get_class_weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    /// The z-loss coefficient (0 when off; as set, validated when used).
    pub fn get_z_loss(&self) -> f32 {
        self.z_loss
    }

    /// The soft-capping value, if any (as set; validated when used).
    pub fn get_softcap(&self) -> Option<f32> {
        self.softcap
    }

    /// The requested kernel ([`Kernel::resolve`] tells which variant runs).
    pub fn get_kernel(&self) -> Kernel {
        self.kernel
    }
}
