//! Non-finite input, masks, empty and fully ignored batches, C = 1, huge magnitudes: the
//! documented values, on every kernel.

use crate::check::bits;
use crate::common::kernels;
use xent::{CrossEntropy, Kernel, Reduction};

const NEG: f32 = f32::NEG_INFINITY;

fn each(ce: CrossEntropy, z: &[f32], t: &[i64], check: impl Fn(Kernel, xent::Loss, &[f32])) {
    for k in kernels() {
        let mut g = z.to_vec();
        let loss = ce.clone().kernel(k).forward_backward(&mut g, t).unwrap();
        check(k, loss, &g);
    }
}

#[test]
fn nan_or_pos_inf_poisons_only_its_row() {
    for bad in [f32::NAN, f32::INFINITY] {
        for c in [1usize, 3, 17, 70_000] {
            let mut z = vec![0.5f32; 2 * c];
            z[c + c / 2] = bad;
            each(
                CrossEntropy::new(c).reduction(Reduction::Sum),
                &z,
                &[0, 0],
                |k, loss, g| {
                    assert!(loss.value.is_nan(), "{k:?} C={c}");
                    assert_eq!(loss.correct, 1, "{k:?} C={c}: only the clean row counts");
                    assert!(
                        g[..c].iter().all(|v| v.is_finite()),
                        "{k:?} C={c}: row 0 finite"
                    );
                    assert!(g[c..].iter().all(|v| v.is_nan()), "{k:?} C={c}: row 1 NaN");
                },
            );
        }
    }
}

#[test]
fn neg_inf_masks_get_exact_zero_probability() {
    for c in [2usize, 9, 33, 100_000] {
        let mut z = vec![NEG; c];
        z[0] = 1.0;
        z[c - 1] = 1.0;
        each(CrossEntropy::new(c), &z, &[0], |k, loss, g| {
            assert!(
                (loss.value - std::f32::consts::LN_2).abs() < 1e-6,
                "{k:?} C={c}"
            );
            assert_eq!(g[0], -0.5);
            assert_eq!(g[c - 1], 0.5);
            assert!(g[1..c - 1].iter().all(|&v| v == 0.0), "{k:?} C={c}");
            assert_eq!(loss.correct, 1);
        });
    }
}

#[test]
fn neg_inf_target_gives_pos_inf_loss_and_finite_gradient() {
    let z = [NEG, 0.0, 0.0];
    each(CrossEntropy::new(3), &z, &[0], |k, loss, g| {
        assert_eq!(loss.value, f32::INFINITY, "{k:?}");
        assert_eq!(g, &[-1.0, 0.5, 0.5], "{k:?}");
    });
}

#[test]
fn all_neg_inf_row_is_nan() {
    for c in [1usize, 5, 16, 70_000] {
        let z = vec![NEG; c];
        each(CrossEntropy::new(c), &z, &[0], |k, loss, g| {
            assert!(loss.value.is_nan(), "{k:?} C={c}");
            assert_eq!(loss.correct, 0);
            assert!(g.iter().all(|v| v.is_nan()), "{k:?} C={c}");
        });
    }
}

#[test]
fn masked_classes_with_smoothing_give_inf_loss_as_pytorch() {
    // -sum_j log p_j includes log 0 = -inf: PyTorch's loss is +inf, its gradient finite.
    let z = [1.0, NEG, 2.0];
    each(
        CrossEntropy::new(3).label_smoothing(0.1),
        &z,
        &[2],
        |k, loss, g| {
            assert_eq!(loss.value, f32::INFINITY, "{k:?}");
            assert!(g.iter().all(|v| v.is_finite()), "{k:?}");
            let want = xent::reference::cross_entropy(
                &CrossEntropy::new(3).label_smoothing(0.1),
                &z,
                &[2],
            )
            .unwrap();
            for (a, b) in g.iter().zip(&want.grad) {
                assert!((f64::from(*a) - b).abs() < 1e-6, "{k:?}");
            }
        },
    );
}

#[test]
fn mean_over_nothing_is_zero_not_nan() {
    // Empty batch.
    each(CrossEntropy::new(4), &[], &[], |_, loss, _| {
        assert_eq!((loss.value, loss.rows, loss.correct), (0.0, 0, 0));
    });
    // Every row ignored, even rows holding NaN: zero gradient, value 0.
    let z = [1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0];
    each(
        CrossEntropy::new(3).ignore_index(-1),
        &z,
        &[-1, -1],
        |k, loss, g| {
            assert_eq!((loss.value, loss.rows), (0.0, 0), "{k:?}");
            assert!(g.iter().all(|&v| v == 0.0 && v.is_sign_positive()), "{k:?}");
        },
    );
    // Target weights summing to zero.
    let ce = CrossEntropy::new(2).class_weights(vec![0.0, 1.0]);
    each(ce, &[1.0, 2.0, 3.0, 0.0], &[0, 0], |k, loss, g| {
        assert_eq!(
            (loss.value, loss.rows, loss.weight, loss.correct),
            (0.0, 2, 0.0, 1),
            "{k:?}"
        );
        assert!(g.iter().all(|&v| v == 0.0), "{k:?}");
    });
}

#[test]
fn one_class_has_zero_loss_and_gradient() {
    each(
        CrossEntropy::new(1),
        &[3.0, -1e30, 0.0],
        &[0, 0, 0],
        |k, loss, g| {
            assert_eq!((loss.value, loss.correct), (0.0, 3), "{k:?}");
            assert!(g.iter().all(|&v| v == 0.0), "{k:?} {g:?}");
        },
    );
}

#[test]
fn extreme_magnitudes_do_not_overflow() {
    // Spread of 6.8e38: z - max overflows f32, yet the true loss (with smoothing) is finite.
    let z = [3.0e38f32, -3.0e38, 0.0];
    let ce = CrossEntropy::new(3).label_smoothing(0.001);
    let want = xent::reference::cross_entropy(&ce, &z, &[0]).unwrap();
    assert!(want.value.is_finite() && want.value < f64::from(f32::MAX));
    each(ce, &z, &[0], |k, loss, g| {
        let rel = (f64::from(loss.value) - want.value).abs() / want.value;
        assert!(rel < 1e-6, "{k:?}: {} vs {}", loss.value, want.value);
        assert!(g.iter().all(|v| v.is_finite()), "{k:?}");
    });
}

#[test]
fn ties_pick_the_first_argmax() {
    for c in [2usize, 8, 16, 31, 64, 70_000] {
        let mut z = vec![0.0f32; c];
        z[c / 2] = 1.0;
        z[c - 1] = 1.0;
        let first = c / 2;
        for k in kernels() {
            let ce = CrossEntropy::new(c).kernel(k);
            assert_eq!(
                ce.forward(&z, &[first as i64]).unwrap().correct,
                1,
                "{k:?} C={c}"
            );
            if first != c - 1 {
                assert_eq!(
                    ce.forward(&z, &[(c - 1) as i64]).unwrap().correct,
                    0,
                    "{k:?} C={c}"
                );
            }
        }
    }
}

/// The max sweep works in blocks of 512 classes and rescans only the winning block:
/// the first maximum must win across blocks, in any lane, in a block's tail, after a
/// block of -inf, and beside NaN entries elsewhere in the row (NaN poisons the loss, so
/// no prediction counts there; the argmax is observed through rows without NaN).
#[test]
fn argmax_is_the_first_maximum_across_blocks() {
    let c = 1500; // blocks of 512, 512 and 476
    let layouts: [&[usize]; 6] = [
        &[3, 1100],      // block 0 against block 2
        &[511, 512],     // the last of block 0 against the first of block 1
        &[700, 1499],    // block 1 against the row's last class
        &[1499],         // the tail only
        &[1024, 1025],   // adjacent in block 2
        &[0, 513, 1026], // the first class against later blocks
    ];
    for (case, at) in layouts.iter().enumerate() {
        for neg_block in [false, true] {
            let mut z: Vec<f32> = (0..c).map(|j| (j % 97) as f32 * 0.01).collect();
            if neg_block {
                // A block of -inf before the max's block changes nothing.
                z[..512]
                    .iter_mut()
                    .filter(|_| at[0] >= 512)
                    .for_each(|v| *v = NEG);
            }
            for &j in *at {
                z[j] = 5.0;
            }
            for k in kernels() {
                let ce = CrossEntropy::new(c).kernel(k);
                let what = format!("{k:?} case {case} neg_block {neg_block}");
                assert_eq!(
                    ce.forward(&z, &[at[0] as i64]).unwrap().correct,
                    1,
                    "{what}"
                );
                for &j in &at[1..] {
                    assert_eq!(ce.forward(&z, &[j as i64]).unwrap().correct, 0, "{what}");
                }
            }
        }
    }
}

#[test]
fn ignore_index_may_be_a_valid_class() {
    let z = [1.0, 2.0, 3.0, 4.0];
    each(
        CrossEntropy::new(2).ignore_index(0),
        &z,
        &[0, 1],
        |k, loss, g| {
            assert_eq!(loss.rows, 1, "{k:?}");
            assert_eq!(&g[..2], &[0.0, 0.0], "{k:?}");
        },
    );
}

#[test]
fn gradient_into_leaves_logits_alone() {
    let z = vec![0.25f32; 40];
    for k in kernels() {
        let before = bits(&z);
        let mut g = vec![0.0; 40];
        CrossEntropy::new(10)
            .kernel(k)
            .forward_backward_into(&z, &[1u8, 2, 3, 4], &mut g)
            .unwrap();
        assert_eq!(bits(&z), before);
    }
}
