//! The single integration-test binary (one link step for every test module).

mod common;

mod agreement;
mod determinism;
mod edge_cases;
mod errors;
mod exp;
mod kernels;
mod oracle;
mod softmax;
