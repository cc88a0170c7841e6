//! The host's end of the guest's virtio-serial port: frames read as they
//! arrive ([`ResultStream`]), and the input and acknowledgment written
//! ([`InputSink`]). The two halves are apart so that a large input and the
//! guest's first frames can cross without either side waiting.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kmatrix_protocol::input::encode_input;
use kmatrix_protocol::{DecodeError, Decoder, Frame, Input, Start, ACK};
use std::os::fd::AsRawFd;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::watch;

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;

/// Splits a connected port into its two ends.
pub fn split(socket: UnixStream) -> (ResultStream, InputSink) {
    let (read, write) = socket.into_split();
    (
        ResultStream::new(read),
        InputSink {
            socket: write,
            sent: Default::default(),
        },
    )
}

/// A stream of frames from one guest.
pub struct ResultStream {
    socket: Box<dyn AsyncRead + Send + Unpin>,
    decoder: Decoder,
    buf: Vec<u8>,
    eof: bool,
    /// Bytes read from the socket so far.
    received: u64,
    /// Set once the guest is known to have shut down: the stream then ends
    /// when the socket has been quiet for [`QUIET`].
    end: Option<watch::Receiver<Option<String>>>,
}

/// How long the socket of a guest that shut down may stay quiet before
/// what it wrote is taken to have arrived.
pub const QUIET: Duration = Duration::from_millis(200);

/// The stream broke.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the socket failed.
    #[error("reading the results port failed")]
    Io(#[from] io::Error),
    /// The guest sent something that is not the protocol.
    #[error("the guest broke the results protocol")]
    Protocol(#[from] DecodeError),
}

impl ResultStream {
    /// Wraps the reading end of a connected socket.
    pub fn new(socket: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Self {
            socket: Box::new(socket),
            decoder: Decoder::new(),
            buf: vec![0; READ_SIZE],
            eof: false,
            received: 0,
            end: None,
        }
    }

    /// The next frame; `None` once the guest closed the port between frames.
    /// Cancel-safe: bytes already read stay buffered.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            if self.eof {
                self.decoder.finish()?;
                return Ok(None);
            }
            let n = self.read().await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.received += n as u64;
                self.decoder.extend(&self.buf[..n]);
            }
        }
    }

    /// Ends the stream once `shutdown` holds a value (the guest shut down,
    /// though its VM, paused, keeps the socket open) and the socket has
    /// gone quiet, as if the guest had closed it.
    pub fn end_on(&mut self, shutdown: watch::Receiver<Option<String>>) {
        self.end = Some(shutdown);
    }

    /// Reads the socket; 0 at its end, or once the guest shut down and
    /// nothing came for [`QUIET`].
    async fn read(&mut self) -> io::Result<usize> {
        let Some(end) = &mut self.end else {
            return self.socket.read(&mut self.buf).await;
        };
        if end.borrow().is_none() {
            tokio::select! {
                n = self.socket.read(&mut self.buf) => return n,
                changed = end.changed() => {
                    if changed.is_err() {
                        // QEMU's event stream ended: so did QEMU.
                        self.end = None;
                        return self.socket.read(&mut self.buf).await;
                    }
                }
            }
        }
        match tokio::time::timeout(QUIET, self.socket.read(&mut self.buf)).await {
            Ok(n) => n,
            Err(_) => Ok(0),
        }
    }

    /// Bytes read from the socket so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes of the frames returned so far.
    pub fn consumed(&self) -> u64 {
        self.received - self.decoder.pending() as u64
    }

    /// The frames `bytes` complete, as if they had followed what was read
    /// (the tail of the stream, recovered another way).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, StreamError> {
        self.received += bytes.len() as u64;
        self.decoder.extend(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = self.decoder.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// What the host writes to the guest.
pub struct InputSink {
    socket: OwnedWriteHalf,
    sent: Arc<AtomicU64>,
}

impl InputSink {
    /// The bytes written so far, counted as they go (the guest taking its
    /// input is a sign of life).
    pub fn sent(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }

    /// Sends one message.
    pub async fn send(&mut self, input: &Input) -> io::Result<()> {
        let mut bytes = Vec::new();
        encode_input(input, &mut bytes);
        self.write_all(&bytes).await
    }

    /// Sends already encoded files, then `start`.
    pub async fn start(&mut self, files: &[u8], start: Start) -> io::Result<()> {
        self.write_all(files).await?;
        self.send(&Input::Start(start)).await
    }

    /// Tells the guest that its `Done` arrived.
    pub async fn ack(&mut self) -> io::Result<()> {
        self.write_all(&[ACK]).await
    }

    /// Writes `bytes` with `MSG_NOSIGNAL`: a QEMU that went away is an
    /// error here, not a SIGPIPE that ends kmatrix (which keeps SIGPIPE's
    /// default for its stdout).
    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let socket: &UnixStream = self.socket.as_ref();
        while !bytes.is_empty() {
            socket.writable().await?;
            let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::socket::send(
                    socket.as_raw_fd(),
                    bytes,
                    nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent.fetch_add(n as u64, Ordering::Relaxed);
                    bytes = &bytes[n..];
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmatrix_protocol::{encode, Hello, MAX_FRAME_LEN, VERSION};
    use tokio::io::AsyncWriteExt;

    async fn stream_of(bytes: Vec<u8>) -> ResultStream {
        let (host, mut guest) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            guest.write_all(&bytes).await.unwrap();
        });
        ResultStream::new(host)
    }

    fn hello() -> Frame {
        Frame::Hello(Hello {
            version: VERSION,
            kernel_release: "6.1.0".into(),
            btf: true,
            boot_ms: 1,
        })
    }

    /// A guest that shut down keeps its socket open (QEMU pauses it): the
    /// stream gives what it wrote, then ends once the socket is quiet, and
    /// counts every byte it read.
    #[tokio::test]
    async fn a_guest_that_shut_down_ends_its_stream_after_its_last_bytes() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let mut stream = ResultStream::new(host);
        let (shutdown, signal) = watch::channel(None);
        stream.end_on(signal);
        let mut bytes = Vec::new();
        encode(&hello(), &mut bytes).unwrap();
        guest.write_all(&bytes).await.unwrap();
        assert_eq!(stream.next().await.unwrap(), Some(hello()));
        shutdown.send(Some("guest-reset".into())).unwrap();
        guest.write_all(&bytes).await.unwrap();
        assert_eq!(stream.next().await.unwrap(), Some(hello()));
        let quiet = tokio::time::Instant::now();
        assert_eq!(stream.next().await.unwrap(), None);
        assert!(quiet.elapsed() >= QUIET);
        assert_eq!(stream.received(), 2 * bytes.len() as u64);
        assert_eq!(stream.consumed(), stream.received());
        drop(guest);
    }

    /// Bytes recovered another way complete the frame the socket cut off.
    #[tokio::test]
    async fn recovered_bytes_complete_a_frame() {
        let mut bytes = Vec::new();
        encode(&hello(), &mut bytes).unwrap();
        encode(&Frame::Done, &mut bytes).unwrap();
        let (host, mut guest) = UnixStream::pair().unwrap();
        let mut stream = ResultStream::new(host);
        guest.write_all(&bytes[..5]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(read.is_err(), "half a frame is no frame");
        assert_eq!(stream.consumed(), 0);
        let frames = stream.decode(&bytes[5..]).unwrap();
        assert_eq!(frames, [hello(), Frame::Done]);
        assert_eq!(stream.received(), bytes.len() as u64);
    }

    #[tokio::test]
    async fn input_reaches_the_guest_and_a_closed_guest_is_an_error() {
        let (host, guest) = UnixStream::pair().unwrap();
        let (_stream, mut sink) = split(host);
        let files = {
            let mut bytes = Vec::new();
            encode_input(
                &Input::File {
                    path: b"/f".to_vec(),
                    mode: 0o644,
                    len: 2,
                },
                &mut bytes,
            );
            bytes.extend_from_slice(b"hi");
            bytes
        };
        let reader = tokio::task::spawn_blocking(move || {
            let mut guest = guest.into_std().unwrap();
            guest.set_nonblocking(false).unwrap();
            let mut read = || kmatrix_protocol::input::read_input(&mut guest).unwrap();
            let file = read();
            let mut data = [0; 2];
            std::io::Read::read_exact(&mut guest, &mut data).unwrap();
            (
                file,
                data,
                kmatrix_protocol::input::read_input(&mut guest).unwrap(),
            )
        });
        sink.start(&files, Start::default()).await.unwrap();
        let (file, data, start) = reader.await.unwrap();
        assert!(matches!(file, Input::File { len: 2, .. }));
        assert_eq!(&data, b"hi");
        assert_eq!(start, Input::Start(Start::default()));
        // The guest is gone: an error, not a signal.
        let mut failed = false;
        for _ in 0..100 {
            if sink.ack().await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }

    #[tokio::test]
    async fn frames_then_a_clean_end() {
        let mut bytes = Vec::new();
        encode(&hello(), &mut bytes).unwrap();
        encode(&Frame::Done, &mut bytes).unwrap();
        let mut stream = stream_of(bytes).await;
        assert_eq!(stream.next().await.unwrap(), Some(hello()));
        assert_eq!(stream.next().await.unwrap(), Some(Frame::Done));
        assert_eq!(stream.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversize_frame_is_refused_without_buffering_it() {
        let mut stream = stream_of((MAX_FRAME_LEN + 1).to_le_bytes().to_vec()).await;
        let err = stream.next().await.unwrap_err();
        assert!(
            matches!(err, StreamError::Protocol(DecodeError::Oversize { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let mut bytes = 4u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 4]);
        let mut stream = stream_of(bytes).await;
        assert!(matches!(
            stream.next().await,
            Err(StreamError::Protocol(DecodeError::Malformed { .. }))
        ));
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_truncated() {
        let mut bytes = Vec::new();
        encode(&hello(), &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 2);
        let mut stream = stream_of(bytes).await;
        assert!(matches!(
            stream.next().await,
            Err(StreamError::Protocol(DecodeError::Truncated { .. }))
        ));
    }
}
