//! The public entry points, one file per family: each validates its input (`crate::plan`)
//! before anything is written, cuts the rows into chunks across threads
//! (`crate::parallel`), and runs the kernels (`crate::arch`) on them.
//!
//! * [`forward`]: the loss, the gradient in place or into a buffer, per-row outputs, on
//!   f32 logits, and the choice of path (row groups, fused rows, blocked rows);
//! * [`blocked`]: rows longer than `FUSED_MAX_CLASSES`, in merged blocks;
//! * [`backward`]: the gradient from a saved log-sum-exp and per-row upstream gradients;
//! * [`half`]: the same on bf16 and f16 logits, read in 16-bit blocks or through f32 tiles;
//! * [`shard`]: vocabulary-sharded statistics, loss and gradient;
//! * [`scratch`]: the per-thread f32 row or tile the drivers lend the kernels;
//! * [`softmax`]: row-wise softmax, log-softmax and log-sum-exp.

pub(crate) mod backward;
pub(crate) mod blocked;
pub(crate) mod forward;
pub(crate) mod half;
pub(crate) mod scratch;
pub(crate) mod shard;
pub(crate) mod softmax;
