//! The `.BTF.ext` CO-RE record filter: rewrites the records in place,
//! keeping those of the code a caller chooses, in their order.

use object::Endian;

use super::elf::Elf;
use super::error::IsolateError;

impl Elf<'_> {
    /// Rewrites `.BTF.ext`'s CO-RE records in `out`, keeping those for
    /// which `keep(section, instruction offset)` holds, in their order;
    /// the section's freed tail is zeroed.
    pub(super) fn keep_core_relocations(
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
}
