//! Per-row outputs (unreduced losses, log-sum-exp) and the backward pass that reuses a
//! saved log-sum-exp.
//!
//! With `lse_i = ln sum_j exp(y_ij)` saved by a forward call (`y` the logits, soft-capped
//! if that option is on), the probabilities are `p_ij = exp(y_ij - lse_i)` directly: the
//! backward pass is a single read-and-write sweep per row, with no max or sum pass. For
//! per-row upstream gradients `u_i` it writes the gradient of `sum_i u_i loss_i`:
//!
//! ```text
//! g_ij = u_i ((a_i + 2 zc lse_i) p_ij - k w_j - c_i [j = t_i]) * s_ij
//! ```
//!
//! with `c_i = (1 - eps) w_t`, `k = eps / C`, `a_i = c_i + k sum_j w_j`, `zc` the z-loss
//! coefficient and `s_ij = 1 - t_ij^2` the soft-capping chain factor, `y_ij = cap t_ij`
//! (1 without).

use crate::arch::Io;
use crate::arch::fused::beta_at;
use crate::arch::math::capped_target_grad;
use crate::kernel::with_backend;
use crate::parallel::{SplitRows, for_row_chunks_with};
use crate::plan::Checked;
use crate::{CrossEntropy, Error, Target};

/// The per-row inputs of a backward call, cut along with the rows.
pub(crate) struct Upstream<'a> {
    pub(crate) lse: &'a [f32],
    pub(crate) grad: &'a [f32],
}

impl SplitRows for Upstream<'_> {
    fn split_rows(self, rows: usize) -> (Self, Self) {
        let (l0, l1) = self.lse.split_at(rows);
        let (g0, g1) = self.grad.split_at(rows);
        (
            Upstream { lse: l0, grad: g0 },
            Upstream { lse: l1, grad: g1 },
        )
    }
}

impl CrossEntropy {
    /// The gradient of `sum_i upstream[i] * loss_i` with respect to the logits, written
    /// over them, where `loss_i` are the unreduced row losses of
    /// [`forward_with`](Self::forward_with) and `lse` the log-sum-exp it wrote for the same
    /// logits. The reduction is not applied (the upstream gradients carry it: pass
    /// `1 / Loss::weight` in every entry for a mean). Ignored rows get a zero gradient. One
    /// read-and-write pass per row: no max, no sum.
    ///
    /// NaN in `lse` or `upstream` gives NaN in that row's gradient.
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`Error::InputLength`] when `lse` or `upstream`
    /// does not hold one value per row. On error the logits are unchanged.
    ///
    /// ```
    /// use xent::{CrossEntropy, Reduction, RowOutputs};
    /// let ce = CrossEntropy::new(2).reduction(Reduction::None);
    /// let z = [0.0f32, 0.0, 1.0, -1.0];
    /// let mut lse = [0.0f32; 2];
    /// ce.forward_with(&z, &[1u8, 0], RowOutputs::new().lse(&mut lse))?;
    /// // Later: the upstream gradient of each row's loss.
    /// let mut g = z;
    /// ce.backward(&mut g, &[1u8, 0], &lse, &[2.0, 0.0])?;
    /// assert_eq!(&g[..2], &[1.0, -1.0]); // 2 * (softmax - onehot)
    /// assert_eq!(&g[2..], &[0.0, 0.0]);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn backward<T: Target>(
        &self,
        logits: &mut [f32],
        targets: &[T],
        lse: &[f32],
        upstream: &[f32],
    ) -> Result<(), Error> {
        self.backward_io(Io::InPlace(logits), targets, lse, upstream)
    }

    /// [`backward`](Self::backward) into a separate gradient buffer of the logits' length.
    ///
    /// # Errors
    /// As [`backward`](Self::backward), plus [`Error::OutputLength`]; on error `grad` is
    /// unchanged.
    ///
    /// ```
    /// let ce = xent::CrossEntropy::new(2);
    /// let mut g = [0.0f32; 2];
    /// ce.backward_into(&[0.0, 0.0], &[0u8], &[std::f32::consts::LN_2], &[1.0], &mut g)?;
    /// assert!((g[0] + 0.5).abs() < 1e-6 && (g[1] - 0.5).abs() < 1e-6);
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn backward_into<T: Target>(
        &self,
        logits: &[f32],
        targets: &[T],
        lse: &[f32],
        upstream: &[f32],
        grad: &mut [f32],
    ) -> Result<(), Error> {
        if grad.len() != logits.len() {
            return Err(Error::OutputLength {
                len: grad.len(),
                expected: logits.len(),
            });
        }
        self.backward_io(Io::Into(logits, grad), targets, lse, upstream)
    }

    fn backward_io<T: Target>(
        &self,
        io: Io<'_>,
        targets: &[T],
        lse: &[f32],
        upstream: &[f32],
    ) -> Result<(), Error> {
        let (ck, up) = self.check_backward(io.len(), targets, lse, upstream)?;
        for_row_chunks_with(
            ck.run,
            io,
            up,
            self.get_classes(),
            |row0, chunk, up| backward_rows(&ck, chunk, &targets[row0..], up),
            |()| {},
        );
        Ok(())
    }

    /// Every check of a backward call, before anything is written.
    pub(crate) fn check_backward<'a, T: Target>(
        &self,
        len: usize,
        targets: &[T],
        lse: &'a [f32],
        upstream: &'a [f32],
    ) -> Result<(Checked<'_>, Upstream<'a>), Error> {
        let ck = self.check(len, targets, None)?;
        let rows = targets.len();
        for (what, b) in [("lse", lse), ("upstream", upstream)] {
            if b.len() != rows {
                return Err(Error::InputLength {
                    what,
                    len: b.len(),
                    expected: rows,
                });
            }
        }
        let up = Upstream {
            lse,
            grad: upstream,
        };
        Ok((ck, up))
    }
}

/// The backward pass over a chunk of whole rows (`targets` from the chunk's first row):
/// one read-and-write sweep per row from its saved log-sum-exp, the target entry last.
pub(crate) fn backward_rows<T: Target>(
    ck: &Checked<'_>,
    mut chunk: Io<'_>,
    targets: &[T],
    up: Upstream<'_>,
) {
    let c = ck.classes;
    let mut rest = chunk.reborrow();
    for (r, (&lse, &u)) in up.lse.iter().zip(up.grad).enumerate() {
        let (mut row, tail) = rest.split_at(c);
        rest = tail;
        let Some((t, a, tfix, beta)) = ck.upstream_plan(targets[r], f64::from(u)) else {
            row.dst_mut().fill(0.0);
            continue;
        };
        let lse64 = f64::from(lse);
        let alpha = a + 2.0 * u as f64 * ck.zc() * lse64;
        let zt = row.src()[t];
        let yt = match ck.cap {
            Some(cap) => with_backend!(ck.backend, k => k.softcap(zt, cap)),
            None => zt,
        };
        with_backend!(ck.backend, k => k.grad_from_stats(row.reborrow(), lse, alpha as f32, beta, ck.cap));
        let dst = &mut row.dst_mut()[t];
        match ck.cap {
            None => *dst -= tfix as f32,
            Some(cap) => {
                *dst = capped_target_grad(alpha, yt, lse64, beta_at(beta, t), tfix, cap.cap);
            }
        }
    }
}
