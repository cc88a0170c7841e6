//! Why value sizes could not be set: the module's one error, a leaf both
//! the reader and the writer use.

use std::fmt;

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
