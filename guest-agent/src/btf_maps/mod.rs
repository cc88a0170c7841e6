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

mod btf;
mod error;
mod growth;
#[cfg(test)]
mod tests;

use object::Endian;

use crate::isolate::Elf;
use btf::Btf;
pub use error::ValueSizeError;
use growth::Growth;

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
            let grown = growth.grown(btf)?;
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
