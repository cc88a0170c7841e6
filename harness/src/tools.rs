//! The host tools a command line or a script names, so that `kmatrix exec
//! -- sh -c 'ip link; uname -r'` or `kmatrix exec -- ./run-tests.sh` finds
//! them in the guest: every word that names an executable on the host's
//! `PATH` (shell keywords and built-ins left out) is sent, with its
//! libraries, at its host path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Words a POSIX shell or bash takes itself, never looked up on the PATH.
const SHELL_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "select", "time", "echo", "printf", "test", "read", "cd", "exit", "export",
    "set", "unset", "shift", "return", "local", "true", "false", "eval", "exec", "trap", "wait",
    "source", "alias", "type", "command", "builtin", "let", "declare", "readonly", "getopts",
    "pwd", "kill", "umask", "ulimit", "break", "continue",
];

/// The longest script read for the tools it names.
const MAX_SCRIPT: u64 = 1 << 20;

/// The executables the words of `text` name, resolved on the host's PATH
/// (or given as absolute paths).
pub fn named(text: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let separators = |c: char| c.is_whitespace() || "'\"`;|&(){}<>$=".contains(c);
    for word in text.split(separators).filter(|w| !w.is_empty()) {
        if SHELL_WORDS.contains(&word) || word.starts_with('-') {
            continue;
        }
        let path = if word.starts_with('/') {
            Some(PathBuf::from(word)).filter(|p| is_executable(p))
        } else if word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        {
            which(word)
        } else {
            None
        };
        if let Some(path) = path {
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

/// `name` looked up on the host's PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A script's interpreter (`#!/bin/sh`, or `#!/usr/bin/env bash`: `env`
/// and `bash` resolved on the PATH) and the tools its text names; `None`
/// for a file that is no script.
pub fn script(path: &Path, bytes: &[u8]) -> Option<Vec<PathBuf>> {
    let line = bytes.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(&line[..line.iter().position(|&b| b == b'\n')?]);
    let mut words = line.split_whitespace();
    let interpreter = PathBuf::from(words.next()?);
    let mut needs = vec![interpreter.clone()];
    if interpreter.file_name().is_some_and(|n| n == "env") {
        needs.extend(words.find(|w| !w.starts_with('-')).and_then(which));
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_SCRIPT) {
        needs.extend(named(&String::from_utf8_lossy(bytes)));
    }
    Some(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_a_command_line_names_are_found_and_shell_words_are_not() {
        let found = named("echo hi from $(uname -r); ls / | grep -v x; if true; then exit 3; fi");
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["uname", "ls", "grep"]);
        assert!(named("no-such-tool-anywhere --help").is_empty());
    }

    #[test]
    fn a_script_brings_its_interpreter_and_tools() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        let text = b"#!/usr/bin/env sh\nset -e\nuname -a\n";
        std::fs::write(&path, text).unwrap();
        let needs = script(&path, text).unwrap();
        assert_eq!(needs[0], Path::new("/usr/bin/env"));
        assert!(needs.iter().any(|p| p.ends_with("sh")), "{needs:?}");
        assert!(needs.iter().any(|p| p.ends_with("uname")), "{needs:?}");
        assert!(script(&path, b"\x7fELF").is_none());
    }
}
