//! What the loaders read of an object with the `object` crate: its
//! programs' sections and where its globals live.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// Maps each program (function symbol, global or static) to the name of
/// its ELF section.
pub fn program_sections(data: &[u8]) -> Result<HashMap<String, String>, object::Error> {
    let file = object::File::parse(data)?;
    let mut sections = HashMap::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text {
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let (Ok(name), Ok(section)) = (symbol.name(), section.name()) else {
            continue;
        };
        if section != ".text" {
            sections.insert(name.to_owned(), section.to_owned());
        }
    }
    Ok(sections)
}

/// Where the global `name` lives: its section's name and its offset there.
pub fn global_location(data: &[u8], name: &str) -> Option<(String, usize)> {
    let file = object::File::parse(data).ok()?;
    let symbol = file.symbols().find(|s| s.name() == Ok(name))?;
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    Some((section.name().ok()?.to_owned(), symbol.address() as usize))
}

#[cfg(test)]
mod tests {
    use object::read::elf::{ElfFile64, FileHeader, SectionHeader};

    use super::*;
    use crate::isolate;
    use crate::test_data::{build, ISOLATE, LOADER, VALUE_SIZE};

    fn sorted(sections: HashMap<String, String>) -> Vec<(String, String)> {
        let mut sections: Vec<_> = sections.into_iter().collect();
        sections.sort();
        sections
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn programs_are_the_functions_of_executable_sections_but_text() {
        let data = build(LOADER, "bpf", &["WITH_STATIC"]);
        assert_eq!(
            sorted(program_sections(&data).expect("parse")),
            pairs(&[
                ("classify", "tc"),
                ("count", "xdp"),
                ("count_too", "xdp"),
                ("record_stack", "kprobe/do_sys_openat2"),
            ])
        );
        let data = build(ISOLATE, "bpf", &[]);
        assert_eq!(
            sorted(program_sections(&data).expect("parse")),
            pairs(&[
                ("mount_entry", "tracepoint/syscalls/sys_enter_mount"),
                ("mount_exit", "tracepoint/syscalls/sys_exit_mount"),
                ("mount_exit_data", "tracepoint/syscalls/sys_exit_mount"),
                ("pass", "xdp"),
                ("pass_too", "xdp"),
                ("quiet", "xdp"),
            ])
        );
        assert!(program_sections(b"not an object").is_err());
    }

    /// The driver finds a program's section with the `object` crate, and
    /// `isolate` its programs with its own ELF reader: they must agree.
    #[test]
    fn the_driver_and_isolate_see_the_same_programs() {
        for (source, defines) in [
            (LOADER, &["WITH_STATIC"][..]),
            (LOADER, &[]),
            (ISOLATE, &[]),
            (ISOLATE, &["INLINE"]),
            (VALUE_SIZE, &[]),
        ] {
            for target in ["bpfel", "bpfeb"] {
                let data = build(source, target, defines);
                let mut listed = isolate::programs(&data).expect("isolate reads it");
                listed.sort();
                assert_eq!(
                    sorted(program_sections(&data).expect("parse")),
                    listed,
                    "{source} {defines:?} {target}"
                );
            }
        }
    }

    /// The bytes of `section` at `offset`, as the file holds them.
    fn bytes_at(data: &[u8], section: &str, offset: usize, len: usize) -> Vec<u8> {
        let file = ElfFile64::<object::Endianness>::parse(data).expect("parse");
        let endian = file.endian();
        let sections = file.elf_header().sections(endian, data).expect("sections");
        let header = sections
            .section_by_name(endian, section.as_bytes())
            .expect(section)
            .1;
        header.data(endian, data).expect("data")[offset..offset + len].to_vec()
    }

    #[test]
    fn a_global_is_found_at_its_offset_in_its_section() {
        for (target, big) in [("bpfel", false), ("bpfeb", true)] {
            let data = build(LOADER, target, &[]);
            let at = |name: &str| global_location(&data, name).expect(name);
            let (section, offset) = at("threshold");
            assert_eq!(section, ".rodata");
            let threshold = 0x11223344u32;
            let expected = if big {
                threshold.to_be_bytes()
            } else {
                threshold.to_le_bytes()
            };
            assert_eq!(bytes_at(&data, &section, offset, 4), expected);
            let (section, offset) = at("limit");
            assert_eq!(section, ".rodata");
            let limit = 0x5566778899aabbccu64;
            let expected = if big {
                limit.to_be_bytes()
            } else {
                limit.to_le_bytes()
            };
            assert_eq!(bytes_at(&data, &section, offset, 8), expected);
            assert_eq!(at("hits").0, ".data");
            assert_eq!(at("seen").0, ".bss");
            assert_eq!(global_location(&data, "nope"), None);
        }
        assert_eq!(global_location(b"not an object", "threshold"), None);
    }
}
