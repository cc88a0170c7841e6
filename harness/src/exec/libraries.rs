//! What a file needs besides itself, resolved on the host: an ELF file's
//! interpreter (`PT_INTERP`) and its `DT_NEEDED` libraries, searched in its
//! run paths, `LD_LIBRARY_PATH` and the system library directories (a
//! library of another architecture passed over); a script's interpreter and
//! the tools it runs ([`crate::tools::script`]); and the architecture a
//! program runs on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;
use object::elf::{DT_NEEDED, DT_RPATH, DT_RUNPATH, PT_INTERP};
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

use super::files::{open_regular, read_regular};
use super::ExecError;

/// Where libraries are looked for after the program's own run paths (a
/// library of another architecture than the file that needs it is passed
/// over).
const SYSTEM_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// What a file needs besides itself.
pub(super) struct Needs {
    /// Files that must come with it: an ELF file's interpreter and
    /// libraries, a script's interpreter.
    pub(super) files: Vec<PathBuf>,
    /// The host tools a script runs.
    pub(super) tools: Vec<PathBuf>,
}

/// The architecture of the ELF file at `path`, if it is one
/// (`Err(e_machine)` for one kmatrix does not boot).
pub(super) fn elf_arch(path: &Path) -> Option<Result<Arch, u16>> {
    let mut head = [0u8; 20];
    let (mut file, _) = open_regular(path).ok()?;
    std::io::Read::read_exact(&mut file, &mut head).ok()?;
    Arch::of_elf(&head)
}

/// The architecture `program` runs on: an ELF program's own, or, for a
/// script, the host's (its interpreter is a host tool).
pub fn program_arch(program: &Path) -> Result<Arch, ExecError> {
    match elf_arch(program) {
        Some(Ok(arch)) => Ok(arch),
        Some(Err(machine)) => Err(ExecError::NotElf {
            path: program.to_owned(),
            reason: format!(
                "it is built for ELF machine {machine}, and kmatrix boots amd64 and arm64 kernels"
            ),
        }),
        None => Ok(Arch::host().unwrap_or_default()),
    }
}

/// What a program needs, resolved on the host: an ELF file's interpreter
/// and libraries, a script's interpreter and the tools it names.
pub(super) fn dependencies(path: &Path) -> Result<Needs, ExecError> {
    let (data, _) = read_regular(path)?;
    if let Some(script) = crate::tools::script(path, &data) {
        return Ok(Needs {
            files: script.interpreter,
            tools: script.tools,
        });
    }
    let not_elf = |reason: String| ExecError::NotElf {
        path: path.to_owned(),
        reason,
    };
    let elf = ElfFile64::<Endianness>::parse(&*data).map_err(|e| not_elf(e.to_string()))?;
    let endian = elf.endian();
    let mut found = Vec::new();
    for header in elf.elf_program_headers() {
        if header.p_type(endian) == PT_INTERP {
            if let Ok(Some(interp)) = header.interpreter(endian, &*data) {
                found.push(PathBuf::from(OsStr::new(
                    std::str::from_utf8(interp).unwrap_or_default(),
                )));
            }
        }
    }
    let sections = elf
        .elf_header()
        .sections(endian, &*data)
        .map_err(|e| not_elf(e.to_string()))?;
    let Some((entries, link)) = sections
        .dynamic(endian, &*data)
        .map_err(|e| not_elf(e.to_string()))?
    else {
        return Ok(Needs {
            files: found,
            tools: Vec::new(),
        });
    };
    let strings = sections
        .strings(endian, &*data, link)
        .map_err(|e| not_elf(e.to_string()))?;
    let origin = path
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    let mut needed = Vec::new();
    let mut run_paths = Vec::new();
    for entry in entries {
        let tag = entry.tag32(endian);
        let Some(text) = entry
            .string(endian, strings)
            .ok()
            .and_then(|s| std::str::from_utf8(s).ok())
        else {
            continue;
        };
        match tag {
            Some(DT_NEEDED) => needed.push(text.to_owned()),
            Some(DT_RUNPATH | DT_RPATH) => {
                run_paths.extend(text.split(':').map(|p| p.replace("$ORIGIN", &origin)))
            }
            _ => {}
        }
    }
    let library_path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let dirs: Vec<String> = run_paths
        .into_iter()
        .chain(
            library_path
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        )
        .chain(SYSTEM_DIRS.iter().map(|d| d.to_string()))
        .collect();
    let machine = elf.elf_header().e_machine(endian);
    for library in needed {
        let resolved = dirs
            .iter()
            .map(|dir| Path::new(dir).join(&library))
            .find(|candidate| {
                candidate.exists()
                    && elf_arch(candidate)
                        .is_none_or(|arch| arch.map_or_else(|m| m, Arch::elf_machine) == machine)
            })
            .ok_or_else(|| ExecError::MissingLibrary {
                needed_by: path.to_owned(),
                library: library.clone(),
            })?;
        found.push(resolved);
    }
    Ok(Needs {
        files: found,
        tools: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::prepare;

    #[test]
    fn a_script_brings_its_shell_and_tools_and_plain_text_is_no_program() {
        let script = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script.path(), "#!/bin/sh\nuname -r\n").unwrap();
        let prepared =
            prepare(&[script.path().display().to_string()], &[], &[], false, 512).unwrap();
        assert!(prepared.files.contains(&script.path().to_owned()));
        assert!(prepared.files.contains(&PathBuf::from("/bin/sh")));
        assert!(
            prepared.files.iter().any(|f| f.ends_with("uname")),
            "{:?}",
            prepared.files
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "just text\n").unwrap();
        let err = prepare(&[file.path().display().to_string()], &[], &[], false, 512).unwrap_err();
        assert!(
            err.to_string().contains("is not a 64-bit ELF program"),
            "{err}"
        );
    }
}
