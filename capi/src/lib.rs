//! The C ABI of xent (`include/xent.h`): a configuration handle, its setters, the three
//! calls (`forward`, `forward_backward` in place, `forward_backward_into`), error codes
//! and their messages, and the thread count.
//!
//! Every function returns 0 or a negative `XENT_E_*` code; a NULL pointer where data is
//! required is `XENT_E_NULL`, never a dereference; a panic is caught and reported as
//! `XENT_E_PANIC`, so none crosses the boundary; the crate checks everything before its
//! first write, so on error nothing is written (`*out` included).
//!
//! This crate is the one place outside the kernels with `unsafe`: the C caller's
//! pointers become slices here, once, after the NULL checks.

#![allow(non_camel_case_types)] // the C names of include/xent.h

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use xent::{CrossEntropy, Error, Loss, Reduction};

/// An opaque configuration: immutable during calls, so one handle may be shared by
/// threads that only call (`xent_ce_set_*` must not race with calls on the same handle).
pub struct xent_ce {
    ce: CrossEntropy,
}

/// What a call reports (the crate's `Loss`).
#[repr(C)]
pub struct xent_loss {
    /// The reduced loss (z-loss included).
    pub value: f32,
    /// Rows counted (targets not equal to the ignore index).
    pub rows: usize,
    /// Counted rows whose argmax equals the target.
    pub correct: usize,
    /// The z-loss part of `value`.
    pub z_loss: f32,
}

pub const XENT_OK: i32 = 0;
pub const XENT_E_NULL: i32 = -1;
pub const XENT_E_ZERO_CLASSES: i32 = -2;
pub const XENT_E_LOGITS_SHAPE: i32 = -3;
pub const XENT_E_TARGETS_LENGTH: i32 = -4;
pub const XENT_E_TARGET_OUT_OF_RANGE: i32 = -5;
pub const XENT_E_OUTPUT_LENGTH: i32 = -6;
pub const XENT_E_WEIGHTS_LENGTH: i32 = -7;
pub const XENT_E_NON_FINITE_WEIGHT: i32 = -8;
pub const XENT_E_LABEL_SMOOTHING: i32 = -9;
pub const XENT_E_Z_LOSS: i32 = -10;
pub const XENT_E_SOFTCAP: i32 = -11;
pub const XENT_E_REDUCTION: i32 = -12;
pub const XENT_E_OVERLAP: i32 = -13;
pub const XENT_E_THREADS: i32 = -14;
pub const XENT_E_PANIC: i32 = -15;
pub const XENT_E_OTHER: i32 = -16;

/// The code of a crate error.
fn code(e: &Error) -> i32 {
    match e {
        Error::ZeroClasses => XENT_E_ZERO_CLASSES,
        Error::LogitsShape { .. } => XENT_E_LOGITS_SHAPE,
        Error::TargetsLength { .. } => XENT_E_TARGETS_LENGTH,
        Error::TargetOutOfRange { .. } => XENT_E_TARGET_OUT_OF_RANGE,
        Error::OutputLength { .. } => XENT_E_OUTPUT_LENGTH,
        Error::WeightsLength { .. } => XENT_E_WEIGHTS_LENGTH,
        Error::NonFiniteWeight { .. } => XENT_E_NON_FINITE_WEIGHT,
        Error::LabelSmoothing(_) => XENT_E_LABEL_SMOOTHING,
        Error::ZLoss(_) => XENT_E_Z_LOSS,
        Error::Softcap(_) => XENT_E_SOFTCAP,
        Error::ThreadPool { .. } => XENT_E_THREADS,
        _ => XENT_E_OTHER,
    }
}

/// A static, NUL-terminated message for a code.
#[unsafe(no_mangle)]
pub extern "C" fn xent_strerror(code: i32) -> *const c_char {
    let s: &'static [u8] = match code {
        XENT_OK => b"success\0",
        XENT_E_NULL => b"a required pointer is NULL\0",
        XENT_E_ZERO_CLASSES => b"the number of classes is zero\0",
        XENT_E_LOGITS_SHAPE => b"the logits length is not a multiple of the classes\0",
        XENT_E_TARGETS_LENGTH => b"the number of targets differs from the number of rows\0",
        XENT_E_TARGET_OUT_OF_RANGE => {
            b"a target is negative or not below the classes (and not the ignore index)\0"
        }
        XENT_E_OUTPUT_LENGTH => b"the gradient buffer's length differs from the logits'\0",
        XENT_E_WEIGHTS_LENGTH => b"the class weights do not have one entry per class\0",
        XENT_E_NON_FINITE_WEIGHT => b"a class weight is NaN or infinite\0",
        XENT_E_LABEL_SMOOTHING => b"label smoothing outside [0, 1], or NaN\0",
        XENT_E_Z_LOSS => b"a z-loss coefficient that is negative, NaN or infinite\0",
        XENT_E_SOFTCAP => b"a soft-capping value outside [2^-126, 2^126]\0",
        XENT_E_REDUCTION => b"a reduction code other than 0 (mean), 1 (sum), 2 (none)\0",
        XENT_E_OVERLAP => b"the gradient buffer overlaps the logits without being them\0",
        XENT_E_THREADS => b"the thread pool could not be started\0",
        XENT_E_PANIC => b"internal error (a panic, caught)\0",
        XENT_E_OTHER => b"error\0",
        _ => b"unknown error code\0",
    };
    s.as_ptr().cast()
}

/// Runs `f`, turning a panic into `XENT_E_PANIC`.
fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(XENT_E_PANIC)
}

/// A new configuration for `classes` classes: mean reduction, no ignore index, no
/// smoothing, weights, z-loss or cap. NULL only if out of memory.
#[unsafe(no_mangle)]
pub extern "C" fn xent_ce_new(classes: usize) -> *mut xent_ce {
    catch_unwind(|| {
        Box::into_raw(Box::new(xent_ce {
            ce: CrossEntropy::new(classes),
        }))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Frees a configuration; NULL is ignored.
///
/// # Safety
/// `ce` is NULL or a pointer from `xent_ce_new` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_free(ce: *mut xent_ce) {
    if !ce.is_null() {
        // SAFETY: the caller passes a pointer from `xent_ce_new`, freed once.
        drop(unsafe { Box::from_raw(ce) });
    }
}

/// Replaces the handle's configuration with `f(old)` if the crate accepts it (its option
/// checks run on an empty batch); otherwise leaves it and returns the error's code.
unsafe fn update(ce: *mut xent_ce, f: impl FnOnce(CrossEntropy) -> CrossEntropy) -> i32 {
    guard(|| {
        // SAFETY: a non-NULL `ce` is a live handle from `xent_ce_new` (the caller's
        // contract), not used by a call while it is set.
        let Some(h) = (unsafe { ce.as_mut() }) else {
            return XENT_E_NULL;
        };
        let new = f(h.ce.clone());
        match new.forward(&[], &[] as &[i64]) {
            Ok(_) => {
                h.ce = new;
                XENT_OK
            }
            Err(e) => code(&e),
        }
    })
}

/// 0 mean, 1 sum, 2 none.
///
/// # Safety
/// `ce` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_reduction(ce: *mut xent_ce, reduction: i32) -> i32 {
    let r = match reduction {
        0 => Reduction::Mean,
        1 => Reduction::Sum,
        2 => Reduction::None,
        _ => return XENT_E_REDUCTION,
    };
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.reduction(r)) }
}

/// Rows whose target equals `index` count for nothing.
///
/// # Safety
/// `ce` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_ignore_index(ce: *mut xent_ce, index: i64) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.ignore_index(index)) }
}

/// Label smoothing in `[0, 1]`.
///
/// # Safety
/// `ce` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_label_smoothing(ce: *mut xent_ce, eps: f32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.label_smoothing(eps)) }
}

/// One weight per class, copied; `weights == NULL` with `len == 0` removes them.
///
/// # Safety
/// `ce` is NULL or a live handle; `weights` is NULL or points to `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_class_weights(
    ce: *mut xent_ce,
    weights: *const f32,
    len: usize,
) -> i32 {
    if weights.is_null() {
        if len != 0 {
            return XENT_E_NULL;
        }
        // SAFETY: forwarded contract.
        return unsafe { update(ce, without_weights) };
    }
    // SAFETY: `weights` is non-NULL and points to `len` floats (the caller's contract).
    let w: Arc<[f32]> = unsafe { std::slice::from_raw_parts(weights, len) }.into();
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.class_weights(w)) }
}

/// The configuration without class weights (the builder only adds them).
fn without_weights(c: CrossEntropy) -> CrossEntropy {
    let mut n = CrossEntropy::new(c.get_classes())
        .reduction(c.get_reduction())
        .label_smoothing(c.get_label_smoothing())
        .z_loss(c.get_z_loss())
        .kernel(c.get_kernel());
    if let Some(i) = c.get_ignore_index() {
        n = n.ignore_index(i);
    }
    if let Some(cap) = c.get_softcap() {
        n = n.softcap(cap);
    }
    n
}

/// z-loss coefficient `>= 0`.
///
/// # Safety
/// `ce` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_z_loss(ce: *mut xent_ce, coefficient: f32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.z_loss(coefficient)) }
}

/// Logit soft-capping with `cap` in `[2^-126, 2^126]`.
///
/// # Safety
/// `ce` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_ce_set_softcap(ce: *mut xent_ce, cap: f32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { update(ce, |c| c.softcap(cap)) }
}

/// The pool calls run on: `None` for rayon's global pool.
static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

/// Calls run on a pool of `threads` threads from now on; 0 returns to rayon's global pool
/// (one thread per core, or `RAYON_NUM_THREADS`).
#[unsafe(no_mangle)]
pub extern "C" fn xent_set_num_threads(threads: usize) -> i32 {
    guard(|| {
        let pool = match threads {
            0 => None,
            n => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(p) => Some(Arc::new(p)),
                Err(_) => return XENT_E_THREADS,
            },
        };
        *POOL.lock().unwrap_or_else(|e| e.into_inner()) = pool;
        XENT_OK
    })
}

/// Runs a call on the chosen pool and writes its `Loss` to `out`.
fn call(out: &mut xent_loss, f: impl FnOnce() -> Result<Loss, Error> + Send) -> i32 {
    let pool = POOL.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let r = match pool {
        Some(p) => p.install(f),
        None => f(),
    };
    match r {
        Ok(l) => {
            *out = xent_loss {
                value: l.value,
                rows: l.rows,
                correct: l.correct,
                z_loss: l.z_loss,
            };
            XENT_OK
        }
        Err(e) => code(&e),
    }
}

/// A slice from a C pointer and length; NULL is allowed only for an empty one.
///
/// # Safety
/// A non-NULL `p` points to `len` initialised `T`s, valid for the call.
unsafe fn slice<'a, T>(p: *const T, len: usize) -> Option<&'a [T]> {
    match (p.is_null(), len) {
        (true, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: the caller's contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(p, len) }),
    }
}

/// The loss of `len / classes` rows of logits; nothing but `*out` is written.
///
/// # Safety
/// `ce` is NULL or a live handle; `logits` points to `len` floats and `targets` to `n`
/// int64s (either may be NULL when its length is 0); `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_forward(
    ce: *const xent_ce,
    logits: *const f32,
    len: usize,
    targets: *const i64,
    n: usize,
    out: *mut xent_loss,
) -> i32 {
    guard(|| {
        // SAFETY: the function's contract (pointers valid for their lengths).
        let parts = unsafe {
            (
                ce.as_ref(),
                slice(logits, len),
                slice(targets, n),
                out.as_mut(),
            )
        };
        let (Some(h), Some(z), Some(t), Some(out)) = parts else {
            return XENT_E_NULL;
        };
        call(out, || h.ce.forward(z, t))
    })
}

/// The loss, and the gradient written over the logits.
///
/// # Safety
/// As `xent_forward`, with `logits` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_forward_backward(
    ce: *const xent_ce,
    logits: *mut f32,
    len: usize,
    targets: *const i64,
    n: usize,
    out: *mut xent_loss,
) -> i32 {
    guard(|| {
        if logits.is_null() && len != 0 {
            return XENT_E_NULL;
        }
        // SAFETY: the function's contract (pointers valid for their lengths).
        let parts = unsafe { (ce.as_ref(), slice(targets, n), out.as_mut()) };
        let (Some(h), Some(t), Some(out)) = parts else {
            return XENT_E_NULL;
        };
        let z: &mut [f32] = if len == 0 {
            &mut []
        } else {
            // SAFETY: `logits` is non-NULL and points to `len` writable floats.
            unsafe { std::slice::from_raw_parts_mut(logits, len) }
        };
        call(out, || h.ce.forward_backward(z, t))
    })
}

/// The loss, and the gradient written into `grad` (`grad_len` floats); `logits` is only
/// read. `grad == logits` (same length) is the in-place call; any other overlap is
/// `XENT_E_OVERLAP`.
///
/// # Safety
/// As `xent_forward`, with `grad` pointing to `grad_len` writable floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)] // the C signature
pub unsafe extern "C" fn xent_forward_backward_into(
    ce: *const xent_ce,
    logits: *const f32,
    len: usize,
    targets: *const i64,
    n: usize,
    grad: *mut f32,
    grad_len: usize,
    out: *mut xent_loss,
) -> i32 {
    if std::ptr::eq(logits, grad) && len == grad_len {
        // SAFETY: forwarded contract (then `logits` is writable: it is `grad`).
        return unsafe { xent_forward_backward(ce, grad, len, targets, n, out) };
    }
    let (a, b) = (logits as usize, grad as usize);
    if len != 0 && grad_len != 0 && a < b + 4 * grad_len && b < a + 4 * len {
        return XENT_E_OVERLAP;
    }
    guard(|| {
        if grad.is_null() && grad_len != 0 {
            return XENT_E_NULL;
        }
        // SAFETY: the function's contract (pointers valid for their lengths).
        let parts = unsafe {
            (
                ce.as_ref(),
                slice(logits, len),
                slice(targets, n),
                out.as_mut(),
            )
        };
        let (Some(h), Some(z), Some(t), Some(out)) = parts else {
            return XENT_E_NULL;
        };
        let g: &mut [f32] = if grad_len == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL, `grad_len` writable floats, disjoint from `logits`.
            unsafe { std::slice::from_raw_parts_mut(grad, grad_len) }
        };
        call(out, || h.ce.forward_backward_into(z, t, g))
    })
}
