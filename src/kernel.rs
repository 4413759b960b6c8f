//! Kernel variants, CPU detection and dispatch.
//!
//! Detection runs once per process and is cached in an atomic; a call resolves its
//! [`Kernel`] once, before any row is touched, never per row.

use crate::Error;
use crate::arch::portable::Portable;
#[cfg(target_arch = "x86_64")]
use crate::arch::x86_64::{Avx2, Avx512};
use core::sync::atomic::{AtomicU8, Ordering};

/// A kernel variant. [`Kernel::Auto`] (the default) picks the fastest one this CPU
/// supports; the others force a variant, which is an error (never an illegal instruction)
/// where the CPU lacks it.
///
/// ```
/// use xent::Kernel;
/// let all = Kernel::available();
/// assert!(all.contains(&Kernel::Portable));
/// assert_eq!(Kernel::Auto.resolve().unwrap(), all[0]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// The fastest available variant, detected once per process.
    #[default]
    Auto,
    /// `wide`-based portable SIMD (SSE2 on x86-64, NEON on aarch64): runs everywhere.
    Portable,
    /// x86-64 AVX2 + FMA + F16C, 8 lanes: all three are required (F16C widens and narrows
    /// f16 logits in registers), as x86-64-v3 requires them together.
    Avx2,
    /// x86-64 AVX-512F, 16 lanes with masked tails.
    Avx512,
    /// aarch64 NEON: the portable kernel as compiled for aarch64 (`wide` lowers to NEON
    /// there, and its multiply-adds are fused, `FMLA`). Available only on aarch64;
    /// elsewhere forcing it is an error. On aarch64, [`Kernel::Portable`] runs the same
    /// code.
    Neon,
}

impl Kernel {
    /// Every concrete variant, fastest first.
    pub const ALL: [Kernel; 4] = [Kernel::Avx512, Kernel::Avx2, Kernel::Neon, Kernel::Portable];

    /// The concrete variants this CPU can run, fastest first (always ends with
    /// [`Kernel::Portable`]).
    ///
    /// ```
    /// # use xent::Kernel;
    /// for k in Kernel::available() {
    ///     let loss = xent::CrossEntropy::new(2).kernel(k).forward(&[0.0, 0.0], &[0u8])?;
    ///     assert!((loss.value - std::f32::consts::LN_2).abs() < 1e-6);
    /// }
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn available() -> Vec<Kernel> {
        Self::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// Whether this variant can run here (`Auto` always can).
    ///
    /// ```
    /// # use xent::Kernel;
    /// assert!(Kernel::Portable.is_available());
    /// assert_eq!(Kernel::Neon.is_available(), cfg!(target_arch = "aarch64"));
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Auto | Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Avx2::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Avx512::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
            Kernel::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    /// The concrete variant a call with this setting runs: `Auto` becomes the detected
    /// best; a forced variant is returned if available.
    ///
    /// # Errors
    /// [`Error::KernelUnavailable`] if a forced variant cannot run on this CPU.
    pub fn resolve(self) -> Result<Kernel, Error> {
        Ok(match backend(self)? {
            // On aarch64 the portable backend is the NEON kernel: `Auto` picks it as
            // `Neon`, the best there; only a forced `Portable` keeps that name.
            Backend::Portable(_) if cfg!(target_arch = "aarch64") && self != Kernel::Portable => {
                Kernel::Neon
            }
            Backend::Portable(_) => Kernel::Portable,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2(_) => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512(_) => Kernel::Avx512,
        })
    }
}

/// A resolved kernel holding its capability token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Portable(Portable),
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
}

impl Backend {
    /// Whether `forward_backward_into` stages the linked rows (see
    /// [`stages_into`](crate::paths::stages_into)): the AVX-512 kernel on a Zen 5 or
    /// later, where it measured faster; everywhere else they stay linked in place.
    pub(crate) fn stages_linked_rows(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512(k) => k.zen5_or_later(),
            _ => false,
        }
    }

    /// Whether [`ce_rows`](crate::arch::fused::ce_rows) (and, in place,
    /// [`softmax_rows`](crate::arch::softmax::softmax_rows)) groups rows of up to
    /// [`GROUP_LONG_MAX_CLASSES`](crate::paths::GROUP_LONG_MAX_CLASSES) classes: the
    /// AVX-512 kernel on a Zen 5 or later, where it measured faster from DRAM; elsewhere
    /// only rows of up to [`GROUP_MAX_CLASSES`](crate::paths::GROUP_MAX_CLASSES) are.
    pub(crate) fn groups_long_rows(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512(k) => k.zen5_or_later(),
            _ => false,
        }
    }
}

/// Cached index into `Kernel::ALL` of the best available variant; `u8::MAX` = not yet
/// detected. Relaxed ordering suffices: every thread computes the same value.
static BEST: AtomicU8 = AtomicU8::new(u8::MAX);

#[inline(never)]
fn detect_best() -> Kernel {
    let best = Kernel::available()[0];
    let idx = Kernel::ALL
        .iter()
        .position(|&k| k == best)
        .unwrap_or(Kernel::ALL.len() - 1);
    BEST.store(idx as u8, Ordering::Relaxed);
    best
}

fn best() -> Kernel {
    match BEST.load(Ordering::Relaxed) {
        u8::MAX => detect_best(),
        i => Kernel::ALL[usize::from(i)],
    }
}

/// The token for `kernel`, or the error if it cannot run here.
pub(crate) fn backend(kernel: Kernel) -> Result<Backend, Error> {
    let k = if kernel == Kernel::Auto {
        best()
    } else {
        kernel
    };
    let unavailable = Err(Error::KernelUnavailable(kernel));
    match k {
        Kernel::Portable | Kernel::Auto => Ok(Backend::Portable(Portable::new())),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => Avx2::try_new().map(Backend::Avx2).map_or(unavailable, Ok),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => Avx512::try_new()
            .map(Backend::Avx512)
            .map_or(unavailable, Ok),
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx2 | Kernel::Avx512 => unavailable,
        Kernel::Neon if cfg!(target_arch = "aarch64") => Ok(Backend::Portable(Portable::new())),
        Kernel::Neon => unavailable,
    }
}

/// Runs `$body` with `$t` bound to the token of whichever variant `$b` holds.
macro_rules! with_backend {
    ($b:expr, $t:ident => $body:expr) => {
        match $b {
            $crate::kernel::Backend::Portable($t) => $body,
            #[cfg(target_arch = "x86_64")]
            $crate::kernel::Backend::Avx2($t) => $body,
            #[cfg(target_arch = "x86_64")]
            $crate::kernel::Backend::Avx512($t) => $body,
        }
    };
}
pub(crate) use with_backend;
