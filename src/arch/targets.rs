//! Sweeps over a batch's integer targets, instantiated per kernel variant like the row
//! passes so that they vectorise at its width: the validation sweep ([`scan`]) and the
//! row-group path's per-batch plan ([`plan_batch`]). Validated targets are a class or the
//! ignore index, both exact as `i64` (see `Sealed::low`).

use crate::Target;

/// One sweep over the targets: how many rows count (are not ignored), and whether any
/// target is neither the ignore index nor a class in `0..classes`.
///
/// Written in 64-bit operations only, so that it vectorises, and exact for every type:
/// `low() as u64` is the value itself for every value in `0..2^64` and at least `2^63`
/// for a negative one, so `< classes` is exactly `0 <= t < classes`; and a target equals
/// the ignore index `i` exactly when its low bits do and, for an unsigned type, `i >= 0`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn scan<T: Target>(targets: &[T], classes: usize, ignore: Option<i64>) -> (usize, bool) {
    let Some(index) = ignore.filter(|&i| T::SIGNED || i >= 0) else {
        // No target can be ignored (the usual case): every row counts, and the range check
        // is one unsigned max per vector.
        let top = targets.iter().fold(0u64, |m, &t| m.max(t.low() as u64));
        return (targets.len(), !targets.is_empty() && top >= classes as u64);
    };
    let (mut counted, mut bad) = (0usize, false);
    for &t in targets {
        let low = t.low();
        let ignored = low == index;
        bad |= !ignored & (low as u64 >= classes as u64);
        counted += usize::from(!ignored);
    }
    (counted, bad)
}

/// The row-group path's plan for a batch of `tg.len()` rows (`wt` as long, `targets` at
/// least as long): each target as f32, -1 for an ignored row, and its class weight (1 or
/// `weights[t]`; 0 for an ignored row).
///
/// Branch-free loops (they vectorise): validated targets are a class or the ignore index,
/// both exact as i64 (see `Sealed::low`).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn plan_batch<T: Target>(
    targets: &[T],
    ignore: Option<i64>,
    weights: Option<&[f32]>,
    tg: &mut [f32],
    wt: &mut [f32],
) {
    match ignore.filter(|&i| T::SIGNED || i >= 0) {
        // Nothing can be ignored (the usual case): a conversion per target (classes are
        // below 64 on this path).
        None => {
            for (t, &x) in tg.iter_mut().zip(targets) {
                *t = x.low() as i32 as f32;
            }
        }
        Some(ignore) => {
            for (t, &x) in tg.iter_mut().zip(targets) {
                let x = x.low();
                *t = if x == ignore { -1.0 } else { x as i32 as f32 };
            }
        }
    }
    match weights {
        None => {
            for (w, &t) in wt.iter_mut().zip(tg.iter()) {
                *w = if t < 0.0 { 0.0 } else { 1.0 };
            }
        }
        Some(ws) => {
            for (w, &t) in wt.iter_mut().zip(tg.iter()) {
                *w = if t < 0.0 {
                    0.0
                } else {
                    ws.get(t as usize).copied().unwrap_or(0.0)
                };
            }
        }
    }
}
