//! Which path a row takes, and every tuning constant that decides it.
//!
//! The kernels (`crate::arch`) pick a path per call from the class count `C`, the
//! options and the kernel alone (and the CPU, for a separate gradient output, see
//! [`stages_into`], and for the grouping of rows of up to [`GROUP_LONG_MAX_CLASSES`]
//! classes); the parallel driver (`crate::parallel`) cuts the rows into chunks
//! from the shape alone. Nothing here depends on the data or on the thread count, so every
//! result is the same whichever path or split runs (see the crate's determinism tests).
//!
//! | `C` (classes per row) | path | where |
//! |---|---|---|
//! | 1 ..= [`SMALL_MAX_CLASSES`] (64) | **row groups**: `LANES` rows at a time, one row per lane, transposed in registers; one instance per `C` up to [`FIXED_MAX_CLASSES`] (32) | `arch/small/` |
//! | 65 ..= [`GROUP_MAX_CLASSES`] (255), and any `C` up to 255 with the fused-only options below | **fused, grouped**: the three passes, [`GROUP_ROWS`] rows side by side | `arch/fused.rs` |
//! | 256 ..= 8191 | **fused**: the three passes a row at a time (up to [`GROUP_LONG_MAX_CLASSES`] (1535) in groups of [`GROUP_ROWS`] on a Zen 5's AVX-512 kernel, [`Backend::groups_long_rows`](crate::kernel::Backend::groups_long_rows)), the next row (or group) prefetched from [`PREFETCH_MIN_CLASSES`]; a separate gradient output from [`STAGE_MIN_CLASSES`] (2048) formed from a staging row and streamed out ([`stages_into`]) | `arch/fused.rs`, `arch/pass/` |
//! | [`TRAIL_MIN_CLASSES`] (8192) ..= 16383 | **fused, linked** (AVX2 and AVX-512; the portable kernel runs these rows unlinked, [`Simd::EMULATED`](crate::arch::Simd::EMULATED)): a row's pass 3 inside the next row's pass 2; a separate output without soft-capping is staged instead, unlinked, on the AVX-512 kernel of a Zen 5 ([`stages_into`]) | `arch/fused.rs`, `arch/pass/exp.rs` |
//! | [`ONLINE_MIN_CLASSES`] (16384) ..= [`TRAIL_MAX_CLASSES`] (32768) | **online and linked**: passes 1 and 2 in one sweep, pass 3 inside the next row's (linked as above, and so are rows of 16-bit logits; a separate output staged as above) | `arch/pass/online.rs` |
//! | 32769 ..= [`FUSED_MAX_CLASSES`] (131072) | **online** | `arch/pass/online.rs` |
//! | above [`FUSED_MAX_CLASSES`] | **blocked**: blocks of [`BLOCK_CLASSES`] give mergeable statistics, merged in block order, then a second sweep writes the gradient | `ops/blocked.rs`, `arch/pass/stats.rs` |
//!
//! The row-group path takes PyTorch's options (ignore index, label smoothing, class
//! weights); a call with z-loss, soft-capping or per-row outputs (`Reduction::None`,
//! `forward_with`) takes the fused path from one class (`ops/forward.rs`). Label
//! smoothing turns off the linked and online variants (the linked pass 3 is the plain
//! scale `alpha e`, without smoothing's `beta_j`), soft-capping the online one (its rows
//! find the raw logits' max and argmax in a pass of their own, then take the exps of the
//! capped values). On the blocked path the blocks, not the rows, are the unit of
//! parallel work, so even one long row shares the threads (from [`PAR_MIN_LOGITS`]
//! logits, as every call).
//!
//! Rows of bf16 or f16 logits take these passes on the 16-bit logits, widened in
//! registers as they are loaded, when they have no label smoothing (soft-capped or not)
//! and [`reads_half`] accepts their length (from [`HALF_ROWS_MIN_CLASSES`], 128); other
//! 16-bit rows are widened into f32 tiles for the paths above (`ops/half.rs`).
//!
//! Work is split across threads only from [`PAR_MIN_LOGITS`] logits, in chunks of whole
//! rows of about [`CHUNK_LOGITS`] (linked rows: up to [`LINKED_CHUNK_ROWS`] rows, keeping
//! [`LINKED_MIN_CHUNKS`] chunks).
//!
//! Each constant says what it trades and how it was measured. The split across threads
//! never changes a result; a class-count limit can: it moves shapes to another path, whose
//! bits differ within the error bound (the golden test, `tests/golden.rs`, shows which).

// The row-group path (`arch/small/`)

/// Rows of at most this many classes take the row-group path: one row per lane, so the
/// per-row work (max, sums, log) is vertical and nothing is reduced across lanes.
pub(crate) const SMALL_MAX_CLASSES: usize = 64;

/// Up to this many classes the row-group path is instantiated per class count (its class
/// vectors stay in registers and its loops unroll); above, one instance per variant runs
/// loops over a runtime class count, its columns in a stack array. The class vectors
/// spill past this count anyway, and unrolled instances for every count up to
/// `SMALL_MAX_CLASSES` would cost minutes of compile time in every build of the crate.
pub(crate) const FIXED_MAX_CLASSES: usize = 32;

/// Groups the row-group path takes through each of its two phases at a time: the exps
/// and gradients of a batch of groups, then the batch's logs and losses. The log and the
/// loss sit at the end of a long chain of dependent operations that starts at a group's
/// loads; leaving them to a second loop lets the out-of-order core overlap the groups'
/// chains instead of waiting out each one.
pub(crate) const BATCH_GROUPS: usize = 16;

/// Class counts up to which a group's gradient is computed one group late, after the next
/// group's exps are issued (`small_batch`). Each group's work is one long chain of
/// dependent steps (loads, transpose, max, exps, sum, division, gradient, transpose,
/// stores), too long for the scheduler to overlap consecutive groups on its own; with
/// the lag, the next group's first steps and this one's last steps are ready together.
/// Above, the two groups' columns no longer fit in registers and the spills cost more
/// than the overlap gains (measured: 10% faster at 3-12 classes, 8-10% slower at 20-32).
pub(crate) const PIPELINE_MAX_CLASSES: usize = 12;

/// Pipelined class counts from which `small_batch` takes groups in pairs, the two arrays
/// of exps trading roles between the pair's calls, instead of swapping them after each
/// group: there `mem::swap` of the two arrays went through the stack. Measured on rows in
/// cache: pairs took 0.86-0.88 of the time at 8-12 classes, but 1.04-1.06 at 3-6 (where
/// the swap stays in registers), and the same at 7. Not in the portable kernel
/// ([`Simd::EMULATED`](crate::arch::Simd::EMULATED)), where they were 1.3x slower.
pub(crate) const PAIRED_MIN_CLASSES: usize = 8;

// The fused path (`arch/fused.rs`, `arch/pass/`)

/// Rows per group in [`ce_rows`](crate::arch::fused::ce_rows) (for rows of at most
/// [`GROUP_MAX_CLASSES`], or [`GROUP_LONG_MAX_CLASSES`] where the kernel groups longer
/// rows).
///
/// A row's passes are chains of dependent steps: the exps wait for the horizontal max,
/// the scale for the horizontal sum and a division. On a short row those waits are a
/// large part of the row's time, and the next row's work sits too far ahead in the
/// instruction stream for the core to overlap it. So the rows of a group run each pass
/// side by side: every row's max, then every row's exps, then every gradient, and one
/// row's waits overlap another's work. Each row's arithmetic is what it is alone, so the
/// results do not depend on the grouping. Groups of two gained less (a first prototype at
/// 100 classes: 0.86 of the ungrouped time, against 0.79 with four).
pub(crate) const GROUP_ROWS: usize = 4;

/// The longest rows that [`ce_rows`](crate::arch::fused::ce_rows) groups on every
/// kernel: those that pass 2 does not prefetch for. With longer rows, grouped, the
/// prefetches run a whole group ahead rather than one row, and on the Zen 4 host (in an
/// early session) rows from DRAM got slower (7-10% at 256 classes, 10-16% at 1000),
/// though rows in L2 or L3 still gained. On the Zen 5 host they gain from DRAM too
/// ([`GROUP_LONG_MAX_CLASSES`]).
pub(crate) const GROUP_MAX_CLASSES: usize = PREFETCH_MIN_CLASSES - 1;

/// The longest rows that [`ce_rows`](crate::arch::fused::ce_rows) groups where
/// [`Backend::groups_long_rows`](crate::kernel::Backend::groups_long_rows) (the AVX-512
/// kernel on a Zen 5 or later): rows of a few KiB spend a large part of their time in
/// the waits between their passes (horizontal max, then sum, log and division), about
/// 55 ns per row on rows in L2 on the Zen 5 host, which four rows side by side overlap.
/// Measured there (2026-12-07, `Kernel::Avx512`, logits in [-4, 4], builds run
/// alternately, three rounds, median ns per logit from DRAM, grouped against not):
///
/// | classes | 1 thread | 2 threads |
/// |---|---|---|
/// | 300 | 0.294 / 0.341 | 0.162 / 0.176 |
/// | 500 | 0.252 / 0.341 | 0.131 / 0.173 |
/// | 1000 | 0.212 / 0.266 | 0.109 / 0.134 |
/// | 1536 | 0.196 / 0.221 | 0.128 / 0.117 |
/// | 2000 | 0.192 / 0.202 | 0.112 / 0.108 |
///
/// At 1000 classes (one thread) also with label smoothing 0.219 / 0.254, soft-capped
/// 0.318 / 0.353, `forward` 0.183 / 0.231, bf16 0.345 / 0.374 and
/// `forward_backward_into` 0.325 / 0.351; at 2000 `forward_backward_into` lost (0.319 /
/// 0.304). Rows in L2 at 1000 classes: 0.166-0.167 against 0.190-0.191. Hence rows up to
/// 1535 classes; from 1536 the two-thread and `_into` runs lost as often as they gained.
/// Groups of two gained less (0.211-0.219 at 1000, one thread). With `Kernel::Avx2`
/// forced on the same host, groups of four took 0.341-0.346 against 0.364-0.367 at 1000
/// classes and 0.373-0.375 against 0.427-0.438 at 500, and the same at 300 and 2000; it
/// is not enabled there, nor on other CPUs, for want of measurements on the CPUs that
/// run it (the Zen 4 figures at [`GROUP_MAX_CLASSES`] went the other way). Grouping
/// changes no value.
///
/// `softmax` and `log_softmax` in place group the same rows under the same test
/// (`softmax_rows`), measured later the same day (`Kernel::Avx512`, builds run
/// alternately, five rounds, median ns per logit from DRAM, grouped against not):
///
/// | classes | softmax, 1 thread | log_softmax, 1 thread | softmax, 2 threads |
/// |---|---|---|---|
/// | 300 | 0.223 / 0.248 | 0.219 / 0.277 | 0.132 / 0.130 |
/// | 500 | 0.212 / 0.281 | 0.224 / 0.263 | 0.130 / 0.144 |
/// | 1000 | 0.177 / 0.229 | 0.186 / 0.225 | 0.126 / 0.130 |
/// | 1535 | 0.176 / 0.212 | 0.181 / 0.203 | 0.128 / 0.135 |
///
/// Into a separate output they are not grouped: `softmax_into` at 500 classes took
/// 0.324-0.331 grouped against 0.263-0.287 on one thread and 0.212-0.222 against
/// 0.184-0.192 on two (three rounds), and elsewhere gained nothing clear.
pub(crate) const GROUP_LONG_MAX_CLASSES: usize = 1535;

/// Pass 2 prefetches the next row only for rows at least this long (1 KiB): shorter rows
/// are covered by the hardware stream prefetcher.
pub(crate) const PREFETCH_MIN_CLASSES: usize = 256;

/// Classes per block of the online pass (`pass::online`), which takes a block's max and
/// then its exps while it is in L1, and of its pass 3's segments. The argmax's rescans
/// there are of these blocks too.
pub(crate) const MAX_BLOCK: usize = 512;

/// Classes per block of pass 1's max sweep on three-pass rows (`pass::max::max_argmax`):
/// each block's lane-wise maxima are tested against the best so far, and the argmax
/// rescans the one block that first reached the row's max. Long enough that the
/// per-block test is cheap, short enough that the rescan is. 256 rather than 512 (Zen 4,
/// 1 thread, in-place f32 on logits, three rounds of alternating builds, ns per logit):
/// `Kernel::Avx2` 0.62-0.63 vs 0.65-0.66 at 300 classes, 0.49-0.50 vs 0.52-0.54 at 1000,
/// 0.47-0.50 vs 0.50-0.52 at 8000 (3-8% from 300 to 8000); `Kernel::Avx512` 0.48 vs 0.52
/// at 300, the same from 500 to 8000 (it sweeps a block of 256 without a branch, see
/// [`ARGMAX_SWEEP`]). 128 was no better than 512.
pub(crate) const ARGMAX_BLOCK: usize = 256;

/// Blocks of at most this many vectors find the argmax without a data-dependent branch:
/// an exit at the max's position is mispredicted about once per row, which costs more
/// than comparing a few vectors to the end. 16 rather than 8 (Zen 4, 1 thread, fresh
/// logits, two rounds of alternating builds): `Kernel::Avx2` 0.79-0.81 vs 0.90-0.91 ns
/// per logit at 100 classes and 0.73-0.74 vs 0.80-0.84 at 128; `Kernel::Avx512`
/// 0.58-0.61 vs 0.71 at 150, 0.52-0.55 vs 0.61-0.63 at 200 and 0.47-0.50 vs 0.54-0.58 at
/// 250; no change from 300 to 2000 classes. 32 (every block, on AVX-512) was 3-7% slower
/// at 500 classes.
pub(crate) const ARGMAX_SWEEP: usize = 16;

/// The shortest rows that `ce_row_groups` links (see [`TRAIL_MAX_CLASSES`]): 32 KiB, an
/// L1. Shorter rows run their pass 3 from L1, where it costs little, and linked they
/// lost: from DRAM 1.22 times the time without at 1000 classes and 1.03-1.04 at 4096, in
/// cache 1.03 at 1000 and 2000. From 8192 classes they gained: 0.93-0.96 at 8192 in cache
/// and from DRAM, 0.88-0.92 at 10000 in cache and 0.83-1.02 from DRAM.
pub(crate) const TRAIL_MIN_CLASSES: usize = 8192;

/// The longest rows whose pass 3 `ce_row_groups` runs inside the next row's pass 2
/// ([`exp_pass_mode`](crate::arch::pass::exp::exp_pass_mode), or [`online_pass`](crate::arch::pass::online::online_pass) with a trailing row). Alone, pass 3 took about
/// a quarter of a long row's time (at 32000 classes in L2, by `perf`) for one multiply
/// per vector: it streams the row from L2 and back. Beside the exps, which keep the
/// multiply-add pipes busy, most of that time is hidden. It keeps
/// three rows in L2 (the trailing row, this one, and the next one being prefetched), so
/// only rows up to 128 KiB. Measured with two builds linked and called alternately
/// (1 thread, median of the per-call ratios): rows in cache took 0.87-0.96 of the time
/// without at 16384-32768 classes; from DRAM, in the driver's chunks of eight rows, 0.92
/// at 32000 (0.89 on 2 threads), 0.96 at 16384 and 0.97 at 20000. At 40000 classes it
/// gained nothing in L2, and at 65536 and 128256 it was up to 6% slower from DRAM.
pub(crate) const TRAIL_MAX_CLASSES: usize = 32_768;

/// The shortest rows whose gradient `forward_backward_into` stages ([`stages_into`]):
/// 8 KiB. At 1000 classes staging lost on one thread (into/in-place 1.06-1.18x without,
/// 1.20-1.37x with) and gained little on two (1.38-1.40x, 1.29-1.33x).
pub(crate) const STAGE_MIN_CLASSES: usize = 2048;

/// Whether `forward_backward_into` forms each row's exps in a per-thread staging row
/// (pass 2 in L1 or L2) and writes the gradient out with non-temporal stores: rows of
/// [`STAGE_MIN_CLASSES`] up to the linked ones ([`TRAIL_MIN_CLASSES`]) whatever the
/// options; with `linked` (the AVX-512 kernel on a Zen 5 or later,
/// `Backend::stages_linked_rows`) also the linked rows, up to [`TRAIL_MAX_CLASSES`],
/// unless `capped`. Those then run unlinked (online from [`ONLINE_MIN_CLASSES`], their
/// exps stored in the staging row). Staging changes no value: the determinism tests hold
/// the output to the in-place bits either way.
///
/// Without label smoothing pass 3 streams `alpha e` (per segment on online rows)
/// straight from the staging row to the output; with it, pass 3 runs in the staging
/// row, which is then copied out. A plain store to a destination line that is not in
/// cache reads the line first, so a separate output moved 12 bytes per logit against the
/// in-place call's 8, and pass 2's stores waited for those reads; a non-temporal store
/// writes whole lines without reading them.
///
/// Linked rows not staged prefetch their destination (`Ahead`) and form their pass 3
/// inside the next row's exps, which hides it where the exps are the bottleneck. Staging
/// them measured (one thread, logits in [-4, 4], BENCHMARKS.md):
/// - on the Zen 5 host (2026-12-07), `Kernel::Avx512`: 13-18% less time at 8192, 16384
///   and 32000 classes, plain, with z-loss or with smoothing; 20-25% more soft-capped
///   (tanh and exp per logit: compute-bound again);
/// - on the same host, `Kernel::Avx2`: 13-30% more time, plain;
/// - on the Zen 4 host (256-bit units), `Kernel::Avx512`, in the earlier three-pass form:
///   1.8-1.9x the in-place time at 32000 classes against 1.5x linked, on par at 8192.
///
/// Hence the gate: where the exps are cheap enough for the call to wait on memory. Above
/// [`TRAIL_MAX_CLASSES`] rows are not staged: the same online form was slower on the Zen
/// 4 host at 65536 and 128256 classes (1.26-1.37x the in-place time against 1.12-1.22x
/// at 65536) and gained 0-7% at 65536 and nothing at 128256 on the Zen 5 host (a row and
/// its staging row fill half of L2 there). Linked rows streaming the staged exps out
/// inside the next row's exp loop lost on the Zen 4 host (BENCHMARKS.md, 2026-12-06),
/// and on the Zen 5 host too, in the form of the linked 16-bit rows (the previous row's
/// gradient streamed out block by block just before each block's exps): 0.35-0.38 ns per
/// logit against 0.25-0.26 staged at 4096x32000 on one thread (BENCHMARKS.md, eighteenth
/// session).
pub(crate) const fn stages_into(classes: usize, capped: bool, linked: bool) -> bool {
    STAGE_MIN_CLASSES <= classes
        && (classes < TRAIL_MIN_CLASSES || (linked && !capped && classes <= TRAIL_MAX_CLASSES))
}

/// Whether [`ce_rows`](crate::arch::fused::ce_rows) links consecutive rows of `classes` (without smoothing, capped
/// or not): each row's pass 3 inside the next row's pass 2. The driver gives
/// such rows longer chunks, since a chunk's last row has no next row.
pub(crate) const fn trails(classes: usize) -> bool {
    TRAIL_MIN_CLASSES <= classes && classes <= TRAIL_MAX_CLASSES
}

/// Rows at least this long take [`online_pass`](crate::arch::pass::online::online_pass) instead of separate max and exp passes
/// (when neither smoothing nor capping is on): 64 KiB, twice L1, where a separate max
/// pass would read the row from L2 (or DRAM) once more. Below it the per-block overhead
/// costs more than it saves (measured 2-10% slower at 4096 and 8192 classes, 4-5%
/// faster at 16384, 5-10% at 32000 and more).
pub(crate) const ONLINE_MIN_CLASSES: usize = 16_384;

/// Rows of at most this many classes take the fused three-pass path: the row (up to 512 KiB
/// of f32) stays in the 1-2 MiB L2 between passes, so DRAM sees one read and one write.
pub(crate) const FUSED_MAX_CLASSES: usize = 1 << 17;

// Rows of 16-bit logits (`ops/half.rs`, `arch::fused::ce_rows_half`)

/// Rows without label smoothing (soft-capped or not) of bf16 or f16 logits of at least
/// this many classes, up to [`FUSED_MAX_CLASSES`], are read in 16-bit by the passes
/// ([`reads_half`]): pass 1 and pass 2 widen each vector in registers as they load it,
/// pass 2 stores the exps in an f32 scratch row (L1 or L2), and pass 3 narrows the
/// gradient from there over the logits; rows run in groups of [`GROUP_ROWS`] where the
/// f32 kernel groups rows of their length. Shorter rows, and rows with label smoothing,
/// are widened into f32 tiles for the f32 kernels, which costs a store and a
/// load of each logit in f32 and a pass of its own to narrow the gradient back.
///
/// Measured on the Zen 5 host (2026-12-07, bf16 `forward_backward`, logits in [-4, 4],
/// the builds run alternately, three rounds, ns per logit from DRAM, one thread, tiles
/// against 16-bit rows; BENCHMARKS.md, twentieth session), with `Kernel::Avx512`:
/// 0.828-0.904 / 0.846-0.867 at 65 classes, 0.623-0.664 / 0.600-0.638 at 100,
/// 0.499-0.534 / 0.427-0.446 at 128, 0.438-0.463 / 0.374-0.388 at 255, 0.331-0.346 /
/// 0.232-0.247 at 1000 and 0.294-0.296 / 0.190-0.197 at 4000; with `Kernel::Avx2`
/// 0.959-0.977 / 1.013-1.053 at 65, 0.797-0.844 / 0.789-0.848 at 100, 0.741-0.757 /
/// 0.677-0.682 at 128 and 0.712-0.736 / 0.583-0.591 at 200. Rows of at most
/// [`SMALL_MAX_CLASSES`] stay in tiles in any case: there the f32 loss takes the
/// row-group path, whose bits the 16-bit passes would not reproduce.
pub(crate) const HALF_ROWS_MIN_CLASSES: usize = 128;

/// Whether rows of `classes` 16-bit logits without smoothing are read in 16-bit
/// ([`HALF_ROWS_MIN_CLASSES`]).
pub(crate) const fn reads_half(classes: usize) -> bool {
    const { assert!(HALF_ROWS_MIN_CLASSES > SMALL_MAX_CLASSES) };
    HALF_ROWS_MIN_CLASSES <= classes && classes <= FUSED_MAX_CLASSES
}

/// Whether rows of `classes` 16-bit logits read in 16-bit are linked: each row's pass 3
/// inside the next row's one-sweep passes 1 and 2, block by block (the online rows of
/// the f32 linked range, [`trails`]). Rows of the linked range below
/// [`ONLINE_MIN_CLASSES`] run their passes apart: pass 3 formed during the next row's
/// pass 1 took the same time (Zen 5, bf16, one thread, 0.206-0.222 against 0.201-0.202
/// ns per logit at 4096x10000; two threads 0.111-0.119 against 0.116-0.124, three
/// rounds).
pub(crate) const fn links_half(classes: usize) -> bool {
    ONLINE_MIN_CLASSES <= classes && trails(classes)
}

// The blocked path (`ops/blocked.rs`)

/// Block width of the blocked path for long rows: 64 KiB, so a block's second read
/// (the exp pass) hits L2 and the first block of the next task can be in flight.
pub(crate) const BLOCK_CLASSES: usize = 1 << 14;

// Threads (`parallel.rs`)

/// Below this many logits (1 MiB of f32) a call stays on the calling thread: handing the
/// work to the pool costs more than a second thread saves. Between calls rayon's workers
/// go to sleep, and on these VMs waking a sleeping thread took 9-24 microseconds (median
/// of a pthread handoff; Zen 5 host, 2 cores); a parallel call wakes a worker, and (as
/// calls were made when this was measured, before the caller worked its own share in
/// `parallel::par_map`) the caller, blocked on the result, was woken in turn. Measured
/// there, 1 thread against 2, `Kernel::Avx512`, medians of 31 calls each after a
/// restoring copy and a 1 ms pause, microseconds per call over two rounds and 10, 100 and
/// 1000 classes: at 2^16 logits 12-31 on one thread against 33-56 on two, at 2^17 25-61
/// against 40-90, at 2^18 49-122 against 53-104 (two threads ahead at 100 classes, behind
/// at 1000), at 2^19 99-243 against 84-178. With the former 2^15, calls of 2^16 to 2^17
/// logits took 1.1-3.4 times as long on two threads as on one. Measured again with the
/// caller working its share (the same way, with the threshold lowered in a throwaway
/// build): 2^16 13-32 against 28-48, 2^17 26-64 against 42-104, 2^18 53-129 against
/// 73-152, 2^19 104-112 against 92-128. Waking the idle core still costs more than the
/// second thread saves below 2^18.
pub(crate) const PAR_MIN_LOGITS: usize = 1 << 18;

/// Target chunk size in logits (256 KiB of f32): large enough to amortise a rayon task,
/// small enough to balance two to eight threads on mid-sized batches.
pub(crate) const CHUNK_LOGITS: usize = 1 << 16;

/// Up to this many rows per chunk for rows that the kernel links in pairs (see
/// [`rows_per_linked_chunk`](crate::parallel::rows_per_linked_chunk)).
pub(crate) const LINKED_CHUNK_ROWS: usize = 8;

/// [`rows_per_linked_chunk`](crate::parallel::rows_per_linked_chunk) keeps at least this many chunks, when there are enough rows,
/// so that up to eight threads still share the work.
pub(crate) const LINKED_MIN_CHUNKS: usize = 16;
