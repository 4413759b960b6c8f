//! Cross-entropy inside candle's autograd (feature `candle`).
//!
//! [`cross_entropy`] is a drop-in for `candle_nn::loss::cross_entropy`: logits `(N, C)` in
//! f32, bf16 or f16 on the CPU device, targets `(N,)` in u8, u32 or i64, a scalar mean
//! loss in the logits' dtype that `loss.backward()` differentiates. [`cross_entropy_with`]
//! takes any [`CrossEntropy`] configuration (ignore index, label smoothing, class weights,
//! z-loss, soft-capping, reduction, threads, kernel), and [`cross_entropy_with_stats`] also
//! returns the call's [`Loss`] (rows counted, correct predictions) for the accuracy.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! # fn main() -> candle_core::Result<()> {
//! let logits = Var::from_vec(vec![2.0f32, 0.5, -1.0, 0.1, 0.2, 3.0], (2, 3), &Device::Cpu)?;
//! let targets = Tensor::new(&[0u32, 2], &Device::Cpu)?;
//! let loss = xent::candle::cross_entropy(&logits, &targets)?;
//! let grads = loss.backward()?;
//! let g = grads.get(&logits).expect("the logits are a variable").to_vec2::<f32>()?;
//! // Each row's gradient is (softmax - onehot) / N: it sums to zero.
//! assert!(g.iter().all(|row| row.iter().sum::<f32>().abs() < 1e-6));
//! # Ok(())
//! # }
//! ```
//!
//! # How the op works, and what it costs
//!
//! The loss is a candle custom op over `(logits, targets)`. Its forward runs the fused
//! kernel once: one sweep over the logits gives the loss and writes the gradient
//! `dloss/dlogits` into one fresh buffer of the logits' size (allocated zeroed, which the
//! allocator serves from untouched pages at no cost; f32 logits are read in place, bf16 and
//! f16 logits are first copied into it because the 16-bit kernels write over their input).
//! The op keeps that buffer until candle calls its backward, which hands it on without a
//! copy when the upstream gradient is 1 (`loss.backward()`), or scales it in place first.
//! When the logits are not part of a graph (no variable behind them), the forward reads the
//! logits and writes nothing.
//!
//! With `Reduction::None` the loss is the `(N,)` tensor of row losses; the forward keeps
//! only each row's log-sum-exp, and the backward writes the gradient in one pass from it
//! and the per-row upstream gradients.
//!
//! A second backward through the same graph recomputes the gradient from the saved inputs.
//!
//! candle's own `backward()` then adds each op's gradient to a zero tensor of the same
//! size, so every call through candle's autograd writes two more buffers of the logits'
//! size that no op can avoid; `candle-tests/examples/candle_throughput.rs` measures how
//! close the op comes to that floor.

use crate::{CrossEntropy, Error, Loss, Reduction, RowOutputs};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

/// The mean cross-entropy of `logits` `(N, C)` against `targets` `(N,)`, as
/// `candle_nn::loss::cross_entropy` computes it, through xent's fused kernel.
///
/// # Errors
/// A candle error for logits that are not `(N, C)` f32, bf16 or f16 on the CPU, targets
/// that are not `(N,)` u8, u32 or i64 on the CPU, or a target outside `0..C` (the message
/// names the row).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let classes = logits.dims().last().copied().unwrap_or(0);
    cross_entropy_with(&CrossEntropy::new(classes), logits, targets)
}

/// The cross-entropy of `logits` `(N, C)` against `targets` `(N,)` under the configuration
/// `ce`, whose class count must be `C`: a scalar for `Reduction::Mean` and `Sum`, the `(N,)`
/// row losses for `Reduction::None`, in the logits' dtype.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use xent::{CrossEntropy, Reduction};
/// # fn main() -> candle_core::Result<()> {
/// let ce = CrossEntropy::new(3).ignore_index(-100).label_smoothing(0.1);
/// let logits = Var::from_vec(vec![0.0f32; 6], (2, 3), &Device::Cpu)?;
/// let targets = Tensor::new(&[1i64, -100], &Device::Cpu)?;
/// let loss = xent::candle::cross_entropy_with(&ce, &logits, &targets)?;
/// assert!((loss.to_scalar::<f32>()? - 3f32.ln()).abs() < 1e-6);
/// let g = loss.backward()?.get(&logits).expect("a variable").to_vec2::<f32>()?;
/// assert_eq!(g[1], [0.0; 3]); // the ignored row
///
/// let rows = xent::candle::cross_entropy_with(&ce.reduction(Reduction::None), &logits, &targets)?;
/// assert_eq!(rows.dims(), [2]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`cross_entropy`], plus the configuration's own errors (class weights of the wrong
/// length, for example) and a class count other than `C`.
pub fn cross_entropy_with(
    ce: &CrossEntropy,
    logits: &Tensor,
    targets: &Tensor,
) -> candle_core::Result<Tensor> {
    cross_entropy_with_stats(ce, logits, targets).map(|(loss, _)| loss)
}

/// [`cross_entropy_with`], also returning the call's [`Loss`]: the loss as f32, the rows
/// counted and how many of them the logits predicted correctly.
///
/// ```
/// use candle_core::{Device, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [3.0, 0.0]], &Device::Cpu)?;
/// let targets = Tensor::new(&[0u8, 0, 0], &Device::Cpu)?;
/// let ce = xent::CrossEntropy::new(2);
/// let (_, stats) = xent::candle::cross_entropy_with_stats(&ce, &logits, &targets)?;
/// assert_eq!((stats.rows, stats.correct), (3, 2));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`cross_entropy_with`].
pub fn cross_entropy_with_stats(
    ce: &CrossEntropy,
    logits: &Tensor,
    targets: &Tensor,
) -> candle_core::Result<(Tensor, Loss)> {
    check_inputs(ce, logits, targets)?;
    let logits = logits.contiguous()?;
    let targets = targets.contiguous()?;
    let stash = Arc::new(Mutex::new(Stash::default()));
    let op = FusedCrossEntropy {
        ce: ce.clone(),
        // Without a variable behind the logits candle drops the op after the forward, so
        // a gradient would be written for nothing.
        keep_gradient: logits.track_op(),
        stash: Arc::clone(&stash),
    };
    let loss = logits.apply_op2(&targets, op)?;
    let stats = lock(&stash).stats.unwrap_or_default();
    Ok((loss, stats))
}

/// Shape, dtype and device checks with messages in the caller's terms, before candle's
/// own dispatch (whose message for a GPU tensor would name the op, not the cause).
fn check_inputs(ce: &CrossEntropy, logits: &Tensor, targets: &Tensor) -> candle_core::Result<()> {
    let (Device::Cpu, Device::Cpu) = (logits.device(), targets.device()) else {
        candle_core::bail!(
            "xent::candle::cross_entropy runs on the CPU device; logits are on {:?}, targets on {:?}",
            logits.device().location(),
            targets.device().location()
        )
    };
    let &[rows, classes] = logits.dims() else {
        candle_core::bail!(
            "xent::candle::cross_entropy expects logits of shape (N, C), got {:?}",
            logits.shape()
        )
    };
    if targets.dims() != [rows] {
        candle_core::bail!(
            "xent::candle::cross_entropy expects targets of shape ({rows},) for logits {:?}, got {:?}",
            logits.shape(),
            targets.shape()
        )
    }
    if !matches!(logits.dtype(), DType::F32 | DType::BF16 | DType::F16) {
        candle_core::bail!(
            "xent::candle::cross_entropy takes f32, bf16 or f16 logits, got {:?}",
            logits.dtype()
        )
    }
    if !matches!(targets.dtype(), DType::U8 | DType::U32 | DType::I64) {
        candle_core::bail!(
            "xent::candle::cross_entropy takes u8, u32 or i64 targets, got {:?}",
            targets.dtype()
        )
    }
    if ce.get_classes() != classes {
        candle_core::bail!(
            "xent::candle::cross_entropy_with: the configuration has {} classes, the logits {classes}",
            ce.get_classes()
        )
    }
    Ok(())
}

/// What the forward leaves for the backward and for the caller.
#[derive(Default)]
struct Stash {
    /// The gradient of the reduced loss (Mean, Sum), until the first backward takes it.
    gradient: Option<CpuStorage>,
    /// Each row's log-sum-exp (`Reduction::None`), kept for every backward.
    lse: Option<Arc<[f32]>>,
    /// The forward's report.
    stats: Option<Loss>,
}

/// A poisoned lock only means another thread panicked while holding it; the stash is a
/// plain value either way.
fn lock(stash: &Mutex<Stash>) -> MutexGuard<'_, Stash> {
    stash
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The op candle records: forward and gradient in one pass, the gradient handed to `bwd`.
struct FusedCrossEntropy {
    ce: CrossEntropy,
    keep_gradient: bool,
    stash: Arc<Mutex<Stash>>,
}

/// The gradient alone, for a backward that cannot use the forward's buffer: the per-row
/// backward of `Reduction::None`, or a second backward through the same graph.
struct Gradient {
    ce: CrossEntropy,
    /// The rows' log-sum-exp and upstream gradients (`Reduction::None`); otherwise the
    /// fused forward runs again and the gradient is scaled by `scale`.
    rows: Option<(Arc<[f32]>, Vec<f32>)>,
    scale: f32,
}

/// The logits of one call, borrowed from candle's storage.
enum Logits<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

impl<'a> Logits<'a> {
    fn borrow(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<Self> {
        let (start, end) = contiguous(layout)?;
        Ok(match storage {
            CpuStorage::F32(v) => Logits::F32(&v[start..end]),
            CpuStorage::BF16(v) => Logits::Bf16(&v[start..end]),
            CpuStorage::F16(v) => Logits::F16(&v[start..end]),
            other => candle_core::bail!(
                "xent::candle::cross_entropy takes f32, bf16 or f16 logits, got {:?}",
                other.dtype()
            ),
        })
    }

    /// The loss, and the gradient in a fresh buffer of the logits' dtype: zeroed for f32
    /// (untouched pages, so no fill), a copy of the logits for the 16-bit types, whose
    /// kernels write over their input.
    fn forward_backward(
        &self,
        ce: &CrossEntropy,
        targets: &[i64],
    ) -> Result<(Loss, CpuStorage), Error> {
        Ok(match self {
            Logits::F32(z) => {
                let mut g = vec![0.0; z.len()];
                (
                    ce.forward_backward_into(z, targets, &mut g)?,
                    CpuStorage::F32(g),
                )
            }
            Logits::Bf16(z) => {
                let mut g = z.to_vec();
                (
                    ce.forward_backward_half(&mut g, targets)?,
                    CpuStorage::BF16(g),
                )
            }
            Logits::F16(z) => {
                let mut g = z.to_vec();
                (
                    ce.forward_backward_half(&mut g, targets)?,
                    CpuStorage::F16(g),
                )
            }
        })
    }

    /// The loss alone, with the per-row outputs of `RowOutputs`.
    fn forward(
        &self,
        ce: &CrossEntropy,
        targets: &[i64],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        match self {
            Logits::F32(z) => ce.forward_with(z, targets, outputs),
            Logits::Bf16(z) => ce.forward_half_with(z, targets, outputs),
            Logits::F16(z) => ce.forward_half_with(z, targets, outputs),
        }
    }

    /// The gradient of `sum_i upstream[i] * loss_i` from the rows' log-sum-exp, in a fresh
    /// buffer as [`Self::forward_backward`]'s.
    fn backward(
        &self,
        ce: &CrossEntropy,
        targets: &[i64],
        lse: &[f32],
        upstream: &[f32],
    ) -> Result<CpuStorage, Error> {
        Ok(match self {
            Logits::F32(z) => {
                let mut g = vec![0.0; z.len()];
                ce.backward_into(z, targets, lse, upstream, &mut g)?;
                CpuStorage::F32(g)
            }
            Logits::Bf16(z) => {
                let mut g = z.to_vec();
                ce.backward_half(&mut g, targets, lse, upstream)?;
                CpuStorage::BF16(g)
            }
            Logits::F16(z) => {
                let mut g = z.to_vec();
                ce.backward_half(&mut g, targets, lse, upstream)?;
                CpuStorage::F16(g)
            }
        })
    }
}

fn contiguous(layout: &Layout) -> candle_core::Result<(usize, usize)> {
    match layout.contiguous_offsets() {
        Some(range) => Ok(range),
        None => candle_core::bail!("xent::candle::cross_entropy needs contiguous tensors"),
    }
}

/// The targets as i64: borrowed when they are i64, widened otherwise (one value per row,
/// against `C` logits per row). One target type keeps the kernels compiled once.
fn targets_i64<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<Cow<'a, [i64]>> {
    let (start, end) = contiguous(layout)?;
    Ok(match storage {
        CpuStorage::I64(t) => Cow::Borrowed(&t[start..end]),
        CpuStorage::U32(t) => Cow::Owned(t[start..end].iter().map(|&t| i64::from(t)).collect()),
        CpuStorage::U8(t) => Cow::Owned(t[start..end].iter().map(|&t| i64::from(t)).collect()),
        other => candle_core::bail!(
            "xent::candle::cross_entropy takes u8, u32 or i64 targets, got {:?}",
            other.dtype()
        ),
    })
}

/// The crate's error as a candle error (its message names the row or option at fault).
fn candle_error(e: Error) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// f32 values in the logits' dtype.
fn values_in(dtype: DType, values: Vec<f32>) -> CpuStorage {
    match dtype {
        DType::BF16 => CpuStorage::BF16(values.into_iter().map(bf16::from_f32).collect()),
        DType::F16 => CpuStorage::F16(values.into_iter().map(f16::from_f32).collect()),
        _ => CpuStorage::F32(values),
    }
}

/// Multiplies every entry by `s` in place (rounding once for the 16-bit types).
fn scale_in_place(grad: &mut CpuStorage, s: f32) {
    const CHUNK: usize = 1 << 14;
    match grad {
        CpuStorage::F32(g) => g
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|x| *x *= s)),
        CpuStorage::BF16(g) => g.par_chunks_mut(CHUNK).for_each(|c| {
            c.iter_mut()
                .for_each(|x| *x = bf16::from_f32(x.to_f32() * s))
        }),
        CpuStorage::F16(g) => g.par_chunks_mut(CHUNK).for_each(|c| {
            c.iter_mut()
                .for_each(|x| *x = f16::from_f32(x.to_f32() * s))
        }),
        _ => {}
    }
}

/// A CPU storage as a tensor of `shape`, without copying.
fn tensor(storage: CpuStorage, shape: &Shape) -> candle_core::Result<Tensor> {
    let cpu = &Device::Cpu;
    match storage {
        CpuStorage::F32(v) => Tensor::from_vec(v, shape, cpu),
        CpuStorage::BF16(v) => Tensor::from_vec(v, shape, cpu),
        CpuStorage::F16(v) => Tensor::from_vec(v, shape, cpu),
        other => candle_core::bail!("xent: no gradient of dtype {:?}", other.dtype()),
    }
}

const NAME: &str = "xent-cross-entropy";

impl CustomOp2 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = l1.dims().first().copied().unwrap_or(0);
        let logits = Logits::borrow(s1, l1)?;
        let targets = targets_i64(s2, l2)?;
        let dtype = s1.dtype();
        let mut stash = lock(&self.stash);
        if self.ce.get_reduction() == Reduction::None {
            let mut losses = vec![0.0f32; rows];
            let mut lse = vec![0.0f32; rows];
            let mut outputs = RowOutputs::new().losses(&mut losses);
            if self.keep_gradient {
                outputs = outputs.lse(&mut lse);
            }
            let stats = logits
                .forward(&self.ce, &targets, outputs)
                .map_err(candle_error)?;
            if self.keep_gradient {
                stash.lse = Some(lse.into());
            }
            stash.stats = Some(stats);
            return Ok((values_in(dtype, losses), Shape::from(rows)));
        }
        let stats = if self.keep_gradient {
            let (stats, grad) = logits
                .forward_backward(&self.ce, &targets)
                .map_err(candle_error)?;
            stash.gradient = Some(grad);
            stats
        } else {
            logits
                .forward(&self.ce, &targets, RowOutputs::new())
                .map_err(candle_error)?
        };
        stash.stats = Some(stats);
        Ok((values_in(dtype, vec![stats.value]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        upstream: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let upstream = upstream.to_dtype(DType::F32)?;
        let (taken, lse) = {
            let mut stash = lock(&self.stash);
            (stash.gradient.take(), stash.lse.clone())
        };
        let grad = match (lse, taken) {
            (Some(lse), _) => logits.apply_op2_no_bwd(
                targets,
                &Gradient {
                    ce: self.ce.clone(),
                    rows: Some((lse, upstream.to_vec1::<f32>()?)),
                    scale: 1.0,
                },
            )?,
            (None, Some(mut grad)) => {
                let s = upstream.to_scalar::<f32>()?;
                if s != 1.0 {
                    scale_in_place(&mut grad, s);
                }
                tensor(grad, logits.shape())?
            }
            (None, None) => logits.apply_op2_no_bwd(
                targets,
                &Gradient {
                    ce: self.ce.clone(),
                    rows: None,
                    scale: upstream.to_scalar::<f32>()?,
                },
            )?,
        };
        Ok((Some(grad), None))
    }
}

impl CustomOp2 for Gradient {
    fn name(&self) -> &'static str {
        "xent-cross-entropy-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let logits = Logits::borrow(s1, l1)?;
        let targets = targets_i64(s2, l2)?;
        let grad = match &self.rows {
            Some((lse, upstream)) => logits
                .backward(&self.ce, &targets, lse, upstream)
                .map_err(candle_error)?,
            None => {
                let (_, mut grad) = logits
                    .forward_backward(&self.ce, &targets)
                    .map_err(candle_error)?;
                if self.scale != 1.0 {
                    scale_in_place(&mut grad, self.scale);
                }
                grad
            }
        };
        Ok((grad, l1.shape().clone()))
    }
}
