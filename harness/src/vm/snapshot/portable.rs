//! Portable saved VMs: what another machine may restore.
//!
//! Under TCG an arm64 guest sees nothing of the host: its CPU is QEMU's
//! `max` model and its generic timer runs at a frequency QEMU fixes, both
//! given by the QEMU build alone. Its saved state is the same on any
//! machine with the same QEMU build, agent, kernel, initramfs and machine
//! settings, so it is keyed by those and not by the machine: QEMU and the
//! kernel by their content's sha256 (their paths and file times differ from
//! machine to machine), the host left out. A CI cache may carry it from
//! runner to runner.
//!
//! An amd64 guest under TCG is told the host's TSC frequency
//! ([`super::tsc`]), which its kernel keeps from boot: a state saved on
//! one host would run its clock at that host's rate on another. Under KVM
//! a guest sees the host's CPU. Both stay keyed to their machine.
//!
//! Content digests are kept in `digests/` in the store, one file per
//! file version (path, device, inode, size, modification and change
//! times), so that a run hashes QEMU and a kernel once, not every time.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use super::{Inputs, Store};
use crate::vm::argv::{Accel, Hardware};

/// The store's directory of content digests.
pub(super) const DIGESTS: &str = "digests";

/// Whether a VM on `hardware` may be restored on another machine: an arm64
/// guest under TCG.
pub fn portable(hardware: Hardware) -> bool {
    hardware.machine.arch == Arch::Arm64 && hardware.accel == Accel::Tcg
}

impl Store {
    /// `inputs` as this store keys them: a portable VM's without the
    /// machine, its QEMU and kernel by content.
    pub(super) fn keyed(&self, inputs: Inputs) -> Inputs {
        if !portable(inputs.hardware) || inputs.host.is_none() {
            return inputs;
        }
        Inputs {
            host: None,
            qemu: self.content(&inputs.qemu_path),
            kernel_file: self.content(&inputs.kernel),
            ..inputs
        }
    }

    /// The sha256 of the file at `path` as `sha256:<hex>` (`missing` if it
    /// cannot be read), from the store's digests when it has not changed
    /// since one was taken.
    pub(super) fn content(&self, path: &Path) -> String {
        let Ok(meta) = std::fs::metadata(path) else {
            return "missing".into();
        };
        let version = format!(
            "{} {} {} {} {}.{} {}.{}",
            path.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        let memo = self.digest_memo(&version);
        if let Some(kept) = std::fs::read_to_string(&memo)
            .ok()
            .filter(|d| d.starts_with("sha256:") && d.len() == 7 + 64)
        {
            return kept;
        }
        let Some(digest) = sha256_file(path) else {
            return "missing".into();
        };
        let digest = format!("sha256:{digest}");
        // Written whole under another name and renamed: a reader sees the
        // digest or nothing.
        let _ = std::fs::create_dir_all(self.dir.join(DIGESTS))
            .and_then(|()| tempfile::NamedTempFile::new_in(self.dir.join(DIGESTS)))
            .and_then(|tmp| {
                std::fs::write(tmp.path(), &digest)?;
                tmp.persist(&memo).map(|_| ()).map_err(|e| e.error)
            });
        digest
    }

    /// Where the digest of the file version `version` is kept.
    fn digest_memo(&self, version: &str) -> PathBuf {
        let name = hex::encode(&Sha256::digest(version)[..16]);
        self.dir.join(DIGESTS).join(name)
    }
}

/// The sha256 of the file at `path`, in hex.
fn sha256_file(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::argv::Machine;
    use crate::vm::snapshot::fixtures::*;

    fn arm64() -> Hardware {
        Hardware {
            machine: Machine::for_kernel(Arch::Arm64, true),
            ..hardware()
        }
    }

    /// A kernel and a QEMU binary under `root`, and the inputs of a VM of
    /// them on `hardware`.
    fn vm(root: &Path, hardware: Hardware) -> Inputs {
        std::fs::create_dir_all(root).unwrap();
        let (kernel, qemu) = (root.join("Image"), root.join("qemu-system-aarch64"));
        std::fs::write(&kernel, "arm64 kernel").unwrap();
        std::fs::write(&qemu, "qemu build").unwrap();
        Inputs::new(&qemu, hardware, &kernel, b"initrd", None, "agent")
    }

    #[test]
    fn only_arm64_under_tcg_is_portable() {
        assert!(portable(arm64()));
        assert!(!portable(hardware()));
        assert!(!portable(Hardware {
            accel: Accel::Kvm,
            ..arm64()
        }));
    }

    #[test]
    fn a_portable_key_holds_content_not_machine_or_paths() {
        let root = tempfile::tempdir().unwrap();
        let (here, there) = (root.path().join("here"), root.path().join("there"));
        let ours = store(&here).keyed(vm(&here, arm64()));
        // Another machine: other paths, file times and machine id.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let theirs = Inputs {
            host: Some("another machine".into()),
            ..vm(&there, arm64())
        };
        let theirs = store(&there).keyed(theirs);
        assert_eq!(ours.host, None);
        assert!(ours.qemu.starts_with("sha256:"), "{}", ours.qemu);
        assert_ne!(ours.kernel, theirs.kernel);
        assert_eq!(ours.key(), theirs.key());

        // Another kernel build at the same path is another VM.
        std::fs::write(there.join("Image"), "another arm64 kernel").unwrap();
        let rebuilt = store(&there).keyed(vm_at(&there));
        assert_ne!(ours.key(), rebuilt.key());

        // amd64 stays keyed to its machine and paths.
        let amd64 = store(&here).keyed(vm(&here, hardware()));
        assert!(amd64.host.is_some());
        let moved = store(&there).keyed(vm(&there, hardware()));
        assert_ne!(amd64.key(), moved.key());
    }

    /// The inputs of an arm64 VM of the files already under `root`.
    fn vm_at(root: &Path) -> Inputs {
        let (kernel, qemu) = (root.join("Image"), root.join("qemu-system-aarch64"));
        Inputs::new(&qemu, arm64(), &kernel, b"initrd", None, "agent")
    }

    #[test]
    fn a_digest_is_kept_until_its_file_changes() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let file = root.path().join("qemu");
        std::fs::write(&file, "one").unwrap();
        let one = store.content(&file);
        assert_eq!(
            one,
            format!("sha256:{}", hex::encode(Sha256::digest(b"one")))
        );
        let memos: Vec<_> = std::fs::read_dir(store.dir.join(DIGESTS))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(memos.len(), 1);
        // A kept digest is what is read back, not the file again.
        std::fs::write(memos[0].path(), format!("sha256:{}", "0".repeat(64))).unwrap();
        assert_eq!(store.content(&file), format!("sha256:{}", "0".repeat(64)));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "two").unwrap();
        assert_eq!(
            store.content(&file),
            format!("sha256:{}", hex::encode(Sha256::digest(b"two")))
        );
        assert_eq!(store.content(&root.path().join("gone")), "missing");
    }
}
