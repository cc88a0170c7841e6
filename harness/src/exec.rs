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

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, ExecPlan};
use object::elf::{DT_NEEDED, DT_RPATH, DT_RUNPATH, PT_INTERP};
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

use crate::image::ImageParts;

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

/// Directories never shared: version control, and build output (Cargo's
/// `target/` is marked by a `CACHEDIR.TAG`).
const NOT_SHARED: &[&str] = &[".git", ".hg", ".svn", ".jj"];

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
        notices = self::share(&here, &mut sent)?;
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
        },
        notices,
    })
}

/// The files to send, and their bytes against what the guest holds.
struct Sent {
    files: BTreeSet<PathBuf>,
    bytes: u64,
    /// The largest file, and its bytes.
    largest: (PathBuf, u64),
    /// What the guest holds ([`room`]), and its memory.
    room: u64,
    memory_mib: u32,
}

impl Sent {
    fn new(memory_mib: u32) -> Self {
        Self {
            files: BTreeSet::new(),
            bytes: 0,
            largest: (PathBuf::new(), 0),
            room: room(memory_mib),
            memory_mib,
        }
    }

    /// Whether `len` more bytes fit.
    fn fits(&self, len: u64) -> bool {
        self.bytes + len <= self.room
    }

    /// Adds the file at `path`, of `len` bytes, unless it is there.
    fn add(&mut self, path: PathBuf, len: u64) -> Result<(), ExecError> {
        if self.files.contains(&path) {
            return Ok(());
        }
        if len > self.largest.1 {
            self.largest = (path.clone(), len);
        }
        if !self.fits(len) {
            return Err(ExecError::TooLarge {
                room: self.room,
                memory_mib: self.memory_mib,
                largest: self.largest.0.clone(),
                largest_bytes: self.largest.1,
            });
        }
        self.bytes += len;
        self.files.insert(path);
        Ok(())
    }

    /// Adds `roots` and everything they need; the tools that scripts among
    /// them run go to `tools`. Returns the bytes added.
    fn close_over(
        &mut self,
        roots: Vec<PathBuf>,
        tools: &mut Vec<PathBuf>,
    ) -> Result<u64, ExecError> {
        let before = self.bytes;
        let mut pending = roots;
        while let Some(path) = pending.pop() {
            if self.files.contains(&path) {
                continue;
            }
            let (_, len) = open_regular(&path)?;
            self.add(path.clone(), len)?;
            let needs = dependencies(&path)?;
            pending.extend(needs.files);
            tools.extend(needs.tools);
        }
        Ok(self.bytes - before)
    }

    /// Adds the host `tools` a command line or script runs, with what they
    /// need, at most [`TOOLS_LIMIT`] bytes.
    fn add_tools(&mut self, mut tools: Vec<PathBuf>) -> Result<(), ExecError> {
        let mut total = 0;
        let mut largest = (PathBuf::new(), 0);
        let mut next = 0;
        while let Some(tool) = tools.get(next).cloned() {
            next += 1;
            let bytes = self.close_over(vec![tool.clone()], &mut tools)?;
            total += bytes;
            if bytes > largest.1 {
                largest = (tool, bytes);
            }
            if total > TOOLS_LIMIT {
                return Err(ExecError::ToolsTooLarge {
                    largest: largest.0,
                    largest_bytes: largest.1,
                });
            }
        }
        Ok(())
    }
}

/// The program `name` names, as a shell finds it: a name without a `/`
/// is looked up on the PATH, anything else is a path; absolute.
pub fn find_program(name: &str) -> Result<PathBuf, ExecError> {
    let found = if name.contains('/') {
        PathBuf::from(name)
    } else {
        crate::tools::which(name).ok_or_else(|| ExecError::NotFound {
            program: name.to_owned(),
            path: std::env::var_os("PATH"),
        })?
    };
    std::path::absolute(&found).map_err(|source| ExecError::Read {
        path: found,
        source,
    })
}

/// Adds the files of the directory `root` worth sharing to `sent`, as
/// long as they fit; returns notices of what was left out.
fn share(root: &Path, sent: &mut Sent) -> Result<Vec<String>, ExecError> {
    let mut share = Share {
        root,
        sent,
        bytes: 0,
        outside: Vec::new(),
        unreadable: Vec::new(),
    };
    share.walk(root)?;
    Ok(share.notices())
}

/// The walk of a shared directory.
struct Share<'a> {
    /// The directory, as the kernel resolves it.
    root: &'a Path,
    sent: &'a mut Sent,
    /// What it shares.
    bytes: u64,
    /// Symbolic links left out as they lead out of the directory, and
    /// where to.
    outside: Vec<(PathBuf, PathBuf)>,
    /// What was left out as it cannot be read, and why.
    unreadable: Vec<(PathBuf, std::io::Error)>,
}

impl Share<'_> {
    /// Shares the files below `dir`: build output and version control are
    /// left out, symbolic links to directories are not followed, a link to
    /// a file is shared as a copy of it when the file is in the directory,
    /// and what cannot be read is left out.
    fn walk(&mut self, dir: &Path) -> Result<(), ExecError> {
        if dir.join("CACHEDIR.TAG").exists() {
            return Ok(());
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.unreadable.push((dir.to_owned(), err));
                return Ok(());
            }
        };
        for entry in entries {
            let (path, kind) = match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok(found) => found,
                Err(err) => {
                    self.unreadable.push((dir.to_owned(), err));
                    continue;
                }
            };
            if kind.is_dir() {
                let name = path.file_name().unwrap_or_default();
                if !NOT_SHARED.iter().any(|n| name == OsStr::new(n)) {
                    self.walk(&path)?;
                }
                continue;
            }
            if kind.is_symlink() {
                let Some(target) = std::fs::canonicalize(&path).ok().filter(|t| t.is_file()) else {
                    continue;
                };
                if !target.starts_with(self.root) {
                    self.outside.push((path, target));
                    continue;
                }
            } else if !kind.is_file() {
                continue;
            }
            match open_regular(&path) {
                Ok((_, len)) => {
                    if !self.sent.fits(len) {
                        return Err(ExecError::ShareTooLarge {
                            dir: self.root.to_owned(),
                            shared: self.bytes + len,
                            other: self.sent.bytes - self.bytes,
                            room: self.sent.room,
                            memory_mib: self.sent.memory_mib,
                        });
                    }
                    self.bytes += len;
                    self.sent.add(path, len)?;
                }
                Err(ExecError::Read { source, .. }) => self.unreadable.push((path, source)),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// What was left out, a line per reason.
    fn notices(&self) -> Vec<String> {
        let name = |path: &Path| {
            path.strip_prefix(self.root)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        let mut notices = Vec::new();
        if !self.outside.is_empty() {
            let links = self
                .outside
                .iter()
                .map(|(link, target)| format!("{} -> {}", name(link), target.display()));
            notices.push(format!(
                "not sharing symbolic links that lead out of {}: {}",
                self.root.display(),
                listed(links)
            ));
        }
        if !self.unreadable.is_empty() {
            let files = self
                .unreadable
                .iter()
                .map(|(path, err)| format!("{} ({err})", name(path)));
            notices.push(format!(
                "not sharing what cannot be read in {}: {}; fix its permissions if the program needs it, or pass --no-share",
                self.root.display(),
                listed(files)
            ));
        }
        notices
    }
}

/// The first few of `items`, and how many in all if there are more.
fn listed(items: impl ExactSizeIterator<Item = String>) -> String {
    const SHOWN: usize = 5;
    let count = items.len();
    let mut text = items.take(SHOWN).collect::<Vec<_>>().join(", ");
    if count > SHOWN {
        text += &format!(", … ({count} in all)");
    }
    text
}

/// Every regular file below `path` (or `path` itself), given with
/// `--file`, and its length: symbolic links to files are followed, to directories not, and
/// anything else is an error naming it.
fn walk_given(path: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<(), ExecError> {
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let mut meta = std::fs::symlink_metadata(path).map_err(read)?;
    if meta.is_symlink() {
        meta = std::fs::metadata(path).map_err(read)?;
        if meta.is_dir() {
            return Err(ExecError::LinkedDirectory {
                path: path.to_owned(),
                target: std::fs::read_link(path).map_err(read)?,
            });
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read)? {
            walk_given(&entry.map_err(read)?.path(), files)?;
        }
    } else if meta.is_file() {
        files.push((path.to_owned(), meta.len()));
    } else {
        return Err(ExecError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(())
}

/// What a file that is no regular file is, for errors.
fn kind_of(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "no regular file"
    }
}

/// Opens `path` (following symbolic links) if it is a regular file,
/// without blocking on a FIFO: its file and length.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), ExecError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(ExecError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of the regular file at `path`, as long as it was when opened,
/// and its permission bits.
pub fn read_regular(path: &Path) -> Result<(Vec<u8>, u32), ExecError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let (file, len) = open_regular(path)?;
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = file.metadata().map_err(read)?.permissions().mode() & 0o7777;
    let mut data = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut data).map_err(read)?;
    Ok((data, mode))
}

/// What a file needs besides itself.
struct Needs {
    /// Files that must come with it: an ELF file's interpreter and
    /// libraries, a script's interpreter.
    files: Vec<PathBuf>,
    /// The host tools a script runs.
    tools: Vec<PathBuf>,
}

/// The architecture of the ELF file at `path`, if it is one
/// (`Err(e_machine)` for one kmatrix does not boot).
fn elf_arch(path: &Path) -> Option<Result<Arch, u16>> {
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
fn dependencies(path: &Path) -> Result<Needs, ExecError> {
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
    use super::*;

    #[test]
    fn a_dynamic_program_brings_its_loader_and_libc() {
        let me = std::env::current_exe().unwrap().display().to_string();
        let prepared = prepare(&[me.clone(), "--list".into()], &[], &[], false, 512).unwrap();
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

    #[test]
    fn a_program_without_a_slash_is_found_on_the_path() {
        let argv = ["sh".to_owned(), "-c".to_owned(), "uname -r".to_owned()];
        let prepared = prepare(&argv, &[], &[], false, 512).unwrap();
        let sh = Path::new(OsStr::from_bytes(&prepared.plan.argv[0]));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(prepared.files.contains(&sh.to_path_buf()));
        assert!(
            prepared.files.iter().any(|f| f.ends_with("uname")),
            "{:?}",
            prepared.files
        );
        let err = prepare(&["no-such-program-anywhere".into()], &[], &[], false, 512).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no-such-program-anywhere") && text.contains("PATH"),
            "{text}"
        );
    }

    /// [`prepare`] of `/bin/true` with `extra`, failing the test if it
    /// blocks.
    fn prepare_with(extra: &[PathBuf]) -> Result<Prepared, ExecError> {
        let extra = extra.to_vec();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(prepare(&["/bin/true".into()], &extra, &[], false, 512));
        });
        result
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("preparing blocked")
    }

    #[test]
    fn a_file_given_is_a_regular_file_or_a_directory_and_links_to_directories_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given");
        std::fs::create_dir(&given).unwrap();
        std::fs::write(given.join("data"), "data").unwrap();
        std::os::unix::fs::symlink(given.join("data"), given.join("link")).unwrap();
        let prepared = prepare_with(std::slice::from_ref(&given)).unwrap();
        assert!(prepared.files.contains(&given.join("data")));
        assert!(prepared.files.contains(&given.join("link")));

        std::os::unix::fs::symlink(&given, given.join("loop")).unwrap();
        let err = prepare_with(std::slice::from_ref(&given))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{} is a symbolic link to the directory",
                given.join("loop").display()
            )),
            "{err}"
        );
        std::fs::remove_file(given.join("loop")).unwrap();

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = prepare_with(std::slice::from_ref(&fifo))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} is a FIFO", fifo.display())),
            "{err}"
        );

        let err = prepare_with(&["/dev/zero".into()]).unwrap_err().to_string();
        assert!(err.contains("/dev/zero is a character device"), "{err}");
    }

    #[test]
    fn only_commands_bring_tools_and_tools_are_capped() {
        let argv = |script: &str| ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let prepared = prepare(&argv("true # needs uname"), &[], &[], false, 512).unwrap();
        assert!(
            !prepared.files.iter().any(|f| f.ends_with("uname")),
            "{:?}",
            prepared.files
        );

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big-tool");
        std::fs::write(&big, "#!/bin/sh\n").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        file.set_len(TOOLS_LIMIT + 1).unwrap();
        std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = prepare(
            &argv(&format!("uname; {}", big.display())),
            &[],
            &[],
            false,
            512,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("the largest is {} (64 MiB)", big.display())),
            "{err}"
        );
        assert!(err.contains(&format!("--file {}", big.display())), "{err}");
    }

    /// Runs `f` on a thread without the capabilities that let root read
    /// any file (capabilities are a thread's own), so that a file of mode
    /// 000 cannot be read there by anyone.
    fn without_read_override<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const CAP_DAC_OVERRIDE: u32 = 1;
        const CAP_DAC_READ_SEARCH: u32 = 2;
        std::thread::spawn(move || {
            let mut header = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut data = [Data::default(); 2];
            // SAFETY: capget and capset with a version 3 header and its two
            // data words, as capget(2) gives them; pid 0 is this thread.
            unsafe {
                let got = nix::libc::syscall(nix::libc::SYS_capget, &mut header, data.as_mut_ptr());
                assert_eq!(got, 0);
                data[0].effective &= !(1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH);
                let set = nix::libc::syscall(nix::libc::SYS_capset, &mut header, data.as_ptr());
                assert_eq!(set, 0);
            }
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn the_share_leaves_out_links_leading_out_and_what_cannot_be_read_with_notices() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let outer = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(outer.path()).unwrap().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        symlink(root.join("a.txt"), root.join("inside")).unwrap();
        let secret = root.parent().unwrap().join("secret");
        std::fs::write(&secret, "not to be shared").unwrap();
        symlink(&secret, root.join("outside")).unwrap();
        std::fs::write(root.join("locked"), "").unwrap();
        std::fs::set_permissions(root.join("locked"), PermissionsExt::from_mode(0o000)).unwrap();

        let (files, notices) = without_read_override({
            let root = root.clone();
            move || {
                let mut sent = Sent::new(512);
                let notices = share(&root, &mut sent).unwrap();
                (sent.files, notices)
            }
        });
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            [root.join("a.txt"), root.join("inside")]
        );
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(
            notices[0],
            format!(
                "not sharing symbolic links that lead out of {}: outside -> {}",
                root.display(),
                secret.display()
            )
        );
        assert!(
            notices[1].starts_with(&format!(
                "not sharing what cannot be read in {}: locked (Permission denied",
                root.display()
            )) && notices[1].ends_with("or pass --no-share"),
            "{}",
            notices[1]
        );
    }

    #[test]
    fn what_is_sent_fits_in_the_guest() {
        assert_eq!(room(512), 192 * MIB);
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(4 * MIB)
            .unwrap();
        let argv = ["/bin/true".to_owned()];
        let err = prepare(&argv, std::slice::from_ref(&big), &[], false, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("more than the 3.0 MiB a guest of --memory 8 holds"),
            "{err}"
        );
        assert!(
            err.contains(&format!("the largest is {} (4.0 MiB)", big.display())),
            "{err}"
        );

        let root = dir.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::File::create(root.join("data"))
            .unwrap()
            .set_len(2 * MIB)
            .unwrap();
        let mut sent = Sent::new(4);
        sent.add(big, MIB).unwrap();
        let err = share(&root, &mut sent).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "the working directory {} holds more than 2.0 MiB to share with the guest",
                root.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("with the 1.0 MiB of the program and the files it needs is more than the 1.5 MiB a guest of --memory 4 holds"),
            "{err}"
        );
        assert!(err.contains("pass --no-share"), "{err}");
    }

    #[test]
    fn file_names_that_are_not_utf8_reach_the_guest_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let names: [&[u8]; 2] = [b"a\xff", b"a\xfe"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(root.join(OsStr::from_bytes(name)), [i as u8]).unwrap();
        }
        let mut sent = Sent::new(512);
        share(&root, &mut sent).unwrap();
        let prepared = Prepared {
            files: sent.files.into_iter().collect(),
            plan: ExecPlan::default(),
            notices: Vec::new(),
        };
        let mut parts = ImageParts::new(crate::agent::Init::Agent, &[], &[]).unwrap();
        prepared.pack(&mut parts).unwrap();
        let files = parts.files();
        let mut reader = &files[..];
        let mut received = Vec::new();
        while !reader.is_empty() {
            let kmatrix_protocol::Input::File { path, len, .. } =
                kmatrix_protocol::input::read_input(&mut reader).unwrap()
            else {
                panic!("not a file");
            };
            let (data, rest) = reader.split_at(len as usize);
            received.push((path, data.to_vec()));
            reader = rest;
        }
        received.sort();
        let expected = |i: usize| {
            let mut path = root.as_os_str().as_bytes().to_vec();
            path.push(b'/');
            path.extend_from_slice(names[i]);
            (path, vec![i as u8])
        };
        assert_eq!(received, [expected(1), expected(0)]);
    }

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
