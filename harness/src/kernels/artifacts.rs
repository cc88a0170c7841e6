//! A kernel in the cache: the one place that knows an extracted kernel
//! directory's layout, its cache key, and how it is extracted from what a
//! source downloaded.

use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use super::deb::KernelFiles;
use super::error::FetchError;
use super::modinfo;
use super::{KernelEntry, Source};
use crate::cache::Cache;

/// Bumped whenever the layout of an extracted kernel directory changes, so
/// that old entries are rebuilt rather than misread.
const FORMAT: u32 = 5;

const IMAGE: &str = "vmlinuz";
const VMLINUX: &str = "vmlinux";
const ARM64_IMAGE: &str = "Image";
const CONFIG: &str = "config";
const RELEASE: &str = "release";
const MODULES: &str = "modules";
const MODULES_DIR: &str = "ko";
const INPUTS: &str = "inputs";
const MMIO: &str = "virtio-mmio";

/// A kernel ready to boot, in the cache.
#[derive(Clone, Debug)]
pub struct KernelArtifacts {
    /// The kernel's cache directory.
    pub dir: PathBuf,
    /// The bootable image.
    pub image: PathBuf,
    /// What QEMU boots: the uncompressed ELF kernel when it has a PVH entry
    /// point, or an arm64 kernel's plain `Image` (no decompression in the
    /// guest), else the image.
    pub boot_image: PathBuf,
    /// The kernel's build configuration.
    pub config: PathBuf,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The modules the guest loads, one decompressed `<name>.ko` each.
    pub modules_dir: PathBuf,
    /// Those modules' names, in load order.
    pub modules: Vec<String>,
    /// Whether the kernel finds virtio-mmio devices through ACPI (its
    /// `virtio_mmio` driver is built in or among the modules), so that it
    /// can boot on a machine without PCI.
    pub virtio_mmio: bool,
}

/// What an entry's artifacts are extracted from.
pub enum Input {
    /// A Debian package.
    Deb(PathBuf),
    /// An RPM package, and the keyring its header signature is checked
    /// against before anything is taken from it.
    Rpm {
        /// The package.
        path: PathBuf,
        /// The distribution's keyring.
        keyring: PathBuf,
    },
    /// A tar archive (plain, gzip or zstd): a modules tarball.
    Tarball(PathBuf),
    /// An OCI image's layers, in order: the entry's only input, read in
    /// the layout the image has (`oci_image.rs`).
    Oci(Vec<PathBuf>),
    /// A kernel image file.
    Image(PathBuf),
    /// A directory of modules.
    Dir(PathBuf),
}

/// The cache key of an entry's artifacts: its pins and the layout version.
pub fn key(entry: &KernelEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.to_le_bytes());
    // amd64 entries keep the keys they had before there was a choice.
    if entry.arch != Arch::Amd64 {
        hasher.update(entry.arch.name());
    }
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

/// The downloads (sha256 hex) an extracted entry in `dir` was made from.
pub fn inputs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(INPUTS))
        .map(|inputs| inputs.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

impl KernelArtifacts {
    /// The ELF kernel taken out of an amd64 bzImage, for a debugger (its
    /// symbols, no debug information), when there is one.
    pub fn vmlinux(&self) -> Option<PathBuf> {
        Some(self.dir.join(VMLINUX)).filter(|path| path.is_file())
    }

    /// The artifacts in `dir`, if it is a complete entry.
    pub fn open(dir: &Path) -> Option<Self> {
        let release = std::fs::read_to_string(dir.join(RELEASE)).ok()?;
        let modules = std::fs::read_to_string(dir.join(MODULES)).ok()?;
        let artifacts = Self {
            dir: dir.to_owned(),
            image: dir.join(IMAGE),
            boot_image: [VMLINUX, ARM64_IMAGE]
                .into_iter()
                .map(|name| dir.join(name))
                .find(|path| path.exists())
                .unwrap_or_else(|| dir.join(IMAGE)),
            config: dir.join(CONFIG),
            modules_dir: dir.join(MODULES_DIR),
            release: release.trim().to_owned(),
            modules: modules.lines().map(str::to_owned).collect(),
            virtio_mmio: dir.join(MMIO).exists(),
        };
        (artifacts.image.exists()).then_some(artifacts)
    }

    /// The upstream version its image's header names (Debian's
    /// `5.10.237-1` as `5.10.237`), if it does.
    pub fn upstream_version(&self) -> Option<String> {
        let mut head = Vec::with_capacity(64 * 1024);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(&self.image).ok()?, 64 * 1024),
            &mut head,
        )
        .ok()?;
        let text = match super::bzimage::version_string(&head) {
            Some(text) => text,
            None => super::arm64::version_string(&std::fs::read(&self.boot_image).ok()?)?,
        };
        // The version string's first word is the release; gcc's own
        // "(Debian …)" comes before the kernel's.
        super::bzimage::upstream_version(&text[text.rfind(" SMP ").unwrap_or(0)..])
    }

    /// The path of module `name`'s object.
    pub fn module(&self, name: &str) -> PathBuf {
        self.modules_dir.join(format!("{name}.ko"))
    }
}

/// Whether a kernel configuration has ACPI and the virtio-mmio transport:
/// `Some(true)` built in, `Some(false)` a module, `None` neither.
fn mmio_config(config: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(config);
    let value = |option: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(option)?.strip_prefix('='))
            .map(str::to_owned)
    };
    if value("CONFIG_ACPI").as_deref() != Some("y") {
        return None;
    }
    match value("CONFIG_VIRTIO_MMIO").as_deref() {
        Some("y") => Some(true),
        Some("m") => Some(false),
        _ => None,
    }
}

/// Extracts the artifacts from `inputs` into `dest`, atomically.
pub fn extract(
    cache: &Cache,
    inputs: &[Input],
    dest: &Path,
    label: &str,
    source_name: &str,
    arch: Arch,
) -> Result<KernelArtifacts, FetchError> {
    let mut files = KernelFiles::default();
    for input in inputs {
        match input {
            Input::Deb(path) => files.read_deb(path)?,
            Input::Rpm { path, keyring } => {
                files.read_rpm(path, &super::source::rpm::keyring_at(keyring))?
            }
            Input::Tarball(path) => files.read_tarball(path)?,
            Input::Image(path) => files.read_image(path)?,
            Input::Dir(path) => files.read_dir(path)?,
            Input::Oci(layers) => {
                files = super::oci_image::read(layers)
                    .map_err(|source| FetchError::OciImage {
                        label: label.to_owned(),
                        source,
                    })?
                    .1;
            }
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
    let arm64_image = match arch {
        Arch::Amd64 => None,
        Arch::Arm64 if super::arm64::is_image(&image) => None,
        Arch::Arm64 => Some(super::arm64::uncompressed(&image).ok_or_else(|| {
            incomplete("arm64 kernel image (a plain, gzip-ed or EFI zboot Image)")
        })?),
    };
    let release = files
        .release
        .or_else(|| {
            super::bzimage::version_string(&image)
                .or_else(|| super::arm64::version_string(arm64_image.as_deref().unwrap_or(&image)))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .ok_or_else(|| incomplete("kernel release (no modules.builtin, no bzImage version)"))?;
    // Without modules.builtin, a module that is not shipped is taken to be
    // built in; if it is not, the agent says so at boot.
    let builtin = files.builtin.as_deref().map(modinfo::builtin_names);
    let guests = crate::presets::guests();
    let port_modules: Vec<&str> = guests.port_modules.iter().map(String::as_str).collect();
    let mmio_module = guests.mmio_module.as_str();
    let mut modules = modinfo::load_order(&port_modules, &files.modules, builtin.as_ref())
        .map_err(|source| FetchError::Modules {
            label: label.to_owned(),
            source,
        })?;
    let config = files.config.as_deref().unwrap_or_default();
    let virtio_mmio = match mmio_config(config) {
        None => false,
        Some(true) => true,
        Some(false) => {
            files.modules.contains_key(mmio_module)
                && match modinfo::load_order(&[mmio_module], &files.modules, builtin.as_ref()) {
                    Ok(more) => {
                        for (name, elf) in more {
                            if !modules.iter().any(|(have, _)| *have == name) {
                                modules.push((name, elf));
                            }
                        }
                        true
                    }
                    Err(_) => false,
                }
        }
    };
    let names: Vec<_> = modules.iter().map(|(n, _)| n.as_str()).collect();

    let dir = cache.temp_dir().map_err(|source| FetchError::Io {
        path: cache.root().join("tmp"),
        source,
    })?;
    // Each file reaches the disk before the directory is renamed into
    // place, so a crash cannot leave a committed entry with empty files.
    let write = |name: &str, data: &[u8]| {
        std::fs::File::create(dir.path().join(name))
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, data)?;
                file.sync_all()
            })
            .map_err(|source| FetchError::Io {
                path: dest.join(name),
                source,
            })
    };
    write(IMAGE, &image)?;
    if let Some(vmlinux) = super::vmlinux::extract(&image) {
        write(VMLINUX, &vmlinux)?;
    }
    if let Some(plain) = &arm64_image {
        write(ARM64_IMAGE, plain)?;
    }
    write(CONFIG, config)?;
    if virtio_mmio {
        write(MMIO, b"")?;
    }
    write(MODULES, names.join("\n").as_bytes())?;
    std::fs::create_dir(dir.path().join(MODULES_DIR)).map_err(|source| FetchError::Io {
        path: dest.join(MODULES_DIR),
        source,
    })?;
    for (name, elf) in &modules {
        write(&format!("{MODULES_DIR}/{name}.ko"), elf)?;
    }
    let blobs: Vec<String> = inputs
        .iter()
        .flat_map(|input| match input {
            Input::Deb(path)
            | Input::Rpm { path, .. }
            | Input::Tarball(path)
            | Input::Image(path) => std::slice::from_ref(path),
            Input::Oci(layers) => layers.as_slice(),
            Input::Dir(_) => &[],
        })
        .filter(|path| path.starts_with(cache.root()))
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    write(INPUTS, blobs.join("\n").as_bytes())?;
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
