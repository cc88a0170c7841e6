//! The ELF64 reader the rewrites work on: an eBPF object's sections, its
//! symbols and its relocations, where each of them sits in the file (for
//! patching in place), and which sections and symbols aya-obj 0.3 takes
//! for programs and subprograms. `crate::btf_maps` reads objects with it
//! too.

use std::collections::HashMap;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::Endianness;

use super::error::IsolateError;

type Header = elf::FileHeader64<Endianness>;

/// `object`'s error, as this module's.
fn elf_error(error: object::Error) -> IsolateError {
    IsolateError::Elf(error.to_string())
}

/// Where `sh_flags` is in an ELF64 section header.
pub(super) const SH_FLAGS: usize = 8;
/// Where `st_info` is in an ELF64 symbol.
pub(super) const ST_INFO: usize = 4;

/// The parts of the object the rewrites read.
pub(crate) struct Elf<'a> {
    pub(super) data: &'a [u8],
    pub(crate) endian: Endianness,
    section_headers: usize,
    pub(crate) sections: Vec<Section<'a>>,
    symbol_table: usize,
    pub(crate) symbols: Vec<Symbol<'a>>,
    /// Per section, the symbol each relocated offset refers to.
    pub(super) relocations: HashMap<usize, HashMap<u64, usize>>,
}

pub(crate) struct Section<'a> {
    pub(crate) name: &'a str,
    kind: u32,
    pub(super) flags: u64,
    pub(super) offset: u64,
    pub(super) size: u64,
}

pub(crate) struct Symbol<'a> {
    pub(crate) name: &'a str,
    pub(super) kind: u8,
    pub(super) bind: u8,
    /// Its section's index; 0 for none (undefined, absolute, common).
    pub(crate) section: usize,
    pub(crate) value: u64,
    pub(crate) size: u64,
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

    pub(super) fn symbol_offset(&self, index: usize) -> usize {
        self.symbol_table + index * size_of::<elf::Sym64<Endianness>>()
    }

    /// Whether aya-obj 0.3 takes section `index` for a program section: an
    /// executable one of code whose name is none of the names it knows.
    pub(super) fn is_program_section(&self, index: usize) -> bool {
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
    pub(super) fn is_text_section(&self, index: usize) -> bool {
        self.sections
            .get(index)
            .is_some_and(|section| section.name.starts_with(".text"))
    }

    /// The programs as aya-obj 0.3 lists them: the named function symbols
    /// of program sections.
    pub(super) fn programs(&self) -> Vec<usize> {
        (0..self.symbols.len())
            .filter(|&i| {
                let symbol = &self.symbols[i];
                is_function(symbol.kind)
                    && !symbol.name.is_empty()
                    && self.is_program_section(symbol.section)
            })
            .collect()
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

pub(super) fn is_function(kind: u8) -> bool {
    kind == elf::STT_FUNC || kind == elf::STT_GNU_IFUNC
}
