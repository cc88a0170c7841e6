//! The kernel matrix and each kernel's artifacts.
//!
//! [`Matrix`] is `kernels.toml` parsed and checked; [`Selection`] picks
//! entries from it (`--kernels`); [`Fetcher`] turns a selected entry into
//! [`KernelArtifacts`] in the cache: the entry's [`source`] names its
//! pinned inputs, the blob store downloads and verifies them, and the
//! artifacts (kernel image, config, the modules the guest needs to reach
//! its results port) are extracted once. [`update`] moves pins.

mod ar;
pub mod arm64;
mod artifacts;
mod blobs;
mod bounded;
pub mod bzimage;
pub(crate) mod config;
pub mod deb;
mod entry;
mod error;
mod fetch;
mod modinfo;
mod oci_image;
pub mod rpm;
mod select;
pub mod source;
pub mod update;
mod version;
mod vmlinux;

pub use artifacts::KernelArtifacts;
pub use config::{MainlineConfig, Matrix, MatrixError, BUILT_IN, BUILT_IN_NAME};
pub use entry::{KernelEntry, Source};
pub use error::{FetchError, FetchEvent};
pub use fetch::Fetcher;
pub use oci_image::{Layout, LayoutError};
pub use select::{SelectError, Selection};
pub use source::apt::{AptError, Mirror};
pub use source::distro::Distro;
pub use source::oci;
pub use update::{rewrite, Change, Pinning, UpdateError};
pub use version::Version;
