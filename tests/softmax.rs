//! Softmax, log-softmax and log-sum-exp on every kernel against the reference.

use crate::check::check_softmax_family;
use crate::common::*;
use proptest::prelude::*;
use xent::CrossEntropy;

fn rows_case() -> impl Strategy<Value = (usize, Vec<f32>)> {
    classes().prop_flat_map(|c| {
        let rows = if c > 5000 { 0..2usize } else { 0..6usize };
        let any_logit = prop_oneof![10 => logit(), 1 => Just(f32::NAN), 1 => Just(f32::INFINITY)];
        (
            Just(c),
            rows.prop_flat_map(move |r| prop::collection::vec(any_logit.clone(), r * c)),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn softmax_family_matches_reference((c, z) in rows_case()) {
        check_softmax_family(c, &z).map_err(TestCaseError::fail)?;
    }
}

/// `logsumexp` follows `torch.logsumexp` on rows that are not all finite, on every path a
/// row length takes (grouped, one row at a time, linked lengths, online, blocked): NaN if
/// the row has a NaN, else +inf with a +inf, else -inf when every entry is -inf; -inf
/// entries of an otherwise finite row add nothing. Rows of each kind sit among finite
/// rows, so a grouped row's neighbours are checked too.
#[test]
fn logsumexp_of_rows_that_are_not_all_finite() {
    for c in [3usize, 10, 100, 300, 1000, 9000, 20_000, 40_000, 140_000] {
        // Each special row: (where the special values go, the values).
        let specials: [&[(usize, f32)]; 5] = [
            &[(c / 2, f32::NAN)],
            &[(c - 1, f32::INFINITY)],
            &[(0, f32::NAN), (c / 3, f32::INFINITY)],
            &[(c / 2, f32::NEG_INFINITY), (0, f32::NEG_INFINITY)],
            &[],
        ];
        let mut z = Vec::new();
        for (i, set) in specials.iter().enumerate() {
            let mut row = seeded_row(17 + i as u64, c);
            for &(j, v) in *set {
                row[j] = v;
            }
            z.extend(seeded_row(91 + i as u64, c));
            z.extend(row);
        }
        // An all -inf row, last.
        z.extend(std::iter::repeat_n(f32::NEG_INFINITY, c));
        let want = xent::reference::logsumexp(&z, c).unwrap();
        for k in kernels() {
            let mut got = vec![0.0f32; z.len() / c];
            CrossEntropy::new(c)
                .kernel(k)
                .logsumexp(&z, &mut got)
                .unwrap();
            for (r, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let ok = if w.is_finite() {
                    (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1.0)
                } else {
                    g.is_nan() == w.is_nan() && (w.is_nan() || f64::from(g) == w)
                };
                assert!(ok, "{k:?} C={c} row {r}: {g} against {w}");
            }
        }
    }
}
