//! What the snapshot tests share: a store in a temporary directory, the
//! inputs of a VM, and a save.

use std::path::Path;

use kmatrix_protocol::{Arch, Hello, VERSION};

use super::{Inputs, Slot, Store};
use crate::vm::argv::{Accel, Hardware, Machine};

pub fn hello() -> Hello {
    Hello {
        version: VERSION,
        kernel_release: "6.1.0-50-cloud-amd64".into(),
        btf: true,
        boot_ms: 900,
    }
}

pub fn store(root: &Path) -> Store {
    Store {
        dir: root.join("snapshots"),
        tmp: root.join("tmp"),
        agents: [(Arch::Amd64, "agent".to_owned())].into_iter().collect(),
        cap: super::DEFAULT_CAP,
    }
}

pub fn hardware() -> Hardware {
    Hardware {
        machine: Machine::for_kernel(Arch::Amd64, true),
        memory_mib: 512,
        accel: Accel::Tcg,
    }
}

/// The inputs of a VM of `kernel`, told `tsc_khz`.
pub fn inputs(kernel: &Path, tsc_khz: u64) -> Inputs {
    Inputs::new(
        "/bin/true".as_ref(),
        hardware(),
        kernel,
        b"initrd",
        Some(tsc_khz),
        "agent",
    )
}

/// Saves a snapshot of `inputs` holding `state`.
pub fn save(store: &Store, inputs: Inputs, state: &str) -> Slot {
    let slot = store.slot(inputs);
    let pending = slot.pending().unwrap();
    std::fs::write(pending.state(), state).unwrap();
    slot.commit(pending, &hello()).unwrap();
    slot
}
