//! The host tools a command line or a script runs, so that `kmatrix exec
//! -- sh -c 'ip link; uname -r'` or `kmatrix exec -- ./run-tests.sh` finds
//! them in the guest: the words in command position (the first word of a
//! simple command, after `|`, `;`, `&&`, `(`, `$(`, `then`, `do`, …, past
//! assignments and redirections; the command a wrapper such as `timeout 5`
//! or `env A=b` runs; a shell's `-c` script) that name an executable on the
//! host's `PATH` (shell keywords and built-ins left out), sent with their
//! libraries at their host paths. Comments, arguments and here-documents
//! name none, and scripts in other languages are not read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Built-ins of a POSIX shell or bash: never looked up on the PATH.
const BUILTINS: &[&str] = &[
    "echo", "printf", "test", "[", "read", "cd", "exit", "export", "set", "unset", "shift",
    "return", "local", "true", "false", "eval", "trap", "wait", "source", ".", ":", "alias",
    "unalias", "type", "let", "declare", "typeset", "readonly", "getopts", "pwd", "kill", "umask",
    "ulimit", "break", "continue", "hash", "jobs", "fg", "bg", "disown", "shopt", "pushd", "popd",
    "dirs", "mapfile", "enable", "help", "history", "times", "caller", "compgen", "complete",
];

/// Words after which a shell expects a command.
const KEYWORDS: &[&str] = &[
    "!", "if", "then", "else", "elif", "while", "until", "do", "{",
];

/// Words that end a compound command: what follows is no command.
const CLOSERS: &[&str] = &["fi", "done", "}", "esac"];

/// Built-ins that run the command after them.
const PREFIX_BUILTINS: &[&str] = &["exec", "command", "time", "nohup", "builtin"];

/// Host tools that run the command after their options (and, for some, a
/// number: `timeout 5`, `nice -n 10`).
const WRAPPERS: &[&str] = &[
    "env", "timeout", "nice", "nohup", "setsid", "stdbuf", "taskset", "chrt", "ionice", "xargs",
    "sudo", "strace", "ltrace", "unshare", "nsenter", "unbuffer", "setpriv", "capsh", "runuser",
];

/// Shells whose `-c` script is read for the tools it runs.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"];

/// The longest script read for the tools it runs.
const MAX_SCRIPT: u64 = 1 << 20;

/// The deepest nesting of `$(…)` and backquotes read.
const MAX_NESTING: usize = 64;

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

/// A word, its quotes removed.
#[derive(Debug, Default)]
struct Word {
    text: Vec<u8>,
    /// Whether it holds an expansion (`$x`, `$(…)`): its value is unknown.
    expanded: bool,
}

impl Word {
    fn is(&self, text: &str) -> bool {
        !self.expanded && self.text == text.as_bytes()
    }

    /// `NAME=value` or `NAME+=value`.
    fn is_assignment(&self) -> bool {
        self.text
            .iter()
            .position(|&c| c == b'=')
            .is_some_and(|eq| is_name(&self.text[..eq]))
    }

    /// The last path component, as a command is known by.
    fn base(&self) -> &[u8] {
        self.text.rsplit(|&c| c == b'/').next().unwrap_or_default()
    }

    fn base_in(&self, list: &[&str]) -> bool {
        !self.expanded && list.iter().any(|w| w.as_bytes() == self.base())
    }
}

/// What separates commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Separator {
    /// A newline, `;`, `&`, `&&`, `|`, `||` (in a case pattern, `|` is
    /// no separator, and is passed over there).
    End,
    /// `;;`, `;&`, `;;&`: the end of a case item.
    CaseItem,
}

/// Where the next word stands.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum State {
    /// In command position.
    #[default]
    Command,
    /// An argument.
    Argument,
    /// After a wrapper: options and numbers, then a command.
    Wrapped,
    /// After a shell: options, then with `-c` a script.
    Shell {
        /// Whether `-c` was given.
        script: bool,
    },
    /// Between `case` and `in`.
    CaseWord,
    /// A case item's patterns, up to `)`.
    Pattern,
    /// The name after `function`.
    FunctionName,
    /// Inside `[[ … ]]`.
    Condition,
}

/// The commands of one list, word by word.
#[derive(Default)]
struct Commands {
    /// The words found in command position.
    names: Vec<Vec<u8>>,
    state: State,
    /// Open subshells.
    depth: usize,
    /// Open `case`s.
    cases: usize,
    /// Whether the last word was a simple command's name (then `(` makes
    /// it a function's), and whether it was kept.
    after_name: Option<bool>,
    /// Whether a function definition's `)` is due.
    function_parens: bool,
}

impl Commands {
    fn word(&mut self, word: &Word) {
        self.after_name = None;
        match self.state {
            State::Command => self.command(word),
            State::Argument => {}
            State::Wrapped => {
                let option = word.text.starts_with(b"-")
                    || word.text.first().is_some_and(u8::is_ascii_digit)
                    || word.is_assignment();
                if !option {
                    self.command(word);
                }
            }
            State::Shell { script } => {
                if word.text.starts_with(b"-") {
                    let c = !word.text.starts_with(b"--") && word.text.contains(&b'c');
                    self.state = State::Shell {
                        script: script || c,
                    };
                } else {
                    if script && !word.expanded {
                        self.names.extend(Scanner::new(&word.text, 0).list(false));
                    }
                    self.state = State::Argument;
                }
            }
            State::CaseWord => {
                if word.is("in") {
                    self.cases += 1;
                    self.state = State::Pattern;
                }
            }
            State::Pattern => {
                if word.is("esac") {
                    self.cases = self.cases.saturating_sub(1);
                    self.state = State::Argument;
                }
            }
            State::FunctionName => {
                self.state = State::Command;
                self.after_name = Some(false);
            }
            State::Condition => {
                if word.is("]]") {
                    self.state = State::Argument;
                }
            }
        }
    }

    /// A word in command position.
    fn command(&mut self, word: &Word) {
        let is = |list: &[&str]| list.iter().any(|w| word.is(w));
        if word.is_assignment() || is(KEYWORDS) {
            self.state = State::Command;
        } else if word.expanded {
            self.state = State::Argument;
            self.after_name = Some(false);
        } else if is(CLOSERS) {
            if word.is("esac") {
                self.cases = self.cases.saturating_sub(1);
            }
            self.state = State::Argument;
        } else if word.is("case") {
            self.state = State::CaseWord;
        } else if word.is("for") || word.is("select") {
            self.state = State::Argument;
        } else if word.is("function") {
            self.state = State::FunctionName;
        } else if word.is("[[") {
            self.state = State::Condition;
        } else if is(PREFIX_BUILTINS) {
            self.state = State::Wrapped;
        } else if is(BUILTINS) {
            self.state = State::Argument;
            self.after_name = Some(false);
        } else {
            self.names.push(word.text.clone());
            self.state = if word.base_in(SHELLS) {
                State::Shell { script: false }
            } else if word.base_in(WRAPPERS) {
                State::Wrapped
            } else {
                State::Argument
            };
            self.after_name = Some(true);
        }
    }

    fn separator(&mut self, separator: Separator) {
        self.after_name = None;
        match self.state {
            State::Pattern | State::CaseWord | State::Condition => {}
            _ if separator == Separator::CaseItem && self.cases > 0 => {
                self.state = State::Pattern;
            }
            _ => self.state = State::Command,
        }
    }

    /// `(`: a subshell, or a function definition's parentheses.
    fn open(&mut self) {
        match (self.state, self.after_name.take()) {
            (State::Pattern | State::CaseWord | State::Condition, _) => {}
            (_, Some(kept)) => {
                if kept {
                    self.names.pop();
                }
                self.function_parens = true;
                self.state = State::Command;
            }
            _ => {
                self.depth += 1;
                self.state = State::Command;
            }
        }
    }

    /// Whether a `)` closes the list these commands are in (`$(…)`).
    fn closes_list(&self) -> bool {
        self.depth == 0
            && !self.function_parens
            && !matches!(self.state, State::Pattern | State::Condition)
    }

    /// `)`: the end of a subshell, a case pattern or a function's `()`.
    fn close(&mut self) {
        self.after_name = None;
        match self.state {
            State::Pattern => self.state = State::Command,
            State::Condition => {}
            _ if self.function_parens => {
                self.function_parens = false;
                self.state = State::Command;
            }
            _ => {
                self.depth = self.depth.saturating_sub(1);
                self.state = State::Argument;
            }
        }
    }
}

/// A shell script read for the commands it runs.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// How deep in `$(…)` and backquotes this text is.
    nesting: usize,
    /// Here-documents whose bodies follow the current line: each
    /// delimiter, and whether leading tabs are stripped (`<<-`).
    here_docs: Vec<(Vec<u8>, bool)>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8], nesting: usize) -> Self {
        Self {
            text,
            pos: 0,
            nesting,
            here_docs: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.get(self.pos + ahead).copied()
    }

    /// Consumes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        let next = self.peek() == Some(c);
        self.pos += usize::from(next);
        next
    }

    /// Reads commands up to the end, or with `nested` up to the `)` that
    /// closes a `$(`; the words in command position.
    fn list(&mut self, nested: bool) -> Vec<Vec<u8>> {
        let mut commands = Commands::default();
        if self.nesting > MAX_NESTING {
            self.pos = self.text.len();
            return commands.names;
        }
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\\' if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'\n' => {
                    self.pos += 1;
                    self.skip_here_docs();
                    commands.separator(Separator::End);
                }
                b';' => {
                    self.pos += 1;
                    let item = self.eat(b';') | self.eat(b'&');
                    commands.separator(if item {
                        Separator::CaseItem
                    } else {
                        Separator::End
                    });
                }
                b'&' if self.peek_at(1) == Some(b'>') => {
                    self.pos += 2;
                    let _ = self.eat(b'>');
                    self.redirect_target(&mut commands.names);
                }
                b'&' | b'|' => {
                    // `&`, `&&`, `|`, `||`, `|&`.
                    self.pos += 1;
                    let _ = self.eat(b'&') || self.eat(b'|');
                    commands.separator(Separator::End);
                }
                b'(' => {
                    self.pos += 1;
                    commands.open();
                }
                b')' => {
                    self.pos += 1;
                    if nested && commands.closes_list() {
                        break;
                    }
                    commands.close();
                }
                b'<' | b'>' => self.redirection(&mut commands.names),
                _ => {
                    let word = self.word(&mut commands.names);
                    let fd = !word.text.is_empty() && word.text.iter().all(u8::is_ascii_digit);
                    if !(fd && matches!(self.peek(), Some(b'<' | b'>'))) {
                        commands.word(&word);
                    }
                }
            }
        }
        commands.names
    }

    /// A redirection: its target is no command (`<(…)` and `>(…)` run
    /// one; `<<` starts a here-document).
    fn redirection(&mut self, names: &mut Vec<Vec<u8>>) {
        let first = self.text[self.pos];
        self.pos += 1;
        if self.eat(b'(') {
            names.extend(self.nested_list());
            return;
        }
        if first == b'<' && self.eat(b'<') {
            if self.eat(b'<') {
                self.redirect_target(names);
                return;
            }
            let strip = self.eat(b'-');
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.pos += 1;
            }
            let delimiter = self.word(names).text;
            self.here_docs.push((delimiter, strip));
            return;
        }
        while matches!(self.peek(), Some(b'<' | b'>' | b'&' | b'|')) {
            self.pos += 1;
        }
        self.redirect_target(names);
    }

    /// Skips a redirection's target word.
    fn redirect_target(&mut self, names: &mut Vec<Vec<u8>>) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        if self.peek().is_some_and(|c| !b"\n;&|()<>".contains(&c)) {
            self.word(names);
        }
    }

    /// Skips the bodies of the here-documents the last line started.
    fn skip_here_docs(&mut self) {
        for (delimiter, strip) in std::mem::take(&mut self.here_docs) {
            while self.pos < self.text.len() {
                let rest = &self.text[self.pos..];
                let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                let mut line = &rest[..end];
                self.pos += (end + 1).min(rest.len());
                if strip {
                    while let Some(tail) = line.strip_prefix(b"\t") {
                        line = tail;
                    }
                }
                if line == delimiter.as_slice() {
                    break;
                }
            }
        }
    }

    /// The commands of a `$(…)` whose `(` was just read.
    fn nested_list(&mut self) -> Vec<Vec<u8>> {
        self.nesting += 1;
        let names = self.list(true);
        self.nesting -= 1;
        names
    }

    /// Reads a word; the commands its substitutions run go to `names`.
    fn word(&mut self, names: &mut Vec<Vec<u8>>) -> Word {
        let mut word = Word::default();
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => {
                    break
                }
                b'\\' => {
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        self.pos += 1;
                        if c != b'\n' {
                            word.text.push(c);
                        }
                    }
                }
                b'\'' => {
                    self.pos += 1;
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        if c == b'\'' {
                            break;
                        }
                        word.text.push(c);
                    }
                }
                b'"' => {
                    self.pos += 1;
                    self.double_quoted(&mut word, names);
                }
                b'`' => {
                    self.pos += 1;
                    names.extend(self.backquoted());
                    word.expanded = true;
                }
                b'$' => self.dollar(&mut word, names),
                b'=' if self.peek_at(1) == Some(b'(') && is_name(&word.text) => {
                    // An array: `name=(a b c)`.
                    self.pos += 1;
                    word.text.push(b'=');
                    self.skip_balanced(b'(', b')');
                }
                _ => {
                    self.pos += 1;
                    word.text.push(c);
                }
            }
        }
        word
    }

    /// The rest of a `"…"` string.
    fn double_quoted(&mut self, word: &mut Word, names: &mut Vec<Vec<u8>>) {
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.pos += 1;
                    return;
                }
                b'\\' => {
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        self.pos += 1;
                        if !b"$`\"\\\n".contains(&c) {
                            word.text.push(b'\\');
                        }
                        if c != b'\n' {
                            word.text.push(c);
                        }
                    }
                }
                b'`' => {
                    self.pos += 1;
                    names.extend(self.backquoted());
                    word.expanded = true;
                }
                b'$' => self.dollar(word, names),
                _ => {
                    self.pos += 1;
                    word.text.push(c);
                }
            }
        }
    }

    /// The commands of a `` `…` `` whose opening backquote was just read.
    fn backquoted(&mut self) -> Vec<Vec<u8>> {
        let mut inner = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'`' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        self.pos += 1;
                        if !b"$`\\".contains(&next) {
                            inner.push(b'\\');
                        }
                        inner.push(next);
                    }
                }
                _ => inner.push(c),
            }
        }
        Scanner::new(&inner, self.nesting + 1).list(false)
    }

    /// An expansion at a `$`: its value is unknown; a command
    /// substitution's commands go to `names`.
    fn dollar(&mut self, word: &mut Word, names: &mut Vec<Vec<u8>>) {
        self.pos += 1;
        match self.peek() {
            Some(b'(') if self.peek_at(1) == Some(b'(') => {
                self.skip_balanced(b'(', b')');
                word.expanded = true;
            }
            Some(b'(') => {
                self.pos += 1;
                names.extend(self.nested_list());
                word.expanded = true;
            }
            Some(b'{') => {
                self.skip_balanced(b'{', b'}');
                word.expanded = true;
            }
            Some(b'\'') => {
                // `$'…'`: a string with backslash escapes.
                self.pos += 1;
                while let Some(c) = self.peek() {
                    self.pos += 1;
                    match c {
                        b'\'' => break,
                        b'\\' => {
                            word.text.push(c);
                            if let Some(next) = self.peek() {
                                self.pos += 1;
                                word.text.push(next);
                            }
                        }
                        _ => word.text.push(c),
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || b"_@*#?$!-".contains(&c) => {
                self.pos += 1;
                if c.is_ascii_alphabetic() || c == b'_' {
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        self.pos += 1;
                    }
                }
                word.expanded = true;
            }
            _ => word.text.push(b'$'),
        }
    }

    /// Skips from an `open` to the `close` that balances it, quotes
    /// respected.
    fn skip_balanced(&mut self, open: u8, close: u8) {
        let mut depth = 0usize;
        let mut quote = None;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(b'"'), b'\\') | (None, b'\\') => self.pos += 1,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(c),
                (None, _) if c == open => depth += 1,
                (None, _) if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether `text` is a variable's name, as before an assignment's `=` (or
/// `+=`).
fn is_name(text: &[u8]) -> bool {
    let name = text.strip_suffix(b"+").unwrap_or(text);
    name.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `text` runs, unresolved.
    fn commands(text: &str) -> Vec<String> {
        Scanner::new(text.as_bytes(), 0)
            .list(false)
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect()
    }

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
    fn only_command_positions_name_tools() {
        assert!(commands("true # needs clang").is_empty());
        assert!(commands("# clang\n: clang").is_empty());
        assert_eq!(commands("echo clang gcc; A=b B=c ip link"), ["ip"]);
        assert_eq!(
            commands("a && b || c | d; (e; f) & g\nh"),
            ["a", "b", "c", "d", "e", "f", "g", "h"]
        );
        assert_eq!(
            commands("if a; then b; elif c; then d; else e; fi; while f; do g; done"),
            ["a", "b", "c", "d", "e", "f", "g"]
        );
        assert_eq!(
            commands("for x in clang gcc; do a \"$x\"; done; x=$(b -r) y=`c`"),
            ["a", "b", "c"]
        );
        assert_eq!(commands("echo \"k $(a \"$(b)\")\" 'no $(c)'"), ["a", "b"]);
        assert_eq!(
            commands("a 2>/dev/null >out <in 3>&1 | b <<< here"),
            ["a", "b"]
        );
        assert_eq!(
            commands("cat <<EOF\nclang is text\nEOF\nb\ncat <<-'X'\n\tgcc\n\tX\nc"),
            ["cat", "b", "cat", "c"]
        );
        assert_eq!(
            commands("case $x in a|b) c;; (d) e; f;; esac; g"),
            ["c", "e", "f", "g"]
        );
        assert_eq!(
            commands("f() { a; }; function g { b; }; function h() { c; }"),
            ["a", "b", "c"]
        );
        assert_eq!(
            commands("timeout 5 tc qdisc; env -i A=1 ip link; exec a; x=$(b) c"),
            ["timeout", "tc", "env", "ip", "a", "b", "c"]
        );
        assert_eq!(commands("sh -ec 'a; b # c'"), ["sh", "a", "b"]);
        assert_eq!(commands("bash run.sh clang"), ["bash"]);
        assert_eq!(commands("[[ -f x && -d y ]] && a"), ["a"]);
        assert_eq!(commands("diff <(a) >(b) c"), ["diff", "a", "b"]);
        assert_eq!(commands("x=(clang gcc); \"$x\" y; a\\\n b"), ["a"]);
        assert!(commands(&"$(".repeat(10_000)).is_empty());
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
