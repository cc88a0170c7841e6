//! Reading kernel files out of what sources deliver: `.deb` packages (an
//! `ar` archive holding a compressed `data.tar`), tarballs (OCI layers,
//! modules tarballs), image files and module directories.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::bounded::{read_capped, MAX_FILE};
use super::modinfo::{module_name, ModuleFile};

/// The kernel files found in one or more `.deb` packages.
#[derive(Default)]
pub struct KernelFiles {
    /// The kernel release (the `modules/<release>` directory name).
    pub release: Option<String>,
    /// The bootable image (`vmlinuz`).
    pub image: Option<Vec<u8>>,
    /// The kernel's build configuration.
    pub config: Option<Vec<u8>>,
    /// `modules.builtin`.
    pub builtin: Option<String>,
    /// Module files, by module name.
    pub modules: HashMap<String, ModuleFile>,
}

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DebError {
    /// The package file.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl KernelFiles {
    /// Adds the kernel files of the `.deb` at `path`.
    pub fn read_deb(&mut self, path: &Path) -> Result<(), DebError> {
        let file = std::fs::File::open(path).map_err(|e| DebError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.read_deb_from(std::io::BufReader::new(file), path)
    }

    /// Adds the kernel files of a `.deb` read from `data`; `path` names it
    /// in errors.
    pub fn read_deb_from(&mut self, data: impl Read, path: &Path) -> Result<(), DebError> {
        let fail = |reason: String| DebError {
            path: path.to_owned(),
            reason,
        };
        let mut archive = super::ar::Archive::new(data);
        loop {
            let (name, entry) = match archive.next_member() {
                Ok(Some(member)) => member,
                Ok(None) => break,
                Err(e) => return Err(fail(format!("not a .deb (ar) archive: {e}"))),
            };
            let data: Box<dyn Read + '_> = match name.as_str() {
                "data.tar.xz" => Box::new(xz2::read::XzDecoder::new(entry)),
                "data.tar.zst" => {
                    Box::new(zstd::Decoder::new(entry).map_err(|e| fail(e.to_string()))?)
                }
                "data.tar" => Box::new(entry),
                other if other.starts_with("data.tar") => {
                    return Err(fail(format!("unsupported compression: {other}")))
                }
                _ => continue,
            };
            return self
                .read_tar(data)
                .map_err(|e| fail(format!("reading {name}: {e}")));
        }
        Err(fail("no data.tar member".into()))
    }

    /// Adds the kernel files of a tar archive, plain or compressed with gzip
    /// or zstd (told apart by their magic bytes).
    pub fn read_tarball(&mut self, path: &Path) -> Result<(), DebError> {
        let file = std::fs::File::open(path).map_err(|e| DebError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.read_tarball_from(std::io::BufReader::new(file), path)
    }

    /// Adds the kernel files of a tar archive read from `data`; `path` names
    /// it in errors.
    pub fn read_tarball_from(
        &mut self,
        file: impl std::io::BufRead + 'static,
        path: &Path,
    ) -> Result<(), DebError> {
        let fail = |reason: String| DebError {
            path: path.to_owned(),
            reason,
        };
        let data = decompressed(file).map_err(|e| fail(e.to_string()))?;
        self.read_tar(data)
            .map_err(|e| fail(format!("reading the tar archive: {e}")))
    }

    /// Uses the file at `path` as the kernel image.
    pub fn read_image(&mut self, path: &Path) -> Result<(), DebError> {
        let image = std::fs::read(path).map_err(|e| DebError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.image = Some(image);
        Ok(())
    }

    /// Adds the modules (and `modules.builtin`) found below `dir`.
    pub fn read_dir(&mut self, dir: &Path) -> Result<(), DebError> {
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current).map_err(|e| DebError {
                path: current.clone(),
                reason: e.to_string(),
            })?;
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let kind = classify(&relative).or_else(|| {
                    if relative.ends_with("modules.builtin") {
                        Some(Kind::Builtin(None))
                    } else {
                        module_name(&relative).map(Kind::Module)
                    }
                });
                if let Some(kind) = kind {
                    let bytes = std::fs::read(&path).map_err(|e| DebError {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    self.add(kind, relative, bytes);
                }
            }
        }
        Ok(())
    }

    /// Whether `path` (relative to a package's root) holds a file kmatrix
    /// needs.
    pub fn wants(&self, path: &str) -> bool {
        classify(path).is_some()
    }

    /// Adds the file at `path` (relative to a package's root), if kmatrix
    /// needs it.
    pub fn add_path(&mut self, path: &str, bytes: Vec<u8>) {
        if let Some(kind) = classify(path) {
            self.add(kind, path.to_owned(), bytes);
        }
    }

    pub(super) fn add(&mut self, kind: Kind, path: String, bytes: Vec<u8>) {
        match kind {
            Kind::Image => self.image = Some(bytes),
            Kind::Config => self.config = Some(bytes),
            Kind::Builtin(release) => {
                if release.is_some() {
                    self.release = release;
                }
                self.builtin = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Kind::Module(name) => {
                self.modules.insert(name, ModuleFile { path, bytes });
            }
        }
    }

    fn read_tar(&mut self, data: impl Read) -> std::io::Result<()> {
        for_each_file(data, |path, entry| {
            if let Some(kind) = classify(path) {
                // The header's size is not trusted: it may claim 2^61 bytes.
                let bytes = read_capped(entry, MAX_FILE, path)?;
                self.add(kind, path.to_owned(), bytes);
            }
            Ok(())
        })
    }
}

/// `file` decompressed: gzip and zstd are told apart by their magic bytes,
/// anything else is read as it is.
pub(super) fn decompressed(
    mut file: impl std::io::BufRead + 'static,
) -> std::io::Result<Box<dyn Read>> {
    let magic = file.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}

/// Calls `f` with each regular file of the tar archive `data`: its path
/// (without a leading `./`) and its contents.
pub(super) fn for_each_file(
    data: impl Read,
    mut f: impl FnMut(&str, &mut dyn Read) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tar = tar::Archive::new(data);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        f(&path, &mut entry)?;
    }
    Ok(())
}

pub(super) enum Kind {
    Image,
    Config,
    Builtin(Option<String>),
    Module(String),
}

/// What a path in a kernel package holds, if kmatrix needs it.
///
/// Whole packages use `boot/vmlinuz-<release>`, `boot/config-<release>` and
/// `lib/modules/<release>/…`; split ones (and trixie) put everything under
/// `usr/lib/modules/<release>/`, the image as `vmlinuz`. OCI kernel images
/// hold the same below their layout's root (`oci_image.rs`).
pub(super) fn classify(path: &str) -> Option<Kind> {
    if let Some(file) = path.strip_prefix("boot/") {
        if file == "vmlinuz" || file.starts_with("vmlinuz-") {
            return Some(Kind::Image);
        }
        if file.starts_with("config-") {
            return Some(Kind::Config);
        }
        return None;
    }
    let rest = path
        .strip_prefix("usr/lib/modules/")
        .or_else(|| path.strip_prefix("lib/modules/"))?;
    let (release, file) = rest.split_once('/')?;
    match file {
        "vmlinuz" => Some(Kind::Image),
        "config" => Some(Kind::Config),
        "modules.builtin" => Some(Kind::Builtin(Some(release.to_owned()))),
        _ if file.starts_with("kernel/") => module_name(file).map(Kind::Module),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar header claiming 2^61 bytes for a kernel image is read with a
    /// cap, not trusted for an allocation: an error, not an abort.
    #[test]
    fn a_lying_tar_header_is_an_error() {
        let mut header = tar::Header::new_gnu();
        header.set_path("boot/vmlinuz-6.1.0").unwrap();
        header.set_size(1 << 61);
        header.set_mode(0o644);
        header.set_cksum();
        let mut tarball = header.as_bytes().to_vec();
        tarball.extend_from_slice(&[0u8; 1024]);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &tarball).unwrap();
        let err = KernelFiles::default()
            .read_tarball(file.path())
            .unwrap_err();
        assert!(
            err.to_string().contains(&file.path().display().to_string()),
            "{err}"
        );
    }

    /// Builds a .deb the way dpkg-deb lays it out.
    fn deb(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut xz = Vec::new();
        xz2::read::XzEncoder::new(&tar[..], 1)
            .read_to_end(&mut xz)
            .unwrap();

        let file = tempfile::NamedTempFile::new().unwrap();
        let mut ar = ar::Builder::new(file.reopen().unwrap());
        for (name, data) in [
            ("debian-binary", &b"2.0\n"[..]),
            ("control.tar.xz", b""),
            ("data.tar.xz", &xz),
        ] {
            let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            ar.append(&header, data).unwrap();
        }
        file
    }

    #[test]
    fn reads_a_whole_kernel_package() {
        let deb = deb(&[
            ("./boot/vmlinuz-6.1.0-50-cloud-amd64", b"IMAGE"),
            ("./boot/config-6.1.0-50-cloud-amd64", b"CONFIG_BPF=y\n"),
            ("./boot/System.map-6.1.0-50-cloud-amd64", b"map"),
            (
                "./lib/modules/6.1.0-50-cloud-amd64/modules.builtin",
                b"kernel/x/virtio.ko\n",
            ),
            (
                "./lib/modules/6.1.0-50-cloud-amd64/kernel/drivers/char/virtio_console.ko",
                b"ko",
            ),
        ]);
        let mut files = KernelFiles::default();
        files.read_deb(deb.path()).unwrap();
        assert_eq!(files.image.as_deref(), Some(&b"IMAGE"[..]));
        assert_eq!(files.config.as_deref(), Some(&b"CONFIG_BPF=y\n"[..]));
        assert_eq!(files.release.as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(files.modules["virtio_console"].bytes, b"ko");
    }

    #[test]
    fn merges_the_parts_of_a_split_kernel() {
        let binary = deb(&[(
            "./usr/lib/modules/7.3.4+deb13-cloud-amd64/vmlinuz",
            b"IMAGE",
        )]);
        let base = deb(&[
            ("./usr/lib/modules/7.3.4+deb13-cloud-amd64/config", b"C"),
            (
                "./usr/lib/modules/7.3.4+deb13-cloud-amd64/modules.builtin",
                b"",
            ),
        ]);
        let modules = deb(&[("./usr/lib/modules/7.3.4+deb13-cloud-amd64/kernel/drivers/char/hw_random/virtio-rng.ko.xz", b"xz")]);
        let mut files = KernelFiles::default();
        for part in [&binary, &base, &modules] {
            files.read_deb(part.path()).unwrap();
        }
        assert!(files.image.is_some() && files.config.is_some());
        assert_eq!(files.release.as_deref(), Some("7.3.4+deb13-cloud-amd64"));
        assert_eq!(files.modules["virtio_rng"].path, "usr/lib/modules/7.3.4+deb13-cloud-amd64/kernel/drivers/char/hw_random/virtio-rng.ko.xz");
    }

    #[test]
    fn reads_a_ci_kernels_layer() {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("boot/vmlinuz", &b"IMAGE"[..]),
            (
                "lib/modules/6.6.30/kernel/drivers/char/virtio_console.ko",
                b"ko",
            ),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let layer = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(layer.path(), gz.finish().unwrap()).unwrap();

        let mut files = KernelFiles::default();
        files.read_tarball(layer.path()).unwrap();
        assert_eq!(files.image.as_deref(), Some(&b"IMAGE"[..]));
        assert!(files.modules.contains_key("virtio_console"));
        assert!(files.builtin.is_none());
    }

    #[test]
    fn a_file_that_is_not_a_deb_is_named() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"<html>not found</html>").unwrap();
        let err = KernelFiles::default()
            .read_deb(file.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a .deb (ar) archive"), "{err}");
    }
}
