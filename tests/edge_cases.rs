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

/// The documented overflow: a row whose gradient coefficient `alpha` (here `1 + 2 zc lse`
/// with `lse = 3e38`) passes f32::MAX gets +inf where `e_j > 0` and NaN where `e_j` is 0
/// (`inf * 0`), as PyTorch's autograd for a written-out z-loss; the batch's other row stays
/// finite, and just below the limit the row is the exact finite one.
#[test]
fn a_gradient_coefficient_past_f32_max_gives_inf_or_nan_in_its_row() {
    for c in [3usize, 17, 300, 70_000, 140_001] {
        let mut z = vec![-5.0f32; 2 * c];
        z[1] = 3e38;
        z[2] = 11.0;
        z[c] = 2.0;
        for (zc, overflows) in [(0.6f32, true), (0.5, false)] {
            let ce = CrossEntropy::new(c).z_loss(zc).reduction(Reduction::Sum);
            each(ce, &z, &[2, 0], |k, loss, g| {
                let what = format!("{k:?} C={c} zc={zc}");
                assert_eq!(loss.value, f32::INFINITY, "{what}");
                let (row0, row1) = g.split_at(c);
                assert_eq!(
                    row0[1],
                    if overflows { f32::INFINITY } else { 3e38 },
                    "{what}"
                );
                for (j, &v) in row0.iter().enumerate().filter(|&(j, _)| j != 1) {
                    let want = if j == 2 { -1.0 } else { 0.0 };
                    assert!(
                        if overflows { v.is_nan() } else { v == want },
                        "{what}: grad[0,{j}] = {v}"
                    );
                }
                assert!(row1.iter().all(|v| v.is_finite()), "{what}: row 1 finite");
            });
        }
    }
}

#[test]
fn ties_pick_the_first_argmax() {
    // 100 to 300 classes: the argmax's branch-free rescan (blocks of up to 16 vectors,
    // every block on AVX-512) and, on AVX2 from 200 classes, the one that stops at the
    // first hit; 70 000 classes: the online pass's blocks of 512, where AVX-512 stops too.
    for c in [2usize, 8, 16, 31, 64, 100, 200, 300, 70_000] {
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

/// The max sweep works in blocks (256 classes on three-pass rows, 512 in the online
/// pass) and rescans only the winning block: the first maximum must win across blocks,
/// in any lane, in a block's tail, after a block of -inf, and beside NaN entries
/// elsewhere in the row (NaN poisons the loss, so no prediction counts there; the argmax
/// is observed through rows without NaN).
#[test]
fn argmax_is_the_first_maximum_across_blocks() {
    let c = 1500; // blocks of 256 (five, and 220), or 512, 512 and 476 (numbered below)
    let layouts: [&[usize]; 7] = [
        &[3, 1100],      // block 0 against block 2
        &[255, 256],     // across the first boundary of blocks of 256
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

/// Runs `f` in a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn a_nan_loss_from_smoothing_never_counts_as_correct() {
    // Label smoothing with class weights: the -inf logit of a class of weight 0 makes the
    // smoothing term `0 * -inf`, NaN, as in PyTorch, while the row's argmax is its target
    // and its log-sum-exp is finite. Every path (row groups, fused, linked, online,
    // blocked), every entry point, every kernel, 1 and 2 threads; each batch repeats the
    // row so that two threads really split it.
    for c in [2usize, 100, 10_000, 20_000, 140_000] {
        let mut row = vec![0.0f32; c];
        row[0] = 1.0;
        row[c - 1] = NEG;
        let mut w = vec![1.0f32; c];
        w[c - 1] = 0.0;
        let rows = (1 << 18) / c + 2;
        let z = row.repeat(rows);
        let t = vec![0u32; rows];
        let lse_want = (1f64.exp() + (c - 2) as f64).ln();
        for k in kernels() {
            let ce = CrossEntropy::new(c)
                .label_smoothing(0.1)
                .class_weights(w.clone())
                .reduction(Reduction::Sum)
                .kernel(k);
            for threads in [1, 2] {
                let what = format!("{k:?} C={c} threads={threads}");
                on_threads(threads, || {
                    let loss = ce.forward(&z, &t).unwrap();
                    assert!(loss.value.is_nan() && loss.correct == 0, "{what}: {loss:?}");
                    let mut lse = vec![0.0f32; rows];
                    let outs = xent::RowOutputs::new().lse(&mut lse);
                    let loss = ce.forward_with(&z, &t, outs).unwrap();
                    assert!(loss.value.is_nan() && loss.correct == 0, "{what}: {loss:?}");
                    // The finite log-sum-exp of the logits.
                    assert!(
                        lse.iter()
                            .all(|&l| (f64::from(l) - lse_want).abs() < 1e-5 * lse_want),
                        "{what}: lse {}",
                        lse[0]
                    );
                    let mut g = z.clone();
                    let loss = ce.forward_backward(&mut g, &t).unwrap();
                    assert!(loss.value.is_nan() && loss.correct == 0, "{what}: {loss:?}");
                    // The gradient stays finite (as autograd's: the weight-0 class takes
                    // no part in it).
                    assert!(g.iter().all(|v| v.is_finite()), "{what}");
                    let zh: Vec<half::bf16> = z.iter().map(|&v| half::bf16::from_f32(v)).collect();
                    let loss = ce.forward_half(&zh, &t).unwrap();
                    assert!(
                        loss.value.is_nan() && loss.correct == 0,
                        "{what}: half {loss:?}"
                    );
                    let (loss, _) = crate::check::sharded_in_three(&ce, &z, &t).unwrap();
                    assert!(
                        loss.value.is_nan() && loss.correct == 0,
                        "{what}: sharded {loss:?}"
                    );
                });
            }
        }
    }
}

#[test]
fn caps_far_above_the_logits_give_the_uncapped_result() {
    for k in kernels() {
        // The cases: at cap 1e4, 8.3 caps to 8.3 (not 8.299); at 1e30 the logits
        // do not collapse to 0.
        let ce = CrossEntropy::new(2).reduction(Reduction::Sum).kernel(k);
        let got = ce
            .clone()
            .softcap(1e4)
            .forward(&[8.3, 0.0], &[1u8])
            .unwrap();
        let want = ce.forward(&[8.3, 0.0], &[1u8]).unwrap();
        let rel = ((got.value - want.value) / want.value).abs();
        assert!(rel < 1e-6, "{k:?}: {} vs {}", got.value, want.value);
        let got = ce
            .clone()
            .softcap(1e30)
            .forward(&[0.0, 1.0], &[0u8])
            .unwrap();
        assert!(
            (got.value - 1.313_261_7).abs() < 1e-6,
            "{k:?}: {}",
            got.value
        );
        // Every cap from 1e2 up, on rows of every path: loss and gradient within a few
        // ulp of the uncapped ones (the capped logits are, relative).
        for c in [3usize, 300, 20_000, 140_000] {
            let z: Vec<f32> = crate::common::seeded_row(5, 2 * c)
                .iter()
                .map(|v| v.clamp(-30.0, 30.0))
                .collect();
            let t = [1u32, (c - 1) as u32];
            let plain = CrossEntropy::new(c).kernel(k);
            let mut g0 = z.clone();
            let l0 = plain.forward_backward(&mut g0, &t).unwrap();
            for cap in [1e2f32, 1e4, 1e8, 1e30, xent::exp::SOFTCAP_MAX] {
                let mut g = z.clone();
                let l = plain
                    .clone()
                    .softcap(cap)
                    .forward_backward(&mut g, &t)
                    .unwrap();
                // 30 / cap of tanh's curvature, plus the capped logits' few ulp.
                let tol = 2.0 * (30.0 / cap).powi(2) + 1e-5;
                assert!(
                    ((l.value - l0.value) / l0.value).abs() <= tol,
                    "{k:?} C={c} cap={cap:e}: {} vs {}",
                    l.value,
                    l0.value
                );
                let gmax = g0.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (a, b) in g.iter().zip(&g0) {
                    assert!(
                        (a - b).abs() <= tol * gmax + 1e-6,
                        "{k:?} C={c} cap={cap:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn caps_outside_the_normal_range_are_rejected() {
    let z = [0.0f32, 1.0];
    let below = f32::from_bits(xent::exp::SOFTCAP_MIN.to_bits() - 1);
    let above = f32::from_bits(xent::exp::SOFTCAP_MAX.to_bits() + 1);
    for cap in [1e-40f32, below, above, f32::MAX] {
        let err = CrossEntropy::new(2)
            .softcap(cap)
            .forward(&z, &[0u8])
            .unwrap_err();
        assert_eq!(err, xent::Error::Softcap(cap));
        assert!(err.to_string().contains("2^-126"));
    }
    assert_eq!(xent::exp::SOFTCAP_MAX, 2f32.powi(126));
    assert_eq!(xent::exp::SOFTCAP_MIN, 2f32.powi(-126));
    for k in kernels() {
        // The smallest cap: every capped logit is 0 or within a subnormal of it, so the
        // softmax is uniform.
        let ce = CrossEntropy::new(2).kernel(k).reduction(Reduction::Sum);
        let l = ce
            .clone()
            .softcap(xent::exp::SOFTCAP_MIN)
            .forward(&z, &[0u8])
            .unwrap();
        assert!(
            (l.value - std::f32::consts::LN_2).abs() < 1e-6,
            "{k:?}: {}",
            l.value
        );
        let mut g = z;
        ce.clone()
            .softcap(xent::exp::SOFTCAP_MIN)
            .forward_backward(&mut g, &[0u8])
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{k:?}: {g:?}");
        // The largest: the logits themselves.
        let l = ce
            .clone()
            .softcap(xent::exp::SOFTCAP_MAX)
            .forward(&z, &[0u8])
            .unwrap();
        assert!((l.value - 1.313_261_7).abs() < 1e-6, "{k:?}: {}", l.value);
    }
}
