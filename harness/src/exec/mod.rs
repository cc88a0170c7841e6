//! `kmatrix exec`: what a host program needs to run in the guest.
//!
//! The program and the shared libraries it needs (its ELF interpreter and
//! `DT_NEEDED` entries, followed recursively and resolved on the host), a
//! script's interpreter, the host tools the command line and scripts run
//! ([`crate::tools`]), any files given with `--file`, and the working
//! directory's files (read-only in the guest) are sent at their host paths,
//! byte for byte, and no more than the guest's root filesystem holds
//! ([`room`]); the program runs in the working directory's path, with an
//! allow-listed environment.
//!
//! `mod.rs` holds the plan ([`Prepared`]), its errors and [`prepare`], the
//! entry point; `sent.rs` what is sent and its bytes against [`room`];
//! `path.rs` the program's lookup on the PATH; `libraries.rs` what a file
//! needs (an ELF file's interpreter and libraries, a script's interpreter
//! and tools) and its architecture; `files.rs` opening files safely and
//! walking what `--file` names; `share.rs` the working directory's share.

use std::collections::BTreeSet;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use kmatrix_protocol::{Arch, ExecPlan};

use crate::image::ImageParts;

mod files;
mod libraries;
mod path;
mod sent;
mod share;

pub use files::{open_regular, read_regular};
pub use libraries::program_arch;
pub use path::find_program;

use files::walk_given;
use libraries::{dependencies, elf_arch};
use sent::Sent;

/// Variables passed to the guest when set on the host, besides `--env`.
pub const ENV_ALLOWED: &[&str] = &[
    "RUST_BACKTRACE",
    "RUST_LOG",
    "RUST_LIB_BACKTRACE",
    "RUST_MIN_STACK",
    "RUST_TEST_THREADS",
    "RUST_TEST_NOCAPTURE",
    "RUST_TEST_TIME_UNIT",
    "RUST_TEST_TIME_INTEGRATION",
    "NO_COLOR",
    "CLICOLOR",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
    "CARGO_PKG_VERSION",
    "CARGO_CRATE_NAME",
];

/// The most the host tools a command line and its scripts run may take,
/// with their libraries: more is likelier a mistake than a need (`--file`
/// sends a tool the program needs whatever its size).
pub const TOOLS_LIMIT: u64 = 64 * MIB;

/// The most kmatrix sends to a guest of `memory_mib` MiB: three eighths
/// of its memory. Everything sent is written to the guest's root
/// filesystem, a tmpfs of half its memory (a little less: the kernel keeps
/// some), which also holds the kernel's modules and what the program
/// writes.
pub fn room(memory_mib: u32) -> u64 {
    u64::from(memory_mib) * MIB * 3 / 8
}

const MIB: u64 = 1024 * 1024;

/// `bytes` in MiB, for messages.
fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / MIB as f64;
    if mib >= 10.0 {
        format!("{mib:.0}")
    } else {
        format!("{mib:.1}")
    }
}

/// A program that cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program or a file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A program named without a `/` is on no directory of the PATH.
    #[error("{program}: no executable of that name on the PATH ({}); give its path (./{program} for one in the working directory)", path.as_deref().map_or("which is not set".into(), |p| p.to_string_lossy()))]
    NotFound {
        /// The name.
        program: String,
        /// The host's PATH.
        path: Option<std::ffi::OsString>,
    },
    /// The program is not a 64-bit ELF.
    #[error("{} is not a 64-bit ELF program: {reason}", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file that is no regular file (a FIFO, a device, a socket).
    #[error("{} is {kind}: kmatrix sends regular files only (and the files of directories given with --file); leave it out, or give the file the program needs with --file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A symbolic link to a directory, in what `--file` names.
    #[error("{} is a symbolic link to the directory {}, which --file does not follow (links can loop): give the directory itself with --file", path.display(), target.display())]
    LinkedDirectory {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// The host tools the command line and scripts run are too large.
    #[error("the host tools the command line and its scripts run take more than {} MiB with their libraries; the largest is {} ({} MiB): if the program needs it, send it with --file {}", mib(TOOLS_LIMIT), largest.display(), mib(*largest_bytes), largest.display())]
    ToolsTooLarge {
        /// The tool that takes the most.
        largest: PathBuf,
        /// Its bytes, with what it needs.
        largest_bytes: u64,
    },
    /// The program, its libraries and tools and the `--file`s do not fit
    /// in the guest.
    #[error("the program, its libraries and tools and the --file files come to more than the {} MiB a guest of --memory {memory_mib} holds (its root filesystem, where they are written, is a tmpfs of half its memory); the largest is {} ({} MiB): pass a larger --memory, or fewer --file", mib(*room), largest.display(), mib(*largest_bytes))]
    TooLarge {
        /// What the guest holds ([`room`]).
        room: u64,
        /// Its memory.
        memory_mib: u32,
        /// The largest file.
        largest: PathBuf,
        /// Its bytes.
        largest_bytes: u64,
    },
    /// The working directory does not fit in the guest besides the rest.
    #[error("the working directory {} holds more than {} MiB to share with the guest (build output and version control left out), which with the {} MiB of the program and the files it needs is more than the {} MiB a guest of --memory {memory_mib} holds (its root filesystem, where they are written, is a tmpfs of half its memory); pass --no-share (and --file for what the program needs), or a larger --memory", dir.display(), mib(*shared), mib(*other), mib(*room))]
    ShareTooLarge {
        /// The directory.
        dir: PathBuf,
        /// What it holds, at least.
        shared: u64,
        /// What the rest takes.
        other: u64,
        /// What the guest holds ([`room`]).
        room: u64,
        /// Its memory.
        memory_mib: u32,
    },
    /// A file the program needs is built for another architecture.
    #[error("{} is an {program_arch} program, but {} (which it needs) is built for {file_arch}: the guest runs one architecture; give it {program_arch} tools and libraries", program.display(), file.display())]
    MixedArch {
        /// The program.
        program: PathBuf,
        /// Its architecture.
        program_arch: Arch,
        /// The file of another architecture.
        file: PathBuf,
        /// That file's.
        file_arch: Arch,
    },
    /// A library it needs is nowhere.
    #[error("{} needs {library}, which is not in its run paths, LD_LIBRARY_PATH or the system library directories", needed_by.display())]
    MissingLibrary {
        /// The file that needs it.
        needed_by: PathBuf,
        /// The library's name.
        library: String,
    },
}

/// The files to pack (guest path = host path) and the plan to run.
#[derive(Debug)]
pub struct Prepared {
    /// Files to pack, each at its own absolute path.
    pub files: Vec<PathBuf>,
    /// What the guest runs.
    pub plan: ExecPlan,
    /// What the user should know: what the share left out.
    pub notices: Vec<String>,
}

impl Prepared {
    /// Reads the files into `parts`, each as long as it was when opened.
    pub fn pack(&self, parts: &mut ImageParts) -> Result<(), ExecError> {
        for path in &self.files {
            let (data, mode) = read_regular(path)?;
            parts.add_file(path, mode, &data);
        }
        Ok(())
    }
}

/// Prepares `argv` (the program, then its arguments) with the `extra` files
/// and the `env` names to pass through; with `share`, the working
/// directory's files too, read-only in the guest; for guests of
/// `memory_mib` MiB, which hold [`room`] bytes of files.
pub fn prepare(
    argv: &[String],
    extra: &[PathBuf],
    env: &[String],
    share: bool,
    memory_mib: u32,
) -> Result<Prepared, ExecError> {
    let program = find_program(&argv[0])?;
    let mut sent = Sent::new(memory_mib);
    // Tools the command line runs: `sh -c 'ip link'`, `timeout 5 tc …`.
    let mut tools = crate::tools::of_command(argv);
    sent.close_over(vec![program.clone()], &mut tools)?;
    sent.add_tools(tools)?;
    let arch = program_arch(&program)?;
    for file in &sent.files {
        if let Some(Ok(file_arch)) = elf_arch(file) {
            if file_arch != arch {
                return Err(ExecError::MixedArch {
                    program: program.clone(),
                    program_arch: arch,
                    file: file.clone(),
                    file_arch,
                });
            }
        }
    }
    let lib_dirs: BTreeSet<String> = sent
        .files
        .iter()
        .filter(|p| **p != program)
        .filter_map(|p| p.parent().map(|d| d.display().to_string()))
        .collect();
    for path in extra {
        let path = std::path::absolute(path).map_err(|source| ExecError::Read {
            path: path.clone(),
            source,
        })?;
        let mut given = Vec::new();
        walk_given(&path, &mut given)?;
        for (file, len) in given {
            sent.add(file.clone(), len)?;
            // An executable given with --file brings its libraries.
            if let Some(needs) = elf_arch(&file).and_then(|_| dependencies(&file).ok()) {
                sent.close_over(needs.files, &mut Vec::new())?;
            }
        }
    }
    let here = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut read_only = Vec::new();
    let mut notices = Vec::new();
    if share {
        notices = share::share(&here, &mut sent)?;
        read_only.push(here.as_os_str().as_bytes().to_vec());
    }
    let cwd = here.as_os_str().as_bytes().to_vec();
    let mut vars = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("HOME".to_owned(), "/root".to_owned()),
        ("KMATRIX_GUEST".to_owned(), "1".to_owned()),
        (
            "LD_LIBRARY_PATH".to_owned(),
            lib_dirs.into_iter().collect::<Vec<_>>().join(":"),
        ),
    ];
    let names = ENV_ALLOWED
        .iter()
        .copied()
        .chain(env.iter().map(String::as_str));
    for name in names {
        if let Ok(value) = std::env::var(name) {
            vars.push((name.to_owned(), value));
        }
    }
    let mut guest_argv = vec![program.into_os_string().into_vec()];
    guest_argv.extend(argv[1..].iter().map(|arg| arg.clone().into_bytes()));
    Ok(Prepared {
        files: sent.files.into_iter().collect(),
        plan: ExecPlan {
            argv: guest_argv,
            env: vars,
            cwd,
            read_only,
            tty: None,
        },
        notices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_brings_its_loader_and_libc() {
        let me = std::env::current_exe().unwrap().display().to_string();
        // A guest with room for this unoptimized test binary, debug info
        // and all (some 200 MB, more than a 512 MiB guest holds).
        let prepared = prepare(&[me.clone(), "--list".into()], &[], &[], false, 2048).unwrap();
        let names: Vec<String> = prepared
            .files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert!(names.iter().any(|n| n.starts_with("libc.so")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
        assert_eq!(prepared.plan.argv, [me.into_bytes(), b"--list".to_vec()]);
        assert!(prepared
            .plan
            .env
            .iter()
            .any(|(k, _)| k == "LD_LIBRARY_PATH"));
    }
}
