//! Writing the sized copies: the types and strings [`Growth`] appends to
//! `.BTF` (an `int[N]`, a pointer to it, a copy of the map's definition
//! whose `value_size` is that pointer), and the grown section.

use object::{Endian, Endianness};

use super::btf::{Btf, ARRAY, MEMBER, PTR, TYPE};
use super::error::ValueSizeError;

/// What [`set_value_sizes`] adds to `.BTF`.
pub(super) struct Growth {
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
    pub(super) fn new(btf: &Btf<'_>) -> Self {
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

    pub(super) fn is_empty(&self) -> bool {
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
    pub(super) fn set_value_size(
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

    /// `btf`'s section with these types and strings appended and its
    /// variables repointed.
    pub(super) fn grown(self, btf: &Btf<'_>) -> Result<Vec<u8>, ValueSizeError> {
        let len =
            |len: usize| u32::try_from(len).map_err(|_| ValueSizeError::Btf("grown past 4 GiB"));
        let types_len = len(btf.types.len() + self.types.len())?;
        let strings_off = len(btf.types.end - btf.header_len + self.types.len())?;
        let strings_len = len(btf.strings.len() + self.strings.len())?;

        let mut out = btf.data[..btf.types.end].to_vec();
        let mut put = |at: usize, value: u32| {
            out[at..at + 4].copy_from_slice(&btf.endian.write_u32_bytes(value));
        };
        for (var, id) in self.repointed {
            put(var + 8, id);
        }
        put(12, types_len);
        put(16, strings_off);
        put(20, strings_len);
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&btf.data[btf.strings.clone()]);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}
