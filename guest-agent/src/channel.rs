//! The guest's end of the results stream.
//!
//! Frames are encoded into the [`Queue`], which is written out when it
//! fills, when it has held a frame for [`FLUSH_AFTER`], or when the agent is
//! about to do something slow or not yet seen to finish. A burst of small
//! results thus costs one `write`, with no thread hand-off per frame, and
//! no result waits long; the host reads what a hung guest had queued out of
//! its memory ([`Channel::send_queue`]).

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use kmatrix_protocol::input::read_input;
use kmatrix_protocol::{
    encode, encode_case_ran, encode_into, CaseOutcome, CaseRan, CaseResult, Frame, Input, ACK,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::queue::Queue;

/// Write once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

/// Write once the oldest buffered frame is this old.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// How often, in bytes queued, the age of the oldest queued frame is
/// checked.
const CLOCK_EVERY: usize = 2048;

/// The results port, with its buffer.
pub struct Channel {
    port: File,
    /// The host's input, read in large blocks: a run's files are many small
    /// messages, and each read of the port is slow under emulation.
    input: InputBuffer,
    /// The directory the last file went into, known to exist.
    last_dir: Option<std::path::PathBuf>,
    queue: Queue,
    /// A frame too large for the queue, being encoded.
    frame: Vec<u8>,
    oldest: Option<Instant>,
    /// Object, program and case of the last case result queued: set by
    /// [`send_ran`](Self::send_ran), cleared by a case result sent through
    /// [`send`](Self::send) (the host's decoder reads a next-case frame
    /// after the case before it).
    last_case: Option<[u32; 3]>,
    error: Option<io::Error>,
}

impl Channel {
    /// Wraps the open port.
    pub fn open(port: File) -> Self {
        Self {
            port,
            input: InputBuffer::default(),
            last_dir: None,
            queue: Queue::allocate(),
            frame: Vec::new(),
            oldest: None,
            last_case: None,
            error: None,
        }
    }

    /// Queues a frame, encoded in place, writing the queue out if it is
    /// due. A frame larger than the queue is written at once.
    pub fn send(&mut self, frame: &Frame) {
        if let Frame::Case(_) = frame {
            self.last_case = None;
        }
        let before = self.queue.len();
        let queued = match self.queue.push_with(|free| encode_into(frame, free)) {
            Ok(true) => true,
            Ok(false) if before == 0 => false,
            Ok(false) => {
                self.flush();
                self.queue
                    .push_with(|free| encode_into(frame, free))
                    .unwrap_or(false)
            }
            Err(err) => {
                let note = Frame::AgentError(format!("a result could not be sent: {err}"));
                self.queue
                    .push_with(|free| encode_into(&note, free))
                    .unwrap_or(false)
            }
        };
        if !queued {
            self.write_alone(frame);
            return;
        }
        self.pushed(before);
    }

    /// Queues a case's result: one that ran plainly ([`CaseRan`], a
    /// suite's commonest) through [`send_ran`](Self::send_ran); any other
    /// as a [`Frame::Case`].
    #[inline]
    pub fn send_case(
        &mut self,
        [object, program, case]: [u32; 3],
        outcome: CaseOutcome,
        kernel_log: Vec<String>,
    ) {
        match CaseRan::of(object, program, case, &outcome, &kernel_log) {
            Some(ran) => self.send_ran(ran),
            None => self.send(&Frame::Case(CaseResult {
                object,
                program,
                case,
                outcome,
                kernel_log,
            })),
        }
    }

    /// Queues a plain case's result from its figures, without a [`Frame`]
    /// made and dropped per case, in a few bytes when it follows the last
    /// case queued.
    #[inline]
    pub fn send_ran(&mut self, ran: CaseRan) {
        let before = self.queue.len();
        let last = self.last_case;
        let push = |free: &mut [u8]| Ok::<_, Infallible>(encode_case_ran(ran, last, free));
        if let Ok(true) = self.queue.push_with(push) {
            self.last_case = Some(ran.id());
            return self.pushed(before);
        }
        // Figures too long for the fast writer (the queue, written out
        // once it holds FLUSH_AT, has room for any frame it writes).
        self.send(&ran.frame());
    }

    /// Writes the queue out if it is due, a frame having been queued
    /// after `before` bytes.
    #[inline]
    fn pushed(&mut self, before: usize) {
        let queued = self.queue.len();
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        // The clock is read once per CLOCK_EVERY bytes queued: under
        // emulation a read costs as much as queuing a small frame.
        let check = before / CLOCK_EVERY != queued / CLOCK_EVERY;
        if queued >= FLUSH_AT || (check && oldest.elapsed() >= FLUSH_AFTER) {
            self.flush();
        }
    }

    /// Writes what is queued, then `frame`, which does not fit the queue.
    fn write_alone(&mut self, frame: &Frame) {
        self.flush();
        self.frame.clear();
        if let Err(err) = encode(frame, &mut self.frame) {
            self.frame.clear();
            let note = Frame::AgentError(format!("a result could not be sent: {err}"));
            encode(&note, &mut self.frame).expect("a short error frame encodes");
        }
        self.write(true);
    }

    /// Writes out everything queued.
    pub fn flush(&mut self) {
        self.oldest = None;
        if !self.queue.is_empty() {
            self.write(false);
        }
    }

    /// Writes the queue, or the frame being encoded, out.
    fn write(&mut self, frame: bool) {
        let bytes = if frame {
            &self.frame[..]
        } else {
            self.queue.queued()
        };
        let len = bytes.len() as u64;
        if self.error.is_none() {
            if let Err(err) = self.port.write_all(bytes) {
                self.error = Some(err);
            }
        }
        self.queue.written(len);
    }

    /// Tells the host where the queue is, so that it can read what a guest
    /// that stopped answering had queued; where the agent cannot tell, the
    /// host reads nothing and what was queued at a hang is lost.
    pub fn send_queue(&mut self) {
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as usize;
        if let Ok(pages) = self.queue.pages(page_size) {
            self.send(&Frame::Queue {
                page_size: page_size as u32,
                pages,
            });
            self.flush();
            self.queue.restart();
        }
    }

    /// Reads the host's next input message.
    pub fn read_input(&mut self) -> io::Result<Input> {
        read_input(&mut self.input.reader(&mut self.port))
    }

    /// Whether an input message has begun to arrive: bytes read ahead are
    /// buffered, or the port has some.
    pub fn input_ready(&self) -> bool {
        if self.input.pos < self.input.buf.len() {
            return true;
        }
        let mut fds = [PollFd::new(self.port.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// The port, to wait on for input.
    pub fn port_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.port.as_fd()
    }

    /// Reads the `len` bytes of a file the host sends into `path` (parents
    /// created). The bytes are read even if the file cannot be written, so
    /// that the stream stays in step.
    pub fn receive_file(&mut self, path: &std::path::Path, mode: u32, len: u64) -> io::Result<()> {
        let parent = path.parent().map(std::path::Path::to_path_buf);
        let mut made = Ok(());
        if parent != self.last_dir {
            made = parent.as_ref().map_or(Ok(()), std::fs::create_dir_all);
            self.last_dir = parent.filter(|_| made.is_ok());
        }
        let mut file = made.and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(path)
        });
        let mut left = len;
        let mut buf = vec![0; 64 * 1024];
        while left > 0 {
            let n = (left as usize).min(buf.len());
            self.input
                .reader(&mut self.port)
                .read_exact(&mut buf[..n])?;
            if let Ok(out) = &mut file {
                if let Err(err) = out.write_all(&buf[..n]) {
                    file = Err(err);
                }
            }
            left -= n as u64;
        }
        let file = file?;
        // The mode given at creation is masked by the umask (022).
        if mode & 0o022 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
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

/// Bytes read from the port ahead of the input message being decoded.
#[derive(Default)]
struct InputBuffer {
    buf: Vec<u8>,
    pos: usize,
}

impl InputBuffer {
    fn reader<'a>(&'a mut self, port: &'a mut File) -> BufferedPort<'a> {
        BufferedPort { buffer: self, port }
    }
}

/// The port read through its [`InputBuffer`].
struct BufferedPort<'a> {
    buffer: &'a mut InputBuffer,
    port: &'a mut File,
}

impl Read for BufferedPort<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buffer = &mut *self.buffer;
        if buffer.pos == buffer.buf.len() {
            buffer.buf.resize(256 * 1024, 0);
            let n = self.port.read(&mut buffer.buf)?;
            buffer.buf.truncate(n);
            buffer.pos = 0;
            if n == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(buffer.buf.len() - buffer.pos);
        out[..n].copy_from_slice(&buffer.buf[buffer.pos..buffer.pos + n]);
        buffer.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use kmatrix_protocol::Decoder;

    use super::*;

    #[test]
    fn frames_and_cases_of_every_size_arrive_whole_and_in_order() {
        let (port, mut host) = UnixStream::pair().expect("socket pair");
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            host.read_to_end(&mut bytes).expect("read the frames");
            bytes
        });
        // Small frames that fill the queue several times, one larger than
        // the whole queue among them, and one that just fits; case results
        // among them, most of them plain and each the next of its program.
        let mut sent: Vec<Frame> = (0..20_000u32)
            .map(|i| match i % 3 {
                0 => Frame::AgentError(format!("frame {i}")),
                _ => Frame::Case(CaseResult {
                    object: i / 5_000,
                    program: i / 2_500,
                    case: i - i / 3,
                    outcome: CaseOutcome::Ran {
                        retval: i % 4,
                        duration_ns: i * 13,
                        output: (i % 11 == 0).then(|| vec![i as u8; 60]),
                        reads: Vec::new(),
                    },
                    kernel_log: (i % 13 == 0)
                        .then(|| format!("line {i}"))
                        .into_iter()
                        .collect(),
                }),
            })
            .collect();
        // Cases of another program, sent as any other frame, between
        // cases that follow one another.
        for at in (1..20).rev() {
            let other = CaseResult {
                object: 9,
                program: 9,
                case: 9,
                outcome: CaseOutcome::Error("other".into()),
                kernel_log: Vec::new(),
            };
            sent.insert(at * 1_000 + 1, Frame::Case(other));
        }
        // A plain case whose figures are too long for the fast writer.
        let huge = CaseRan {
            object: u32::MAX,
            program: u32::MAX,
            case: u32::MAX,
            retval: u32::MAX,
            duration_ns: u32::MAX,
        };
        sent.insert(5_000, huge.frame());
        sent.insert(7_000, Frame::AgentError("x".repeat(3 * SIZE_OF_QUEUE)));
        sent.insert(12_000, Frame::AgentError("y".repeat(SIZE_OF_QUEUE - 64)));
        let mut channel = Channel::open(File::from(OwnedFd::from(port)));
        for frame in &sent {
            match frame.clone() {
                frame @ Frame::Case(CaseResult { object: 9, .. }) => channel.send(&frame),
                Frame::Case(case) => {
                    let id = [case.object, case.program, case.case];
                    channel.send_case(id, case.outcome, case.kernel_log);
                }
                frame => channel.send(&frame),
            }
        }
        channel.flush();
        drop(channel);
        let mut decoder = Decoder::new();
        let stream = reader.join().expect("the reader");
        let bytes = stream.len();
        decoder.extend(&stream);
        let mut received = Vec::new();
        while let Some(frame) = decoder.next_frame().expect("decode") {
            received.push(frame);
        }
        decoder.finish().expect("the stream ends on a frame");
        assert_eq!(received.len(), sent.len());
        // Most plain cases (17 bytes or more in full) went in a few bytes.
        let mut full = Vec::new();
        let mut plain = 0;
        for frame in &sent {
            encode(frame, &mut full).expect("encode");
            if let Frame::Case(c) = frame {
                let ran = CaseRan::of(c.object, c.program, c.case, &c.outcome, &c.kernel_log);
                plain += usize::from(ran.is_some());
            }
        }
        assert!(
            bytes + 8 * plain / 2 <= full.len(),
            "{bytes} bytes, {} in full, for {plain} plain cases",
            full.len()
        );
        assert!(received == sent, "the frames arrive as sent");
    }

    const SIZE_OF_QUEUE: usize = kmatrix_protocol::queue::SIZE;
}
