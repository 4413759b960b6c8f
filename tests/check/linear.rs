//! Checks of the fused linear head ([`xent::LinearCrossEntropy`]), shared by the tests and
//! the `linear` fuzz target.
//!
//! # Tolerance
//!
//! The fused path's logits come from an f32 GEMM, the reference's from f64 sums rounded to
//! f32: they differ by at most `tz = d u max_ij sum_k |h_ik w_jk|` (a recursive f32 sum of
//! `d` products, `u = 2^-23`). A logit error `e` moves a softmax entry by at most
//! `2 e p_j` and the gradient's chain factor under capping by `2 e`, so each gradient
//! entry moves by at most `8 tz (|g_ij| + gmax_i)` (`gmax_i` the largest entry of the
//! row's gradient, which bounds `scale * a * p_j`), to which the cross-entropy kernel's
//! own error (a few `u` relative, `2^-16` of the same bound covers the rows of the sizes
//! used here) and the f32 GEMMs' sums (`(V + N) u` relative on the absolute sums) add. So
//! `dH_ik` is compared within `(2^-16 + 8 tz + (V + N) u) sum_j (|g_ij| + gmax_i) |w_jk|`,
//! and likewise `dW` and `db`. The loss moves by at most `2 tz` per unit of row weight
//! (the row loss is 1-Lipschitz in the max norm for each unit of `c + k W`, and the
//! z-loss adds `2 zc |lse|` per unit), and carries the kernel's `2^-16` relative.

use super::{Bytes, U};
use xent::half::{bf16, f16};
use xent::reference::{LinearReference, linear_cross_entropy};
use xent::{CrossEntropy, Kernel, LinearCrossEntropy, LinearGrads, Reduction, RowOutputs, Target};

/// A fused call's outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    pub value: f32,
    pub z_loss: f32,
    pub rows: usize,
    pub correct: usize,
    pub losses: Vec<f32>,
    pub lse: Vec<f32>,
    pub predictions: Vec<usize>,
    pub d_hidden: Vec<f32>,
    pub d_weight: Vec<f32>,
    pub d_bias: Vec<f32>,
}

impl Fused {
    /// Every output's bits, for comparisons across thread counts.
    pub fn bits(&self) -> Vec<u64> {
        let f = |v: &[f32]| v.iter().map(|x| u64::from(x.to_bits())).collect::<Vec<_>>();
        let mut b = vec![
            u64::from(self.value.to_bits()),
            u64::from(self.z_loss.to_bits()),
        ];
        b.extend([self.rows as u64, self.correct as u64]);
        for v in [
            &self.losses,
            &self.lse,
            &self.d_hidden,
            &self.d_weight,
            &self.d_bias,
        ] {
            b.extend(f(v));
        }
        b.extend(self.predictions.iter().map(|&p| p as u64));
        b
    }
}

/// `forward_backward_with` on f32 buffers with every per-row output and a bias gradient.
pub fn fused<T: Target>(
    head: &LinearCrossEntropy,
    h: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    t: &[T],
) -> Result<Fused, xent::Error> {
    let (n, v) = (t.len(), head.get_cross_entropy().get_classes());
    let mut out = Fused {
        value: 0.0,
        z_loss: 0.0,
        rows: 0,
        correct: 0,
        losses: vec![0.0; n],
        lse: vec![0.0; n],
        predictions: vec![0; n],
        d_hidden: vec![0.0; h.len()],
        d_weight: vec![0.0; w.len()],
        d_bias: vec![0.0; v],
    };
    let rows = RowOutputs::new()
        .losses(&mut out.losses)
        .lse(&mut out.lse)
        .predictions(&mut out.predictions);
    let grads = LinearGrads::new(&mut out.d_hidden, &mut out.d_weight).bias(&mut out.d_bias);
    let loss = head.forward_backward_with(h, w, b, t, grads, rows)?;
    (out.value, out.z_loss, out.rows, out.correct) =
        (loss.value, loss.z_loss, loss.rows, loss.correct);
    Ok(out)
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    // An f32 result overflows to infinity where the f64 one passes f32::MAX.
    let overflow = got.is_infinite()
        && got.signum() == want.signum()
        && want.abs() + tol >= f64::from(f32::MAX);
    got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= tol || overflow
}

/// The fused head against the reference and against the unfused path (GEMM into a full
/// logits buffer, then `forward_backward`), within the module's tolerance, its forward
/// against its forward-backward, 1 against 2 threads (bit for bit), and the bf16 and f16
/// paths against the f32 path on the same (exactly representable) values.
pub fn check_linear<T: Target>(
    head: &LinearCrossEntropy,
    h: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    t: &[T],
) -> Result<(), String> {
    let r = linear_cross_entropy(head, h, w, b, t);
    let got = fused(head, h, w, b, t);
    let (r, got) = match (r, got) {
        (Err(a), Err(b)) if a == b => return Ok(()),
        (Ok(r), Ok(g)) => (r, g),
        (r, g) => return Err(format!("reference {:?} vs fused {:?}", r.err(), g.err())),
    };
    match head.get_gradient_filter() {
        None => {
            compare(head, h, w, &r, &Wanted::reference(&r), &got)?;
            let unfused = Wanted::unfused(head, h, w, &r, t)?;
            compare(head, h, w, &r, &unfused, &got)
                .map_err(|e| format!("against the unfused path: {e}"))?;
        }
        Some(eps) => {
            let (filtered, _) = Wanted::filtered(head, h, w, &r, t, eps)?;
            compare(head, h, w, &r, &filtered, &got)
                .map_err(|e| format!("against the filtered unfused path: {e}"))?;
        }
    }
    let fwd = head.forward(h, w, b, t).map_err(|e| e.to_string())?;
    let tol = 1e-5 * (1.0 + f64::from(got.value).abs());
    if !close(f64::from(fwd.value), f64::from(got.value), tol) || fwd.rows != got.rows {
        return Err(format!("forward {fwd:?} vs forward_backward {}", got.value));
    }
    let threads = |n: usize| {
        let ce = head.get_cross_entropy().clone().threads(n);
        let one = LinearCrossEntropy::new(ce, head.get_dim())
            .memory_budget(head.get_memory_budget())
            .gradient_filter(head.get_gradient_filter());
        fused(&one, h, w, b, t).map(|f| f.bits())
    };
    if threads(1) != threads(2) {
        return Err("1 and 2 threads differ".into());
    }
    check_half::<bf16>(head, h, w, b, t)?;
    check_half::<f16>(head, h, w, b, t)
}

/// The 16-bit path on values rounded to `H` equals the f32 path on the same values, each
/// output rounded once.
fn check_half<H: xent::LinearFloat + Into<f32> + From<Narrow>>(
    head: &LinearCrossEntropy,
    h: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    t: &[impl Target],
) -> Result<(), String> {
    let round = |v: &[f32]| v.iter().map(|&x| H::from(Narrow(x))).collect::<Vec<H>>();
    let wide = |v: &[H]| v.iter().map(|&x| x.into()).collect::<Vec<f32>>();
    let (h16, w16, b16) = (round(h), round(w), b.map(round));
    let (hw, ww, bw) = (wide(&h16), wide(&w16), b16.as_deref().map(wide));
    // Without per-row outputs, as the 16-bit call below (they may change the path).
    let mut want = fused(head, &hw, &ww, bw.as_deref(), t).map_err(|e| e.to_string())?;
    let g = LinearGrads::new(&mut want.d_hidden, &mut want.d_weight).bias(&mut want.d_bias);
    want.value = head
        .forward_backward(&hw, &ww, bw.as_deref(), t, g)
        .map_err(|e| e.to_string())?
        .value;
    let mut dh = vec![H::from(Narrow(0.0)); h.len()];
    let mut dw = vec![H::from(Narrow(0.0)); w.len()];
    let mut db = vec![H::from(Narrow(0.0)); want.d_bias.len()];
    let grads = LinearGrads::new(&mut dh, &mut dw).bias(&mut db);
    let loss = head
        .forward_backward(&h16, &w16, b16.as_deref(), t, grads)
        .map_err(|e| e.to_string())?;
    // The same bits as the software conversion, subnormals included, on every kernel.
    let same = |a: &[H], f: &[f32]| {
        a.iter().zip(f).all(|(&x, &y)| {
            let (x, r): (f32, f32) = (x.into(), H::from(Narrow(y)).into());
            x.to_bits() == r.to_bits() || (x.is_nan() && r.is_nan())
        })
    };
    if loss.value.to_bits() != want.value.to_bits()
        || !same(&dh, &want.d_hidden)
        || !same(&dw, &want.d_weight)
        || !same(&db, &want.d_bias)
    {
        let which = [
            loss.value.to_bits() != want.value.to_bits(),
            !same(&dh, &want.d_hidden),
            !same(&dw, &want.d_weight),
            !same(&db, &want.d_bias),
        ];
        return Err(format!(
            "{} path differs from the f32 path rounded (loss, dh, dw, db: {which:?}; loss {} vs {})",
            core::any::type_name::<H>(),
            loss.value,
            want.value
        ));
    }
    Ok(())
}

/// An f32 to be rounded to a 16-bit type.
pub struct Narrow(pub f32);
impl From<Narrow> for bf16 {
    fn from(x: Narrow) -> bf16 {
        bf16::from_f32(x.0)
    }
}
impl From<Narrow> for f16 {
    fn from(x: Narrow) -> f16 {
        f16::from_f32(x.0)
    }
}

/// What a fused call is compared with: the reference's results, or the unfused path's.
pub struct Wanted {
    pub value: f64,
    pub d_hidden: Vec<f64>,
    pub d_weight: Vec<f64>,
    pub d_bias: Vec<f64>,
    /// Per logit (`N x V`), a gradient entry that may or may not be in the fused result
    /// (its tile is at the gradient filter's threshold within rounding); empty for none.
    pub slack: Vec<f64>,
}

/// How many tiles the gradient filter oracle kept, skipped, and found at the threshold.
#[derive(Clone, Copy, Debug, Default)]
pub struct TileCount {
    pub kept: usize,
    pub skipped: usize,
    pub borderline: usize,
}

impl Wanted {
    fn reference(r: &LinearReference) -> Wanted {
        Wanted {
            value: r.ce.value,
            d_hidden: r.d_hidden.clone(),
            d_weight: r.d_weight.clone(),
            d_bias: r.d_bias.clone(),
            slack: Vec::new(),
        }
    }

    /// The unfused path: the reference's f32 logits in one buffer, xent's
    /// `forward_backward` on them, then the three products (in f64).
    fn unfused<T: Target>(
        head: &LinearCrossEntropy,
        h: &[f32],
        w: &[f32],
        r: &LinearReference,
        t: &[T],
    ) -> Result<Wanted, String> {
        let n = t.len();
        let mut g = r.logits.clone();
        let loss = head
            .get_cross_entropy()
            .forward_backward(&mut g, t)
            .map_err(|e| e.to_string())?;
        Ok(Self::products(head, h, w, &g, n, f64::from(loss.value)))
    }

    /// The gradient filter's result, from the unfused path's gradient: the entries of the
    /// tiles the filter skips (all non-target entries `|g_ij| <= eps a_i`, `a_i` the row's
    /// softmax coefficient) set to zero, then the three products in f64. A tile within 1%
    /// of the threshold may go either way in the fused call (its gradient carries other
    /// rounding): it is kept here and its entries are given as slack.
    pub fn filtered<T: Target>(
        head: &LinearCrossEntropy,
        h: &[f32],
        w: &[f32],
        r: &LinearReference,
        t: &[T],
        eps: f32,
    ) -> Result<(Wanted, TileCount), String> {
        let (v, n) = (head.get_cross_entropy().get_classes(), t.len());
        let ce = head.get_cross_entropy();
        let mut g = r.logits.clone();
        let loss = ce.forward_backward(&mut g, t).map_err(|e| e.to_string())?;
        let scale = match ce.get_reduction() {
            Reduction::Mean if r.ce.weight > 0.0 => 1.0 / r.ce.weight,
            Reduction::Mean => 0.0,
            _ => 1.0,
        };
        let s = f64::from(ce.get_label_smoothing());
        let weights = ce.get_class_weights();
        let cw = |j: usize| weights.map_or(1.0, |w| f64::from(w[j]));
        let sum_w: f64 = (0..v).map(cw).sum();
        let target = |i: usize| {
            let c = t[i].class();
            (Some(c) != ce.get_ignore_index().map(i128::from)).then_some(c as usize)
        };
        // The row's limit: `eps a_i`, `a_i = scale ((1 - s) w_t + s / C sum_w)`.
        let limit = |i: usize| match target(i) {
            None => 0.0,
            Some(t) => f64::from(eps) * scale * ((1.0 - s) * cw(t) + s / v as f64 * sum_w),
        };
        let (tr, tv) = (
            LinearCrossEntropy::FILTER_TILE_ROWS,
            LinearCrossEntropy::FILTER_TILE_VOCAB,
        );
        // The bias gradient is always the full one.
        let d_bias = (0..v)
            .map(|j| (0..n).map(|i| f64::from(g[i * v + j])).sum())
            .collect();
        let mut slack = vec![0.0; n * v];
        let mut count = TileCount::default();
        // Tiles start at each chunk's first row and never cross a chunk's end.
        let chunk = head.chunk_rows(n).max(1);
        let tiles = (0..n).step_by(chunk).flat_map(|c| {
            (c..(c + chunk).min(n))
                .step_by(tr)
                .map(move |r0| (r0, (r0 + tr).min(c + chunk).min(n)))
        });
        for (r0, r1) in tiles {
            for c0 in (0..v).step_by(tv) {
                let entries = || {
                    (r0..r1).flat_map(move |i| {
                        (c0..(c0 + tv).min(v))
                            .filter(move |&j| Some(j) != target(i))
                            .map(move |j| (i, j))
                    })
                };
                let ratio = |(i, j): (usize, usize)| {
                    let (x, l) = (f64::from(g[i * v + j]).abs(), limit(i));
                    if x.is_nan() {
                        f64::INFINITY
                    } else if x == 0.0 {
                        0.0
                    } else {
                        x / l
                    }
                };
                let max = entries().map(ratio).fold(0.0, f64::max);
                if max > 1.01 {
                    count.kept += 1;
                } else if max <= 0.99 {
                    count.skipped += 1;
                    entries().for_each(|(i, j)| g[i * v + j] = 0.0);
                } else {
                    count.borderline += 1;
                    entries().for_each(|(i, j)| slack[i * v + j] = f64::from(g[i * v + j]).abs());
                }
            }
        }
        let mut want = Self::products(head, h, w, &g, n, f64::from(loss.value));
        want.slack = slack;
        want.d_bias = d_bias;
        Ok((want, count))
    }

    /// The three products of a gradient `g` (`N x V`) in f64.
    fn products(
        head: &LinearCrossEntropy,
        h: &[f32],
        w: &[f32],
        g: &[f32],
        n: usize,
        value: f64,
    ) -> Wanted {
        let (d, v) = (head.get_dim(), head.get_cross_entropy().get_classes());
        let g = |i: usize, j: usize| f64::from(g[i * v + j]);
        Wanted {
            value,
            d_hidden: (0..n * d)
                .map(|ik| {
                    (0..v)
                        .map(|j| g(ik / d, j) * f64::from(w[j * d + ik % d]))
                        .sum()
                })
                .collect(),
            d_weight: (0..v * d)
                .map(|jk| {
                    (0..n)
                        .map(|i| g(i, jk / d) * f64::from(h[i * d + jk % d]))
                        .sum()
                })
                .collect(),
            d_bias: (0..v).map(|j| (0..n).map(|i| g(i, j)).sum()).collect(),
            slack: Vec::new(),
        }
    }
}

/// Outputs against `want` (the reference's, or the unfused path's), within the module's
/// tolerance (the unfused path is itself within the kernels' tolerance of the reference,
/// far inside this one); the per-row outputs against the reference.
fn compare(
    head: &LinearCrossEntropy,
    h: &[f32],
    w: &[f32],
    r: &LinearReference,
    want: &Wanted,
    got: &Fused,
) -> Result<(), String> {
    let (d, v, n) = (
        head.get_dim(),
        head.get_cross_entropy().get_classes(),
        got.losses.len(),
    );
    let hw = |i: usize, j: usize| {
        (0..d)
            .map(|k| f64::from(h[i * d + k]).abs() * f64::from(w[j * d + k]).abs())
            .sum::<f64>()
    };
    let tz = (0..n)
        .flat_map(|i| (0..v).map(move |j| (i, j)))
        .map(|(i, j)| hw(i, j))
        .fold(0.0, f64::max)
        * d as f64
        * U;
    let g = |i: usize, j: usize| r.ce.grad[i * v + j].abs();
    let gmax: Vec<f64> = (0..n)
        .map(|i| (0..v).map(|j| g(i, j)).fold(0.0, f64::max))
        .collect();
    let ce = head.get_cross_entropy();
    let unit = ce
        .get_class_weights()
        .map_or(1.0, |w| w.iter().fold(1f64, |a, &x| a.max(f64::from(x))))
        * (1.0 + v as f64 * f64::from(ce.get_label_smoothing()));
    let zl = |lse: f64| 2.0 * f64::from(ce.get_z_loss()) * (lse.abs() + 1.0);
    let scale = match ce.get_reduction() {
        Reduction::Mean if r.ce.weight > 0.0 => 1.0 / r.ce.weight,
        Reduction::Mean => 0.0,
        _ => 1.0,
    };
    // `scale a_i`, the row's gradient coefficient: it bounds `scale a p_j`, which the
    // logit error moves even where `g_ij` is near 0 (a target whose probability is near 1).
    let a: Vec<f64> = (0..n)
        .map(|i| {
            if r.ce.predictions[i] == usize::MAX {
                0.0
            } else {
                scale * (unit + zl(r.ce.lse[i]))
            }
        })
        .collect();
    let bound = |i: usize, j: usize| g(i, j) + gmax[i] + a[i];
    let rel = 2f64.powi(-16) + 8.0 * tz + (v + n) as f64 * U;
    let err = |what: &str, idx: usize, got: f32, want: f64, tol: f64| {
        if close(f64::from(got), want, tol + 1e-30) {
            Ok(())
        } else {
            Err(format!("{what}[{idx}] {got} vs {want} (tol {tol:e})"))
        }
    };
    let slack = |i: usize, j: usize| want.slack.get(i * v + j).copied().unwrap_or(0.0);
    for ik in 0..n * d {
        let (i, k) = (ik / d, ik % d);
        let (s, x): (f64, f64) = (0..v)
            .map(|j| {
                let w = f64::from(w[j * d + k]).abs();
                (bound(i, j) * w, slack(i, j) * w)
            })
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        err(
            "d_hidden",
            ik,
            got.d_hidden[ik],
            want.d_hidden[ik],
            rel * s + x,
        )?;
    }
    for jk in 0..v * d {
        let (j, k) = (jk / d, jk % d);
        let (s, x): (f64, f64) = (0..n)
            .map(|i| {
                let h = f64::from(h[i * d + k]).abs();
                (bound(i, j) * h, slack(i, j) * h)
            })
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        err(
            "d_weight",
            jk,
            got.d_weight[jk],
            want.d_weight[jk],
            rel * s + x,
        )?;
    }
    for j in 0..v {
        let s: f64 = (0..n).map(|i| bound(i, j)).sum();
        err("d_bias", j, got.d_bias[j], want.d_bias[j], rel * s)?;
    }
    let row_tol = |i: usize| {
        (2.0 * tz * (unit + zl(r.ce.lse[i]))) + 2f64.powi(-16) * (1.0 + r.ce.row_losses[i].abs())
    };
    let total: f64 = (0..n).map(row_tol).sum::<f64>() * scale + 2f64.powi(-16) * r.ce.value.abs();
    err("loss", 0, got.value, want.value, total)?;
    if got.rows != r.ce.rows {
        return Err(format!("rows {} vs {}", got.rows, r.ce.rows));
    }
    for i in 0..n {
        err("row loss", i, got.losses[i], r.ce.row_losses[i], row_tol(i))?;
        err(
            "lse",
            i,
            got.lse[i],
            r.ce.lse[i],
            2.0 * tz + 2f64.powi(-16) * (1.0 + r.ce.lse[i].abs()),
        )?;
        let (p, q) = (got.predictions[i], r.ce.predictions[i]);
        // A near tie may break either way between the two logits' roundings.
        let z = |j: usize| f64::from(r.logits[i * v + j]);
        if p != q && !(p < v && q < v && (z(p) - z(q)).abs() <= 4.0 * tz) {
            return Err(format!("prediction of row {i}: {p} vs {q}"));
        }
    }
    Ok(())
}

/// Fuzz target `linear`: shape, values, targets, options, memory budget and kernel from
/// bytes, through [`check_linear`]; lengths are sometimes wrong, which must give the
/// reference's error.
pub fn linear(data: &[u8]) {
    let mut b = Bytes(data);
    let (v, d) = (1 + usize::from(b.u8() % 40), 1 + usize::from(b.u8() % 12));
    let n = usize::from(b.u8() % 9);
    let opts = b.u8();
    let mut ce = CrossEntropy::new(v);
    ce = match opts % 3 {
        0 => ce,
        1 => ce.reduction(Reduction::Sum),
        _ => ce.reduction(Reduction::None),
    };
    if opts & 4 != 0 {
        ce = ce.ignore_index(-100);
    }
    if opts & 8 != 0 {
        ce = ce.label_smoothing(f32::from(b.u8()) / 255.0);
    }
    if opts & 16 != 0 {
        ce = ce.z_loss(f32::from(b.u8()) / 2550.0);
    }
    if opts & 32 != 0 {
        ce = ce.softcap(1.0 + f32::from(b.u8()) / 8.0);
    }
    if opts & 64 != 0 {
        ce = ce.class_weights(
            (0..v)
                .map(|_| f32::from(b.u8() % 8) / 4.0)
                .collect::<Vec<_>>(),
        );
    }
    let kernels = Kernel::available();
    ce = ce.kernel(kernels[usize::from(b.u8()) % kernels.len()]);
    let budget = 4 * v * (1 + usize::from(b.u8() % 4));
    let mut head = LinearCrossEntropy::new(ce, d).memory_budget(budget);
    let val = |b: &mut Bytes| f32::from(b.u8() as i8) / 32.0;
    let h: Vec<f32> = (0..n * d).map(|_| val(&mut b)).collect();
    let w: Vec<f32> = (0..v * d).map(|_| val(&mut b)).collect();
    let bias: Option<Vec<f32>> = (opts & 128 != 0).then(|| {
        (0..v)
            .map(|j| {
                if j > 0 && b.u8() % 5 == 0 {
                    f32::NEG_INFINITY
                } else {
                    val(&mut b)
                }
            })
            .collect()
    });
    let t: Vec<i64> = (0..n)
        .map(|_| match b.u8() {
            255 => -100,
            254 => v as i64, // out of range
            x => i64::from(x) % v as i64,
        })
        .collect();
    // A wrong length now and then: the same error as the reference, nothing written.
    let cut = b.u8();
    let h = if cut == 1 {
        &h[..h.len().saturating_sub(1)]
    } else {
        &h[..]
    };
    let w = if cut == 2 {
        &w[..w.len().saturating_sub(1)]
    } else {
        &w[..]
    };
    // Read last, so that inputs recorded before the filter existed decode as they did.
    let filter = b.u8();
    if filter % 4 == 3 {
        // 255 is out of range: the call's error, before any write.
        let eps = if filter == 255 {
            1.5
        } else {
            f32::from(filter) / 512.0
        };
        head = head.gradient_filter(Some(eps));
    }
    if let Err(e) = check_linear(&head, h, w, bias.as_deref(), &t) {
        panic!("{e}\nhead {head:?}\nh {h:?}\nw {w:?}\nbias {bias:?}\nt {t:?}");
    }
}
