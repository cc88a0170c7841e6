//! What `kmatrix exec` shows: the program's output as it arrives (each line
//! prefixed by its kernel when more than one runs), and at the end how it
//! ended on each kernel. The program's output passes byte for byte, as a
//! runner's must (cargo-nextest and pipes read it); the agent's messages
//! and kmatrix's notices are shown through [`Printable`].

use std::collections::HashMap;
use std::io::Write;

use kmatrix_protocol::report::EXIT_SUCCESS_STATUS;
use kmatrix_protocol::Stream;

use super::printable::Printable;
use super::Summary;
use crate::event::RunEvent;

/// The longest line kept whole when prefixing; longer ones are shown in
/// pieces of this size.
const MAX_LINE: usize = 1 << 20;

/// Echoes the program's output to `out` and `err`.
pub struct ExecEcho<O, E> {
    out: O,
    err: E,
    prefix: bool,
    /// Each (kernel, stream)'s unfinished line, when prefixing.
    partial: HashMap<(String, bool), Vec<u8>>,
}

impl<O: Write, E: Write> ExecEcho<O, E> {
    /// An echo for a run on `kernels` kernels.
    pub fn new(kernels: usize, out: O, err: E) -> Self {
        Self {
            out,
            err,
            prefix: kernels > 1,
            partial: HashMap::new(),
        }
    }

    /// Shows one event.
    pub fn report(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::Output {
                kernel,
                stream,
                data,
            } => {
                let is_err = *stream == Stream::Stderr;
                if !self.prefix {
                    return self.write(is_err, data);
                }
                let buffer = self.partial.entry((kernel.clone(), is_err)).or_default();
                let before = buffer.len();
                buffer.extend_from_slice(data);
                // Only the new bytes can hold the last newline.
                let end = match data.iter().rposition(|&b| b == b'\n') {
                    Some(end) => before + end,
                    // A line that never ends is shown in pieces.
                    None if buffer.len() >= MAX_LINE => {
                        let mut text = format!("[{kernel}] ").into_bytes();
                        text.append(buffer);
                        text.push(b'\n');
                        return self.write(is_err, &text);
                    }
                    None => return Ok(()),
                };
                let complete: Vec<u8> = buffer.drain(..=end).collect();
                let mut text = Vec::with_capacity(complete.len() + 16);
                for line in complete.split_inclusive(|&b| b == b'\n') {
                    text.extend_from_slice(format!("[{kernel}] ").as_bytes());
                    text.extend_from_slice(line);
                }
                self.write(is_err, &text)
            }
            RunEvent::Exited { kernel, .. } | RunEvent::KernelFinished { kernel, .. } => {
                self.flush_partial(kernel)
            }
            RunEvent::AgentError { kernel, message } => writeln!(
                Printable::new(&mut self.err),
                "[{kernel}] kmatrix: agent: {message}"
            ),
            RunEvent::Splat { kernel, lines, .. } => {
                let mut err = Printable::new(&mut self.err);
                writeln!(err, "[{kernel}] kmatrix: the kernel printed a splat:")?;
                for line in lines {
                    writeln!(err, "[{kernel}]   {line}")?;
                }
                Ok(())
            }
            RunEvent::Notice { kernel, message } => {
                writeln!(
                    Printable::new(&mut self.err),
                    "[{kernel}] kmatrix: {message}"
                )
            }
            RunEvent::RunStarted { .. }
            | RunEvent::Stats { .. }
            | RunEvent::Probed { .. }
            | RunEvent::KernelStarted { .. }
            | RunEvent::KernelBooted { .. }
            | RunEvent::Outcome { .. }
            | RunEvent::RunFinished => Ok(()),
        }
    }

    fn flush_partial(&mut self, kernel: &str) -> std::io::Result<()> {
        for is_err in [false, true] {
            if let Some(rest) = self.partial.remove(&(kernel.to_owned(), is_err)) {
                if !rest.is_empty() {
                    let mut text = format!("[{kernel}] ").into_bytes();
                    text.extend_from_slice(&rest);
                    text.push(b'\n');
                    self.write(is_err, &text)?;
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, is_err: bool, data: &[u8]) -> std::io::Result<()> {
        let stream: &mut dyn Write = if is_err { &mut self.err } else { &mut self.out };
        stream.write_all(data)?;
        stream.flush()
    }
}

/// One line per kernel: how the program ended there, and why a kernel
/// failed (with its console's tail); after a failure, the command line
/// that runs the program again on that kernel.
pub fn statuses(summary: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    for (c, column) in summary.columns.iter().enumerate() {
        let kernel = &column.label;
        // A program that exited 0 still fails where the kernel printed a
        // splat (its test's, or outside any).
        let failed_tests: Vec<&str> = (0..summary.rows.len())
            .filter(|&r| {
                matches!(summary.cell(c, r), Some(super::Cell::Done(outcome)) if outcome.is_failure())
            })
            .map(|r| summary.rows[r].as_str())
            .collect();
        for (reason, _) in &column.splats {
            writeln!(out, "kmatrix: {kernel}: FAILED: {reason}")?;
        }
        let failed = match (&column.failure, column.exit.as_deref()) {
            (Some(reason), _) => {
                writeln!(out, "kmatrix: {kernel}: FAILED: {reason}")?;
                if let Some(tail) = column.console_tail.as_deref().filter(|t| !t.is_empty()) {
                    writeln!(out, "kmatrix: {kernel}: console (last lines):\n{tail}")?;
                }
                true
            }
            (None, Some(EXIT_SUCCESS_STATUS)) if !failed_tests.is_empty() => {
                writeln!(
                    out,
                    "kmatrix: {kernel}: FAILED: {EXIT_SUCCESS_STATUS}, but {} failed",
                    failed_tests.join(", ")
                )?;
                true
            }
            (None, Some(EXIT_SUCCESS_STATUS)) if !column.splats.is_empty() => {
                writeln!(
                    out,
                    "kmatrix: {kernel}: FAILED: {EXIT_SUCCESS_STATUS}, but the kernel printed a splat"
                )?;
                true
            }
            (None, Some(EXIT_SUCCESS_STATUS)) => {
                writeln!(out, "kmatrix: {kernel}: ok ({EXIT_SUCCESS_STATUS})")?;
                false
            }
            (None, Some(status)) => {
                writeln!(out, "kmatrix: {kernel}: FAILED: {status}")?;
                true
            }
            (None, None) => {
                writeln!(out, "kmatrix: {kernel}: FAILED: the program never ended")?;
                true
            }
        };
        if let Some(command) = summary.reproduce(kernel, &[]).filter(|_| failed) {
            writeln!(out, "kmatrix: {kernel}: reproduce: {command}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(kernel: &str, data: &[u8]) -> RunEvent {
        RunEvent::Output {
            kernel: kernel.into(),
            stream: Stream::Stdout,
            data: data.to_vec(),
        }
    }

    #[test]
    fn lines_are_prefixed_by_kernel_when_several_run() {
        let mut echo = ExecEcho::new(2, Vec::new(), Vec::new());
        echo.report(&output("6.1", b"hel")).unwrap();
        echo.report(&output("7.3", b"one\ntw")).unwrap();
        echo.report(&output("6.1", b"lo\n")).unwrap();
        echo.report(&RunEvent::Exited {
            kernel: "7.3".into(),
            info: kmatrix_protocol::ExitInfo::Code(0),
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(echo.out).unwrap(),
            "[7.3] one\n[6.1] hello\n[7.3] tw\n"
        );
    }

    #[test]
    fn agent_messages_and_notices_are_shown_not_obeyed() {
        let mut echo = ExecEcho::new(1, Vec::new(), Vec::new());
        echo.report(&RunEvent::AgentError {
            kernel: "6.1".into(),
            message: "\u{1b}]0;owned\u{7} \u{9b}2J".into(),
        })
        .unwrap();
        echo.report(&RunEvent::Notice {
            kernel: "6.1".into(),
            message: "saved \u{9d}0;t\u{9c}".into(),
        })
        .unwrap();
        echo.report(&output("6.1", b"\x1b[32mok\x1b[0m\n")).unwrap();
        assert_eq!(
            String::from_utf8(echo.err).unwrap(),
            "[6.1] kmatrix: agent: ?]0;owned? ?2J\n[6.1] kmatrix: saved ?0;t?\n"
        );
        assert_eq!(echo.out, b"\x1b[32mok\x1b[0m\n");
    }

    #[test]
    fn a_long_line_is_not_rescanned() {
        let mut echo = ExecEcho::new(2, Vec::new(), Vec::new());
        let chunk = vec![b'x'; 64 * 1024];
        let start = std::time::Instant::now();
        for _ in 0..256 {
            echo.report(&output("6.1", &chunk)).unwrap();
        }
        echo.report(&output("6.1", b"\n")).unwrap();
        // Shown in 1 MiB pieces, each prefixed.
        assert_eq!(echo.out.len(), 16 * 1024 * 1024 + 17 * "[6.1] \n".len());
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }
}
