//! Splitting work across rayon threads without changing any result.
//!
//! Work is cut into chunks whose boundaries depend only on the shape (rows, classes),
//! never on the thread count. Each chunk produces a value, and the values are folded in
//! chunk order, so the floating-point sums are associated the same way whether the chunks
//! ran on one thread or eight. Small problems run on the calling thread with no
//! allocation; large ones are shared between the calling thread and jobs spawned into the
//! call's pool ([`par_map`]): rayon's current pool (`pool.install(..)` sets the thread
//! count) or the configuration's own.

use crate::arch::Io;
use crate::paths::{CHUNK_LOGITS, LINKED_CHUNK_ROWS, LINKED_MIN_CHUNKS, PAR_MIN_LOGITS};
use crate::threads::Run;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

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

/// One output per row (a log-sum-exp, a shard's statistics).
impl<T: Send> SplitRows for &mut [T] {
    fn split_rows(self, rows: usize) -> (Self, Self) {
        self.split_at_mut(rows)
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
    par_map(run, chunks, |i, (io, x)| f(i * per, io, x))
        .into_iter()
        .for_each(fold);
}

/// Runs `f(index, item)` on every item across the call's threads and returns the results
/// in item order.
///
/// The calling thread works too. With `p` threads the items are cut into `p` contiguous
/// spans: the caller takes the first from its front, in order, and `p - 1` jobs spawned
/// into the call's pool the others; whoever finishes its own span takes the others'
/// remaining items from their backs, so a helper that starts late (or runs on a busier
/// core) only leaves more to the others. A span is taken in order because each item's
/// kernel prefetches the next row: items handed out one by one from a shared counter
/// put consecutive rows on different cores, and 1024x128256 on two threads then took up
/// to twice the one-thread time.
///
/// Why the caller works rather than handing everything to the pool (`pool.install` with
/// a parallel iterator, as before): a caller outside the pool (a program's main thread,
/// a Python interpreter) then slept while the pool's two threads woke, and the kernel's
/// scheduler often ran both on one core by turns (`sched_yield` switches between them in
/// `perf`), so 16384x1000 on two threads took 0.17-0.26 ns per logit against 0.13 with
/// the caller inside the pool (Zen 5 VM; BENCHMARKS.md has the table). A caller that
/// keeps working keeps its core, and the helper is woken onto the other one.
pub(crate) fn par_map<T, R, F>(run: Run<'_>, items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync + Send,
{
    let n = items.len();
    let parts = run.threads().min(n);
    if parts <= 1 || u32::try_from(n).is_err() {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, t)| f(i, t))
            .collect();
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let spans: Vec<Span> = (0..parts)
        .map(|k| Span::new(k * n / parts, (k + 1) * n / parts))
        .collect();
    let run_item = |i: usize| {
        let item = slots[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(item) = item {
            let r = f(i, item);
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        }
    };
    // Participant `k` takes its own span from the front, in order (each item's kernel
    // prefetches the next row, which is then its own), then the others' from the back.
    let work = |k: usize| {
        while let Some(i) = spans[k].take(true) {
            run_item(i);
        }
        for o in (1..parts).map(|d| (k + d) % parts) {
            while let Some(i) = spans[o].take(false) {
                run_item(i);
            }
        }
    };
    let work = &work;
    run.in_place_scope(|scope| {
        for k in 1..parts {
            scope.spawn(move |_| work(k));
        }
        work(0);
    });
    // Every index was taken before the caller's loops ended, and the scope has waited
    // for the helpers that took the last ones: every result is set.
    let out: Vec<R> = results
        .into_iter()
        .filter_map(|r| r.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    debug_assert_eq!(out.len(), n);
    out
}

/// A contiguous range `front..back` of item indices, both ends in one atomic, so that its
/// owner (taking from the front) and the other threads (from the back) never take the
/// same index.
struct Span(AtomicU64);

impl Span {
    /// `front..back`, both below 2^32.
    fn new(front: usize, back: usize) -> Span {
        Span(AtomicU64::new(((front as u64) << 32) | back as u64))
    }

    /// The next index from the front or from the back, `None` once the span is empty.
    fn take(&self, front: bool) -> Option<usize> {
        // Relaxed: the atomic only hands out indices; each item and result passes through
        // its own lock, and the scope's end orders everything before the results are read.
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (f, b) = (cur >> 32, cur & 0xffff_ffff);
            if f >= b {
                return None;
            }
            let (next, i) = if front {
                (((f + 1) << 32) | b, f)
            } else {
                ((f << 32) | (b - 1), b - 1)
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(i as usize),
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Every item runs exactly once and the results come back in item order, from a
    /// caller outside the pool, inside it, on the calling thread alone, and with fewer
    /// items than threads.
    #[test]
    fn par_map_runs_each_item_once_in_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for n in [0usize, 1, 2, 3, 7, 1000] {
            let check = |run: Run<'_>| {
                let calls: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let items: Vec<usize> = (0..n).map(|i| 10 * i).collect();
                let got = par_map(run, items, |i, item| {
                    calls[i].fetch_add(1, Ordering::Relaxed);
                    // Uneven work, so that the spans are taken from their backs too.
                    let spin = if i % 3 == 0 { 2000 } else { 10 };
                    (0..spin).fold(item + i, |a, _| core::hint::black_box(a))
                });
                let want: Vec<usize> = (0..n).map(|i| 11 * i).collect();
                assert_eq!(got, want, "{run:?} n={n}");
                assert!(
                    calls.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "{run:?} n={n}"
                );
            };
            check(Run::Pool(&pool));
            check(Run::Calling);
            check(Run::Current);
            pool.install(|| check(Run::Current));
        }
    }

    /// Takes from both ends hand out every index of the span exactly once.
    #[test]
    fn a_span_gives_each_index_once_from_either_end() {
        let span = Span::new(5, 12);
        let mut got = Vec::new();
        for k in 0.. {
            match span.take(k % 3 != 0) {
                Some(i) => got.push(i),
                None => break,
            }
        }
        assert_eq!(got, [11, 5, 6, 10, 7, 8, 9]);
        assert_eq!((span.take(true), span.take(false)), (None, None));
        // Two threads draining one span from its two ends.
        let span = Span::new(0, 100_000);
        let seen: Vec<AtomicUsize> = (0..100_000).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for front in [true, false] {
                let (span, seen) = (&span, &seen);
                s.spawn(move || {
                    while let Some(i) = span.take(front) {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }
}
