//! What stays in the store: [`Store::survey`] sorts the snapshots (for
//! `kernels gc`) into those a run may restore [`Current`]ly and those none
//! would, and why ([`Unreachable`]); a new save replaces the older
//! snapshots of the same VM, so that at most one of each stays (but one a
//! run holds, which the next save or `kernels gc` removes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, VERSION};

use super::cap::{is_record, try_evict};
use super::key::{find_qemu, identity, key_args, read_meta, FORMAT, META};
use super::{host_identity, qemu_identity, Inputs, Slot, Store, STATE};
use crate::cache::Entry;
use crate::vm::argv::{Accel, Machine};

/// What runs on this machine would use now: a snapshot of anything else
/// is never restored.
#[derive(Clone, Debug)]
pub struct Current {
    /// The kernel files the matrix keeps, each with the machine it boots on.
    pub kernels: HashMap<PathBuf, Machine>,
    /// The QEMU binaries ([`find_qemu`]).
    pub qemus: Vec<PathBuf>,
    /// [`host_identity`].
    pub host: String,
    /// Whether VMs may run under KVM here.
    pub kvm: bool,
    /// The TSC figure amd64 guests under TCG are told.
    pub tsc_khz: Option<u64>,
}

impl Current {
    /// What runs would use now: `kernels` and `qemus`, this machine, and
    /// its TSC figure as `store` records it (recording nothing).
    pub fn now(store: &Store, kernels: HashMap<PathBuf, Machine>, qemus: &[&Path]) -> Self {
        Self {
            kernels,
            qemus: qemus.iter().map(|q| find_qemu(q)).collect(),
            host: host_identity(),
            kvm: crate::vm::AccelChoice::Auto.resolve() == Accel::Kvm,
            tsc_khz: crate::vm::config::tsc_khz_told(Arch::Amd64, Accel::Tcg)
                .map(|khz| store.recorded_tsc_khz(khz).unwrap_or(khz)),
        }
    }
}

/// Why no run would restore a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// Its `meta.json` cannot be read, or an older kmatrix wrote it.
    #[error("unreadable or of another kmatrix version")]
    Unreadable,
    /// Saved on another machine.
    #[error("another machine")]
    Host,
    /// Its kernel is no longer in the matrix, or its file is gone or was
    /// extracted again.
    #[error("kernel no longer kept")]
    Kernel,
    /// Saved with another agent.
    #[error("another agent")]
    Agent,
    /// Saved by another QEMU build.
    #[error("another QEMU build")]
    Qemu,
    /// Saved with a machine, accelerator or command line runs no longer
    /// use.
    #[error("machine settings no run uses")]
    Hardware,
    /// Saved with another TSC figure.
    #[error("another TSC figure")]
    TscFigure,
}

/// The store's snapshots, those a run may restore and those none would.
#[derive(Debug, Default)]
pub struct Survey {
    /// Snapshots a run may restore.
    pub reachable: Vec<Entry>,
    /// Snapshots (and stray files) no run would restore, and why.
    pub unreachable: Vec<(Entry, Unreachable)>,
}

impl Store {
    /// Every snapshot, sorted by whether a run would restore it `now`;
    /// files other than the store's records are unreachable too.
    pub fn survey(&self, now: &Current) -> Survey {
        let mut survey = Survey::default();
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if is_record(&path) {
                continue;
            }
            let why = match read_meta(&path) {
                Some(meta) if path.join(STATE).is_file() => self.unreachable(&meta.inputs, now),
                _ => Some(Unreachable::Unreadable),
            };
            let entry = Entry {
                bytes: crate::cache::size(&path),
                path,
            };
            match why {
                None => survey.reachable.push(entry),
                Some(why) => survey.unreachable.push((entry, why)),
            }
        }
        survey
    }
}

impl Inputs {
    /// Whether `other` is a VM of the same kernel, agent, QEMU and hardware
    /// on the same machine (of which one snapshot is enough).
    fn same_vm(&self, other: &Self) -> bool {
        (
            &self.host,
            &self.kernel,
            &self.agent,
            &self.qemu,
            &self.hardware,
            &self.args,
        ) == (
            &other.host,
            &other.kernel,
            &other.agent,
            &other.qemu,
            &other.hardware,
            &other.args,
        )
    }
}

impl Store {
    /// Why no run would restore a snapshot of `inputs` now, if so. A
    /// portable one's kernel and QEMU are found by content, wherever they
    /// are here.
    fn unreachable(&self, inputs: &Inputs, now: &Current) -> Option<Unreachable> {
        let machine = inputs.hardware.machine;
        let kernel = match &inputs.host {
            Some(_) => (now.kernels.contains_key(&inputs.kernel)
                && identity(&inputs.kernel) == inputs.kernel_file)
                .then_some(&inputs.kernel),
            None => now
                .kernels
                .iter()
                .filter(|(_, m)| **m == machine)
                .map(|(path, _)| path)
                .find(|path| self.content(path) == inputs.kernel_file),
        };
        let qemu = |path: &PathBuf| match &inputs.host {
            Some(_) => qemu_identity(path) == inputs.qemu,
            None => self.content(path) == inputs.qemu,
        };
        let unreachable = if (inputs.format, inputs.protocol) != (FORMAT, VERSION) {
            Unreachable::Unreadable
        } else if inputs.host.as_ref().is_some_and(|host| *host != now.host) {
            Unreachable::Host
        } else if kernel.is_none() {
            Unreachable::Kernel
        } else if self.agents.get(&machine.arch) != Some(&inputs.agent) {
            Unreachable::Agent
        } else if !now.qemus.iter().any(qemu) {
            Unreachable::Qemu
        } else if kernel.and_then(|k| now.kernels.get(k)) != Some(&machine)
            || (inputs.hardware.accel == Accel::Kvm && !now.kvm)
            || key_args(inputs.hardware, inputs.tsc_khz) != inputs.args
        {
            Unreachable::Hardware
        } else if inputs.tsc_khz.is_some() && inputs.tsc_khz != now.tsc_khz {
            Unreachable::TscFigure
        } else {
            return None;
        };
        Some(unreachable)
    }
}

impl Slot {
    /// Discards the snapshots of the same VM saved before this one, but
    /// one a run holds.
    pub(super) fn replace_older(&self) {
        let Some(saved) = saved_at(&self.dir) else {
            return;
        };
        for entry in std::fs::read_dir(&self.store.dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let other = entry.path();
            let older = saved_at(&other).is_some_and(|at| at < saved);
            if other != self.dir
                && older
                && read_meta(&other).is_some_and(|meta| meta.inputs.same_vm(&self.inputs))
            {
                try_evict(&other, &self.store.tmp);
            }
        }
    }
}

/// When the snapshot in `dir` was saved: its `meta.json`'s time.
fn saved_at(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dir.join(META)).ok()?.modified().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::vm::argv::Hardware;
    use crate::vm::snapshot::fixtures::*;
    use crate::vm::snapshot::Meta;

    #[test]
    fn a_new_save_replaces_the_older_snapshot_of_the_same_vm() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let kernel = Path::new("/k/vmlinux");
        let old = save(&store, inputs(kernel, 2_596_000), "old");
        let other_kernel = save(&store, inputs(Path::new("/k2/vmlinux"), 2_596_000), "k2");
        let other_agent = save(
            &store,
            Inputs {
                agent: "another".into(),
                ..inputs(kernel, 2_596_000)
            },
            "agent",
        );
        // File times have a resolution: the new save is later.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = save(&store, inputs(kernel, 2_597_000), "new");
        assert!(old.load().is_none(), "the older snapshot of the VM stayed");
        assert!(new.load().is_some());
        assert!(other_kernel.load().is_some());
        assert!(other_agent.load().is_some());
    }

    #[test]
    fn gc_finds_snapshots_no_current_input_reaches() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let kernels = root.path().join("kernels");
        std::fs::create_dir_all(kernels.join("k")).unwrap();
        std::fs::create_dir_all(kernels.join("gone")).unwrap();
        let kernel = kernels.join("k/vmlinux");
        let gone = kernels.join("gone/vmlinux");
        std::fs::write(&kernel, "elf").unwrap();
        std::fs::write(&gone, "elf").unwrap();
        let machine = hardware().machine;
        let now = Current {
            kernels: [(kernel.clone(), machine)].into_iter().collect(),
            qemus: vec![find_qemu("/bin/true".as_ref())],
            host: host_identity(),
            kvm: false,
            tsc_khz: Some(2_596_000),
        };
        let kept = inputs(&kernel, 2_596_000);
        let cases = [
            ("kept", kept.clone(), None),
            ("gone", inputs(&gone, 2_596_000), Some(Unreachable::Kernel)),
            (
                "agent",
                Inputs {
                    agent: "older".into(),
                    ..kept.clone()
                },
                Some(Unreachable::Agent),
            ),
            (
                "qemu",
                Inputs {
                    qemu: qemu_identity("/bin/false".as_ref()),
                    ..kept.clone()
                },
                Some(Unreachable::Qemu),
            ),
            (
                "host",
                Inputs {
                    host: Some("another machine".into()),
                    ..kept.clone()
                },
                Some(Unreachable::Host),
            ),
            (
                "tsc",
                inputs(&kernel, 2_601_000),
                Some(Unreachable::TscFigure),
            ),
            (
                "mmio",
                Inputs {
                    hardware: Hardware {
                        machine: Machine::for_kernel(Arch::Amd64, false),
                        ..hardware()
                    },
                    ..kept.clone()
                },
                Some(Unreachable::Hardware),
            ),
            (
                "cmdline",
                Inputs {
                    args: vec!["-kernel".into()],
                    ..kept.clone()
                },
                Some(Unreachable::Hardware),
            ),
            (
                "kvm",
                Inputs {
                    hardware: Hardware {
                        accel: Accel::Kvm,
                        ..hardware()
                    },
                    args: key_args(
                        Hardware {
                            accel: Accel::Kvm,
                            ..hardware()
                        },
                        None,
                    ),
                    tsc_khz: None,
                    ..kept.clone()
                },
                Some(Unreachable::Hardware),
            ),
            (
                "format",
                Inputs {
                    format: FORMAT - 1,
                    ..kept.clone()
                },
                Some(Unreachable::Unreadable),
            ),
        ];
        let mut expected = BTreeMap::new();
        for (name, inputs, why) in cases {
            // Planted as they are: a save would replace the older ones.
            let dir = store.dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(STATE), name).unwrap();
            let meta = Meta {
                kernel_release: "6.1.0".into(),
                btf: true,
                boot_ms: 1,
                inputs,
            };
            std::fs::write(dir.join(META), serde_json::to_vec(&meta).unwrap()).unwrap();
            expected.insert(dir, why);
        }
        // A snapshot whose meta.json an older kmatrix wrote, a directory
        // missing its state, a stray file; this machine's TSC record stays.
        let old = store.dir.join("0123");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(STATE), "state").unwrap();
        std::fs::write(old.join(META), r#"{"kernel_release":"6.0.0","btf":true,"boot_ms":1,"kernel":"/k","agent":"","qemu":"","host":""}"#).unwrap();
        let stateless = store.dir.join("4567");
        std::fs::create_dir_all(&stateless).unwrap();
        std::fs::write(stateless.join(META), "{}").unwrap();
        let stray = store.dir.join("tsc-khz");
        std::fs::write(&stray, "2596118").unwrap();
        for path in [old, stateless, stray] {
            expected.insert(path, Some(Unreachable::Unreadable));
        }
        store.stable_tsc_khz(2_596_000);

        let survey = store.survey(&now);
        let mut found: BTreeMap<PathBuf, Option<Unreachable>> = survey
            .unreachable
            .iter()
            .map(|(entry, why)| (entry.path.clone(), Some(*why)))
            .collect();
        found.extend(survey.reachable.iter().map(|e| (e.path.clone(), None)));
        assert_eq!(found, expected);
        assert!(survey.unreachable.iter().all(|(e, _)| e.bytes > 0));
    }
}
