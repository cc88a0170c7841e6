//! Reading a `.BTF` section: its header, where each type starts, strings,
//! the `.maps` variables and the struct a map's definition names.

use std::collections::HashMap;
use std::ops::Range;

use object::{Endian, Endianness};

use super::error::ValueSizeError;

const MAGIC: u16 = 0xeb9f;
/// The header up to and including `str_len`.
const HEADER: usize = 24;
/// A type's common part: `name_off`, `info`, `size` or `type`.
pub(super) const TYPE: usize = 12;
/// A struct member: `name_off`, `type`, `offset`.
pub(super) const MEMBER: usize = 12;

pub(super) const PTR: u32 = 2;
pub(super) const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const TYPE_TAG: u32 = 18;

/// A `.BTF` section, read.
pub(super) struct Btf<'a> {
    pub data: &'a [u8],
    pub endian: Endianness,
    pub header_len: usize,
    /// The type and string sections, in `data`.
    pub types: Range<usize>,
    pub strings: Range<usize>,
    /// Where each type starts in `data`, type 1 first.
    pub offsets: Vec<usize>,
}

impl<'a> Btf<'a> {
    pub(super) fn parse(data: &'a [u8], endian: Endianness) -> Result<Self, ValueSizeError> {
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

    pub(super) fn u32_at(&self, at: usize) -> Result<u32, ValueSizeError> {
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
    pub(super) fn type_at(&self, id: u32) -> Result<(usize, u32), ValueSizeError> {
        let at = *id
            .checked_sub(1)
            .and_then(|index| self.offsets.get(index as usize))
            .ok_or(ValueSizeError::Btf("a type id out of range"))?;
        Ok((at, (self.u32_at(at + 4)? >> 24) & 0x1f))
    }

    pub(super) fn vlen(&self, at: usize) -> Result<usize, ValueSizeError> {
        Ok((self.u32_at(at + 4)? & 0xffff) as usize)
    }

    pub(super) fn string(&self, offset: u32) -> Result<&'a [u8], ValueSizeError> {
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
    pub(super) fn maps(&self) -> Result<HashMap<String, u32>, ValueSizeError> {
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
    pub(super) fn resolve_struct(&self, mut id: u32) -> Result<usize, ValueSizeError> {
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
}
