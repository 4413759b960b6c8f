//! Splitting work across rayon threads without changing any result.
//!
//! Work is cut into chunks whose boundaries depend only on the shape (rows, classes),
//! never on the thread count. Each chunk produces a value, and the values are folded in
//! chunk order, so the floating-point sums are associated the same way whether the chunks
//! ran on one thread or eight. Small problems run on the calling thread with no
//! allocation; large ones run in the caller's current rayon pool (`pool.install(..)` sets
//! the thread count).

use crate::arch::Io;
use crate::paths::{CHUNK_LOGITS, LINKED_CHUNK_ROWS, LINKED_MIN_CHUNKS, PAR_MIN_LOGITS};
use crate::threads::Run;
use rayon::prelude::*;

/// Whole rows per chunk for rows of `classes` (at least one).
pub(crate) fn rows_per_chunk(classes: usize) -> usize {
    (CHUNK_LOGITS / classes.max(1)).max(1)
}

/// Whole rows per chunk for rows that the kernel links in pairs, finishing one row inside
/// the next one's first pass (`paths::trails`): a chunk's last row has no next
/// row, so chunks of [`rows_per_chunk`] (two rows of 32 000 classes) would leave half the
/// rows unlinked. Up to [`LINKED_CHUNK_ROWS`], while the batch still makes
/// [`LINKED_MIN_CHUNKS`] chunks; at least [`rows_per_chunk`]. A function of the shape alone.
pub(crate) fn rows_per_linked_chunk(classes: usize, rows: usize) -> usize {
    rows_per_chunk(classes).max((rows / LINKED_MIN_CHUNKS).min(LINKED_CHUNK_ROWS))
}

/// Whether a problem of `logits` elements is worth spreading across the call's threads.
pub(crate) fn go_parallel(run: Run<'_>, logits: usize) -> bool {
    logits >= PAR_MIN_LOGITS && run.threads() > 1
}

/// A buffer of rows that can be cut into chunks: f32 logits ([`Io`]) or 16-bit ones.
pub(crate) trait SplitLogits: Send + Sized {
    /// Elements (rows times classes).
    fn len(&self) -> usize;
    /// Splits off the first `n` elements.
    fn split_at(self, n: usize) -> (Self, Self);
}

impl SplitLogits for Io<'_> {
    fn len(&self) -> usize {
        Io::len(self)
    }
    fn split_at(self, n: usize) -> (Self, Self) {
        Io::split_at(self, n)
    }
}

/// Calls `f(first_row, chunk)` for consecutive chunks of `rows_per_chunk` whole rows of
/// `io` and feeds the results to `fold` in chunk order.
pub(crate) fn for_row_chunks<R, F, G>(run: Run<'_>, io: Io<'_>, classes: usize, f: F, fold: G)
where
    R: Send,
    F: Fn(usize, Io<'_>) -> R + Sync,
    G: FnMut(R),
{
    let f = |row, io, ()| f(row, io);
    for_chunks_of_rows(run, io, (), classes, rows_per_chunk(classes), f, fold);
}

/// Per-row buffers that travel with the logits when the rows are cut into chunks.
pub(crate) trait SplitRows: Send + Sized {
    /// Splits off the first `rows` rows.
    fn split_rows(self, rows: usize) -> (Self, Self);
}

impl SplitRows for () {
    fn split_rows(self, _: usize) -> ((), ()) {
        ((), ())
    }
}

/// [`for_row_chunks`] with per-row buffers `x` cut at the same row boundaries.
pub(crate) fn for_row_chunks_with<X, R, F, G>(
    run: Run<'_>,
    io: Io<'_>,
    x: X,
    classes: usize,
    f: F,
    fold: G,
) where
    X: SplitRows,
    R: Send,
    F: Fn(usize, Io<'_>, X) -> R + Sync,
    G: FnMut(R),
{
    for_chunks_of_rows(run, io, x, classes, rows_per_chunk(classes), f, fold);
}

/// Calls `f(first_row, chunk, x)` for consecutive chunks of `per` whole rows (a function
/// of the shape alone) of any [`SplitLogits`], with per-row buffers `x` cut at the same
/// row boundaries, and feeds the results to `fold` in chunk order.
pub(crate) fn for_chunks_of_rows<L, X, R, F, G>(
    run: Run<'_>,
    io: L,
    x: X,
    classes: usize,
    per: usize,
    f: F,
    mut fold: G,
) where
    L: SplitLogits,
    X: SplitRows,
    R: Send,
    F: Fn(usize, L, X) -> R + Sync,
    G: FnMut(R),
{
    debug_assert!(per > 0);
    let chunk = per * classes;
    let mut rest = (io, x);
    if !go_parallel(run, rest.0.len()) {
        let mut row = 0;
        while rest.0.len() > 0 {
            let n = chunk.min(rest.0.len());
            let (head, tail) = rest.0.split_at(n);
            let (xh, xt) = rest.1.split_rows(n / classes);
            fold(f(row, head, xh));
            rest = (tail, xt);
            row += per;
        }
        return;
    }
    let mut chunks = Vec::with_capacity(rest.0.len().div_ceil(chunk));
    while rest.0.len() > 0 {
        let n = chunk.min(rest.0.len());
        let (head, tail) = rest.0.split_at(n);
        let (xh, xt) = rest.1.split_rows(n / classes);
        chunks.push((head, xh));
        rest = (tail, xt);
    }
    let results: Vec<R> = run.install(|| {
        chunks
            .into_par_iter()
            .enumerate()
            .map(|(i, (io, x))| f(i * per, io, x))
            .collect()
    });
    results.into_iter().for_each(fold);
}

/// Runs `f(index, item)` on every item across the call's threads and returns the results
/// in item order.
pub(crate) fn par_map<T, R, F>(run: Run<'_>, items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync + Send,
{
    run.install(|| {
        items
            .into_par_iter()
            .enumerate()
            .map(|(i, t)| f(i, t))
            .collect()
    })
}
