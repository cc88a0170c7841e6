//! kmatrix: test eBPF programs against a matrix of Linux kernels.
//!
//! The modules follow the data flow. [`plan`] turns a request into a
//! validated run: the matrix ([`kernels`]) selects kernels, whose
//! artifacts are fetched into the [`cache`]; the [`suite`] and its
//! [`objects`] (or an [`exec`] program) become initramfs parts ([`image`])
//! with the guest [`agent`]. The [`runner`] boots each kernel in a [`vm`],
//! whose results [`channel`] streams frames back; the [`judge`] turns them
//! into [`event`]s, and the runner sends them to one [`report::Reporter`].
//! [`error`] decides exit codes; [`cli`] and [`cargo_test`] are the two
//! front ends.

#![warn(missing_docs)]

pub mod agent;
pub mod bisect;
pub mod cache;
pub mod cargo_test;
pub mod channel;
pub mod cli;
pub mod error;
pub mod error_chain;
pub mod event;
pub mod exec;
pub mod host_list;
pub mod image;
pub mod judge;
pub mod kernels;
pub mod objects;
pub mod partition;
pub mod plan;
pub mod presets;
pub mod probes;
pub mod report;
pub mod runner;
pub mod suite;
pub mod toml_file;
pub mod tools;
pub mod vm;
