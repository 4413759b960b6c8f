//! The fused linear + cross-entropy head against the reference (`check::linear`): every
//! option, every kernel this CPU runs, chunk boundaries that split the batch at odd rows,
//! ignored rows, -inf bias entries, 1 and 2 threads, bf16 and f16; and its errors.

use crate::check::linear::{Wanted, check_linear, fused};
use crate::common::*;
use proptest::prelude::*;
use xent::{CrossEntropy, Error, LinearCrossEntropy, LinearGrads, Reduction};

/// Small hidden states or weights (finite: the head's inputs are activations).
fn values(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![4 => -2.0f32..2.0, 1 => Just(0.0f32), 1 => -8.0f32..8.0],
        len,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn fused_head_matches_the_reference(
        (ce, h, w, b, t, d, chunk) in (1usize..=70, 1usize..=9, 0usize..=11).prop_flat_map(|(v, d, n)| {
            let bias = prop::option::of(prop::collection::vec(
                prop_oneof![5 => -2.0f32..2.0, 1 => Just(f32::NEG_INFINITY)], v));
            (options(v), values(n * d), values(v * d), bias, Just(v), Just(d), Just(n), 1usize..=4)
                .prop_flat_map(|(ce, h, w, b, v, d, n, chunk)| {
                    let ignore = ce.get_ignore_index().unwrap_or(0);
                    let t = prop::collection::vec(prop_oneof![6 => 0..v as i64, 1 => Just(ignore)], n);
                    (Just(ce), Just(h), Just(w), Just(b), t, Just(d), Just(chunk))
                })
        }),
        k in 0usize..8,
        filter in prop::option::of(prop_oneof![Just(0.0f32), 0.0f32..0.5]),
    ) {
        let kernels = kernels();
        let ce = ce.kernel(kernels[k % kernels.len()]);
        // -inf bias entries with smoothing make an infinite loss: keep the first class
        // finite so no row is all -inf, and the rest masks.
        let b = b.map(|mut b| { b[0] = 0.5; b });
        let v = ce.get_classes();
        let head = LinearCrossEntropy::new(ce, d)
            .memory_budget(4 * v * chunk)
            .gradient_filter(filter);
        check_linear(&head, &h, &w, b.as_deref(), &t).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn chunking_does_not_change_the_result_beyond_rounding() {
    let (n, d, v) = (37, 16, 301);
    let h = seeded_row(3, n * d)
        .iter()
        .map(|x| x.clamp(-3.0, 3.0) / 3.0)
        .collect::<Vec<_>>();
    let w = seeded_row(4, v * d)
        .iter()
        .map(|x| x.clamp(-3.0, 3.0) / 3.0)
        .collect::<Vec<_>>();
    let t: Vec<u32> = (0..n as u32).map(|i| i * 13 % v as u32).collect();
    let ce = CrossEntropy::new(v).label_smoothing(0.1).z_loss(1e-3);
    for chunk in [1, 5, 36, 37, 1000] {
        let head = LinearCrossEntropy::new(ce.clone(), d).memory_budget(4 * v * chunk);
        assert_eq!(head.chunk_rows(n), chunk.min(n));
        check_linear(&head, &h, &w, None, &t).unwrap();
    }
}

#[test]
fn large_enough_for_threaded_gemms_and_every_kernel() {
    // Big enough that the GEMMs and the kernels split work between threads: two chunks of
    // 96 rows, 288 000 logits each (the kernels go parallel from 262 144).
    let (n, d, v) = (192, 64, 3000);
    let h: Vec<f32> = seeded_row(5, n * d)
        .iter()
        .map(|x| x.clamp(-4.0, 4.0) / 8.0)
        .collect();
    let w: Vec<f32> = seeded_row(6, v * d)
        .iter()
        .map(|x| x.clamp(-4.0, 4.0) / 8.0)
        .collect();
    let t: Vec<i64> = (0..n as i64)
        .map(|i| if i % 7 == 0 { -100 } else { i * 31 % v as i64 })
        .collect();
    for k in kernels() {
        let ce = CrossEntropy::new(v).ignore_index(-100).kernel(k);
        let head = LinearCrossEntropy::new(ce, d).memory_budget(4 * v * 96);
        let one = fused(&head, &h, &w, None, &t).unwrap();
        for threads in [1, 2, 3] {
            let ce = head.get_cross_entropy().clone().threads(threads);
            let other = LinearCrossEntropy::new(ce, d).memory_budget(4 * v * 96);
            assert_eq!(
                fused(&other, &h, &w, None, &t).unwrap().bits(),
                one.bits(),
                "{k:?} {threads}"
            );
        }
        // The reference check is slow in debug builds: on a slice of the batch.
        check_linear(&head, &h[..8 * d], &w, None, &t[..8]).unwrap();
    }
}

/// Logits shaped like a trained model's: a bias that falls as `-ln(1 + j)`, so the
/// softmax is concentrated on the first entries and most tiles are below the filter's
/// threshold. Over several tiles each way, with partial tiles at both ends.
#[test]
fn gradient_filter_skips_the_tiles_it_says_and_only_those() {
    let (n, d, v) = (150, 8, 1300);
    let h: Vec<f32> = seeded_row(7, n * d)
        .iter()
        .map(|x| x.clamp(-3.0, 3.0) / 6.0)
        .collect();
    let w: Vec<f32> = seeded_row(8, v * d)
        .iter()
        .map(|x| x.clamp(-3.0, 3.0) / 6.0)
        .collect();
    let b: Vec<f32> = (0..v).map(|j| -2.0 * ((1 + j) as f32).ln()).collect();
    // Targets mostly among the frequent entries, some far out, some ignored.
    let t: Vec<i64> = (0..n as i64)
        .map(|i| match i % 9 {
            0 => -100,
            1 => (i * 97) % v as i64,
            _ => i % 40,
        })
        .collect();
    let weights: Vec<f32> = (0..v).map(|j| 0.5 + (j % 3) as f32 * 0.5).collect();
    let options = [
        CrossEntropy::new(v).ignore_index(-100),
        CrossEntropy::new(v)
            .ignore_index(-100)
            .reduction(Reduction::Sum)
            .label_smoothing(0.05),
        CrossEntropy::new(v)
            .ignore_index(-100)
            .class_weights(weights)
            .z_loss(1e-3)
            .softcap(20.0),
    ];
    for (o, ce) in options.into_iter().enumerate() {
        for eps in [0.0, 2f32.powi(-12), 1e-2] {
            for k in kernels() {
                let head = LinearCrossEntropy::new(ce.clone().kernel(k), d)
                    .memory_budget(4 * v * 70)
                    .gradient_filter(Some(eps));
                check_linear(&head, &h, &w, Some(&b), &t)
                    .unwrap_or_else(|e| panic!("options {o} eps {eps} {k:?}: {e}"));
            }
            let head = LinearCrossEntropy::new(ce.clone(), d).gradient_filter(Some(eps));
            let r = xent::reference::linear_cross_entropy(&head, &h, &w, Some(&b), &t).unwrap();
            let (_, count) = Wanted::filtered(&head, &h, &w, &r, &t, eps).unwrap();
            // 3 x 3 tiles: the first vocabulary block is always kept; at 2^-12 and above
            // the far blocks are skipped, so the test is not vacuous.
            assert_eq!(
                count.kept + count.skipped + count.borderline,
                9,
                "{count:?}"
            );
            assert!(count.kept >= 3, "options {o} eps {eps}: {count:?}");
            if eps > 0.0 {
                assert!(count.skipped >= 3, "options {o} eps {eps}: {count:?}");
            }
        }
    }
}

#[test]
fn gradient_filter_off_at_one_and_out_of_range() {
    let (d, v) = (2, 3);
    let h = [1.0f32, -1.0];
    let w = [0.5f32, 0.0, 0.0, 0.5, -0.5, 0.5];
    for eps in [-0.1f32, 1.01, f32::NAN, f32::INFINITY] {
        let head = LinearCrossEntropy::new(CrossEntropy::new(v), d).gradient_filter(Some(eps));
        let (mut dh, mut dw) = ([9.0f32; 2], [9.0f32; 6]);
        let e = head.forward_backward(&h, &w, None, &[0u8], LinearGrads::new(&mut dh, &mut dw));
        assert!(
            matches!(e, Err(Error::GradientFilter(x)) if x.to_bits() == eps.to_bits()),
            "{e:?}"
        );
        assert!(dh.iter().chain(&dw).all(|&x| x == 9.0), "written on error");
    }
    // eps = 1 skips every tile (no probability exceeds 1): only the target entries remain.
    let head = LinearCrossEntropy::new(CrossEntropy::new(v), d).gradient_filter(Some(1.0));
    let exact = fused(
        &LinearCrossEntropy::new(CrossEntropy::new(v), d),
        &h,
        &w,
        None,
        &[1u8],
    )
    .unwrap();
    let got = fused(&head, &h, &w, None, &[1u8]).unwrap();
    let g_t = (got.d_weight[2] / h[0], got.d_weight[3] / h[1]);
    assert_eq!((got.d_weight[0], got.d_weight[5]), (0.0, 0.0));
    assert!(g_t.0 < 0.0 && (g_t.0 - g_t.1).abs() < 1e-6);
    assert_eq!(
        got.d_weight[2..4],
        exact.d_weight[2..4],
        "the target row is exact"
    );
    assert_eq!(
        (got.value, got.d_bias.clone()),
        (exact.value, exact.d_bias.clone())
    );
}

#[test]
fn accumulate_adds_and_overwrite_replaces() {
    let (n, d, v) = (5, 3, 7);
    let h: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let w: Vec<f32> = (0..v * d).map(|i| (i as f32 * 0.71).cos()).collect();
    let b: Vec<f32> = (0..v).map(|i| i as f32 * 0.1).collect();
    let t = [0u8, 3, 6, 2, 2];
    let head = LinearCrossEntropy::new(CrossEntropy::new(v).reduction(Reduction::Sum), d)
        .memory_budget(4 * v * 2);
    let once = fused(&head, &h, &w, Some(&b), &t).unwrap();
    let (mut dh, mut dw, mut db) = (vec![1.0f32; n * d], vec![1.0f32; v * d], vec![1.0f32; v]);
    let g = LinearGrads::new(&mut dh, &mut dw)
        .bias(&mut db)
        .accumulate(true);
    head.forward_backward(&h, &w, Some(&b), &t, g).unwrap();
    for (acc, one) in [
        (&dh, &once.d_hidden),
        (&dw, &once.d_weight),
        (&db, &once.d_bias),
    ] {
        assert!(
            acc.iter()
                .zip(one)
                .all(|(a, o)| (a - (o + 1.0)).abs() < 1e-6)
        );
    }
    let g = LinearGrads::new(&mut dh, &mut dw).bias(&mut db);
    head.forward_backward(&h, &w, Some(&b), &t, g).unwrap();
    assert_eq!((dh, dw, db), (once.d_hidden, once.d_weight, once.d_bias));
}

#[test]
fn empty_batch_and_all_ignored() {
    let (d, v) = (4, 6);
    let w = vec![0.25f32; v * d];
    let head = LinearCrossEntropy::new(CrossEntropy::new(v).ignore_index(-1), d);
    let (mut dh, mut dw) = (vec![], vec![7.0f32; v * d]);
    let loss = head
        .forward_backward(
            &[] as &[f32],
            &w,
            None,
            &[] as &[i64],
            LinearGrads::new(&mut dh, &mut dw),
        )
        .unwrap();
    assert_eq!((loss.value, loss.rows), (0.0, 0));
    assert!(dw.iter().all(|&x| x == 0.0), "overwritten with zeros");
    let h = vec![1.0f32; 2 * d];
    let mut dh = vec![7.0f32; 2 * d];
    let loss = head
        .forward_backward(
            &h,
            &w,
            None,
            &[-1i64, -1],
            LinearGrads::new(&mut dh, &mut dw),
        )
        .unwrap();
    assert_eq!((loss.value, loss.rows), (0.0, 0));
    assert!(dh.iter().chain(&dw).all(|&x| x == 0.0));
}

#[test]
fn errors_come_before_any_write() {
    let (d, v) = (3, 4);
    let (h, w, b) = (vec![0.5f32; 2 * d], vec![0.5f32; v * d], vec![0.0f32; v]);
    let head = LinearCrossEntropy::new(CrossEntropy::new(v), d);
    let call = |head: &LinearCrossEntropy,
                h: &[f32],
                w: &[f32],
                b: Option<&[f32]>,
                t: &[i64],
                dh: usize,
                dw: usize,
                db: Option<usize>| {
        let (mut gh, mut gw, mut gb) = (
            vec![9.0f32; dh],
            vec![9.0f32; dw],
            vec![9.0f32; db.unwrap_or(0)],
        );
        let mut g = LinearGrads::new(&mut gh, &mut gw);
        if db.is_some() {
            g = g.bias(&mut gb);
        }
        let r = head.forward_backward(h, w, b, t, g);
        if r.is_err() {
            assert!(
                gh.iter().chain(&gw).chain(&gb).all(|&x| x == 9.0),
                "written on error"
            );
        }
        r.err()
    };
    let t = [0i64, 3];
    let lin = |what, len, expected| {
        Some(Error::LinearLength {
            what,
            len,
            expected,
        })
    };
    assert_eq!(
        call(
            &LinearCrossEntropy::new(CrossEntropy::new(v), 0),
            &h,
            &w,
            None,
            &t,
            6,
            12,
            None
        ),
        Some(Error::ZeroDim)
    );
    assert_eq!(
        call(&head, &h[..5], &w, None, &t, 5, 12, None),
        Some(Error::HiddenShape { len: 5, dim: 3 })
    );
    assert_eq!(
        call(&head, &h, &w[..11], None, &t, 6, 11, None),
        lin("weight", 11, 12)
    );
    assert_eq!(
        call(&head, &h, &w, Some(&b[..3]), &t, 6, 12, None),
        lin("bias", 3, 4)
    );
    assert_eq!(
        call(&head, &h, &w, None, &t, 5, 12, None),
        lin("d_hidden", 5, 6)
    );
    assert_eq!(
        call(&head, &h, &w, None, &t, 6, 13, None),
        lin("d_weight", 13, 12)
    );
    assert_eq!(
        call(&head, &h, &w, None, &t, 6, 12, Some(3)),
        lin("d_bias", 3, 4)
    );
    assert_eq!(
        call(&head, &h, &w, None, &t[..1], 6, 12, None),
        Some(Error::TargetsLength {
            targets: 1,
            rows: 2
        })
    );
    assert_eq!(
        call(&head, &h, &w, None, &[0, 4], 6, 12, None),
        Some(Error::TargetOutOfRange {
            row: 1,
            target: 4,
            classes: 4
        })
    );
    let bad = LinearCrossEntropy::new(CrossEntropy::new(v).label_smoothing(2.0), d);
    assert_eq!(
        call(&bad, &h, &w, None, &t, 6, 12, None),
        Some(Error::LabelSmoothing(2.0))
    );
    assert_eq!(
        call(
            &LinearCrossEntropy::new(CrossEntropy::new(0), d),
            &h,
            &[],
            None,
            &t,
            6,
            0,
            None
        ),
        Some(Error::ZeroClasses)
    );
    assert_eq!(call(&head, &h, &w, None, &t, 6, 12, Some(4)), None);
    // Per-row outputs of the wrong length.
    let mut lse = [0.0f32; 3];
    let e = head
        .forward_with(&h, &w, None, &t, xent::RowOutputs::new().lse(&mut lse))
        .unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 3,
            expected: 2
        }
    );
    assert_eq!(lse, [0.0; 3]);
}
