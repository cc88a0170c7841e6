//! The guest's end of the results stream.
//!
//! Frames are encoded into one buffer that is written out when it fills,
//! when it has held a frame for [`FLUSH_AFTER`], or when the agent is about
//! to do something slow. A burst of small results thus costs one `write`,
//! with no thread hand-off per frame, and no result waits long.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kmatrix_protocol::input::read_input;
use kmatrix_protocol::{encode, Frame, Input, ACK};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Write once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

/// Write once the oldest buffered frame is this old.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// The results port, with its buffer.
pub struct Channel {
    port: File,
    buf: Vec<u8>,
    oldest: Option<Instant>,
    error: Option<io::Error>,
}

impl Channel {
    /// Wraps the open port.
    pub fn open(port: File) -> Self {
        Self {
            port,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            oldest: None,
            error: None,
        }
    }

    /// Queues a frame, writing the buffer if it is due.
    pub fn send(&mut self, frame: &Frame) {
        if let Err(err) = encode(frame, &mut self.buf) {
            let note = Frame::AgentError(format!("a result could not be sent: {err}"));
            encode(&note, &mut self.buf).expect("a short error frame encodes");
        }
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        if self.buf.len() >= FLUSH_AT || oldest.elapsed() >= FLUSH_AFTER {
            self.flush();
        }
    }

    /// Writes out everything queued.
    pub fn flush(&mut self) {
        self.oldest = None;
        if self.buf.is_empty() || self.error.is_some() {
            self.buf.clear();
            return;
        }
        if let Err(err) = self.port.write_all(&self.buf) {
            self.error = Some(err);
        }
        self.buf.clear();
    }

    /// Reads the host's next input message.
    pub fn read_input(&mut self) -> io::Result<Input> {
        read_input(&mut self.port)
    }

    /// Reads the `len` bytes of a file the host sends into `path` (parents
    /// created). The bytes are read even if the file cannot be written, so
    /// that the stream stays in step.
    pub fn receive_file(&mut self, path: &std::path::Path, mode: u32, len: u64) -> io::Result<()> {
        let mut file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| File::create(path));
        let mut left = len;
        let mut buf = vec![0; 256 * 1024];
        while left > 0 {
            let n = (left as usize).min(buf.len());
            self.port.read_exact(&mut buf[..n])?;
            if let Ok(out) = &mut file {
                if let Err(err) = out.write_all(&buf[..n]) {
                    file = Err(err);
                }
            }
            left -= n as u64;
        }
        file?.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Sends `Done`, writes everything, then waits for the host's
    /// acknowledgment (at most `ack_timeout`).
    pub fn finish(mut self, ack_timeout: Duration) -> io::Result<()> {
        self.send(&Frame::Done);
        self.flush();
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        let timeout = PollTimeout::try_from(ack_timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.port.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no acknowledgment from the host",
            ));
        }
        let mut ack = [0u8];
        self.port.read_exact(&mut ack)?;
        if ack[0] != ACK {
            return Err(io::Error::other(format!(
                "unexpected ack byte {:#x}",
                ack[0]
            )));
        }
        Ok(())
    }
}
