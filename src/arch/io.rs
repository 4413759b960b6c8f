//! What the kernels work on and report: the buffers of a call ([`Io`]), the gradient's
//! per-class constant ([`Beta`]), what the exp pass accumulates besides the sum
//! ([`Smooth`]), and the mergeable statistics of a run of classes ([`BlockStats`]).

/// The buffers one call works on: read only, gradient in place, or gradient into a
/// separate output of the same shape.
pub(crate) enum Io<'a> {
    Read(&'a [f32]),
    InPlace(&'a mut [f32]),
    Into(&'a [f32], &'a mut [f32]),
}

impl Io<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Io::Read(s) => s.len(),
            Io::InPlace(s) => s.len(),
            Io::Into(s, _) => s.len(),
        }
    }

    /// The source and (if any) destination pointers. `dst` is null for `Read` and equals
    /// `src` for `InPlace`; the kernels read every element before they write it.
    pub(super) fn raw(&mut self) -> (*const f32, *mut f32) {
        match self {
            Io::Read(s) => (s.as_ptr(), core::ptr::null_mut()),
            Io::InPlace(s) => (s.as_ptr(), s.as_mut_ptr()),
            Io::Into(s, d) => {
                debug_assert_eq!(s.len(), d.len());
                (s.as_ptr(), d.as_mut_ptr())
            }
        }
    }

    /// Splits off the first `n` elements.
    pub(crate) fn split_at(self, n: usize) -> (Self, Self) {
        match self {
            Io::Read(s) => {
                let (a, b) = s.split_at(n);
                (Io::Read(a), Io::Read(b))
            }
            Io::InPlace(s) => {
                let (a, b) = s.split_at_mut(n);
                (Io::InPlace(a), Io::InPlace(b))
            }
            Io::Into(s, d) => {
                let (sa, sb) = s.split_at(n);
                let (da, db) = d.split_at_mut(n);
                (Io::Into(sa, da), Io::Into(sb, db))
            }
        }
    }

    /// The destination (empty for `Read`).
    pub(crate) fn dst_mut(&mut self) -> &mut [f32] {
        match self {
            Io::Read(_) => &mut [],
            Io::InPlace(s) => s,
            Io::Into(_, d) => d,
        }
    }

    /// A shorter-lived copy of the same borrows.
    pub(crate) fn reborrow(&mut self) -> Io<'_> {
        match self {
            Io::Read(s) => Io::Read(s),
            Io::InPlace(s) => Io::InPlace(s),
            Io::Into(s, d) => Io::Into(s, d),
        }
    }

    pub(crate) fn src(&self) -> &[f32] {
        match self {
            Io::Read(s) => s,
            Io::InPlace(s) => s,
            Io::Into(s, _) => s,
        }
    }
}

/// The 16-bit logits (bf16 or f16 bits) of one call: read only, or gradient in place.
pub(crate) enum Io16<'a> {
    Read(&'a [u16]),
    InPlace(&'a mut [u16]),
}

impl Io16<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Io16::Read(s) => s.len(),
            Io16::InPlace(s) => s.len(),
        }
    }

    /// The source and (if any) destination pointers, as [`Io::raw`].
    pub(super) fn raw(&mut self) -> (*const u16, *mut u16) {
        match self {
            Io16::Read(s) => (s.as_ptr(), core::ptr::null_mut()),
            Io16::InPlace(s) => (s.as_ptr(), s.as_mut_ptr()),
        }
    }
}

/// Mergeable statistics of a run of classes (a block of a row, a whole row, or a
/// vocabulary shard): `sum = sum_j exp(z_j - max)`, `wsum = sum_j w_j (z_j - max)` (only
/// when asked for), and the first index of the maximum relative to the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BlockStats {
    /// Max of the (soft-capped) values.
    pub max: f32,
    /// Max of the raw values (equal to `max` without capping): decides the argmax.
    pub top: f32,
    pub argmax: usize,
    pub sum: f32,
    pub wsum: f64,
}

/// How the per-class constant of the gradient is formed: `g_j = alpha e_j - beta_j`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Beta<'a> {
    /// `beta_j = 0`.
    Zero,
    /// `beta_j = b` for every class (label smoothing without class weights).
    Uniform(f32),
    /// `beta_j = b * w_j` (label smoothing with class weights; the slice is the run's
    /// weights, same length as the run).
    Weighted(f32, &'a [f32]),
}

/// What the exp pass also accumulates besides the sum of exps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Smooth<'a> {
    /// Nothing.
    Off,
    /// `sum_j (z_j - max)`.
    Uniform,
    /// `sum_j w_j (z_j - max)`.
    Weighted(&'a [f32]),
}
