//! The kernel's log, read from `/dev/kmsg` without blocking: opened when the
//! agent starts (so a VM restored from its saved state reads it from where
//! the saved agent stood), drained around every load and case so that what
//! the kernel printed goes with the test that made it print.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use kmatrix_protocol::splat;

/// A record is at most this long (the kernel's own `CONSOLE_EXT_LOG_MAX`
/// is 8 KiB).
const RECORD: usize = 16 * 1024;

/// The kernel's log, from the last drain on.
pub struct KernelLog {
    file: Option<File>,
    buf: Vec<u8>,
    /// Lines read ahead ([`read_ahead`](Self::read_ahead)), not drained yet.
    ahead: Vec<String>,
    /// The last line of the previous drain: a splat's `cut here` line may
    /// have been read just before its marker.
    last: Option<String>,
}

impl KernelLog {
    /// Opens `/dev/kmsg`; a kernel without it gives an empty log.
    pub fn open() -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok();
        Self {
            file,
            buf: vec![0; RECORD],
            ahead: Vec::new(),
            last: None,
        }
    }

    /// A log read from `file` instead, for tests: a datagram socket keeps
    /// `/dev/kmsg`'s one record per read.
    #[cfg(test)]
    pub(crate) fn from_file(file: File) -> Self {
        Self {
            file: Some(file),
            buf: vec![0; RECORD],
            ahead: Vec::new(),
            last: None,
        }
    }

    /// The descriptor to poll for new records, if the log is open.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().map(AsFd::as_fd)
    }

    /// The messages logged since the last drain, one line each (at most
    /// [`splat::MAX_LINES`]: from a splat's marker on when there is one,
    /// else the newest). Costs one `read` when there are none.
    pub fn drain(&mut self) -> Vec<String> {
        self.read_ahead();
        let lines = splat::keep(std::mem::take(&mut self.ahead));
        if let Some(line) = lines.last() {
            self.last = Some(line.clone());
        }
        lines
    }

    /// Reads what the kernel logged so far, for the next drain: done while
    /// the agent would otherwise wait (for its port, at boot), it takes
    /// reading the boot's log off the run.
    pub fn read_ahead(&mut self) {
        let Some(file) = &mut self.file else {
            return;
        };
        loop {
            match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(line) = message(&self.buf[..n]) {
                        self.ahead.push(line);
                    }
                }
                // Records overwritten before they were read: go on from
                // the oldest left.
                Err(err) if err.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// Like [`drain`](Self::drain), led by the last line drained before
    /// (when there is one and anything new came).
    pub fn drain_with_previous(&mut self) -> Vec<String> {
        let previous = self.last.take();
        let mut lines = self.drain();
        if let (Some(previous), false) = (previous, lines.is_empty()) {
            lines.insert(0, previous);
        }
        lines
    }
}

/// The message of one `/dev/kmsg` record (`PRI,SEQ,USEC,FLAGS;TEXT\n`
/// followed by ` KEY=VALUE` lines), its escapes (`\x0a`) left as they are.
fn message(record: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    let (_, rest) = text.split_once(';')?;
    let line = rest.split('\n').next().unwrap_or_default();
    Some(line.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn a_record_gives_its_message_without_its_dictionary() {
        assert_eq!(
            message(
                b"4,1234,5678901,-;WARNING: CPU: 0 PID: 1 at x\n SUBSYSTEM=cpu\n DEVICE=+cpu:0\n"
            )
            .as_deref(),
            Some("WARNING: CPU: 0 PID: 1 at x")
        );
        assert_eq!(message(b"garbage"), None);
    }

    /// A log whose records are written to the returned socket.
    pub(crate) fn fake_log() -> (KernelLog, UnixDatagram) {
        let (reader, writer) = UnixDatagram::pair().expect("socket pair");
        reader.set_nonblocking(true).expect("non-blocking");
        let file = File::from(OwnedFd::from(reader));
        (KernelLog::from_file(file), writer)
    }

    /// Writes `lines` as kernel records, with a dictionary line each.
    pub(crate) fn log(kernel: &UnixDatagram, lines: &[&str]) {
        for (seq, line) in lines.iter().enumerate() {
            let record = format!("4,{seq},{},-;{line}\n SUBSYSTEM=test\n", seq * 1000);
            kernel.send(record.as_bytes()).expect("send a record");
        }
    }

    #[test]
    fn a_drain_takes_what_was_logged_since_the_last() {
        let (mut log, kernel) = fake_log();
        assert!(log.drain().is_empty());
        self::log(&kernel, &["bpf: first", "bpf: second"]);
        assert_eq!(log.drain(), ["bpf: first", "bpf: second"]);
        assert!(log.drain().is_empty());
        self::log(&kernel, &["bpf: third"]);
        assert_eq!(log.drain(), ["bpf: third"]);
    }

    #[test]
    fn lines_read_ahead_come_with_the_next_drain_in_order() {
        let (mut log, kernel) = fake_log();
        self::log(&kernel, &["boot: one", "boot: two"]);
        log.read_ahead();
        self::log(&kernel, &["boot: three"]);
        log.read_ahead();
        self::log(&kernel, &["bpf: four"]);
        assert_eq!(
            log.drain(),
            ["boot: one", "boot: two", "boot: three", "bpf: four"]
        );
        assert!(log.drain().is_empty());
    }

    #[test]
    fn a_cut_here_line_drained_before_its_marker_leads_the_next_drain() {
        let (mut log, kernel) = fake_log();
        self::log(&kernel, &["------------[ cut here ]------------"]);
        assert_eq!(log.drain(), ["------------[ cut here ]------------"]);
        self::log(
            &kernel,
            &["WARNING: CPU: 0 PID: 1 at kernel/bpf/x.c:1", "Call Trace:"],
        );
        assert_eq!(
            log.drain_with_previous(),
            [
                "------------[ cut here ]------------",
                "WARNING: CPU: 0 PID: 1 at kernel/bpf/x.c:1",
                "Call Trace:"
            ]
        );
        // Nothing new: the previous line alone is no news.
        assert!(log.drain_with_previous().is_empty());
    }
}
