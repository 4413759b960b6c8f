//! The public cross-entropy entry points: option validation, then the fused row path or
//! the blocked path for long rows, across rayon threads.

use crate::arch::rows::{beta_at, trails};
use crate::arch::small::SmallJob;
use crate::arch::{
    BLOCK_CLASSES, Beta, BlockStats, Cap, FUSED_MAX_CLASSES, Io, RowOut, RowPlan, RowsJob,
    SMALL_MAX_CLASSES, Smooth,
};
use crate::kernel::{Backend, backend, with_backend};
use crate::parallel::{
    for_chunks_of_rows, for_row_chunks, go_parallel, map_ordered, rows_per_chunk,
    rows_per_linked_chunk,
};
use crate::rows::{RowOutputs, Sinks, UpstreamPlan};
use crate::stats::Merged;
use crate::{Error, Kernel, Loss, Target};
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
/// Cloning is cheap (the class weights are shared). The struct is `Send + Sync`: one
/// configuration can serve many threads at once, each with its own buffers.
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
    classes: usize,
    reduction: Reduction,
    ignore_index: Option<i64>,
    label_smoothing: f32,
    weights: Option<Arc<[f32]>>,
    z_loss: f32,
    softcap: Option<f32>,
    kernel: Kernel,
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

    /// Classes per row.
    pub fn classes(&self) -> usize {
        self.classes
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

    /// Validates the options that do not depend on the data and resolves the kernel.
    pub(crate) fn check_options(&self) -> Result<Backend, Error> {
        if self.classes == 0 {
            return Err(Error::ZeroClasses);
        }
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::LabelSmoothing(eps));
        }
        if !(self.z_loss.is_finite() && self.z_loss >= 0.0) {
            return Err(Error::ZLoss(self.z_loss));
        }
        let cap_ok = |c: &f32| (crate::exp::SOFTCAP_MIN..=crate::exp::SOFTCAP_MAX).contains(c);
        if let Some(cap) = self.softcap.filter(|c| !cap_ok(c)) {
            return Err(Error::Softcap(cap));
        }
        if let Some(w) = &self.weights {
            if w.len() != self.classes {
                return Err(Error::WeightsLength {
                    len: w.len(),
                    classes: self.classes,
                });
            }
            if let Some(class) = w.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFiniteWeight {
                    class,
                    weight: w[class],
                });
            }
        }
        backend(self.kernel)
    }

    /// Every check of a call, before anything is written.
    pub(crate) fn check<T: Target>(
        &self,
        len: usize,
        targets: &[T],
        out_len: Option<usize>,
    ) -> Result<Checked<'_>, Error> {
        let backend = self.check_options()?;
        let classes = self.classes;
        if !len.is_multiple_of(classes) {
            return Err(Error::LogitsShape { len, classes });
        }
        let rows = len / classes;
        if targets.len() != rows {
            return Err(Error::TargetsLength {
                targets: targets.len(),
                rows,
            });
        }
        if let Some(out) = out_len.filter(|&o| o != len) {
            return Err(Error::OutputLength {
                len: out,
                expected: len,
            });
        }
        let weights = self.weights.as_deref();
        let ignore = self.ignore_index.map(i128::from);
        let out_of_range = |t: i128| Some(t) != ignore && (t < 0 || t >= classes as i128);
        // One branch-free sweep at the kernel's vector width; the offending row is searched
        // for only when there is one. (Without weights the total weight is the count: a
        // serial f64 sum would cost four cycles of latency per row.)
        let (counted, bad) =
            with_backend!(backend, k => k.scan_targets(targets, classes, self.ignore_index));
        if bad && let Some(row) = targets.iter().position(|t| out_of_range(t.class())) {
            return Err(Error::TargetOutOfRange {
                row,
                target: targets[row].class(),
                classes,
            });
        }
        let weight = match weights {
            None => counted as f64,
            Some(w) => targets
                .iter()
                .filter(|t| Some(t.class()) != ignore)
                .map(|t| f64::from(w[t.class() as usize]))
                .sum(),
        };
        let eps = f64::from(self.label_smoothing);
        let sum_w = weights.map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
        let (scale, zero_grad) = match self.reduction {
            Reduction::Sum | Reduction::None => (1.0, false),
            Reduction::Mean if weight == 0.0 => (0.0, true),
            Reduction::Mean => (1.0 / weight, false),
        };
        Ok(Checked {
            classes,
            counted,
            weight,
            backend,
            weights,
            ignore,
            eps,
            k: eps / classes as f64,
            sum_w,
            scale,
            zero_grad,
            zc: f64::from(self.z_loss),
            cap: self.softcap.map(|c| Cap {
                cap: c,
                inv: 1.0 / c,
            }),
        })
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

    /// The [`Loss`] from the row sums of a validated call.
    pub(crate) fn reduce(&self, ck: &Checked<'_>, s: RowSums) -> Loss {
        let r = |x: f64| match self.reduction {
            Reduction::Sum | Reduction::None => x,
            Reduction::Mean if ck.zero_grad => 0.0,
            Reduction::Mean => x * ck.scale,
        };
        Loss {
            value: r(s.loss) as f32,
            z_loss: r(s.z) as f32,
            rows: ck.counted,
            correct: s.correct,
            weight: ck.weight,
        }
    }
}

/// Unreduced sums of a run of rows: loss (z-loss included), z-loss alone, correct count.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RowSums {
    pub loss: f64,
    pub z: f64,
    pub correct: usize,
}

impl RowSums {
    pub(crate) fn add(&mut self, o: RowSums) {
        self.loss += o.loss;
        self.z += o.z;
        self.correct += o.correct;
    }
}

/// A validated call: everything the row loops need.
pub(crate) struct Checked<'a> {
    pub(crate) classes: usize,
    counted: usize,
    weight: f64,
    pub(crate) backend: Backend,
    pub(crate) weights: Option<&'a [f32]>,
    ignore: Option<i128>,
    eps: f64,
    /// `eps / C`: the smoothing weight of each class.
    k: f64,
    /// Sum of class weights (`C` without weights).
    sum_w: f64,
    /// Gradient scale: `1 / weight` for mean, 1 for sum, 0 for a mean over zero weight.
    scale: f64,
    zero_grad: bool,
    /// z-loss coefficient (0 when off).
    zc: f64,
    /// Soft-capping, if any.
    pub(crate) cap: Option<Cap>,
}

impl Checked<'_> {
    /// Target of a row, `None` if ignored (range already checked).
    #[inline]
    pub(crate) fn target<T: Target>(&self, t: T) -> Option<usize> {
        let t = t.class();
        if Some(t) == self.ignore {
            None
        } else {
            Some(t as usize)
        }
    }

    /// `c = (1 - eps) w_t`, the weight of the target's log-probability in the row loss.
    #[inline]
    fn nll_weight(&self, t: usize) -> f64 {
        (1.0 - self.eps) * self.weights.map_or(1.0, |w| f64::from(w[t]))
    }

    /// The row's gradient plan. With `a = c + k S_w`, the gradient of the row loss
    /// `c (lse - z_t) + k (S_w lse - sum_j w_j z_j)` is `a p_j - k w_j - c [j = t]`.
    #[inline]
    pub(crate) fn plan<T: Target>(&self, t: T) -> RowPlan {
        match self.target(t) {
            None => RowPlan {
                target: None,
                grad_a: 0.0,
                zloss: 0.0,
                tfix: 0.0,
                zero_grad: self.zero_grad,
            },
            Some(t) => {
                let c = self.nll_weight(t);
                RowPlan {
                    target: Some(t),
                    grad_a: self.scale * (c + self.k * self.sum_w),
                    zloss: self.scale * 2.0 * self.zc,
                    tfix: (self.scale * c) as f32,
                    zero_grad: self.zero_grad,
                }
            }
        }
    }

    /// The row's loss, z-loss, log-sum-exp and whether the prediction is correct, from
    /// its statistics: `c (ln S - (z_t - m)) + k (S_w ln S - sum_j w_j (z_j - m))` plus
    /// `zc lse^2`, `lse = m + ln S`.
    #[inline]
    pub(crate) fn row_loss(&self, t: usize, m: &Merged, target_logit: f32) -> RowLoss {
        let ln_s = m.ln_sum();
        // In f64: `z_t - max` can overflow f32 when the logits span +-3.4e38.
        let target_rel = f64::from(target_logit) - f64::from(m.max);
        let mut loss = self.nll_weight(t) * (ln_s - target_rel);
        if self.k != 0.0 {
            loss += self.k * (self.sum_w * ln_s - m.smooth_sum);
        }
        let lse = f64::from(m.max) + ln_s;
        let z = if self.zc != 0.0 {
            self.zc * lse * lse
        } else {
            0.0
        };
        let loss = loss + z;
        RowLoss {
            loss,
            z,
            lse,
            // A NaN loss never counts, whatever made it NaN: a NaN or +inf logit (then
            // `ln_s` is NaN too), or only the smoothing term (`0 w_j * -inf z_j`, as
            // PyTorch), which leaves the log-sum-exp finite.
            correct: !loss.is_nan() && m.argmax == t,
        }
    }

    /// For a backward pass from a saved log-sum-exp with upstream gradient `u`: the
    /// target, `u a`, `u c` and the per-class constant scaled by `u` (see `crate::rows`);
    /// `None` for an ignored row.
    pub(crate) fn upstream_plan<T: Target>(&self, t: T, u: f64) -> UpstreamPlan<'_> {
        let t = self.target(t)?;
        let c = self.nll_weight(t);
        let b = (u * self.k) as f32;
        let beta = match (self.k != 0.0, self.weights) {
            (false, _) => Beta::Zero,
            (true, None) => Beta::Uniform(b),
            (true, Some(w)) => Beta::Weighted(b, w),
        };
        Some((t, u * (c + self.k * self.sum_w), u * c, beta))
    }

    /// The z-loss coefficient.
    pub(crate) fn zc(&self) -> f64 {
        self.zc
    }

    pub(crate) fn smooth(&self) -> Smooth<'_> {
        match (self.k != 0.0, self.weights) {
            (false, _) => Smooth::Off,
            (true, None) => Smooth::Uniform,
            (true, Some(w)) => Smooth::Weighted(w),
        }
    }

    pub(crate) fn beta(&self) -> Beta<'_> {
        let b = (self.scale * self.k) as f32;
        match (self.k != 0.0, self.weights) {
            (false, _) => Beta::Zero,
            (true, None) => Beta::Uniform(b),
            (true, Some(w)) => Beta::Weighted(b, w),
        }
    }
}

/// One row's results.
pub(crate) struct RowLoss {
    pub loss: f64,
    pub z: f64,
    pub lse: f64,
    pub correct: bool,
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
/// chunk order.
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
    };
    let mut sums = RowSums::default();
    let c = ck.classes;
    let per = if trails(c) {
        rows_per_linked_chunk(c, io.len() / c)
    } else {
        rows_per_chunk(c)
    };
    for_chunks_of_rows(
        io,
        sinks,
        c,
        per,
        |row0, chunk, mut sinks| {
            let mut sums = RowSums::default();
            sinks.fill_zero();
            let targets = &targets[row0..];
            let plan = |r: usize| ck.plan(targets[r]);
            let out = |r: usize, o: RowOut| {
                if let Some(t) = ck.target(targets[r]) {
                    let m = Merged::from_block(o.stats, 0, c, 0.0);
                    let row = ck.row_loss(t, &m, o.target_logit);
                    sinks.put(r, row.loss, row.lse);
                    sums.add(RowSums {
                        loss: row.loss,
                        z: row.z,
                        correct: usize::from(row.correct),
                    });
                }
            };
            with_backend!(ck.backend, k => k.ce_rows(chunk, &job(row0), plan, out));
            sums
        },
        |s| sums.add(s),
    );
    sums
}

/// Per-row gradient coefficients from merged statistics (blocked path, shards).
pub(crate) struct RowGrad {
    pub max: f32,
    pub alpha: f64,
    pub target: Option<usize>,
    /// The capped target logit (soft-capping only).
    pub yt: f32,
    pub tfix: f32,
    pub zero: bool,
}

/// Rows longer than `FUSED_MAX_CLASSES`: statistics per block (in parallel), merged per
/// row in block order, then the gradient per block from the merged statistics. On one
/// thread the rows go one at a time through the same steps, with no task lists (no heap
/// allocation); the results are the same bits either way.
fn blocked<T: Target>(
    ck: &Checked<'_>,
    io: Io<'_>,
    targets: &[T],
    mut sinks: Sinks<'_>,
) -> RowSums {
    let c = ck.classes;
    let nb = c.div_ceil(BLOCK_CLASSES);
    let par = go_parallel(io.len());
    let smooth = ck.smooth();
    let beta = ck.beta();
    let write = !matches!(io, Io::Read(_));
    let span = |b: usize| (b * BLOCK_CLASSES, ((b + 1) * BLOCK_CLASSES).min(c));
    let width = |b: usize| span(b).1 - span(b).0;
    // Block `b`'s statistics in row `row`.
    let block_stats = |row: &[f32], b: usize| {
        let (lo, hi) = span(b);
        let s = match smooth {
            Smooth::Weighted(w) => Smooth::Weighted(&w[lo..hi]),
            other => other,
        };
        with_backend!(ck.backend, k => k.stats(&row[lo..hi], s, ck.cap))
    };
    let block_weight = |b: usize| {
        let (lo, hi) = span(b);
        match smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => (hi - lo) as f64,
            Smooth::Weighted(w) => w[lo..hi].iter().map(|&v| f64::from(v)).sum(),
        }
    };
    let mut sums = RowSums::default();
    sinks.fill_zero();
    // A counted row's loss (to `sinks` and `sums`) and gradient coefficients from its
    // blocks' statistics, merged in block order.
    let mut finish_row = |r: usize,
                          row: &[f32],
                          plan: &RowPlan,
                          t: usize,
                          stats: &mut dyn Iterator<Item = BlockStats>| {
        let mut m = Merged::default();
        for (b, s) in stats.enumerate() {
            let mb = Merged::from_block(s, b * BLOCK_CLASSES, width(b), block_weight(b));
            m = if b == 0 { mb } else { m.combine(mb) };
        }
        let zt = row[t];
        let yt = match ck.cap {
            Some(cap) => with_backend!(ck.backend, k => k.softcap(zt, cap)),
            None => zt,
        };
        let loss = ck.row_loss(t, &m, yt);
        sinks.put(r, loss.loss, loss.lse);
        sums.add(RowSums {
            loss: loss.loss,
            z: loss.z,
            correct: usize::from(loss.correct),
        });
        ck.row_grad(plan, &m, loss.lse, yt)
    };
    // Block `b` of a row's gradient (`piece`, that block of the row's buffers).
    let write_block = |piece: Io<'_>, b: usize, g: &RowGrad| {
        write_grad_run(ck, piece, b * BLOCK_CLASSES, g, beta);
    };
    if !par {
        let mut rest = io;
        for (r, &t) in targets.iter().enumerate() {
            let (mut row, tail) = rest.split_at(c);
            rest = tail;
            let plan = ck.plan(t);
            let g = match plan.target {
                None => RowGrad::IGNORED,
                Some(t) => {
                    let src = row.src();
                    finish_row(r, src, &plan, t, &mut (0..nb).map(|b| block_stats(src, b)))
                }
            };
            if write {
                for b in 0..nb {
                    let (piece, tail) = row.split_at(width(b));
                    write_block(piece, b, &g);
                    row = tail;
                }
            }
        }
        return sums;
    }
    let src = io.src();
    // Phase 1: block statistics of counted rows.
    let tasks: Vec<(usize, usize)> = (0..targets.len())
        .filter(|&r| ck.target(targets[r]).is_some())
        .flat_map(|r| (0..nb).map(move |b| (r, b)))
        .collect();
    let stats: Vec<BlockStats> = map_ordered(tasks, par, |_, (r, b)| {
        block_stats(&src[r * c..(r + 1) * c], b)
    });
    // Phase 2: merge per row in block order; row loss; gradient coefficients.
    let mut grads = Vec::with_capacity(targets.len());
    let mut blocks = stats.chunks_exact(nb);
    for (r, &t) in targets.iter().enumerate() {
        let plan = ck.plan(t);
        let g = match plan.target {
            None => RowGrad::IGNORED,
            Some(t) => {
                let row_stats = blocks.next().unwrap_or(&[]);
                let row = &src[r * c..(r + 1) * c];
                finish_row(r, row, &plan, t, &mut row_stats.iter().copied())
            }
        };
        grads.push(g);
    }
    // Phase 3: gradient blocks.
    if write {
        let mut pieces = Vec::with_capacity(targets.len() * nb);
        let mut rest = io;
        for r in 0..targets.len() {
            for b in 0..nb {
                let (head, tail) = rest.split_at(width(b));
                pieces.push((r, b, head));
                rest = tail;
            }
        }
        map_ordered(pieces, par, |_, (r, b, piece)| {
            write_block(piece, b, &grads[r])
        });
    }
    sums
}

impl Checked<'_> {
    /// A counted row's gradient coefficients from its merged statistics and `lse`.
    pub(crate) fn row_grad(&self, plan: &RowPlan, m: &Merged, lse: f64, yt: f32) -> RowGrad {
        let sum = if m.max == f32::NEG_INFINITY {
            f64::NAN
        } else {
            m.sum
        };
        let mut a = plan.grad_a;
        if plan.zloss != 0.0 {
            a += plan.zloss * lse;
        }
        RowGrad {
            max: m.max,
            alpha: a / sum,
            target: plan.target,
            yt,
            tfix: plan.tfix,
            zero: plan.zero_grad,
        }
    }
}

/// The gradient of a run of classes `[lo, lo + piece.len())` of one row from the row's
/// coefficients; `beta` spans the whole row (weights are sliced here).
pub(crate) fn write_grad_run(
    ck: &Checked<'_>,
    mut piece: Io<'_>,
    lo: usize,
    g: &RowGrad,
    beta: Beta<'_>,
) {
    if g.zero {
        piece.dst_mut().fill(0.0);
        return;
    }
    let n = piece.len();
    let run_beta = match beta {
        Beta::Weighted(k, w) => Beta::Weighted(k, &w[lo..lo + n]),
        other => other,
    };
    with_backend!(ck.backend, k => k.grad_from_stats(piece.reborrow(), g.max, g.alpha as f32, run_beta, ck.cap));
    if let Some(t) = g.target.filter(|&t| t >= lo && t < lo + n) {
        let dst = &mut piece.dst_mut()[t - lo];
        match ck.cap {
            None => *dst -= g.tfix,
            Some(_) => *dst = capped_target_grad(ck, g, beta_at(beta, t)),
        }
    }
}

impl RowGrad {
    /// An ignored row: zero gradient.
    pub(crate) const IGNORED: RowGrad = RowGrad {
        max: 0.0,
        alpha: 0.0,
        target: None,
        yt: 0.0,
        tfix: 0.0,
        zero: true,
    };
}

/// The target entry of a soft-capped row's gradient, in f64 from the statistics:
/// `(alpha e_t - beta_t - tfix) (1 - (y_t / cap)^2)`.
pub(crate) fn capped_target_grad(ck: &Checked<'_>, g: &RowGrad, beta_t: f64) -> f32 {
    let cap = ck.cap.map_or(1.0, |c| f64::from(c.cap));
    let y = f64::from(g.yt) / cap;
    let e = (f64::from(g.yt) - f64::from(g.max)).exp();
    ((g.alpha * e - beta_t - f64::from(g.tfix)) * ((1.0 - y) * (1.0 + y))) as f32
}
