//! Cut Cross-Entropy's gradient filter for the fused head's backward GEMMs
//! ([`LinearCrossEntropy::gradient_filter`](super::LinearCrossEntropy::gradient_filter)).
//!
//! # What is skipped
//!
//! After the cross-entropy kernels have written a chunk's gradient `G` over its logits,
//! the chunk is cut into tiles of [`TILE_ROWS`] rows by [`TILE_VOCAB`] vocabulary entries,
//! starting at the chunk's first row and first class (a chunk of fewer rows has smaller
//! tiles: the filter never looks past the chunk it has).
//! Each row's target entry is taken out of `G` first (kept aside and applied exactly at
//! the end, as a rank-one update per row). A tile whose remaining entries all satisfy
//! `|G_ij| <= eps * a_i` is then treated as zero by both backward products, where `a_i`
//! is the row's softmax coefficient (the reduction's scale times the target's class
//! weight, and `(1 - s) + s sum(w) / C` with label smoothing `s`): for plain
//! cross-entropy the condition is `p_ij <= eps`, the softmax probability. Rows that are
//! ignored have `a_i = 0` and a zero gradient, so they never keep a tile.
//!
//! # The products
//!
//! For each vocabulary block `b`, in order, and each run of consecutive kept row tiles
//! `r` in it: `dH_r += G_rb W_b` and `dW_b += G_rb^T H_r`. Then, row by row, the target
//! entries: `dH_i += g_it W_t` and `dW_t += g_it H_i`. The order is fixed, so the result
//! is bit-identical for any thread count (it differs from the unfiltered path's rounding
//! even at `eps = 0`, where only tiles of exact zeros are skipped, because the sums over
//! the vocabulary are cut into blocks). The bias gradient is always the full one.
//!
//! The scan that decides the tiles reads the chunk once (about one memory pass over the
//! chunk's logits); the tiles are large enough that a kept run still runs at the GEMM's
//! speed.

use super::gemm::{self, Write};
use crate::Target;
use crate::plan::Checked;
use crate::threads::Run;
use faer::reborrow::ReborrowMut;
use faer::{MatMut, MatRef};

/// Rows per tile of the filter.
pub(super) const TILE_ROWS: usize = 64;
/// Vocabulary entries per tile of the filter.
pub(super) const TILE_VOCAB: usize = 512;

/// The tiles of one chunk that the backward products keep, and the target entries taken
/// out of the chunk's gradient.
pub(super) struct Tiles {
    /// `keep[b * row_tiles + r]`: vocabulary block `b`, row tile `r`.
    keep: Vec<bool>,
    row_tiles: usize,
    /// `(row in the chunk, target, gradient entry)` for every counted row.
    targets: Vec<(usize, usize, f32)>,
}

impl Tiles {
    pub(super) fn new() -> Self {
        Tiles {
            keep: Vec::new(),
            row_tiles: 0,
            targets: Vec::new(),
        }
    }

    /// Takes the target entries out of the chunk's gradient `g` (`rows x vocab`) and
    /// decides which tiles are kept.
    pub(super) fn scan<U: Target>(
        &mut self,
        ck: &Checked<'_>,
        g: &mut [f32],
        targets: &[U],
        eps: f32,
    ) {
        let vocab = ck.classes;
        let rows = targets.len();
        self.row_tiles = rows.div_ceil(TILE_ROWS);
        let blocks = vocab.div_ceil(TILE_VOCAB);
        self.keep.clear();
        self.keep.resize(blocks * self.row_tiles, false);
        self.targets.clear();
        for (i, (row, &t)) in g.chunks_exact_mut(vocab).zip(targets).enumerate() {
            let plan = ck.plan(t);
            // An ignored row has `a_i = 0`: only a non-zero (or NaN) entry keeps its tile.
            let limit = (f64::from(eps) * plan.grad_a) as f32;
            if let Some(t) = plan.target {
                self.targets.push((i, t, row[t]));
                row[t] = 0.0;
            }
            let tile = i / TILE_ROWS;
            for (b, block) in row.chunks(TILE_VOCAB).enumerate() {
                let keep = &mut self.keep[b * self.row_tiles + tile];
                if !*keep {
                    *keep = exceeds(block, limit);
                }
            }
        }
    }

    /// `dh (+)= G W` over the kept tiles and the target entries; `write` says whether
    /// `dh` (`rows x dim`) is overwritten.
    pub(super) fn d_hidden(
        &self,
        run: Run<'_>,
        g: &[f32],
        w: &[f32],
        dh: &mut [f32],
        dim: usize,
        write: Write,
    ) {
        if write == Write::Replace {
            dh.fill(0.0);
        }
        let rows = dh.len() / dim;
        let vocab = w.len() / dim;
        let gm = MatRef::from_row_major_slice(g, rows, vocab);
        let wm = MatRef::from_row_major_slice(w, vocab, dim);
        let mut dh_m = MatMut::from_row_major_slice_mut(dh, rows, dim);
        self.for_each_run(rows, vocab, |(r0, r1), (c0, c1)| {
            let lhs = gm.submatrix(r0, c0, r1 - r0, c1 - c0);
            let rhs = wm.submatrix(c0, 0, c1 - c0, dim);
            let dst = dh_m.rb_mut().submatrix_mut(r0, 0, r1 - r0, dim);
            gemm::product(run, dst, Write::Add, lhs, rhs);
        });
        for &(i, t, gt) in &self.targets {
            let src = &w[t * dim..(t + 1) * dim];
            let dst = &mut dh[i * dim..(i + 1) * dim];
            dst.iter_mut().zip(src).for_each(|(d, &x)| *d += gt * x);
        }
    }

    /// `dw (+)= G^T H` over the kept tiles and the target entries; `write` says whether
    /// `dw` (`vocab x dim`) is overwritten.
    pub(super) fn d_weight(
        &self,
        run: Run<'_>,
        g: &[f32],
        h: &[f32],
        dw: &mut [f32],
        dim: usize,
        write: Write,
    ) {
        if write == Write::Replace {
            dw.fill(0.0);
        }
        let rows = h.len() / dim;
        let vocab = dw.len() / dim;
        let gm = MatRef::from_row_major_slice(g, rows, vocab);
        let hm = MatRef::from_row_major_slice(h, rows, dim);
        let mut dw_m = MatMut::from_row_major_slice_mut(dw, vocab, dim);
        self.for_each_run(rows, vocab, |(r0, r1), (c0, c1)| {
            let lhs = gm.submatrix(r0, c0, r1 - r0, c1 - c0).transpose();
            let rhs = hm.submatrix(r0, 0, r1 - r0, dim);
            let dst = dw_m.rb_mut().submatrix_mut(c0, 0, c1 - c0, dim);
            gemm::product(run, dst, Write::Add, lhs, rhs);
        });
        for &(i, t, gt) in &self.targets {
            let src = &h[i * dim..(i + 1) * dim];
            let dst = &mut dw[t * dim..(t + 1) * dim];
            dst.iter_mut().zip(src).for_each(|(d, &x)| *d += gt * x);
        }
    }

    /// Calls `f(rows, columns)` for each vocabulary block in order and each maximal run of
    /// kept row tiles in it, top to bottom.
    fn for_each_run(
        &self,
        rows: usize,
        vocab: usize,
        mut f: impl FnMut((usize, usize), (usize, usize)),
    ) {
        if self.row_tiles == 0 {
            return;
        }
        for (b, keep) in self.keep.chunks_exact(self.row_tiles).enumerate() {
            let cols = (b * TILE_VOCAB, ((b + 1) * TILE_VOCAB).min(vocab));
            let mut r = 0;
            while r < keep.len() {
                if !keep[r] {
                    r += 1;
                    continue;
                }
                let start = r;
                while r < keep.len() && keep[r] {
                    r += 1;
                }
                f((start * TILE_ROWS, (r * TILE_ROWS).min(rows)), cols);
            }
        }
    }
}

/// Whether an entry of `block` is above `limit` in magnitude (or NaN). Sixteen entries at
/// a time without an early exit inside, so the comparison vectorises.
fn exceeds(block: &[f32], limit: f32) -> bool {
    block.chunks(16).any(|c| {
        c.iter()
            .fold(false, |a, &g| a | (g.abs() > limit) | g.is_nan())
    })
}
