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

#[cfg(test)]
mod tests {
    use super::*;
    use kmatrix_protocol::{encode, Hello, MAX_FRAME_LEN, VERSION};

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
