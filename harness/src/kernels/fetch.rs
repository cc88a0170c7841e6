//! Turning a matrix entry into cached, verified kernel artifacts.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::deb::{DebError, KernelFiles};
use super::debian::{DebianError, Mirror, PackageIndex};
use super::modinfo::{self, ModuleError};
use super::{oci, KernelEntry, Matrix, Pinning, Source};
use crate::cache::{Cache, CacheError};
use crate::image::cpio;

/// Bumped whenever the layout of an extracted kernel directory changes, so
/// that old entries are rebuilt rather than misread.
const ARTIFACTS_FORMAT: u32 = 2;

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
    /// The packed modules, one decompressed `<name>.ko` each.
    pub modules_dir: PathBuf,
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
        source: oci::OciError,
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

    /// `entry`'s artifacts, if they are in the cache.
    pub fn cached(&self, entry: &KernelEntry) -> Option<KernelArtifacts> {
        KernelArtifacts::open(&self.cache.kernel_dir(&artifacts_key(entry)))
    }

    /// What the cache holds for `entry`: its artifacts directory, and the
    /// downloaded files (by sha256 hex) it pins or was extracted from.
    pub fn references(&self, entry: &KernelEntry) -> (PathBuf, Vec<String>) {
        let dir = self.cache.kernel_dir(&artifacts_key(entry));
        let mut blobs: Vec<String> = entry.sha256.values().map(hex::encode).collect();
        if let Ok(inputs) = std::fs::read_to_string(dir.join(INPUTS)) {
            blobs.extend(inputs.lines().map(str::to_owned));
        }
        (dir, blobs)
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

    /// The pins `entry` would have on what its source offers now: the
    /// newest image package of its series and flavour in its Debian suite,
    /// or the image manifest its OCI tag names. `None` for sources that
    /// name fixed content (URLs, paths).
    pub async fn newest_pinning(&self, entry: &KernelEntry) -> Result<Option<Pinning>, FetchError> {
        match &entry.source {
            Source::Debian { suite, package } => {
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
                Ok(Some(Pinning {
                    label: entry.label.clone(),
                    package: Some(newest.to_owned()),
                    sha256: parts
                        .into_iter()
                        .map(|(name, p)| (name, p.sha256.clone()))
                        .collect(),
                }))
            }
            Source::Oci { reference } => {
                let digest = oci::resolve(reference)
                    .await
                    .map_err(|source| FetchError::Oci {
                        label: entry.label.clone(),
                        source,
                    })?;
                Ok(Some(Pinning {
                    label: entry.label.clone(),
                    package: None,
                    sha256: [(oci::PIN.to_owned(), digest)].into(),
                }))
            }
            Source::Url { .. } | Source::Path { .. } => Ok(None),
        }
    }

    /// Makes sure `entry`'s artifacts are in the cache, downloading and
    /// extracting what is missing.
    pub async fn fetch(&self, entry: &KernelEntry) -> Result<KernelArtifacts, FetchError> {
        let dir = self.cache.kernel_dir(&artifacts_key(entry));
        if let Some(artifacts) = KernelArtifacts::open(&dir) {
            return Ok(artifacts);
        }
        let label = &entry.label;
        let pin = |name: &str| {
            entry.sha256.get(name).ok_or_else(|| FetchError::Unpinned {
                label: label.clone(),
                what: name.to_owned(),
            })
        };
        let mut inputs = Vec::new();
        match &entry.source {
            Source::Debian { .. } => {
                for (package, pin) in &entry.sha256 {
                    let path = self.cache.blob(pin);
                    if !path.exists() {
                        self.download_package(entry, package, pin, &path).await?;
                    }
                    inputs.push(Input::Deb(path));
                }
            }
            Source::Url { image, modules } => {
                inputs.push(Input::Image(
                    self.download_pinned(entry, "image", image, pin("image")?)
                        .await?,
                ));
                if let Some(modules) = modules {
                    let path = self
                        .download_pinned(entry, "modules", modules, pin("modules")?)
                        .await?;
                    inputs.push(Input::Tarball(path));
                }
            }
            Source::Oci { reference } => {
                let digest = pin(oci::PIN)?;
                for layer in oci::pull(self, entry, reference, digest).await? {
                    inputs.push(Input::Tarball(layer));
                }
            }
            Source::Path { image, modules } => {
                inputs.push(Input::Image(image.clone()));
                if let Some(modules) = modules {
                    inputs.push(Input::Dir(modules.clone()));
                }
            }
        }
        let cache = self.cache.clone();
        let what = entry.source.to_string();
        let label = label.clone();
        let artifacts =
            tokio::task::spawn_blocking(move || extract(&cache, &inputs, &dir, &label, &what))
                .await
                .expect("extraction does not panic")?;
        (self.progress)(FetchEvent::Extracted {
            label: entry.label.clone(),
            release: artifacts.release.clone(),
        });
        Ok(artifacts)
    }

    /// The cached file with this pin, downloaded from `url` if missing.
    async fn download_pinned(
        &self,
        entry: &KernelEntry,
        what: &str,
        url: &str,
        pin: &[u8; 32],
    ) -> Result<PathBuf, FetchError> {
        let path = self.cache.blob(pin);
        if !path.exists() {
            if self.offline {
                return Err(FetchError::Offline {
                    label: entry.label.clone(),
                    what: what.to_owned(),
                });
            }
            self.download(&entry.label, what, url, pin, &path).await?;
        }
        Ok(path)
    }

    /// Whether downloads are forbidden.
    pub(super) fn offline(&self) -> bool {
        self.offline
    }

    /// Reports progress.
    pub(super) fn progress(&self, event: FetchEvent) {
        (self.progress)(event)
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
        let Source::Debian { suite, .. } = &entry.source else {
            unreachable!("only Debian entries have packages");
        };
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
        let mut attempt = 1;
        let (file, hasher, bytes) = loop {
            match self.try_download(label, what, url, dest).await {
                Ok(done) => break done,
                Err(Transient(err)) if attempt < DOWNLOAD_ATTEMPTS => {
                    let wait = Duration::from_secs(1 << (attempt - 1));
                    (self.progress)(FetchEvent::Retrying {
                        label: label.to_owned(),
                        what: what.to_owned(),
                        error: crate::report::error_chain(&*err),
                        wait,
                    });
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(Transient(err)) => return Err(failed(err)),
                Err(Fatal(err)) => return Err(err),
            }
        };
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

/// How many times a download is tried before its error is final.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// A failed download attempt: worth retrying, or not.
enum Attempt {
    Transient(Box<dyn std::error::Error + Send + Sync>),
    Fatal(FetchError),
}
use Attempt::{Fatal, Transient};

impl Fetcher {
    /// One attempt at `url`: the temporary file, its running hash, its size.
    async fn try_download(
        &self,
        label: &str,
        what: &str,
        url: &str,
        dest: &Path,
    ) -> Result<(tempfile::NamedTempFile, Sha256, u64), Attempt> {
        let io = |source| {
            Fatal(FetchError::Io {
                path: dest.to_owned(),
                source,
            })
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Transient(e.into()))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Transient(format!("HTTP {status}").into()));
        }
        let mut response = response.error_for_status().map_err(|e| {
            Fatal(FetchError::Download {
                url: url.to_owned(),
                source: e.into(),
            })
        })?;
        let total = response.content_length();
        (self.progress)(FetchEvent::Downloading {
            label: label.to_owned(),
            what: what.to_owned(),
            bytes: total,
        });
        let mut file = self.cache.temp_file().map_err(io)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| Transient(e.into()))? {
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
            bytes += chunk.len() as u64;
            (self.progress)(FetchEvent::Progress {
                label: label.to_owned(),
                what: what.to_owned(),
                done: bytes,
                total,
            });
        }
        Ok((file, hasher, bytes))
    }
}

/// What an entry's artifacts are extracted from.
enum Input {
    /// A Debian package.
    Deb(PathBuf),
    /// A tar archive (plain, gzip or zstd): an OCI layer, a modules tarball.
    Tarball(PathBuf),
    /// A kernel image file.
    Image(PathBuf),
    /// A directory of modules.
    Dir(PathBuf),
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
    // A kernel on disk is keyed by where it is and when it last changed.
    if let Source::Path { image, modules } = &entry.source {
        for path in std::iter::once(image).chain(modules) {
            hasher.update(path.as_os_str().as_encoded_bytes());
            let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            hasher.update(format!("{stamp:?}").as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

const IMAGE: &str = "vmlinuz";
const CONFIG: &str = "config";
const MODULES_CPIO: &str = "modules.cpio";
const RELEASE: &str = "release";
const MODULES: &str = "modules";
const MODULES_DIR: &str = "ko";
const INPUTS: &str = "inputs";

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
            modules_dir: dir.join(MODULES_DIR),
            release: release.trim().to_owned(),
            modules: modules.lines().map(str::to_owned).collect(),
        };
        (artifacts.image.exists() && artifacts.modules_cpio.exists()).then_some(artifacts)
    }
}

/// Extracts the artifacts from `inputs` into `dest`, atomically.
fn extract(
    cache: &Cache,
    inputs: &[Input],
    dest: &Path,
    label: &str,
    source_name: &str,
) -> Result<KernelArtifacts, FetchError> {
    let mut files = KernelFiles::default();
    for input in inputs {
        match input {
            Input::Deb(path) => files.read_deb(path)?,
            Input::Tarball(path) => files.read_tarball(path)?,
            Input::Image(path) => files.read_image(path)?,
            Input::Dir(path) => files.read_dir(path)?,
        }
    }
    let incomplete = |what| FetchError::Incomplete {
        label: label.to_owned(),
        source_name: source_name.to_owned(),
        what,
    };
    let image = files
        .image
        .ok_or_else(|| incomplete("kernel image (vmlinuz)"))?;
    let release = files
        .release
        .or_else(|| {
            super::bzimage::version_string(&image)
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .ok_or_else(|| incomplete("kernel release (no modules.builtin, no bzImage version)"))?;
    // Without modules.builtin, a module that is not shipped is taken to be
    // built in; if it is not, the agent says so at boot.
    let builtin = files.builtin.as_deref().map(modinfo::builtin_names);
    let modules = modinfo::load_order(modinfo::PORT_MODULES, &files.modules, builtin.as_ref())
        .map_err(|source| FetchError::Modules {
            label: label.to_owned(),
            source,
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
    write(CONFIG, files.config.as_deref().unwrap_or_default())?;
    write(MODULES_CPIO, &archive.finish())?;
    write(MODULES, names.join("\n").as_bytes())?;
    std::fs::create_dir(dir.path().join(MODULES_DIR)).map_err(|source| FetchError::Io {
        path: dest.join(MODULES_DIR),
        source,
    })?;
    for (name, elf) in &modules {
        write(&format!("{MODULES_DIR}/{name}.ko"), elf)?;
    }
    // Written last: `open` treats an entry without it as incomplete.
    let blobs: Vec<String> = inputs
        .iter()
        .filter_map(|input| match input {
            Input::Deb(path) | Input::Tarball(path) | Input::Image(path)
                if path.starts_with(cache.root()) =>
            {
                path.file_name().map(|n| n.to_string_lossy().into_owned())
            }
            _ => None,
        })
        .collect();
    write(INPUTS, blobs.join("\n").as_bytes())?;
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
