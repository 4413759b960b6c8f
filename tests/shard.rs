//! Vocabulary sharding: statistics per shard, merged in any order, reproduce the
//! unsharded loss and gradient (checked against the reference with the shared tolerance
//! model), for 1 to 8 shards of uneven (even empty) widths.

use crate::check::{check_grad, check_loss, check_rows, sharded, sharded_with_rows};
use crate::common::*;
use proptest::prelude::*;
use xent::{CrossEntropy, Error, Kernel, RowOutputs, Shard, ShardStats};

/// Cuts `0..c` at the given fractions into `n` shards (some possibly empty).
fn shards(c: usize, cuts: &[u16]) -> Vec<Shard> {
    let mut at: Vec<usize> = cuts.iter().map(|&f| usize::from(f) * c / 65535).collect();
    at.extend([0, c]);
    at.sort_unstable();
    at.windows(2)
        .map(|w| Shard::new(w[0], w[1] - w[0]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn shards_reproduce_the_unsharded_loss_and_gradient(
        (ce, z, t) in case(),
        cuts in prop::collection::vec(any::<u16>(), 0..8),
        order_seed in any::<u64>(),
    ) {
        let parts = shards(ce.get_classes(), &cuts);
        // Every shard exactly once, in a seeded order.
        let mut order: Vec<usize> = (0..parts.len()).collect();
        let mut s = order_seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let want = xent::reference::cross_entropy(&ce, &z, &t).unwrap();
        for k in Kernel::available() {
            let ce = ce.clone().kernel(k);
            let s = sharded_with_rows(&ce, &z, &t, &parts, &order).unwrap();
            let what = format!("{k:?} {} shards {parts:?}", parts.len());
            check_loss(&ce, &z, &t, &s.loss, &want, &what).map_err(TestCaseError::fail)?;
            check_grad(&ce, &z, &t, &s.grad, &want.grad, &want.lse, None, &what)
                .map_err(TestCaseError::fail)?;
            check_rows(&ce, &z, &t, &s.losses, &s.lse, &want, &what).map_err(TestCaseError::fail)?;
        }
    }
}

#[test]
fn merge_is_order_independent_for_the_argmax_and_lse() {
    let c = 1000;
    // Finite logits (with smoothing a -inf would make the loss +inf in both orders).
    let z: Vec<f32> = seeded_row(3, c)
        .iter()
        .map(|v| v.clamp(-50.0, 50.0))
        .collect();
    let t = [17i64];
    let ce = CrossEntropy::new(c).label_smoothing(0.1).z_loss(1e-3);
    let parts = shards(c, &[100, 9000, 30000, 30001, 65535]);
    let fwd: Vec<usize> = (0..parts.len()).collect();
    let rev: Vec<usize> = fwd.iter().rev().copied().collect();
    let (a, ga) = sharded(&ce, &z, &t, &parts, &fwd).unwrap();
    let (b, gb) = sharded(&ce, &z, &t, &parts, &rev).unwrap();
    assert_eq!((a.rows, a.correct), (b.rows, b.correct));
    assert!(a.value.is_finite());
    assert!((a.value - b.value).abs() <= 1e-5 * a.value.abs());
    for (x, y) in ga.iter().zip(&gb) {
        assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
    }
}

/// The reported capped values keep the sign of a zero, as `cap * tanh(z / cap)` does: a
/// row of `-0` logits has max and target logit `-0` (the passes' tanh, which may give
/// `+0` there, must not leak into them), on every kernel, short and long rows.
#[test]
fn capped_statistics_keep_a_zeros_sign() {
    for c in [3usize, 40, 1000] {
        let z = vec![-0.0f32; 2 * c];
        let t = [0u32, c as u32 - 1];
        for k in Kernel::available() {
            let ce = CrossEntropy::new(c).softcap(30.0).kernel(k);
            let mut out = [ShardStats::EMPTY; 2];
            ce.shard_stats(&z, Shard::new(0, c), &t, &mut out).unwrap();
            for s in &out {
                assert_eq!(s.max.to_bits(), (-0.0f32).to_bits(), "{k:?} C={c}: {s:?}");
                let yt = s.target_logit.map(f32::to_bits);
                assert_eq!(yt, Some((-0.0f32).to_bits()), "{k:?} C={c}: {s:?}");
            }
        }
    }
}

#[test]
fn shard_errors_leave_buffers_alone() {
    let ce = CrossEntropy::new(4);
    let t = [1u8, 3];
    let z = [0.5f32; 4];
    let mut out = [ShardStats::EMPTY; 2];
    let e = ce
        .shard_stats(&z, Shard::new(3, 2), &t, &mut out)
        .unwrap_err();
    assert_eq!(
        e,
        Error::ShardRange {
            offset: 3,
            width: 2,
            classes: 4
        }
    );
    assert!(e.to_string().contains('3'));
    let e = ce
        .shard_stats(&z, Shard::new(usize::MAX, 2), &t, &mut out)
        .unwrap_err();
    assert!(matches!(e, Error::ShardRange { .. }));
    let e = ce
        .shard_stats(&z[..3], Shard::new(0, 2), &t, &mut out)
        .unwrap_err();
    assert_eq!(e, Error::LogitsShape { len: 3, classes: 2 });
    let e = ce
        .shard_stats(&z, Shard::new(0, 1), &t, &mut out)
        .unwrap_err();
    assert_eq!(
        e,
        Error::TargetsLength {
            targets: 2,
            rows: 4
        }
    );
    let e = ce
        .shard_stats(&z, Shard::new(0, 2), &t, &mut out[..1])
        .unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 1,
            expected: 2
        }
    );
    let e = ce
        .shard_stats(&z, Shard::new(0, 2), &[1u8, 4], &mut out)
        .unwrap_err();
    assert!(matches!(e, Error::TargetOutOfRange { row: 1, .. }));
    assert_eq!(out, [ShardStats::EMPTY; 2]);
    // Statistics without the target's shard: an error, not a silent NaN.
    ce.shard_stats(&z, Shard::new(0, 2), &t, &mut out).unwrap();
    let e = ce.shard_loss(&out, &t).unwrap_err();
    assert_eq!(
        e,
        Error::ShardCoverage {
            row: 0,
            covered: 2,
            first: 0,
            end: 2,
            classes: 4
        }
    );
    assert!(e.to_string().contains("0..4"));
    let mut g = z;
    assert_eq!(
        ce.shard_backward(&mut g, Shard::new(0, 2), &t, &out)
            .unwrap_err(),
        e
    );
    assert_eq!(g, z);
    // Full coverage but no target logit (statistics rebuilt by hand without it).
    let mut rest = [ShardStats::EMPTY; 2];
    let zz = [0.5f32; 4];
    ce.shard_stats(&zz, Shard::new(2, 2), &t, &mut rest)
        .unwrap();
    let mut full: Vec<ShardStats> = out
        .iter()
        .zip(&rest)
        .map(|(a, b)| a.merge(*b).unwrap())
        .collect();
    // shard_loss_with: a buffer of the wrong length, and the errors above, write nothing.
    let (mut losses, mut lse) = ([7.0f32; 2], [7.0f32; 3]);
    let out_rows = RowOutputs::new().losses(&mut losses).lse(&mut lse);
    let e = ce.shard_loss_with(&full, &t, out_rows).unwrap_err();
    assert_eq!(
        e,
        Error::OutputLength {
            len: 3,
            expected: 2
        }
    );
    assert_eq!((losses, lse), ([7.0; 2], [7.0; 3]));
    let e = ce
        .shard_loss_with(&out, &t, RowOutputs::new().losses(&mut losses))
        .unwrap_err();
    assert!(matches!(e, Error::ShardCoverage { .. }));
    assert_eq!(losses, [7.0; 2]);
    full[1].target_logit = None;
    let e = ce.shard_loss(&full, &t).unwrap_err();
    assert_eq!(e, Error::ShardMissingTarget { row: 1 });
    let e = ce
        .shard_loss_with(&full, &t, RowOutputs::new().losses(&mut losses))
        .unwrap_err();
    assert_eq!(e, Error::ShardMissingTarget { row: 1 });
    assert_eq!(losses, [7.0; 2]);
    let e = ce.shard_loss(&out[..1], &t).unwrap_err();
    assert_eq!(
        e,
        Error::InputLength {
            what: "stats",
            len: 1,
            expected: 2
        }
    );
    // An empty shard is valid and merges as the identity.
    let mut empty = [ShardStats::EMPTY; 2];
    ce.shard_stats(&[], Shard::new(4, 0), &t, &mut empty)
        .unwrap();
    assert_eq!(empty[0].merge(out[0]), Ok(out[0]));
}

/// The statistics of `parts` (shards of a 6-class row, one row, target 0), merged left
/// to right; then the loss from them.
fn merged_loss(parts: &[(usize, usize)]) -> Result<xent::Loss, Error> {
    let ce = CrossEntropy::new(6);
    let z = [0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0];
    let mut acc = ShardStats::EMPTY;
    for &(lo, w) in parts {
        let mut s = [ShardStats::EMPTY];
        ce.shard_stats(&z[lo..lo + w], Shard::new(lo, w), &[0u8], &mut s)?;
        acc = acc.merge(s[0])?;
    }
    ce.shard_loss(&[acc], &[0u8])
}

#[test]
fn repeated_overlapping_or_missing_shards_are_errors() {
    let whole = merged_loss(&[(0, 6)]).unwrap();
    // Any order and grouping of a partition gives the same result.
    assert_eq!(
        merged_loss(&[(4, 2), (0, 1), (1, 3)]).unwrap().correct,
        whole.correct
    );
    // The same shard twice: seen by `merge`.
    let e = merged_loss(&[(0, 3), (3, 3), (3, 3)]).unwrap_err();
    assert!(matches!(e, Error::ShardOverlap { .. }), "{e:?}");
    assert!(e.to_string().contains("overlap"));
    // Two overlapping shards: seen by `merge`.
    let e = merged_loss(&[(0, 4), (3, 3)]).unwrap_err();
    assert_eq!(
        e,
        Error::ShardOverlap {
            classes: (4, 3),
            first: 0,
            end: 6
        }
    );
    // An overlap (class 1) hidden by a gap (class 3) between shards merged earlier: the
    // counts fit the span, so `merge` cannot see it; the fingerprint can.
    let e = merged_loss(&[(0, 2), (4, 2), (1, 2)]).unwrap_err();
    assert!(
        matches!(e, Error::ShardCoverage { covered: 6, .. }),
        "{e:?}"
    );
    // A missing shard.
    let e = merged_loss(&[(0, 2), (2, 2)]).unwrap_err();
    assert!(
        matches!(e, Error::ShardCoverage { covered: 4, .. }),
        "{e:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A partition with one shard repeated, or one shard widened into its neighbour, or
    /// one shard dropped, never gives a loss: `merge` or `shard_loss` rejects it.
    #[test]
    fn broken_partitions_are_rejected(
        c in 2usize..40,
        cuts in prop::collection::vec(any::<u16>(), 1..6),
        pick in any::<usize>(),
        how in 0u8..3,
        order_seed in any::<u64>(),
    ) {
        let mut parts: Vec<Shard> = shards(c, &cuts).into_iter().filter(|s| s.width > 0).collect();
        let i = pick % parts.len();
        match how {
            0 => parts.push(parts[i]),
            1 if parts.len() > 1 => {
                // Widen shard `i` by one class into a neighbour.
                let s = parts[i];
                parts[i] = if s.offset + s.width < c {
                    Shard::new(s.offset, s.width + 1)
                } else {
                    Shard::new(s.offset - 1, s.width + 1)
                };
            }
            1 => parts.push(parts[i]),
            _ if parts.len() > 1 => { parts.remove(i); }
            _ => parts.push(parts[i]),
        }
        let ce = CrossEntropy::new(c);
        let z = seeded_row(7, 3 * c);
        let t = [0i64, (c - 1) as i64, 1];
        let mut order: Vec<usize> = (0..parts.len()).collect();
        let mut s = order_seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let got = sharded(&ce, &z, &t, &parts, &order);
        prop_assert!(
            matches!(got, Err(Error::ShardOverlap { .. } | Error::ShardCoverage { .. })),
            "{parts:?}: {:?}", got.map(|(l, _)| l)
        );
    }
}

#[test]
fn huge_class_counts_cost_nothing_to_reject() {
    // The coverage fingerprint of `0..classes` takes O(classes): it must not be computed
    // for statistics that cannot cover the classes, nor for a shard of no rows (whose
    // width the logits do not bound). Before, both ran for hours at these sizes.
    let ce = CrossEntropy::new(1 << 62);
    let e = ce.shard_loss(&[ShardStats::EMPTY], &[0u64]).unwrap_err();
    assert!(
        matches!(e, Error::ShardCoverage { covered: 0, .. }),
        "{e:?}"
    );
    ce.shard_stats(&[], Shard::new(0, 1 << 61), &[0u64; 0], &mut [])
        .unwrap();
}
