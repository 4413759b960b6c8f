//! Softmax, log-softmax and log-sum-exp on every kernel against the reference.

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
        let p = xent::reference::softmax(&z, c).unwrap();
        let lp = xent::reference::log_softmax(&z, c).unwrap();
        let lse = xent::reference::logsumexp(&z, c).unwrap();
        let gs = gamma_s(c);
        for k in kernels() {
            let ce = CrossEntropy::new(c).kernel(k);
            let mut a = z.clone();
            ce.softmax(&mut a).unwrap();
            let mut b = vec![0.0; z.len()];
            ce.softmax_into(&z, &mut b).unwrap();
            prop_assert_eq!(crate::agreement::bits(&a), crate::agreement::bits(&b));
            let mut l = z.clone();
            ce.log_softmax(&mut l).unwrap();
            let mut out = vec![0.0; z.len() / c];
            ce.logsumexp(&z, &mut out).unwrap();
            for (r, row) in z.chunks(c).enumerate() {
                let m = row_max(row);
                for j in 0..c {
                    let i = r * c + j;
                    let d = (f64::from(row[j]) - m).abs();
                    let tol = mul0(gs + (d / 2.0 + 4.0) * U, p[i]) + 2f64.powi(-125);
                    prop_assert!(close(f64::from(a[i]), p[i], tol), "{:?} softmax[{},{}] {} vs {}", k, r, j, a[i], p[i]);
                    let tol = gs + d * U + U * lp[i].abs();
                    prop_assert!(close(f64::from(l[i]), lp[i], tol), "{:?} log_softmax[{},{}] {} vs {}", k, r, j, l[i], lp[i]);
                }
                let tol = gs + U * lse[r].abs() * 2.0;
                prop_assert!(close(f64::from(out[r]), lse[r], tol), "{:?} logsumexp[{}] {} vs {}", k, r, out[r], lse[r]);
            }
        }
    }
}
