use std::collections::HashMap;
use std::fmt;

use aya_obj::Object;
use object::{Endianness, Object as _, ObjectSection as _};

use super::btf::{Btf, MEMBER, TYPE};
use super::*;
use crate::isolate::isolate;
use crate::test_data::{all_btf_features, build, host_btf, VALUE_SIZE as SOURCE};

fn value_sizes(data: &[u8]) -> Vec<(String, u32)> {
    let mut sizes: Vec<_> = Object::parse(data)
        .expect("parse")
        .maps
        .into_iter()
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, map)| (name, map.value_size()))
        .collect();
    sizes.sort();
    sizes
}

/// Entries, each as `{key:?} {value:?}`, sorted.
fn debug<'a, K: fmt::Debug + 'a, V: fmt::Debug + 'a>(
    entries: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Vec<String> {
    let mut entries: Vec<_> = entries
        .into_iter()
        .map(|(k, v)| format!("{k:?} {v:?}"))
        .collect();
    entries.sort();
    entries
}

fn sized(sizes: &[(String, u32)], name: &str) -> u32 {
    sizes
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no map {name}"))
        .1
}

/// The types and strings of a `.BTF` section.
fn btf_parts(btf: &[u8], endian: Endianness) -> (Vec<u8>, Vec<u8>, usize) {
    let btf = Btf::parse(btf, endian).expect("BTF");
    (
        btf.data[btf.types.clone()].to_vec(),
        btf.data[btf.strings.clone()].to_vec(),
        btf.offsets.len(),
    )
}

fn btf_section(data: &[u8]) -> Vec<u8> {
    let file = object::File::parse(data).expect("ELF");
    file.section_by_name(".BTF")
        .expect(".BTF")
        .data()
        .expect("its data")
        .to_vec()
}

#[test]
fn value_sizes_are_set_and_nothing_else_changes() {
    let data = build(SOURCE, "bpf", &[]);
    let before = value_sizes(&data);
    assert_eq!(sized(&before, "stacks"), 0);
    assert_eq!(sized(&before, "sized"), 8);

    let sizes = [("stacks", 1016), ("sized", 16), ("first", 24)];
    let out = set_value_sizes(&data, &sizes).expect("rewrite");
    let after = value_sizes(&out);
    let mut expected = before.clone();
    for (name, size) in sizes {
        expected.iter_mut().find(|(n, _)| n == name).expect(name).1 = size;
    }
    assert_eq!(after, expected);

    // Everything else aya-obj reads is as it was: maps (sizes aside),
    // programs, and functions with their func and line info.
    let (old, mut new) = (
        Object::parse(&data).expect("parse"),
        Object::parse(&out).expect("parse"),
    );
    for (name, map) in &old.maps {
        let rewritten = new.maps.get_mut(name).expect(name);
        rewritten.set_value_size(map.value_size());
        assert_eq!(format!("{map:?}"), format!("{rewritten:?}"), "{name}");
    }
    assert_eq!(new.maps["sized"].max_entries(), 8, "int[8] is shared");
    assert_eq!(debug(&old.programs), debug(&new.programs));
    assert_eq!(debug(&old.functions), debug(&new.functions));

    // The file is the same up to its end, but for where .BTF is.
    let elf = Elf::parse(&data).expect("ELF");
    let index = elf.sections.iter().position(|s| s.name == ".BTF").unwrap();
    let header = elf.section_header_offset(index);
    let changed: Vec<_> = (0..data.len()).filter(|&i| data[i] != out[i]).collect();
    assert!(
        changed
            .iter()
            .all(|&i| (header + SH_OFFSET..header + SH_SIZE + 8).contains(&i)),
        "{changed:?}"
    );

    // .BTF's types and strings are appended to, but for the three maps'
    // variables, which point at their new definitions.
    let endian = Endianness::Little;
    let (old_types, old_strings, count) = btf_parts(&btf_section(&data), endian);
    let (new_types, new_strings, new_count) = btf_parts(&btf_section(&out), endian);
    assert_eq!(new_count, count + 3 * 3);
    assert!(new_strings.starts_with(&old_strings));
    assert_eq!(&new_strings[old_strings.len()..], b"value_size\0");
    let differing = old_types
        .iter()
        .zip(&new_types)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i / 4)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(differing.len(), 3, "one word per variable");
}

#[test]
fn the_rewrite_composes_with_isolate() {
    let data = build(SOURCE, "bpf", &[]);
    let sizes = [("stacks", 1016)];
    for program in ["record_stacks", "count_exits"] {
        let isolated =
            isolate(&set_value_sizes(&data, &sizes).expect("rewrite"), program).expect("isolate");
        assert_eq!(
            isolated,
            set_value_sizes(&isolate(&data, program).expect("isolate"), &sizes).expect("rewrite"),
            "{program}"
        );
        assert_eq!(sized(&value_sizes(&isolated), "stacks"), 1016);
    }
    // What aya does next: its CO-RE record against the host's BTF.
    let isolated = isolate(
        &set_value_sizes(&data, &sizes).expect("rewrite"),
        "count_exits",
    )
    .expect("isolate");
    let mut object = Object::parse(&isolated).expect("parse");
    object.patch_map_data(HashMap::new()).expect("global data");
    object
        .fixup_and_sanitize_btf(&all_btf_features())
        .expect("fixup");
    object.relocate_btf(&host_btf()).expect("CO-RE");
}

#[test]
fn what_aya_gives_the_kernel_has_the_new_definition() {
    let data = build(SOURCE, "bpf", &[]);
    let out = set_value_sizes(&data, &[("stacks", 1016)]).expect("rewrite");
    let mut object = Object::parse(&out).expect("parse");
    object.patch_map_data(HashMap::new()).expect("global data");
    let btf = object
        .fixup_and_sanitize_btf(&all_btf_features())
        .expect("fixup")
        .expect("BTF");
    let bytes = btf.to_bytes();
    let parsed = Btf::parse(&bytes, Endianness::Little).expect("BTF");
    assert_eq!(declared_value_size(&parsed, "stacks"), Some(1016));
    let (var, _) = parsed
        .type_at(parsed.maps().expect("maps")["stacks"])
        .expect("var");
    let definition = parsed
        .resolve_struct(parsed.u32_at(var + 8).expect("type"))
        .expect("struct");
    assert_eq!(parsed.offsets.last(), Some(&definition));
    // The new member shares the last one's offset, within the struct
    // (the kernel allows members at one offset, as bitfields have).
    let offsets: Vec<_> = (0..parsed.vlen(definition).expect("vlen"))
        .map(|i| {
            parsed
                .u32_at(definition + TYPE + i * MEMBER + 8)
                .expect("offset")
        })
        .collect();
    assert_eq!(offsets, [0, 64, 64]);
    assert_eq!(parsed.u32_at(definition + 8).expect("size"), 16);
}

#[test]
fn a_legacy_map_is_patched_in_place() {
    let data = build(SOURCE, "bpf", &[]);
    let out = set_value_sizes(&data, &[("legacy", 32)]).expect("rewrite");
    assert_eq!(out.len(), data.len());
    assert_eq!(data.iter().zip(&out).filter(|(a, b)| a != b).count(), 1);
    assert_eq!(sized(&value_sizes(&out), "legacy"), 32);
}

#[test]
fn big_endian_objects_are_rewritten_alike() {
    let little = build(SOURCE, "bpfel", &[]);
    let big = build(SOURCE, "bpfeb", &[]);
    let sizes = [("stacks", 1016), ("sized", 16)];
    let (little, big) = (
        set_value_sizes(&little, &sizes).expect("little"),
        set_value_sizes(&big, &sizes).expect("big"),
    );
    let parts = |data: &[u8], endian| {
        let (types, strings, count) = btf_parts(&btf_section(data), endian);
        (types.len(), strings, count)
    };
    assert_eq!(
        parts(&little, Endianness::Little),
        parts(&big, Endianness::Big)
    );
    // aya-obj 0.3 reads BTF in the host's byte order only.
    let btf = btf_section(&big);
    let btf = Btf::parse(&btf, Endianness::Big).expect("BTF");
    for (name, size) in sizes {
        assert_eq!(declared_value_size(&btf, name), Some(size), "{name}");
    }
}

/// The length of the array map `name`'s `value_size` member points to,
/// as aya-obj reads it.
fn declared_value_size(btf: &Btf<'_>, name: &str) -> Option<u32> {
    let (var, _) = btf.type_at(btf.maps().ok()?[name]).ok()?;
    let definition = btf.resolve_struct(btf.u32_at(var + 8).ok()?).ok()?;
    let member = (0..btf.vlen(definition).ok()?).find(|i| {
        let name = btf.u32_at(definition + TYPE + i * MEMBER).unwrap();
        btf.string(name).unwrap() == b"value_size"
    })?;
    let pointer = btf.u32_at(definition + TYPE + member * MEMBER + 4).ok()?;
    let (pointer, _) = btf.type_at(pointer).ok()?;
    let (array, _) = btf.type_at(btf.u32_at(pointer + 8).ok()?).ok()?;
    btf.u32_at(array + TYPE + 8).ok()
}

#[test]
fn maps_it_cannot_size_are_errors() {
    let data = build(SOURCE, "bpf", &[]);
    assert_eq!(
        set_value_sizes(&data, &[("counts", 16)]),
        Err(ValueSizeError::TypedValue("counts".into()))
    );
    for name in ["nope", "record_stacks", "LICENSE", ""] {
        assert_eq!(
            set_value_sizes(&data, &[(name, 16)]),
            Err(ValueSizeError::UnknownMap(name.into()))
        );
    }
    assert!(matches!(
        set_value_sizes(b"not an object", &[("stacks", 8)]),
        Err(ValueSizeError::Elf(_))
    ));
    assert_eq!(set_value_sizes(&data, &[]).as_deref(), Ok(&data[..]));
}

#[test]
fn damaged_objects_are_errors_not_panics() {
    let data = build(SOURCE, "bpf", &[]);
    let btf = {
        let file = object::File::parse(&*data).expect("ELF");
        let (at, size) = file
            .section_by_name(".BTF")
            .expect(".BTF")
            .file_range()
            .expect("in the file");
        at as usize..(at + size) as usize
    };
    let sizes = [("stacks", 1016), ("sized", 16), ("legacy", 8)];
    let mut errors = 0;
    for at in (0..data.len()).filter(|at| btf.contains(at) || at % 3 == 0) {
        for flip in [0x01, 0x80, 0xff] {
            let mut damaged = data.clone();
            damaged[at] ^= flip;
            errors += usize::from(set_value_sizes(&damaged, &sizes).is_err());
        }
    }
    assert!(errors > 0);
    for len in (0..data.len()).step_by(7) {
        assert!(set_value_sizes(&data[..len], &sizes).is_err(), "{len}");
    }
}
