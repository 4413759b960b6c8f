//! The single integration-test binary (one link step for every test module).

// Index loops over several parallel arrays read more plainly in checks than zips.
#![allow(clippy::needless_range_loop)]

mod check;
mod common;

/// Counts each thread's allocations, for `alloc`'s test.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

mod agreement;
mod alloc;
mod corpus;
mod determinism;
mod edge_cases;
mod errors;
mod exp;
mod golden;
mod half;
mod kernels;
#[cfg(feature = "linear")]
mod linear;
mod oracle;
mod shard;
mod softmax;
