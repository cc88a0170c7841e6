//! The eBPF objects under test: checked on the host before any VM boots.
//!
//! An input is a compiled object (`.o`) or a C source (`.c`), which is built
//! with clang the way libbpf projects build theirs.

use std::path::{Path, PathBuf};
use std::process::Command;

use kmatrix_protocol::kind;
use kmatrix_protocol::TestRunKind;
use object::{Architecture, Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

/// One object, read and checked.
#[derive(Clone, Debug)]
pub struct TestObject {
    /// The path the user gave.
    pub path: PathBuf,
    /// How reports name it: the file name, or the path when names clash.
    pub name: String,
    /// The object's bytes.
    pub data: Vec<u8>,
    /// Its programs, sorted by name.
    pub programs: Vec<ProgramInfo>,
    /// Its maps, sorted by name (by name only, type and sizes 0, when
    /// aya-obj cannot read the object), sized as the suite sizes them once
    /// its settings are checked.
    pub maps: Vec<MapInfo>,
    /// Its global variables, sorted by name.
    pub globals: Vec<GlobalInfo>,
    /// Why aya-obj cannot read it, if it cannot (libbpf may).
    pub aya_error: Option<String>,
}

/// A global variable of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalInfo {
    /// Its name.
    pub name: String,
    /// Its section (`.rodata`, `.rodata.cfg`, `.data`, `.bss`).
    pub section: String,
    /// Its size in bytes.
    pub size: u32,
}

/// A program of an object, as the host sees it before loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    /// The program's name.
    pub name: String,
    /// Its kind, from its section (`xdp`, `classifier`, `kprobe`, …).
    pub kind: String,
    /// Its ELF section (`xdp`, `tc`, `fentry/bpf_fentry_test1`).
    pub section: String,
    /// How `BPF_PROG_TEST_RUN` runs it, if it can with packet data.
    pub test_run: Option<TestRunKind>,
    /// Whether its symbol is local (`static`): libbpf refuses such entry
    /// programs, aya and cilium/ebpf load them.
    pub is_static: bool,
}

/// A map of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The map's name.
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Whether its value is declared as a BTF type (`__type(value, T)`),
    /// whose size is then the value size.
    pub typed_value: bool,
    /// Its `max_entries`.
    pub max_entries: u32,
}

impl TestObject {
    /// The program named `name`.
    pub fn program(&self, name: &str) -> Option<&ProgramInfo> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Option<&MapInfo> {
        self.maps.iter().find(|m| m.name == name)
    }
}

/// An input that cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The file is not there or not readable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an eBPF ELF object.
    #[error("{} is not an eBPF object: {reason}", path.display())]
    NotEbpf {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// clang is needed for a `.c` input but is missing.
    #[error("{} is C source, and building it needs clang: install it (apt-get install clang libbpf-dev) or pass a compiled .o", path.display())]
    NoClang {
        /// The source.
        path: PathBuf,
    },
    /// clang failed.
    #[error("clang could not build {}:\n{stderr}", path.display())]
    Compile {
        /// The source.
        path: PathBuf,
        /// What clang said.
        stderr: String,
    },
}

/// Reads, checks and (for C sources) builds the inputs; `scratch` receives
/// the built objects.
pub fn load(paths: &[PathBuf], scratch: &Path) -> Result<Vec<TestObject>, ObjectError> {
    // C sources are built all at once (clang is most of a warm run's own
    // time); errors are reported in the order the paths were given.
    let built: Vec<Result<Vec<u8>, ObjectError>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(index, path)| {
                scope.spawn(move || {
                    if path.extension().is_some_and(|e| e == "c") {
                        compile(path, &scratch.join(format!("{index}.o")))
                    } else {
                        std::fs::read(path).map_err(|source| ObjectError::Read {
                            path: path.clone(),
                            source,
                        })
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|job| job.join().expect("reading an object does not panic"))
            .collect()
    });
    let mut objects = Vec::with_capacity(paths.len());
    for (path, data) in paths.iter().zip(built) {
        let data = data?;
        let inspected = inspect(&data).map_err(|reason| ObjectError::NotEbpf {
            path: path.clone(),
            reason,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        objects.push(TestObject {
            path: path.clone(),
            name,
            data,
            programs: inspected.programs,
            maps: inspected.maps,
            globals: inspected.globals,
            aya_error: inspected.aya_error,
        });
    }
    // Two inputs with one file name are told apart by their paths.
    for i in 0..objects.len() {
        if objects.iter().filter(|o| o.name == objects[i].name).count() > 1 {
            objects[i].name = objects[i].path.display().to_string();
        }
    }
    Ok(objects)
}

/// What an object holds, as read by the `object` crate (programs,
/// globals) and, where it can, by aya-obj (maps, with types and sizes).
struct Inspected {
    programs: Vec<ProgramInfo>,
    maps: Vec<MapInfo>,
    globals: Vec<GlobalInfo>,
    aya_error: Option<String>,
}

/// The programs, maps and globals of an eBPF object. Programs are the
/// functions, global or static, of executable sections other than `.text`
/// (as libbpf and cilium/ebpf see them), their kinds named as libbpf names
/// sections; an object aya-obj cannot read (a section it does not know) is
/// still tested, and its maps are then known by name only.
fn inspect(data: &[u8]) -> Result<Inspected, String> {
    let elf = object::File::parse(data).map_err(|e| format!("not an ELF file ({e})"))?;
    if elf.architecture() != Architecture::Bpf {
        return Err(format!(
            "an ELF file for {:?}, not for BPF; build it with `clang -target bpf`",
            elf.architecture()
        ));
    }
    let mut programs = Vec::new();
    let mut globals = Vec::new();
    let mut elf_maps = Vec::new();
    for symbol in elf.symbols() {
        let (Ok(name), Some(section)) = (
            symbol.name(),
            symbol
                .section_index()
                .and_then(|i| elf.section_by_index(i).ok()),
        ) else {
            continue;
        };
        let section_name = section.name().unwrap_or_default();
        match symbol.kind() {
            SymbolKind::Text if section_name != ".text" && is_executable(&section) => {
                let kind = kind::of_section(section_name).unwrap_or(section_name);
                programs.push(ProgramInfo {
                    name: name.to_owned(),
                    kind: kind.to_owned(),
                    section: section_name.to_owned(),
                    test_run: kind::test_run(kind),
                    is_static: !symbol.is_global(),
                });
            }
            SymbolKind::Data
                if [".rodata", ".data", ".bss"]
                    .iter()
                    .any(|p| section_name.starts_with(p)) =>
            {
                globals.push(GlobalInfo {
                    name: name.to_owned(),
                    section: section_name.to_owned(),
                    size: symbol.size() as u32,
                });
            }
            _ if section_name == ".maps" || section_name == "maps" => {
                elf_maps.push(MapInfo {
                    name: name.to_owned(),
                    map_type: 0,
                    key_size: 0,
                    value_size: 0,
                    typed_value: false,
                    max_entries: 0,
                });
            }
            _ => {}
        }
    }
    if programs.is_empty() {
        return Err(
            "it has no programs (no functions in program sections such as `xdp` or `kprobe/…`)"
                .into(),
        );
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    globals.sort_by(|a, b| a.name.cmp(&b.name));
    let (mut maps, aya_error) = match aya_obj::Object::parse(data) {
        Ok(parsed) => (
            parsed
                .maps
                .iter()
                .filter(|(name, _)| !name.starts_with('.'))
                .map(|(name, map)| MapInfo {
                    name: name.clone(),
                    map_type: map.map_type(),
                    key_size: map.key_size(),
                    value_size: map.value_size(),
                    typed_value: matches!(map, aya_obj::Map::Btf(m) if m.def.btf_value_type_id != 0),
                    max_entries: map.max_entries(),
                })
                .collect(),
            None,
        ),
        Err(err) => (elf_maps, Some(err.to_string())),
    };
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Inspected {
        programs,
        maps,
        globals,
        aya_error,
    })
}

/// Whether `section` holds instructions (`SHF_EXECINSTR`).
fn is_executable(section: &object::Section<'_, '_>) -> bool {
    matches!(section.flags(), object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0)
}

/// Builds a C source with clang as libbpf projects do.
fn compile(source: &Path, output: &Path) -> Result<Vec<u8>, ObjectError> {
    if !source.exists() {
        return Err(ObjectError::Read {
            path: source.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let result = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-c"])
        .arg(format!("-I{multiarch}"))
        .arg(source)
        .arg("-o")
        .arg(output)
        .output();
    let out = match result {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ObjectError::NoClang {
                path: source.to_owned(),
            })
        }
        Err(source_err) => {
            return Err(ObjectError::Read {
                path: source.to_owned(),
                source: source_err,
            })
        }
    };
    if !out.status.success() {
        return Err(ObjectError::Compile {
            path: source.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        });
    }
    std::fs::read(output).map_err(|source| ObjectError::Read {
        path: output.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_one(name: &str, data: &[u8]) -> Result<Vec<TestObject>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        load(&[path], dir.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(&["/nonexistent/probe.bpf.o".into()], Path::new("/tmp")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/probe.bpf.o:"),
            "{err}"
        );
    }

    #[test]
    fn a_non_elf_file_is_refused() {
        let err = load_one("notes.o", b"just text").unwrap_err();
        assert!(
            err.contains("notes.o is not an eBPF object: not an ELF file"),
            "{err}"
        );
    }

    #[test]
    fn a_host_elf_is_refused_with_the_fix() {
        let host = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = load_one("host.o", &host).unwrap_err();
        assert!(
            err.contains("not for BPF; build it with `clang -target bpf`"),
            "{err}"
        );
    }
}
