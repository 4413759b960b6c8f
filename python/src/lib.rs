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
use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads, Loss, Reduction, RowOutputs};

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
    /// Whether the reduction is the mean (whose empty case the Python layer makes NaN).
    #[getter]
    fn mean(&self) -> bool {
        matches!(self.ce.get_reduction(), Reduction::Mean)
    }

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

// After the macros, which it uses.
mod shard;

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
            let z = read::<f32>(logits)?;
            let z = contiguous(z.as_slice())?;
            py.detach(|| ce.forward(z, t)).map(tuple).map_err(py_err)
        }
        d => {
            let z = read::<u16>(logits)?;
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
            let z = read::<f32>(logits)?;
            let mut g = write::<f32>(g)?;
            let z = contiguous(z.as_slice())?;
            let g = contiguous(g.as_slice_mut())?;
            py.detach(|| ce.forward_backward_into(z, t, g))
                .map(tuple)
                .map_err(py_err)
        }
        (Dtype::F32, None) => {
            let mut z = write::<f32>(logits)?;
            let z = contiguous(z.as_slice_mut())?;
            py.detach(|| ce.forward_backward(z, t))
                .map(tuple)
                .map_err(py_err)
        }
        (d, None) => {
            let mut z = write::<u16>(logits)?;
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
    let mut losses = write::<f32>(losses)?;
    let mut lse = write::<f32>(lse)?;
    let losses = contiguous(losses.as_slice_mut())?;
    let lse = contiguous(lse.as_slice_mut())?;
    let out = RowOutputs::new().losses(losses).lse(lse);
    with_targets!(targets, |t| match dtype(dtype_name)? {
        Dtype::F32 => {
            let z = read::<f32>(logits)?;
            let z = contiguous(z.as_slice())?;
            py.detach(|| ce.forward_with(z, t, out))
                .map(tuple)
                .map_err(py_err)
        }
        d => {
            let z = read::<u16>(logits)?;
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
    let lse = read::<f32>(lse)?;
    let up = read::<f32>(upstream)?;
    let lse = contiguous(lse.as_slice())?;
    let up = contiguous(up.as_slice())?;
    with_targets!(targets, |t| match (dtype(dtype_name)?, grad) {
        (Dtype::F32, Some(g)) => {
            let z = read::<f32>(logits)?;
            let mut g = write::<f32>(g)?;
            let z = contiguous(z.as_slice())?;
            let g = contiguous(g.as_slice_mut())?;
            py.detach(|| ce.backward_into(z, t, lse, up, g))
                .map_err(py_err)
        }
        (Dtype::F32, None) => {
            let mut z = write::<f32>(logits)?;
            let z = contiguous(z.as_slice_mut())?;
            py.detach(|| ce.backward(z, t, lse, up)).map_err(py_err)
        }
        (d, None) => {
            let mut z = write::<u16>(logits)?;
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

/// A float tensor's elements of the head's element type `H` (`f32`, `bf16` or `f16`),
/// borrowed for reading; 16-bit types arrive as their `uint16` bits.
trait Elem: xent::LinearFloat + Sized {
    type Bits: numpy::Element;
    fn cast(bits: &[Self::Bits]) -> &[Self];
    fn cast_mut(bits: &mut [Self::Bits]) -> &mut [Self];
}

impl Elem for f32 {
    type Bits = f32;
    fn cast(bits: &[f32]) -> &[f32] {
        bits
    }
    fn cast_mut(bits: &mut [f32]) -> &mut [f32] {
        bits
    }
}

impl Elem for bf16 {
    type Bits = u16;
    fn cast(bits: &[u16]) -> &[bf16] {
        bits.reinterpret_cast()
    }
    fn cast_mut(bits: &mut [u16]) -> &mut [bf16] {
        bits.reinterpret_cast_mut()
    }
}

impl Elem for f16 {
    type Bits = u16;
    fn cast(bits: &[u16]) -> &[f16] {
        bits.reinterpret_cast()
    }
    fn cast_mut(bits: &mut [u16]) -> &mut [f16] {
        bits.reinterpret_cast_mut()
    }
}

/// The fused linear + cross-entropy head: the loss of `cross_entropy(hidden weight^T +
/// bias, targets)` and, when `d_hidden` and `d_weight` are given, the gradients written
/// into them (and into `d_bias` with a bias), all of the head's element type. With
/// `reduction="none"`, `losses` (float32, one per row) receives the per-row losses and no
/// gradient may be asked for. `memory_budget` bounds a chunk's logits (bytes).
#[pyfunction]
#[pyo3(signature = (cfg, dim, dtype_name, hidden, weight, bias, targets, d_hidden=None, d_weight=None, d_bias=None, losses=None, memory_budget=None))]
#[allow(clippy::too_many_arguments)] // the crate's call, plus the call's context
fn linear(
    py: Python<'_>,
    cfg: &Config,
    dim: usize,
    dtype_name: &str,
    hidden: &Bound<'_, PyAny>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    targets: &Bound<'_, PyAny>,
    d_hidden: Option<&Bound<'_, PyAny>>,
    d_weight: Option<&Bound<'_, PyAny>>,
    d_bias: Option<&Bound<'_, PyAny>>,
    losses: Option<&Bound<'_, PyAny>>,
    memory_budget: Option<usize>,
) -> PyResult<LossTuple> {
    let mut head = LinearCrossEntropy::new(cfg.ce.clone(), dim);
    if let Some(bytes) = memory_budget {
        head = head.memory_budget(bytes);
    }
    let args = LinearArgs {
        head: &head,
        hidden,
        weight,
        bias,
        targets,
        d_hidden,
        d_weight,
        d_bias,
        losses,
    };
    match dtype(dtype_name)? {
        Dtype::F32 => linear_as::<f32>(py, args),
        Dtype::Bf16 => linear_as::<bf16>(py, args),
        Dtype::F16 => linear_as::<f16>(py, args),
    }
}

/// The Python arguments of [`linear`], before borrowing.
struct LinearArgs<'a, 'py> {
    head: &'a LinearCrossEntropy,
    hidden: &'a Bound<'py, PyAny>,
    weight: &'a Bound<'py, PyAny>,
    bias: Option<&'a Bound<'py, PyAny>>,
    targets: &'a Bound<'py, PyAny>,
    d_hidden: Option<&'a Bound<'py, PyAny>>,
    d_weight: Option<&'a Bound<'py, PyAny>>,
    d_bias: Option<&'a Bound<'py, PyAny>>,
    losses: Option<&'a Bound<'py, PyAny>>,
}

fn read<'py, T: numpy::Element>(x: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    Ok(x.extract()?)
}

fn write<'py, T: numpy::Element>(x: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    Ok(x.extract()?)
}

fn linear_as<H: Elem>(py: Python<'_>, a: LinearArgs<'_, '_>) -> PyResult<LossTuple> {
    let h = read::<H::Bits>(a.hidden)?;
    let w = read::<H::Bits>(a.weight)?;
    let b = a.bias.map(read::<H::Bits>).transpose()?;
    let h = H::cast(contiguous(h.as_slice())?);
    let w = H::cast(contiguous(w.as_slice())?);
    let b = match &b {
        Some(b) => Some(H::cast(contiguous(b.as_slice())?)),
        None => None,
    };
    let head = a.head;
    match (a.d_hidden, a.d_weight) {
        (Some(dh), Some(dw)) => {
            let mut dh = write::<H::Bits>(dh)?;
            let mut dw = write::<H::Bits>(dw)?;
            let mut db = a.d_bias.map(write::<H::Bits>).transpose()?;
            let dh = H::cast_mut(contiguous(dh.as_slice_mut())?);
            let dw = H::cast_mut(contiguous(dw.as_slice_mut())?);
            let mut grads = LinearGrads::new(dh, dw);
            if let Some(db) = db.as_mut() {
                grads = grads.bias(H::cast_mut(contiguous(db.as_slice_mut())?));
            }
            with_targets!(a.targets, |t| py
                .detach(|| head.forward_backward(h, w, b, t, grads))
                .map(tuple)
                .map_err(py_err))
        }
        (None, None) => {
            let mut losses = a.losses.map(write::<f32>).transpose()?;
            let mut out = RowOutputs::new();
            if let Some(l) = losses.as_mut() {
                out = out.losses(contiguous(l.as_slice_mut())?);
            }
            with_targets!(a.targets, |t| py
                .detach(|| head.forward_with(h, w, b, t, out))
                .map(tuple)
                .map_err(py_err))
        }
        _ => Err(PyValueError::new_err(
            "d_hidden and d_weight are given together or not at all",
        )),
    }
}

#[pymodule]
fn _xent(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Config>()?;
    m.add_function(wrap_pyfunction!(forward, m)?)?;
    m.add_function(wrap_pyfunction!(forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(forward_rows, m)?)?;
    m.add_function(wrap_pyfunction!(backward_rows, m)?)?;
    m.add_function(wrap_pyfunction!(linear, m)?)?;
    shard::register(m)?;
    Ok(())
}
