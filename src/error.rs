//! The crate's single error type.

use crate::Kernel;
use core::fmt;

/// Why a call was rejected. Every check runs before the first store, so after an `Err`
/// the caller's buffers hold exactly what they held before the call.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// `classes` was zero.
    ZeroClasses,
    /// The logits length is not a multiple of the number of classes.
    LogitsShape {
        /// Length of the logits slice.
        len: usize,
        /// Classes per row.
        classes: usize,
    },
    /// The number of targets differs from the number of rows.
    TargetsLength {
        /// Length of the targets slice.
        targets: usize,
        /// Rows in the logits (`len / classes`).
        rows: usize,
    },
    /// A target is negative or not below `classes` (and is not the ignore index).
    TargetOutOfRange {
        /// Row of the offending target.
        row: usize,
        /// The target value, widened losslessly.
        target: i128,
        /// Classes per row.
        classes: usize,
    },
    /// An output buffer (gradient, probabilities, per-row values) has the wrong length.
    OutputLength {
        /// Length given.
        len: usize,
        /// Length required.
        expected: usize,
    },
    /// The class weights do not have one entry per class.
    WeightsLength {
        /// Length of the weights.
        len: usize,
        /// Classes per row.
        classes: usize,
    },
    /// A class weight is NaN or infinite.
    NonFiniteWeight {
        /// The class whose weight is not finite.
        class: usize,
        /// The weight.
        weight: f32,
    },
    /// Label smoothing outside `[0, 1]`, or NaN.
    LabelSmoothing(f32),
    /// A z-loss coefficient that is negative, NaN or infinite.
    ZLoss(f32),
    /// A soft-capping value outside `[2^-126, 2^126]`
    /// ([`SOFTCAP_MIN`](crate::exp::SOFTCAP_MIN), [`SOFTCAP_MAX`](crate::exp::SOFTCAP_MAX)):
    /// not finite and positive, subnormal, or so large that its reciprocal is subnormal.
    Softcap(f32),
    /// An input buffer with one value per row (log-sum-exp, upstream gradients, shard
    /// statistics) has the wrong length.
    InputLength {
        /// Which input.
        what: &'static str,
        /// Length given.
        len: usize,
        /// Length required (the number of rows).
        expected: usize,
    },
    /// A vocabulary shard `[offset, offset + width)` does not lie inside `0..classes`.
    ShardRange {
        /// First class of the shard.
        offset: usize,
        /// Classes in the shard.
        width: usize,
        /// Classes per row.
        classes: usize,
    },
    /// [`ShardStats::merge`](crate::ShardStats::merge) of two runs that count more classes
    /// together than their span holds: they overlap (or the same shard was merged twice).
    ShardOverlap {
        /// The classes counted by each run.
        classes: (usize, usize),
        /// The first class of the two runs together.
        first: usize,
        /// One past the last class of the two runs together.
        end: usize,
    },
    /// A row's merged [`ShardStats`](crate::ShardStats) do not cover the classes
    /// `0..classes` exactly: a shard is missing, was merged twice, or overlaps another.
    ShardCoverage {
        /// The row.
        row: usize,
        /// The classes the statistics count.
        covered: usize,
        /// Their first class (`usize::MAX` if none).
        first: usize,
        /// One past their last class.
        end: usize,
        /// Classes per row.
        classes: usize,
    },
    /// The configuration's own thread pool
    /// ([`CrossEntropy::threads`](crate::CrossEntropy::threads)) could not be built: the
    /// operating system would not start its threads.
    ThreadPool {
        /// The threads asked for.
        threads: usize,
        /// Rayon's message.
        reason: String,
    },
    /// A counted row's merged [`ShardStats`](crate::ShardStats) carry no target logit:
    /// the shard that holds the row's target was not merged in.
    ShardMissingTarget {
        /// The row.
        row: usize,
    },
    /// The requested kernel cannot run on this CPU (see [`Kernel::available`]).
    KernelUnavailable(Kernel),
    /// A fused linear head was given a hidden size of zero.
    ZeroDim,
    /// The hidden states of a fused linear head are not a whole number of rows of `dim`
    /// values.
    HiddenShape {
        /// Length of the hidden states.
        len: usize,
        /// Hidden size per row.
        dim: usize,
    },
    /// A weight, bias or gradient buffer of a fused linear head has the wrong length.
    LinearLength {
        /// Which buffer (`"weight"`, `"bias"`, `"d_hidden"`, `"d_weight"`, `"d_bias"`).
        what: &'static str,
        /// Length given.
        len: usize,
        /// Length required (`vocabulary x dim`, `vocabulary`, or that of `hidden`).
        expected: usize,
    },
    /// A fused linear head's gradient filter threshold outside `[0, 1]`, or NaN.
    GradientFilter(f32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroClasses => write!(f, "the number of classes must be at least 1, got 0"),
            Error::LogitsShape { len, classes } => write!(
                f,
                "logits length {len} is not a multiple of the {classes} classes per row"
            ),
            Error::TargetsLength { targets, rows } => {
                write!(f, "got {targets} targets for {rows} rows of logits")
            }
            Error::TargetOutOfRange {
                row,
                target,
                classes,
            } => write!(
                f,
                "target {target} in row {row} is outside 0..{classes} and is not the ignore index"
            ),
            Error::OutputLength { len, expected } => {
                write!(f, "output buffer has length {len}, expected {expected}")
            }
            Error::WeightsLength { len, classes } => {
                write!(f, "got {len} class weights for {classes} classes")
            }
            Error::NonFiniteWeight { class, weight } => {
                write!(
                    f,
                    "weight of class {class} is {weight}, weights must be finite"
                )
            }
            Error::LabelSmoothing(eps) => {
                write!(f, "label smoothing {eps} is outside [0, 1]")
            }
            Error::ZLoss(c) => {
                write!(f, "z-loss coefficient {c} must be finite and non-negative")
            }
            Error::Softcap(c) => write!(
                f,
                "soft-capping value {c} must lie in [2^-126, 2^126] (finite, positive, normal, \
                 with a normal reciprocal)"
            ),
            Error::InputLength {
                what,
                len,
                expected,
            } => write!(
                f,
                "{what} has length {len}, expected {expected} (one per row)"
            ),
            Error::ShardRange {
                offset,
                width,
                classes,
            } => write!(
                f,
                "shard of {width} classes at offset {offset} does not fit in {classes} classes"
            ),
            Error::ShardOverlap {
                classes: (a, b),
                first,
                end,
            } => write!(
                f,
                "merging shard statistics of {a} and {b} classes that span only [{first}, {end}): \
                 the shards overlap, or one was merged twice"
            ),
            Error::ShardCoverage {
                row,
                covered,
                first,
                end,
                classes,
            } => write!(
                f,
                "merged shard statistics of row {row} count {covered} classes in \
                 [{first}, {end}), not exactly 0..{classes}: a shard is missing, repeated \
                 or overlapping"
            ),
            Error::ThreadPool {
                threads,
                ref reason,
            } => {
                write!(f, "could not start a pool of {threads} threads: {reason}")
            }
            Error::ShardMissingTarget { row } => write!(
                f,
                "merged shard statistics of row {row} have no target logit: \
                 the shard holding the target was not merged"
            ),
            Error::KernelUnavailable(k) => write!(
                f,
                "kernel {k:?} cannot run on this CPU; available: {:?}",
                Kernel::available()
            ),
            Error::ZeroDim => write!(f, "the hidden size must be at least 1, got 0"),
            Error::HiddenShape { len, dim } => write!(
                f,
                "hidden states of length {len} are not a whole number of rows of {dim} values"
            ),
            Error::LinearLength {
                what,
                len,
                expected,
            } => write!(f, "{what} has length {len}, expected {expected}"),
            Error::GradientFilter(eps) => {
                write!(
                    f,
                    "the gradient filter's threshold must be in [0, 1], got {eps}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}
