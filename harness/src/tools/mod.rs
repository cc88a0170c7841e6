//! The host tools a command line or a script runs, so that `kmatrix exec
//! -- sh -c 'ip link; uname -r'` or `kmatrix exec -- ./run-tests.sh` finds
//! them in the guest: the words in command position (the first word of a
//! simple command, after `|`, `;`, `&&`, `(`, `$(`, `then`, `do`, …, past
//! assignments and redirections; the command a wrapper such as `timeout 5`
//! or `env A=b` runs; a shell's `-c` script) that name an executable on the
//! host's `PATH` (shell keywords and built-ins left out), sent with their
//! libraries at their host paths. Comments, arguments and here-documents
//! name none, and scripts in other languages are not read.
//!
//! `mod.rs` holds what the rest of kmatrix asks ([`of_command`],
//! [`of_script`], [`script`], [`which`]) and the lookup of the names found;
//! `shell.rs` reads shell text into words, separators, substitutions and
//! here-documents; `commands.rs` tells which of those words stand in
//! command position.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod commands;
mod shell;

use commands::{Commands, Word};
use shell::Scanner;

/// Shells whose `-c` script is read for the tools it runs.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"];

/// The longest script read for the tools it runs.
const MAX_SCRIPT: u64 = 1 << 20;

/// The host tools the command line `argv` (a program and its arguments)
/// runs: a wrapper's command (`timeout 5 tc …`), a shell's `-c` script.
pub fn of_command(argv: &[String]) -> Vec<PathBuf> {
    let mut commands = Commands::default();
    for arg in argv {
        commands.word(&Word {
            text: arg.as_bytes().to_vec(),
            expanded: false,
        });
    }
    resolve(commands.names)
}

/// The host tools the shell script `text` runs.
pub fn of_script(text: &[u8]) -> Vec<PathBuf> {
    resolve(Scanner::new(text, 0).list(false))
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

/// The executables `names` name, on the PATH or as absolute paths, once
/// each.
fn resolve(names: Vec<Vec<u8>>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for name in names {
        let path = if name.starts_with(b"/") {
            Some(PathBuf::from(OsStr::from_bytes(&name))).filter(|p| is_executable(p))
        } else if name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._+-".contains(&c))
        {
            std::str::from_utf8(&name).ok().and_then(which)
        } else {
            None
        };
        if let Some(path) = path.filter(|p| !found.contains(p)) {
            found.push(path);
        }
    }
    found
}

/// What a script needs besides its own bytes.
#[derive(Debug)]
pub struct Script {
    /// Its interpreter (`#!/bin/sh`; for `#!/usr/bin/env bash`, `env`
    /// and `bash` resolved on the PATH).
    pub interpreter: Vec<PathBuf>,
    /// The host tools it runs.
    pub tools: Vec<PathBuf>,
}

/// What the script `bytes` (the file at `path`) needs; `None` for a file
/// that is no script. Only a shell script is read for the tools it runs.
pub fn script(path: &Path, bytes: &[u8]) -> Option<Script> {
    let line = bytes.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(&line[..line.iter().position(|&b| b == b'\n')?]);
    let mut words = line.split_whitespace();
    let interpreter = PathBuf::from(words.next()?);
    let mut needs = vec![interpreter.clone()];
    let mut language = interpreter.file_name().map(OsStr::to_owned);
    if language.as_deref() == Some(OsStr::new("env")) {
        language = words.find(|w| !w.starts_with('-')).map(Into::into);
        needs.extend(language.as_deref().and_then(OsStr::to_str).and_then(which));
    }
    let shell = language.is_some_and(|l| SHELLS.iter().any(|s| l == *s));
    let tools = if shell && std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_SCRIPT) {
        of_script(bytes)
    } else {
        Vec::new()
    };
    Some(Script {
        interpreter: needs,
        tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_a_command_line_runs_are_found_and_shell_words_are_not() {
        let found =
            of_script(b"echo hi from $(uname -r); ls / | grep -v x; if true; then exit 3; fi");
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["uname", "ls", "grep"]);
        assert!(of_script(b"no-such-tool-anywhere --help").is_empty());
    }

    #[test]
    fn a_command_line_names_what_wrappers_and_shells_run() {
        let argv =
            |words: &[&str]| -> Vec<String> { words.iter().map(|s| s.to_string()).collect() };
        let names = |argv: Vec<String>| -> Vec<String> {
            of_command(&argv)
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(argv(&["sh", "-c", "true # needs clang"])), ["sh"]);
        assert_eq!(
            names(argv(&["sh", "-c", "uname -r; ls"])),
            ["sh", "uname", "ls"]
        );
        assert_eq!(
            names(argv(&["timeout", "5", "uname", "-r"])),
            ["timeout", "uname"]
        );
        assert_eq!(names(argv(&["/bin/true", "ls", "uname"])), ["true"]);
    }

    #[test]
    fn a_script_brings_its_interpreter_and_tools() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        let text = b"#!/usr/bin/env sh\nset -e\nuname -a # and not ls\n";
        std::fs::write(&path, text).unwrap();
        let needs = script(&path, text).unwrap();
        assert_eq!(needs.interpreter[0], Path::new("/usr/bin/env"));
        assert!(
            needs.interpreter.iter().any(|p| p.ends_with("sh")),
            "{needs:?}"
        );
        assert_eq!(needs.tools.len(), 1, "{needs:?}");
        assert!(needs.tools[0].ends_with("uname"), "{needs:?}");
        assert!(script(&path, b"\x7fELF").is_none());
        let perl = b"#!/usr/bin/perl\nprint `uname`;\n";
        assert!(script(&path, perl).unwrap().tools.is_empty());
    }
}
