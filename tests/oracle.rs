//! The reference itself: hand-worked values, an independent naive formula, and a
//! finite-difference check of its gradient.

use approx::assert_relative_eq;
use xent::{CrossEntropy, Reduction, reference};

#[test]
fn hand_worked_two_classes() {
    // z = [0, ln 3]: p = [1/4, 3/4]; loss for target 1 is -ln(3/4).
    let z = [0.0f32, 3f32.ln()];
    let r = reference::cross_entropy(&CrossEntropy::new(2), &z, &[1u8]).unwrap();
    assert_relative_eq!(r.value, -(0.75f64.ln()), max_relative = 1e-7);
    assert_relative_eq!(r.grad[0], 0.25, max_relative = 1e-7);
    assert_relative_eq!(r.grad[1], -0.25, max_relative = 1e-7);
    assert_eq!((r.rows, r.correct), (1, 1));
}

#[test]
fn matches_naive_formula_with_all_options() {
    // Naive PyTorch formula: mean over rows of -sum_j q_j w_j log p_j with the smoothed
    // target q, divided by the sum of w_t over counted rows.
    let c = 4;
    let z: Vec<f32> = vec![0.3, -1.2, 2.0, 0.5, 1.0, 1.0, -3.0, 0.0, 5.0, 4.0, 3.0, 2.0];
    let t = [2i64, -100, 0];
    let w = [0.5f32, 2.0, 1.0, 3.0];
    let eps = f64::from(0.3f32);
    let ce = CrossEntropy::new(c)
        .ignore_index(-100)
        .label_smoothing(eps as f32)
        .class_weights(w.to_vec());
    let r = reference::cross_entropy(&ce, &z, &t).unwrap();
    let mut num = 0.0;
    let mut den = 0.0;
    for (row, &tt) in t.iter().enumerate() {
        if tt == -100 {
            continue;
        }
        let zr: Vec<f64> = z[row * c..(row + 1) * c]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let lse = zr.iter().map(|v| v.exp()).sum::<f64>().ln();
        let tt = tt as usize;
        num += (1.0 - eps) * f64::from(w[tt]) * (lse - zr[tt]);
        num += eps / c as f64 * (0..c).map(|j| f64::from(w[j]) * (lse - zr[j])).sum::<f64>();
        den += f64::from(w[tt]);
    }
    assert_relative_eq!(r.value, num / den, max_relative = 1e-12);
    assert_eq!(r.rows, 2);
    assert!(r.grad[4..8].iter().all(|&g| g == 0.0));
}

#[test]
fn finite_difference_gradient() {
    // Central differences through the f64 reference; logits moved by +-h in f32 and the
    // actual step measured in f64. Truncation error is O(h^2) ~ 1e-6 relative.
    let c = 5;
    let z: Vec<f32> = vec![0.5, -0.25, 1.5, 0.0, -2.0, 2.0, 1.0, 0.0, -1.0, 0.25];
    let t = [2u32, 4];
    for ce in [
        CrossEntropy::new(c),
        CrossEntropy::new(c)
            .reduction(Reduction::Sum)
            .label_smoothing(0.4),
        CrossEntropy::new(c)
            .class_weights(vec![1.0, 2.0, 0.5, 3.0, 1.5])
            .label_smoothing(0.1),
        // The LLM options: z-loss's `2 zc lse p` and soft-capping's chain factor.
        CrossEntropy::new(c).z_loss(0.3),
        CrossEntropy::new(c).softcap(1.5).reduction(Reduction::Sum),
        CrossEntropy::new(c)
            .softcap(2.0)
            .z_loss(0.05)
            .label_smoothing(0.2)
            .class_weights(vec![1.0, 2.0, 0.5, 3.0, 1.5]),
    ] {
        let r = reference::cross_entropy(&ce, &z, &t).unwrap();
        for i in 0..z.len() {
            let h = 1.0 / 256.0;
            let (mut up, mut down) = (z.clone(), z.clone());
            up[i] += h;
            down[i] -= h;
            let fu = reference::cross_entropy(&ce, &up, &t).unwrap().value;
            let fd = reference::cross_entropy(&ce, &down, &t).unwrap().value;
            let fdg = (fu - fd) / (f64::from(up[i]) - f64::from(down[i]));
            // The same derivative for the backward pass from a saved lse.
            let lse: Vec<f32> = r.lse.iter().map(|&v| v as f32).collect();
            let up = [0.5f32, 2.0];
            let b = reference::backward(&ce, &z, &t, &lse, &up).unwrap();
            let ru = reference::cross_entropy(
                &ce.clone().reduction(Reduction::None),
                &up_z(&z, i, h),
                &t,
            )
            .unwrap();
            let rd = reference::cross_entropy(
                &ce.clone().reduction(Reduction::None),
                &up_z(&z, i, -h),
                &t,
            )
            .unwrap();
            let row = i / c;
            let fdb = f64::from(up[row]) * (ru.row_losses[row] - rd.row_losses[row])
                / (f64::from(up_z(&z, i, h)[i]) - f64::from(up_z(&z, i, -h)[i]));
            assert!(
                (fdb - b[i]).abs() < 1e-5,
                "{ce:?} backward i={i}: fd {fdb} vs {}",
                b[i]
            );
            assert!(
                (fdg - r.grad[i]).abs() < 1e-5,
                "{ce:?} i={i}: fd {fdg} vs {}",
                r.grad[i]
            );
        }
    }
}

/// `z` with entry `i` moved by `h`.
fn up_z(z: &[f32], i: usize, h: f32) -> Vec<f32> {
    let mut v = z.to_vec();
    v[i] += h;
    v
}

#[test]
fn softcap_saturates_and_unmasks_like_the_composition() {
    // cap tanh(z / cap): +-inf become +-cap (so -inf is no longer a mask), and a
    // saturated logit gets exactly zero gradient, as autograd through torch.tanh.
    let ce = CrossEntropy::new(3).softcap(2.0).reduction(Reduction::Sum);
    let z = [f32::INFINITY, f32::NEG_INFINITY, 0.0];
    let lse = (2f64.exp() + (-2f64).exp() + 1.0).ln();
    for k in xent::Kernel::available() {
        let ce = ce.clone().kernel(k);
        let mut g = z;
        let loss = ce.forward_backward(&mut g, &[2u8]).unwrap();
        assert!(
            (f64::from(loss.value) - lse).abs() < 1e-6,
            "{k:?} {}",
            loss.value
        );
        assert_eq!(&g[..2], &[0.0, 0.0], "{k:?}");
        assert!((f64::from(g[2]) - (1.0 / (2f64.exp() + (-2f64).exp() + 1.0) - 1.0)).abs() < 1e-6);
        assert_eq!(loss.correct, 0);
    }
}

#[test]
fn z_loss_pulls_lse_to_zero() {
    // The z-loss part is reported alone as well as inside the value, and its gradient
    // 2 zc lse p adds to softmax - onehot.
    let ce = CrossEntropy::new(2).z_loss(0.5).reduction(Reduction::Sum);
    let z = [1.0f32, 1.0];
    let lse = 1.0 + 2f64.ln();
    let mut g = z;
    let loss = ce.forward_backward(&mut g, &[0u8]).unwrap();
    assert!((f64::from(loss.z_loss) - 0.5 * lse * lse).abs() < 1e-6);
    assert!((f64::from(loss.value) - (2f64.ln() + 0.5 * lse * lse)).abs() < 1e-6);
    let extra = 2.0 * 0.5 * lse * 0.5;
    assert!((f64::from(g[0]) - (-0.5 + extra)).abs() < 1e-6);
    assert!((f64::from(g[1]) - (0.5 + extra)).abs() < 1e-6);
}
