//! The guest's end of the results stream.
//!
//! Frames are handed to a writer thread that encodes them into one buffer and
//! writes it whenever its queue runs dry, so a burst of small results costs
//! one `write` rather than one per frame, while a lone result still goes out
//! at once.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use kmatrix_protocol::{encode, Frame, ACK};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Flush early once this much is buffered, even if more frames are queued.
const FLUSH_AT: usize = 64 * 1024;

/// A handle for sending frames to the host.
pub struct Channel {
    tx: mpsc::Sender<Frame>,
    writer: JoinHandle<io::Result<File>>,
}

impl Channel {
    /// Starts the writer thread on the open port.
    pub fn open(port: File) -> Self {
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::spawn(move || write_frames(port, rx));
        Self { tx, writer }
    }

    /// Queues a frame. Never blocks on the port.
    pub fn send(&self, frame: Frame) {
        // A send fails only if the writer died; `finish` reports why.
        let _ = self.tx.send(frame);
    }

    /// Sends `Done`, waits for everything to be written, then for the host's
    /// acknowledgment (at most `ack_timeout`).
    pub fn finish(self, ack_timeout: Duration) -> io::Result<()> {
        self.send(Frame::Done);
        drop(self.tx);
        let mut port = self
            .writer
            .join()
            .map_err(|_| io::Error::other("writer thread panicked"))??;
        let timeout = PollTimeout::try_from(ack_timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no acknowledgment from the host",
            ));
        }
        let mut ack = [0u8];
        port.read_exact(&mut ack)?;
        if ack[0] != ACK {
            return Err(io::Error::other(format!(
                "unexpected ack byte {:#x}",
                ack[0]
            )));
        }
        Ok(())
    }
}

fn write_frames(mut port: File, rx: mpsc::Receiver<Frame>) -> io::Result<File> {
    let mut buf = Vec::with_capacity(FLUSH_AT);
    while let Ok(frame) = rx.recv() {
        push(&frame, &mut buf);
        while let Ok(frame) = rx.try_recv() {
            push(&frame, &mut buf);
            if buf.len() >= FLUSH_AT {
                port.write_all(&buf)?;
                buf.clear();
            }
        }
        port.write_all(&buf)?;
        buf.clear();
    }
    Ok(port)
}

fn push(frame: &Frame, buf: &mut Vec<u8>) {
    if let Err(err) = encode(frame, buf) {
        let note = Frame::AgentError(format!("a result could not be sent: {err}"));
        encode(&note, buf).expect("a short error frame encodes");
    }
}
