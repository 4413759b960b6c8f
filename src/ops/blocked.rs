//! Rows longer than `FUSED_MAX_CLASSES`: statistics per block of `BLOCK_CLASSES` (in
//! parallel), merged per row in block order, then the gradient block by block from the
//! merged statistics; and the gradient of a run of classes from merged statistics, which
//! the shards use too.

use crate::Target;
use crate::arch::fused::beta_at;
use crate::arch::math::capped_target_grad;
use crate::arch::{Beta, BlockStats, Io, RowPlan, Smooth};
use crate::kernel::with_backend;
use crate::outputs::Sinks;
use crate::parallel::{go_parallel, par_map};
use crate::paths::BLOCK_CLASSES;
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
    let blocks = Blocks::new(ck);
    let par = go_parallel(ck.run, io.len());
    let mut sums = RowSums::default();
    sinks.fill_ignored();
    if par {
        blocks.parallel(io, targets, &mut sinks, &mut sums);
    } else {
        blocks.serial(io, targets, &mut sinks, &mut sums);
    }
    sums
}

/// One call's rows cut into blocks of `BLOCK_CLASSES` classes (the last one shorter).
struct Blocks<'a> {
    ck: &'a Checked<'a>,
    /// Classes per row.
    c: usize,
    /// Blocks per row.
    nb: usize,
    smooth: Smooth<'a>,
    beta: Beta<'a>,
}

impl<'a> Blocks<'a> {
    fn new(ck: &'a Checked<'a>) -> Blocks<'a> {
        Blocks {
            ck,
            c: ck.classes,
            nb: ck.classes.div_ceil(BLOCK_CLASSES),
            smooth: ck.smooth(),
            beta: ck.beta(),
        }
    }

    /// Block `b`'s classes `lo..hi`.
    fn span(&self, b: usize) -> (usize, usize) {
        (b * BLOCK_CLASSES, ((b + 1) * BLOCK_CLASSES).min(self.c))
    }

    fn width(&self, b: usize) -> usize {
        let (lo, hi) = self.span(b);
        hi - lo
    }

    /// Block `b`'s statistics in `row`.
    fn stats(&self, row: &[f32], b: usize) -> BlockStats {
        let (lo, hi) = self.span(b);
        let s = match self.smooth {
            Smooth::Weighted(w) => Smooth::Weighted(&w[lo..hi]),
            other => other,
        };
        with_backend!(self.ck.backend, k => k.stats(&row[lo..hi], s, self.ck.cap))
    }

    /// Block `b`'s total smoothing weight.
    fn weight(&self, b: usize) -> f64 {
        let (lo, hi) = self.span(b);
        match self.smooth {
            Smooth::Off => 0.0,
            Smooth::Uniform => (hi - lo) as f64,
            Smooth::Weighted(w) => w[lo..hi].iter().map(|&v| f64::from(v)).sum(),
        }
    }

    /// A counted row's loss (to `sinks` and `sums`) and gradient coefficients from its
    /// blocks' statistics, merged in block order.
    fn finish_row(
        &self,
        (r, row): (usize, &[f32]),
        plan: &RowPlan,
        t: usize,
        stats: impl Iterator<Item = BlockStats>,
        sinks: &mut Sinks<'_>,
        sums: &mut RowSums,
    ) -> RowGrad {
        let ck = self.ck;
        let mut m = Merged::default();
        for (b, s) in stats.enumerate() {
            let mb = Merged::from_block(s, b * BLOCK_CLASSES, self.width(b), self.weight(b));
            m = if b == 0 { mb } else { m.combine(mb) };
        }
        let zt = row[t];
        let yt = match ck.cap {
            Some(cap) => with_backend!(ck.backend, k => k.softcap(zt, cap)),
            None => zt,
        };
        let loss = ck.row_loss(t, &m, yt);
        sinks.put(r, &loss);
        sums.add(RowSums {
            loss: loss.loss,
            z: loss.z,
            correct: usize::from(loss.correct),
        });
        ck.row_grad(plan, &m, loss.lse, yt)
    }

    /// Block `b` of a row's gradient (`piece`, that block of the row's buffers).
    fn write(&self, piece: Io<'_>, b: usize, g: &RowGrad) {
        write_grad_run(self.ck, piece, b * BLOCK_CLASSES, g, self.beta);
    }

    /// On the calling thread, a row at a time.
    fn serial<T: Target>(
        &self,
        io: Io<'_>,
        targets: &[T],
        sinks: &mut Sinks<'_>,
        sums: &mut RowSums,
    ) {
        let (ck, c, nb) = (self.ck, self.c, self.nb);
        let write = !matches!(io, Io::Read(_));
        let mut rest = io;
        for (r, &t) in targets.iter().enumerate() {
            let (mut row, tail) = rest.split_at(c);
            rest = tail;
            let plan = ck.plan(t);
            let g = match plan.target {
                None => RowGrad::IGNORED,
                Some(t) => {
                    let src = row.src();
                    let stats = (0..nb).map(|b| self.stats(src, b));
                    self.finish_row((r, src), &plan, t, stats, sinks, sums)
                }
            };
            if write {
                for b in 0..nb {
                    let (piece, tail) = row.split_at(self.width(b));
                    self.write(piece, b, &g);
                    row = tail;
                }
            }
        }
    }

    /// Across the threads: every counted row's block statistics, then (in order) each
    /// row's loss and coefficients, then every gradient block.
    fn parallel<T: Target>(
        &self,
        io: Io<'_>,
        targets: &[T],
        sinks: &mut Sinks<'_>,
        sums: &mut RowSums,
    ) {
        let (ck, c, nb) = (self.ck, self.c, self.nb);
        let write = !matches!(io, Io::Read(_));
        let src = io.src();
        // Phase 1: block statistics of counted rows.
        let tasks: Vec<(usize, usize)> = (0..targets.len())
            .filter(|&r| ck.target(targets[r]).is_some())
            .flat_map(|r| (0..nb).map(move |b| (r, b)))
            .collect();
        let stats: Vec<BlockStats> = par_map(ck.run, tasks, |_, (r, b)| {
            self.stats(&src[r * c..(r + 1) * c], b)
        });
        // Phase 2: merge per row in block order; row loss; gradient coefficients.
        let mut grads = Vec::with_capacity(targets.len());
        let mut blocks = stats.chunks_exact(nb);
        for (r, &t) in targets.iter().enumerate() {
            let plan = ck.plan(t);
            let g = match plan.target {
                None => RowGrad::IGNORED,
                Some(t) => {
                    let row_stats = blocks.next().unwrap_or(&[]).iter().copied();
                    let row = &src[r * c..(r + 1) * c];
                    self.finish_row((r, row), &plan, t, row_stats, sinks, sums)
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
                    let (head, tail) = rest.split_at(self.width(b));
                    pieces.push((r, b, head));
                    rest = tail;
                }
            }
            par_map(ck.run, pieces, |_, (r, b, piece)| {
                self.write(piece, b, &grads[r])
            });
        }
    }
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
