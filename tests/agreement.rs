//! Every available kernel, through every cross-entropy entry point and several target
//! types, against `xent::reference`, with the tolerances derived in `common`.

use crate::check::check_all_entry_points;
use crate::common::*;
use proptest::prelude::*;
use xent::{CrossEntropy, Kernel};

/// The shared check, as a proptest failure.
fn check_case<T: xent::Target>(ce: &CrossEntropy, z: &[f32], t: &[T]) -> Result<(), TestCaseError> {
    check_all_entry_points(ce, z, t).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn kernels_match_reference((ce, z, t) in case()) {
        check_case(&ce, &z, &t)?;
    }

    #[test]
    fn target_types_agree((ce, z, t) in case()) {
        // Only without a negative ignore index can every integer type hold the targets.
        prop_assume!(ce.get_ignore_index().is_none_or(|i| i >= 0) && ce.get_classes() <= 255);
        let ce = ce.kernel(Kernel::Auto);
        let a = ce.forward(&z, &t).unwrap();
        let as_u8: Vec<u8> = t.iter().map(|&v| v as u8).collect();
        let as_u16: Vec<u16> = t.iter().map(|&v| v as u16).collect();
        let as_u32: Vec<u32> = t.iter().map(|&v| v as u32).collect();
        let as_u64: Vec<u64> = t.iter().map(|&v| v as u64).collect();
        let as_usize: Vec<usize> = t.iter().map(|&v| v as usize).collect();
        let as_i32: Vec<i32> = t.iter().map(|&v| v as i32).collect();
        for b in [
            ce.forward(&z, &as_u8).unwrap(),
            ce.forward(&z, &as_u16).unwrap(),
            ce.forward(&z, &as_u32).unwrap(),
            ce.forward(&z, &as_u64).unwrap(),
            ce.forward(&z, &as_usize).unwrap(),
            ce.forward(&z, &as_i32).unwrap(),
        ] {
            prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
            prop_assert_eq!((a.rows, a.correct), (b.rows, b.correct));
        }
    }
}

/// Every class count across the lane widths (8, 16), two-vector unrolls (16, 32) and
/// one past, every target, and row starts misaligned by slicing into a larger buffer.
#[test]
fn exhaustive_small_shapes() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
    };
    for c in 1..=2 * 32 + 1 {
        for offset in [0usize, 1, 3, 7] {
            let rows = 3;
            let buf: Vec<f32> = (0..offset + rows * c).map(|_| next()).collect();
            let z = &buf[offset..];
            // Every target for small C; the ends and the middle beyond that.
            let targets: Vec<usize> = if c <= 17 {
                (0..c).collect()
            } else {
                vec![0, 1, c / 2, c - 2, c - 1]
            };
            for t0 in targets {
                let t = [t0 as i64, ((t0 + 1) % c) as i64, 0];
                let ce = CrossEntropy::new(c).label_smoothing(if t0 % 2 == 0 { 0.0 } else { 0.2 });
                check_all_entry_points(&ce, z, &t)
                    .unwrap_or_else(|e| panic!("C={c} offset={offset} t={t0}: {e}"));
            }
        }
    }
}

/// The row-group path (C <= 64; unrolled per class count up to 32, loops above) in full: whole groups of 8 and 16 rows, whole batches
/// (16 groups), a partial batch and a partial last group, for every class count, with
/// ignored rows, weights and smoothing, and special values in some rows. (The proptest
/// cases have fewer rows than one 16-lane group.)
#[test]
fn row_groups_and_batches_match_reference() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for c in 1..=64usize {
        for rows in [8usize, 16, 48, 128, 255, 256, 257, 300] {
            let z: Vec<f32> = (0..rows).flat_map(|_| seeded_row(next(), c)).collect();
            let t: Vec<i64> = (0..rows)
                .map(|_| match next() % 9 {
                    0 => -100,
                    r => (r as usize * 7 % c) as i64,
                })
                .collect();
            let variant = next() % 4;
            let mut ce = CrossEntropy::new(c).ignore_index(-100);
            if variant & 1 == 1 {
                ce = ce.label_smoothing(0.1);
            }
            if variant & 2 == 2 {
                ce = ce.class_weights((0..c).map(|j| 0.5 + j as f32 / 4.0).collect::<Vec<_>>());
            }
            check_all_entry_points(&ce, &z, &t)
                .unwrap_or_else(|e| panic!("C={c} rows={rows} variant={variant}: {e}"));
        }
    }
}

/// Rows longer than the fused path's limit take the blocked path (block statistics, merge,
/// gradient per block): every option through every entry point, against the reference.
#[test]
fn blocked_path_matches_reference() {
    for c in [131_073usize, 300_001] {
        let z: Vec<f32> = [seeded_row(7, c), seeded_row(8, c)].concat();
        let t = [5i64, (c - 1) as i64];
        let w: Vec<f32> = (0..c).map(|j| 0.5 + (j % 7) as f32).collect();
        for ce in [
            CrossEntropy::new(c),
            CrossEntropy::new(c)
                .label_smoothing(0.2)
                .class_weights(w.clone()),
            CrossEntropy::new(c).z_loss(1e-3).softcap(20.0),
            CrossEntropy::new(c)
                .reduction(xent::Reduction::None)
                .label_smoothing(0.1)
                .z_loss(1e-4)
                .softcap(5.0)
                .ignore_index(5),
        ] {
            check_all_entry_points(&ce, &z, &t).unwrap();
        }
    }
}

/// Rows of 16384 classes and more (without smoothing or capping) take the one-sweep max and
/// exp, whose exps are relative to the running max and rescaled per segment: rows where
/// every block raises the max (and the early segments' factors underflow), rows that
/// open on blocks of -inf, ties of the max across blocks (the first must win), random
/// rows, and the max in the first or the last block.
#[test]
fn online_path_matches_reference() {
    for c in [16_383usize, 16_384, 16_385, 40_000, 70_001] {
        let rising: Vec<f32> = (0..c).map(|j| j as f32 * 0.01 - 5.0).collect();
        let gentle: Vec<f32> = (0..c)
            .map(|j| (j % 777) as f32 * 1e-3 + j as f32 * 1e-5)
            .collect();
        let mut masked_head = seeded_row(11, c);
        masked_head[..c.min(1500)].fill(f32::NEG_INFINITY);
        let mut ties = seeded_row(12, c);
        for j in [700, c / 2, c - 3] {
            ties[j] = 1e31; // above the seeded rows' largest, 1e30
        }
        let mut first_block = seeded_row(13, c);
        first_block[3] = 2e31;
        let falling: Vec<f32> = (0..c).map(|j| -(j as f32) * 0.02).collect();
        let z = [
            rising,
            gentle,
            masked_head,
            ties,
            first_block,
            falling,
            seeded_row(14, c),
        ]
        .concat();
        let t = [0i64, (c - 1) as i64, 1499, 700, 3, 2000, 17];
        for ce in [
            CrossEntropy::new(c),
            CrossEntropy::new(c).z_loss(1e-3),
            CrossEntropy::new(c)
                .reduction(xent::Reduction::None)
                .ignore_index(17),
        ] {
            check_all_entry_points(&ce, &z, &t).unwrap_or_else(|e| panic!("C={c}: {e}"));
        }
    }
}

/// Soft-capped rows whose exps cannot underflow (`y - max >= -2 cap`, at or above
/// `EXP_UNDERFLOW` for caps up to half its magnitude) take an exp without the underflow
/// test; caps on both sides of that edge, with logits spread over `[-6 cap, 6 cap]` (the
/// capped values reach `-cap` and `cap`, so `y - max` reaches `-2 cap`), some infinite,
/// on the grouped, three-pass and linked paths, against the reference.
#[test]
fn capped_exps_on_both_sides_of_the_underflow_edge() {
    let edge = -xent::exp::EXP_UNDERFLOW / 2.0;
    let above = f32::from_bits(edge.to_bits() + 1);
    for c in [100usize, 1000, 20_000] {
        for cap in [30.0f32, edge, above, 44.0, 50.0, 100.0] {
            let spread = |r: usize, j: usize| {
                let u = ((j * 7919 + r * 104_729) % c) as f32 / c as f32;
                cap * (12.0 * u - 6.0)
            };
            let mut z: Vec<f32> = (0..3 * c).map(|i| spread(i / c, i % c)).collect();
            z[2 * c + 1] = f32::NEG_INFINITY;
            z[2 * c + 2] = 1e30;
            let lo = (0..c).min_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap_or(0);
            let t = [lo as i64, (c / 2) as i64, 1];
            let ce = CrossEntropy::new(c).softcap(cap);
            check_all_entry_points(&ce, &z, &t).unwrap_or_else(|e| panic!("C={c} cap={cap}: {e}"));
        }
    }
}
