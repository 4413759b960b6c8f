//! Softmax, log-softmax and log-sum-exp on every kernel against the reference.

use crate::check::check_softmax_family;
use crate::common::*;
use proptest::prelude::*;

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
