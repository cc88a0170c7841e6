//! The host's end of the results stream: frames read from the guest's
//! virtio-serial port, as they arrive.

use std::io;

use kmatrix_protocol::{DecodeError, Decoder, Frame, ACK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;

/// A stream of frames from one guest.
pub struct ResultStream {
    socket: UnixStream,
    decoder: Decoder,
    buf: Vec<u8>,
    eof: bool,
}

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
    /// Wraps a connected socket.
    pub fn new(socket: UnixStream) -> Self {
        Self {
            socket,
            decoder: Decoder::new(),
            buf: vec![0; READ_SIZE],
            eof: false,
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
            let n = self.socket.read(&mut self.buf).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.decoder.extend(&self.buf[..n]);
            }
        }
    }

    /// Tells the guest that its `Done` arrived.
    pub async fn ack(&mut self) -> io::Result<()> {
        self.socket.write_all(&[ACK]).await
    }
}
