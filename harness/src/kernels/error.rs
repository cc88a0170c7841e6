//! What fetching says: progress [`FetchEvent`]s and the [`FetchError`]s
//! every source, the blob store and extraction share.

use std::path::PathBuf;
use std::time::Duration;

use kmatrix_protocol::Arch;

use super::deb::DebError;
use super::modinfo::ModuleError;
use super::oci_image::LayoutError;
use super::source::apt::AptError;
use super::source::mainline::MainlineError;
use super::source::rpm::RpmError;
use crate::cache::CacheError;

/// What a fetch is doing, for progress reports.
#[derive(Clone, Debug)]
pub enum FetchEvent {
    /// A download started.
    Downloading {
        /// The kernel's label.
        label: String,
        /// The file.
        what: String,
        /// Its size in bytes, when known.
        bytes: Option<u64>,
    },
    /// Bytes arrived.
    Progress {
        /// The kernel's label.
        label: String,
        /// The file.
        what: String,
        /// Bytes so far.
        done: u64,
        /// The size, when known.
        total: Option<u64>,
    },
    /// A download failed in a way worth another try.
    Retrying {
        /// The kernel's label.
        label: String,
        /// The file.
        what: String,
        /// What went wrong.
        error: String,
        /// How long until the next try.
        wait: Duration,
    },
    /// A download finished and was verified.
    Downloaded {
        /// The kernel's label.
        label: String,
        /// The file.
        what: String,
        /// Its size in bytes.
        bytes: u64,
        /// How long it took.
        seconds: f64,
    },
    /// The kernel's cache entry was incomplete; it is being rebuilt.
    Rebuilding {
        /// The kernel's label.
        label: String,
    },
    /// The kernel's artifacts were extracted into the cache.
    Extracted {
        /// The kernel's label.
        label: String,
        /// The kernel release.
        release: String,
    },
}

/// Why a kernel could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The cache is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An apt archive (Debian's, Ubuntu's) refused or lacks what was asked.
    #[error(transparent)]
    Apt(Box<AptError>),
    /// An RPM repository refused or lacks what was asked.
    #[error(transparent)]
    Rpm(Box<RpmError>),
    /// A download failed.
    #[error("downloading {url} failed")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A download does not match its pin. Nothing was cached.
    #[error("{what} from {url} has sha256 {actual}, but kernels.toml pins {expected}; the download was discarded. The server sent other bytes than were pinned (a corrupt or tampered mirror or registry, or a proxy); pins change only with `kmatrix kernels update --kernels {label}`, which takes them from the source's signed index or manifest")]
    DigestMismatch {
        /// The kernel's label.
        label: String,
        /// The file.
        what: String,
        /// The URL.
        url: String,
        /// The pin.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A download grew past the size its index or manifest gives.
    #[error("{what} from {url} is larger than the {limit} bytes its index gives; the download was discarded")]
    Oversize {
        /// The file.
        what: String,
        /// The URL.
        url: String,
        /// The size it should have.
        limit: u64,
    },
    /// A package gone from the mirror is not in the snapshot archive either.
    #[error("kernel `{label}`: `{package}` is gone from the mirror, and the snapshot archive cannot give it: {reason}")]
    Snapshot {
        /// The kernel's label.
        label: String,
        /// The package.
        package: String,
        /// Why.
        reason: String,
    },
    /// A build named by a `debian = { build }` entry cannot be pinned or
    /// fetched from the snapshot archive.
    #[error("kernel `{label}`: cannot take `{package}` from the snapshot archive: {reason}")]
    SnapshotBuild {
        /// The kernel's label.
        label: String,
        /// The image package.
        package: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The entry has no pins at all: refused before anything is
    /// downloaded, so a run reports it as a kernel that could not be
    /// fetched.
    #[error("kernel `{label}` is not pinned, so it is not fetched or run: `kmatrix kernels update --kernels {label}` pins it")]
    NotPinned {
        /// The kernel's label.
        label: String,
    },
    /// The entry lacks a pin its source needs.
    #[error("kernel `{label}` has no sha256 pin for `{what}`: run `kmatrix kernels update --kernels {label}`, or add the pin")]
    Unpinned {
        /// The kernel's label.
        label: String,
        /// The pin's name.
        what: String,
    },
    /// An OCI registry refused or lacks what was asked.
    #[error("kernel `{label}`")]
    Oci {
        /// The kernel's label.
        label: String,
        /// Why.
        #[source]
        source: OciError,
    },
    /// An OCI image's layers hold no kernel kmatrix can read.
    #[error("kernel `{label}`")]
    OciImage {
        /// The kernel's label.
        label: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// Ubuntu's mainline builds refused or lack what was asked.
    #[error("kernel `{label}`")]
    Mainline {
        /// The kernel's label.
        label: String,
        /// Why.
        #[source]
        source: Box<MainlineError>,
    },
    /// `--offline` and something is not cached.
    #[error("kernel `{label}` is not cached ({what}) and --offline forbids downloading it; run `kmatrix kernels fetch --kernels {label}` while online")]
    Offline {
        /// The kernel's label.
        label: String,
        /// What is missing.
        what: String,
    },
    /// A package could not be read.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// The packages lack a needed file.
    #[error("kernel `{label}`: {source_name} holds no {what} (a split Debian kernel, 6.19 on, pins the packages its linux-image depends on: run `kmatrix kernels update --kernels {label}`)")]
    Incomplete {
        /// The kernel's label.
        label: String,
        /// The source read.
        source_name: String,
        /// The missing file.
        what: &'static str,
    },
    /// The modules the guest needs cannot be resolved.
    #[error("kernel `{label}`")]
    Modules {
        /// The kernel's label.
        label: String,
        /// Why.
        #[source]
        source: ModuleError,
    },
    /// Writing to the cache failed.
    #[error("writing to the cache {}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// Whether the failure says nothing about what was asked for: the
    /// network, the cache or `--offline` stood in the way, and asking again
    /// later may work.
    pub fn is_passing(&self) -> bool {
        matches!(
            self,
            Self::Download { .. } | Self::Offline { .. } | Self::Cache(_) | Self::Io { .. }
        )
    }
}

impl From<AptError> for FetchError {
    fn from(err: AptError) -> Self {
        FetchError::Apt(Box::new(err))
    }
}

impl From<RpmError> for FetchError {
    fn from(err: RpmError) -> Self {
        FetchError::Rpm(Box::new(err))
    }
}

/// A registry that refused or lacks what was asked.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error(
        "`{reference}` is not an image reference (registry/repository:tag or @sha256:…): {reason}"
    )]
    Reference {
        /// What was given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry call failed.
    #[error("{reference}: {error}")]
    Registry {
        /// The reference asked for.
        reference: String,
        /// What the registry or the connection said.
        error: String,
    },
    /// The pinned manifest is gone.
    #[error("the registry no longer has {reference} ({error}); run `kmatrix kernels update --kernels {label}` to pin what its tag names now")]
    Gone {
        /// The kernel's label.
        label: String,
        /// The pinned reference.
        reference: String,
        /// What the registry said.
        error: String,
    },
    /// An image index has no image for the entry's architecture.
    #[error("{reference} is an image index with no linux/{arch} image: it has {}; name an image built for {arch}, or give the entry the `arch` of one it has", if .found.is_empty() { "no images".to_owned() } else { .found.join(", ") })]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The entry's architecture.
        arch: Arch,
        /// The platforms the index has.
        found: Vec<String>,
    },
}
