//! Text that reaches a terminal: what a guest sent (verifier logs, agent
//! messages, a kernel's console) may hold control sequences that would
//! move the cursor, retitle the window or worse. [`Printable`] shows each
//! control byte but newline and tab as `?` instead.

use std::io::Write;

/// A writer that replaces control bytes (but `\n` and `\t`) with `?`.
pub struct Printable<W>(pub W);

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let clean: Vec<u8> = buf
            .iter()
            .map(|&b| match b {
                b'\n' | b'\t' => b,
                0..=0x1f | 0x7f => b'?',
                _ => b,
            })
            .collect();
        self.0.write_all(&clean)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_obeyed() {
        let mut out = Printable(Vec::new());
        write!(out, "R1 \x1b]0;owned\x07 é\tok\r\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), "R1 ?]0;owned? é\tok?\n");
    }
}
