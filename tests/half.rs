//! bf16 and f16 logits: the half-precision path runs the f32 kernels on widened tiles
//! whose boundaries are the f32 path's chunk boundaries, or (rows without label smoothing
//! of 128 classes and more) the f32 passes on the 16-bit logits widened in registers, so
//! its loss must equal the f32 path's on the widened logits bit for bit, and its gradient
//! must be exactly that f32 gradient rounded to nearest even, subnormals included, on
//! every kernel. (The f32 path itself is checked against the reference everywhere else.)

use crate::check::check_half;
use crate::common::*;
use half::bf16;
use proptest::prelude::*;
use xent::CrossEntropy;

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn bf16_and_f16_are_the_f32_path_rounded((ce, z, t) in case()) {
        check_half(&ce, &z, &t).map_err(TestCaseError::fail)?;
    }

}

/// Gradients below the smallest normal f32 (1.2e-38) round to the same subnormal bf16
/// and f16 bits as the software conversion on every kernel: AVX-512 BF16's
/// `vcvtneps2bf16` flushes them to zero unless the lanes are converted again. Logits of
/// -87 beside a few zeros give exps of 1.6e-38 over a sum of about 3; with the sum
/// reduction they stay subnormal once scaled. Tile rows (100 classes) and rows read in
/// 16-bit (200, 1000 and 20 001 classes, whose pass 3 scales as it narrows), bodies and
/// tails.
#[test]
fn subnormal_gradients_round_like_the_software_conversion() {
    for c in [100usize, 200, 1000, 20_001] {
        let rows = 3;
        let z: Vec<f32> = (0..rows * c)
            .map(|i| if i % c < 3 { 0.0 } else { -87.0 })
            .collect();
        let t: Vec<u32> = (0..rows as u32).collect();
        let ce = CrossEntropy::new(c).reduction(xent::Reduction::Sum);
        let mut g = z.clone();
        ce.forward_backward(&mut g, &t).unwrap();
        let subnormal = g.iter().filter(|v| v.is_subnormal()).count();
        assert!(
            subnormal > rows * (c - 4),
            "C={c}: {subnormal} subnormal gradients"
        );
        check_half(&ce, &z, &t).unwrap();
    }
}

#[test]
fn many_tiles_and_long_rows_on_every_thread_count() {
    // Several tiles (parallel), and rows longer than the fused limit (blocked path); with
    // label smoothing every row takes the tiles, without it rows of 200 classes (in groups
    // of four), 1000 (in groups on a Zen 5's AVX-512 kernel) and 4099 are read in 16-bit,
    // chunk by chunk.
    let shapes = [
        (90_000usize, 3usize),
        (1501, 200),
        (301, 1000),
        (70, 4099),
        (2, 140_001),
    ];
    for ((rows, c), smoothing) in shapes.iter().flat_map(|&s| [(s, 0.05), (s, 0.0)]) {
        let z: Vec<bf16> = seeded_row(11, rows * c)
            .iter()
            .map(|&v| bf16::from_f32(v.clamp(-60.0, 60.0)))
            .collect();
        let t: Vec<u32> = (0..rows as u32).map(|r| r * 7 % c as u32).collect();
        let ce = CrossEntropy::new(c).z_loss(1e-4).label_smoothing(smoothing);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let mut g = z.clone();
                    let l = ce.forward_backward_half(&mut g, &t).unwrap();
                    (
                        l.value.to_bits(),
                        g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    )
                })
        };
        let one = run(1);
        assert!(
            run(2) == one && run(3) == one,
            "{rows}x{c}, smoothing {smoothing}"
        );
        // And against the f32 path on the widened logits.
        let zw: Vec<f32> = z.iter().map(|v| v.to_f32()).collect();
        let mut g32 = zw.clone();
        let l32 = ce.forward_backward(&mut g32, &t).unwrap();
        assert_eq!(l32.value.to_bits(), one.0);
        assert!(
            g32.iter()
                .zip(&one.1)
                .all(|(&g, &h)| bf16::from_f32(g).to_bits() == h)
        );
    }
}

#[test]
fn rows_without_smoothing_read_16_bit_logits_in_the_passes() {
    // Rows of 128 classes up to the fused limit without label smoothing run passes 1 and
    // 2 on 16-bit logits widened in registers and narrow in pass 3 (no f32 tile), rows
    // of up to 255 classes (1535 on a Zen 5's AVX-512 kernel) in groups of four (5 rows: a
    // group, with an ignored row, and a lone row); rows of 127 classes take the tiles.
    // Every shape gives the f32 path's loss, and its gradient rounded. Ignored rows, class
    // weights, z-loss, a mean over no counted row (zero gradient), NaN, -inf and (in f16)
    // overflowing logits. Rows below 16 384 classes take passes 1 and 2 apart (pass 1 in
    // blocks of 512: 531 and 8211 classes end on a block of 19), longer ones in one sweep.
    // The last blocks of 5 and 50 logits take the exp pass's tails: a lone tail; and with
    // 16 lanes a pair, a full vector and a tail, with 8 lanes a quad, a pair and a tail.
    // Row 0 holds moderate logits with its max in the last entry, so that every tail entry
    // counts. Plain rows of 16 384 to 32 768 classes are linked (each row's gradient formed
    // inside the next row's passes), here also across an ignored row (row 1 of 5), and the
    // last row with a gradient forms it on its own. Soft-capped rows run passes 1 and 2
    // apart at every length, their pass 2 storing the exps times the chain factor and
    // their target entry formed from the row statistics; a cap of 4 saturates many
    // logits (chain factor 0).
    for (rows, c) in [
        (5usize, 127usize),
        (5, 128),
        (5, 255),
        (5, 256),
        (4, 300),
        (5, 531),
        (5, 1535),
        (3, 8211),
        (2, 16_383),
        (3, 16_389),
        (2, 16_434),
        (5, 32_000),
        (2, 131_072),
    ] {
        let mut z: Vec<f32> = seeded_row(7, rows * c)
            .iter()
            .map(|&v| if v.abs() > 100.0 { v } else { v * 0.4 })
            .collect();
        for v in &mut z[..c] {
            *v = v.clamp(-10.0, 10.0);
        }
        z[c - 1] = 12.0;
        z[c + 3] = f32::NAN;
        let mut t: Vec<i64> = (0..rows as i64)
            .map(|r| (r * 7919 + 5) % c as i64)
            .collect();
        t[rows - 1] = -100;
        if rows > 3 {
            t[1] = -100;
        }
        let w: Vec<f32> = (0..c).map(|j| 0.5 + (j % 3) as f32).collect();
        let ignored = vec![-100i64; rows];
        for (ce, t) in [
            (CrossEntropy::new(c).ignore_index(-100), &t),
            (
                CrossEntropy::new(c)
                    .z_loss(1e-3)
                    .ignore_index(-100)
                    .class_weights(w.clone()),
                &t,
            ),
            (
                CrossEntropy::new(c)
                    .reduction(xent::Reduction::None)
                    .ignore_index(-100),
                &t,
            ),
            (CrossEntropy::new(c).ignore_index(-100), &ignored),
            (CrossEntropy::new(c).softcap(30.0).ignore_index(-100), &t),
            (
                CrossEntropy::new(c)
                    .softcap(4.0)
                    .z_loss(1e-3)
                    .reduction(xent::Reduction::None)
                    .ignore_index(-100),
                &t,
            ),
        ] {
            check_half(&ce, &z, t).unwrap();
        }
    }
}

#[test]
fn the_first_of_tied_maxima_is_the_prediction() {
    // Rows read in 16-bit apart (1100 classes: blocks of 512, 512 and 76) find the max
    // block by block: the first block to reach it wins, and the first entry equal to it
    // in that block is the prediction, as in the f32 path's blocks of 256. Ties in one
    // block, across blocks, in a later block only, and in the last short block; targets
    // on the first tied entry (counted correct) or a later one (not).
    let c = 1100;
    let ties: [&[usize]; 5] = [
        &[3, 40],
        &[300, 700],
        &[600, 1090],
        &[1030, 1099],
        &[5, 511, 512],
    ];
    let mut z: Vec<f32> = seeded_row(3, ties.len() * c)
        .iter()
        .map(|&v| v.clamp(-5.0, 5.0))
        .collect();
    let mut t = Vec::new();
    for (r, tie) in ties.iter().enumerate() {
        for &j in *tie {
            z[r * c + j] = 9.0;
        }
        t.push(tie[r % 2] as i64);
    }
    for ce in [
        CrossEntropy::new(c),
        CrossEntropy::new(c).reduction(xent::Reduction::None),
    ] {
        check_half(&ce, &z, &t).unwrap();
    }
    let zb: Vec<bf16> = z.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut p = vec![0usize; ties.len()];
    let l = CrossEntropy::new(c)
        .forward_half_with(&zb, &t, xent::RowOutputs::new().predictions(&mut p))
        .unwrap();
    let first: Vec<usize> = ties.iter().map(|tie| tie[0]).collect();
    assert_eq!(p, first);
    assert_eq!(l.correct, 3);
}

#[test]
fn target_gradient_keeps_its_bits() {
    // A confident correct prediction: p_t - 1 is tiny and negative. Formed in f32 (an
    // absolute error of a few f32 ulps of p_t ~ 1) and rounded to bf16 once, it keeps
    // about 2 significant digits; computed from a bf16 p_t (which rounds to 1.0) it would
    // be exactly 0.
    let ce = CrossEntropy::new(4).reduction(xent::Reduction::Sum);
    let mut z = [12.0, 0.0, 0.0, 0.0].map(bf16::from_f32);
    ce.forward_backward_half(&mut z, &[0u8]).unwrap();
    let want = 3.0 * (-12f64).exp() / (1.0 + 3.0 * (-12f64).exp()); // 1 - p_t
    let got = -f64::from(z[0].to_f32());
    let f32_err = 8.0 * f64::from(f32::EPSILON);
    assert!(
        (got - want).abs() <= f32_err + want * 2f64.powi(-8),
        "{got} vs {want}"
    );
    assert!(
        bf16::from_f32(1.0 - want as f32).to_f32() == 1.0,
        "the naive bf16 p_t is 1"
    );
}
