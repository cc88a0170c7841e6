//! A snapshot's key: the [`Inputs`] that could make a saved state wrong
//! to reuse (this machine, the QEMU build, the kernel file, the agent, the
//! initramfs, every QEMU argument and the TSC figure), their digest, and
//! the `meta.json` that keeps them, exactly, next to the saved state.
//! A portable VM's inputs leave the machine out ([`super::portable`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Hello, VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vm::argv::Hardware;

/// Bumped when what a snapshot holds or means changes.
pub(super) const FORMAT: u32 = 3;

/// The file next to a saved state that holds its [`Meta`].
pub(super) const META: &str = "meta.json";

/// What is kept next to a saved state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The kernel release the VM said hello with.
    pub kernel_release: String,
    /// Whether it has BTF.
    pub btf: bool,
    /// When its agent came up, in ms after the kernel started.
    pub boot_ms: u64,
    /// What its key was made of.
    pub inputs: Inputs,
}

impl Meta {
    /// The hello a restored VM stands for.
    pub fn hello(&self) -> Hello {
        Hello {
            version: VERSION,
            kernel_release: self.kernel_release.clone(),
            btf: self.btf,
            boot_ms: self.boot_ms,
        }
    }
}

/// Everything a saved VM's key is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// [`FORMAT`].
    pub format: u32,
    /// The protocol version.
    pub protocol: u32,
    /// The machine ([`host_identity`]); `None` for a portable VM, which
    /// any machine may restore ([`super::portable`]).
    pub host: Option<String>,
    /// The QEMU binary: [`qemu_identity`], or a portable VM's
    /// [`super::portable`] content digest of it.
    pub qemu: String,
    /// Where the QEMU binary is here; not part of the key.
    #[serde(with = "exact::path")]
    pub qemu_path: PathBuf,
    /// The kernel file QEMU boots; not part of a portable VM's key.
    #[serde(with = "exact::path")]
    pub kernel: PathBuf,
    /// Its size and modification time, or a portable VM's content digest
    /// of it.
    pub kernel_file: String,
    /// The agent's sha256.
    pub agent: String,
    /// The initramfs's sha256 (the agent and the kernel's modules).
    pub initrd: String,
    /// The machine, memory and accelerator.
    pub hardware: Hardware,
    /// Every QEMU argument, the kernel and the run's own paths as `@` and
    /// the TSC figure as 0 ([`key_args`]).
    #[serde(with = "exact::args")]
    pub args: Vec<OsString>,
    /// The TSC figure on the kernel command line, if it has one.
    pub tsc_khz: Option<u64>,
}

impl Inputs {
    /// The inputs of a VM of `kernel` with the initramfs `initrd` on
    /// `hardware`, told the TSC figure `tsc_khz`, run by `qemu` with the
    /// agent whose sha256 is `agent`, keyed to this machine; the store
    /// keys a portable VM by content ([`super::Store::slot`]).
    pub fn new(
        qemu: &Path,
        hardware: Hardware,
        kernel: &Path,
        initrd: &[u8],
        tsc_khz: Option<u64>,
        agent: &str,
    ) -> Self {
        let qemu_path = find_qemu(qemu);
        Self {
            format: FORMAT,
            protocol: VERSION,
            host: Some(host_identity()),
            qemu: qemu_identity(&qemu_path),
            qemu_path,
            kernel: kernel.to_owned(),
            kernel_file: identity(kernel),
            agent: agent.to_owned(),
            initrd: hex::encode(Sha256::digest(initrd)),
            hardware,
            args: key_args(hardware, tsc_khz),
            tsc_khz,
        }
    }

    /// The snapshot's key: the digest of every input but where QEMU is
    /// (its identity holds that) and, for a portable VM, where the kernel
    /// is (its digest stands for it).
    pub fn key(&self) -> String {
        let mut keyed = self.clone();
        keyed.qemu_path = PathBuf::new();
        if keyed.host.is_none() {
            keyed.kernel = PathBuf::new();
        }
        let json = serde_json::to_vec(&keyed).expect("inputs serialize");
        hex::encode(&Sha256::digest(json)[..16])
    }
}

/// QEMU's arguments as a key holds them: the kernel as `@kernel`, the
/// run's own paths as `@`, and the TSC figure, an input of its own, as 0.
pub(super) fn key_args(hardware: Hardware, tsc_khz: Option<u64>) -> Vec<OsString> {
    hardware.args(
        "@kernel".as_ref(),
        "@initrd".as_ref(),
        tsc_khz.map(|_| 0),
        "@".as_ref(),
    )
}

/// Environment variable that stands for this machine's identity, for
/// tests that play a second machine.
pub const MACHINE_ID_ENV: &str = "KMATRIX_MACHINE_ID";

/// This machine: its machine id, and its CPU's model and flags (or
/// [`MACHINE_ID_ENV`] when set).
pub fn host_identity() -> String {
    if let Some(id) = std::env::var_os(MACHINE_ID_ENV).filter(|id| !id.is_empty()) {
        return format!("{MACHINE_ID_ENV}={}", id.to_string_lossy());
    }
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu: Vec<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("model name") || l.starts_with("flags"))
        .take(2)
        .collect();
    format!(
        "{} {}",
        id.trim(),
        hex::encode(Sha256::digest(cpu.join("\n")))
    )
}

/// A file's size and modification time.
pub(super) fn identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => format!("{} {:?}", meta.len(), meta.modified().ok()),
        Err(_) => "missing".into(),
    }
}

/// The QEMU binary `qemu`, looked up on the PATH if it is a bare name.
pub fn find_qemu(qemu: &Path) -> PathBuf {
    if qemu.components().count() > 1 {
        return qemu.to_owned();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(qemu))
        .find(|path| path.is_file())
        .unwrap_or_else(|| qemu.to_owned())
}

/// The QEMU binary at `path` ([`find_qemu`]): its path, size and
/// modification time.
pub fn qemu_identity(path: &Path) -> String {
    format!("{} {}", path.display(), identity(path))
}

/// Paths and arguments in JSON exactly: a string where they are UTF-8,
/// else an array of their bytes.
mod exact {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Text {
        Utf8(String),
        Bytes(Vec<u8>),
    }

    impl Text {
        fn of(text: &OsStr) -> Self {
            match text.to_str() {
                Some(utf8) => Text::Utf8(utf8.to_owned()),
                None => Text::Bytes(text.as_bytes().to_vec()),
            }
        }

        fn into_os(self) -> OsString {
            match self {
                Text::Utf8(utf8) => utf8.into(),
                Text::Bytes(bytes) => OsString::from_vec(bytes),
            }
        }
    }

    pub mod path {
        use super::*;

        pub fn serialize<S: Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
            Text::of(path.as_os_str()).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<std::path::PathBuf, D::Error> {
            Ok(Text::deserialize(d)?.into_os().into())
        }
    }

    pub mod args {
        use super::*;

        pub fn serialize<S: Serializer>(args: &[OsString], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(args.iter().map(|arg| Text::of(arg)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
            let texts = Vec::<Text>::deserialize(d)?;
            Ok(texts.into_iter().map(Text::into_os).collect())
        }
    }
}

/// The [`Meta`] kept in the snapshot `dir`, if it reads.
pub(super) fn read_meta(dir: &Path) -> Option<Meta> {
    let text = std::fs::read(dir.join(META)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::argv::Hardware;
    use crate::vm::snapshot::fixtures::*;

    #[test]
    fn paths_that_are_not_utf8_are_kept_exactly() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let odd = root
            .path()
            .join(std::ffi::OsStr::from_bytes(b"cache-\xff,x"));
        let store = store(&odd);
        let kernel = odd.join("kernels/k/vmlinux");
        let inputs = inputs(&kernel, 2_596_000);
        let slot = save(&store, inputs.clone(), "state");
        let (_, meta) = slot.load().expect("a snapshot of a non-UTF-8 path loads");
        assert_eq!(meta.inputs.kernel, kernel);
        assert_eq!(meta.inputs, inputs);
        assert_eq!(meta.inputs.key(), inputs.key());
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let kernel = Path::new("/k");
        let base = inputs(kernel, 2_596_000);
        assert_eq!(base.key(), inputs(kernel, 2_596_000).key());
        let changed = [
            Inputs {
                hardware: Hardware {
                    memory_mib: 256,
                    ..hardware()
                },
                ..base.clone()
            },
            Inputs::new(
                "/bin/true".as_ref(),
                hardware(),
                kernel,
                b"initrd2",
                Some(2_596_000),
                "agent",
            ),
            Inputs::new(
                "/bin/false".as_ref(),
                hardware(),
                kernel,
                b"initrd",
                Some(2_596_000),
                "agent",
            ),
            inputs(kernel, 2_597_000),
            inputs(Path::new("/k2"), 2_596_000),
            Inputs {
                agent: "another".into(),
                ..base.clone()
            },
        ];
        for other in changed {
            assert_ne!(base.key(), other.key(), "{other:?}");
        }
    }
}
