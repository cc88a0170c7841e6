//! Reading TOML files (kernels.toml, suites) into serde types, with errors
//! that point at file:line:column.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file that is not TOML of the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct SyntaxError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses `text`, read from `path` (used in errors).
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, SyntaxError> {
    toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        SyntaxError {
            path: path.to_owned(),
            line,
            column,
            message: err.message().to_owned(),
        }
    })
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        let err = parse::<toml::Table>("a = 1\nb = ", "f.toml".as_ref()).unwrap_err();
        assert!(err.to_string().starts_with("f.toml:2:"), "{err}");
    }
}
