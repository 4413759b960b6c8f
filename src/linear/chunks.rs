//! The chunk loop of the fused linear head: per row chunk, logits by GEMM, the
//! cross-entropy kernels in place, then the gradients' GEMMs (module docs of
//! [`super`]). Everything runs in row order so the sums are the same for any thread count.

use super::elem::{narrow, widen, widened};
use super::filter::Tiles;
use super::gemm::{self, Write};
use super::{LinearCrossEntropy, LinearFloat, LinearGrads};
use crate::Target;
use crate::arch::Io;
use crate::kernel::Backend;
use crate::outputs::Sinks;
use crate::parallel::SplitRows;
use crate::plan::{Checked, RowSums};

/// The inputs of a call, as the caller gave them.
pub(super) struct Input<'a, T> {
    pub hidden: &'a [T],
    pub weight: &'a [T],
    pub bias: Option<&'a [T]>,
}

/// Where `dW` is summed: the caller's f32 buffer, or an f32 accumulator for 16-bit ones.
struct WeightGrad {
    acc: Option<Vec<f32>>,
    /// How the next chunk writes: `Replace` for the first one unless accumulating.
    write: Write,
}

/// Runs a validated call over row chunks; returns the unreduced sums.
pub(super) fn run<T: LinearFloat, U: Target>(
    head: &LinearCrossEntropy,
    ck: &Checked<'_>,
    input: Input<'_, T>,
    targets: &[U],
    mut grads: Option<LinearGrads<'_, T>>,
    mut sinks: Sinks<'_>,
) -> RowSums {
    let (dim, vocab, backend) = (head.dim, ck.classes, ck.backend);
    let rows = targets.len();
    let weight = widened(backend, input.weight);
    let bias = input.bias.map(|b| widened(backend, b));
    let mut dw = grads.as_mut().map(|g| weight_grad(backend, g));
    let mut db = grads
        .as_ref()
        .and_then(|g| g.bias.as_ref())
        .map(|_| vec![0f64; vocab]);
    let chunk = head.chunk_rows(rows);
    let mut z = vec![0f32; chunk * vocab];
    let mut h_buf = Vec::new();
    let mut dh_buf = Vec::new();
    let mut tiles = Tiles::new();
    let mut sums = RowSums::default();
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let z = &mut z[..n * vocab];
        let h_src = &input.hidden[r0 * dim..(r0 + n) * dim];
        let h = f32_rows(backend, h_src, &mut h_buf);
        let write = match &bias {
            Some(b) => {
                z.chunks_exact_mut(vocab)
                    .for_each(|row| row.copy_from_slice(b));
                Write::Add
            }
            None => Write::Replace,
        };
        gemm::logits(ck.run, h, &weight, z, dim, write);
        let (here, rest) = sinks.split_rows(n);
        sinks = rest;
        let targets = &targets[r0..r0 + n];
        let Some(g) = grads.as_mut() else {
            sums.add(ck.run_rows(Io::Read(z), targets, here, None));
            r0 += n;
            continue;
        };
        sums.add(ck.run_rows(Io::InPlace(z), targets, here, None));
        if let Some(db) = db.as_mut() {
            for row in z.chunks_exact(vocab) {
                db.iter_mut()
                    .zip(row)
                    .for_each(|(s, &g)| *s += f64::from(g));
            }
        }
        if let Some(eps) = head.filter {
            tiles.scan(ck, z, targets, eps);
        }
        let tiles = head.filter.map(|_| &tiles);
        let accumulate = g.accumulate;
        let dh = &mut g.hidden[r0 * dim..(r0 + n) * dim];
        let write = if accumulate {
            Write::Add
        } else {
            Write::Replace
        };
        match T::as_f32_mut(dh) {
            Some(dh) => d_hidden(ck, tiles, z, &weight, dh, dim, write),
            None => {
                dh_buf.resize(n * dim, 0.0);
                if accumulate {
                    widen(backend, dh, &mut dh_buf);
                }
                d_hidden(ck, tiles, z, &weight, &mut dh_buf, dim, write);
                narrow(backend, &dh_buf, dh);
            }
        }
        if let Some(w) = dw.as_mut() {
            let out = match &mut w.acc {
                Some(acc) => Some(acc.as_mut_slice()),
                None => T::as_f32_mut(&mut *g.weight),
            };
            if let Some(out) = out {
                match tiles {
                    Some(t) => t.d_weight(ck.run, z, h, out, dim, w.write),
                    None => gemm::d_weight(ck.run, z, h, out, dim, w.write),
                }
            }
            w.write = Write::Add;
        }
        r0 += n;
    }
    if let Some(g) = grads {
        finish(backend, g, dw, db);
    }
    sums
}

/// `dh (+)= G W` for a chunk, through the gradient filter's tiles if it is on.
fn d_hidden(
    ck: &Checked<'_>,
    tiles: Option<&Tiles>,
    g: &[f32],
    w: &[f32],
    dh: &mut [f32],
    dim: usize,
    write: Write,
) {
    match tiles {
        Some(t) => t.d_hidden(ck.run, g, w, dh, dim, write),
        None => gemm::d_hidden(ck.run, g, w, dh, dim, write),
    }
}

/// The hidden rows of a chunk as f32: borrowed, or widened into `buf`.
fn f32_rows<'a, T: LinearFloat>(
    backend: Backend,
    src: &'a [T],
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    match T::as_f32(src) {
        Some(h) => h,
        None => {
            buf.resize(src.len(), 0.0);
            widen(backend, src, buf);
            buf
        }
    }
}

/// Where the weight gradient is summed for these buffers.
fn weight_grad<T: LinearFloat>(backend: Backend, g: &mut LinearGrads<'_, T>) -> WeightGrad {
    let write = if g.accumulate {
        Write::Add
    } else {
        Write::Replace
    };
    let acc = match T::as_f32_mut(g.weight) {
        Some(_) => None,
        None => {
            let mut acc = vec![0f32; g.weight.len()];
            if g.accumulate {
                widen(backend, g.weight, &mut acc);
            }
            Some(acc)
        }
    };
    WeightGrad { acc, write }
}

/// After the last chunk: an empty batch's overwritten gradients are zero, 16-bit weight
/// gradients are rounded from their f32 sums, and the bias gradient is written.
fn finish<T: LinearFloat>(
    backend: Backend,
    g: LinearGrads<'_, T>,
    dw: Option<WeightGrad>,
    db: Option<Vec<f64>>,
) {
    if let Some(w) = dw {
        match w.acc {
            Some(acc) => narrow(backend, &acc, g.weight),
            // No chunk ran (no rows) and the buffer is to be overwritten: zero it.
            None if w.write == Write::Replace => {
                if let Some(out) = T::as_f32_mut(&mut *g.weight) {
                    out.fill(0.0);
                }
            }
            None => {}
        }
    }
    if let (Some(out), Some(db)) = (g.bias, db) {
        let mut sums: Vec<f32> = vec![0.0; out.len()];
        if g.accumulate {
            widen(backend, out, &mut sums);
        }
        for (s, &d) in sums.iter_mut().zip(&db) {
            *s = (f64::from(*s) + d) as f32;
        }
        narrow(backend, &sums, out);
    }
}
