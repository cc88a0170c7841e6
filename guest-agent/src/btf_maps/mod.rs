//! Sets maps' value sizes in an object for aya 0.14, whose `EbpfLoader` can
//! set a map's `max_entries` but not its `value_size` (libbpf's
//! `bpf_map__set_value_size`). aya-obj 0.3 reads a BTF map's value size
//! from its definition's `value_size` member, a pointer to an array as long
//! as the size (`__uint(value_size, N)`), and a legacy map's from its
//! `bpf_map_def`, so [`set_value_sizes`] rewrites those:
//!
//! - A BTF map's variable is pointed at a copy of its definition's struct
//!   in which `value_size` points to a new `int[N]`; where the map declares
//!   no value size (bcc's stack maps), the copy gains that member, at the
//!   offset of its last one (members may share an offset, so the struct
//!   keeps its size, and the `.maps` section and its symbols stay as they
//!   are). A copy, not the struct itself, because maps may share a named
//!   definition, and `int[N]` may be the type of another member.
//! - The new types (`int[N]`, a pointer to it, the struct) and the new
//!   member's name are appended to `.BTF`'s types and strings, so every type
//!   id and string offset, and with them `.BTF.ext` and the programs'
//!   BTF, hold. The grown `.BTF` goes at the end of the file and its section
//!   header points there; every other byte of the file stays.
//! - A legacy map (`maps`) has its `bpf_map_def`'s `value_size` patched.
//!
//! A map whose value is a BTF type (`__type(value, T)`) is refused: its
//! size is `T`'s.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use object::{Endian, Endianness};

use crate::isolate::Elf;

/// Why value sizes could not be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSizeError {
    /// Not an eBPF ELF object whose tables read.
    Elf(String),
    /// No map of that name, in `.maps` or a legacy `maps` section.
    UnknownMap(String),
    /// The map's value is a BTF type, whose size is the value size.
    TypedValue(String),
    /// `.BTF` is malformed, or not laid out as compilers write it.
    Btf(&'static str),
}

impl fmt::Display for ValueSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(error) => f.write_str(error),
            Self::UnknownMap(name) => write!(f, "the object has no map `{name}`"),
            Self::TypedValue(name) => write!(
                f,
                "map `{name}` declares its value's type, whose size is its value size"
            ),
            Self::Btf(error) => write!(f, "malformed BTF: {error}"),
        }
    }
}

impl std::error::Error for ValueSizeError {}

/// Returns `data` with each map of `sizes` (name, bytes) given that value
/// size, as aya-obj 0.3 reads it, and nothing else changed (see the
/// module's documentation).
pub fn set_value_sizes(data: &[u8], sizes: &[(&str, u32)]) -> Result<Vec<u8>, ValueSizeError> {
    let elf = Elf::parse(data).map_err(|e| ValueSizeError::Elf(e.to_string()))?;
    let btf_section = elf.sections.iter().position(|s| s.name == ".BTF");
    let btf = btf_section
        .map(|index| {
            let (_, bytes) = elf
                .section_bytes(index)
                .ok_or(ValueSizeError::Btf("out of the file's bounds"))?;
            Btf::parse(bytes, elf.endian)
        })
        .transpose()?;
    let btf_maps = btf.as_ref().map(Btf::maps).transpose()?.unwrap_or_default();

    let mut out = data.to_vec();
    let mut growth = btf.as_ref().map(Growth::new);
    for &(name, size) in sizes {
        if let (Some(btf), Some(growth), Some(&var)) = (&btf, &mut growth, btf_maps.get(name)) {
            growth.set_value_size(btf, name, var, size)?;
        } else if let Some(at) = legacy_value_size(&elf, name) {
            out[at..at + 4].copy_from_slice(&elf.endian.write_u32_bytes(size));
        } else {
            return Err(ValueSizeError::UnknownMap(name.to_owned()));
        }
    }
    if let (Some(btf), Some(growth), Some(index)) = (&btf, growth, btf_section) {
        if !growth.is_empty() {
            let grown = btf.grown(growth)?;
            out.resize(out.len().next_multiple_of(8), 0);
            let header = elf.section_header_offset(index);
            let (offset, size) = (out.len() as u64, grown.len() as u64);
            out[header + SH_OFFSET..header + SH_OFFSET + 8]
                .copy_from_slice(&elf.endian.write_u64_bytes(offset));
            out[header + SH_SIZE..header + SH_SIZE + 8]
                .copy_from_slice(&elf.endian.write_u64_bytes(size));
            out.extend_from_slice(&grown);
        }
    }
    Ok(out)
}

/// Where `sh_offset` and `sh_size` are in an ELF64 section header.
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;

/// The file offset of legacy map `name`'s `value_size`: the third `u32` of
/// its `bpf_map_def`, in a section aya-obj 0.3 takes for legacy maps.
fn legacy_value_size(elf: &Elf<'_>, name: &str) -> Option<usize> {
    let symbol = elf.symbols.iter().find(|s| {
        s.name == name
            && elf
                .sections
                .get(s.section)
                .is_some_and(|section| s.section != 0 && section.name.starts_with("maps"))
    })?;
    let (at, bytes) = elf.section_bytes(symbol.section)?;
    let def = usize::try_from(symbol.value).ok()?;
    let end = def.checked_add(12)?;
    (symbol.size >= 12 && end <= bytes.len()).then_some(at + def + 8)
}

const MAGIC: u16 = 0xeb9f;
/// The header up to and including `str_len`.
const HEADER: usize = 24;
/// A type's common part: `name_off`, `info`, `size` or `type`.
const TYPE: usize = 12;
/// A struct member: `name_off`, `type`, `offset`.
const MEMBER: usize = 12;

const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const TYPE_TAG: u32 = 18;

/// A `.BTF` section, read.
struct Btf<'a> {
    data: &'a [u8],
    endian: Endianness,
    header_len: usize,
    /// The type and string sections, in `data`.
    types: Range<usize>,
    strings: Range<usize>,
    /// Where each type starts in `data`, type 1 first.
    offsets: Vec<usize>,
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8], endian: Endianness) -> Result<Self, ValueSizeError> {
        let magic = data
            .get(..2)
            .ok_or(ValueSizeError::Btf("truncated header"))?;
        if endian.read_u16_bytes([magic[0], magic[1]]) != MAGIC {
            return Err(ValueSizeError::Btf("bad magic"));
        }
        let mut btf = Self {
            data,
            endian,
            header_len: 0,
            types: 0..0,
            strings: 0..0,
            offsets: Vec::new(),
        };
        btf.header_len = btf.u32_at(4)? as usize;
        if btf.header_len < HEADER {
            return Err(ValueSizeError::Btf("header too short"));
        }
        let section = |offset: usize, len: usize| -> Result<Range<usize>, ValueSizeError> {
            let start = (btf.u32_at(offset)? as usize)
                .checked_add(btf.header_len)
                .ok_or(ValueSizeError::Btf("section out of bounds"))?;
            let end = start
                .checked_add(btf.u32_at(len)? as usize)
                .filter(|&end| end <= data.len())
                .ok_or(ValueSizeError::Btf("section out of bounds"))?;
            Ok(start..end)
        };
        let (types, strings) = (section(8, 12)?, section(16, 20)?);
        if types.end > strings.start {
            return Err(ValueSizeError::Btf("types do not come before strings"));
        }
        let mut at = types.start;
        while at < types.end {
            btf.offsets.push(at);
            let info = btf.u32_at_in(at + 4, &types)?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                2 | 7..=12 | 16 | 18 => 0,
                1 | 14 | 17 => 4,
                3 => 12,
                6 | 13 => 8 * vlen,
                4 | 5 | 15 | 19 => 12 * vlen,
                _ => return Err(ValueSizeError::Btf("unknown type kind")),
            };
            at += TYPE + extra;
        }
        if at != types.end {
            return Err(ValueSizeError::Btf("a type runs past the type section"));
        }
        btf.types = types;
        btf.strings = strings;
        Ok(btf)
    }

    fn u32_at(&self, at: usize) -> Result<u32, ValueSizeError> {
        self.u32_at_in(at, &(0..self.data.len()))
    }

    /// The `u32` at `at`, which must lie in `within`.
    fn u32_at_in(&self, at: usize, within: &Range<usize>) -> Result<u32, ValueSizeError> {
        at.checked_add(4)
            .filter(|&end| at >= within.start && end <= within.end)
            .and_then(|end| self.data.get(at..end))
            .map(|b| self.endian.read_u32_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(ValueSizeError::Btf("truncated type"))
    }

    /// Where type `id` starts, with its kind.
    fn type_at(&self, id: u32) -> Result<(usize, u32), ValueSizeError> {
        let at = *id
            .checked_sub(1)
            .and_then(|index| self.offsets.get(index as usize))
            .ok_or(ValueSizeError::Btf("a type id out of range"))?;
        Ok((at, (self.u32_at(at + 4)? >> 24) & 0x1f))
    }

    fn vlen(&self, at: usize) -> Result<usize, ValueSizeError> {
        Ok((self.u32_at(at + 4)? & 0xffff) as usize)
    }

    fn string(&self, offset: u32) -> Result<&'a [u8], ValueSizeError> {
        let tail = self
            .strings
            .start
            .checked_add(offset as usize)
            .filter(|&at| at < self.strings.end)
            .map(|at| &self.data[at..self.strings.end])
            .ok_or(ValueSizeError::Btf("a string offset out of range"))?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(ValueSizeError::Btf("an unterminated string"))?;
        Ok(&tail[..len])
    }

    /// The variables of the `.maps` sections by name: the BTF maps.
    fn maps(&self) -> Result<HashMap<String, u32>, ValueSizeError> {
        let mut maps = HashMap::new();
        for &at in &self.offsets {
            let info = self.u32_at(at + 4)?;
            if (info >> 24) & 0x1f != DATASEC
                || !self.string(self.u32_at(at)?)?.starts_with(b".maps")
            {
                continue;
            }
            for entry in 0..(info & 0xffff) as usize {
                let var = self.u32_at(at + TYPE + entry * 12)?;
                let (var_at, kind) = self.type_at(var)?;
                if kind == VAR {
                    let name = self.string(self.u32_at(var_at)?)?;
                    maps.insert(String::from_utf8_lossy(name).into_owned(), var);
                }
            }
        }
        Ok(maps)
    }

    /// The struct `id` names, through typedefs and qualifiers.
    fn resolve_struct(&self, mut id: u32) -> Result<usize, ValueSizeError> {
        for _ in 0..=self.offsets.len() {
            let (at, kind) = self.type_at(id)?;
            match kind {
                STRUCT => return Ok(at),
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = self.u32_at(at + 8)?,
                _ => return Err(ValueSizeError::Btf("a map's definition is not a struct")),
            }
        }
        Err(ValueSizeError::Btf("a type refers to itself"))
    }

    /// The `.BTF` section with `growth`'s types and strings appended and
    /// its variables repointed.
    fn grown(&self, growth: Growth) -> Result<Vec<u8>, ValueSizeError> {
        let len =
            |len: usize| u32::try_from(len).map_err(|_| ValueSizeError::Btf("grown past 4 GiB"));
        let types_len = len(self.types.len() + growth.types.len())?;
        let strings_off = len(self.types.end - self.header_len + growth.types.len())?;
        let strings_len = len(self.strings.len() + growth.strings.len())?;

        let mut out = self.data[..self.types.end].to_vec();
        let mut put = |at: usize, value: u32| {
            out[at..at + 4].copy_from_slice(&self.endian.write_u32_bytes(value));
        };
        for (var, id) in growth.repointed {
            put(var + 8, id);
        }
        put(12, types_len);
        put(16, strings_off);
        put(20, strings_len);
        out.extend_from_slice(&growth.types);
        out.extend_from_slice(&self.data[self.strings.clone()]);
        out.extend_from_slice(&growth.strings);
        Ok(out)
    }
}

/// What [`set_value_sizes`] adds to `.BTF`.
struct Growth {
    endian: Endianness,
    /// The next type's id.
    next_id: u32,
    /// Types to append.
    types: Vec<u8>,
    /// The string section's length before `strings`.
    strings_start: u32,
    /// Strings to append.
    strings: Vec<u8>,
    /// The offset of `value_size` among the strings, once known.
    value_size_name: Option<u32>,
    /// Variables (where they start in the section) to point at a new type.
    repointed: Vec<(usize, u32)>,
}

impl Growth {
    fn new(btf: &Btf<'_>) -> Self {
        Self {
            endian: btf.endian,
            next_id: btf.offsets.len() as u32 + 1,
            types: Vec::new(),
            strings_start: btf.strings.len() as u32,
            strings: Vec::new(),
            value_size_name: None,
            repointed: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.repointed.is_empty()
    }

    /// Appends a type of `words` and returns its id.
    fn add_type(&mut self, words: &[u32]) -> Result<u32, ValueSizeError> {
        let id = self.next_id;
        self.next_id = id
            .checked_add(1)
            .ok_or(ValueSizeError::Btf("too many types"))?;
        for &word in words {
            self.types
                .extend_from_slice(&self.endian.write_u32_bytes(word));
        }
        Ok(id)
    }

    /// Gives map `name`, whose variable is type `var`, a definition with
    /// `value_size` `size`.
    fn set_value_size(
        &mut self,
        btf: &Btf<'_>,
        name: &str,
        var: u32,
        size: u32,
    ) -> Result<(), ValueSizeError> {
        let (var_at, _) = btf.type_at(var)?;
        let definition = btf.resolve_struct(btf.u32_at(var_at + 8)?)?;
        let vlen = btf.vlen(definition)?;
        let member = |i: usize, field: usize| btf.u32_at(definition + TYPE + i * MEMBER + field);
        let mut value_size = None;
        let mut template = None;
        for i in 0..vlen {
            match btf.string(member(i, 0)?)? {
                b"value" => return Err(ValueSizeError::TypedValue(name.to_owned())),
                b"value_size" => value_size = Some(i),
                _ => {}
            }
            let (at, kind) = btf.type_at(member(i, 4)?)?;
            if kind == PTR && template.is_none() {
                let (array, kind) = btf.type_at(btf.u32_at(at + 8)?)?;
                if kind == ARRAY {
                    template = Some(array);
                }
            }
        }
        // The element and index types of the definition's other
        // `__uint()`s.
        let template = template.ok_or(ValueSizeError::Btf(
            "a map's definition has no `__uint()` member",
        ))?;
        let (element, index) = (
            btf.u32_at(template + TYPE)?,
            btf.u32_at(template + TYPE + 4)?,
        );
        let array = self.add_type(&[0, ARRAY << 24, 0, element, index, size])?;
        let pointer = self.add_type(&[0, PTR << 24, array])?;

        let mut info = btf.u32_at(definition + 4)?;
        let mut members = Vec::with_capacity(vlen + 1);
        for i in 0..vlen {
            let kind = if Some(i) == value_size {
                pointer
            } else {
                member(i, 4)?
            };
            members.push([member(i, 0)?, kind, member(i, 8)?]);
        }
        if value_size.is_none() {
            let last = *members
                .last()
                .ok_or(ValueSizeError::Btf("a map's definition has no members"))?;
            if vlen >= 0xffff {
                return Err(ValueSizeError::Btf("a map's definition is full"));
            }
            // With kind_flag set, an offset's top byte is a bitfield's size.
            let offset = if info >> 31 == 1 {
                last[2] & 0x00ff_ffff
            } else {
                last[2]
            };
            members.push([self.value_size_name(), pointer, offset]);
            info += 1;
        }
        let mut words = vec![btf.u32_at(definition)?, info, btf.u32_at(definition + 8)?];
        words.extend(members.iter().flatten());
        let id = self.add_type(&words)?;
        self.repointed.push((var_at, id));
        Ok(())
    }

    /// The string offset of `value_size`, appended the first time.
    fn value_size_name(&mut self) -> u32 {
        *self.value_size_name.get_or_insert_with(|| {
            let at = self.strings_start + self.strings.len() as u32;
            self.strings.extend_from_slice(b"value_size\0");
            at
        })
    }
}

#[cfg(test)]
mod tests {
    use aya_obj::Object;
    use object::{Object as _, ObjectSection as _};

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
            let isolated = isolate(&set_value_sizes(&data, &sizes).expect("rewrite"), program)
                .expect("isolate");
            assert_eq!(
                isolated,
                set_value_sizes(&isolate(&data, program).expect("isolate"), &sizes)
                    .expect("rewrite"),
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
}
