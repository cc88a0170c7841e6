//! Text that reaches a terminal: what a guest sent (verifier logs, agent
//! messages and notices, a kernel's console, why a kernel failed) may hold
//! control sequences that would move the cursor, retitle the window or
//! worse. [`shown`] is the one rule: every C0 and C1 control and DEL but
//! newline and tab is shown as `?`. [`Printable`] applies it to a writer,
//! [`clean`] to a string.

use std::io::Write;

/// How `c` is shown on a terminal: a C0 or C1 control (U+0080..U+009F,
/// such as U+009B, CSI) or DEL as `?`, but newline and tab as they are.
pub fn shown(c: char) -> char {
    if c.is_control() && c != '\n' && c != '\t' {
        '?'
    } else {
        c
    }
}

/// `text` as [`shown`] shows it.
pub fn clean(text: &str) -> String {
    text.chars().map(shown).collect()
}

/// A writer that shows what it is given as [`shown`] does; bytes that are
/// not UTF-8 are shown as `?` too. A character split across writes is
/// shown once it is whole.
pub struct Printable<W> {
    out: W,
    /// The start of a character the last write cut short.
    pending: Vec<u8>,
}

impl<W: Write> Printable<W> {
    /// Shows what is written on `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            pending: Vec::new(),
        }
    }
}

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let bytes = self.pending.as_slice();
        let mut text = String::with_capacity(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            let (valid, bad) = match std::str::from_utf8(&bytes[at..]) {
                Ok(valid) => (valid, None),
                Err(e) => {
                    let valid = &bytes[at..at + e.valid_up_to()];
                    let valid = std::str::from_utf8(valid).expect("valid up to here");
                    (valid, Some(e.error_len()))
                }
            };
            text.extend(valid.chars().map(shown));
            at += valid.len();
            match bad {
                None => {}
                Some(Some(len)) => {
                    text.push('?');
                    at += len;
                }
                // The rest of this character comes with the next write.
                Some(None) => break,
            }
        }
        self.pending.drain(..at);
        self.out.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_obeyed() {
        let mut out = Printable::new(Vec::new());
        write!(out, "R1 \x1b]0;owned\x07 é\tok\r\n").unwrap();
        assert_eq!(
            String::from_utf8(out.out).unwrap(),
            "R1 ?]0;owned? é\tok?\n"
        );
    }

    #[test]
    fn c1_controls_and_stray_bytes_are_shown_not_obeyed() {
        let mut out = Printable::new(Vec::new());
        out.write_all("\u{9b}31m red \u{85}\u{9d}0;t\u{9c} ".as_bytes())
            .unwrap();
        // A raw CSI byte, and a character split across writes.
        out.write_all(b"\x9b2J \xc3").unwrap();
        out.write_all(b"\xa9\n").unwrap();
        assert_eq!(
            String::from_utf8(out.out).unwrap(),
            "?31m red ??0;t? ?2J é\n"
        );
        assert_eq!(clean("a\u{9b}b\u{1b}c\n\td"), "a?b?c\n\td");
    }
}
