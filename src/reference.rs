//! The scalar reference: the executable specification every kernel is tested against.
//!
//! Plain loops, f64 throughout, no cleverness. Per counted row with target `t`, class
//! weights `w` (all 1 without weights), smoothing `eps`, z-loss coefficient `zc` and `C`
//! classes, on `y = z`, or `y = cap tanh(z / cap)` with soft-capping:
//!
//! ```text
//! lse    = ln sum_k exp(y_k)            (computed as max + ln sum_k exp(y_k - max))
//! logp_j = y_j - lse
//! loss   = (1 - eps) w_t (-logp_t) + (eps / C) sum_j w_j (-logp_j) + zc lse^2
//! grad_j = scale ((1 - eps) w_t (p_j - [j = t]) + (eps / C) (W p_j - w_j) + 2 zc lse p_j) s_j
//! ```
//!
//! with `W = sum_j w_j` and `s_j = 1 - (y_j / cap)^2` (1 without capping). The reduced
//! value is the sum of row losses times `scale` = `1 / sum of counted w_t` (mean) or 1
//! (sum, none); a mean over zero weight is 0 with a zero gradient. A counted row with a
//! NaN or +inf logit, or with every logit -inf, has NaN loss and gradient (after capping,
//! only NaN remains non-finite); ignored rows get a zero gradient whatever they hold. The
//! predicted class is the first index of the largest raw logit, NaN entries skipped (0 if no
//! entry is a number above -inf). Errors are those of the fast path
//! (the same checks run first).

use crate::{CrossEntropy, Error, Reduction, Target};

/// The reference result of a cross-entropy call.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The reduced loss (z-loss included).
    pub value: f64,
    /// The reduced z-loss part of `value`.
    pub z_loss: f64,
    /// Rows counted.
    pub rows: usize,
    /// Counted rows whose first argmax is the target (never a NaN row).
    pub correct: usize,
    /// Sum of counted rows' target weights.
    pub weight: f64,
    /// The gradient, row-major like the logits.
    pub grad: Vec<f64>,
    /// Unreduced row losses (0 for ignored rows).
    pub row_losses: Vec<f64>,
    /// Row log-sum-exp of `y` (0 for ignored rows, NaN for NaN rows).
    pub lse: Vec<f64>,
    /// Row predicted classes (`usize::MAX` for ignored rows).
    pub predictions: Vec<usize>,
}

/// The predicted class of a row: the first index of its largest logit, NaN entries
/// skipped; 0 if no entry is a number above -inf.
pub fn predicted(z: &[f32]) -> usize {
    let (mut best, mut top) = (0, f32::NEG_INFINITY);
    for (j, &v) in z.iter().enumerate() {
        if v > top {
            (best, top) = (j, v);
        }
    }
    best
}

/// The options of a call, as f64 numbers.
struct Opts {
    c: usize,
    eps: f64,
    zc: f64,
    /// Class weights (all 1 without weights).
    w: Vec<f64>,
    w_total: f64,
    ignore: Option<i128>,
}

impl Opts {
    fn of(ce: &CrossEntropy) -> Opts {
        let c = ce.get_classes();
        let w: Vec<f64> = match ce.get_class_weights() {
            Some(ws) => ws.iter().map(|&v| f64::from(v)).collect(),
            None => vec![1.0; c],
        };
        Opts {
            c,
            eps: f64::from(ce.get_label_smoothing()),
            zc: f64::from(ce.get_z_loss()),
            w_total: w.iter().sum(),
            w,
            ignore: ce.get_ignore_index().map(i128::from),
        }
    }
}

/// The logits the loss sees: soft-capped when that option is on.
fn capped(ce: &CrossEntropy, z: &[f32]) -> Vec<f64> {
    match ce.get_softcap() {
        None => z.iter().map(|&v| f64::from(v)).collect(),
        Some(cap) => {
            let cap = f64::from(cap);
            z.iter()
                .map(|&v| cap * (f64::from(v) / cap).tanh())
                .collect()
        }
    }
}

/// The soft-capping chain factor at a capped value.
fn slope(ce: &CrossEntropy, y: f64) -> f64 {
    ce.get_softcap().map_or(1.0, |cap| {
        let t = y / f64::from(cap);
        1.0 - t * t
    })
}

/// Loss and gradient of `ce` on `logits`, `targets`, in f64.
///
/// # Errors
/// Exactly the errors [`CrossEntropy::forward`] returns for the same input.
///
/// ```
/// let ce = xent::CrossEntropy::new(2);
/// let r = xent::reference::cross_entropy(&ce, &[0.0, 0.0], &[1u8])?;
/// assert_eq!(r.grad, vec![0.5, -0.5]);
/// assert!((r.value - std::f64::consts::LN_2).abs() < 1e-15);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy<T: Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
) -> Result<Reference, Error> {
    ce.check(logits.len(), targets, None)?;
    let Opts {
        c,
        eps,
        zc,
        ref w,
        w_total,
        ignore,
    } = Opts::of(ce);
    let w = |j: usize| w[j];
    let counted: Vec<(usize, usize)> = (targets.iter().enumerate())
        .filter(|(_, t)| Some(t.class()) != ignore)
        .map(|(r, t)| (r, t.class() as usize))
        .collect();
    let weight: f64 = counted.iter().map(|&(_, t)| w(t)).sum();
    let scale = match ce.get_reduction() {
        Reduction::Sum | Reduction::None => 1.0,
        _ if weight == 0.0 => 0.0,
        _ => 1.0 / weight,
    };
    let (mut total, mut ztotal, mut correct) = (0.0, 0.0, 0);
    let rows = targets.len();
    let (mut row_losses, mut lses) = (vec![0.0; rows], vec![0.0; rows]);
    let mut predictions = vec![usize::MAX; rows];
    let mut grad = vec![0.0; logits.len()];
    for &(r, t) in &counted {
        let z = &logits[r * c..(r + 1) * c];
        let y = capped(ce, z);
        let (logp, lse) = log_softmax_row(&y);
        let mut loss = (1.0 - eps) * w(t) * -logp[t];
        if eps != 0.0 {
            loss += eps / c as f64 * (0..c).map(|j| w(j) * -logp[j]).sum::<f64>();
        }
        let zl = if zc != 0.0 { zc * lse * lse } else { 0.0 };
        total += loss + zl;
        ztotal += zl;
        row_losses[r] = loss + zl;
        lses[r] = lse;
        predictions[r] = predicted(z);
        correct += usize::from(!(loss + zl).is_nan() && predictions[r] == t);
        if scale == 0.0 {
            // A mean over zero weight: the gradient stays exactly zero (documented).
            continue;
        }
        for j in 0..c {
            let p = logp[j].exp();
            let onehot = if j == t { 1.0 } else { 0.0 };
            let mut g = (1.0 - eps) * w(t) * (p - onehot) + eps / c as f64 * (w_total * p - w(j));
            if zc != 0.0 {
                g += 2.0 * zc * lse * p;
            }
            grad[r * c + j] = scale * g * slope(ce, y[j]);
        }
    }
    let r = |x: f64| if scale == 0.0 { 0.0 } else { x * scale };
    Ok(Reference {
        value: r(total),
        z_loss: r(ztotal),
        rows: counted.len(),
        correct,
        weight,
        grad,
        row_losses,
        lse: lses,
        predictions,
    })
}

/// The gradient of `sum_i upstream[i] loss_i` given the rows' saved log-sum-exp, as
/// [`CrossEntropy::backward`] defines it (no reduction; ignored rows zero).
///
/// # Errors
/// Exactly the errors [`CrossEntropy::backward`] returns for the same input.
///
/// ```
/// let ce = xent::CrossEntropy::new(2);
/// let g = xent::reference::backward(&ce, &[0.0, 0.0], &[0u8], &[std::f32::consts::LN_2], &[2.0])?;
/// assert!((g[0] + 1.0).abs() < 1e-7 && (g[1] - 1.0).abs() < 1e-7);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn backward<T: Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
    lse: &[f32],
    upstream: &[f32],
) -> Result<Vec<f64>, Error> {
    ce.check(logits.len(), targets, None)?;
    for (what, b) in [("lse", lse), ("upstream", upstream)] {
        if b.len() != targets.len() {
            return Err(Error::InputLength {
                what,
                len: b.len(),
                expected: targets.len(),
            });
        }
    }
    let Opts {
        c,
        eps,
        zc,
        ref w,
        w_total,
        ignore,
    } = Opts::of(ce);
    let w = |j: usize| w[j];
    let mut grad = vec![0.0; logits.len()];
    for (r, t) in targets.iter().enumerate() {
        if Some(t.class()) == ignore {
            continue;
        }
        let t = t.class() as usize;
        let (l, u) = (f64::from(lse[r]), f64::from(upstream[r]));
        let y = capped(ce, &logits[r * c..(r + 1) * c]);
        for j in 0..c {
            let p = (y[j] - l).exp();
            let onehot = if j == t { 1.0 } else { 0.0 };
            let g = (1.0 - eps) * w(t) * (p - onehot)
                + eps / c as f64 * (w_total * p - w(j))
                + 2.0 * zc * l * p;
            grad[r * c + j] = u * g * slope(ce, y[j]);
        }
    }
    Ok(grad)
}

/// Log-softmax of one row in f64 and its log-sum-exp; NaN everywhere for a row with NaN,
/// +inf, or only -inf.
fn log_softmax_row(z: &[f64]) -> (Vec<f64>, f64) {
    let bad = z.iter().any(|v| v.is_nan() || *v == f64::INFINITY)
        || z.iter().all(|v| *v == f64::NEG_INFINITY);
    if bad {
        return (vec![f64::NAN; z.len()], f64::NAN);
    }
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    (z.iter().map(|&v| (v - m) - s.ln()).collect(), m + s.ln())
}

/// Row-wise softmax in f64.
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`].
///
/// ```
/// assert_eq!(xent::reference::softmax(&[0.0, 0.0], 2)?, vec![0.5, 0.5]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax(x: &[f32], classes: usize) -> Result<Vec<f64>, Error> {
    Ok(log_softmax(x, classes)?.into_iter().map(f64::exp).collect())
}

/// Row-wise log-softmax in f64 (NaN rows for NaN, +inf, or all -inf, as the fast path).
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`].
///
/// ```
/// let lp = xent::reference::log_softmax(&[0.0, f32::NEG_INFINITY, 1.0, f32::NAN], 2)?;
/// assert_eq!(&lp[..2], &[0.0, f64::NEG_INFINITY]);
/// assert!(lp[2].is_nan() && lp[3].is_nan());
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax(x: &[f32], classes: usize) -> Result<Vec<f64>, Error> {
    rows_ok(x.len(), classes)?;
    Ok(x.chunks(classes)
        .flat_map(|z| log_softmax_row(&z.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).0)
        .collect())
}

/// Row-wise log-sum-exp in f64 (`torch.logsumexp` semantics for non-finite rows).
///
/// # Errors
/// [`Error::ZeroClasses`], [`Error::LogitsShape`].
///
/// ```
/// let inf = f32::INFINITY;
/// let lse = xent::reference::logsumexp(&[0.0, 0.0, 1.0, inf, -inf, -inf], 2)?;
/// assert_eq!(lse, vec![std::f64::consts::LN_2, f64::INFINITY, f64::NEG_INFINITY]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn logsumexp(x: &[f32], classes: usize) -> Result<Vec<f64>, Error> {
    rows_ok(x.len(), classes)?;
    Ok(x.chunks(classes)
        .map(|z| {
            if z.iter().any(|v| v.is_nan()) {
                f64::NAN
            } else if z.contains(&f32::INFINITY) {
                f64::INFINITY
            } else if z.iter().all(|v| *v == f32::NEG_INFINITY) {
                f64::NEG_INFINITY
            } else {
                let m = z
                    .iter()
                    .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
                m + z
                    .iter()
                    .map(|&v| (f64::from(v) - m).exp())
                    .sum::<f64>()
                    .ln()
            }
        })
        .collect())
}

fn rows_ok(len: usize, classes: usize) -> Result<(), Error> {
    if classes == 0 {
        return Err(Error::ZeroClasses);
    }
    if !len.is_multiple_of(classes) {
        return Err(Error::LogitsShape { len, classes });
    }
    Ok(())
}

/// The reference result of a fused linear + cross-entropy call
/// ([`linear_cross_entropy`]).
#[cfg(feature = "linear")]
#[derive(Clone, Debug, PartialEq)]
pub struct LinearReference {
    /// The cross-entropy reference on the logits (its `grad` is `dLoss/dZ`).
    pub ce: Reference,
    /// The logits `Z = H W^T + b`, summed in f64 and rounded to f32 (what the
    /// cross-entropy sees).
    pub logits: Vec<f32>,
    /// `dLoss/dH = G W`, row-major like the hidden states.
    pub d_hidden: Vec<f64>,
    /// `dLoss/dW = G^T H`, row-major like the weight.
    pub d_weight: Vec<f64>,
    /// `dLoss/db`: `G` summed over rows.
    pub d_bias: Vec<f64>,
}

/// The fused linear head of [`crate::LinearCrossEntropy`] spelled out: the logits
/// `Z = H W^T + b` in f64 (rounded to f32, as the fused path's GEMM output is f32), then
/// [`cross_entropy`] on them, then the gradients in f64. Plain loops: for small shapes.
/// The gradients are the exact ones: a head's
/// [`gradient_filter`](crate::LinearCrossEntropy::gradient_filter) is not applied here
/// (the tests model it on top of this).
///
/// # Errors
/// Exactly the errors [`crate::LinearCrossEntropy::forward`] returns for the same input
/// (a gradient filter's threshold out of range included).
///
/// ```
/// use xent::{CrossEntropy, LinearCrossEntropy};
/// let head = LinearCrossEntropy::new(CrossEntropy::new(2), 1);
/// let r = xent::reference::linear_cross_entropy(&head, &[1.0], &[0.0, 0.0], None, &[1u8])?;
/// assert_eq!(r.d_weight, vec![0.5, -0.5]);
/// assert_eq!(r.d_hidden, vec![0.0]); // weights 0: no gradient reaches h
/// # Ok::<(), xent::Error>(())
/// ```
#[cfg(feature = "linear")]
pub fn linear_cross_entropy<T: Target>(
    head: &crate::LinearCrossEntropy,
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    targets: &[T],
) -> Result<LinearReference, Error> {
    head.check_inputs(hidden.len(), weight.len(), bias.map(<[f32]>::len), targets)?;
    let (d, v) = (head.get_dim(), head.get_cross_entropy().get_classes());
    let n = targets.len();
    let mut logits = vec![0f32; n * v];
    for i in 0..n {
        for j in 0..v {
            let dot: f64 = (0..d)
                .map(|k| f64::from(hidden[i * d + k]) * f64::from(weight[j * d + k]))
                .sum();
            logits[i * v + j] = (dot + bias.map_or(0.0, |b| f64::from(b[j]))) as f32;
        }
    }
    let ce = cross_entropy(head.get_cross_entropy(), &logits, targets)?;
    let g = |i: usize, j: usize| ce.grad[i * v + j];
    let d_hidden = (0..n * d)
        .map(|ik| {
            (0..v)
                .map(|j| g(ik / d, j) * f64::from(weight[j * d + ik % d]))
                .sum()
        })
        .collect();
    let d_weight = (0..v * d)
        .map(|jk| {
            (0..n)
                .map(|i| g(i, jk / d) * f64::from(hidden[i * d + jk % d]))
                .sum()
        })
        .collect();
    let d_bias = (0..v).map(|j| (0..n).map(|i| g(i, j)).sum()).collect();
    Ok(LinearReference {
        ce,
        logits,
        d_hidden,
        d_weight,
        d_bias,
    })
}
