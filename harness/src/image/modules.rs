//! The modules part: the kernel modules the agent loads to reach its
//! results port, packed at [`MODULES_DIR`] as `NN-<name>.ko` in load order.

use kmatrix_protocol::layout::{self, MODULES_DIR, ROOT};

use super::cpio;
use crate::kernels::KernelArtifacts;

/// The cpio part holding `kernel`'s modules.
pub fn part(kernel: &KernelArtifacts) -> std::io::Result<Vec<u8>> {
    let mut archive = cpio::Archive::new();
    archive.dir(layout::entry(ROOT));
    archive.dir(layout::entry(MODULES_DIR));
    for (i, name) in kernel.modules.iter().enumerate() {
        let elf = std::fs::read(kernel.module(name))?;
        let path = format!("{}/{i:02}-{name}.ko", layout::entry(MODULES_DIR));
        archive.file(&path, 0o644, &elf);
    }
    Ok(archive.finish())
}
