//! Row-wise softmax and log-softmax of whole rows, on the same passes as the loss.

use crate::arch::pass::exp::{Ahead, exp_pass};
use crate::arch::pass::map::{scale_pass, shift_run};
use crate::arch::pass::max::max_argmax;
use crate::arch::{Beta, Simd, Smooth};
use crate::paths::{GROUP_LONG_MAX_CLASSES, GROUP_MAX_CLASSES, GROUP_ROWS};

/// Softmax (`log == false`) or log-softmax of whole rows, `dst` written. Rows of up to
/// [`GROUP_MAX_CLASSES`] run in groups of [`GROUP_ROWS`], and so do rows of up to
/// [`GROUP_LONG_MAX_CLASSES`] with `group_long` (the driver's choice,
/// `Backend::groups_long_rows`, as for the loss).
///
/// # Safety
/// `src..src + len` readable, `dst..dst + len` writable (may equal `src`), `len` a
/// multiple of `c`.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) unsafe fn softmax_rows<S: Simd>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    c: usize,
    log: bool,
    group_long: bool,
) {
    // Short rows in groups, pass by pass, as in `ce_rows` (see `GROUP_ROWS`).
    // SAFETY: the caller's obligations, forwarded.
    unsafe {
        if c <= GROUP_MAX_CLASSES || (group_long && c <= GROUP_LONG_MAX_CLASSES) {
            softmax_row_groups::<S, GROUP_ROWS>(s, src, dst, len, c, log)
        } else {
            softmax_row_groups::<S, 1>(s, src, dst, len, c, log)
        }
    }
}

/// [`softmax_rows`] in groups of `G` rows: every row's max, then every row's exps and
/// sum, then every row's output.
///
/// # Safety
/// As [`softmax_rows`].
#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn softmax_row_groups<S: Simd, const G: usize>(
    s: S,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    c: usize,
    log: bool,
) {
    let rows = len / c;
    let (mut m, mut sum) = ([0f32; G], [0f32; G]);
    let mut r0 = 0;
    while r0 < rows {
        let g = G.min(rows - r0);
        // SAFETY: bounds: rows `r0..r0 + g` (`r0 + g <= rows = len / c`) are
        // `src[r0 c..(r0 + g) c]` / `dst[..]`, in range; `next` is only prefetched.
        unsafe {
            let (row, out) = (src.add(r0 * c), dst.add(r0 * c));
            for (k, m) in m[..g].iter_mut().enumerate() {
                *m = max_argmax(s, row.add(k * c), c).0;
            }
            for (k, (&m, sum)) in m[..g].iter().zip(&mut sum[..g]).enumerate() {
                let (row, out) = (row.add(k * c), out.add(k * c));
                let next = Ahead::source(row.wrapping_add(g * c));
                *sum = if log {
                    exp_pass::<S, false>(s, row, out, c, m, Smooth::Off, None, next).0
                } else {
                    exp_pass::<S, true>(s, row, out, c, m, Smooth::Off, None, next).0
                };
            }
            for (k, (&m, &sum)) in m[..g].iter().zip(&sum[..g]).enumerate() {
                let (row, out) = (row.add(k * c), out.add(k * c));
                if log {
                    let lse = f64::from(sum).ln() as f32;
                    // `(z - m) - lse` rather than `z - (m + lse)`: `z - m` is exact for
                    // nearby values, so large logits keep their small log-probabilities.
                    shift_run(s, row, out, c, m, lse);
                } else {
                    scale_pass(s, out, c, (1.0 / f64::from(sum)) as f32, Beta::Zero);
                }
            }
        }
        r0 += g;
    }
}
