//! The crate's vocabulary-sharded steps for `xent.distributed`, with each rank's
//! statistics packed into the two tensors its all-reduces carry.
//!
//! Per row, a rank's [`ShardStats`] become, for the first all-reduce (MAX, int64):
//! the max as an order-preserving integer, and `(top, argmax)` as one integer whose MAX
//! is the crate's merge rule (the larger raw top, ties to the lower class); for the second
//! (SUM, float64, after the first gave the global max `M`): `sum * exp(max - M)`,
//! `smooth_sum + smooth_weight * (max - M)`, `smooth_weight`, the target logit (0 where
//! this rank does not hold it) and a 1 where it does. The coverage of the shards (the
//! crate's check that every class is counted once) rides along once per call: `-first`
//! and `end` in the MAX, the class count and the 64 bits of the fingerprint (an XOR is
//! the parity of a SUM of bits) in the SUM. [`Merged`] rebuilds every row's merged
//! statistics from the two reduced tensors, as [`ShardStats::merge`] would have.

use crate::{Config, LossTuple, contiguous, py_err, read, tuple, write};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use xent::{RowOutputs, Shard, ShardStats};

/// Values per row in the MAX tensor, and the tail after the rows.
const MAX_PER_ROW: usize = 2;
const MAX_TAIL: usize = 2;
/// Values per row in the SUM tensor, and the tail (class count, 64 fingerprint bits).
const SUM_PER_ROW: usize = 5;
const SUM_TAIL: usize = 1 + 64;

/// Length of the MAX tensor for `rows` rows.
#[pyfunction]
fn max_len(rows: usize) -> usize {
    rows * MAX_PER_ROW + MAX_TAIL
}

/// Length of the SUM tensor for `rows` rows.
#[pyfunction]
fn sum_len(rows: usize) -> usize {
    rows * SUM_PER_ROW + SUM_TAIL
}

/// An f32 that is not NaN as an integer of the same order (-0.0 taken as +0.0, as the
/// comparisons of the merge treat them).
fn ordered(x: f32) -> i64 {
    let bits = (x + 0.0).to_bits() as i32;
    i64::from(if bits < 0 { bits ^ i32::MAX } else { bits })
}

fn unordered(k: i64) -> f32 {
    let k = k as i32;
    f32::from_bits((if k < 0 { k ^ i32::MAX } else { k }) as u32)
}

/// Classes beyond this do not fit the low half of the `(top, argmax)` key.
const ARGMAX_LIMIT: usize = u32::MAX as usize;

/// `(top, argmax)` as one integer: the top in the high 32 bits, the class reversed in the
/// low 32 (so a lower class wins a tie); an empty run's argmax, `usize::MAX`, loses.
fn top_key(top: f32, argmax: usize) -> i64 {
    let low = ARGMAX_LIMIT - argmax.min(ARGMAX_LIMIT);
    (ordered(top) << 32) | low as i64
}

fn untop_key(k: i64) -> (f32, usize) {
    let argmax = ARGMAX_LIMIT - (k & 0xffff_ffff) as usize;
    let argmax = if argmax == ARGMAX_LIMIT {
        usize::MAX
    } else {
        argmax
    };
    (unordered(k >> 32), argmax)
}

/// One rank's statistics, between its two all-reduces.
#[pyclass(frozen)]
struct LocalStats {
    stats: Vec<ShardStats>,
}

/// Step 1 on this rank: the statistics of `logits` (float32, `(rows, width)`, the classes
/// `[offset, offset + width)` of every row).
#[pyfunction]
fn shard_stats(
    py: Python<'_>,
    cfg: &Config,
    offset: usize,
    width: usize,
    logits: &Bound<'_, PyAny>,
    targets: &Bound<'_, PyAny>,
) -> PyResult<LocalStats> {
    if cfg.ce.get_classes() >= ARGMAX_LIMIT {
        return Err(PyValueError::new_err(format!(
            "{} classes: vocabulary-parallel cross-entropy takes fewer than 2^32 - 1",
            cfg.ce.get_classes()
        )));
    }
    let z = read::<f32>(logits)?;
    let z = contiguous(z.as_slice())?;
    let shard = Shard::new(offset, width);
    with_targets!(targets, |t| {
        let mut stats = vec![ShardStats::EMPTY; t.len()];
        py.detach(|| cfg.ce.shard_stats(z, shard, t, &mut stats))
            .map_err(py_err)?;
        Ok(LocalStats { stats })
    })
}

#[pymethods]
impl LocalStats {
    /// This rank's part of the MAX all-reduce, into `out` (int64, [`max_len`]).
    fn pack_max(&self, out: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut out = write::<i64>(out)?;
        let out = contiguous(out.as_slice_mut())?;
        check_len("the MAX tensor", out.len(), max_len(self.stats.len()))?;
        let (rows, tail) = out.split_at_mut(self.stats.len() * MAX_PER_ROW);
        for (o, s) in rows.chunks_exact_mut(MAX_PER_ROW).zip(&self.stats) {
            o[0] = ordered(s.max);
            o[1] = top_key(s.top, s.argmax);
        }
        let (first, end) = self.geometry();
        tail[0] = -(first as i64);
        tail[1] = end as i64;
        Ok(())
    }

    /// This rank's part of the SUM all-reduce, into `out` (float64, [`sum_len`]), its
    /// sums rescaled to the global maxima that the reduced MAX tensor `maxima` holds.
    fn pack_sums(&self, maxima: &Bound<'_, PyAny>, out: &Bound<'_, PyAny>) -> PyResult<()> {
        let maxima = read::<i64>(maxima)?;
        let maxima = contiguous(maxima.as_slice())?;
        let mut out = write::<f64>(out)?;
        let out = contiguous(out.as_slice_mut())?;
        let rows = self.stats.len();
        check_len("the MAX tensor", maxima.len(), max_len(rows))?;
        check_len("the SUM tensor", out.len(), sum_len(rows))?;
        let (body, tail) = out.split_at_mut(rows * SUM_PER_ROW);
        for ((o, s), m) in body
            .chunks_exact_mut(SUM_PER_ROW)
            .zip(&self.stats)
            .zip(maxima.chunks_exact(MAX_PER_ROW))
        {
            let global = unordered(m[0]);
            // As the merge: equal maxima (both -inf included) need no rescaling.
            let (factor, shift) = if s.max == global {
                (1.0, 0.0)
            } else {
                let d = f64::from(s.max) - f64::from(global);
                (
                    d.exp(),
                    if s.smooth_weight == 0.0 {
                        0.0
                    } else {
                        s.smooth_weight * d
                    },
                )
            };
            o[0] = s.sum * factor;
            o[1] = s.smooth_sum + shift;
            o[2] = s.smooth_weight;
            o[3] = s.target_logit.map_or(0.0, f64::from);
            o[4] = f64::from(u8::from(s.target_logit.is_some()));
        }
        let coverage = self.stats.first().map_or(0, |s| s.coverage);
        tail[0] = self.stats.first().map_or(0, |s| s.classes) as f64;
        for (bit, o) in tail[1..].iter_mut().enumerate() {
            *o = ((coverage >> bit) & 1) as f64;
        }
        Ok(())
    }
}

impl LocalStats {
    /// The classes this rank covers, as the merge's MIN and MAX see them.
    fn geometry(&self) -> (usize, usize) {
        match self.stats.first() {
            Some(s) if s.classes > 0 => (s.first, s.end),
            _ => (ARGMAX_LIMIT, 0),
        }
    }
}

fn check_len(what: &str, len: usize, expected: usize) -> PyResult<()> {
    if len == expected {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{what} has length {len}, expected {expected}: the ranks disagree on the rows"
        )))
    }
}

/// Every row's statistics merged over all ranks.
#[pyclass(frozen)]
struct Merged {
    stats: Vec<ShardStats>,
}

/// The merged statistics of `rows` rows from the reduced MAX and SUM tensors.
#[pyfunction]
fn merge_reduced(
    rows: usize,
    maxima: PyReadonlyArrayDyn<'_, i64>,
    sums: PyReadonlyArrayDyn<'_, f64>,
) -> PyResult<Merged> {
    let maxima = contiguous(maxima.as_slice())?;
    let sums = contiguous(sums.as_slice())?;
    check_len("the MAX tensor", maxima.len(), max_len(rows))?;
    check_len("the SUM tensor", sums.len(), sum_len(rows))?;
    let (max_rows, max_tail) = maxima.split_at(rows * MAX_PER_ROW);
    let (sum_rows, sum_tail) = sums.split_at(rows * SUM_PER_ROW);
    let first = usize::try_from(-max_tail[0]).unwrap_or(usize::MAX);
    let end = usize::try_from(max_tail[1]).unwrap_or(0);
    let classes = sum_tail[0] as usize;
    let coverage = sum_tail[1..]
        .iter()
        .enumerate()
        .fold(0u64, |acc, (bit, &n)| acc | (((n as u64) & 1) << bit));
    let mut stats = Vec::with_capacity(rows);
    for (row, (m, s)) in max_rows
        .chunks_exact(MAX_PER_ROW)
        .zip(sum_rows.chunks_exact(SUM_PER_ROW))
        .enumerate()
    {
        let holders = s[4];
        if holders > 1.0 {
            return Err(PyValueError::new_err(format!(
                "row {row}: {holders} ranks hold its target logit: the shards overlap"
            )));
        }
        let (top, argmax) = untop_key(m[1]);
        stats.push(ShardStats {
            max: unordered(m[0]),
            top,
            argmax,
            sum: s[0],
            smooth_sum: s[1],
            smooth_weight: s[2],
            target_logit: (holders == 1.0).then_some(s[3] as f32),
            classes,
            first,
            end,
            coverage,
        });
    }
    Ok(Merged { stats })
}

/// Step 3a: the loss from the merged statistics, and with `losses` (float32, one per row)
/// each row's loss.
#[pyfunction]
#[pyo3(signature = (cfg, merged, targets, losses=None))]
fn shard_loss(
    cfg: &Config,
    merged: &Merged,
    targets: &Bound<'_, PyAny>,
    losses: Option<&Bound<'_, PyAny>>,
) -> PyResult<LossTuple> {
    let mut losses = losses.map(write::<f32>).transpose()?;
    let mut out = RowOutputs::new();
    if let Some(l) = losses.as_mut() {
        out = out.losses(contiguous(l.as_slice_mut())?);
    }
    with_targets!(targets, |t| cfg
        .ce
        .shard_loss_with(&merged.stats, t, out)
        .map(tuple)
        .map_err(py_err))
}

/// Step 3b: this rank's gradient, written over `logits` (float32, `(rows, width)`).
#[pyfunction]
fn shard_backward(
    py: Python<'_>,
    cfg: &Config,
    offset: usize,
    width: usize,
    logits: &Bound<'_, PyAny>,
    targets: &Bound<'_, PyAny>,
    merged: &Merged,
) -> PyResult<()> {
    let mut z = write::<f32>(logits)?;
    let z = contiguous(z.as_slice_mut())?;
    let shard = Shard::new(offset, width);
    with_targets!(targets, |t| py
        .detach(|| cfg.ce.shard_backward(z, shard, t, &merged.stats))
        .map_err(py_err))
}

/// Adds the vocabulary-parallel functions to the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LocalStats>()?;
    m.add_class::<Merged>()?;
    m.add_function(wrap_pyfunction!(max_len, m)?)?;
    m.add_function(wrap_pyfunction!(sum_len, m)?)?;
    m.add_function(wrap_pyfunction!(shard_stats, m)?)?;
    m.add_function(wrap_pyfunction!(merge_reduced, m)?)?;
    m.add_function(wrap_pyfunction!(shard_loss, m)?)?;
    m.add_function(wrap_pyfunction!(shard_backward, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_integers_keep_the_order_of_floats() {
        let xs = [
            f32::NEG_INFINITY,
            -3e38,
            -1.5,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            2.0,
            3e38,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(ordered(w[0]) <= ordered(w[1]), "{} {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(unordered(ordered(x)), x + 0.0);
        }
    }

    #[test]
    fn the_max_of_keys_is_the_merge_rule() {
        // Larger top wins; equal tops go to the lower class; an empty run loses.
        assert!(top_key(2.0, 9) > top_key(1.0, 0));
        assert!(top_key(1.0, 3) > top_key(1.0, 4));
        assert!(top_key(-0.0, 5) < top_key(0.0, 4));
        assert!(top_key(f32::NEG_INFINITY, 7) > top_key(f32::NEG_INFINITY, usize::MAX));
        for (top, argmax) in [(1.5, 0), (-2.0, 123_456), (f32::NEG_INFINITY, usize::MAX)] {
            assert_eq!(untop_key(top_key(top, argmax)), (top, argmax));
        }
    }
}
