//! Shared strategies, tolerance model and helpers for the integration tests.
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
//!   `|d_j|` is the row's entropy). Together: `gamma_S = (C/16 + 9 + ln C) u`.
//! * Gradient `g_j = scale (a p_j - b_j - c [j = t])`, formed with one multiply and one
//!   fused multiply-add and a final subtraction: `|err| <= (gamma_S + (|d_j|/2 + 5) u)
//!   |scale a p_j| + 2u (|scale b_j| + |scale c|)`, plus an absolute `scale |a| 2^-125` for
//!   probabilities that underflow to exactly 0 in the kernel.
//! * Row loss `c (ln S - d_t) + k (W ln S - sum_j w_j d_j)`: `ln S` carries `gamma_S`
//!   absolute, `d_t` carries `|d_t| u`, and the f32 smoothing sum carries
//!   `(C/16 + 8) u sum_j |w_j d_j|`. On the row-group path (C <= 16) the row loss is
//!   formed in f32 (three roundings, `3u` of it) and a group of up to 16 rows is added by a
//!   4-level tree (`4u`); the final rounding to f32 adds `u`: `8u |value|` in all (for
//!   the non-negative weights the tests draw, the rows' losses do not cancel).

#![allow(dead_code)]

use proptest::prelude::*;
use xent::{CrossEntropy, Kernel, Reduction};

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

/// Tolerance of the reduced loss value for this call (module docs).
pub fn loss_tolerance<T: xent::Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
    reference: f64,
) -> f64 {
    let c = ce.classes();
    let eps = f64::from(ce.get_label_smoothing());
    let w = |j: usize| ce.get_class_weights().map_or(1.0, |w| f64::from(w[j]));
    let w_total: f64 = (0..c).map(w).sum();
    let k = eps / c as f64;
    let gs = gamma_s(c);
    let mut tol = 0.0;
    let mut weight = 0.0;
    for (r, t) in targets.iter().enumerate() {
        let t = t.class();
        if Some(t) == ce.get_ignore_index().map(i128::from) {
            continue;
        }
        let t = t as usize;
        let z = &logits[r * c..(r + 1) * c];
        let m = row_max(z);
        let cw = (1.0 - eps) * w(t);
        let dt = (f64::from(z[t]) - m).abs();
        tol += cw.abs() * (gs + dt * U);
        if k != 0.0 {
            let wd: f64 = (0..c).map(|j| (w(j) * (f64::from(z[j]) - m)).abs()).sum();
            // An infinite `wd` means a masked class: the loss is +inf, compared exactly.
            tol += k * (w_total.abs() * gs + (c as f64 / 16.0 + 8.0) * U * wd);
        }
        weight += w(t);
    }
    let scale = match ce.get_reduction() {
        Reduction::Sum => 1.0,
        _ if weight == 0.0 => 0.0,
        _ => 1.0 / weight.abs(),
    };
    tol * scale + 8.0 * U * reference.abs() + f64::from(f32::MIN_POSITIVE)
}

/// Checks a gradient against the reference, element by element (module docs).
pub fn check_grad<T: xent::Target>(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[T],
    got: &[f32],
    want: &[f64],
    what: &str,
) -> Result<(), TestCaseError> {
    let c = ce.classes();
    let eps = f64::from(ce.get_label_smoothing());
    let w = |j: usize| ce.get_class_weights().map_or(1.0, |w| f64::from(w[j]));
    let w_total: f64 = (0..c).map(w).sum();
    let k = eps / c as f64;
    let ignore = ce.get_ignore_index().map(i128::from);
    let weight: f64 = targets
        .iter()
        .filter(|t| Some(t.class()) != ignore)
        .map(|t| w(t.class() as usize))
        .sum();
    let scale = match ce.get_reduction() {
        Reduction::Sum => 1.0,
        _ if weight == 0.0 => 0.0,
        _ => 1.0 / weight,
    };
    let gs = gamma_s(c);
    let probs = xent::reference::softmax(logits, c).unwrap();
    for (r, t) in targets.iter().enumerate() {
        let z = &logits[r * c..(r + 1) * c];
        let m = row_max(z);
        if Some(t.class()) == ignore {
            // Ignored rows: exactly zero, whatever they hold.
            let row = &got[r * c..(r + 1) * c];
            prop_assert!(
                row.iter().all(|&g| g == 0.0),
                "{what}: ignored row {r} = {row:?}"
            );
            continue;
        }
        let cw = (1.0 - eps) * w(t.class() as usize);
        let a = cw + k * w_total;
        for j in 0..c {
            let i = r * c + j;
            let d = (f64::from(z[j]) - m).abs();
            let p = probs[i];
            // `p == 0` exactly where `d` is infinite (a mask): no room for error there.
            let tol = mul0(gs + (d / 2.0 + 5.0) * U, (scale * a * p).abs())
                + 2.0 * U * (scale * k * w(j)).abs()
                + 2.0 * U * (scale * cw).abs()
                + (scale * a).abs() * 2f64.powi(-125);
            prop_assert!(
                close(f64::from(got[i]), want[i], tol),
                "{what}: grad[{r},{j}] = {} want {} (tol {tol:e}) z={:?} t={}",
                got[i],
                want[i],
                z,
                t.class()
            );
        }
    }
    Ok(())
}

/// A logit drawn to over-sample the values that break kernels.
pub fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -10.0f32..10.0,
        2 => -100.0f32..100.0,
        1 => Just(0.0f32),
        1 => Just(f32::NEG_INFINITY),
        1 => prop_oneof![Just(1e30f32), Just(-1e30f32), Just(1e-30f32), Just(-3e38f32)],
        1 => -1e-6f32..1e-6,
        1 => -1e4f32..1e4,
    ]
}

/// A row of `c` logits drawn from the same mixture as [`logit`], from a seed.
pub fn seeded_row(seed: u64, c: usize) -> Vec<f32> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..c)
        .map(|_| {
            let r = next();
            let u = (r >> 40) as f32 / (1u64 << 24) as f32;
            match r % 16 {
                0 => f32::NEG_INFINITY,
                1 => 1e30,
                2 => -1e30,
                3 => 0.0,
                4 | 5 => u * 200.0 - 100.0,
                _ => u * 20.0 - 10.0,
            }
        })
        .collect()
}

/// Class counts: mostly small (tails at every lane width), some mid and a few large.
pub fn classes() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=40,
        4 => 41usize..=300,
        1 => prop_oneof![Just(1000usize), Just(4099), Just(65536), Just(65537), Just(70001)],
    ]
}

/// Every option combination over `classes`.
pub fn options(classes: usize) -> impl Strategy<Value = CrossEntropy> {
    (
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(-100i64)),
            (0..classes as i64).prop_map(Some)
        ],
        prop_oneof![2 => Just(0.0f32), 2 => 0.0f32..=1.0, 1 => Just(1.0f32)],
        prop::option::of(prop::collection::vec(0.1f32..10.0, classes)),
    )
        .prop_map(move |(sum, ignore, eps, weights)| {
            let mut ce = CrossEntropy::new(classes).label_smoothing(eps);
            if sum {
                ce = ce.reduction(Reduction::Sum);
            }
            if let Some(i) = ignore {
                ce = ce.ignore_index(i);
            }
            if let Some(w) = weights {
                ce = ce.class_weights(w);
            }
            ce
        })
}

/// A full case: options, logits and i64 targets (some equal to the ignore index).
pub fn case() -> impl Strategy<Value = (CrossEntropy, Vec<f32>, Vec<i64>)> {
    classes().prop_flat_map(|c| {
        let max_rows: usize = if c > 5000 { 2 } else { 7 };
        (options(c), 0..max_rows).prop_flat_map(move |(ce, rows)| {
            let ignore = ce.get_ignore_index().unwrap_or(0);
            let target = prop_oneof![6 => 0..c as i64, 1 => Just(ignore)];
            // Long rows come from a seeded generator: proptest's per-element value trees
            // would dominate the run time at 70 000 classes.
            let mixed = if c <= 300 {
                prop::collection::vec(logit(), c).boxed()
            } else {
                any::<u64>().prop_map(move |seed| seeded_row(seed, c)).boxed()
            };
            let row = prop_oneof![
                6 => mixed,
                1 => logit().prop_map(move |v| vec![v; c]),
                1 => (prop::collection::vec(-5.0f32..5.0, c), 0..c, prop_oneof![Just(1e4f32), Just(80.0f32)])
                    .prop_map(|(mut z, i, big)| { z[i] = big; z }),
            ];
            (Just(ce), prop::collection::vec(row, rows), prop::collection::vec(target, rows))
                .prop_map(|(ce, rows, t)| (ce, rows.concat(), t))
        })
    })
}

/// Every kernel this CPU runs, reporting the ones it cannot.
pub fn kernels() -> Vec<Kernel> {
    Kernel::available()
}
