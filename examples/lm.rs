//! `cargo run --release --example lm`: trains a small next-word model whose output layer
//! is xent's fused linear + cross-entropy head, on text shipped with the crate (its own
//! README and crate docs, under the crate's MIT OR Apache-2.0 license).
//!
//! Model: each position's hidden state is `E1[w_{t-1}] + E2[w_{t-2}]` (two embedding
//! tables of `DIM` values), then the head `LinearCrossEntropy` over the vocabulary (the
//! most frequent words plus an unknown-word token). Plain SGD. One line per step with
//! tokens per second and the loss; at the end, the peak memory of the process next to
//! what the step's full logits would have taken.
//!
//! Options: `--steps N` (default 40), `--dim D` (default 64), `--budget MIB` (the head's
//! memory budget, default 1).

use std::collections::HashMap;
use std::time::Instant;
use xent::{CrossEntropy, LinearCrossEntropy, LinearGrads};

const TEXT: &str = concat!(include_str!("../README.md"), include_str!("../src/lib.rs"));
const VOCAB: usize = 2048;
const BATCH: usize = 4096;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got {v}"))
        })
        .unwrap_or(default)
}

/// Words (runs of letters or digits, lower-cased) and single punctuation marks, mapped to
/// ids by frequency; id `VOCAB - 1` is every rarer word.
fn tokens() -> Vec<u32> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in TEXT.chars() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                words.push(c.to_string());
            }
        }
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for w in &words {
        *count.entry(w).or_default() += 1;
    }
    let mut by_freq: Vec<(&str, usize)> = count.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let id: HashMap<&str, u32> = by_freq
        .iter()
        .take(VOCAB - 1)
        .enumerate()
        .map(|(i, (w, _))| (*w, i as u32))
        .collect();
    words
        .iter()
        .map(|w| *id.get(w.as_str()).unwrap_or(&(VOCAB as u32 - 1)))
        .collect()
}

/// The process's peak resident memory in bytes (Linux), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A deterministic pseudo-random stream for the initial weights and the batches.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn main() -> Result<(), xent::Error> {
    let (steps, dim, budget) = (arg("--steps", 40), arg("--dim", 64), arg("--budget", 1));
    let toks = tokens();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let init = |rng: &mut Rng, len: usize, s: f32| {
        (0..len).map(|_| rng.uniform() * s).collect::<Vec<f32>>()
    };
    let (mut e1, mut e2) = (
        init(&mut rng, VOCAB * dim, 0.2),
        init(&mut rng, VOCAB * dim, 0.2),
    );
    let mut weight = init(&mut rng, VOCAB * dim, 0.1);
    let mut bias = vec![0.0f32; VOCAB];
    let head = LinearCrossEntropy::new(CrossEntropy::new(VOCAB), dim).memory_budget(budget << 20);
    let (mut hidden, mut targets) = (vec![0.0f32; BATCH * dim], vec![0u32; BATCH]);
    let (mut dh, mut dw, mut db) = (
        vec![0.0f32; BATCH * dim],
        vec![0.0; VOCAB * dim],
        vec![0.0; VOCAB],
    );
    let mut ctx = vec![(0usize, 0usize); BATCH];
    let lr = 0.5f32;
    println!(
        "{} tokens of text, vocabulary {VOCAB}, dim {dim}, batch {BATCH}, head chunks of {} rows",
        toks.len(),
        head.chunk_rows(BATCH)
    );
    let start = Instant::now();
    for step in 1..=steps {
        for (r, c) in ctx.iter_mut().enumerate() {
            let p = 2 + (rng.next() as usize) % (toks.len() - 2);
            *c = (toks[p - 1] as usize, toks[p - 2] as usize);
            targets[r] = toks[p];
            let h = &mut hidden[r * dim..(r + 1) * dim];
            for k in 0..dim {
                h[k] = e1[c.0 * dim + k] + e2[c.1 * dim + k];
            }
        }
        let t0 = Instant::now();
        let grads = LinearGrads::new(&mut dh, &mut dw).bias(&mut db);
        let loss = head.forward_backward(&hidden, &weight, Some(&bias), &targets, grads)?;
        let secs = t0.elapsed().as_secs_f64();
        weight.iter_mut().zip(&dw).for_each(|(w, g)| *w -= lr * g);
        bias.iter_mut().zip(&db).for_each(|(b, g)| *b -= lr * g);
        // The embeddings get the hidden states' gradient, row by row (scaled up: each
        // row holds 1/BATCH of the mean).
        for (r, &(a, b)) in ctx.iter().enumerate() {
            for k in 0..dim {
                let g = lr * 64.0 * dh[r * dim + k];
                e1[a * dim + k] -= g;
                e2[b * dim + k] -= g;
            }
        }
        println!(
            "step {step:3}  loss {:.4}  accuracy {:.3}  head {:.0} tokens/s",
            loss.value,
            loss.accuracy(),
            BATCH as f64 / secs
        );
    }
    let logits = (BATCH * VOCAB * 4) as f64 / (1u64 << 20) as f64;
    println!("{steps} steps in {:.2} s", start.elapsed().as_secs_f64());
    match peak_rss() {
        Some(p) => println!(
            "peak memory of the process {:.1} MiB; the full f32 logits of one step alone would be {logits:.1} MiB",
            p as f64 / (1u64 << 20) as f64
        ),
        None => println!("full f32 logits of one step would be {logits:.1} MiB"),
    }
    Ok(())
}
