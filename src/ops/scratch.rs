//! The per-thread f32 scratch the drivers lend the kernels: a tile of widened 16-bit
//! logits, the row of exps of a long 16-bit row (`ops/half.rs`), or the staging row of
//! `forward_backward_into` (`ops/forward.rs`). Allocated on a thread's first use and kept,
//! grown when a longer one is asked for, so calls after the first on a thread allocate
//! nothing.

use core::cell::Cell;

thread_local! {
    /// Taken out while in use, so a task that rayon runs on this thread while another
    /// waits (or a nested use) simply gets a fresh one.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on the first `len` floats of the thread's scratch (whatever values they
/// hold: `f` writes before it reads).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len {
        // Writes only the part it grows by: the first use on a thread, or a longer one.
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| s.set(buf));
    r
}
