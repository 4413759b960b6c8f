//! Every rejected input: the right error, a message naming the numbers, and the caller's
//! buffers untouched (compared bit for bit, NaNs included).

use crate::check::bits;
use xent::{CrossEntropy, Error, Kernel};

/// Runs the three entry points on copies and checks they fail with `want` and leave the
/// logits and the gradient buffer exactly as they were.
fn rejects<T: xent::Target>(ce: &CrossEntropy, z: &[f32], t: &[T], grad_len: usize, want: &Error) {
    assert_eq!(ce.forward(z, t).as_ref().err(), Some(want));
    let mut zz = z.to_vec();
    assert_eq!(ce.forward_backward(&mut zz, t).as_ref().err(), Some(want));
    assert_eq!(bits(&zz), bits(z), "in-place call wrote before failing");
    let mut g = vec![f32::NAN; grad_len];
    let before = bits(&g);
    let err = ce.forward_backward_into(z, t, &mut g).unwrap_err();
    if grad_len == z.len() {
        assert_eq!(&err, want);
    }
    assert_eq!(bits(&g), before, "gradient buffer written before failing");
    assert!(!err.to_string().is_empty());
}

#[test]
fn zero_classes() {
    rejects(
        &CrossEntropy::new(0),
        &[],
        &[0u8; 0],
        0,
        &Error::ZeroClasses,
    );
    assert!(xent::softmax(&mut [], 0).is_err());
}

#[test]
fn logits_not_a_multiple_of_classes() {
    let e = Error::LogitsShape { len: 7, classes: 3 };
    rejects(&CrossEntropy::new(3), &[1.0; 7], &[0u8, 1], 7, &e);
    assert!(e.to_string().contains('7') && e.to_string().contains('3'));
}

#[test]
fn targets_length() {
    rejects(
        &CrossEntropy::new(3),
        &[1.0; 6],
        &[0u8],
        6,
        &Error::TargetsLength {
            targets: 1,
            rows: 2,
        },
    );
}

#[test]
fn target_out_of_range_or_negative() {
    let z = [0.5f32; 6];
    rejects(
        &CrossEntropy::new(3),
        &z,
        &[0u8, 3],
        6,
        &Error::TargetOutOfRange {
            row: 1,
            target: 3,
            classes: 3,
        },
    );
    rejects(
        &CrossEntropy::new(3),
        &z,
        &[-1i64, 0],
        6,
        &Error::TargetOutOfRange {
            row: 0,
            target: -1,
            classes: 3,
        },
    );
    // The last row is bad: the first rows must not have been written either.
    let z = vec![0.5f32; 300];
    let mut t = vec![0u64; 100];
    t[99] = u64::MAX;
    rejects(
        &CrossEntropy::new(3),
        &z,
        &t,
        300,
        &Error::TargetOutOfRange {
            row: 99,
            target: u64::MAX as i128,
            classes: 3,
        },
    );
    // -100 is fine only when it is the ignore index.
    assert!(
        CrossEntropy::new(3)
            .ignore_index(-100)
            .forward(&[0.0; 3], &[-100i32])
            .is_ok()
    );
    rejects(
        &CrossEntropy::new(3).ignore_index(-1),
        &[0.0; 3],
        &[-100i32],
        3,
        &Error::TargetOutOfRange {
            row: 0,
            target: -100,
            classes: 3,
        },
    );
}

#[test]
fn wide_targets_do_not_wrap() {
    // 2^32 + 1 would wrap to class 1 in a u32 cast; it must be rejected.
    let t = [(1u64 << 32) + 1];
    rejects(
        &CrossEntropy::new(3),
        &[0.0; 3],
        &t,
        3,
        &Error::TargetOutOfRange {
            row: 0,
            target: (1i128 << 32) + 1,
            classes: 3,
        },
    );
    // An ignore index is compared without narrowing either.
    let ce = CrossEntropy::new(3).ignore_index(1);
    assert_eq!(
        ce.forward(&[0.0; 3], &[(1u64 << 32) + 1]).unwrap_err(),
        Error::TargetOutOfRange {
            row: 0,
            target: (1i128 << 32) + 1,
            classes: 3
        }
    );
    // Classes beyond u32::MAX with u32 targets: targets simply stay below; shape checks
    // are exact integer arithmetic (no logits needed to provoke an overflow).
    let huge = CrossEntropy::new(usize::MAX);
    assert_eq!(
        huge.forward(&[0.0; 3], &[0u32; 0]).unwrap_err(),
        Error::LogitsShape {
            len: 3,
            classes: usize::MAX
        }
    );
    assert_eq!(huge.forward(&[], &[0u32; 0]).unwrap().rows, 0);
}

/// The target sweep works on the low 64 bits at vector width; values that agree with the
/// ignore index or a class only in those bits must still be rejected, at the right row,
/// wherever they sit in a long batch.
#[test]
fn targets_equal_to_the_ignore_index_only_modulo_2_64_are_rejected() {
    let rows = 1000;
    let z = vec![0.0f32; rows * 3];
    let ce = CrossEntropy::new(3).ignore_index(-100);
    for bad_row in [0, 1, 16, 517, rows - 1] {
        let check = |t: &dyn Fn(usize) -> Result<xent::Loss, xent::Error>, target: i128| {
            assert_eq!(
                t(bad_row).unwrap_err(),
                Error::TargetOutOfRange {
                    row: bad_row,
                    target,
                    classes: 3
                }
            );
        };
        // 2^64 - 100 has the bit pattern of -100.
        let alias = (-100i64) as u64;
        let mk = |r: usize, v: u64| -> Vec<u64> {
            (0..rows)
                .map(|i| if i == r { v } else { (i % 3) as u64 })
                .collect()
        };
        check(&|r| ce.forward(&z, &mk(r, alias)), i128::from(alias));
        let as_usize =
            |r: usize| -> Vec<usize> { mk(r, alias).iter().map(|&v| v as usize).collect() };
        check(&|r| ce.forward(&z, &as_usize(r)), i128::from(alias));
        // 2^63 is i64::MIN's pattern; without an ignore index, i64::MIN itself.
        check(&|r| ce.forward(&z, &mk(r, 1 << 63)), 1i128 << 63);
        let plain = CrossEntropy::new(3);
        let signed = |r: usize| -> Vec<i64> {
            (0..rows)
                .map(|i| if i == r { i64::MIN } else { (i % 3) as i64 })
                .collect()
        };
        check(&|r| plain.forward(&z, &signed(r)), i128::from(i64::MIN));
        // -1 in i32 against class counts near u32::MAX is still negative.
        let small =
            |r: usize| -> Vec<i32> { (0..rows).map(|i| if i == r { -1 } else { 0 }).collect() };
        check(&|r| ce.forward(&z, &small(r)), -1);
    }
    // The ignore index itself, in every type that can hold it, is ignored.
    let t: Vec<u8> = (0..rows)
        .map(|i| if i % 5 == 0 { 200 } else { (i % 3) as u8 })
        .collect();
    let ce = CrossEntropy::new(3).ignore_index(200);
    assert_eq!(ce.forward(&z, &t).unwrap().rows, rows - rows / 5);
    let t: Vec<i32> = (0..rows)
        .map(|i| if i % 5 == 0 { -100 } else { (i % 3) as i32 })
        .collect();
    let ce = CrossEntropy::new(3).ignore_index(-100);
    assert_eq!(ce.forward(&z, &t).unwrap().rows, rows - rows / 5);
}

#[test]
fn gradient_buffer_length() {
    let ce = CrossEntropy::new(2);
    let mut g = vec![f32::NAN; 3];
    let before = bits(&g);
    assert_eq!(
        ce.forward_backward_into(&[0.0; 4], &[0u8, 1], &mut g)
            .unwrap_err(),
        Error::OutputLength {
            len: 3,
            expected: 4
        }
    );
    assert_eq!(bits(&g), before);
}

#[test]
fn class_weights() {
    let z = [0.5f32; 6];
    rejects(
        &CrossEntropy::new(3).class_weights(vec![1.0; 2]),
        &z,
        &[0u8, 1],
        6,
        &Error::WeightsLength { len: 2, classes: 3 },
    );
    rejects(
        &CrossEntropy::new(3).class_weights(vec![1.0, 1.0, f32::INFINITY]),
        &z,
        &[0u8, 1],
        6,
        &Error::NonFiniteWeight {
            class: 2,
            weight: f32::INFINITY,
        },
    );
    // NaN: compared by kind (NaN != NaN).
    let e = CrossEntropy::new(3)
        .class_weights(vec![1.0, f32::NAN, 1.0])
        .forward(&z, &[0u8, 1])
        .unwrap_err();
    assert!(matches!(e, Error::NonFiniteWeight { class: 1, weight } if weight.is_nan()));
}

#[test]
fn label_smoothing_range() {
    for eps in [-0.1f32, 1.0001, f32::INFINITY] {
        rejects(
            &CrossEntropy::new(2).label_smoothing(eps),
            &[0.0; 2],
            &[0u8],
            2,
            &Error::LabelSmoothing(eps),
        );
    }
    // NaN: compare by kind (NaN != NaN).
    let e = CrossEntropy::new(2)
        .label_smoothing(f32::NAN)
        .forward(&[0.0; 2], &[0u8])
        .unwrap_err();
    assert!(matches!(e, Error::LabelSmoothing(v) if v.is_nan()));
    assert!(
        CrossEntropy::new(2)
            .label_smoothing(1.0)
            .forward(&[0.0; 2], &[0u8])
            .is_ok()
    );
}

#[test]
fn unavailable_kernel_is_an_error_not_an_illegal_instruction() {
    let missing: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| !k.is_available())
        .collect();
    for k in &missing {
        let ce = CrossEntropy::new(2).kernel(*k);
        rejects(&ce, &[0.0; 2], &[0u8], 2, &Error::KernelUnavailable(*k));
        assert!(ce.softmax(&mut [0.0; 2]).is_err());
        assert_eq!(
            xent::exp::exp_slice(*k, &mut [0.0]).unwrap_err(),
            Error::KernelUnavailable(*k)
        );
    }
    // A variant of another architecture is always missing, so the loop above always ran.
    assert!(!missing.is_empty());
    #[cfg(target_arch = "x86_64")]
    assert!(missing.contains(&Kernel::Neon));
    #[cfg(target_arch = "aarch64")]
    assert!(missing.contains(&Kernel::Avx2) && missing.contains(&Kernel::Avx512));
    for k in Kernel::ALL {
        assert_eq!(k.resolve().is_ok(), k.is_available());
    }
}

#[test]
fn softmax_family_errors_leave_buffers_alone() {
    let ce = CrossEntropy::new(3);
    let mut x = vec![1.0f32, f32::NAN, 3.0, 4.0];
    let before = bits(&x);
    assert_eq!(
        ce.softmax(&mut x).unwrap_err(),
        Error::LogitsShape { len: 4, classes: 3 }
    );
    assert_eq!(
        ce.log_softmax(&mut x).unwrap_err(),
        Error::LogitsShape { len: 4, classes: 3 }
    );
    assert_eq!(bits(&x), before);
    let mut out = vec![7.0f32; 2];
    assert_eq!(
        ce.softmax_into(&[0.0; 3], &mut out).unwrap_err(),
        Error::OutputLength {
            len: 2,
            expected: 3
        }
    );
    assert_eq!(
        ce.log_softmax_into(&[0.0; 3], &mut out).unwrap_err(),
        Error::OutputLength {
            len: 2,
            expected: 3
        }
    );
    assert_eq!(
        ce.logsumexp(&[0.0; 3], &mut out).unwrap_err(),
        Error::OutputLength {
            len: 2,
            expected: 1
        }
    );
    assert_eq!(out, [7.0, 7.0]);
}

#[test]
fn cross_entropy_is_send_sync_clone_debug_and_kernel_copy_eq() {
    fn send_sync_clone_debug<T: Send + Sync + Clone + std::fmt::Debug>() {}
    fn copy_eq<T: Copy + Eq + std::fmt::Debug + std::hash::Hash>() {}
    send_sync_clone_debug::<CrossEntropy>();
    send_sync_clone_debug::<Error>();
    copy_eq::<Kernel>();
    copy_eq::<xent::Reduction>();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<Error>();
}

#[test]
fn z_loss_and_softcap_ranges() {
    let z = [0.5f32, -0.5];
    for c in [-1e-3f32, f32::NAN, f32::INFINITY] {
        let got = CrossEntropy::new(2)
            .z_loss(c)
            .forward(&z, &[0u8])
            .unwrap_err();
        assert!(matches!(got, Error::ZLoss(v) if v.to_bits() == c.to_bits()));
        assert!(got.to_string().contains("z-loss"));
        if !c.is_nan() {
            // (NaN inside the error compares unequal to itself.)
            rejects(&CrossEntropy::new(2).z_loss(c), &z, &[0u8], 2, &got);
        }
    }
    for c in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let got = CrossEntropy::new(2)
            .softcap(c)
            .forward(&z, &[0u8])
            .unwrap_err();
        assert!(matches!(got, Error::Softcap(v) if v.to_bits() == c.to_bits()));
        if !c.is_nan() {
            rejects(&CrossEntropy::new(2).softcap(c), &z, &[0u8], 2, &got);
        }
    }
    // The edges of the valid ranges are accepted.
    assert!(
        CrossEntropy::new(2)
            .z_loss(0.0)
            .softcap(f32::MIN_POSITIVE)
            .forward(&z, &[0u8])
            .is_ok()
    );
}

#[test]
fn per_row_buffers_and_backward_inputs() {
    let ce = CrossEntropy::new(2);
    let z = [0.5f32, -0.5, 1.0, 2.0];
    let t = [0u8, 1];
    // A per-row output of the wrong length: nothing written anywhere.
    let (mut short, mut ok) = ([f32::NAN; 1], [f32::NAN; 2]);
    let outs = xent::RowOutputs::new().losses(&mut ok).lse(&mut short);
    let e = ce.forward_with(&z, &t, outs).unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 1,
            expected: 2
        }
    );
    assert!(ok.iter().chain(&short).all(|v| v.is_nan()));
    let mut zz = z;
    let outs = xent::RowOutputs::new().losses(&mut short);
    assert!(ce.forward_backward_with(&mut zz, &t, outs).is_err());
    assert_eq!(bits(&zz), bits(&z));
    // Predictions of the wrong length, the other buffers right: nothing written.
    let mut long = [7usize; 3];
    let outs = xent::RowOutputs::new()
        .losses(&mut ok)
        .predictions(&mut long);
    let e = ce.forward_backward_with(&mut zz, &t, outs).unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 3,
            expected: 2
        }
    );
    assert_eq!((long, bits(&zz)), ([7; 3], bits(&z)));
    assert!(ok.iter().all(|v| v.is_nan()));
    let mut h = z.map(xent::half::f16::from_f32);
    let outs = xent::RowOutputs::new().predictions(&mut long);
    assert!(ce.forward_backward_half_with(&mut h, &t, outs).is_err());
    assert_eq!((long, h), ([7; 3], z.map(xent::half::f16::from_f32)));
    // Backward: lse and upstream need one value per row.
    for (lse, up, what) in [
        (&[0.0f32][..], &[1.0f32, 1.0][..], "lse"),
        (&[0.0, 0.0], &[1.0], "upstream"),
    ] {
        let mut zz = z;
        let e = ce.backward(&mut zz, &t, lse, up).unwrap_err();
        assert_eq!(
            e,
            Error::InputLength {
                what,
                len: 1,
                expected: 2
            }
        );
        assert!(e.to_string().contains(what));
        assert_eq!(bits(&zz), bits(&z));
    }
    let mut g = [f32::NAN; 3];
    let e = ce
        .backward_into(&z, &t, &[0.0; 2], &[1.0; 2], &mut g)
        .unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 3,
            expected: 4
        }
    );
    assert!(g.iter().all(|v| v.is_nan()));
    // Target errors come first, as for every entry point.
    let mut zz = z;
    let e = ce
        .backward(&mut zz, &[0u8, 2], &[0.0; 2], &[1.0; 2])
        .unwrap_err();
    assert!(matches!(e, Error::TargetOutOfRange { row: 1, .. }));
    assert_eq!(bits(&zz), bits(&z));
}

/// A configuration reused for another class count keeps its options, and its class
/// weights must then match the new count; the count and the threads read back as set.
#[test]
fn reconfigured_class_counts_and_threads() {
    let base = CrossEntropy::new(3)
        .class_weights(vec![1.0, 2.0, 3.0])
        .label_smoothing(0.1)
        .threads(1);
    let z = [0.5f32, -0.5, 1.0, 2.0];
    let mut zz = z;
    let e = base
        .clone()
        .classes(2)
        .forward_backward(&mut zz, &[0u8, 1])
        .unwrap_err();
    assert_eq!(e, Error::WeightsLength { len: 3, classes: 2 });
    assert_eq!(bits(&zz), bits(&z));
    assert_eq!(
        base.clone().classes(0).forward(&[], &[0u8; 0]).unwrap_err(),
        Error::ZeroClasses
    );
    let two = base.clone().classes(2).class_weights(vec![1.0, 2.0]);
    assert_eq!(
        (
            two.get_classes(),
            two.get_label_smoothing(),
            two.get_threads()
        ),
        (2, 0.1, 1)
    );
    let fresh = CrossEntropy::new(2)
        .class_weights(vec![1.0, 2.0])
        .label_smoothing(0.1);
    assert_eq!(
        two.forward(&z, &[0u8, 1]).unwrap(),
        fresh.forward(&z, &[0u8, 1]).unwrap()
    );
    assert_eq!(CrossEntropy::new(4).get_threads(), 0);
}
