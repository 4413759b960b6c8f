//! Bit-identical results whatever the rayon thread count.

use crate::check::bits;
use crate::common::kernels;
use xent::{CrossEntropy, Reduction};

fn run_in(threads: usize, f: impl FnOnce() -> (u32, Vec<u32>) + Send) -> (u32, Vec<u32>) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn same_bits_on_1_2_3_8_threads() {
    let mut s = 12345u32;
    let mut rnd = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1u32 << 24) as f32 * 16.0 - 8.0
    };
    // Shapes on the fused path (many chunks), with small C, and on the blocked path.
    for (rows, c) in [
        (300usize, 1000usize),
        (40_000, 3),
        (3, 100_003),
        (1, 300_000),
    ] {
        let z: Vec<f32> = (0..rows * c).map(|_| rnd()).collect();
        let t: Vec<u32> = (0..rows as u32).map(|r| (r * 7919) % c as u32).collect();
        for k in kernels() {
            for ce in [
                CrossEntropy::new(c).kernel(k),
                CrossEntropy::new(c)
                    .kernel(k)
                    .reduction(Reduction::Sum)
                    .label_smoothing(0.1),
                CrossEntropy::new(c).kernel(k).z_loss(1e-3).softcap(15.0),
            ] {
                let go = || {
                    let mut g = z.clone();
                    let l = ce.forward_backward(&mut g, &t).unwrap();
                    (l.value.to_bits(), bits(&g))
                };
                let one = run_in(1, go);
                for threads in [2, 3, 8] {
                    assert!(
                        run_in(threads, go) == one,
                        "{k:?} {rows}x{c} differs on {threads} threads"
                    );
                }
                let fwd = |n| run_in(n, || (ce.forward(&z, &t).unwrap().value.to_bits(), vec![]));
                assert_eq!(fwd(1), fwd(8));
                let sm = |n| {
                    run_in(n, || {
                        let mut x = z.clone();
                        ce.log_softmax(&mut x).unwrap();
                        let mut lse = vec![0.0; rows];
                        ce.logsumexp(&z, &mut lse).unwrap();
                        (0, [bits(&x), bits(&lse)].concat())
                    })
                };
                assert!(sm(1) == sm(8), "{k:?} {rows}x{c} softmax family");
            }
        }
    }
}

#[test]
fn concurrent_callers_match_sequential_calls() {
    let c = 257;
    let z: Vec<f32> = (0..c * 200)
        .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
        .collect();
    let t: Vec<usize> = (0..200).map(|r| (r * 13) % c).collect();
    let ce = CrossEntropy::new(c).label_smoothing(0.05);
    let seq = {
        let mut g = z.clone();
        (
            ce.forward_backward(&mut g, &t).unwrap().value.to_bits(),
            bits(&g),
        )
    };
    // Outside rayon: plain threads sharing one `CrossEntropy`.
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut g = z.clone();
                    (
                        ce.forward_backward(&mut g, &t).unwrap().value.to_bits(),
                        bits(&g),
                    )
                })
            })
            .collect();
        for h in hs {
            assert!(h.join().unwrap() == seq);
        }
    });
    // Inside rayon: calls from many tasks of one pool.
    use rayon::prelude::*;
    let all: Vec<_> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut g = z.clone();
            (
                ce.forward_backward(&mut g, &t).unwrap().value.to_bits(),
                bits(&g),
            )
        })
        .collect();
    assert!(all.iter().all(|r| *r == seq));
}
