//! Bit-identical results whatever the rayon thread count.

use crate::check::bits;
use crate::common::kernels;
use xent::{CrossEntropy, Kernel, Reduction, Shard, ShardStats};

fn run_in(threads: usize, f: impl FnOnce() -> (u32, Vec<u32>) + Send) -> (u32, Vec<u32>) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Uniform values in `[-half, half)` from a linear congruential generator seeded with `seed`.
fn uniform(seed: u32, half: f32) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * half - half
    }
}

#[test]
fn same_bits_on_1_2_3_8_threads() {
    let mut rnd = uniform(12345, 8.0);
    // Shapes on the fused path (many chunks), with small C, and on the blocked path.
    for (rows, c) in [
        (300usize, 1000usize),
        (90_000, 3),
        // Long rows that the kernels link in pairs, in chunks of eight rows.
        (200, 20_000),
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
                        // The whole row as one vocabulary shard, with these options.
                        let mut st = vec![ShardStats::EMPTY; rows];
                        ce.shard_stats(&z, Shard::new(0, c), &t, &mut st).unwrap();
                        let st: Vec<u32> = st
                            .iter()
                            .flat_map(|s| [s.sum.to_bits(), s.smooth_sum.to_bits()])
                            .flat_map(|b| [b as u32, (b >> 32) as u32])
                            .collect();
                        (0, [bits(&x), bits(&lse), st].concat())
                    })
                };
                assert!(
                    sm(1) == sm(8),
                    "{k:?} {rows}x{c} softmax family, shard statistics"
                );
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

/// Rows of up to 255 classes run in groups of four, pass by pass (`ce_rows`,
/// `softmax_rows`), and so do rows of up to 1535 with the AVX-512 kernel on a Zen 5
/// (`GROUP_LONG_MAX_CLASSES`; on other kernels and CPUs the rows of 256 and 1535 classes
/// here run one at a time): each row's loss (with and without the gradient),
/// log-sum-exp, gradient, softmax and log-softmax must be the bits it gets alone.
#[test]
fn grouped_rows_match_rows_alone() {
    let mut rnd = uniform(777, 10.0);
    let rows = 11;
    for c in [65usize, 100, 255, 256, 1535] {
        let z: Vec<f32> = (0..rows * c).map(|_| rnd()).collect();
        // Row 5 is ignored: a group with a hole.
        let t: Vec<i64> = (0..rows as i64)
            .map(|r| if r == 5 { -100 } else { (r * 31) % c as i64 })
            .collect();
        for k in kernels() {
            let base = per_row(c, k);
            for ce in [
                base.clone(),
                base.clone().label_smoothing(0.2),
                base.clone().softcap(5.0).z_loss(1e-2),
            ] {
                let (g, loss, lse) = with_row_outputs(&ce, &z, &t);
                // Forward only: the rows' passes run with no gradient to write.
                let mut fwd_loss = vec![0.0; rows];
                ce.forward_with(&z, &t, xent::RowOutputs::new().losses(&mut fwd_loss))
                    .unwrap();
                for r in 0..rows {
                    let mut l1 = [0.0f32];
                    let out = xent::RowOutputs::new().losses(&mut l1);
                    ce.forward_with(&z[r * c..(r + 1) * c], &t[r..r + 1], out)
                        .unwrap();
                    assert_eq!(bits(&l1), bits(&fwd_loss[r..r + 1]), "{k:?} C={c} row {r}");
                }
                each_row_alone(&ce, &z, &t, &g, &loss, &lse, &format!("{k:?} C={c}"));
            }
            // The softmax family groups its rows the same way.
            let ce = CrossEntropy::new(c).kernel(k);
            let (mut p, mut lp) = (z.clone(), z.clone());
            ce.softmax(&mut p).unwrap();
            ce.log_softmax(&mut lp).unwrap();
            for r in 0..rows {
                let (mut p1, mut lp1) = (
                    z[r * c..(r + 1) * c].to_vec(),
                    z[r * c..(r + 1) * c].to_vec(),
                );
                ce.softmax(&mut p1).unwrap();
                ce.log_softmax(&mut lp1).unwrap();
                assert_eq!(
                    bits(&p1),
                    bits(&p[r * c..(r + 1) * c]),
                    "{k:?} C={c} row {r}"
                );
                assert_eq!(
                    bits(&lp1),
                    bits(&lp[r * c..(r + 1) * c]),
                    "{k:?} C={c} row {r}"
                );
            }
        }
    }
}

/// Rows of 8192-32768 classes are linked: each row's pass 3 (its gradient) runs inside
/// the next row's pass 2 (three passes, or the online pass from 16384), and the last
/// row's after it; an ignored row in between leaves the earlier row waiting for the one
/// after. Each row's loss, log-sum-exp and gradient
/// must be the bits it gets alone, with every segment shape (the max rising in every
/// block, or set by the first one) and z-loss.
#[test]
fn linked_rows_match_rows_alone() {
    let mut rnd = uniform(4242, 10.0);
    let rows = 9;
    for c in [10_000usize, 16_384, 20_001, 32_768] {
        let z: Vec<f32> = (0..rows * c)
            .map(|i| match (i / c) % 3 {
                0 => rnd(),
                1 => (i % c) as f32 * 0.01 - 50.0,
                _ => -((i % c) as f32) * 0.01,
            })
            .collect();
        // Rows 1, 2 and 5 are ignored (inside a chunk at 16384 classes), row 7's target
        // has weight 0.
        let t: Vec<i64> = (0..rows as i64)
            .map(|r| match r {
                1 | 2 | 5 => -100,
                7 => 3,
                _ => (r * 4099) % c as i64,
            })
            .collect();
        let w: Vec<f32> = (0..c).map(|j| if j == 3 { 0.0 } else { 1.0 }).collect();
        for k in kernels() {
            let base = per_row(c, k);
            for ce in [
                base.clone(),
                base.clone().z_loss(1e-2).class_weights(w.clone()),
            ] {
                let (g, loss, lse) = with_row_outputs(&ce, &z, &t);
                each_row_alone(&ce, &z, &t, &g, &loss, &lse, &format!("{k:?} C={c}"));
            }
        }
    }
}

/// `forward_backward_into` (on 8 threads) gives the bits of the in-place call on one thread
/// on every path, with ignored rows among the rows: row groups (3 classes), grouped fused
/// rows (300), staged rows (2048 and 4001, formed in a scratch row and streamed out),
/// linked rows (10000 and 20001: into a buffer, the destination prefetched, or with
/// `Kernel::Avx512` on a Zen 5 unlinked and staged, the latter online), online rows
/// (40000) and blocked rows (140000, whose single-thread path is a loop of its own).
/// The output starts at two offsets of one buffer, so the streamed copy's head (entries
/// before the first aligned vector) is both empty or not, whatever the allocator's
/// alignment.
#[test]
fn into_matches_in_place() {
    const SHAPES: [(usize, usize); 8] = [
        (40, 3),
        (9, 300),
        (9, 2048),
        (9, 4001),
        (9, 10_000),
        (9, 20_001),
        (5, 40_000),
        (3, 140_000),
    ];
    let mut rnd = uniform(777, 6.0);
    for (rows, c) in SHAPES {
        let z: Vec<f32> = (0..rows * c).map(|_| rnd()).collect();
        // Every fourth row from the second ignored.
        let target = |r: usize| {
            if r % 4 == 1 {
                -100
            } else {
                (r * 7919 % c) as i64
            }
        };
        let t: Vec<i64> = (0..rows).map(target).collect();
        for k in kernels() {
            let base = CrossEntropy::new(c).kernel(k).ignore_index(-100);
            for ce in [base.clone(), base.clone().label_smoothing(0.1).z_loss(1e-3)] {
                let what = format!("{k:?} {rows}x{c}");
                let in_place = run_in(1, || {
                    let mut g = z.clone();
                    let l = ce.forward_backward(&mut g, &t).unwrap();
                    (l.value.to_bits(), bits(&g))
                });
                for offset in [0, 1] {
                    let into = run_in(8, || {
                        let mut buf = vec![f32::NAN; z.len() + 1];
                        let g = &mut buf[offset..offset + z.len()];
                        let l = ce.forward_backward_into(&z, &t, g).unwrap();
                        (l.value.to_bits(), bits(g))
                    });
                    assert!(into == in_place, "{what} offset {offset}");
                }
            }
        }
    }
}

/// Staged rows stream their gradient out from the staging row, stopping around the
/// aligned vector of the output that holds the target (or leaving the target to a
/// stream's masked head or tail): rows of 2048 and 4001 classes (three passes), and with
/// `Kernel::Avx512` on a Zen 5 also 10000 (linked in place, three passes staged) and
/// 20001 (online, whose gradient is streamed segment by segment); elsewhere, and
/// soft-capped, those two are linked into the buffer. The longer rows rise by 0.01 per
/// class, so that every block of the online pass opens a segment, and their targets sit
/// at block edges too, so the held vector straddles two segments at some offsets.
/// Targets at both ends of the row and in its middle, the output at every offset within a
/// 64-byte line, plain, soft-capped and with z-loss, each into a buffer against the
/// in-place bits.
#[test]
fn into_staged_targets_at_every_place() {
    let mut rnd = uniform(4242, 6.0);
    for c in [2048, 4001, 10_000, 20_001] {
        // The first and last 18 classes, three in the middle, and block edges.
        let edges = if c > 8192 {
            &[511, 512, 513, 1023, 1024][..]
        } else {
            &[]
        };
        let classes: Vec<usize> = (0..18)
            .chain(c - 18..c)
            .chain([c / 2 - 1, c / 2, c / 2 + 7])
            .chain(edges.iter().copied())
            .collect();
        let rows = classes.len();
        let ramp = if c > 8192 { 0.01 } else { 0.0 };
        let z: Vec<f32> = (0..rows * c)
            .map(|i| rnd() + ramp * (i % c) as f32)
            .collect();
        let t: Vec<i64> = classes.iter().map(|&k| k as i64).collect();
        for k in kernels() {
            let base = CrossEntropy::new(c).kernel(k);
            for ce in [
                base.clone(),
                base.clone().softcap(5.0),
                base.clone().z_loss(1e-3),
            ] {
                let mut g = z.clone();
                let l = ce.forward_backward(&mut g, &t).unwrap();
                let in_place = (l.value.to_bits(), bits(&g));
                for offset in 0..16 {
                    let mut buf = vec![f32::NAN; z.len() + 16];
                    let g = &mut buf[offset..offset + z.len()];
                    let l = ce.forward_backward_into(&z, &t, g).unwrap();
                    let into = (l.value.to_bits(), bits(g));
                    assert!(into == in_place, "{k:?} {rows}x{c} offset {offset}: {ce:?}");
                }
            }
        }
    }
}

/// Unreduced cross-entropy over `c` classes on kernel `k`, ignoring target -100: the base
/// of the per-row tests.
fn per_row(c: usize, k: Kernel) -> CrossEntropy {
    CrossEntropy::new(c)
        .kernel(k)
        .reduction(Reduction::None)
        .ignore_index(-100)
}

/// `forward_backward_with` on a copy of `z`: the gradient, row losses and log-sum-exps.
fn with_row_outputs(ce: &CrossEntropy, z: &[f32], t: &[i64]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut g, mut loss, mut lse) = (z.to_vec(), vec![0.0; t.len()], vec![0.0; t.len()]);
    let out = xent::RowOutputs::new().losses(&mut loss).lse(&mut lse);
    ce.forward_backward_with(&mut g, t, out).unwrap();
    (g, loss, lse)
}

/// Each row of `z` (targets `t`) alone through `forward_backward_with` must give the bits
/// of its part of the batch's gradient `g`, per-row losses and log-sum-exps.
fn each_row_alone(
    ce: &CrossEntropy,
    z: &[f32],
    t: &[i64],
    g: &[f32],
    loss: &[f32],
    lse: &[f32],
    what: &str,
) {
    let c = ce.get_classes();
    for r in 0..t.len() {
        let mut g1 = z[r * c..(r + 1) * c].to_vec();
        let (mut l1, mut s1) = ([0.0f32], [0.0f32]);
        let out = xent::RowOutputs::new().losses(&mut l1).lse(&mut s1);
        ce.forward_backward_with(&mut g1, &t[r..r + 1], out)
            .unwrap();
        assert_eq!(bits(&g1), bits(&g[r * c..(r + 1) * c]), "{what} row {r}");
        assert_eq!(
            bits(&[l1[0], s1[0]]),
            bits(&[loss[r], lse[r]]),
            "{what} row {r}"
        );
    }
}

/// `CrossEntropy::threads`: the calling thread alone, or a pool of the configuration's
/// own (called from inside a one-thread pool too), gives the bits of the default on every
/// entry-point family and path.
#[test]
fn the_threads_option_keeps_the_bits() {
    let mut rnd = uniform(777, 6.0);
    for (rows, c) in [
        (300usize, 1000usize),
        (90_000, 3),
        (200, 20_000),
        (2, 140_000),
    ] {
        let z: Vec<f32> = (0..rows * c).map(|_| rnd()).collect();
        let t: Vec<i64> = (0..rows as i64)
            .map(|r| {
                if r % 5 == 4 {
                    -100
                } else {
                    (r * 7919) % c as i64
                }
            })
            .collect();
        let zh: Vec<xent::half::bf16> = z.iter().map(|&v| xent::half::bf16::from_f32(v)).collect();
        let up: Vec<f32> = (0..rows).map(|r| 1.0 / (1 + r % 3) as f32).collect();
        let all = |ce: &CrossEntropy| {
            let mut g = z.clone();
            let mut lse = vec![0.0; rows];
            let l = ce
                .forward_backward_with(&mut g, &t, xent::RowOutputs::new().lse(&mut lse))
                .unwrap();
            let f = ce.forward(&z, &t).unwrap();
            let mut b = z.clone();
            ce.backward(&mut b, &t, &lse, &up).unwrap();
            let mut h = zh.clone();
            let lh = ce.forward_backward_half(&mut h, &t).unwrap();
            let mut s = z.clone();
            ce.log_softmax(&mut s).unwrap();
            let mut sums = vec![0.0; rows];
            ce.logsumexp(&z, &mut sums).unwrap();
            let hb: Vec<u32> = h.iter().map(|v| u32::from(v.to_bits())).collect();
            let values = [l.value, f.value, lh.value].map(f32::to_bits).to_vec();
            (
                0,
                [
                    values,
                    bits(&g),
                    bits(&lse),
                    bits(&b),
                    hb,
                    bits(&s),
                    bits(&sums),
                ]
                .concat(),
            )
        };
        for k in kernels() {
            let base = CrossEntropy::new(c)
                .kernel(k)
                .ignore_index(-100)
                .label_smoothing(0.05);
            let want = run_in(2, || all(&base));
            for n in [1, 2, 3] {
                let ce = base.clone().threads(n);
                assert_eq!(ce.get_threads(), n);
                assert!(all(&ce) == want, "{k:?} {rows}x{c} threads({n})");
                assert!(
                    run_in(1, || all(&ce)) == want,
                    "{k:?} {rows}x{c} threads({n}) nested"
                );
            }
        }
    }
}
