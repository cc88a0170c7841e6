//! Rewrites of an eBPF ELF object that change what a loader sees of it and
//! nothing the kernel gets. Both patch bytes in place: the object keeps its
//! size, its layout and every instruction.
//!
//! [`isolate`] narrows aya's view to one program. aya-obj 0.3 parses every
//! program of an object and relocates them all at once (`relocate_btf`,
//! `relocate_maps`, `relocate_calls` over every function), so a program aya
//! cannot relocate fails each of its siblings, and a sibling in a section
//! aya does not know fails the whole object. In the isolated object:
//!
//! - a program section holding only siblings loses `SHF_EXECINSTR`: aya-obj
//!   takes such a section for one it has no use for, so it neither parses
//!   its name nor makes programs, functions or relocations of it;
//! - a sibling sharing the program's section becomes `STT_NOTYPE`: aya-obj
//!   makes programs of `STT_FUNC` symbols only, and skips the relocations
//!   outside the functions it made;
//! - `.BTF.ext` keeps the CO-RE records of the program and of the `.text`
//!   functions it reaches, and drops the others (aya-obj relocates every
//!   function it parsed, reached or not, and fails on a record whose
//!   function it did not parse).
//!
//! What aya gives the kernel for the program comes from its own
//! instructions, the functions it reaches, the maps (all still created), the
//! object's BTF and the program's func and line info, none of which
//! changes; its CO-RE records are applied in their order as before.
//!
//! [`globalize_static_programs`] is for libbpf, which refuses `static`
//! entry programs.

use std::collections::{HashMap, HashSet};
use std::fmt;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{Endian, Endianness};

type Header = elf::FileHeader64<Endianness>;

/// Why an object could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsolateError {
    /// Not a 64-bit eBPF ELF object, or one whose tables do not read.
    Elf(String),
    /// No program of that name.
    UnknownProgram(String),
    /// Several programs of that name.
    AmbiguousProgram(String),
    /// The program, or a `.text` function, refers to a sibling's code,
    /// which aya would link in as a function.
    RefersToSibling { program: String, sibling: String },
    /// `.BTF` or `.BTF.ext` is malformed.
    Btf(&'static str),
}

impl fmt::Display for IsolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(error) => write!(f, "not a 64-bit eBPF ELF object: {error}"),
            Self::UnknownProgram(name) => write!(f, "the object has no program `{name}`"),
            Self::AmbiguousProgram(name) => {
                write!(f, "the object has several programs named `{name}`")
            }
            Self::RefersToSibling { program, sibling } => write!(
                f,
                "the code of `{program}` refers to the code of program `{sibling}`"
            ),
            Self::Btf(error) => write!(f, "malformed BTF: {error}"),
        }
    }
}

impl std::error::Error for IsolateError {}

/// `object`'s error, as this module's.
fn elf_error(error: object::Error) -> IsolateError {
    IsolateError::Elf(error.to_string())
}

/// Returns `data` with `program` the only program aya-obj 0.3 parses,
/// relocates and loads, with its subprograms, every map and its own
/// relocations (see the module's documentation).
pub fn isolate(data: &[u8], program: &str) -> Result<Vec<u8>, IsolateError> {
    let elf = Elf::parse(data)?;
    let programs = elf.programs();
    let target = match programs
        .iter()
        .filter(|&&i| elf.symbols[i].name == program)
        .collect::<Vec<_>>()[..]
    {
        [&target] => elf.function(target),
        [] => return Err(IsolateError::UnknownProgram(program.to_owned())),
        _ => return Err(IsolateError::AmbiguousProgram(program.to_owned())),
    };
    let reached = elf.reached(target, program)?;

    let mut out = data.to_vec();
    for (index, section) in elf.sections.iter().enumerate() {
        if index != target.section && elf.is_program_section(index) {
            let at = elf.section_header_offset(index) + SH_FLAGS;
            let flags = section.flags & !u64::from(elf::SHF_EXECINSTR);
            out[at..at + 8].copy_from_slice(&elf.endian.write_u64_bytes(flags));
        }
    }
    for &index in &programs {
        let symbol = &elf.symbols[index];
        if index != target.symbol && symbol.section == target.section {
            let at = elf.symbol_offset(index) + ST_INFO;
            out[at] = (symbol.bind << 4) | elf::STT_NOTYPE;
        }
    }
    elf.keep_core_relocations(&mut out, |section, offset| {
        if section == target.section {
            target.contains(offset)
        } else if elf.is_text_section(section) {
            reached
                .iter()
                .any(|f| f.section == section && f.contains(offset))
        } else {
            !elf.is_program_section(section)
        }
    })?;
    Ok(out)
}

/// The programs aya-obj 0.3 finds in `data`, as (name, section) pairs, in
/// symbol table order.
pub fn programs(data: &[u8]) -> Result<Vec<(String, String)>, IsolateError> {
    let elf = Elf::parse(data)?;
    Ok(elf
        .programs()
        .into_iter()
        .map(|i| {
            let symbol = &elf.symbols[i];
            let section = elf.sections[symbol.section].name;
            (symbol.name.to_owned(), section.to_owned())
        })
        .collect())
}

/// An object whose static entry programs are global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globalized {
    /// The rewritten object.
    pub object: Vec<u8>,
    /// The programs made global, in symbol table order.
    pub programs: Vec<String>,
}

/// Makes every `STB_LOCAL` function symbol of an executable section other
/// than `.text` (an entry program for libbpf) `STB_GLOBAL`. libbpf 1.7
/// refuses static entry programs ("program '…' is static and not
/// supported"); the binding is all that changes, and nothing the kernel
/// gets depends on it (the program's BTF keeps its static linkage).
pub fn globalize_static_programs(data: &[u8]) -> Result<Globalized, IsolateError> {
    let elf = Elf::parse(data)?;
    let mut out = data.to_vec();
    let mut programs = Vec::new();
    for (index, symbol) in elf.symbols.iter().enumerate() {
        let Some(section) = elf.sections.get(symbol.section) else {
            continue;
        };
        if symbol.kind == elf::STT_FUNC
            && symbol.bind == elf::STB_LOCAL
            && symbol.section != 0
            && section.flags & u64::from(elf::SHF_EXECINSTR) != 0
            && section.name != ".text"
        {
            let at = elf.symbol_offset(index) + ST_INFO;
            out[at] = (elf::STB_GLOBAL << 4) | symbol.kind;
            programs.push(symbol.name.to_owned());
        }
    }
    Ok(Globalized {
        object: out,
        programs,
    })
}

/// Where `sh_flags` is in an ELF64 section header.
const SH_FLAGS: usize = 8;
/// Where `st_info` is in an ELF64 symbol.
const ST_INFO: usize = 4;
/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_LD | BPF_IMM | BPF_DW`: a 64-bit immediate load.
const LD_IMM64: u8 = 0x18;
/// A call's source register when it calls a function of the object.
const PSEUDO_CALL: u8 = 1;
/// Size of an instruction.
const INSN: u64 = 8;

/// The parts of the object the rewrites read.
pub(crate) struct Elf<'a> {
    data: &'a [u8],
    pub(crate) endian: Endianness,
    section_headers: usize,
    pub(crate) sections: Vec<Section<'a>>,
    symbol_table: usize,
    pub(crate) symbols: Vec<Symbol<'a>>,
    /// Per section, the symbol each relocated offset refers to.
    relocations: HashMap<usize, HashMap<u64, usize>>,
}

pub(crate) struct Section<'a> {
    pub(crate) name: &'a str,
    kind: u32,
    flags: u64,
    offset: u64,
    size: u64,
}

pub(crate) struct Symbol<'a> {
    pub(crate) name: &'a str,
    kind: u8,
    bind: u8,
    /// Its section's index; 0 for none (undefined, absolute, common).
    pub(crate) section: usize,
    pub(crate) value: u64,
    pub(crate) size: u64,
}

/// A function's code: `size` bytes at `start` in section `section`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Function {
    symbol: usize,
    section: usize,
    start: u64,
    size: u64,
}

impl Function {
    fn contains(&self, offset: u64) -> bool {
        offset >= self.start && offset - self.start < self.size
    }
}

impl<'a> Elf<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, IsolateError> {
        let header = Header::parse(data).map_err(elf_error)?;
        let endian = header.endian().map_err(elf_error)?;
        if header.e_machine(endian) != elf::EM_BPF {
            return Err(IsolateError::Elf("its machine is not BPF".into()));
        }
        if usize::from(header.e_shentsize(endian)) != size_of::<elf::SectionHeader64<Endianness>>()
        {
            return Err(IsolateError::Elf("unexpected section header size".into()));
        }
        let table = header.sections(endian, data).map_err(elf_error)?;
        let sections = table
            .iter()
            .map(|section| Section {
                name: table
                    .section_name(endian, section)
                    .ok()
                    .and_then(|name| std::str::from_utf8(name).ok())
                    .unwrap_or_default(),
                kind: section.sh_type(endian),
                flags: section.sh_flags(endian),
                offset: section.sh_offset(endian),
                size: section.sh_size(endian),
            })
            .collect::<Vec<_>>();
        let symtab = table
            .symbols(endian, data, elf::SHT_SYMTAB)
            .map_err(elf_error)?;
        let symbol_table = sections
            .get(symtab.section().0)
            .map_or(0, |section| section.offset as usize);
        let symbols = symtab
            .symbols()
            .iter()
            .map(|symbol| {
                let section = symbol.st_shndx(endian);
                Symbol {
                    name: symtab
                        .symbol_name(endian, symbol)
                        .ok()
                        .and_then(|name| std::str::from_utf8(name).ok())
                        .unwrap_or_default(),
                    kind: symbol.st_type(),
                    bind: symbol.st_bind(),
                    section: if section < elf::SHN_LORESERVE {
                        usize::from(section)
                    } else {
                        0
                    },
                    value: symbol.st_value(endian),
                    size: symbol.st_size(endian),
                }
            })
            .collect();
        let mut relocations: HashMap<usize, HashMap<u64, usize>> = HashMap::new();
        for section in table.iter() {
            let target = section.sh_info(endian) as usize;
            if let Some((rels, _)) = section.rel(endian, data).map_err(elf_error)? {
                let at = relocations.entry(target).or_default();
                for rel in rels {
                    at.insert(rel.r_offset.get(endian), rel.r_sym(endian) as usize);
                }
            } else if let Some((relas, _)) = section.rela(endian, data).map_err(elf_error)? {
                let at = relocations.entry(target).or_default();
                for rela in relas {
                    at.insert(
                        rela.r_offset.get(endian),
                        rela.r_sym(endian, false) as usize,
                    );
                }
            }
        }
        Ok(Self {
            data,
            endian,
            section_headers: header.e_shoff(endian) as usize,
            sections,
            symbol_table,
            symbols,
            relocations,
        })
    }

    pub(crate) fn section_header_offset(&self, index: usize) -> usize {
        self.section_headers + index * size_of::<elf::SectionHeader64<Endianness>>()
    }

    fn symbol_offset(&self, index: usize) -> usize {
        self.symbol_table + index * size_of::<elf::Sym64<Endianness>>()
    }

    /// Whether aya-obj 0.3 takes section `index` for a program section: an
    /// executable one of code whose name is none of the names it knows.
    fn is_program_section(&self, index: usize) -> bool {
        const KNOWN: [&str; 8] = [
            "license", "version", "maps", ".maps", ".text", ".bss", ".data", ".rodata",
        ];
        let Some(section) = self.sections.get(index) else {
            return false;
        };
        let code = u64::from(elf::SHF_ALLOC | elf::SHF_EXECINSTR);
        section.kind == elf::SHT_PROGBITS
            && section.flags & code == code
            && section.size > 0
            && !KNOWN.iter().any(|known| section.name.starts_with(known))
            && section.name != ".BTF"
            && section.name != ".BTF.ext"
    }

    /// Whether aya-obj 0.3 takes section `index` for one of subprograms
    /// (`.text`, `.text.*`).
    fn is_text_section(&self, index: usize) -> bool {
        self.sections
            .get(index)
            .is_some_and(|section| section.name.starts_with(".text"))
    }

    /// The programs as aya-obj 0.3 lists them: the named function symbols
    /// of program sections.
    fn programs(&self) -> Vec<usize> {
        (0..self.symbols.len())
            .filter(|&i| {
                let symbol = &self.symbols[i];
                is_function(symbol.kind)
                    && !symbol.name.is_empty()
                    && self.is_program_section(symbol.section)
            })
            .collect()
    }

    fn function(&self, symbol: usize) -> Function {
        let s = &self.symbols[symbol];
        Function {
            symbol,
            section: s.section,
            start: s.value,
            size: s.size,
        }
    }

    /// The `.text` functions `target` reaches. Fails when the program or
    /// any `.text` function refers to another program's code.
    fn reached(&self, target: Function, program: &str) -> Result<Vec<Function>, IsolateError> {
        let text: HashMap<(usize, u64), Function> = (0..self.symbols.len())
            .filter(|&i| {
                is_function(self.symbols[i].kind) && self.is_text_section(self.symbols[i].section)
            })
            .map(|i| {
                let f = self.function(i);
                ((f.section, f.start), f)
            })
            .collect();
        let sibling_check = |(section, offset): (usize, u64)| {
            if !self.is_program_section(section)
                || (section == target.section && target.contains(offset))
            {
                return Ok(());
            }
            let sibling = self
                .programs()
                .into_iter()
                .map(|i| self.function(i))
                .find(|f| f.section == section && f.contains(offset))
                .map_or(self.sections[section].name, |f| self.symbols[f.symbol].name);
            Err(IsolateError::RefersToSibling {
                program: program.to_owned(),
                sibling: sibling.to_owned(),
            })
        };
        for (index, section) in self.sections.iter().enumerate() {
            if self.is_text_section(index) {
                for destination in self.destinations(index, 0, section.size)? {
                    sibling_check(destination)?;
                }
            }
        }
        let mut reached = Vec::new();
        let mut seen = HashSet::new();
        let mut next = vec![target];
        while let Some(function) = next.pop() {
            for destination in self.destinations(function.section, function.start, function.size)? {
                sibling_check(destination)?;
                if let Some(&callee) = text.get(&destination) {
                    if seen.insert(callee) {
                        reached.push(callee);
                        next.push(callee);
                    }
                }
            }
        }
        Ok(reached)
    }

    /// The code that the `size` bytes at `start` of section `section` call
    /// or load the address of, as aya-obj 0.3 resolves it: (section,
    /// offset) pairs.
    fn destinations(
        &self,
        section: usize,
        start: u64,
        size: u64,
    ) -> Result<Vec<(usize, u64)>, IsolateError> {
        let s = &self.sections[section];
        let code = usize::try_from(s.offset)
            .ok()
            .and_then(|offset| {
                self.data
                    .get(offset..)?
                    .get(..usize::try_from(s.size).ok()?)
            })
            .and_then(|code| {
                code.get(usize::try_from(start).ok()?..)?
                    .get(..usize::try_from(size).ok()?)
            })
            .ok_or_else(|| IsolateError::Elf(format!("section `{}` is out of bounds", s.name)))?;
        let relocations = self.relocations.get(&section);
        let mut destinations = Vec::new();
        for (i, insn) in code.chunks_exact(INSN as usize).enumerate() {
            let offset = start + i as u64 * INSN;
            let source = match self.endian {
                Endianness::Little => insn[1] >> 4,
                Endianness::Big => insn[1] & 0xf,
            };
            let call = insn[0] == CALL && source == PSEUDO_CALL;
            let imm = i64::from(
                self.endian
                    .read_i32_bytes(insn[4..8].try_into().expect("4 bytes")),
            );
            let symbol = relocations
                .and_then(|r| r.get(&offset))
                .and_then(|&s| self.symbols.get(s));
            let destination = match symbol {
                Some(symbol)
                    if self.is_program_section(symbol.section)
                        || self.is_text_section(symbol.section) =>
                {
                    let base = symbol.value as i64;
                    let at = match symbol.kind {
                        kind if is_function(kind) => base,
                        elf::STT_SECTION if call => base.wrapping_add((imm + 1) * INSN as i64),
                        elf::STT_SECTION if insn[0] == LD_IMM64 => base.wrapping_add(imm),
                        _ => continue,
                    };
                    (symbol.section, at)
                }
                Some(_) => continue,
                None if call => (
                    section,
                    (offset as i64).wrapping_add((imm + 1) * INSN as i64),
                ),
                None => continue,
            };
            if let Ok(at) = u64::try_from(destination.1) {
                destinations.push((destination.0, at));
            }
        }
        Ok(destinations)
    }

    /// Rewrites `.BTF.ext`'s CO-RE records in `out`, keeping those for
    /// which `keep(section, instruction offset)` holds, in their order;
    /// the section's freed tail is zeroed.
    fn keep_core_relocations(
        &self,
        out: &mut [u8],
        mut keep: impl FnMut(usize, u64) -> bool,
    ) -> Result<(), IsolateError> {
        let (Some(btf), Some(ext)) = (self.section_data(".BTF"), self.section_data(".BTF.ext"))
        else {
            return Ok(());
        };
        let (ext_at, ext) = ext;
        let u32_at = |data: &[u8], at: usize| -> Result<u32, IsolateError> {
            data.get(at..at + 4)
                .map(|b| self.endian.read_u32_bytes(b.try_into().expect("4 bytes")))
                .ok_or(IsolateError::Btf("truncated"))
        };
        let header_len = u32_at(ext, 4)? as usize;
        if header_len < 32 {
            return Ok(());
        }
        let start = header_len + u32_at(ext, 24)? as usize;
        let len = u32_at(ext, 28)? as usize;
        if len == 0 {
            return Ok(());
        }
        let relos = ext
            .get(start..start + len)
            .ok_or(IsolateError::Btf("CO-RE records out of bounds"))?;
        let record = u32_at(relos, 0)? as usize;
        if record < 4 {
            return Err(IsolateError::Btf("CO-RE record size"));
        }
        let (_, btf) = btf;
        let strings = u32_at(btf, 4)? as usize + u32_at(btf, 16)? as usize;
        let section_of = |name: u32| -> Option<usize> {
            let name = btf.get(strings + name as usize..)?;
            let name = &name[..name.iter().position(|&b| b == 0)?];
            self.sections
                .iter()
                .position(|section| section.name.as_bytes() == name)
        };

        let mut kept = Vec::with_capacity(len);
        kept.extend_from_slice(&relos[..4]);
        let mut at = 4;
        while at + 8 <= len {
            let name = u32_at(relos, at)?;
            let count = u32_at(relos, at + 4)? as usize;
            let records = count
                .checked_mul(record)
                .and_then(|size| relos.get(at + 8..)?.get(..size))
                .ok_or(IsolateError::Btf("CO-RE records out of bounds"))?;
            at += 8 + records.len();
            let section = section_of(name);
            let mut chosen = Vec::new();
            for r in records.chunks_exact(record) {
                if section.is_none_or(|s| keep(s, u64::from(u32_at(r, 0).expect("4 bytes")))) {
                    chosen.extend_from_slice(r);
                }
            }
            if !chosen.is_empty() {
                kept.extend_from_slice(&self.endian.write_u32_bytes(name));
                kept.extend_from_slice(
                    &self.endian.write_u32_bytes((chosen.len() / record) as u32),
                );
                kept.extend_from_slice(&chosen);
            }
        }
        if kept.len() == len {
            return Ok(());
        }
        let base = ext_at + start;
        out[base..base + kept.len()].copy_from_slice(&kept);
        out[base + kept.len()..base + len].fill(0);
        out[ext_at + 28..ext_at + 32]
            .copy_from_slice(&self.endian.write_u32_bytes(kept.len() as u32));
        Ok(())
    }

    /// The file offset and bytes of the section named `name`.
    pub(crate) fn section_data(&self, name: &str) -> Option<(usize, &'a [u8])> {
        self.section_bytes(self.sections.iter().position(|s| s.name == name)?)
    }

    /// The file offset and bytes of section `index`.
    pub(crate) fn section_bytes(&self, index: usize) -> Option<(usize, &'a [u8])> {
        let section = self.sections.get(index)?;
        let at = usize::try_from(section.offset).ok()?;
        let data = self
            .data
            .get(at..)?
            .get(..usize::try_from(section.size).ok()?)?;
        Some((at, data))
    }
}

fn is_function(kind: u8) -> bool {
    kind == elf::STT_FUNC || kind == elf::STT_GNU_IFUNC
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aya_obj::btf::{Btf, BtfFeatures};
    use aya_obj::generated::bpf_insn;
    use aya_obj::{Map, Object};
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    use super::*;
    use crate::error::chain;

    pub(crate) const SOURCE: &str = "isolate.bpf.c";

    /// Builds `tests-data/{source}` with clang for `target` (`bpf`,
    /// `bpfeb`), with `defines`.
    pub(crate) fn build(source: &str, target: &str, defines: &[&str]) -> Vec<u8> {
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let help = "install clang and libbpf-dev (bpf/bpf_helpers.h) to run these tests";
        assert!(
            Path::new("/usr/include/bpf/bpf_helpers.h").exists(),
            "no /usr/include/bpf/bpf_helpers.h: {help}"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests-data")
            .join(source);
        let out = std::env::temp_dir().join(format!(
            "kmatrix-isolate-{}-{}.o",
            std::process::id(),
            BUILT.fetch_add(1, Ordering::Relaxed)
        ));
        let arch = std::env::consts::ARCH;
        let status = Command::new("clang")
            .args(["-target", target, "-O2", "-g"])
            .arg(format!("-I/usr/include/{arch}-linux-gnu"))
            .args(defines.iter().map(|d| format!("-D{d}")))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap_or_else(|err| panic!("clang: {err}: {help}"));
        assert!(
            status.success(),
            "clang failed on {}: {help}",
            source.display()
        );
        let data = std::fs::read(&out).expect("clang's object");
        std::fs::remove_file(&out).expect("remove clang's object");
        data
    }

    /// A kernel with every BTF feature aya probes for.
    pub(crate) fn all_btf_features() -> BtfFeatures {
        BtfFeatures::new(true, true, true, true, true, true, true, true)
    }

    pub(crate) fn host_btf() -> Btf {
        Btf::from_sys_fs().unwrap_or_else(|err| {
            panic!("these tests relocate against the host's /sys/kernel/btf/vmlinux: {err}")
        })
    }

    /// What aya 0.14's `EbpfLoader::load` does with an object before it
    /// loads a program, each map given a made-up fd (100 on, by name).
    fn relocate(data: &[u8], btf: &Btf) -> Result<Object, String> {
        let mut object = Object::parse(data).map_err(|e| chain(&e))?;
        object
            .patch_map_data(HashMap::new())
            .map_err(|e| chain(&e))?;
        object
            .fixup_and_sanitize_btf(&all_btf_features())
            .map_err(|e| chain(&e))?;
        object.relocate_btf(btf).map_err(|e| chain(&e))?;
        let mut maps: Vec<(String, Map)> = object.maps.drain().collect();
        maps.sort_by(|a, b| a.0.cmp(&b.0));
        let text_sections = object
            .functions
            .keys()
            .map(|(section, _)| *section)
            .collect();
        object
            .relocate_maps(
                maps.iter()
                    .enumerate()
                    .map(|(i, (name, map))| (name.as_str(), 100 + i as i32, map)),
                &text_sections,
            )
            .map_err(|e| chain(&e))?;
        object
            .relocate_calls(&text_sections)
            .map_err(|e| chain(&e))?;
        Ok(object)
    }

    /// The instructions of `program` once linked, as raw bytes.
    fn linked(object: &Object, program: &str) -> Vec<bpf_insn> {
        object.functions[&object.programs[program].function_key()]
            .instructions
            .clone()
    }

    fn insn_bytes(insns: &[bpf_insn]) -> Vec<[u8; 8]> {
        insns
            .iter()
            // SAFETY: bpf_insn is 8 bytes of plain data.
            .map(|i| unsafe { std::mem::transmute::<bpf_insn, [u8; 8]>(*i) })
            .collect()
    }

    fn names<T>(map: &std::collections::HashMap<String, T>) -> Vec<&str> {
        let mut names: Vec<_> = map.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    #[test]
    fn a_sibling_aya_cannot_relocate_no_longer_fails_the_program() {
        let data = build(SOURCE, "bpf", &[]);
        let btf = host_btf();
        let error = relocate(&data, &btf).expect_err("aya-obj fails on the siblings");
        assert!(error.contains("array index out of bounds"), "{error}");

        let isolated = isolate(&data, "mount_exit").expect("isolate");
        assert_eq!(isolated.len(), data.len());
        let object = relocate(&isolated, &btf).expect("the isolated object relocates");
        assert_eq!(names(&object.programs), ["mount_exit"]);
        let maps = Object::parse(&isolated).expect("parse").maps;
        assert_eq!(names(&maps), ["results"]);
        assert_eq!(
            names(&maps),
            names(&Object::parse(&data).expect("parse").maps)
        );

        // The same instructions as the program alone in its object gets:
        // its CO-RE offset, its map's fd and its subprogram linked in.
        let alone = build(SOURCE, "bpf", &["ONLY_GOOD"]);
        let reference = relocate(&alone, &btf).expect("the program alone relocates");
        let insns = linked(&object, "mount_exit");
        assert_eq!(
            insn_bytes(&insns),
            insn_bytes(&linked(&reference, "mount_exit"))
        );
        // Before relocation, aya parses the program as from the original.
        let function = |data: &[u8]| {
            let object = Object::parse(data).expect("parse");
            let key = object.programs["mount_exit"].function_key();
            object.functions[&key].clone()
        };
        let unlinked = function(&data);
        assert_eq!(
            format!("{unlinked:?}"),
            format!("{:?}", function(&isolated))
        );
        assert!(
            insns.len() > unlinked.instructions.len(),
            "record is linked in"
        );
        assert!(
            insns
                .iter()
                .any(|i| i.code == 0x85 && i.src_reg() == 1 && i.imm > 0),
            "a call to the linked subprogram"
        );
        assert!(
            insns
                .iter()
                .any(|i| i.code == 0x18 && i.src_reg() == 1 && i.imm == 100),
            "the map's fd"
        );
        let function = &object.functions[&object.programs["mount_exit"].function_key()];
        assert_eq!(function.func_info.func_info.len(), 2, "program and record");
        assert!(!function.line_info.line_info.is_empty());

        // Each sibling alone fails on its own access, or loads.
        for (sibling, section) in [
            ("mount_entry", "error relocating `.text`"),
            (
                "mount_exit_data",
                "error relocating `tracepoint/syscalls/sys_exit_mount`",
            ),
        ] {
            let error = relocate(&isolate(&data, sibling).expect("isolate"), &btf)
                .err()
                .unwrap_or_else(|| panic!("{sibling} relocated"));
            assert!(error.contains(section), "{sibling}: {error}");
        }
        for program in ["quiet", "pass"] {
            let object = relocate(&isolate(&data, program).expect("isolate"), &btf)
                .unwrap_or_else(|err| panic!("{program}: {err}"));
            assert_eq!(names(&object.programs), [program]);
        }
    }

    #[test]
    fn a_program_calling_a_sibling_is_not_isolated() {
        let data = build(SOURCE, "bpf", &[]);
        assert_eq!(
            isolate(&data, "pass_too"),
            Err(IsolateError::RefersToSibling {
                program: "pass_too".into(),
                sibling: "pass".into()
            })
        );
    }

    #[test]
    fn unknown_programs_are_errors() {
        let data = build(SOURCE, "bpf", &[]);
        for name in ["nope", "record", "first_byte", "results", ""] {
            assert_eq!(
                isolate(&data, name),
                Err(IsolateError::UnknownProgram(name.into()))
            );
        }
        assert!(matches!(
            isolate(b"not an object", "x"),
            Err(IsolateError::Elf(_))
        ));
    }

    #[test]
    fn damaged_objects_are_errors_not_panics() {
        let data = build(SOURCE, "bpf", &[]);
        for at in (0..data.len()).step_by(3) {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = data.clone();
                damaged[at] ^= flip;
                let _ = isolate(&damaged, "mount_exit");
                let _ = globalize_static_programs(&damaged);
            }
        }
        for len in (0..data.len()).step_by(97) {
            let _ = isolate(&data[..len], "mount_exit");
        }
    }

    #[test]
    fn static_programs_become_global() {
        let data = build(SOURCE, "bpf", &[]);
        assert!(Object::parse(&data)
            .expect("parse")
            .programs
            .contains_key("quiet"));
        let binding = |data: &[u8], name: &str| {
            let file = object::File::parse(data).expect("parse");
            let symbol = file.symbols().find(|s| s.name() == Ok(name)).expect(name);
            (symbol.kind(), symbol.is_global())
        };
        assert_eq!(binding(&data, "quiet"), (SymbolKind::Text, false));

        let globalized = globalize_static_programs(&data).expect("globalize");
        assert_eq!(globalized.programs, ["quiet"]);
        assert_eq!(
            binding(&globalized.object, "quiet"),
            (SymbolKind::Text, true)
        );
        // Static subprograms in .text stay as they are, and so does the rest.
        assert_eq!(
            binding(&globalized.object, "first_byte"),
            (SymbolKind::Text, false)
        );
        let changed = data
            .iter()
            .zip(&globalized.object)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1);
        let programs = Object::parse(&globalized.object).expect("parse").programs;
        assert_eq!(
            names(&programs),
            names(&Object::parse(&data).expect("parse").programs)
        );
    }

    /// What isolating changed, told apart from the byte order: the
    /// executable sections, the function symbols and the CO-RE records per
    /// section.
    fn summary(data: &[u8]) -> (Vec<String>, Vec<String>, Vec<(String, usize)>) {
        let file = object::File::parse(data).expect("parse");
        let executable = file
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .map(|s| s.name().expect("name").to_owned())
            .collect();
        let mut functions: Vec<String> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text)
            .map(|s| s.name().expect("name").to_owned())
            .collect();
        functions.sort();
        let elf = Elf::parse(data).expect("parse");
        let mut records = Vec::new();
        elf.keep_core_relocations(&mut data.to_vec(), |section, _| {
            records.push(elf.sections[section].name.to_owned());
            true
        })
        .expect("read CO-RE records");
        let mut counted: Vec<(String, usize)> = Vec::new();
        for name in records {
            match counted.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => counted.push((name, 1)),
            }
        }
        (executable, functions, counted)
    }

    #[test]
    fn both_byte_orders_are_rewritten_alike() {
        let little = build(SOURCE, "bpfel", &[]);
        let big = build(SOURCE, "bpfeb", &[]);
        assert_eq!(summary(&little), summary(&big));
        let isolated = summary(&isolate(&little, "mount_exit").expect("isolate"));
        assert_eq!(
            isolated,
            summary(&isolate(&big, "mount_exit").expect("isolate"))
        );
        let (executable, functions, records) = isolated;
        assert_eq!(executable, [".text", "tracepoint/syscalls/sys_exit_mount"]);
        assert!(!functions.contains(&"mount_exit_data".to_owned()));
        assert!(functions.contains(&"mount_entry".to_owned()));
        assert_eq!(
            records,
            [("tracepoint/syscalls/sys_exit_mount".to_owned(), 1)]
        );
    }
}
