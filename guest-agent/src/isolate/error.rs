//! Why an object could not be rewritten; every part of `isolate` returns
//! it.

use std::fmt;

/// Why an object could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsolateError {
    /// Not a 64-bit eBPF ELF object, or one whose tables do not read.
    Elf(String),
    /// No program of that name.
    UnknownProgram(String),
    /// Several programs of that name.
    AmbiguousProgram(String),
    /// The program, or a `.text` function, refers to a sibling's code,
    /// which aya would link in as a function.
    RefersToSibling { program: String, sibling: String },
    /// `.BTF` or `.BTF.ext` is malformed.
    Btf(&'static str),
}

impl fmt::Display for IsolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(error) => write!(f, "not a 64-bit eBPF ELF object: {error}"),
            Self::UnknownProgram(name) => write!(f, "the object has no program `{name}`"),
            Self::AmbiguousProgram(name) => {
                write!(f, "the object has several programs named `{name}`")
            }
            Self::RefersToSibling { program, sibling } => write!(
                f,
                "the code of `{program}` refers to the code of program `{sibling}`"
            ),
            Self::Btf(error) => write!(f, "malformed BTF: {error}"),
        }
    }
}

impl std::error::Error for IsolateError {}
