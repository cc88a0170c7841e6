//! What each VM gets: an initramfs that is the same for every run of a
//! kernel (the guest agent as `/init` and the kernel's [`modules`]), and
//! the run's input, sent over the port after the agent's hello (the
//! objects under test, `kmatrix exec`'s files, then the plan). Keeping the
//! run out of the initramfs is what lets a saved VM serve any run.
//!
//! Paths are those of [`kmatrix_protocol::layout`].

pub mod cpio;
pub mod modules;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use kmatrix_protocol::input::encode_input;
use kmatrix_protocol::layout::{self, BASE_DIRS, INIT, OBJECTS_DIR};
use kmatrix_protocol::{Arch, Input};

use crate::agent::Init;
use crate::kernels::KernelArtifacts;
use crate::objects::TestObject;

/// The run's parts: the init part of the initramfs for each architecture
/// the run boots, and the files every VM of the run is sent.
pub struct ImageParts {
    inits: BTreeMap<Arch, Vec<u8>>,
    /// The files, encoded as input messages, each followed by its bytes;
    /// shared, not copied, by every VM's input writer.
    files: Arc<Vec<u8>>,
}

/// An initramfs could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the initramfs {path}")]
pub struct ImageError {
    /// The file.
    pub path: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl ImageParts {
    /// Builds the init part for each of `arches` and packs the objects as
    /// files.
    pub fn new(init: Init, arches: &[Arch], objects: &[TestObject]) -> std::io::Result<Self> {
        let mut inits = BTreeMap::new();
        for &arch in arches {
            let mut base = cpio::Archive::new();
            for dir in BASE_DIRS {
                base.dir(layout::entry(dir));
            }
            base.file(layout::entry(INIT), 0o755, &init.binary(arch)?);
            inits.insert(arch, base.finish());
        }
        let mut parts = Self {
            inits,
            files: Arc::default(),
        };
        for (index, object) in objects.iter().enumerate() {
            parts.file(
                format!("{OBJECTS_DIR}/{index}").as_bytes(),
                0o644,
                &object.data,
            );
        }
        Ok(parts)
    }

    fn file(&mut self, path: &[u8], mode: u32, data: &[u8]) {
        let len = data.len() as u64;
        encode_input(
            &Input::File {
                path: path.to_vec(),
                mode,
                len,
            },
            Arc::make_mut(&mut self.files),
        );
        Arc::make_mut(&mut self.files).extend_from_slice(data);
    }

    /// Adds a host file at its own absolute path, byte for byte (for
    /// `kmatrix exec`).
    pub fn add_file(&mut self, path: &Path, mode: u32, data: &[u8]) {
        self.file(path.as_os_str().as_bytes(), mode, data);
    }

    /// The run's files, encoded as input messages, each followed by its
    /// bytes: what every VM is sent before its plan.
    pub fn files(&self) -> Arc<Vec<u8>> {
        self.files.clone()
    }

    /// Writes the initramfs for `kernel`, an `arch` kernel, to `dest`.
    pub fn write(
        &self,
        kernel: &KernelArtifacts,
        arch: Arch,
        dest: &Path,
    ) -> Result<(), ImageError> {
        let fail = |source| ImageError {
            path: dest.display().to_string(),
            source,
        };
        let init = self.inits.get(&arch).ok_or_else(|| {
            fail(std::io::Error::other(format!(
                "the run was planned without {arch} kernels"
            )))
        })?;
        let modules = modules::part(kernel).map_err(fail)?;
        let mut file = std::fs::File::create(dest).map_err(fail)?;
        for part in [&modules[..], init] {
            file.write_all(part).map_err(fail)?;
        }
        Ok(())
    }
}
