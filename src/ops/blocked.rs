//! Rows longer than `FUSED_MAX_CLASSES`: statistics per block of `BLOCK_CLASSES` (in
//! parallel), merged per row in block order, then the gradient block by block from the
//! merged statistics; and the gradient of a run of classes from merged statistics, which
//! the shards use too.

use crate::Target;
use crate::arch::math::capped_target_grad;
use crate::arch::rows::beta_at;
use crate::arch::{BLOCK_CLASSES, Beta, BlockStats, Io, RowPlan, Smooth};
use crate::kernel::with_backend;
use crate::outputs::Sinks;
use crate::parallel::{go_parallel, map_ordered};
use crate::plan::{Checked, RowGrad, RowSums};
use crate::stats::Merged;

/// Rows longer than `FUSED_MAX_CLASSES`: statistics per block (in parallel), merged per
/// row in block order, then the gradient per block from the merged statistics. On one
/// thread the rows go one at a time through the same steps, with no task lists (no heap
/// allocation); the results are the same bits either way.
pub(crate) fn blocked<T: Target>(
    ck: &Checked<'_>,
    io: Io<'_>,
    targets: &[T],
    mut sinks: Sinks<'_>,
) -> RowSums {
    let c = ck.classes;
    let nb = c.div_ceil(BLOCK_CLASSES);
    let par = go_parallel(io.len());
    let smooth = ck.smooth();
    let beta = ck.beta();
    let write = !matches!(io, Io::Read(_));
    let span = |b: usize| (b * BLOCK_CLASSES, ((b + 1) * BLOCK_CLASSES).min(c));
    let width = |b: usize| span(b).1 - span(b).0;
    // Block `b`'s statistics in row `row`.
    let block_stats = |row: &[f32], b: usize| {
        let (lo, hi) = span(b);
        let s = match smooth {
            Smooth::Weighted(w) => Smooth::Weighted(&w[lo..hi]),
            other => other,
        };
        with_backend!(ck.backend, k => k.stats(&row[lo..hi], s, ck.cap))
    };
    let block_weight = |b: usize| {
        let (lo, hi) = span(b);
        match smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => (hi - lo) as f64,
            Smooth::Weighted(w) => w[lo..hi].iter().map(|&v| f64::from(v)).sum(),
        }
    };
    let mut sums = RowSums::default();
    sinks.fill_zero();
    // A counted row's loss (to `sinks` and `sums`) and gradient coefficients from its
    // blocks' statistics, merged in block order.
    let mut finish_row = |r: usize,
                          row: &[f32],
                          plan: &RowPlan,
                          t: usize,
                          stats: &mut dyn Iterator<Item = BlockStats>| {
        let mut m = Merged::default();
        for (b, s) in stats.enumerate() {
            let mb = Merged::from_block(s, b * BLOCK_CLASSES, width(b), block_weight(b));
            m = if b == 0 { mb } else { m.combine(mb) };
        }
        let zt = row[t];
        let yt = match ck.cap {
            Some(cap) => with_backend!(ck.backend, k => k.softcap(zt, cap)),
            None => zt,
        };
        let loss = ck.row_loss(t, &m, yt);
        sinks.put(r, loss.loss, loss.lse);
        sums.add(RowSums {
            loss: loss.loss,
            z: loss.z,
            correct: usize::from(loss.correct),
        });
        ck.row_grad(plan, &m, loss.lse, yt)
    };
    // Block `b` of a row's gradient (`piece`, that block of the row's buffers).
    let write_block = |piece: Io<'_>, b: usize, g: &RowGrad| {
        write_grad_run(ck, piece, b * BLOCK_CLASSES, g, beta);
    };
    if !par {
        let mut rest = io;
        for (r, &t) in targets.iter().enumerate() {
            let (mut row, tail) = rest.split_at(c);
            rest = tail;
            let plan = ck.plan(t);
            let g = match plan.target {
                None => RowGrad::IGNORED,
                Some(t) => {
                    let src = row.src();
                    finish_row(r, src, &plan, t, &mut (0..nb).map(|b| block_stats(src, b)))
                }
            };
            if write {
                for b in 0..nb {
                    let (piece, tail) = row.split_at(width(b));
                    write_block(piece, b, &g);
                    row = tail;
                }
            }
        }
        return sums;
    }
    let src = io.src();
    // Phase 1: block statistics of counted rows.
    let tasks: Vec<(usize, usize)> = (0..targets.len())
        .filter(|&r| ck.target(targets[r]).is_some())
        .flat_map(|r| (0..nb).map(move |b| (r, b)))
        .collect();
    let stats: Vec<BlockStats> = map_ordered(tasks, par, |_, (r, b)| {
        block_stats(&src[r * c..(r + 1) * c], b)
    });
    // Phase 2: merge per row in block order; row loss; gradient coefficients.
    let mut grads = Vec::with_capacity(targets.len());
    let mut blocks = stats.chunks_exact(nb);
    for (r, &t) in targets.iter().enumerate() {
        let plan = ck.plan(t);
        let g = match plan.target {
            None => RowGrad::IGNORED,
            Some(t) => {
                let row_stats = blocks.next().unwrap_or(&[]);
                let row = &src[r * c..(r + 1) * c];
                finish_row(r, row, &plan, t, &mut row_stats.iter().copied())
            }
        };
        grads.push(g);
    }
    // Phase 3: gradient blocks.
    if write {
        let mut pieces = Vec::with_capacity(targets.len() * nb);
        let mut rest = io;
        for r in 0..targets.len() {
            for b in 0..nb {
                let (head, tail) = rest.split_at(width(b));
                pieces.push((r, b, head));
                rest = tail;
            }
        }
        map_ordered(pieces, par, |_, (r, b, piece)| {
            write_block(piece, b, &grads[r])
        });
    }
    sums
}

/// The gradient of a run of classes `[lo, lo + piece.len())` of one row from the row's
/// coefficients; `beta` spans the whole row (weights are sliced here).
pub(crate) fn write_grad_run(
    ck: &Checked<'_>,
    mut piece: Io<'_>,
    lo: usize,
    g: &RowGrad,
    beta: Beta<'_>,
) {
    if g.zero {
        piece.dst_mut().fill(0.0);
        return;
    }
    let n = piece.len();
    let run_beta = match beta {
        Beta::Weighted(k, w) => Beta::Weighted(k, &w[lo..lo + n]),
        other => other,
    };
    with_backend!(ck.backend, k => k.grad_from_stats(piece.reborrow(), g.max, g.alpha as f32, run_beta, ck.cap));
    if let Some(t) = g.target.filter(|&t| t >= lo && t < lo + n) {
        let dst = &mut piece.dst_mut()[t - lo];
        match ck.cap {
            None => *dst -= g.tfix,
            Some(cap) => {
                let (max, tfix) = (f64::from(g.max), f64::from(g.tfix));
                *dst = capped_target_grad(g.alpha, g.yt, max, beta_at(beta, t), tfix, cap.cap);
            }
        }
    }
}
