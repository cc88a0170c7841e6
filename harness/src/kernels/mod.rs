//! The kernel matrix and each kernel's artifacts.
//!
//! [`Matrix`] is `kernels.toml` parsed and checked; [`Selection`] picks
//! entries from it (`--kernels`); [`Fetcher`] turns a selected entry into
//! [`KernelArtifacts`] in the cache: the kernel image, its config, and the
//! modules the guest needs to reach its results port, downloaded once and
//! verified against the entry's pins.

pub mod bzimage;
mod config;
mod deb;
mod debian;
mod fetch;
mod modinfo;
pub mod oci;
mod select;
mod update;
mod version;

pub use config::{KernelEntry, Matrix, MatrixError, Source, MIRROR_ENV};
pub use debian::{DebianError, Mirror};
pub use fetch::{FetchError, FetchEvent, Fetcher, KernelArtifacts};
pub use select::{SelectError, Selection};
pub use update::{rewrite, Pinning, UpdateError};
pub use version::Version;
