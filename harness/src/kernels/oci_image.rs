//! An OCI kernel image's layers, read in the layout the image turns out to
//! have: the one place that knows where kernel images keep their kernel.
//!
//! Two layouts are read, told apart by the files the layers hold:
//! cilium/ci-kernels' (`/boot/vmlinuz` and `/lib/modules/<release>/` at the
//! root) and little-vm-helper's (`make tar-pkg`'s tree copied to
//! `/data/kernels/<name>/` of a busybox image: `boot/vmlinuz-<release>`,
//! `boot/config-<release>`, `lib/modules/<release>/`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::bounded::{read_capped, MAX_FILE};
use super::deb::{classify, decompressed, for_each_file, DebError, KernelFiles};

/// Where little-vm-helper's kernel images keep each kernel's tree.
const LVH_ROOT: &str = "data/kernels/";

/// How many directories an error names.
const SHOWN: usize = 8;

/// Where an OCI image keeps its kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// cilium/ci-kernels: `boot/vmlinuz` and `lib/modules/<release>/` at
    /// the image's root.
    CiKernels,
    /// little-vm-helper: the kernel's install tree under
    /// `data/kernels/<name>/`, `<name>` what it was built as (`6.6`,
    /// `bpf-next`, `rhel9.6`).
    Lvh {
        /// The directory's name.
        name: String,
    },
}

impl Layout {
    /// The layout whose tree `path` is in, and the path within that tree.
    fn of(path: &str) -> (Layout, &str) {
        let lvh = path
            .strip_prefix(LVH_ROOT)
            .and_then(|rest| rest.split_once('/'))
            .filter(|(name, _)| !name.is_empty());
        match lvh {
            Some((name, within)) => (
                Layout::Lvh {
                    name: name.to_owned(),
                },
                within,
            ),
            None => (Layout::CiKernels, path),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::CiKernels => write!(f, "cilium/ci-kernels' layout (/boot/vmlinuz)"),
            Layout::Lvh { name } => write!(
                f,
                "little-vm-helper's layout (/{LVH_ROOT}{name}/boot/vmlinuz-<release>)"
            ),
        }
    }
}

/// Why an image's kernel could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A layer could not be read.
    #[error(transparent)]
    Read(#[from] DebError),
    /// No layout's kernel image is there.
    #[error("the image is in no layout kmatrix reads: it has neither cilium/ci-kernels' /boot/vmlinuz (with /lib/modules/<release>/) nor little-vm-helper's /{LVH_ROOT}<name>/boot/vmlinuz-<release> (with …/lib/modules/<release>/); it holds {found}")]
    Unknown {
        /// What the image holds instead.
        found: String,
    },
    /// Kernels in more than one place.
    #[error("the image holds more than one kernel: in {}; kmatrix boots one kernel per image, so build one image per kernel", .layouts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", and in "))]
    Several {
        /// Where kernels are.
        layouts: Vec<Layout>,
    },
}

/// The kernel files of the image whose layers (in order, each a tar
/// archive, plain, gzip or zstd) are `layers`, and the layout they are in.
pub fn read(layers: &[PathBuf]) -> Result<(Layout, KernelFiles), LayoutError> {
    let mut trees: BTreeMap<Layout, KernelFiles> = BTreeMap::new();
    let mut listing = Listing::default();
    for layer in layers {
        let fail = |e: std::io::Error| DebError {
            path: layer.clone(),
            reason: format!("reading the image layer: {e}"),
        };
        let file = std::fs::File::open(layer).map_err(fail)?;
        let data = decompressed(std::io::BufReader::new(file)).map_err(fail)?;
        for_each_file(data, |path, entry| {
            listing.note(path);
            let (layout, within) = Layout::of(path);
            if let Some(kind) = classify(within) {
                let bytes = read_capped(entry, MAX_FILE, path)?;
                trees
                    .entry(layout)
                    .or_default()
                    .add(kind, within.to_owned(), bytes);
            }
            Ok(())
        })
        .map_err(fail)?;
    }
    let mut found: Vec<_> = trees
        .into_iter()
        .filter(|(_, files)| files.image.is_some())
        .collect();
    match found.len() {
        0 => Err(LayoutError::Unknown {
            found: listing.to_string(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(LayoutError::Several {
            layouts: found.into_iter().map(|(layout, _)| layout).collect(),
        }),
    }
}

/// What an image holds, by directory (at most three deep), for an error.
#[derive(Default)]
struct Listing {
    files: usize,
    dirs: BTreeMap<String, usize>,
}

impl Listing {
    fn note(&mut self, path: &str) {
        self.files += 1;
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let shown: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).take(3).collect();
        *self.dirs.entry(shown.join("/")).or_default() += 1;
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.files == 0 {
            return write!(f, "no files");
        }
        let plural = if self.files == 1 { "" } else { "s" };
        write!(f, "{} file{plural}:", self.files)?;
        for (i, (dir, count)) in self.dirs.iter().take(SHOWN).enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}/{dir} ({count})")?;
        }
        if self.dirs.len() > SHOWN {
            write!(f, " and {} more directories", self.dirs.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip layer holding `files` (path, contents).
    fn layer(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), gz.finish().unwrap()).unwrap();
        file
    }

    fn read_layers(layers: &[&[(&str, &[u8])]]) -> Result<(Layout, KernelFiles), LayoutError> {
        let files: Vec<_> = layers.iter().map(|files| layer(files)).collect();
        let paths: Vec<_> = files.iter().map(|f| f.path().to_owned()).collect();
        read(&paths)
    }

    const BUSYBOX: &[(&str, &[u8])] = &[("bin/busybox", b"ELF"), ("etc/passwd", b"root")];

    #[test]
    fn reads_a_ci_kernels_image() {
        let (layout, files) = read_layers(&[&[
            ("boot/vmlinuz", b"IMAGE"),
            (
                "lib/modules/6.6.30/kernel/drivers/char/virtio_console.ko",
                b"ko",
            ),
        ]])
        .unwrap();
        assert_eq!(layout, Layout::CiKernels);
        assert_eq!(files.image.as_deref(), Some(&b"IMAGE"[..]));
        assert!(files.modules.contains_key("virtio_console"));
    }

    #[test]
    fn reads_an_lvh_image_over_its_busybox_base() {
        let (layout, files) = read_layers(&[
            BUSYBOX,
            &[
                ("data/kernels/bpf-next/boot/vmlinuz-6.17.0-rc1", b"IMAGE"),
                ("data/kernels/bpf-next/boot/vmlinux-6.17.0-rc1", b"ELF"),
                (
                    "data/kernels/bpf-next/boot/config-6.17.0-rc1",
                    b"CONFIG_BPF=y\n",
                ),
                ("data/kernels/bpf-next/boot/btf-6.17.0-rc1", b"BTF"),
                (
                    "data/kernels/bpf-next/lib/modules/6.17.0-rc1/modules.builtin",
                    b"kernel/drivers/char/virtio_console.ko\n",
                ),
                (
                    "data/kernels/bpf-next/lib/modules/6.17.0-rc1/kernel/net/vmw_vsock/vsock.ko",
                    b"ko",
                ),
            ],
        ])
        .unwrap();
        assert_eq!(
            layout,
            Layout::Lvh {
                name: "bpf-next".into()
            }
        );
        assert_eq!(files.image.as_deref(), Some(&b"IMAGE"[..]));
        assert_eq!(files.config.as_deref(), Some(&b"CONFIG_BPF=y\n"[..]));
        assert_eq!(files.release.as_deref(), Some("6.17.0-rc1"));
        assert_eq!(
            files.modules["vsock"].path,
            "lib/modules/6.17.0-rc1/kernel/net/vmw_vsock/vsock.ko"
        );
    }

    #[test]
    fn an_image_without_a_kernel_names_what_it_holds() {
        let Err(err) = read_layers(&[
            BUSYBOX,
            &[("data/kernels/6.6/lib/modules/6.6.1/kernel/a.ko", b"ko")],
        ]) else {
            panic!("an image without a kernel was read");
        };
        let err = err.to_string();
        assert!(err.contains("is in no layout kmatrix reads"), "{err}");
        assert!(
            err.ends_with("it holds 3 files: /bin (1), /data/kernels/6.6 (1), /etc (1)"),
            "{err}"
        );
        let Err(empty) = read_layers(&[&[]]) else {
            panic!("an empty image was read");
        };
        assert!(empty.to_string().ends_with("it holds no files"), "{empty}");
    }

    #[test]
    fn kernels_in_two_places_are_refused() {
        let Err(err) = read_layers(&[&[
            ("boot/vmlinuz", b"A"),
            ("data/kernels/6.1/boot/vmlinuz-6.1.0", b"B"),
        ]]) else {
            panic!("two kernels were read as one");
        };
        assert_eq!(
            err.to_string(),
            "the image holds more than one kernel: in cilium/ci-kernels' layout (/boot/vmlinuz), and in little-vm-helper's layout (/data/kernels/6.1/boot/vmlinuz-<release>); kmatrix boots one kernel per image, so build one image per kernel"
        );
    }

    #[test]
    fn a_later_layer_replaces_an_earlier_file() {
        let (_, files) = read_layers(&[
            &[("data/kernels/6.1/boot/vmlinuz-6.1.0", b"OLD")],
            &[("data/kernels/6.1/boot/vmlinuz-6.1.0", b"NEW")],
        ])
        .unwrap();
        assert_eq!(files.image.as_deref(), Some(&b"NEW"[..]));
    }
}
