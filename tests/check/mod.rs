//! The checks shared by the tests and the fuzz targets (`fuzz/fuzz_targets/*.rs` include
//! this file by path): the tolerance model, and one checker per fuzz target that decodes
//! arbitrary bytes into calls and panics on any disagreement. A crash input found by
//! fuzzing becomes a regression test by copying it into `fuzz/regressions/<target>/`,
//! which `tests/corpus.rs` replays on every `cargo test`. Only `xent` and `std` are used,
//! so the file compiles in both crates (and `half`, which `xent` re-exports).
//!
//! # Tolerance model
//!
//! The tolerances are derived, not tuned. Write `u = f32::EPSILON` (2^-23) and, for a row
//! with max `m`, `d_j = z_j - m`.
//!
//! * `e_j = exp(d_j)`: the exp is within 2 ulp (`2u` relative); `d_j` itself is rounded to
//!   f32, an absolute error of at most `|d_j| u / 2`, which is that much relative error in
//!   `e_j`. So `e_j` carries `(2 + |d_j| / 2) u`.
//! * `S = sum_j e_j`: every kernel keeps at least 16 partial sums (two accumulators of at
//!   least 8 lanes), each a recursive sum of at most `C/16 + 1` terms, then a 5-level tree:
//!   relative error at most `(C/16 + 6) u` from the additions, plus the terms' own error,
//!   bounded by `sum_j p_j (2 + |d_j|/2) u <= (2 + (1 + ln C)/2) u` (the `p`-weighted
//!   `|d_j|` is the row's entropy). Together: `gamma_S = (C/16 + 9 + ln C) u`. The vector
//!   log of the row-group path (C <= 64) is within 2 ulp of `ln S`, inside that budget,
//!   and its sums are pairwise trees of at most 6 levels.
//! * Gradient `g_j = scale (a p_j - b_j - c [j = t])`, formed with one multiply and one
//!   fused multiply-add and a final subtraction: `|err| <= (gamma_S + (|d_j|/2 + 5) u)
//!   |scale a p_j| + 2u (|scale b_j| + |scale c|)`, plus an absolute `scale |a| 2^-125` for
//!   probabilities that underflow to exactly 0 in the kernel.
//! * Row loss `c (ln S - d_t) + k (W ln S - sum_j w_j d_j)`: `ln S` carries `gamma_S`
//!   absolute, `d_t` carries `|d_t| u`, and the f32 smoothing sum carries
//!   `(C/16 + 8) u sum_j |w_j d_j|`. On the row-group path (C <= 64) the row loss is
//!   formed in f32 (three roundings, `3u` of it) and summed per lane in f64 (negligible);
//!   the final rounding to f32 adds `u`: the bound used, `8u |value|`, leaves room (for
//!   the non-negative weights used here, the rows' losses do not cancel).
//! * Soft-capping: the kernel's `y = cap tanh(z / cap)` is within `K = TANH_MAX_ULP + 1.5`
//!   ulp of the exact value, relative (`xent::exp`), so within
//!   `delta = K u max_j |y_j|` absolute over a row, so each `d_j = y_j - m` carries `2 delta` more, every
//!   `e_j` and `S` carry `2 delta` more relative error, and the row loss `4 delta (c + k W)`
//!   more. The chain factor `s = 1 - (y / cap)^2` is within `(2K + 3)u` absolute (`y`
//!   carries `Ku`, `1 / cap` and the product `u`, the square doubles it, the fused
//!   subtraction adds half an ulp), so a gradient entry `g' s` carries
//!   `|s| err(g') + (2K + 3)u |g'|`. All `d_j` above are on the capped values.
//! * z-loss `zc lse^2`: `lse = m + ln S` is formed in f64 from the f32 `S`, within
//!   `eps_l = gamma_S + 2 delta`, so the term carries `zc (2 |lse| + eps_l) eps_l`; in the
//!   gradient `a` becomes `a + 2 zc lse` and the lse error adds `2 zc eps_l p_j`.
//! * Backward from a saved `lse` (f32, taken as exact): `e_j = exp(y_j - lse)` carries
//!   `(2 + |y_j - lse| / 2) u + 2 delta`, `alpha` one rounding, the fused multiply-add one
//!   more: as the gradient above with `gamma_S` replaced by 0.

#![allow(dead_code)]

use xent::{CrossEntropy, Kernel, Reduction, Target};

#[cfg(feature = "linear")]
pub mod linear;

pub const U: f64 = f32::EPSILON as f64;

/// Relative error bound of a row's sum of exps (see the module docs).
pub fn gamma_s(classes: usize) -> f64 {
    (classes as f64 / 16.0 + 9.0 + (classes as f64).ln()) * U
}

/// `true` when `got` matches `want` within `tol`, or both are the same non-finite value.
pub fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    // Results are f32: a reference beyond f32's range must come out as that infinity.
    if (want as f32).is_infinite() {
        return got == f64::from(want as f32);
    }
    (got - want).abs() <= tol
}

/// `a * b`, but 0 when `b == 0` even if `a` is infinite.
pub fn mul0(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a * b }
}

/// The row max over non-NaN entries (as the kernels take it).
pub fn row_max(z: &[f32]) -> f64 {
    z.iter()
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)))
}

/// The logits the loss sees, in f64: soft-capped when that option is on.
pub fn capped(ce: &CrossEntropy, z: &[f32]) -> Vec<f64> {
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

/// Max over non-NaN entries of f64 values.
fn max64(y: &[f64]) -> f64 {
    y.iter()
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, |a, &v| a.max(v))
}

/// `K` of the soft-capping error bound, in ulp relative (module docs).
pub fn cap_k() -> f64 {
    f64::from(xent::exp::TANH_MAX_ULP) + 1.5
}

/// The soft-capping error bound `delta` of the row `z` (module docs), 0 without capping.
pub fn cap_delta(ce: &CrossEntropy, z: &[f32]) -> f64 {
    if ce.get_softcap().is_none() {
        return 0.0;
    }
    let top = capped(ce, z)
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, v| a.max(v.abs()));
    cap_k() * U * top
}

/// The mean's divisor and the gradient scale the reference uses.
fn scale_of<T: Target>(ce: &CrossEntropy, targets: &[T]) -> f64 {
    let ignore = ce.get_ignore_index().map(i128::from);
    let w = |j: usize| ce.get_class_weights().map_or(1.0, |w| f64::from(w[j]));
    let weight: f64 = targets
        .iter()
        .filter(|t| Some(t.class()) != ignore)
        .map(|t| w(t.class() as usize))
        .sum();
    match ce.get_reduction() {
        Reduction::Mean if weight == 0.0 => 0.0,
        Reduction::Mean => 1.0 / weight,
        _ => 1.0,
    }
}

/// The absolute error bound of one counted row's unreduced loss, and of its z-loss part
/// (module docs).
pub fn row_loss_tolerance(ce: &CrossEntropy, z: &[f32], t: usize, lse: f64) -> (f64, f64) {
    let c = ce.get_classes();
    let eps = f64::from(ce.get_label_smoothing());
    let w = |j: usize| ce.get_class_weights().map_or(1.0, |w| f64::from(w[j]));
    let w_total: f64 = (0..c).map(w).sum();
    let k = eps / c as f64;
    let delta = cap_delta(ce, z);
    let gs = gamma_s(c) + 2.0 * delta;
    let y = capped(ce, z);
    let m = max64(&y);
    let cw = (1.0 - eps) * w(t);
    // A zero weight makes the row's term exactly 0 even if its logits are not finite.
    let mut tol = mul0(gs + (y[t] - m).abs() * U + 2.0 * delta, cw.abs());
    if k != 0.0 {
        // An infinite sum means a masked class: the loss is +inf, compared exactly.
        let wd: f64 = (0..c).map(|j| (w(j) * (y[j] - m)).abs()).sum();
        tol += k * (w_total.abs() * gs + (c as f64 / 16.0 + 8.0) * U * wd + 2.0 * delta * w_total);
    }
    let zc = f64::from(ce.get_z_loss());
    let ztol = if zc == 0.0 {
        0.0
    } else {
        zc * (2.0 * lse.abs() + gs) * gs
    };
    (tol + ztol, ztol)
}

/// Tolerance of the reduced loss value and of the reduced z-loss for this call.
pub fn loss_tolerance<T: Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
    want: &xent::reference::Reference,
) -> (f64, f64) {
    let c = ce.get_classes();
    let ignore = ce.get_ignore_index().map(i128::from);
    let (mut tol, mut ztol) = (0.0, 0.0);
    for (r, t) in targets.iter().enumerate() {
        if Some(t.class()) == ignore {
            continue;
        }
        let (a, b) = row_loss_tolerance(
            ce,
            &logits[r * c..(r + 1) * c],
            t.class() as usize,
            want.lse[r],
        );
        tol += a;
        ztol += b;
    }
    let scale = scale_of(ce, targets).abs();
    let tiny = f64::from(f32::MIN_POSITIVE);
    (
        mul0(tol, scale) + 8.0 * U * want.value.abs() + tiny,
        mul0(ztol, scale) + 8.0 * U * want.z_loss.abs() + tiny,
    )
}

/// Checks a gradient against the reference, element by element (module docs). `saved`
/// holds the f32 log-sum-exp and upstream gradients of a backward call (`gamma_S` then
/// drops out and `scale` is the row's upstream gradient).
#[allow(clippy::too_many_arguments)]
pub fn check_grad<T: Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
    got: &[f32],
    want: &[f64],
    want_lse: &[f64],
    saved: Option<(&[f32], &[f32])>,
    what: &str,
) -> Result<(), String> {
    let c = ce.get_classes();
    let eps = f64::from(ce.get_label_smoothing());
    let zc = f64::from(ce.get_z_loss());
    let w = |j: usize| ce.get_class_weights().map_or(1.0, |w| f64::from(w[j]));
    let w_total: f64 = (0..c).map(w).sum();
    let k = eps / c as f64;
    let ignore = ce.get_ignore_index().map(i128::from);
    let call_scale = scale_of(ce, targets);
    let capping = ce.get_softcap().is_some();
    if call_scale == 0.0 && saved.is_none() {
        // A mean over zero weight: the gradient is exactly zero everywhere (documented).
        return match got.iter().position(|&g| g != 0.0) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{what}: zero-weight mean, but grad[{i}] = {}",
                got[i]
            )),
        };
    }
    for (r, t) in targets.iter().enumerate() {
        let row_got = &got[r * c..(r + 1) * c];
        if Some(t.class()) == ignore {
            // Ignored rows: exactly zero, whatever they hold.
            if !row_got.iter().all(|&g| g == 0.0) {
                return Err(format!("{what}: ignored row {r} = {row_got:?}"));
            }
            continue;
        }
        let z = &logits[r * c..(r + 1) * c];
        let y = capped(ce, z);
        let delta = cap_delta(ce, z);
        let (scale, lse, gs, m) = match saved {
            None => {
                let gs = gamma_s(c) + 2.0 * delta;
                (call_scale, want_lse[r], gs, max64(&y))
            }
            Some((lse, up)) => (f64::from(up[r]), f64::from(lse[r]), 0.0, f64::from(lse[r])),
        };
        let cw = (1.0 - eps) * w(t.class() as usize);
        let a = cw + k * w_total + 2.0 * zc * lse;
        let eps_l = gamma_s(c) + 2.0 * delta;
        // The documented overflow: a coefficient `scale a` at f32's limit (logits, weights
        // or a z-loss coefficient near f32::MAX) rounds to +-inf in the kernels, and
        // then an entry is +-inf (`e_j > 0`) or NaN (`inf * 0`), as PyTorch's autograd
        // gives for the same formula. The margin covers the kernels' own rounding of the
        // coefficient; a finite entry must still be right.
        let coef_overflows = (scale * a).abs() >= f64::from(f32::MAX) * (1.0 - 1.0 / 1024.0);
        for j in 0..c {
            let i = r * c + j;
            if coef_overflows && !got[i].is_finite() {
                continue;
            }
            let d = (y[j] - m).abs();
            let p = (y[j] - lse).exp();
            // The relative error of `e_j` is `exp(err) - 1` for an error `err` of its
            // exponent; linear (`p err`) while small. A mask (`y_j = -inf`) has `p = 0`
            // exactly: no room for error there. Past 1e-3 (a soft-capped row whose
            // logits are so large that `delta` is not small), the bound is taken from
            // the exponent itself, which covers a `p` that underflowed in the reference
            // but not in the kernel (`p` is then not determined by the inputs).
            let err = gs + (d / 2.0 + 5.0) * U + 2.0 * delta;
            let x = y[j] - lse;
            if x.is_finite() && err.is_finite() && (x + err).exp().is_infinite() {
                // The exponent's uncertainty reaches past f64's range: `p` may be
                // anything up to +inf (and the reference's own `p` may overflow, times a
                // zero upstream gradient NaN). Only a soft-capped row of logits near
                // 1e30 gets here, where `delta` is ~1e23 (an f32 log-sum-exp that large
                // cannot carry its own `ln C`): no value is wrong.
                continue;
            }
            let dp = if x == f64::NEG_INFINITY {
                0.0
            } else if err < 1e-3 {
                p * err
            } else {
                (x + err).exp() - p
            };
            let mut tol = mul0(dp, (scale * a).abs())
                + 2.0 * U * (scale * k * w(j)).abs()
                + 2.0 * U * (scale * cw).abs()
                + (scale * a).abs() * 2f64.powi(-125);
            if zc != 0.0 && saved.is_none() {
                tol += (scale * 2.0 * zc * eps_l * p).abs();
            }
            if capping {
                let s = ce
                    .get_softcap()
                    .map_or(1.0, |cap| 1.0 - (y[j] / f64::from(cap)).powi(2));
                let onehot = if j == t.class() as usize { 1.0 } else { 0.0 };
                let g_prime = scale * (a * p - k * w(j) - cw * onehot);
                let slope_tol = (2.0 * cap_k() + 3.0) * U;
                tol = mul0(tol, s.abs()) + mul0(slope_tol, g_prime.abs()) + U * want[i].abs();
            }
            if !close(f64::from(got[i]), want[i], tol) {
                return Err(format!(
                    "{what}: grad[{r},{j}] = {} want {} (tol {tol:e}) z={z:?} t={}",
                    got[i],
                    want[i],
                    t.class()
                ));
            }
        }
    }
    Ok(())
}

/// Checks loss value, z-loss, counts and weight against the reference.
pub fn check_loss<T: Target>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
    got: &xent::Loss,
    want: &xent::reference::Reference,
    what: &str,
) -> Result<(), String> {
    let (tol, ztol) = loss_tolerance(ce, z, t, want);
    if !close(f64::from(got.value), want.value, tol) {
        return Err(format!(
            "{what}: loss {} want {} (tol {tol:e})",
            got.value, want.value
        ));
    }
    if !close(f64::from(got.z_loss), want.z_loss, ztol) {
        return Err(format!(
            "{what}: z-loss {} want {} (tol {ztol:e})",
            got.z_loss, want.z_loss
        ));
    }
    if (got.rows, got.correct) != (want.rows, want.correct) || got.weight != want.weight {
        return Err(format!(
            "{what}: rows/correct/weight {:?} want {:?}",
            (got.rows, got.correct, got.weight),
            (want.rows, want.correct, want.weight)
        ));
    }
    Ok(())
}

/// Checks per-row losses and log-sum-exp against the reference.
pub fn check_rows<T: Target>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
    losses: &[f32],
    lse: &[f32],
    want: &xent::reference::Reference,
    what: &str,
) -> Result<(), String> {
    let c = ce.get_classes();
    let ignore = ce.get_ignore_index().map(i128::from);
    for (r, tr) in t.iter().enumerate() {
        if Some(tr.class()) == ignore {
            if losses[r] != 0.0 || lse[r] != 0.0 {
                return Err(format!(
                    "{what}: ignored row {r}: loss {} lse {}",
                    losses[r], lse[r]
                ));
            }
            continue;
        }
        let row = &z[r * c..(r + 1) * c];
        let gs = gamma_s(c) + 2.0 * cap_delta(ce, row);
        let (tol, _) = row_loss_tolerance(ce, row, tr.class() as usize, want.lse[r]);
        let tol = tol + U * want.row_losses[r].abs() + f64::from(f32::MIN_POSITIVE);
        if !close(f64::from(losses[r]), want.row_losses[r], tol) {
            return Err(format!(
                "{what}: row loss {r} = {} want {} (tol {tol:e})",
                losses[r], want.row_losses[r]
            ));
        }
        let tol = gs + U * want.lse[r].abs();
        if !close(f64::from(lse[r]), want.lse[r], tol) {
            return Err(format!(
                "{what}: lse {r} = {} want {} (tol {tol:e})",
                lse[r], want.lse[r]
            ));
        }
    }
    Ok(())
}

pub fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Every cross-entropy entry point on every available kernel against the reference; in
/// place and into a buffer must agree bit for bit, and so must forward and backward.
pub fn check_all_entry_points<T: Target>(
    ce0: &CrossEntropy,
    z: &[f32],
    t: &[T],
) -> Result<(), String> {
    let want = xent::reference::cross_entropy(ce0, z, t).map_err(|e| e.to_string())?;
    for k in Kernel::available() {
        let ce = ce0.clone().kernel(k);
        let what = format!("{k:?} C={} rows={}", ce.get_classes(), t.len());
        let err = |e: xent::Error| format!("{what}: unexpected error {e}");
        let fwd = ce.forward(z, t).map_err(err)?;
        check_loss(&ce, z, t, &fwd, &want, &format!("{what} forward"))?;
        let mut g = z.to_vec();
        let fb = ce.forward_backward(&mut g, t).map_err(err)?;
        check_loss(&ce, z, t, &fb, &want, &format!("{what} forward_backward"))?;
        check_grad(
            &ce,
            z,
            t,
            &g,
            &want.grad,
            &want.lse,
            None,
            &format!("{what} forward_backward"),
        )?;
        let mut g2 = vec![f32::NAN; z.len()];
        let fbi = ce.forward_backward_into(z, t, &mut g2).map_err(err)?;
        if bits(&g) != bits(&g2) || fb.value.to_bits() != fbi.value.to_bits() {
            return Err(format!("{what}: in place and into a buffer differ"));
        }
        if fwd.value.to_bits() != fb.value.to_bits()
            || (fwd.rows, fwd.correct) != (fb.rows, fb.correct)
        {
            return Err(format!("{what}: forward and forward_backward differ"));
        }
        // Per-row outputs: the same loss from the fused or blocked path, rows checked.
        let rows = t.len();
        let (mut losses, mut lse) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
        let mut predicted = vec![usize::MAX - 1; rows];
        let outs = xent::RowOutputs::new()
            .losses(&mut losses)
            .lse(&mut lse)
            .predictions(&mut predicted);
        let fw = ce.forward_with(z, t, outs).map_err(err)?;
        if predicted != want.predictions {
            let r = (0..rows).find(|&r| predicted[r] != want.predictions[r]);
            return Err(format!(
                "{what} forward_with: row {r:?} predicted {:?}, the reference {:?}",
                r.map(|r| predicted[r]),
                r.map(|r| want.predictions[r])
            ));
        }
        check_loss(&ce, z, t, &fw, &want, &format!("{what} forward_with"))?;
        check_rows(
            &ce,
            z,
            t,
            &losses,
            &lse,
            &want,
            &format!("{what} forward_with"),
        )?;
        let mut g3 = z.to_vec();
        let (mut losses3, mut lse3) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
        let mut predicted3 = vec![0; rows];
        let outs = xent::RowOutputs::new()
            .losses(&mut losses3)
            .lse(&mut lse3)
            .predictions(&mut predicted3);
        let fbw = ce.forward_backward_with(&mut g3, t, outs).map_err(err)?;
        if bits(&losses) != bits(&losses3)
            || predicted != predicted3
            || bits(&lse) != bits(&lse3)
            || fbw.value.to_bits() != fw.value.to_bits()
        {
            return Err(format!(
                "{what}: forward_with and forward_backward_with differ"
            ));
        }
        check_grad(
            &ce,
            z,
            t,
            &g3,
            &want.grad,
            &want.lse,
            None,
            &format!("{what} forward_backward_with"),
        )?;
        // Backward from the saved lse with per-row upstream gradients.
        let up: Vec<f32> = (0..rows).map(|r| [1.0, 0.5, -2.0, 0.0][r % 4]).collect();
        let want_b = xent::reference::backward(&ce, z, t, &lse, &up).map_err(|e| e.to_string())?;
        let mut gb = z.to_vec();
        ce.backward(&mut gb, t, &lse, &up).map_err(err)?;
        check_grad(
            &ce,
            z,
            t,
            &gb,
            &want_b,
            &want.lse,
            Some((&lse, &up)),
            &format!("{what} backward"),
        )?;
        let mut gbi = vec![f32::NAN; z.len()];
        ce.backward_into(z, t, &lse, &up, &mut gbi).map_err(err)?;
        if bits(&gb) != bits(&gbi) {
            return Err(format!("{what}: backward in place and into differ"));
        }
        // Three vocabulary shards (the first may be empty), merged out of order.
        let (loss, grad) = sharded_in_three(&ce, z, t).map_err(err)?;
        check_loss(&ce, z, t, &loss, &want, &format!("{what} sharded"))?;
        check_grad(
            &ce,
            z,
            t,
            &grad,
            &want.grad,
            &want.lse,
            None,
            &format!("{what} sharded"),
        )?;
    }
    Ok(())
}

/// The sharded protocol on `[0, c/3)`, `[c/3, 2c/3)`, `[2c/3, c)`, merged as
/// `(2 + 0) + 1`: the loss and the gradient put back together.
pub fn sharded_in_three<T: Target>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
) -> Result<(xent::Loss, Vec<f32>), xent::Error> {
    let c = ce.get_classes();
    let cuts = [0, c / 3, 2 * c / 3, c];
    let parts: Vec<xent::Shard> = cuts
        .windows(2)
        .map(|w| xent::Shard::new(w[0], w[1] - w[0]))
        .collect();
    sharded(ce, z, t, &parts, &[2, 0, 1])
}

/// The sharded protocol on `parts`: statistics per shard, each row's merged in `order`
/// (indices into `parts`, taken modulo its length; the first one starts the fold), then
/// the loss and every shard's gradient, put back together.
pub fn sharded<T: Target>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
    parts: &[xent::Shard],
    order: &[usize],
) -> Result<(xent::Loss, Vec<f32>), xent::Error> {
    sharded_with_rows(ce, z, t, parts, order).map(|s| (s.loss, s.grad))
}

/// What [`sharded_with_rows`] returns.
pub struct Sharded {
    pub loss: xent::Loss,
    pub grad: Vec<f32>,
    /// Per-row losses and log-sum-exp from `shard_loss_with`.
    pub losses: Vec<f32>,
    pub lse: Vec<f32>,
}

/// [`sharded`], with the per-row outputs of `shard_loss_with` (whose `Loss` must equal
/// `shard_loss`'s exactly).
pub fn sharded_with_rows<T: Target>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
    parts: &[xent::Shard],
    order: &[usize],
) -> Result<Sharded, xent::Error> {
    let (c, rows) = (ce.get_classes(), t.len());
    let slice = |s: xent::Shard| -> Vec<f32> {
        (0..rows)
            .flat_map(|r| z[r * c + s.offset..r * c + s.offset + s.width].to_vec())
            .collect()
    };
    let mut stats = Vec::new();
    for &s in parts {
        let mut out = vec![xent::ShardStats::EMPTY; rows];
        ce.shard_stats(&slice(s), s, t, &mut out)?;
        stats.push(out);
    }
    let n = parts.len();
    let merged = (0..rows)
        .map(|r| {
            let first = stats[order[0] % n][r];
            order[1..]
                .iter()
                .try_fold(first, |acc, &i| acc.merge(stats[i % n][r]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let loss = ce.shard_loss(&merged, t)?;
    let (mut losses, mut lse) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
    let out = xent::RowOutputs::new().losses(&mut losses).lse(&mut lse);
    let with_rows = ce.shard_loss_with(&merged, t, out)?;
    assert_eq!(
        (with_rows.value.to_bits(), with_rows.rows, with_rows.correct),
        (loss.value.to_bits(), loss.rows, loss.correct),
        "shard_loss_with and shard_loss disagree"
    );
    let mut grad = vec![f32::NAN; z.len()];
    for &s in parts {
        let mut g = slice(s);
        ce.shard_backward(&mut g, s, t, &merged)?;
        for r in 0..rows {
            grad[r * c + s.offset..r * c + s.offset + s.width]
                .copy_from_slice(&g[r * s.width..(r + 1) * s.width]);
        }
    }
    Ok(Sharded {
        loss,
        grad,
        losses,
        lse,
    })
}

/// The half-precision path against the f32 path on the widened logits, for bf16 and f16
/// (see `tests/half.rs` for why they must agree bit for bit).
pub fn check_half<T: Target>(ce: &CrossEntropy, z: &[f32], t: &[T]) -> Result<(), String> {
    half_agrees(
        ce,
        z,
        t,
        xent::half::bf16::from_f32,
        xent::half::bf16::to_f32,
        xent::half::bf16::to_bits,
    )?;
    half_agrees(
        ce,
        z,
        t,
        xent::half::f16::from_f32,
        xent::half::f16::to_f32,
        xent::half::f16::to_bits,
    )
}

/// One 16-bit type: `narrow`/`widen` are the exact software conversions.
fn half_agrees<T: Target, H: xent::HalfFloat + std::fmt::Debug>(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[T],
    narrow: impl Fn(f32) -> H,
    widen: impl Fn(H) -> f32,
    to_bits: impl Fn(H) -> u16,
) -> Result<(), String> {
    let zh: Vec<H> = z.iter().map(|&v| narrow(v)).collect();
    let zw: Vec<f32> = zh.iter().map(|&v| widen(v)).collect();
    let rows = t.len();
    let fail = |e: xent::Error| e.to_string();
    for k in Kernel::available() {
        let ce = ce.clone().kernel(k);
        let what = format!("{k:?} {}", std::any::type_name::<H>());
        let f = ce.forward(&zw, t).map_err(fail)?;
        let h = ce.forward_half(&zh, t).map_err(fail)?;
        if f.value.to_bits() != h.value.to_bits() || (f.rows, f.correct) != (h.rows, h.correct) {
            return Err(format!("{what}: forward {f:?} vs half {h:?}"));
        }
        let mut g32 = zw.clone();
        let l32 = ce.forward_backward(&mut g32, t).map_err(fail)?;
        let mut gh = zh.clone();
        let lh = ce.forward_backward_half(&mut gh, t).map_err(fail)?;
        if l32.value.to_bits() != lh.value.to_bits() || l32.z_loss.to_bits() != lh.z_loss.to_bits()
        {
            return Err(format!("{what}: forward_backward {l32:?} vs half {lh:?}"));
        }
        for (i, (&g, &h)) in g32.iter().zip(&gh).enumerate() {
            let want = narrow(g);
            if !(to_bits(h) == to_bits(want) || (g.is_nan() && widen(h).is_nan())) {
                return Err(format!(
                    "{what}: grad[{i}] f32 {g:e} -> {want:?}, half path {h:?}"
                ));
            }
        }
        let (mut l1, mut s1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        let (mut l2, mut s2) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        let (mut p1, mut p2) = (vec![0; rows], vec![1; rows]);
        let mut a = zw.clone();
        let outs = xent::RowOutputs::new()
            .losses(&mut l1)
            .lse(&mut s1)
            .predictions(&mut p1);
        let la = ce.forward_backward_with(&mut a, t, outs).map_err(fail)?;
        let mut b = zh.clone();
        let outs = xent::RowOutputs::new()
            .losses(&mut l2)
            .lse(&mut s2)
            .predictions(&mut p2);
        ce.forward_backward_half_with(&mut b, t, outs)
            .map_err(fail)?;
        if bits(&l1) != bits(&l2) || bits(&s1) != bits(&s2) || p1 != p2 {
            return Err(format!("{what}: per-row outputs differ"));
        }
        // Forward only, per row: the same bits again.
        let (mut l3, mut s3) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        let outs = xent::RowOutputs::new().losses(&mut l3).lse(&mut s3);
        let fh = ce.forward_half_with(&zh, t, outs).map_err(fail)?;
        // (The value is the per-row path's, not `forward_half`'s: without per-row outputs
        // rows of at most 64 classes take the row-group path, whose last bits differ.)
        if bits(&l1) != bits(&l3)
            || bits(&s1) != bits(&s3)
            || fh.value.to_bits() != la.value.to_bits()
        {
            return Err(format!("{what}: forward_half_with differs"));
        }
        // Backward from the saved lse: the f32 backward on the widened logits, rounded.
        let up: Vec<f32> = (0..rows).map(|r| [0.5, 1.0, -2.0, 0.0][r % 4]).collect();
        let mut g32 = zw.clone();
        ce.backward(&mut g32, t, &s1, &up).map_err(fail)?;
        let mut gh = zh.clone();
        ce.backward_half(&mut gh, t, &s1, &up).map_err(fail)?;
        for (i, (&g, &h)) in g32.iter().zip(&gh).enumerate() {
            let want = narrow(g);
            if !(to_bits(h) == to_bits(want) || (g.is_nan() && widen(h).is_nan())) {
                return Err(format!(
                    "{what}: backward grad[{i}] f32 {g:e} -> {want:?}, half path {h:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Softmax, log-softmax and log-sum-exp on every kernel against the reference.
pub fn check_softmax_family(c: usize, z: &[f32]) -> Result<(), String> {
    let p = xent::reference::softmax(z, c).map_err(|e| e.to_string())?;
    let lp = xent::reference::log_softmax(z, c).map_err(|e| e.to_string())?;
    let lse = xent::reference::logsumexp(z, c).map_err(|e| e.to_string())?;
    let gs = gamma_s(c);
    for k in Kernel::available() {
        let ce = CrossEntropy::new(c).kernel(k);
        let fail = |e: xent::Error| format!("{k:?}: unexpected error {e}");
        let mut a = z.to_vec();
        ce.softmax(&mut a).map_err(fail)?;
        let mut b = vec![0.0; z.len()];
        ce.softmax_into(z, &mut b).map_err(fail)?;
        if bits(&a) != bits(&b) {
            return Err(format!("{k:?}: softmax in place and into differ"));
        }
        let mut l = z.to_vec();
        ce.log_softmax(&mut l).map_err(fail)?;
        let mut l2 = vec![0.0; z.len()];
        ce.log_softmax_into(z, &mut l2).map_err(fail)?;
        if bits(&l) != bits(&l2) {
            return Err(format!("{k:?}: log_softmax in place and into differ"));
        }
        let mut out = vec![0.0; z.len() / c];
        ce.logsumexp(z, &mut out).map_err(fail)?;
        for (r, row) in z.chunks(c).enumerate() {
            let m = row_max(row);
            for j in 0..c {
                let i = r * c + j;
                let d = (f64::from(row[j]) - m).abs();
                let tol = mul0(gs + (d / 2.0 + 4.0) * U, p[i]) + 2f64.powi(-125);
                if !close(f64::from(a[i]), p[i], tol) {
                    return Err(format!(
                        "{k:?} softmax[{r},{j}] {} vs {} row {row:?}",
                        a[i], p[i]
                    ));
                }
                let tol = gs + d * U + U * lp[i].abs();
                if !close(f64::from(l[i]), lp[i], tol) {
                    return Err(format!(
                        "{k:?} log_softmax[{r},{j}] {} vs {} row {row:?}",
                        l[i], lp[i]
                    ));
                }
            }
            let tol = gs + U * lse[r].abs() * 2.0;
            if !close(f64::from(out[r]), lse[r], tol) {
                return Err(format!(
                    "{k:?} logsumexp[{r}] {} vs {} row {row:?}",
                    out[r], lse[r]
                ));
            }
        }
    }
    Ok(())
}

/// Reads fuzz bytes; past the end it yields zeros, so every input decodes to something.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    pub fn f32_bits(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The most logits of a `differential` input whose logits are generated (its
/// `mode >> 6 == 1`); the other modes allow [`DIFFERENTIAL_MAX_LOGITS`].
pub const GENERATED_MAX_LOGITS: usize = 65_536;

/// The most logits of any other `differential` input (up to 9 rows, and at least one).
pub const DIFFERENTIAL_MAX_LOGITS: usize = 200_000;

/// The shape a `differential` input starts with: `(mode, classes, rows)`, read from its
/// first bytes, with `generated_max` the bound on the logits of the generated mode
/// ([`GENERATED_MAX_LOGITS`] in the fuzz target; a parameter so that a test can check
/// that the committed seeds decode alike under the old bound).
pub fn differential_shape(b: &mut Bytes<'_>, generated_max: usize) -> (u8, usize, usize) {
    let mode = b.u8();
    let classes = match mode % 8 {
        0 => 1 + usize::from(b.u16()) % 70_000,
        1 | 2 => 1 + usize::from(b.u8()) % 16,
        // The looped row-group instances and the unrolled ones above 16 classes, with
        // rows enough for whole groups of 16 and a partial one.
        3 => 17 + usize::from(b.u8()) % 48,
        _ => 1 + usize::from(b.u16()) % 300,
    };
    // Long rows cost the most per input (every kernel and entry point, and the f64
    // reference, under AddressSanitizer in `cargo fuzz`). Generated logits are real values
    // on every path, so their inputs are held to a third of the others' bound: still two
    // rows up to the longest linked ones (`TRAIL_MAX_CLASSES`, 32 768) and four at the
    // shortest online ones (16 384).
    let max_rows = if mode % 8 == 3 {
        40
    } else if mode >> 6 == 1 {
        (generated_max / classes).clamp(1, 9)
    } else {
        (DIFFERENTIAL_MAX_LOGITS / classes).clamp(1, 9)
    };
    let rows = usize::from(b.u8()) % (max_rows + 1);
    (mode, classes, rows)
}

/// Fuzz target `differential`: shape, raw f32 logit bit patterns (NaN, infinities,
/// subnormals, +-0, huge), targets of a chosen integer type, and every option, through
/// every entry point of every kernel, against the reference.
pub fn differential(data: &[u8]) {
    let mut b = Bytes(data);
    let (mode, classes, rows) = differential_shape(&mut b, GENERATED_MAX_LOGITS);
    let opts = b.u8();
    let mut ce = CrossEntropy::new(classes);
    if opts & 1 != 0 {
        ce = ce.reduction(Reduction::Sum);
    }
    let ignore: Option<i64> = match (opts >> 1) & 3 {
        0 => None,
        1 => Some(-100),
        _ => Some(i64::from(b.u16()) % classes as i64),
    };
    if let Some(i) = ignore {
        ce = ce.ignore_index(i);
    }
    ce = ce.label_smoothing(match (opts >> 3) & 3 {
        0 => 0.0,
        1 => 1.0,
        _ => f32::from(b.u8()) / 255.0,
    });
    if opts & 0x20 != 0 {
        // Non-negative finite weights: the tolerance model assumes no cancellation.
        let w: Vec<f32> = (0..classes).map(|_| f32::from(b.u8()) / 25.5).collect();
        ce = ce.class_weights(w);
    }
    let llm = b.u8();
    if llm & 1 != 0 {
        ce = ce.z_loss(f32::from(b.u8()) / 255.0 * [1e-4, 1e-2, 1.0, 0.0][usize::from(llm >> 6)]);
    }
    if llm & 2 != 0 {
        // Moderate caps, caps far above the logits (relative accuracy of tanh near 0),
        // and the ends of the accepted range.
        let cap = match (llm >> 3) & 7 {
            0 => 1e3,
            1 => 1e30,
            2 => xent::exp::SOFTCAP_MAX,
            3 => xent::exp::SOFTCAP_MIN,
            _ => 0.25 + f32::from(b.u8()) / 4.0,
        };
        ce = ce.softcap(cap);
    }
    if llm & 4 != 0 {
        ce = ce.reduction(Reduction::None);
    }
    let raw = opts & 0x40 != 0;
    // Long rows need more bytes than an input usually has, and bytes that run out read as
    // 0, a -inf logit: such rows would be nearly all -inf (exps 0). A quarter of the modes
    // (`mode >> 6 == 1`; the committed `seed-generated-*` inputs) generate the logits
    // instead, moderate values from two bytes, and leave the rest of the input to the
    // targets, so that the fuzzer reaches the long-row paths (the staged
    // `forward_backward_into`, the linked rows, the 16-bit rows read in blocks) with real
    // values.
    let generated = (mode >> 6 == 1).then(|| (usize::from(b.u8()) * 2 + 1, usize::from(b.u8())));
    let z: Vec<f32> = (0..rows * classes)
        .map(|i| {
            if let Some((step, start)) = generated {
                ((i * step + start) % 251) as f32 / 16.0 - 8.0
            } else if raw && !b.is_empty() {
                b.f32_bits()
            } else {
                // Mostly moderate values, so that long rows are not all NaN.
                let v = b.u8();
                match v {
                    0 => f32::NEG_INFINITY,
                    1 => f32::NAN,
                    2 => f32::INFINITY,
                    3 => 3.0e38,
                    4 => -3.0e38,
                    _ => (f32::from(v) - 128.0) / 8.0 + (i % 7) as f32,
                }
            }
        })
        .collect();
    let t: Vec<i64> = (0..rows)
        .map(|_| {
            let v = b.u16();
            match (ignore, v % 8) {
                (Some(i), 0) => i,
                _ => i64::from(v) % classes as i64,
            }
        })
        .collect();
    // Two target types, one signed and one unsigned: every entry point is instantiated per
    // target type and kernel, and under AddressSanitizer each one costs minutes of build
    // time. The other types (u8, u16, u64, usize) share the same conversions
    // (`Target::low`) and are covered by the test suite.
    let result = match b.u8() % 2 {
        1 if ignore.is_none_or(|i| i >= 0) => {
            check_all_entry_points(&ce, &z, &t.iter().map(|&v| v as u32).collect::<Vec<_>>())
        }
        _ => check_all_entry_points(&ce, &z, &t),
    };
    let result = result.and_then(|()| check_half(&ce, &z, &t));
    if let Err(e) = result.and_then(|()| check_softmax_family(classes, &z)) {
        panic!("{e}\noptions: {ce:?}");
    }
}

/// Fuzz target `bad_input`: arbitrary lengths, classes, targets and options straight into
/// the public API. Every call returns `Ok` or `Err` without panicking, and after `Err` the
/// caller's buffers are bit-for-bit unchanged.
pub fn bad_input(data: &[u8]) {
    let mut b = Bytes(data);
    let classes = match b.u8() % 6 {
        0 => 0,
        1 => usize::MAX - usize::from(b.u8()),
        2 => 1 << 33,
        _ => usize::from(b.u8()) % 20,
    };
    let len = usize::from(b.u8()) % 64;
    let mut ce = CrossEntropy::new(classes);
    let opts = b.u8();
    if opts & 1 != 0 {
        ce = ce.ignore_index(b.u64() as i64);
    }
    if opts & 2 != 0 {
        ce = ce.label_smoothing(b.f32_bits());
    }
    if opts & 4 != 0 {
        let n = usize::from(b.u8()) % 24;
        ce = ce.class_weights((0..n).map(|_| b.f32_bits()).collect::<Vec<_>>());
    }
    if opts & 8 != 0 {
        ce = ce.kernel(Kernel::ALL[usize::from(b.u8()) % Kernel::ALL.len()]);
    }
    if opts & 16 != 0 {
        ce = ce.reduction(Reduction::Sum);
    }
    if opts & 32 != 0 {
        ce = ce.z_loss(b.f32_bits());
    }
    if opts & 64 != 0 {
        ce = ce.softcap(b.f32_bits());
    }
    if opts & 128 != 0 {
        // The calling thread, or a pool of two of this configuration's own.
        ce = ce.threads(usize::from(b.u8() % 3));
    }
    let z: Vec<f32> = (0..len).map(|_| b.f32_bits()).collect();
    let nt = usize::from(b.u8()) % 12;
    let raw: Vec<u64> = (0..nt).map(|_| b.u64() % 24).collect();
    let glen = if b.u8() % 4 == 0 {
        usize::from(b.u8()) % 64
    } else {
        len
    };
    // Three target types: narrow unsigned, signed (negative values, the -100 ignore
    // index), and wide unsigned (values past 2^63 equal to a negative index modulo 2^64).
    // Each type instantiates every entry point on every kernel, which under
    // AddressSanitizer costs minutes of build time; the test suite covers the others.
    match b.u8() % 3 {
        0 => api_calls(
            &ce,
            &z,
            &raw.iter().map(|&v| v as u8).collect::<Vec<_>>(),
            glen,
        ),
        1 => api_calls(
            &ce,
            &z,
            &raw.iter().map(|&v| v as i64 - 4).collect::<Vec<_>>(),
            glen,
        ),
        _ => api_calls(
            &ce,
            &z,
            &raw.iter()
                .map(|&v| v.wrapping_mul(0x1_0000_0001))
                .collect::<Vec<_>>(),
            glen,
        ),
    }
}

/// Runs every public entry point; panics if an error left a buffer changed.
fn api_calls<T: Target>(ce: &CrossEntropy, z: &[f32], t: &[T], glen: usize) {
    let keep = |before: &[u32], after: &[f32], what: &str| {
        assert!(
            before == bits(after).as_slice(),
            "{what}: buffer changed by a failed call ({ce:?})"
        );
    };
    let zb = bits(z);
    let _ = ce.forward(z, t);
    let mut buf = z.to_vec();
    if ce.forward_backward(&mut buf, t).is_err() {
        keep(&zb, &buf, "forward_backward");
    }
    let mut g = vec![f32::NAN; glen];
    let gb = bits(&g);
    if ce.forward_backward_into(z, t, &mut g).is_err() {
        keep(&gb, &g, "forward_backward_into");
    }
    let rows = glen % 8;
    let (mut l1, mut l2) = (vec![f32::NAN; rows], vec![f32::NAN; (glen / 8) % 8]);
    let (b1, b2) = (bits(&l1), bits(&l2));
    let outs = xent::RowOutputs::new().losses(&mut l1).lse(&mut l2);
    if ce.forward_with(z, t, outs).is_err() {
        keep(&b1, &l1, "forward_with losses");
        keep(&b2, &l2, "forward_with lse");
    }
    let mut buf = z.to_vec();
    let mut p = vec![usize::MAX - 1; (glen / 3) % 8];
    // `l2` as it is now: `forward_with` above may have succeeded and written it.
    let b2_now = bits(&l2);
    let outs = xent::RowOutputs::new().lse(&mut l2).predictions(&mut p);
    if ce.forward_backward_with(&mut buf, t, outs).is_err() {
        keep(&zb, &buf, "forward_backward_with");
        keep(&b2_now, &l2, "forward_backward_with lse");
        assert!(
            p.iter().all(|&v| v == usize::MAX - 1),
            "forward_backward_with predictions: buffer changed by a failed call ({ce:?})"
        );
    }
    let (lse, up) = (vec![0.5f32; rows], vec![1.0f32; (glen / 8) % 8]);
    let mut buf = z.to_vec();
    if ce.backward(&mut buf, t, &lse, &up).is_err() {
        keep(&zb, &buf, "backward");
    }
    let mut g = vec![f32::NAN; glen];
    if ce.backward_into(z, t, &lse, &lse, &mut g).is_err() {
        keep(&gb, &g, "backward_into");
    }
    // Shards: arbitrary geometry from the lengths at hand.
    let (offset, width) = (glen % 5, glen / 5 % 5);
    let shard = xent::Shard::new(offset, width);
    let mut st = vec![xent::ShardStats::EMPTY; rows];
    let sb = st.clone();
    if ce.shard_stats(z, shard, t, &mut st).is_err() {
        assert!(
            st == sb,
            "shard_stats: buffer changed by a failed call ({ce:?})"
        );
    }
    let _ = ce.shard_loss(&st, t);
    // Per-row outputs of a length taken from the lengths at hand.
    let mut rows_out = vec![f32::NAN; glen % (rows + 2)];
    let rb = bits(&rows_out);
    let out = xent::RowOutputs::new().losses(&mut rows_out);
    if ce.shard_loss_with(&st, t, out).is_err() {
        keep(&rb, &rows_out, "shard_loss_with");
    }
    let mut buf = z.to_vec();
    if ce.shard_backward(&mut buf, shard, t, &st).is_err() {
        keep(&zb, &buf, "shard_backward");
    }
    // The same statistics merged with themselves: never a silent success.
    for (r, s) in st.iter().enumerate() {
        if s.classes > 0 {
            assert!(
                s.merge(*s).is_err(),
                "row {r}: a shard merged twice ({ce:?})"
            );
        }
    }
    let mut hb: Vec<xent::half::bf16> = z.iter().map(|&v| xent::half::bf16::from_f32(v)).collect();
    let before: Vec<u16> = hb.iter().map(|v| v.to_bits()).collect();
    let _ = ce.forward_half(&hb, t);
    let hbits = |h: &[xent::half::bf16]| h.iter().map(|v| v.to_bits()).collect::<Vec<u16>>();
    if ce.forward_backward_half(&mut hb, t).is_err() {
        assert!(
            before == hbits(&hb),
            "forward_backward_half: buffer changed ({ce:?})"
        );
    }
    let mut hb: Vec<xent::half::bf16> = z.iter().map(|&v| xent::half::bf16::from_f32(v)).collect();
    let (mut l1, mut l2) = (vec![f32::NAN; rows], vec![f32::NAN; (glen / 8) % 8]);
    let outs = xent::RowOutputs::new().losses(&mut l1).lse(&mut l2);
    if ce.forward_half_with(&hb, t, outs).is_err() {
        keep(&b1, &l1, "forward_half_with losses");
        keep(&b2, &l2, "forward_half_with lse");
    }
    if ce.backward_half(&mut hb, t, &lse, &up).is_err() {
        assert!(
            before == hbits(&hb),
            "backward_half: buffer changed ({ce:?})"
        );
    }
    let mut buf = z.to_vec();
    if ce.softmax(&mut buf).is_err() {
        keep(&zb, &buf, "softmax");
    }
    let mut buf = z.to_vec();
    if ce.log_softmax(&mut buf).is_err() {
        keep(&zb, &buf, "log_softmax");
    }
    let mut g = vec![f32::NAN; glen];
    if ce.softmax_into(z, &mut g).is_err() {
        keep(&gb, &g, "softmax_into");
    }
    let mut g = vec![f32::NAN; glen];
    if ce.log_softmax_into(z, &mut g).is_err() {
        keep(&gb, &g, "log_softmax_into");
    }
    let mut g = vec![f32::NAN; glen % 8];
    let before = bits(&g);
    if ce.logsumexp(z, &mut g).is_err() {
        keep(&before, &g, "logsumexp");
    }
    let mut buf = z.to_vec();
    if xent::exp::exp_slice(ce.get_kernel(), &mut buf).is_err() {
        keep(&zb, &buf, "exp_slice");
    }
}

/// Fuzz target `exp`: arbitrary f32 into every variant's exp against the f64 exp: within
/// the documented ulp bound, exactly +0 below the underflow threshold, +inf past
/// `ln(f32::MAX)`, NaN for NaN; and the same values into every variant's tanh against
/// the f64 tanh ([`check_tanh`]).
pub fn exp(data: &[u8]) {
    let xs: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for k in Kernel::available() {
        let mut ys = xs.clone();
        xent::exp::exp_slice(k, &mut ys).unwrap();
        for (&x, &y) in xs.iter().zip(&ys) {
            check_exp(k, x, y);
        }
        let mut ys = xs.clone();
        xent::exp::tanh_slice(k, &mut ys).unwrap();
        for (&x, &y) in xs.iter().zip(&ys) {
            check_tanh(k, x, y);
        }
    }
}

/// One tanh result against `f64::tanh`, in ulp of the exact value (subnormal ulps below
/// `2^-126`); returns the error. NaN must give NaN, and the sign must be kept.
pub fn check_tanh(k: Kernel, x: f32, y: f32) -> f64 {
    if x.is_nan() {
        assert!(y.is_nan(), "{k:?}: tanh(NaN) = {y}");
        return 0.0;
    }
    let want = f64::from(x).tanh();
    assert!(y.abs() <= 1.0, "{k:?}: tanh({x:e}) = {y:e}");
    if want == 0.0 {
        assert_eq!(y, 0.0, "{k:?}: tanh({x:e}) = {y:e}");
        return 0.0;
    }
    let e = want.abs().log2().floor() as i32;
    let ulp = 2f64.powi((e - 23).max(-149));
    let err = (f64::from(y) - want).abs() / ulp;
    assert!(
        err <= f64::from(xent::exp::TANH_MAX_ULP),
        "{k:?}: tanh({x:e}) = {y:e}, want {want:e}: {err} ulp"
    );
    err
}

/// One exp result against `f64::exp` (see [`exp`]).
pub fn check_exp(k: Kernel, x: f32, y: f32) {
    if x.is_nan() {
        assert!(y.is_nan(), "{k:?}: exp(NaN) = {y}");
        return;
    }
    if x < xent::exp::EXP_UNDERFLOW {
        assert_eq!(y.to_bits(), 0, "{k:?}: exp({x:e}) = {y:e}, want exactly +0");
        return;
    }
    let want = f64::from(x).exp();
    if want > f64::from(f32::MAX) {
        assert_eq!(y, f32::INFINITY, "{k:?}: exp({x:e})");
        return;
    }
    assert!(
        y >= f32::MIN_POSITIVE,
        "{k:?}: exp({x:e}) = {y:e} is subnormal"
    );
    let e = want.log2().floor() as i32;
    let ulp = 2f64.powi(e - 23);
    let err = (f64::from(y) - want).abs() / ulp;
    assert!(
        err <= f64::from(xent::exp::EXP_MAX_ULP),
        "{k:?}: exp({x:e}) = {y:e}, want {want:e}: {err} ulp"
    );
}
