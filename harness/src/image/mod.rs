//! The initramfs each VM boots: the guest agent as `/init`, the kernel's
//! modules, the objects under test, and the kernel's plan.
//!
//! It is concatenated cpio archives, laid out as
//! [`kmatrix_protocol::layout`] says: the init and objects parts (and
//! `kmatrix exec`'s files) once per run; the kernel's [`modules`] part and
//! its plan (a few bytes to kilobytes) per VM.

pub mod cpio;
pub mod modules;

use std::io::Write;
use std::path::Path;

use kmatrix_protocol::layout::{self, BASE_DIRS, INIT, OBJECTS_DIR, PLAN_PATH, ROOT};
use kmatrix_protocol::{encode_plan, Plan};

use crate::agent::Init;
use crate::kernels::KernelArtifacts;
use crate::objects::TestObject;

/// The kernel-independent parts of a run's initramfs.
pub struct ImageParts {
    init: Vec<u8>,
    objects: Vec<u8>,
    files: Vec<u8>,
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
    /// Builds the init and objects parts.
    pub fn new(init: Init, objects: &[TestObject]) -> std::io::Result<Self> {
        let mut base = cpio::Archive::new();
        for dir in BASE_DIRS {
            base.dir(layout::entry(dir));
        }
        base.file(layout::entry(INIT), 0o755, &init.binary()?);

        let mut packed = cpio::Archive::new();
        packed.dir(layout::entry(ROOT));
        packed.dir(layout::entry(OBJECTS_DIR));
        for (index, object) in objects.iter().enumerate() {
            let path = format!("{}/{index}", layout::entry(OBJECTS_DIR));
            packed.file(&path, 0o644, &object.data);
        }
        Ok(Self {
            init: base.finish(),
            objects: packed.finish(),
            files: Vec::new(),
        })
    }

    /// Adds host files, each at its own absolute path (for `kmatrix exec`).
    pub fn add_files(&mut self, files: &[std::path::PathBuf]) -> std::io::Result<()> {
        let mut archive = cpio::Archive::new();
        let mut dirs = std::collections::BTreeSet::new();
        for file in files {
            let guest = file.to_string_lossy().trim_start_matches('/').to_owned();
            let mut parent = String::new();
            for part in guest
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, p)| p)
            {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                if dirs.insert(parent.clone()) {
                    archive.dir(&parent);
                }
            }
            let meta = std::fs::metadata(file)?;
            let perm = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            archive.file(&guest, perm, &std::fs::read(file)?);
        }
        self.files = archive.finish();
        Ok(())
    }

    /// Writes the initramfs for `kernel`, carrying out `plan`, to `dest`.
    pub fn write(
        &self,
        kernel: &KernelArtifacts,
        plan: &Plan,
        dest: &Path,
    ) -> Result<(), ImageError> {
        let fail = |source| ImageError {
            path: dest.display().to_string(),
            source,
        };
        let modules = modules::part(kernel).map_err(fail)?;
        let mut packed = cpio::Archive::new();
        packed.dir(layout::entry(ROOT));
        packed.file(layout::entry(PLAN_PATH), 0o644, &encode_plan(plan));
        let plan = packed.finish();
        let mut file = std::fs::File::create(dest).map_err(fail)?;
        for part in [&modules[..], &self.init, &self.objects, &self.files, &plan] {
            file.write_all(part).map_err(fail)?;
        }
        Ok(())
    }
}
