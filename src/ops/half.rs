//! Cross-entropy on bf16 or f16 logits, with the gradient written back in the same type
//! (the crate docs, `Half precision`, say what a user sees).
//!
//! # Memory passes
//!
//! Rows without label smoothing (soft-capped or not), of `HALF_ROWS_MIN_CLASSES` (128)
//! classes up to the fused limit (`paths::reads_half`), are read in 16-bit
//! (`arch::fused::ce_rows_half`): per row, passes 1 and 2 widen each vector of logits in
//! registers as they load it and store the exps (capped: times the chain factor) into an
//! f32 scratch row (L1 or L2); pass 3 reads that row block by block, scales each vector
//! and narrows it in registers over the 16-bit logits, the target entry formed in f32.
//! Plain rows of 16 384 classes and more run passes 1 and 2 as one sweep over blocks of
//! 512 logits (online); shorter rows and capped ones run them as two, in groups of four
//! rows where the f32 path groups them (up to 255 classes, or 1535 on a Zen 5's AVX-512
//! kernel). No f32 copy of the logits is made: against the tiles below, the f32 tile is
//! neither written nor read back, and the scaled gradient is never stored in f32. Online
//! rows of up to 32 768 classes are linked as on the f32 path: a row's pass 3 runs block
//! by block inside the next row's passes 1 and 2, from a second scratch row of exps
//! (`paths::links_half`).
//!
//! Every other row goes through f32 tiles: the batch is cut into tiles of whole rows of
//! about 64 K logits (the same shape-only boundaries as the f32 path's parallel chunks).
//! Per tile:
//!
//! 1. widen the tile's 16-bit logits into an f32 scratch buffer (256 KiB, stays in L2),
//! 2. run the f32 kernels on the scratch, in place (max pass, exp pass, scale pass),
//! 3. narrow the f32 gradient back over the 16-bit logits, rounding to nearest even.
//!
//! So DRAM sees one 2-byte read and one 2-byte write per logit, half of the f32 traffic,
//! and every value is computed in f32: in particular the target entry `(p_t - 1) / N` is
//! formed in f32 from the row statistics (stored last, see the kernels) and rounded to 16
//! bits once, instead of losing its bits to the cancellation `p_t - 1` would suffer in
//! bf16. Rows longer than a tile take one row per tile (the blocked path for rows over
//! 131 072 classes).
//!
//! Both paths compute the same f32 values as the f32 path on the widened logits. The
//! scratch buffer (a tile, or a row of exps) is per thread and reused, so after the first
//! call on a thread no memory is allocated.

use crate::arch::convert::{HalfFormat, bits, bits_mut};
use crate::arch::fused::{half_scratch, links_half_job, reads_half_rows};
use crate::arch::{Io, Io16, RowsJob};
use crate::kernel::with_backend;
use crate::ops::backward::backward_rows;
use crate::ops::forward::{row_outs, row_plans};
use crate::ops::scratch::with_scratch;
use crate::outputs::{RowOutputs, Sinks};
use crate::parallel::{SplitLogits, for_chunks_of_rows, rows_per_chunk, rows_per_linked_chunk};
use crate::plan::{Checked, RowSums};
use crate::{CrossEntropy, Error, Loss, Target};

mod sealed {
    /// Keeps [`HalfFloat`](super::HalfFloat) implemented only by this crate.
    pub trait Sealed: crate::arch::convert::Bits16 {
        const FORMAT: crate::arch::convert::HalfFormat;
    }
    impl Sealed for half::bf16 {
        const FORMAT: crate::arch::convert::HalfFormat = crate::arch::convert::HalfFormat::Bf16;
    }
    impl Sealed for half::f16 {
        const FORMAT: crate::arch::convert::HalfFormat = crate::arch::convert::HalfFormat::F16;
    }
}

/// A 16-bit logit type: [`half::bf16`] or [`half::f16`] (sealed).
pub trait HalfFloat: sealed::Sealed + Copy + Send + Sync + 'static {}
impl HalfFloat for half::bf16 {}
impl HalfFloat for half::f16 {}

/// The 16-bit buffers of one call: read only, or gradient in place.
enum HalfIo<'a, H> {
    Read(&'a [H]),
    InPlace(&'a mut [H]),
}

impl<H: Send + Sync> SplitLogits for HalfIo<'_, H> {
    fn len(&self) -> usize {
        match self {
            HalfIo::Read(s) => s.len(),
            HalfIo::InPlace(s) => s.len(),
        }
    }

    fn split_at(self, n: usize) -> (Self, Self) {
        match self {
            HalfIo::Read(s) => {
                let (a, b) = s.split_at(n);
                (HalfIo::Read(a), HalfIo::Read(b))
            }
            HalfIo::InPlace(s) => {
                let (a, b) = s.split_at_mut(n);
                (HalfIo::InPlace(a), HalfIo::InPlace(b))
            }
        }
    }
}

impl CrossEntropy {
    /// [`forward`](Self::forward) on bf16 or f16 logits (computed in f32).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    ///
    /// ```
    /// use half::bf16;
    /// let ce = xent::CrossEntropy::new(2);
    /// let z = [bf16::from_f32(0.0), bf16::from_f32(0.0)];
    /// let loss = ce.forward_half(&z, &[1u8])?;
    /// assert!((loss.value - std::f32::consts::LN_2).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_half<H: HalfFloat, T: Target>(
        &self,
        logits: &[H],
        targets: &[T],
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        Ok(self.run_half(&ck, HalfIo::Read(logits), targets, Sinks::default()))
    }

    /// [`forward_backward`](Self::forward_backward) on bf16 or f16 logits: the loss, and
    /// the gradient written over the logits in the same type (computed in f32, rounded to
    /// nearest even once).
    ///
    /// # Errors
    /// As [`forward`](Self::forward); on error the logits are unchanged.
    ///
    /// ```
    /// use half::f16;
    /// let ce = xent::CrossEntropy::new(2).reduction(xent::Reduction::Sum);
    /// let mut z = [f16::from_f32(0.0), f16::from_f32(0.0)];
    /// ce.forward_backward_half(&mut z, &[1u8])?;
    /// assert_eq!([z[0].to_f32(), z[1].to_f32()], [0.5, -0.5]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward_half<H: HalfFloat, T: Target>(
        &self,
        logits: &mut [H],
        targets: &[T],
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        Ok(self.run_half(&ck, HalfIo::InPlace(logits), targets, Sinks::default()))
    }

    /// [`forward_half`](Self::forward_half) with the per-row outputs of
    /// [`forward_with`](Self::forward_with) (row losses and log-sum-exp, in f32).
    ///
    /// # Errors
    /// As [`forward_with`](Self::forward_with); on error nothing is written.
    ///
    /// ```
    /// use half::bf16;
    /// use xent::{CrossEntropy, Reduction, RowOutputs};
    /// let ce = CrossEntropy::new(2).reduction(Reduction::None);
    /// let z = [0.0, 0.0, 1.0, 1.0].map(bf16::from_f32);
    /// let (mut losses, mut lse) = ([0.0f32; 2], [0.0f32; 2]);
    /// ce.forward_half_with(&z, &[0u8, 1], RowOutputs::new().losses(&mut losses).lse(&mut lse))?;
    /// assert!((losses[1] - std::f32::consts::LN_2).abs() < 1e-6);
    /// assert!((lse[1] - (1.0 + std::f32::consts::LN_2)).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_half_with<H: HalfFloat, T: Target>(
        &self,
        logits: &[H],
        targets: &[T],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        let sinks = outputs.checked(targets.len())?;
        Ok(self.run_half(&ck, HalfIo::Read(logits), targets, sinks))
    }

    /// [`backward`](Self::backward) on bf16 or f16 logits: the gradient of
    /// `sum_i upstream[i] * loss_i` from the rows' saved log-sum-exp (f32, as
    /// [`forward_half_with`](Self::forward_half_with) writes it), computed in f32 and
    /// written over the logits in the same type, rounded to nearest even once. The same
    /// bits as [`backward`](Self::backward) on the widened logits, rounded.
    ///
    /// # Errors
    /// As [`backward`](Self::backward); on error the logits are unchanged.
    ///
    /// ```
    /// use half::bf16;
    /// use xent::{CrossEntropy, Reduction, RowOutputs};
    /// let ce = CrossEntropy::new(2).reduction(Reduction::None);
    /// let mut z = [0.0, 0.0].map(bf16::from_f32);
    /// let mut lse = [0.0f32];
    /// ce.forward_half_with(&z, &[1u8], RowOutputs::new().lse(&mut lse))?;
    /// ce.backward_half(&mut z, &[1u8], &lse, &[2.0])?;
    /// assert_eq!(z.map(|v| v.to_f32()), [1.0, -1.0]); // 2 * (softmax - onehot)
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn backward_half<H: HalfFloat, T: Target>(
        &self,
        logits: &mut [H],
        targets: &[T],
        lse: &[f32],
        upstream: &[f32],
    ) -> Result<(), Error> {
        let (ck, up) = self.check_backward(logits.len(), targets, lse, upstream)?;
        for_chunks_of_rows(
            ck.run,
            HalfIo::InPlace(logits),
            up,
            self.get_classes(),
            rows_per_chunk(self.get_classes()),
            |row0, tile, up| {
                with_tile(&ck, tile, |f32_tile| {
                    backward_rows(&ck, f32_tile, &targets[row0..], up)
                })
            },
            |()| {},
        );
        Ok(())
    }

    /// [`forward_backward_half`](Self::forward_backward_half) with the per-row outputs of
    /// [`forward_with`](Self::forward_with) (row losses and log-sum-exp, in f32).
    ///
    /// # Errors
    /// As [`forward_with`](Self::forward_with); on error nothing is written.
    ///
    /// ```
    /// use half::bf16;
    /// let ce = xent::CrossEntropy::new(2);
    /// let mut z = [bf16::from_f32(1.0), bf16::from_f32(1.0)];
    /// let mut lse = [0.0f32];
    /// ce.forward_backward_half_with(&mut z, &[0u8], xent::RowOutputs::new().lse(&mut lse))?;
    /// assert!((lse[0] - (1.0 + std::f32::consts::LN_2)).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn forward_backward_half_with<H: HalfFloat, T: Target>(
        &self,
        logits: &mut [H],
        targets: &[T],
        outputs: RowOutputs<'_>,
    ) -> Result<Loss, Error> {
        let ck = self.check(logits.len(), targets, None)?;
        let sinks = outputs.checked(targets.len())?;
        Ok(self.run_half(&ck, HalfIo::InPlace(logits), targets, sinks))
    }

    /// Plain rows in 16-bit (`ce_rows_half`), chunk by chunk; other rows in tiles of
    /// whole rows: widen, f32 kernels, narrow. Chunk or tile sums added in order.
    fn run_half<H: HalfFloat, T: Target>(
        &self,
        ck: &Checked<'_>,
        io: HalfIo<'_, H>,
        targets: &[T],
        sinks: Sinks<'_>,
    ) -> Loss {
        let c = self.get_classes();
        let mut sums = RowSums::default();
        let job = RowsJob {
            classes: c,
            smooth: ck.smooth(),
            beta: ck.beta(),
            cap: ck.cap,
            prefetch: None,
            group_long: ck.backend.groups_long_rows(),
        };
        if reads_half_rows(&job) {
            let format: HalfFormat = <H as sealed::Sealed>::FORMAT;
            // Linked rows (`ce_rows_half`) in longer chunks, as on the f32 path.
            let per = if links_half_job(&job) {
                rows_per_linked_chunk(c, io.len() / c)
            } else {
                rows_per_chunk(c)
            };
            for_chunks_of_rows(
                ck.run,
                io,
                sinks,
                c,
                per,
                |row0, rows, mut sinks| {
                    let mut chunk = RowSums::default();
                    let rows = match rows {
                        HalfIo::Read(s) => Io16::Read(bits(s)),
                        HalfIo::InPlace(s) => Io16::InPlace(bits_mut(s)),
                    };
                    // The callbacks borrow `chunk` until they are dropped, at the block's end.
                    {
                        let targets = &targets[row0..];
                        let plan = &mut row_plans(ck, targets);
                        let out = &mut row_outs(ck, targets, &mut sinks, &mut chunk);
                        with_scratch(
                            half_scratch(&job),
                            |exps| with_backend!(ck.backend, k => k.ce_rows_half(format, rows, exps, &job, plan, out)),
                        );
                    }
                    chunk
                },
                |s| sums.add(s),
            );
            return self.reduce(ck, sums);
        }
        for_chunks_of_rows(
            ck.run,
            io,
            sinks,
            c,
            rows_per_chunk(c),
            |row0, tile, sinks| {
                let targets = &targets[row0..row0 + tile.len() / c];
                // While a row of the tile is computed, the kernel prefetches the 16-bit
                // logits of the rows after it (running into the next tile), so DRAM
                // reads overlap the exps.
                let hint = Some((tile.addr(), 2 * c));
                with_tile(ck, tile, |f32_tile| {
                    ck.run_rows(f32_tile, targets, sinks, hint)
                })
            },
            |s| sums.add(s),
        );
        self.reduce(ck, sums)
    }
}

impl<H> HalfIo<'_, H> {
    /// The address of the first logit (for prefetch hints only).
    fn addr(&self) -> usize {
        match self {
            HalfIo::Read(s) => s.as_ptr().addr(),
            HalfIo::InPlace(s) => s.as_ptr().addr(),
        }
    }
}

/// Runs `f` on one tile widened into the thread's f32 scratch (read only, or in place),
/// then narrows the scratch back over the 16-bit logits when they are written.
fn with_tile<H: HalfFloat, R>(
    ck: &Checked<'_>,
    io: HalfIo<'_, H>,
    f: impl FnOnce(Io<'_>) -> R,
) -> R {
    let fmt: HalfFormat = <H as sealed::Sealed>::FORMAT;
    // Every element is overwritten by the widening.
    with_scratch(io.len(), |buf| match io {
        HalfIo::Read(src) => {
            with_backend!(ck.backend, k => k.widen(fmt, bits(src), buf));
            f(Io::Read(buf))
        }
        HalfIo::InPlace(dst) => {
            with_backend!(ck.backend, k => k.widen(fmt, bits(dst), buf));
            let r = f(Io::InPlace(buf));
            with_backend!(ck.backend, k => k.narrow(fmt, buf, 1.0, bits_mut(dst)));
            r
        }
    })
}
