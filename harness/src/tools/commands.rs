//! Which words of a shell text stand in command position: a state machine
//! fed words and separators by the scanner (`shell.rs`) that keeps the
//! first word of each simple command, past assignments, keywords and
//! built-ins, and follows wrappers (`timeout 5`, `env A=b`), a shell's `-c`
//! script, `case` patterns, function definitions and `[[ … ]]`.

use super::shell::Scanner;
use super::SHELLS;

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

/// A word, its quotes removed.
#[derive(Debug, Default)]
pub(super) struct Word {
    pub(super) text: Vec<u8>,
    /// Whether it holds an expansion (`$x`, `$(…)`): its value is unknown.
    pub(super) expanded: bool,
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
pub(super) enum Separator {
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
pub(super) struct Commands {
    /// The words found in command position.
    pub(super) names: Vec<Vec<u8>>,
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
    pub(super) fn word(&mut self, word: &Word) {
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

    pub(super) fn separator(&mut self, separator: Separator) {
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
    pub(super) fn open(&mut self) {
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
    pub(super) fn closes_list(&self) -> bool {
        self.depth == 0
            && !self.function_parens
            && !matches!(self.state, State::Pattern | State::Condition)
    }

    /// `)`: the end of a subshell, a case pattern or a function's `()`.
    pub(super) fn close(&mut self) {
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

/// Whether `text` is a variable's name, as before an assignment's `=` (or
/// `+=`).
pub(super) fn is_name(text: &[u8]) -> bool {
    let name = text.strip_suffix(b"+").unwrap_or(text);
    name.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}
