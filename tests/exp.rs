//! The exp's error bound, exhaustively over every f32 in [-104, 0] for every kernel
//! variant (about 1.1 billion inputs each), plus special values and the positive range;
//! the tanh of soft-capping likewise over every non-negative f32 below 9.1.

use crate::check::{check_exp, check_tanh};
use crate::common::kernels;
use rayon::prelude::*;
use xent::exp::{EXP_UNDERFLOW, exp_model, exp_slice, tanh_model, tanh_slice};

/// Checks every input in `xs` for one variant (see `check::check_exp`); returns the worst
/// ulp error seen.
fn check(k: xent::Kernel, xs: &[f32]) -> f64 {
    let mut ys = xs.to_vec();
    exp_slice(k, &mut ys).unwrap();
    let mut worst = 0.0f64;
    for (&x, &y) in xs.iter().zip(&ys) {
        check_exp(k, x, y);
        if x >= EXP_UNDERFLOW && y.is_finite() {
            let want = f64::from(x).exp();
            let ulp = 2f64.powi(want.log2().floor() as i32 - 23);
            worst = worst.max((f64::from(y) - want).abs() / ulp);
        }
    }
    worst
}

#[test]
fn exhaustive_nonpositive_domain() {
    // Bit patterns of -0.0 ..= -104.0 (sign bit set, magnitude increasing), plus +0.0.
    let lo = 0x8000_0000u32;
    let hi = (-104.0f32).to_bits();
    for k in kernels() {
        let starts: Vec<u32> = (lo..=hi).step_by(1 << 16).collect();
        let worst = starts
            .into_par_iter()
            .map(|start| {
                let xs: Vec<f32> = (start..=hi.min(start + (1 << 16) - 1))
                    .map(f32::from_bits)
                    .collect();
                check(k, &xs)
            })
            .reduce(|| 0.0, f64::max);
        let zero = check(k, &[0.0]);
        println!(
            "exp {k:?}: worst error over [-104, 0] is {:.3} ulp",
            worst.max(zero)
        );
    }
}

#[test]
fn positive_range_sampled() {
    for k in kernels() {
        let xs: Vec<f32> = (0..=(88.72f32).to_bits())
            .step_by(97)
            .map(f32::from_bits)
            .collect();
        check(k, &xs);
    }
}

#[test]
fn special_values() {
    for k in kernels() {
        let mut xs = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            -0.0,
            0.0,
            88.8,
            89.0,
            1e30,
            -1e30,
            f32::MIN,
            f32::MAX,
            -87.3366,
            EXP_UNDERFLOW,
        ];
        exp_slice(k, &mut xs).unwrap();
        assert_eq!(xs[0].to_bits(), 0, "{k:?}");
        assert_eq!(xs[1], f32::INFINITY, "{k:?}");
        assert!(xs[2].is_nan(), "{k:?}");
        assert_eq!(&xs[3..5], &[1.0, 1.0], "{k:?}");
        assert_eq!(&xs[5..8], &[f32::INFINITY; 3], "{k:?}");
        assert_eq!(xs[8].to_bits(), 0, "{k:?}");
        assert_eq!(xs[9].to_bits(), 0, "{k:?}");
        assert_eq!(xs[10], f32::INFINITY, "{k:?}");
        assert_eq!(xs[11].to_bits(), 0, "{k:?}: just below the threshold");
        assert!(xs[12] >= f32::MIN_POSITIVE, "{k:?}: at the threshold");
    }
}

#[test]
fn fma_variants_equal_the_scalar_model() {
    // AVX2 and AVX-512 perform the model's operations (all fused) bit for bit.
    let xs: Vec<f32> = (0..100_000).map(|i| -104.0 + i as f32 * 0.00104).collect();
    for k in kernels()
        .into_iter()
        .filter(|k| *k != xent::Kernel::Portable)
    {
        let mut ys = xs.clone();
        exp_slice(k, &mut ys).unwrap();
        for (&x, &y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), exp_model(x).to_bits(), "{k:?} at {x}");
        }
    }
}

#[test]
fn table_holds_the_nearest_floats_to_the_eighth_powers_of_two() {
    for (j, &t) in xent::exp::EXP_TABLE.iter().enumerate() {
        // f64 -> f32 rounds to nearest; 2^(j/8) in f64 is within 2^-52 of the truth.
        assert_eq!(t, 2f64.powf(j as f64 / 8.0) as f32, "entry {j}");
    }
}

/// Every variant's tanh on `xs`, each result checked (`check::check_tanh`); the worst ulp
/// error seen.
fn check_tanh_on(k: xent::Kernel, xs: &[f32]) -> f64 {
    let mut ys = xs.to_vec();
    tanh_slice(k, &mut ys).unwrap();
    xs.iter()
        .zip(&ys)
        .map(|(&x, &y)| check_tanh(k, x, y))
        .fold(0.0, f64::max)
}

#[test]
fn tanh_exhaustive_nonnegative_domain() {
    // Every f32 bit pattern from +0 to 9.1; above, tanh rounds to exactly 1 (checked
    // below on a sample). The function is odd by construction (sign put back last), which
    // `tanh_is_odd_and_saturates` checks.
    let hi = 9.1f32.to_bits();
    for k in kernels() {
        let starts: Vec<u32> = (0..=hi).step_by(1 << 16).collect();
        let worst = starts
            .into_par_iter()
            .map(|start| {
                let xs: Vec<f32> = (start..=hi.min(start + (1 << 16) - 1))
                    .map(f32::from_bits)
                    .collect();
                check_tanh_on(k, &xs)
            })
            .reduce(|| 0.0, f64::max);
        println!("tanh {k:?}: worst error over [0, 9.1] is {worst:.3} ulp");
    }
}

#[test]
fn tanh_is_odd_and_saturates() {
    let xs: Vec<f32> = (0..=u32::MAX / 2)
        .step_by(4099)
        .map(f32::from_bits)
        .chain([f32::INFINITY, f32::MAX, 9.1, 20.0, 1e-45, 0.625, 0.62499994])
        .collect();
    for k in kernels() {
        let mut pos = xs.clone();
        tanh_slice(k, &mut pos).unwrap();
        let mut neg: Vec<f32> = xs.iter().map(|x| -x).collect();
        tanh_slice(k, &mut neg).unwrap();
        for ((&x, &p), &n) in xs.iter().zip(&pos).zip(&neg) {
            check_tanh(k, x, p);
            // Exactly odd on bits, zeros included: tanh(-0) = -0.
            if !x.is_nan() {
                assert_eq!(n.to_bits(), (-p).to_bits(), "{k:?}: tanh(-{x:e})");
            }
            if x >= 9.1 {
                assert_eq!(p, 1.0, "{k:?}: tanh({x:e})");
            }
        }
        let mut nan = [f32::NAN, -f32::NAN];
        tanh_slice(k, &mut nan).unwrap();
        assert!(nan.iter().all(|v| v.is_nan()), "{k:?}");
    }
}

#[test]
fn tanh_fma_variants_equal_the_scalar_model() {
    let xs: Vec<f32> = (0..200_000)
        .map(|i| -10.0 + i as f32 * 1e-4)
        .chain((0..1000).map(|i| f32::from_bits(i * 1_000_003)))
        .collect();
    for k in kernels()
        .into_iter()
        .filter(|k| *k != xent::Kernel::Portable)
    {
        let mut ys = xs.clone();
        tanh_slice(k, &mut ys).unwrap();
        for (&x, &y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), tanh_model(x).to_bits(), "{k:?} at {x:e}");
        }
    }
}

#[test]
fn tanh_of_a_lane_does_not_depend_on_its_neighbours() {
    // The kernels skip the large-argument path for vectors whose lanes are all below
    // `TANH_SMALL_MAX`; in a vector that mixes small, large, infinite and NaN lanes every
    // lane must still get the bits it gets on its own (a one-element slice, whose other
    // lanes are padding).
    let pool = [
        0.0,
        -0.0,
        1e-40,
        0.1,
        -0.3,
        0.624_999_94,
        0.625,
        -0.625,
        0.7,
        -5.0,
        9.2,
        30.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MIN_POSITIVE,
    ];
    let mut s = 0x9e37_79b9u32;
    let xs: Vec<f32> = (0..8192)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            // Aligned blocks of 64 alternate between only small lanes (every vector in
            // them takes the skip path, on 8 and 16 lanes alike) and a mix that is mostly
            // small, so that nearly every vector in those takes the large path.
            if i / 64 % 2 == 0 || s % 8 < 5 {
                (s >> 9) as f32 / (1u32 << 23) as f32 * 1.2 - 0.6
            } else {
                pool[(s >> 3) as usize % pool.len()]
            }
        })
        .collect();
    for k in kernels() {
        let mut ys = xs.clone();
        tanh_slice(k, &mut ys).unwrap();
        for (&x, &y) in xs.iter().zip(&ys) {
            let mut one = [x];
            tanh_slice(k, &mut one).unwrap();
            assert_eq!(
                y.to_bits(),
                one[0].to_bits(),
                "{k:?}: tanh({x:e}) among others"
            );
        }
    }
}
