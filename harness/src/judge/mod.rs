//! The judge: what a kernel's raw results mean. [`suite::KernelCheck`]
//! holds each load verdict and case result against the suite's
//! expectations, [`libtest::Libtest`] reads a test binary's output under
//! `kmatrix exec`, and [`verifier`] finds the line of a verifier log that
//! says why. Each yields [`Outcome`]s, which is all the reporters see.

pub mod libtest;
pub mod suite;
pub mod verifier;

pub use kmatrix_protocol::report::Outcome;
