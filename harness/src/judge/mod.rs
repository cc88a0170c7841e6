//! The judge: what a kernel's raw results mean. [`kernel::KernelJudge`]
//! turns one kernel's frames into the [`crate::event::RunEvent`]s they
//! mean, with no I/O: [`suite::KernelCheck`] holds each load verdict and
//! case result against the suite's expectations, [`libtest::Libtest`] reads
//! a test binary's output under `kmatrix exec`, and [`verifier`] finds the
//! line of a verifier log that says why. Tests decide as [`Outcome`]s,
//! which is all the reporters see of them.

pub mod kernel;
pub mod libtest;
pub mod suite;
pub mod verifier;

#[cfg(test)]
mod tests;

pub use kmatrix_protocol::report::Outcome;
