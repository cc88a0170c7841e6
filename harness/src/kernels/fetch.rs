//! Turning a matrix entry into cached, verified kernel artifacts.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::deb::{DebError, KernelFiles};
use super::debian::{DebianError, Mirror, PackageIndex};
use super::modinfo::{self, ModuleError};
use super::{KernelEntry, Matrix, Pinning, Source};
use crate::cache::{Cache, CacheError};
use crate::image::cpio;

/// Bumped whenever the layout of an extracted kernel directory changes, so
/// that old entries are rebuilt rather than misread.
const ARTIFACTS_FORMAT: u32 = 1;

/// A kernel ready to boot, in the cache.
#[derive(Clone, Debug)]
pub struct KernelArtifacts {
    /// The kernel's cache directory.
    pub dir: PathBuf,
    /// The bootable image.
    pub image: PathBuf,
    /// The kernel's build configuration.
    pub config: PathBuf,
    /// The initramfs part holding the modules the guest loads.
    pub modules_cpio: PathBuf,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The modules packed for the guest, in load order.
    pub modules: Vec<String>,
}

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
    /// The archive refused or lacks what was asked.
    #[error(transparent)]
    Debian(Box<DebianError>),
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
    #[error("{what} from {url} has sha256 {actual}, but kernels.toml pins {expected}; the download was discarded. If the mirror is right, the pin is stale: run `kmatrix kernels update --kernels {label}`")]
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
    #[error("kernel `{label}`: the pinned packages ({packages}) hold no {what}; a split kernel (Debian 6.19 on) pins the packages its linux-image depends on: run `kmatrix kernels update --kernels {label}`")]
    Incomplete {
        /// The kernel's label.
        label: String,
        /// The packages read.
        packages: String,
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

impl From<DebianError> for FetchError {
    fn from(err: DebianError) -> Self {
        FetchError::Debian(Box::new(err))
    }
}

/// Fetches kernels into the cache, sharing the package indexes between them.
pub struct Fetcher {
    cache: Cache,
    client: reqwest::Client,
    debian_mirror: Option<String>,
    matrix_path: PathBuf,
    offline: bool,
    indexes: Mutex<HashMap<String, Arc<OnceCell<Arc<PackageIndex>>>>>,
    progress: Box<dyn Fn(FetchEvent) + Send + Sync>,
}

impl Fetcher {
    /// A fetcher for the kernels of `matrix`, reporting to `progress`.
    pub fn new(
        cache: Cache,
        matrix: &Matrix,
        offline: bool,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Self {
        Self {
            cache,
            client: reqwest::Client::builder()
                .user_agent(concat!("kmatrix/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client builds"),
            debian_mirror: matrix.debian_mirror.clone(),
            matrix_path: matrix.path.clone(),
            offline,
            indexes: Mutex::default(),
            progress: Box::new(progress),
        }
    }

    /// The cache this fetcher fills.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether `entry`'s artifacts are already in the cache.
    pub fn is_cached(&self, entry: &KernelEntry) -> bool {
        KernelArtifacts::open(&self.cache.kernel_dir(&artifacts_key(entry))).is_some()
    }

    /// The Debian mirror this fetcher would use.
    pub fn mirror(&self) -> Result<Mirror, DebianError> {
        Mirror::resolve(self.debian_mirror.as_deref(), &self.matrix_path)
    }

    async fn index(&self, mirror: &Mirror, suite: &str) -> Result<Arc<PackageIndex>, DebianError> {
        let cell = self
            .indexes
            .lock()
            .expect("index map lock")
            .entry(suite.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async { mirror.index(&self.client, suite).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The pins `entry` would have on the newest image package of its series
    /// and flavour in its suite (for `kmatrix kernels update`).
    pub async fn newest_pinning(&self, entry: &KernelEntry) -> Result<Pinning, DebianError> {
        let Source::Debian { suite, package } = &entry.source;
        let mirror = self.mirror()?;
        let index = self.index(&mirror, suite).await?;
        let gone = || DebianError::Gone {
            label: entry.label.clone(),
            package: package.clone(),
            suite: suite.clone(),
            mirror: mirror.clone(),
        };
        let newest = index.newest_like(package).ok_or_else(gone)?;
        let parts = index.kernel_packages(newest).ok_or_else(gone)?;
        Ok(Pinning {
            label: entry.label.clone(),
            package: newest.to_owned(),
            sha256: parts
                .into_iter()
                .map(|(name, p)| (name, p.sha256.clone()))
                .collect(),
        })
    }

    /// Makes sure `entry`'s artifacts are in the cache, downloading and
    /// extracting what is missing.
    pub async fn fetch(&self, entry: &KernelEntry) -> Result<KernelArtifacts, FetchError> {
        let dir = self.cache.kernel_dir(&artifacts_key(entry));
        if let Some(artifacts) = KernelArtifacts::open(&dir) {
            return Ok(artifacts);
        }
        let mut debs = Vec::new();
        for (package, pin) in &entry.sha256 {
            let path = self.cache.blob(pin);
            if !path.exists() {
                self.download_package(entry, package, pin, &path).await?;
            }
            debs.push(path);
        }
        let cache = self.cache.clone();
        let label = entry.label.clone();
        let packages = entry.sha256.keys().cloned().collect::<Vec<_>>().join(", ");
        let artifacts =
            tokio::task::spawn_blocking(move || extract(&cache, &debs, &dir, &label, &packages))
                .await
                .expect("extraction does not panic")?;
        (self.progress)(FetchEvent::Extracted {
            label: entry.label.clone(),
            release: artifacts.release.clone(),
        });
        Ok(artifacts)
    }

    async fn download_package(
        &self,
        entry: &KernelEntry,
        package: &str,
        pin: &[u8; 32],
        dest: &Path,
    ) -> Result<(), FetchError> {
        if self.offline {
            return Err(FetchError::Offline {
                label: entry.label.clone(),
                what: package.to_owned(),
            });
        }
        let Source::Debian { suite, .. } = &entry.source;
        let mirror = self.mirror()?;
        let index = self.index(&mirror, suite).await?;
        let found = index.get(package).ok_or_else(|| DebianError::Gone {
            label: entry.label.clone(),
            package: package.to_owned(),
            suite: suite.clone(),
            mirror: mirror.clone(),
        })?;
        if found.sha256 != hex::encode(pin) {
            return Err(DebianError::Repinned {
                label: entry.label.clone(),
                package: package.to_owned(),
                suite: suite.clone(),
                expected: hex::encode(pin),
                actual: found.sha256.clone(),
            }
            .into());
        }
        let url = mirror.file_url(&found.filename);
        self.download(&entry.label, package, &url, pin, dest).await
    }

    /// Downloads `url` into the cache at `dest`, checking it against `pin`.
    /// Nothing is left in the cache if the download fails or mismatches.
    pub async fn download(
        &self,
        label: &str,
        what: &str,
        url: &str,
        pin: &[u8; 32],
        dest: &Path,
    ) -> Result<(), FetchError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| FetchError::Download {
            url: url.to_owned(),
            source,
        };
        let io = |source| FetchError::Io {
            path: dest.to_owned(),
            source,
        };
        let start = Instant::now();
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| failed(e.into()))?;
        (self.progress)(FetchEvent::Downloading {
            label: label.to_owned(),
            what: what.to_owned(),
            bytes: response.content_length(),
        });
        let mut file = self.cache.temp_file().map_err(io)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.into()))? {
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
            bytes += chunk.len() as u64;
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if &actual != pin {
            return Err(FetchError::DigestMismatch {
                label: label.to_owned(),
                what: what.to_owned(),
                url: url.to_owned(),
                expected: hex::encode(pin),
                actual: hex::encode(actual),
            });
        }
        file.as_file().sync_all().map_err(io)?;
        file.persist(dest).map_err(|e| io(e.error))?;
        (self.progress)(FetchEvent::Downloaded {
            label: label.to_owned(),
            what: what.to_owned(),
            bytes,
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}

/// The cache key of an entry's artifacts: its pins and the layout version.
fn artifacts_key(entry: &KernelEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(ARTIFACTS_FORMAT.to_le_bytes());
    for (name, pin) in &entry.sha256 {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(pin);
    }
    hex::encode(&hasher.finalize()[..16])
}

const IMAGE: &str = "vmlinuz";
const CONFIG: &str = "config";
const MODULES_CPIO: &str = "modules.cpio";
const RELEASE: &str = "release";
const MODULES: &str = "modules";

impl KernelArtifacts {
    /// The artifacts in `dir`, if it is a complete entry.
    fn open(dir: &Path) -> Option<Self> {
        let release = std::fs::read_to_string(dir.join(RELEASE)).ok()?;
        let modules = std::fs::read_to_string(dir.join(MODULES)).ok()?;
        let artifacts = Self {
            dir: dir.to_owned(),
            image: dir.join(IMAGE),
            config: dir.join(CONFIG),
            modules_cpio: dir.join(MODULES_CPIO),
            release: release.trim().to_owned(),
            modules: modules.lines().map(str::to_owned).collect(),
        };
        (artifacts.image.exists() && artifacts.modules_cpio.exists()).then_some(artifacts)
    }
}

/// Extracts the artifacts from the packages into `dest`, atomically.
fn extract(
    cache: &Cache,
    debs: &[PathBuf],
    dest: &Path,
    label: &str,
    packages: &str,
) -> Result<KernelArtifacts, FetchError> {
    let mut files = KernelFiles::default();
    for deb in debs {
        files.read_deb(deb)?;
    }
    let incomplete = |what| FetchError::Incomplete {
        label: label.to_owned(),
        packages: packages.to_owned(),
        what,
    };
    let image = files
        .image
        .ok_or_else(|| incomplete("kernel image (vmlinuz)"))?;
    let config = files.config.ok_or_else(|| incomplete("kernel config"))?;
    let release = files.release.ok_or_else(|| incomplete("modules.builtin"))?;
    let builtin = modinfo::builtin_names(files.builtin.as_deref().unwrap_or_default());
    let modules =
        modinfo::load_order(modinfo::PORT_MODULES, &files.modules, &builtin).map_err(|source| {
            FetchError::Modules {
                label: label.to_owned(),
                source,
            }
        })?;

    let mut archive = cpio::Archive::new();
    archive.dir("kmatrix");
    archive.dir("kmatrix/modules");
    for (i, (name, elf)) in modules.iter().enumerate() {
        archive.file(&format!("kmatrix/modules/{i:02}-{name}.ko"), 0o644, elf);
    }
    let names: Vec<_> = modules.iter().map(|(n, _)| n.as_str()).collect();

    let dir = cache.temp_dir().map_err(|source| FetchError::Io {
        path: cache.root().join("tmp"),
        source,
    })?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.path().join(name), data).map_err(|source| FetchError::Io {
            path: dest.join(name),
            source,
        })
    };
    write(IMAGE, &image)?;
    write(CONFIG, &config)?;
    write(MODULES_CPIO, &archive.finish())?;
    write(MODULES, names.join("\n").as_bytes())?;
    // Written last: `open` treats an entry without it as incomplete.
    write(RELEASE, release.as_bytes())?;
    cache
        .commit_dir(dir, dest)
        .map_err(|source| FetchError::Io {
            path: dest.to_owned(),
            source,
        })?;
    KernelArtifacts::open(dest).ok_or_else(|| FetchError::Io {
        path: dest.to_owned(),
        source: std::io::Error::other("the committed entry is incomplete"),
    })
}
