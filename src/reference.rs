//! The scalar reference: the executable specification every kernel is tested against.
//!
//! Plain loops, f64 throughout, no cleverness. Per counted row with target `t`, class
//! weights `w` (all 1 without weights), smoothing `eps` and `C` classes:
//!
//! ```text
//! logp_j = (z_j - max) - ln sum_k exp(z_k - max)
//! loss   = (1 - eps) w_t (-logp_t) + (eps / C) sum_j w_j (-logp_j)
//! grad_j = scale ((1 - eps) w_t (p_j - [j = t]) + (eps / C) (W p_j - w_j)),  W = sum_j w_j
//! ```
//!
//! The reduced value is the sum of row losses times `scale` = `1 / sum of counted w_t`
//! (mean) or 1 (sum); a mean over zero weight is 0 with a zero gradient. A counted row
//! with a NaN or +inf logit, or with every logit -inf, has NaN loss and gradient; ignored
//! rows get a zero gradient whatever they hold. Errors are those of the fast path (the same
//! checks run first).

use crate::{CrossEntropy, Error, Reduction, Target};

/// The reference result of a cross-entropy call.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The reduced loss.
    pub value: f64,
    /// Rows counted.
    pub rows: usize,
    /// Counted rows whose first argmax is the target (never a NaN row).
    pub correct: usize,
    /// Sum of counted rows' target weights.
    pub weight: f64,
    /// The gradient, row-major like the logits.
    pub grad: Vec<f64>,
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
    let c = ce.classes();
    let eps = f64::from(ce.get_label_smoothing());
    let weights = ce.get_class_weights();
    let w = |j: usize| weights.map_or(1.0, |w| f64::from(w[j]));
    let w_total: f64 = (0..c).map(w).sum();
    let ignore = ce.get_ignore_index().map(i128::from);
    let counted: Vec<(usize, usize)> = (targets.iter().enumerate())
        .filter(|(_, t)| Some(t.class()) != ignore)
        .map(|(r, t)| (r, t.class() as usize))
        .collect();
    let weight: f64 = counted.iter().map(|&(_, t)| w(t)).sum();
    let scale = match ce.get_reduction() {
        Reduction::Sum => 1.0,
        _ if weight == 0.0 => 0.0,
        _ => 1.0 / weight,
    };
    let (mut total, mut correct) = (0.0, 0);
    let mut grad = vec![0.0; logits.len()];
    for &(r, t) in &counted {
        let z = &logits[r * c..(r + 1) * c];
        let logp = log_softmax_row(z);
        let mut loss = (1.0 - eps) * w(t) * -logp[t];
        if eps != 0.0 {
            loss += eps / c as f64 * (0..c).map(|j| w(j) * -logp[j]).sum::<f64>();
        }
        total += loss;
        let first_argmax = (0..c).fold(0, |a, j| if z[j] > z[a] { j } else { a });
        correct += usize::from(!logp[0].is_nan() && first_argmax == t);
        if scale == 0.0 {
            // A mean over zero weight: the gradient stays exactly zero (documented).
            continue;
        }
        for j in 0..c {
            let p = logp[j].exp();
            let onehot = if j == t { 1.0 } else { 0.0 };
            let g = (1.0 - eps) * w(t) * (p - onehot) + eps / c as f64 * (w_total * p - w(j));
            grad[r * c + j] = scale * g;
        }
    }
    let value = if scale == 0.0 { 0.0 } else { total * scale };
    Ok(Reference {
        value,
        rows: counted.len(),
        correct,
        weight,
        grad,
    })
}

/// Log-softmax of one row in f64; NaN everywhere for a row with NaN, +inf, or only -inf.
fn log_softmax_row(z: &[f32]) -> Vec<f64> {
    let bad = z.iter().any(|v| v.is_nan() || *v == f32::INFINITY)
        || z.iter().all(|v| *v == f32::NEG_INFINITY);
    if bad {
        return vec![f64::NAN; z.len()];
    }
    let m = z
        .iter()
        .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
    let s: f64 = z.iter().map(|&v| (f64::from(v) - m).exp()).sum();
    z.iter().map(|&v| (f64::from(v) - m) - s.ln()).collect()
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
    Ok(x.chunks(classes).flat_map(log_softmax_row).collect())
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
