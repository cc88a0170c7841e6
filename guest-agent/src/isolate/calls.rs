//! The call graph of a program's code, as aya-obj 0.3 links it: the
//! functions of the object, the code each one calls or loads the address
//! of, and the `.text` functions a program reaches (or the sibling
//! program it refers to, which [`super::isolate`] refuses).

use std::collections::{HashMap, HashSet};

use object::elf;
use object::{Endian, Endianness};

use super::elf::{is_function, Elf};
use super::error::IsolateError;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_LD | BPF_IMM | BPF_DW`: a 64-bit immediate load.
const LD_IMM64: u8 = 0x18;
/// A call's source register when it calls a function of the object.
const PSEUDO_CALL: u8 = 1;
/// Size of an instruction.
const INSN: u64 = 8;

/// A function's code: `size` bytes at `start` in section `section`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Function {
    pub(super) symbol: usize,
    pub(super) section: usize,
    pub(super) start: u64,
    pub(super) size: u64,
}

impl Function {
    pub(super) fn contains(&self, offset: u64) -> bool {
        offset >= self.start && offset - self.start < self.size
    }
}

impl Elf<'_> {
    pub(super) fn function(&self, symbol: usize) -> Function {
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
    pub(super) fn reached(
        &self,
        target: Function,
        program: &str,
    ) -> Result<Vec<Function>, IsolateError> {
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
}
