//! Saved VMs: a kernel's VM, booted and waiting for its input, saved with
//! QEMU's migration to a file once and restored for every later run.
//!
//! A snapshot is a directory `<key>/` holding `state` (the migration
//! stream) and `meta.json` (the hello the VM said, and what `kernels gc`
//! needs), written under `tmp/` and renamed into place, so that a reader
//! sees a whole snapshot or none, and two processes saving the same one
//! both succeed. The key covers everything that could make a saved state
//! wrong to reuse: the QEMU binary (its path, size and modification time:
//! a state is only valid for the QEMU build that wrote it), the machine
//! (its machine id and CPU: snapshots are never shared between machines),
//! every argument QEMU gets (machine type, memory, CPU model, accelerator,
//! kernel command line), the kernel's file and the initramfs's bytes (the
//! agent and the modules).

use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, Hello, VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when what a snapshot holds or means changes.
const FORMAT: u32 = 1;

const STATE: &str = "state";
const META: &str = "meta.json";
/// This machine's recorded TSC figure: `tsc-khz-<machine>`.
const TSC_KHZ: &str = "tsc-khz-";

/// How far, per mille, a new TSC figure may be from the recorded one and
/// still be taken for it: figures of one host, rounded to the MHz, differ
/// by a MHz at most (0.04% at 2.6 GHz), while another host's TSC is
/// farther off.
const TSC_TOLERANCE_PER_MILLE: u64 = 5;

/// What is kept next to a saved state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The kernel release the VM said hello with.
    pub kernel_release: String,
    /// Whether it has BTF.
    pub btf: bool,
    /// When its agent came up, in ms after the kernel started.
    pub boot_ms: u64,
    /// The kernel file it booted (gone from the cache: the snapshot is
    /// unused).
    pub kernel: PathBuf,
    /// The agent's sha256 (another agent: unused).
    pub agent: String,
    /// The QEMU binary's path, size and modification time (another QEMU:
    /// unused).
    pub qemu: String,
    /// The machine that saved it (another machine: unused).
    pub host: String,
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

/// Where snapshots are kept.
#[derive(Clone, Debug)]
pub struct Store {
    /// The snapshots directory.
    pub dir: PathBuf,
    /// A directory on the same filesystem for snapshots being written.
    pub tmp: PathBuf,
    /// The sha256 of the agent this kmatrix packs, per architecture.
    pub agents: std::collections::BTreeMap<Arch, String>,
}

/// One snapshot's place in the store.
#[derive(Clone, Debug)]
pub struct Slot {
    dir: PathBuf,
    tmp: PathBuf,
    /// The agent's sha256, recorded with a saved state.
    pub agent: String,
}

/// The key of a VM started with `args` (run-specific paths left out) from
/// `kernel` and the initramfs `initrd`.
pub fn key(qemu: &Path, args: &[std::ffi::OsString], kernel: &Path, initrd: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.to_le_bytes());
    hasher.update(VERSION.to_le_bytes());
    hasher.update(qemu_identity(qemu).as_bytes());
    hasher.update([0]);
    hasher.update(host_identity().as_bytes());
    hasher.update([0]);
    hasher.update(kernel.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    hasher.update(identity(kernel).as_bytes());
    for arg in args {
        hasher.update(arg.as_encoded_bytes());
        hasher.update([0]);
    }
    hasher.update(Sha256::digest(initrd));
    hex::encode(&hasher.finalize()[..16])
}

/// This machine: its machine id, and its CPU's model and flags.
pub fn host_identity() -> String {
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
fn identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => format!("{} {:?}", meta.len(), meta.modified().ok()),
        Err(_) => "missing".into(),
    }
}

/// The QEMU binary (looked up on the PATH if it is a bare name): its path,
/// size and modification time.
pub fn qemu_identity(qemu: &Path) -> String {
    let path = if qemu.components().count() > 1 {
        qemu.to_owned()
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(qemu))
            .find(|path| path.is_file())
            .unwrap_or_else(|| qemu.to_owned())
    };
    format!("{} {}", path.display(), identity(&path))
}

impl Store {
    /// The store in `cache`.
    pub fn in_cache(cache: &crate::cache::Cache) -> Self {
        Self {
            dir: cache.snapshots_dir(),
            tmp: cache.tmp_dir(),
            agents: crate::agent::digests().clone(),
        }
    }

    /// The slot for `key`, a VM of an `arch` kernel.
    pub fn slot(&self, key: &str, arch: Arch) -> Slot {
        Slot {
            dir: self.dir.join(key),
            tmp: self.tmp.clone(),
            agent: self.agents.get(&arch).cloned().unwrap_or_default(),
        }
    }

    /// This machine's TSC figure as first recorded, while a new figure
    /// `khz` stays within [`TSC_TOLERANCE_PER_MILLE`] of it: the figure is
    /// part of every amd64 saved VM's key, and a figure that moved with
    /// each measurement would make every run save its VMs anew.
    pub fn stable_tsc_khz(&self, khz: u64) -> u64 {
        let machine = hex::encode(&Sha256::digest(host_identity())[..8]);
        let file = self.dir.join(format!("{TSC_KHZ}{machine}"));
        let kept = || {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .filter(|kept| kept.abs_diff(khz) * 1000 <= kept * TSC_TOLERANCE_PER_MILLE)
        };
        if let Some(kept) = kept() {
            return kept;
        }
        // Written whole under another name, then linked into place unless
        // another process got there first, whose figure then wins: two
        // runs starting together must key their saved VMs alike.
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&self.dir))
            .and_then(|tmp| {
                std::fs::write(tmp.path(), khz.to_string())?;
                match tmp.persist_noclobber(&file) {
                    Ok(_) => Ok(()),
                    // Another process's figure, kept if close; one too far
                    // off (a new host) is replaced.
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                        if kept().is_some() {
                            Ok(())
                        } else {
                            e.file.persist(&file).map(|_| ()).map_err(|e| e.error)
                        }
                    }
                    Err(e) => Err(e.error),
                }
            });
        match written {
            Ok(()) => kept().unwrap_or(khz),
            Err(_) => khz,
        }
    }

    /// Snapshots nothing can restore, with their sizes: unreadable ones,
    /// and those of a kernel not in `kernels` (the cache's kernel
    /// directories still in use), of another agent, or of another build of
    /// each of `qemus`.
    pub fn unused(
        &self,
        kernels: &std::collections::HashSet<PathBuf>,
        qemus: &[&Path],
    ) -> Vec<(PathBuf, u64)> {
        let host = host_identity();
        let qemus: Vec<String> = qemus.iter().map(|q| qemu_identity(q)).collect();
        let mut unused = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let used = read_meta(&path).is_some_and(|meta| {
                meta.kernel.exists()
                    && meta.kernel.parent().is_some_and(|k| kernels.contains(k))
                    && self.agents.values().any(|agent| *agent == meta.agent)
                    && qemus.contains(&meta.qemu)
                    && meta.host == host
            });
            if !used {
                let bytes = std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                unused.push((path, bytes));
            }
        }
        unused
    }
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let text = std::fs::read(dir.join(META)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// A state being saved: its directory under `tmp/`.
pub struct Pending {
    dir: tempfile::TempDir,
}

impl Pending {
    /// The file QEMU writes the state to.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join(STATE)
    }
}

impl Slot {
    /// The saved state and what it said, if the snapshot is complete.
    pub fn load(&self) -> Option<(PathBuf, Meta)> {
        let state = self.dir.join(STATE);
        let meta = read_meta(&self.dir)?;
        state.is_file().then_some((state, meta))
    }

    /// A place to save a new state.
    pub fn pending(&self) -> std::io::Result<Pending> {
        std::fs::create_dir_all(&self.tmp)?;
        Ok(Pending {
            dir: tempfile::Builder::new()
                .prefix("snapshot-")
                .tempdir_in(&self.tmp)?,
        })
    }

    /// Moves a saved state into place with its `meta`. If another process
    /// saved one first, theirs is kept; an incomplete one in its place (a
    /// `state` or `meta.json` gone) is discarded first.
    pub fn commit(&self, pending: Pending, meta: &Meta) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        std::fs::write(pending.dir.path().join(META), json)?;
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut discarded = false;
        loop {
            match std::fs::rename(pending.dir.path(), &self.dir) {
                Ok(()) => {
                    let _ = pending.dir.keep();
                    return Ok(());
                }
                Err(_) if self.load().is_some() => return Ok(()),
                Err(_) if self.dir.is_dir() && !discarded => {
                    self.discard();
                    discarded = true;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Removes a snapshot that could not be restored, so that the next cold
    /// boot saves a good one. Moved aside first: a VM restoring from it has
    /// its file open and keeps reading it.
    pub fn discard(&self) {
        let Ok(aside) = tempfile::Builder::new()
            .prefix("broken-snapshot-")
            .tempdir_in(&self.tmp)
        else {
            return;
        };
        let _ = std::fs::rename(&self.dir, aside.path().join("entry"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kernel: &Path) -> Meta {
        Meta {
            kernel_release: "6.1.0-50-cloud-amd64".into(),
            btf: true,
            boot_ms: 900,
            kernel: kernel.to_owned(),
            agent: "agent".into(),
            qemu: qemu_identity("/bin/true".as_ref()),
            host: host_identity(),
        }
    }

    fn store(root: &Path) -> Store {
        Store {
            dir: root.join("snapshots"),
            tmp: root.join("tmp"),
            agents: [(Arch::Amd64, "agent".to_owned())].into_iter().collect(),
        }
    }

    #[test]
    fn the_first_tsc_figure_is_kept_while_close_and_replaced_when_far() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        assert_eq!(store.stable_tsc_khz(2_600_000), 2_600_000);
        assert_eq!(store.stable_tsc_khz(2_601_000), 2_600_000);
        assert_eq!(store.stable_tsc_khz(3_000_000), 3_000_000);
        assert_eq!(store.stable_tsc_khz(3_000_500), 3_000_000);
    }

    #[test]
    fn measurements_under_load_keep_the_recorded_figure() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        // A TSC on a MHz boundary rounds either way; under load a 20 ms
        // window was 0.2% short once in 1000 (2590994 kHz for 2596118).
        let measured = [
            2_596_500, 2_596_499, 2_596_501, 2_590_994, 2_596_510, 2_601_000, 2_596_490,
        ];
        let first = store.stable_tsc_khz(measured[0] / 1000 * 1000);
        for khz in measured {
            assert_eq!(
                store.stable_tsc_khz((khz + 500) / 1000 * 1000),
                first,
                "{khz}"
            );
        }
    }

    #[test]
    fn a_committed_snapshot_loads_and_a_second_commit_keeps_the_first() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let slot = store.slot("k", Arch::Amd64);
        assert!(slot.load().is_none());
        for text in ["first", "second"] {
            let pending = slot.pending().unwrap();
            std::fs::write(pending.state(), text).unwrap();
            slot.commit(pending, &meta(Path::new("/k/vmlinux")))
                .unwrap();
        }
        let (state, meta) = slot.load().unwrap();
        assert_eq!(std::fs::read_to_string(state).unwrap(), "first");
        assert_eq!(meta.hello().kernel_release, "6.1.0-50-cloud-amd64");
        slot.discard();
        assert!(slot.load().is_none());
    }

    #[test]
    fn an_incomplete_snapshot_is_replaced_by_the_next_save() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let meta = meta(Path::new("/k/vmlinux"));
        for missing in [STATE, META] {
            let slot = store.slot(missing, Arch::Amd64);
            let pending = slot.pending().unwrap();
            std::fs::write(pending.state(), "old").unwrap();
            slot.commit(pending, &meta).unwrap();
            std::fs::remove_file(slot.dir.join(missing)).unwrap();
            assert!(slot.load().is_none());

            let pending = slot.pending().unwrap();
            std::fs::write(pending.state(), "new").unwrap();
            slot.commit(pending, &meta).unwrap();
            let (state, _) = slot.load().expect("the new save is in place");
            assert_eq!(std::fs::read_to_string(state).unwrap(), "new");
        }
    }

    #[test]
    fn snapshots_of_a_kernel_no_longer_cached_or_another_agent_or_qemu_are_unused() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let kernel_dir = root.path().join("kernels/abc");
        std::fs::create_dir_all(&kernel_dir).unwrap();
        std::fs::write(kernel_dir.join("vmlinux"), "elf").unwrap();
        let kept = meta(&kernel_dir.join("vmlinux"));
        let gone = meta(&root.path().join("kernels/old/vmlinux"));
        let other_agent = Meta {
            agent: "older".into(),
            ..kept.clone()
        };
        let other_qemu = Meta {
            qemu: qemu_identity("/bin/false".as_ref()),
            ..kept.clone()
        };
        let other_host = Meta {
            host: "another machine".into(),
            ..kept.clone()
        };
        let all = [
            ("kept", &kept),
            ("gone", &gone),
            ("agent", &other_agent),
            ("qemu", &other_qemu),
            ("host", &other_host),
        ];
        for (key, meta) in all {
            let slot = store.slot(key, Arch::Amd64);
            let pending = slot.pending().unwrap();
            std::fs::write(pending.state(), "state").unwrap();
            slot.commit(pending, meta).unwrap();
        }
        let keep = [kernel_dir].into_iter().collect();
        let mut unused: Vec<_> = store
            .unused(&keep, &["/bin/true".as_ref()])
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        unused.sort();
        let expected: Vec<_> = ["agent", "gone", "host", "qemu"]
            .iter()
            .map(|k| store.dir.join(k))
            .collect();
        assert_eq!(unused, expected);
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let args = |m: &str| vec![std::ffi::OsString::from("-m"), m.into()];
        let base = key(
            "/bin/true".as_ref(),
            &args("256M"),
            "/k".as_ref(),
            b"initrd",
        );
        assert_eq!(
            base,
            key(
                "/bin/true".as_ref(),
                &args("256M"),
                "/k".as_ref(),
                b"initrd"
            )
        );
        assert_ne!(
            base,
            key(
                "/bin/true".as_ref(),
                &args("512M"),
                "/k".as_ref(),
                b"initrd"
            )
        );
        assert_ne!(
            base,
            key(
                "/bin/true".as_ref(),
                &args("256M"),
                "/k".as_ref(),
                b"initrd2"
            )
        );
        assert_ne!(
            base,
            key(
                "/bin/false".as_ref(),
                &args("256M"),
                "/k".as_ref(),
                b"initrd"
            )
        );
    }
}
