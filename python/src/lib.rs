//! `xent._xent`: the extension module under the Python package `xent` (see `xent/`).
//!
//! It is a thin layer: each function takes NumPy views of the caller's tensors (made by
//! `tensor.numpy()`, which shares the tensor's memory, so nothing is copied on the way
//! in), borrows them through `numpy`'s checked borrows (a tensor passed twice, once to
//! be written, is an error rather than aliasing), releases the GIL and calls one of the
//! crate's entry points. 16-bit tensors arrive as `uint16` views of their bits and are
//! reinterpreted as `bf16` or `f16` (the same bits; no conversion pass).
//!
//! Errors: the crate's [`xent::Error`] becomes `IndexError` for an out-of-range target and
//! `ValueError` otherwise, with the crate's message; the crate checks everything before
//! its first write, so on error the caller's tensors are untouched.

use half::slice::HalfBitsSliceExt;
use half::{bf16, f16};
use numpy::{PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;
use xent::{CrossEntropy, Loss, Reduction, RowOutputs};

/// One call's options, built by the Python layer from its keyword arguments.
#[pyclass(frozen)]
struct Config {
    ce: CrossEntropy,
}

/// A configuration per thread count whose clones share one pool (the crate builds a
/// configuration's pool at its first call and shares it with its clones), so repeated
/// calls with the same `torch.get_num_threads()` never start threads again.
static TEMPLATES: Mutex<Option<HashMap<usize, CrossEntropy>>> = Mutex::new(None);

fn template(threads: usize) -> CrossEntropy {
    let mut map = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    map.get_or_insert_with(HashMap::new)
        .entry(threads)
        .or_insert_with(|| CrossEntropy::new(1).threads(threads))
        .clone()
}

#[pymethods]
impl Config {
    #[new]
    #[pyo3(signature = (classes, reduction, ignore_index, label_smoothing, weight, z_loss, softcap, threads))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per option
    fn new(
        classes: usize,
        reduction: &str,
        ignore_index: Option<i64>,
        label_smoothing: f32,
        weight: Option<Vec<f32>>,
        z_loss: f32,
        softcap: Option<f32>,
        threads: usize,
    ) -> PyResult<Self> {
        let reduction = match reduction {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            "none" => Reduction::None,
            other => {
                return Err(PyValueError::new_err(format!(
                    "{other} is not a valid value for reduction (mean, sum or none)"
                )));
            }
        };
        let mut ce = template(threads.max(1))
            .classes(classes)
            .reduction(reduction)
            .label_smoothing(label_smoothing)
            .z_loss(z_loss);
        if let Some(i) = ignore_index {
            ce = ce.ignore_index(i);
        }
        if let Some(w) = weight {
            ce = ce.class_weights(w);
        }
        if let Some(cap) = softcap {
            ce = ce.softcap(cap);
        }
        Ok(Config { ce })
    }
}

/// The crate's error as the Python exception a PyTorch user expects.
fn py_err(e: xent::Error) -> PyErr {
    match e {
        xent::Error::TargetOutOfRange { .. } => PyIndexError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A `Loss` as the tuple the Python layer unpacks.
type LossTuple = (f32, f32, usize, usize, f64);

fn tuple(l: Loss) -> LossTuple {
    (l.value, l.z_loss, l.rows, l.correct, l.weight)
}

/// The element type of the logits, as the Python layer names it.
#[derive(Clone, Copy)]
enum Dtype {
    F32,
    Bf16,
    F16,
}

fn dtype(name: &str) -> PyResult<Dtype> {
    match name {
        "float32" => Ok(Dtype::F32),
        "bfloat16" => Ok(Dtype::Bf16),
        "float16" => Ok(Dtype::F16),
        other => Err(PyValueError::new_err(format!(
            "logits of dtype {other}: float32, bfloat16 or float16 expected"
        ))),
    }
}

fn contiguous<T>(r: Result<T, numpy::NotContiguousError>) -> PyResult<T> {
    r.map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The targets, int64 or int32, borrowed. `$f` is called with the slice.
macro_rules! with_targets {
    ($t:expr, |$s:ident| $body:expr) => {{
        let t = $t;
        if let Ok(a) = t.extract::<PyReadonlyArrayDyn<'_, i64>>() {
            let $s = contiguous(a.as_slice())?;
            $body
        } else if let Ok(a) = t.extract::<PyReadonlyArrayDyn<'_, i32>>() {
            let $s = contiguous(a.as_slice())?;
            $body
        } else {
            return Err(PyValueError::new_err("targets must be int64 or int32"));
        }
    }};
}

/// `$body` once with `$H` the 16-bit type `$d` names (bf16, or f16 otherwise).
macro_rules! with_half {
    ($d:expr, $H:ident => $body:expr) => {
        match $d {
            Dtype::Bf16 => {
                type $H = bf16;
                $body
            }
            _ => {
                type $H = f16;
                $body
            }
        }
    };
}

/// The loss without a gradient; nothing is written.
#[pyfunction]
fn forward(
    py: Python<'_>,
    cfg: &Config,
    logits: &Bound<'_, PyAny>,
    dtype_name: &str,
    targets: &Bound<'_, PyAny>,
) -> PyResult<LossTuple> {
    let ce = &cfg.ce;
    with_targets!(targets, |t| match dtype(dtype_name)? {
        Dtype::F32 => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice())?;
            py.detach(|| ce.forward(z, t)).map(tuple).map_err(py_err)
        }
        d => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, u16>>()?;
            let bits = contiguous(z.as_slice())?;
            with_half!(d, H => {
                let z = bits.reinterpret_cast::<H>();
                py.detach(|| ce.forward_half(z, t))
            })
            .map(tuple)
            .map_err(py_err)
        }
    })
}

/// The loss, and the gradient written over the logits (`grad` None) or, for float32, into
/// `grad`.
#[pyfunction]
#[pyo3(signature = (cfg, logits, dtype_name, targets, grad=None))]
fn forward_backward(
    py: Python<'_>,
    cfg: &Config,
    logits: &Bound<'_, PyAny>,
    dtype_name: &str,
    targets: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
) -> PyResult<LossTuple> {
    let ce = &cfg.ce;
    with_targets!(targets, |t| match (dtype(dtype_name)?, grad) {
        (Dtype::F32, Some(g)) => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
            let mut g = g.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice())?;
            let g = contiguous(g.as_slice_mut())?;
            py.detach(|| ce.forward_backward_into(z, t, g))
                .map(tuple)
                .map_err(py_err)
        }
        (Dtype::F32, None) => {
            let mut z = logits.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice_mut())?;
            py.detach(|| ce.forward_backward(z, t))
                .map(tuple)
                .map_err(py_err)
        }
        (d, None) => {
            let mut z = logits.extract::<PyReadwriteArrayDyn<'_, u16>>()?;
            let bits = contiguous(z.as_slice_mut())?;
            with_half!(d, H => {
                let z = bits.reinterpret_cast_mut::<H>();
                py.detach(|| ce.forward_backward_half(z, t))
            })
            .map(tuple)
            .map_err(py_err)
        }
        (_, Some(_)) => Err(PyValueError::new_err(
            "a separate gradient buffer is float32 only: copy 16-bit logits and pass none",
        )),
    })
}

/// `reduction="none"`'s forward: the reduced loss, each row's loss into `losses` and its
/// log-sum-exp into `lse` (both float32, one per row); nothing else is written.
#[pyfunction]
fn forward_rows(
    py: Python<'_>,
    cfg: &Config,
    logits: &Bound<'_, PyAny>,
    dtype_name: &str,
    targets: &Bound<'_, PyAny>,
    losses: &Bound<'_, PyAny>,
    lse: &Bound<'_, PyAny>,
) -> PyResult<LossTuple> {
    let ce = &cfg.ce;
    let mut losses = losses.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
    let mut lse = lse.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
    let losses = contiguous(losses.as_slice_mut())?;
    let lse = contiguous(lse.as_slice_mut())?;
    let out = RowOutputs::new().losses(losses).lse(lse);
    with_targets!(targets, |t| match dtype(dtype_name)? {
        Dtype::F32 => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice())?;
            py.detach(|| ce.forward_with(z, t, out))
                .map(tuple)
                .map_err(py_err)
        }
        d => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, u16>>()?;
            let bits = contiguous(z.as_slice())?;
            with_half!(d, H => {
                let z = bits.reinterpret_cast::<H>();
                py.detach(|| ce.forward_half_with(z, t, out))
            })
            .map(tuple)
            .map_err(py_err)
        }
    })
}

/// `reduction="none"`'s backward: the gradient of `sum_i upstream_i loss_i` from the saved
/// log-sum-exp, written over the logits (`grad` None) or, for float32, into `grad`.
#[pyfunction]
#[pyo3(signature = (cfg, logits, dtype_name, targets, lse, upstream, grad=None))]
#[allow(clippy::too_many_arguments)] // the crate's backward_into, plus the call's context
fn backward_rows(
    py: Python<'_>,
    cfg: &Config,
    logits: &Bound<'_, PyAny>,
    dtype_name: &str,
    targets: &Bound<'_, PyAny>,
    lse: &Bound<'_, PyAny>,
    upstream: &Bound<'_, PyAny>,
    grad: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let ce = &cfg.ce;
    let lse = lse.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
    let up = upstream.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
    let lse = contiguous(lse.as_slice())?;
    let up = contiguous(up.as_slice())?;
    with_targets!(targets, |t| match (dtype(dtype_name)?, grad) {
        (Dtype::F32, Some(g)) => {
            let z = logits.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
            let mut g = g.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice())?;
            let g = contiguous(g.as_slice_mut())?;
            py.detach(|| ce.backward_into(z, t, lse, up, g))
                .map_err(py_err)
        }
        (Dtype::F32, None) => {
            let mut z = logits.extract::<PyReadwriteArrayDyn<'_, f32>>()?;
            let z = contiguous(z.as_slice_mut())?;
            py.detach(|| ce.backward(z, t, lse, up)).map_err(py_err)
        }
        (d, None) => {
            let mut z = logits.extract::<PyReadwriteArrayDyn<'_, u16>>()?;
            let bits = contiguous(z.as_slice_mut())?;
            with_half!(d, H => {
                let z = bits.reinterpret_cast_mut::<H>();
                py.detach(|| ce.backward_half(z, t, lse, up))
            })
            .map_err(py_err)
        }
        (_, Some(_)) => Err(PyValueError::new_err(
            "a separate gradient buffer is float32 only: copy 16-bit logits and pass none",
        )),
    })
}

#[pymodule]
fn _xent(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Config>()?;
    m.add_function(wrap_pyfunction!(forward, m)?)?;
    m.add_function(wrap_pyfunction!(forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(forward_rows, m)?)?;
    m.add_function(wrap_pyfunction!(backward_rows, m)?)?;
    Ok(())
}
