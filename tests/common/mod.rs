//! Proptest strategies for the integration tests (the tolerance model and the checks are
//! in `check`, shared with the fuzz targets).

#![allow(dead_code)]

use proptest::prelude::*;
use xent::{CrossEntropy, Kernel, Reduction};

/// A logit drawn to over-sample the values that break kernels.
pub fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -10.0f32..10.0,
        2 => -100.0f32..100.0,
        1 => Just(0.0f32),
        1 => Just(f32::NEG_INFINITY),
        1 => prop_oneof![Just(1e30f32), Just(-1e30f32), Just(1e-30f32), Just(-3e38f32)],
        1 => -1e-6f32..1e-6,
        1 => -1e4f32..1e4,
    ]
}

/// A row of `c` logits drawn from the same mixture as [`logit`], from a seed.
pub fn seeded_row(seed: u64, c: usize) -> Vec<f32> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..c)
        .map(|_| {
            let r = next();
            let u = (r >> 40) as f32 / (1u64 << 24) as f32;
            match r % 16 {
                0 => f32::NEG_INFINITY,
                1 => 1e30,
                2 => -1e30,
                3 => 0.0,
                4 | 5 => u * 200.0 - 100.0,
                _ => u * 20.0 - 10.0,
            }
        })
        .collect()
}

/// Class counts: mostly small (tails at every lane width), some mid and a few large.
pub fn classes() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=40,
        4 => 41usize..=300,
        1 => prop_oneof![Just(1000usize), Just(4099), Just(65536), Just(65537), Just(70001)],
    ]
}

/// Every option combination over `classes`.
pub fn options(classes: usize) -> impl Strategy<Value = CrossEntropy> {
    (
        prop_oneof![
            Just(Reduction::Mean),
            Just(Reduction::Sum),
            Just(Reduction::None)
        ],
        prop_oneof![
            Just(None),
            Just(Some(-100i64)),
            (0..classes as i64).prop_map(Some)
        ],
        prop_oneof![2 => Just(0.0f32), 2 => 0.0f32..=1.0, 1 => Just(1.0f32)],
        // Zero weights meet -inf logits: label smoothing then makes `0 * -inf`, NaN.
        prop::option::of(prop::collection::vec(
            prop_oneof![6 => 0.1f32..10.0, 1 => Just(0.0f32)],
            classes,
        )),
        prop_oneof![3 => Just(0.0f32), 1 => 0.0f32..0.1, 1 => Just(1.0f32)],
        prop_oneof![
            6 => Just(None),
            2 => (0.5f32..50.0).prop_map(Some),
            // Caps far above the logits (relative accuracy of tanh near 0) and the
            // smallest one accepted.
            1 => prop_oneof![
                Just(1e3f32),
                Just(1e4),
                Just(1e30),
                Just(xent::exp::SOFTCAP_MAX),
                Just(xent::exp::SOFTCAP_MIN)
            ]
            .prop_map(Some),
        ],
    )
        .prop_map(move |(red, ignore, eps, weights, zl, cap)| {
            let mut ce = CrossEntropy::new(classes).label_smoothing(eps).z_loss(zl);
            ce = ce.reduction(red);
            if let Some(cap) = cap {
                ce = ce.softcap(cap);
            }
            if let Some(i) = ignore {
                ce = ce.ignore_index(i);
            }
            if let Some(w) = weights {
                ce = ce.class_weights(w);
            }
            ce
        })
}

/// A full case: options, logits and i64 targets (some equal to the ignore index).
pub fn case() -> impl Strategy<Value = (CrossEntropy, Vec<f32>, Vec<i64>)> {
    classes().prop_flat_map(|c| {
        let max_rows: usize = if c > 5000 { 2 } else { 7 };
        (options(c), 0..max_rows).prop_flat_map(move |(ce, rows)| {
            let ignore = ce.get_ignore_index().unwrap_or(0);
            let target = prop_oneof![6 => 0..c as i64, 1 => Just(ignore)];
            // Long rows come from a seeded generator: proptest's per-element value trees
            // would dominate the run time at 70 000 classes.
            let mixed = if c <= 300 {
                prop::collection::vec(logit(), c).boxed()
            } else {
                any::<u64>().prop_map(move |seed| seeded_row(seed, c)).boxed()
            };
            let row = prop_oneof![
                6 => mixed,
                1 => logit().prop_map(move |v| vec![v; c]),
                1 => (prop::collection::vec(-5.0f32..5.0, c), 0..c, prop_oneof![Just(1e4f32), Just(80.0f32)])
                    .prop_map(|(mut z, i, big)| { z[i] = big; z }),
            ];
            (Just(ce), prop::collection::vec(row, rows), prop::collection::vec(target, rows))
                .prop_map(|(ce, rows, t)| (ce, rows.concat(), t))
        })
    })
}

/// Every kernel this CPU runs, reporting the ones it cannot.
pub fn kernels() -> Vec<Kernel> {
    Kernel::available()
}
