//! x86-64 kernels: AVX2+FMA+F16C (256-bit) and AVX-512F (512-bit), each selected at run
//! time.
//!
//! Both are compiled into every x86-64 build whatever the `-C target-cpu`; their entry
//! points are `#[target_feature]` functions reached only through a capability token
//! ([`Avx2`], [`Avx512`]) that exists only after `is_x86_feature_detected!` confirmed the
//! features, so a CPU without them never executes their instructions.

pub(crate) mod avx2;
pub(crate) mod avx512;
mod convert;

pub(crate) use avx2::Avx2;
pub(crate) use avx512::Avx512;
