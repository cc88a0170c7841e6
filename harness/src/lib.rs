//! kmatrix: test eBPF programs against a matrix of Linux kernels.
//!
//! Data flows one way: the matrix ([`kernels`]) selects kernels, whose
//! artifacts are fetched into the [`cache`]; each gets an initramfs
//! ([`image`]) holding the guest [`agent`], the [`objects`] under test and
//! the kernel's plan from the [`suite`];
//! each boots in a [`vm`], whose results [`channel`] streams frames back;
//! the [`runner`] fans kernels out and turns frames into outcomes (judged
//! by the [`suite`]) and events, which the [`report`] sinks render.

#![warn(missing_docs)]

pub mod agent;
pub mod bench;
pub mod cache;
pub mod cargo_test;
pub mod channel;
pub mod cli;
pub mod exec;
pub mod image;
pub mod kernels;
pub mod objects;
pub mod partition;
pub mod report;
pub mod runner;
pub mod suite;
pub mod toml_file;
pub mod vm;
