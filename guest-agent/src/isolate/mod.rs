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
//!
//! This module holds the public rewrites; their error is in `error`, the
//! ELF64 reader and its patch offsets are in `elf`, the call graph a program
//! reaches in `calls`, and the `.BTF.ext` CO-RE record filter in
//! `btf_ext`.

use object::elf::{SHF_EXECINSTR, STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_NOTYPE};
use object::Endian;

mod btf_ext;
mod calls;
mod elf;
mod error;

pub(crate) use self::elf::Elf;
use self::elf::{SH_FLAGS, ST_INFO};
pub use self::error::IsolateError;

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
            let flags = section.flags & !u64::from(SHF_EXECINSTR);
            out[at..at + 8].copy_from_slice(&elf.endian.write_u64_bytes(flags));
        }
    }
    for &index in &programs {
        let symbol = &elf.symbols[index];
        if index != target.symbol && symbol.section == target.section {
            let at = elf.symbol_offset(index) + ST_INFO;
            out[at] = (symbol.bind << 4) | STT_NOTYPE;
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
        if symbol.kind == STT_FUNC
            && symbol.bind == STB_LOCAL
            && symbol.section != 0
            && section.flags & u64::from(SHF_EXECINSTR) != 0
            && section.name != ".text"
        {
            let at = elf.symbol_offset(index) + ST_INFO;
            out[at] = (STB_GLOBAL << 4) | symbol.kind;
            programs.push(symbol.name.to_owned());
        }
    }
    Ok(Globalized {
        object: out,
        programs,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aya_obj::btf::Btf;
    use aya_obj::generated::bpf_insn;
    use aya_obj::{Map, Object};
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    use super::*;
    use crate::error::chain;
    use crate::test_data::{all_btf_features, build, host_btf, ISOLATE as SOURCE};

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
