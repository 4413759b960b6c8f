//! The single integration-test binary (one link step for every test module).

// Index loops over several parallel arrays read more plainly in checks than zips.
#![allow(clippy::needless_range_loop)]

mod check;
mod common;

mod agreement;
mod corpus;
mod determinism;
mod edge_cases;
mod errors;
mod exp;
mod half;
mod kernels;
mod oracle;
mod shard;
mod softmax;
