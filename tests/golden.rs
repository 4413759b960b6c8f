//! The golden test: a hash of the exact bits of every output, for every kernel this CPU
//! runs, over a grid of shapes and options that reaches every path. It guards refactoring:
//! a change that moves code must reproduce these bits exactly, and a change that alters
//! the arithmetic on purpose must say so in its commit and record new hashes.
//!
//! The expected hashes are in `tests/golden/hashes.txt`, one line per kernel and case:
//! `kernel case hash`. The portable kernel's bits depend on whether FMA is compiled in,
//! so its key is `Portable` or `Portable+fma` on x86-64, and `Neon` on aarch64 (where it
//! always fuses). A kernel with no recorded line (say AVX-512 on a host that lacks it when
//! the file was written) is reported, not compared:
//! `XENT_GOLDEN_RECORD=1 cargo test --release golden` adds the missing lines (and
//! rewrites changed ones) from the current code, to be committed with the reason.
//!
//! Paths reached (see the crate docs): row groups (3, 10, 33, 64 classes), grouped rows
//! (100, 255), the fused three passes (1000; grouped as well with the AVX-512 kernel on a
//! Zen 5), linked rows (8192, 20000, 32768), online rows (20000, 32768, 40000), the
//! blocked path (140000); each plain, with smoothing and weights, with z-loss and
//! soft-capping, with ignored rows, and with `Reduction::None`; f32, bf16 and f16; three
//! vocabulary shards; backward from a saved log-sum-exp; and the softmax family.

use crate::common::{kernels, seeded_row};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use xent::half::{bf16, f16};
use xent::{CrossEntropy, Kernel, Reduction, RowOutputs, Shard, ShardStats};

/// FNV-1a over 64 bits: enough to notice any changed bit, and stable across platforms.
struct Hash(u64);

impl Hash {
    fn new() -> Self {
        Hash(0xcbf2_9ce4_8422_2325)
    }
    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn f32s(&mut self, xs: &[f32]) {
        for x in xs {
            self.u64(u64::from(x.to_bits()));
        }
    }
    fn f64(&mut self, x: f64) {
        self.u64(x.to_bits());
    }
    fn loss(&mut self, l: &xent::Loss) {
        self.f32s(&[l.value, l.z_loss]);
        self.u64(l.rows as u64);
        self.u64(l.correct as u64);
        self.f64(l.weight);
    }
}

/// Shapes `(rows, classes)`: at least two rows each, and enough rows of the short ones to
/// fill whole row groups and a partial one.
const SHAPES: [(usize, usize); 12] = [
    (37, 3),
    (35, 10),
    (19, 33),
    (17, 64),
    (13, 100),
    (11, 255),
    (5, 1000),
    (3, 8192),
    (3, 20_000),
    (3, 32_768),
    (2, 40_000),
    (2, 140_000),
];

/// The option sets, by name.
fn options(c: usize) -> Vec<(&'static str, CrossEntropy)> {
    let w: Vec<f32> = (0..c).map(|j| 0.5 + (j % 7) as f32 * 0.25).collect();
    vec![
        ("plain", CrossEntropy::new(c)),
        (
            "smooth+weights",
            CrossEntropy::new(c).label_smoothing(0.1).class_weights(w),
        ),
        (
            "zloss+softcap",
            CrossEntropy::new(c).z_loss(1e-3).softcap(15.0),
        ),
        (
            "ignored",
            CrossEntropy::new(c)
                .ignore_index(-100)
                .reduction(Reduction::Sum),
        ),
        ("none", CrossEntropy::new(c).reduction(Reduction::None)),
    ]
}

/// Logits for a shape: the tests' seeded mixture (including -inf and +-1e30), one row
/// made uniform.
fn logits(rows: usize, c: usize) -> Vec<f32> {
    let mut z = seeded_row(0x601d + c as u64, rows * c);
    z[c..2 * c].fill(0.25);
    z
}

/// Targets: a spread of classes, every fifth row -100 (ignored where that is set).
fn targets(rows: usize, c: usize) -> Vec<i64> {
    (0..rows)
        .map(|r| {
            if r % 5 == 4 {
                -100
            } else {
                (r * 7919 % c) as i64
            }
        })
        .collect()
}

/// The bits of every cross-entropy output of one case.
fn case_hash(ce: &CrossEntropy, z: &[f32], t: &[i64]) -> u64 {
    let mut h = Hash::new();
    let (rows, c) = (t.len(), ce.get_classes());
    let t: Vec<i64> = match ce.get_ignore_index() {
        Some(_) => t.to_vec(),
        None => t.iter().map(|&v| v.max(0)).collect(),
    };
    h.loss(&ce.forward(z, &t).unwrap());
    let mut g = z.to_vec();
    h.loss(&ce.forward_backward(&mut g, &t).unwrap());
    h.f32s(&g);
    let mut gi = vec![0.0; z.len()];
    h.loss(&ce.forward_backward_into(z, &t, &mut gi).unwrap());
    h.f32s(&gi);
    let (mut losses, mut lse) = (vec![0.0; rows], vec![0.0; rows]);
    let outs = RowOutputs::new().losses(&mut losses).lse(&mut lse);
    h.loss(&ce.forward_with(z, &t, outs).unwrap());
    h.f32s(&losses);
    h.f32s(&lse);
    let up: Vec<f32> = (0..rows).map(|r| [1.0, 0.5, -2.0][r % 3]).collect();
    let mut gb = z.to_vec();
    ce.backward(&mut gb, &t, &lse, &up).unwrap();
    h.f32s(&gb);
    // Half precision: the 16-bit gradients and the losses.
    let zb: Vec<bf16> = z.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut gh = zb.clone();
    h.loss(&ce.forward_backward_half(&mut gh, &t).unwrap());
    h.f32s(&gh.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    let zf: Vec<f16> = z.iter().map(|&v| f16::from_f32(v)).collect();
    let mut gf = zf.clone();
    h.loss(&ce.forward_backward_half(&mut gf, &t).unwrap());
    h.f32s(&gf.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    let mut gb16 = zb.clone();
    ce.backward_half(&mut gb16, &t, &lse, &up).unwrap();
    h.f32s(&gb16.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    // Three shards: each shard's statistics, the loss, the gradients.
    let cuts = [0, c / 3, 2 * c / 3, c];
    let mut merged = vec![ShardStats::EMPTY; rows];
    let mut parts = Vec::new();
    for w in cuts.windows(2) {
        let s = Shard::new(w[0], w[1] - w[0]);
        let part: Vec<f32> = (0..rows)
            .flat_map(|r| z[r * c + w[0]..r * c + w[1]].to_vec())
            .collect();
        let mut st = vec![ShardStats::EMPTY; rows];
        ce.shard_stats(&part, s, &t, &mut st).unwrap();
        for (m, s) in merged.iter_mut().zip(&st) {
            h.f32s(&[s.max, s.top]);
            h.f64(s.sum);
            h.f64(s.smooth_sum);
            *m = m.merge(*s).unwrap();
        }
        parts.push((s, part));
    }
    h.loss(&ce.shard_loss(&merged, &t).unwrap());
    for (s, mut part) in parts {
        ce.shard_backward(&mut part, s, &t, &merged).unwrap();
        h.f32s(&part);
    }
    h.0
}

/// The softmax family of one shape.
fn softmax_hash(ce: &CrossEntropy, z: &[f32]) -> u64 {
    let mut h = Hash::new();
    let mut p = z.to_vec();
    ce.softmax(&mut p).unwrap();
    h.f32s(&p);
    let mut lp = vec![0.0; z.len()];
    ce.log_softmax_into(z, &mut lp).unwrap();
    h.f32s(&lp);
    let mut lse = vec![0.0; z.len() / ce.get_classes()];
    ce.logsumexp(z, &mut lse).unwrap();
    h.f32s(&lse);
    h.0
}

/// The key of a kernel in the hash file. On aarch64 the portable kernel is the NEON one
/// (`Kernel::Neon` runs the same code, fused multiply-adds included), so both share its
/// lines.
fn key(k: Kernel) -> String {
    if k == Kernel::Portable && cfg!(target_arch = "aarch64") {
        "Neon".into()
    } else if k == Kernel::Portable && cfg!(target_feature = "fma") {
        "Portable+fma".into()
    } else {
        format!("{k:?}")
    }
}

/// `kernel case -> hash` for every kernel available here.
fn current() -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for k in kernels() {
        for (rows, c) in SHAPES {
            let z = logits(rows, c);
            let t = targets(rows, c);
            for (name, ce) in options(c) {
                let ce = ce.kernel(k);
                out.insert(
                    (key(k), format!("{rows}x{c}/{name}")),
                    case_hash(&ce, &z, &t),
                );
            }
            let ce = CrossEntropy::new(c).kernel(k);
            out.insert(
                (key(k), format!("{rows}x{c}/softmax")),
                softmax_hash(&ce, &z),
            );
        }
    }
    out
}

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/hashes.txt");

fn recorded() -> BTreeMap<(String, String), u64> {
    let text = std::fs::read_to_string(FILE).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hash = u64::from_str_radix(f[2], 16).unwrap();
            ((f[0].to_string(), f[1].to_string()), hash)
        })
        .collect()
}

#[test]
fn every_output_keeps_its_bits() {
    let now = current();
    let mut want = recorded();
    let record = std::env::var_os("XENT_GOLDEN_RECORD").is_some();
    let mut changed = Vec::new();
    let mut missing = Vec::new();
    for (k, &h) in &now {
        match want.get(k) {
            Some(&w) if w == h => {}
            Some(_) => changed.push(k.clone()),
            None => missing.push(k.clone()),
        }
    }
    if record {
        want.extend(now.clone());
        let mut text = String::from(
            "# kernel case hash: see tests/golden.rs. Rewritten by XENT_GOLDEN_RECORD=1.\n",
        );
        for ((k, c), h) in &want {
            writeln!(text, "{k} {c} {h:016x}").unwrap();
        }
        std::fs::write(FILE, text).unwrap();
        println!(
            "golden: recorded {} changed and {} new hashes",
            changed.len(),
            missing.len()
        );
        return;
    }
    let kernels_missing: std::collections::BTreeSet<&String> =
        missing.iter().map(|(k, _)| k).collect();
    if !kernels_missing.is_empty() {
        println!(
            "golden: no recorded hashes for {kernels_missing:?} (run with XENT_GOLDEN_RECORD=1 \
             on a host that has them, and commit the file)"
        );
    }
    assert!(
        changed.is_empty(),
        "golden: {} outputs changed their bits, first {:?} (if on purpose, record them with \
         XENT_GOLDEN_RECORD=1 and say why in the commit)",
        changed.len(),
        &changed[..changed.len().min(8)]
    );
    // Something must have been compared: AVX2 and the portable kernel run on every
    // x86-64 host CI uses, the NEON kernel on aarch64 (under qemu in CI), and their
    // hashes are recorded.
    let compared = now.len() - missing.len();
    assert!(compared > 0, "golden: nothing compared");
    println!(
        "golden: {compared} hashes compared, {} kernels unrecorded",
        kernels_missing.len()
    );
}
