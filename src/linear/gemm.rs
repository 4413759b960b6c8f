//! The three matrix products of a row chunk, on `faer`'s GEMM (runtime AVX-512 / AVX2
//! selection, rayon threads), all on row-major f32 buffers:
//!
//! ```text
//! Z   = H_R W^T      (rows x V)    logits of the chunk (bias pre-loaded into Z)
//! dH_R = G W         (rows x d)
//! dW  += G^T H_R     (V x d)
//! ```
//!
//! `faer` splits the output between threads and keeps each element's sum over `k` in one
//! order whatever the thread count, so the products are bit-identical for any number of
//! threads (checked by the tests); they may differ between kernel variants (AVX-512 and
//! AVX2), as the cross-entropy kernels do.

use crate::threads::Run;
use faer::{Accum, MatMut, MatRef, Par};

/// Whether a product overwrites its output or adds into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Replace,
    Add,
}

impl Write {
    fn accum(self) -> Accum {
        match self {
            Write::Replace => Accum::Replace,
            Write::Add => Accum::Add,
        }
    }
}

/// `dst (m x n) (+)= lhs (m x k) rhs (k x n)` on the call's threads.
pub(super) fn product(
    run: Run<'_>,
    dst: MatMut<'_, f32>,
    write: Write,
    lhs: MatRef<'_, f32>,
    rhs: MatRef<'_, f32>,
) {
    run.install(|| {
        let par = match run {
            Run::Calling => Par::Seq,
            _ if rayon::current_num_threads() <= 1 => Par::Seq,
            _ => Par::rayon(0),
        };
        faer::linalg::matmul::matmul(dst, write.accum(), lhs, rhs, 1.0f32, par);
    });
}

/// `z (rows x vocab) (+)= h (rows x dim) w^T`, `w` being `vocab x dim`.
pub(crate) fn logits(run: Run<'_>, h: &[f32], w: &[f32], z: &mut [f32], dim: usize, write: Write) {
    let vocab = w.len() / dim;
    let rows = h.len() / dim;
    let h = MatRef::from_row_major_slice(h, rows, dim);
    let wt = MatRef::from_row_major_slice(w, vocab, dim).transpose();
    let z = MatMut::from_row_major_slice_mut(z, rows, vocab);
    product(run, z, write, h, wt);
}

/// `dh (rows x dim) (+)= g (rows x vocab) w (vocab x dim)`.
pub(crate) fn d_hidden(
    run: Run<'_>,
    g: &[f32],
    w: &[f32],
    dh: &mut [f32],
    dim: usize,
    write: Write,
) {
    let vocab = w.len() / dim;
    let rows = dh.len() / dim;
    let g = MatRef::from_row_major_slice(g, rows, vocab);
    let w = MatRef::from_row_major_slice(w, vocab, dim);
    let dh = MatMut::from_row_major_slice_mut(dh, rows, dim);
    product(run, dh, write, g, w);
}

/// `dw (vocab x dim) (+)= g^T (vocab x rows) h (rows x dim)`.
pub(crate) fn d_weight(
    run: Run<'_>,
    g: &[f32],
    h: &[f32],
    dw: &mut [f32],
    dim: usize,
    write: Write,
) {
    let vocab = dw.len() / dim;
    let rows = h.len() / dim;
    let gt = MatRef::from_row_major_slice(g, rows, vocab).transpose();
    let h = MatRef::from_row_major_slice(h, rows, dim);
    let dw = MatMut::from_row_major_slice_mut(dw, vocab, dim);
    product(run, dw, write, gt, h);
}
