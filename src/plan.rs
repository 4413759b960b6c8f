//! Validation and the per-row algebra: every check of a call before anything is written
//! ([`Checked`]), each row's gradient plan and loss from its statistics, and the reduction
//! of the row sums into a [`Loss`].

use crate::arch::{Beta, Cap, RowPlan, Smooth};
use crate::kernel::{Backend, backend, with_backend};
use crate::outputs::UpstreamPlan;
use crate::stats::Merged;
use crate::threads::Run;
use crate::{CrossEntropy, Error, Loss, Reduction, Target};

impl CrossEntropy {
    /// Validates the options that do not depend on the data and resolves the kernel and
    /// the threads.
    pub(crate) fn check_options(&self) -> Result<(Backend, Run<'_>), Error> {
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
        Ok((backend(self.kernel)?, self.threads.resolve()?))
    }

    /// Every check of a call, before anything is written.
    pub(crate) fn check<T: Target>(
        &self,
        len: usize,
        targets: &[T],
        out_len: Option<usize>,
    ) -> Result<Checked<'_>, Error> {
        let (backend, run) = self.check_options()?;
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
            run,
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
    pub(crate) counted: usize,
    pub(crate) weight: f64,
    pub(crate) backend: Backend,
    /// The threads the call runs on.
    pub(crate) run: Run<'a>,
    pub(crate) weights: Option<&'a [f32]>,
    pub(crate) ignore: Option<i128>,
    pub(crate) eps: f64,
    /// `eps / C`: the smoothing weight of each class.
    pub(crate) k: f64,
    /// Sum of class weights (`C` without weights).
    pub(crate) sum_w: f64,
    /// Gradient scale: `1 / weight` for mean, 1 for sum, 0 for a mean over zero weight.
    pub(crate) scale: f64,
    pub(crate) zero_grad: bool,
    /// z-loss coefficient (0 when off).
    pub(crate) zc: f64,
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
            predicted: m.argmax,
        }
    }

    /// For a backward pass from a saved log-sum-exp with upstream gradient `u`: the
    /// target, `u a`, `u c` and the per-class constant scaled by `u` (see `crate::ops::backward`);
    /// `None` for an ignored row.
    pub(crate) fn upstream_plan<T: Target>(&self, t: T, u: f64) -> UpstreamPlan<'_> {
        let t = self.target(t)?;
        let c = self.nll_weight(t);
        let beta = self.beta_of((u * self.k) as f32);
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

    /// The per-class constant of the gradient of the reduced loss (see [`Beta`]).
    pub(crate) fn beta(&self) -> Beta<'_> {
        self.beta_of((self.scale * self.k) as f32)
    }

    /// `beta_j = b w_j` (label smoothing; `b` the smoothing weight `eps / C` times the
    /// gradient's scale), or zero without smoothing.
    fn beta_of(&self, b: f32) -> Beta<'_> {
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
    /// The first index of the row's largest (raw) logit.
    pub predicted: usize,
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
