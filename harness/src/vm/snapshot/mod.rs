//! Saved VMs: a kernel's VM, booted and waiting for its input, saved with
//! QEMU's migration to a file once and restored for every later run.
//!
//! A snapshot is a directory `<key>/` holding `state` (the migration
//! stream) and `meta.json` (the hello the VM said, and the key's
//! [`Inputs`]), written under `tmp/` and renamed into place, so that a
//! reader sees a whole snapshot or none, and two processes saving the same
//! one both succeed. The key is the digest of everything that could make a
//! saved state wrong to reuse: the QEMU binary (its path, size and
//! modification time: a state is only valid for the QEMU build that wrote
//! it), the machine (its machine id and CPU), every argument QEMU gets
//! (machine type, memory, CPU model, accelerator, kernel command line with
//! the TSC figure), the kernel's file and the initramfs's bytes (the agent
//! and the modules). An arm64 VM under TCG is portable: keyed by QEMU's
//! and the kernel's content and not by the machine ([`portable`]).
//!
//! With the inputs kept, `kernels gc` finds the snapshots no run would
//! reach now ([`Store::survey`]), and a new save replaces the older
//! snapshot of the same kernel, agent, QEMU and hardware (one whose TSC
//! figure, initramfs or kernel file changed): at most one of each stays.
//! The store has a size cap, kept by evicting the least recently used
//! ([`cap`]).
//!
//! This file owns the [`Store`], a snapshot's [`Slot`] in it and saving
//! into it; [`key`] makes the key and `meta.json`, [`portable`] keys what
//! another machine may restore, [`tsc`] keeps this machine's TSC figure,
//! [`gc`] decides which snapshots stay, [`cap`] bounds the store.

mod cap;
#[cfg(test)]
mod fixtures;
mod gc;
mod key;
mod portable;
mod tsc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, Hello};

pub use cap::{cap_from_env, evictions, CapError, Saved, Usage, CAP_ENV, DEFAULT_CAP};
pub use gc::{Current, Survey, Unreachable};
pub use key::{find_qemu, host_identity, qemu_identity, Inputs, Meta, MACHINE_ID_ENV};
pub use portable::portable;

use key::{read_meta, META};

/// The saved state's file in a snapshot's directory.
const STATE: &str = "state";

/// Where snapshots are kept.
#[derive(Clone, Debug)]
pub struct Store {
    /// The snapshots directory.
    pub dir: PathBuf,
    /// A directory on the same filesystem for snapshots being written.
    pub tmp: PathBuf,
    /// The sha256 of the agent this kmatrix packs, per architecture.
    pub agents: BTreeMap<Arch, String>,
    /// The most its saved VMs may take, in bytes ([`cap`]).
    pub cap: u64,
}

/// One snapshot's place in the store.
#[derive(Debug)]
pub struct Slot {
    dir: PathBuf,
    /// The store it is in.
    store: Store,
    /// What its key is made of, recorded with a saved state.
    pub inputs: Inputs,
    /// The saved state this slot restores, locked shared while it lives.
    held: std::sync::Mutex<Option<std::fs::File>>,
}

impl Store {
    /// The store in `cache`, capped by [`CAP_ENV`] (checked before a run
    /// with [`cap_from_env`]; [`DEFAULT_CAP`] if it does not read).
    pub fn in_cache(cache: &crate::cache::Cache) -> Self {
        Self {
            dir: cache.snapshots_dir(),
            tmp: cache.tmp_dir(),
            agents: crate::agent::digests().clone(),
            cap: cap_from_env().unwrap_or(DEFAULT_CAP),
        }
    }

    /// The sha256 of the agent of an `arch` guest.
    pub fn agent(&self, arch: Arch) -> &str {
        self.agents.get(&arch).map_or("", String::as_str)
    }

    /// The slot of a VM made of `inputs` (keyed by content if it is
    /// [`portable`]).
    pub fn slot(&self, inputs: Inputs) -> Slot {
        let inputs = self.keyed(inputs);
        Slot {
            dir: self.dir.join(inputs.key()),
            store: self.clone(),
            inputs,
            held: Default::default(),
        }
    }
}

/// Moves the snapshot `dir` aside into `tmp` and removes it there (a VM
/// restoring from it has its file open and keeps reading it).
pub(super) fn discard(dir: &Path, tmp: &Path) {
    let Ok(aside) = std::fs::create_dir_all(tmp).and_then(|()| {
        tempfile::Builder::new()
            .prefix("discarded-snapshot-")
            .tempdir_in(tmp)
    }) else {
        return;
    };
    let _ = std::fs::rename(dir, aside.path().join("entry"));
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
    /// The saved state and what it said, if the snapshot is complete:
    /// recorded as used, and held (never evicted) while this slot lives.
    pub fn load(&self) -> Option<(PathBuf, Meta)> {
        let state = self.dir.join(STATE);
        let meta = read_meta(&self.dir)?;
        self.hold(&state).then_some((state, meta))
    }

    /// A place to save a new state.
    pub fn pending(&self) -> std::io::Result<Pending> {
        std::fs::create_dir_all(&self.store.tmp)?;
        Ok(Pending {
            dir: tempfile::Builder::new()
                .prefix("snapshot-")
                .tempdir_in(&self.store.tmp)?,
        })
    }

    /// Moves a saved state into place with what the VM said (its hello),
    /// removes older snapshots of the same VM ([`Inputs::same_vm`]), and
    /// evicts the least recently used others if the store is over its cap.
    /// If another process saved one first, theirs is kept; an incomplete
    /// one in its place (a `state` or `meta.json` gone) is discarded first.
    pub fn commit(&self, pending: Pending, hello: &Hello) -> std::io::Result<()> {
        let meta = Meta {
            kernel_release: hello.kernel_release.clone(),
            btf: hello.btf,
            boot_ms: hello.boot_ms,
            inputs: self.inputs.clone(),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        std::fs::write(pending.dir.path().join(META), json)?;
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut discarded = false;
        loop {
            match std::fs::rename(pending.dir.path(), &self.dir) {
                Ok(()) => {
                    let _ = pending.dir.keep();
                    self.replace_older();
                    self.store.evict(Some(&self.dir));
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
    /// boot saves a good one.
    pub fn discard(&self) {
        discard(&self.dir, &self.store.tmp);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use fixtures::*;

    #[test]
    fn a_committed_snapshot_loads_and_a_second_commit_keeps_the_first() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let inputs = inputs(Path::new("/k/vmlinux"), 2_596_000);
        let slot = store.slot(inputs.clone());
        assert!(slot.load().is_none());
        for text in ["first", "second"] {
            save(&store, inputs.clone(), text);
        }
        let (state, meta) = slot.load().unwrap();
        assert_eq!(std::fs::read_to_string(state).unwrap(), "first");
        assert_eq!(meta.hello().kernel_release, "6.1.0-50-cloud-amd64");
        assert_eq!(meta.inputs, inputs);
        slot.discard();
        assert!(slot.load().is_none());
    }

    #[test]
    fn an_incomplete_snapshot_is_replaced_by_the_next_save() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let inputs = inputs(Path::new("/k/vmlinux"), 2_596_000);
        for missing in [STATE, META] {
            let slot = save(&store, inputs.clone(), "old");
            std::fs::remove_file(slot.dir.join(missing)).unwrap();
            assert!(slot.load().is_none());

            save(&store, inputs.clone(), "new");
            let (state, _) = slot.load().expect("the new save is in place");
            assert_eq!(std::fs::read_to_string(state).unwrap(), "new");
        }
    }
}
