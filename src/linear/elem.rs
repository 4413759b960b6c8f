//! The element types of the fused linear head ([`LinearFloat`]: f32, bf16, f16) and their
//! f32 views: f32 buffers are used as they are, 16-bit ones are widened into f32 scratch
//! (the kernel variant's vector conversions) and the results narrowed back, rounding to
//! nearest even.

use crate::arch::convert::{HalfFormat, bits, bits_mut};
use crate::kernel::{Backend, with_backend};

pub(crate) mod sealed {
    use crate::arch::convert::HalfFormat;

    /// The views behind [`LinearFloat`](super::LinearFloat), kept inside the crate.
    pub trait Sealed: Copy + Send + Sync + 'static {
        /// The 16-bit format, `None` for f32.
        const FORMAT: Option<HalfFormat>;
        /// The slice as f32, if it is f32.
        fn as_f32(s: &[Self]) -> Option<&[f32]>;
        /// The mutable slice as f32, if it is f32.
        fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
        /// The slice's bits, if it is 16-bit.
        fn as_bits(s: &[Self]) -> Option<&[u16]>;
        /// The mutable slice's bits, if it is 16-bit.
        fn as_bits_mut(s: &mut [Self]) -> Option<&mut [u16]>;
    }
}

/// An element type of [`LinearCrossEntropy`](crate::LinearCrossEntropy)'s hidden states,
/// weight, bias and gradients: `f32`, [`half::bf16`] or [`half::f16`] (sealed). The
/// arithmetic is f32 whatever the type; 16-bit results are rounded once, at the end.
pub trait LinearFloat: sealed::Sealed {}
impl LinearFloat for f32 {}
impl LinearFloat for half::bf16 {}
impl LinearFloat for half::f16 {}

impl sealed::Sealed for f32 {
    const FORMAT: Option<HalfFormat> = None;
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
    fn as_bits(_: &[f32]) -> Option<&[u16]> {
        None
    }
    fn as_bits_mut(_: &mut [f32]) -> Option<&mut [u16]> {
        None
    }
}

macro_rules! half_float {
    ($t:ty, $f:expr) => {
        impl sealed::Sealed for $t {
            const FORMAT: Option<HalfFormat> = Some($f);
            fn as_f32(_: &[$t]) -> Option<&[f32]> {
                None
            }
            fn as_f32_mut(_: &mut [$t]) -> Option<&mut [f32]> {
                None
            }
            fn as_bits(s: &[$t]) -> Option<&[u16]> {
                Some(bits(s))
            }
            fn as_bits_mut(s: &mut [$t]) -> Option<&mut [u16]> {
                Some(bits_mut(s))
            }
        }
    };
}
half_float!(half::bf16, HalfFormat::Bf16);
half_float!(half::f16, HalfFormat::F16);

/// Widens `src` into `dst` (same length), with the kernel variant's conversions.
pub(crate) fn widen<T: LinearFloat>(backend: Backend, src: &[T], dst: &mut [f32]) {
    if let Some(s) = T::as_f32(src) {
        dst.copy_from_slice(s);
    } else if let (Some(b), Some(f)) = (T::as_bits(src), T::FORMAT) {
        with_backend!(backend, k => k.widen(f, b, dst));
    }
}

/// Narrows `src` into `dst` (same length), rounding to nearest even.
pub(crate) fn narrow<T: LinearFloat>(backend: Backend, src: &[f32], dst: &mut [T]) {
    if let Some(d) = T::as_f32_mut(dst) {
        d.copy_from_slice(src);
    } else if let (Some(d), Some(f)) = (T::as_bits_mut(dst), T::FORMAT) {
        with_backend!(backend, k => k.narrow(f, src, 1.0, d));
    }
}

/// An input matrix as f32: borrowed when it is f32, widened once otherwise.
pub(crate) fn widened<T: LinearFloat>(backend: Backend, s: &[T]) -> std::borrow::Cow<'_, [f32]> {
    match T::as_f32(s) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => {
            let mut v = vec![0.0; s.len()];
            widen(backend, s, &mut v);
            std::borrow::Cow::Owned(v)
        }
    }
}
