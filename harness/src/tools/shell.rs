//! The small shell scanner: reads shell text (quotes, escapes, comments,
//! redirections, here-documents, `$(…)`, backquotes and `${…}`) into the
//! words and separators `commands.rs` places, and collects the commands run
//! by substitutions, however deeply nested (up to [`MAX_NESTING`]).

use super::commands::{is_name, Commands, Separator, Word};

/// The deepest nesting of `$(…)` and backquotes read.
const MAX_NESTING: usize = 64;

/// A shell script read for the commands it runs.
pub(super) struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// How deep in `$(…)` and backquotes this text is.
    nesting: usize,
    /// Here-documents whose bodies follow the current line: each
    /// delimiter, and whether leading tabs are stripped (`<<-`).
    here_docs: Vec<(Vec<u8>, bool)>,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a [u8], nesting: usize) -> Self {
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
    pub(super) fn list(&mut self, nested: bool) -> Vec<Vec<u8>> {
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
}
