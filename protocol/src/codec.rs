//! The length-prefixed stream: [`encode`] on the guest, the bounded
//! [`Decoder`] on the host.

use crate::{Frame, MAX_FRAME_LEN};

/// Length of the frame header (the payload length).
const HEADER_LEN: usize = 4;

/// Appends `frame` to `out` as a length-prefixed frame.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(err) = postcard::to_io(frame, &mut *out) {
        out.truncate(start);
        return Err(EncodeError::Serialize(err));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME_LEN as usize {
        out.truncate(start);
        return Err(EncodeError::TooLarge { len });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A frame that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// postcard could not serialize the frame.
    #[error("could not serialize frame")]
    Serialize(#[source] postcard::Error),
    /// The frame is larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The payload length.
        len: usize,
    },
}

/// A stream from the guest that breaks the protocol.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A frame header announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    Oversize {
        /// The announced payload length.
        len: u32,
    },
    /// A payload was not a valid frame.
    #[error("malformed frame of {len} bytes")]
    Malformed {
        /// The payload length.
        len: u32,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the frame (header included).
        have: usize,
        /// Bytes the frame needs (header included).
        need: usize,
    },
}

/// Incremental frame decoder: feed it bytes, take frames out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    pos: usize,
}

impl Decoder {
    /// Creates an empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes extended but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Returns the next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let rest = &self.buf[self.pos..];
        let Some(header) = rest.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(header.try_into().expect("header is 4 bytes"));
        if len > MAX_FRAME_LEN {
            return Err(DecodeError::Oversize { len });
        }
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len as usize) else {
            return Ok(None);
        };
        let frame = postcard::from_bytes(payload)
            .map_err(|source| DecodeError::Malformed { len, source })?;
        self.pos += HEADER_LEN + len as usize;
        Ok(Some(frame))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(());
        }
        let need = match rest.get(..HEADER_LEN) {
            Some(header) => {
                HEADER_LEN + u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize
            }
            None => HEADER_LEN,
        };
        Err(DecodeError::Truncated {
            have: rest.len(),
            need,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello {
                version: VERSION,
                kernel_release: "6.1.0-50-cloud-amd64".into(),
                btf: true,
                boot_ms: 1234,
            }),
            Frame::Program(ProgramResult {
                object: 0,
                program: "xdp_pass".into(),
                section: "xdp".into(),
                loader: Loader::Aya,
                verdict: Verdict::Loaded,
                load_us: 812,
                stats: ProgramStats {
                    insns_processed: Some(23),
                    ..ProgramStats::default()
                },
                kernel_log: Vec::new(),
            }),
            Frame::Program(ProgramResult {
                object: 1,
                program: "bad".into(),
                section: "xdp".into(),
                loader: Loader::Libbpf,
                verdict: Verdict::Rejected {
                    error: "EACCES".into(),
                    verifier_log: "R0 !read_ok\nprocessed 1 insns".into(),
                },
                load_us: 90,
                stats: ProgramStats::default(),
                kernel_log: vec!["WARNING: CPU: 0 PID: 1 at x".into()],
            }),
            Frame::Splat(vec!["BUG: soft lockup".into(), "Call Trace:".into()]),
            Frame::AgentError("module virtio_pci: EEXIST".into()),
            Frame::Case(CaseResult {
                object: 0,
                program: 1,
                case: 2,
                outcome: CaseOutcome::Ran {
                    retval: 1,
                    duration_ns: 150,
                    output: None,
                    reads: vec![Some(3u64.to_le_bytes().to_vec()), None],
                },
                kernel_log: Vec::new(),
            }),
            Frame::Output {
                stream: Stream::Stderr,
                data: b"running 2 tests\n".to_vec(),
            },
            Frame::Exit(ExitInfo::Signal {
                signal: 11,
                core_dumped: true,
            }),
            Frame::Done,
        ]
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            encode(frame, &mut out).unwrap();
        }
        out
    }

    fn decode_all(decoder: &mut Decoder) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.next_frame().unwrap()).collect()
    }

    #[test]
    fn round_trip_in_one_piece() {
        let bytes = encode_all(&sample());
        let mut decoder = Decoder::new();
        decoder.extend(&bytes);
        assert_eq!(decode_all(&mut decoder), sample());
        decoder.finish().unwrap();
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let bytes = encode_all(&sample());
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        for byte in bytes {
            decoder.extend(&[byte]);
            frames.extend(decode_all(&mut decoder));
        }
        assert_eq!(frames, sample());
        decoder.finish().unwrap();
    }

    #[test]
    fn oversize_header_is_rejected_before_buffering() {
        let mut decoder = Decoder::new();
        decoder.extend(&(MAX_FRAME_LEN + 1).to_le_bytes());
        let err = decoder.next_frame().unwrap_err();
        assert!(matches!(err, DecodeError::Oversize { len } if len == MAX_FRAME_LEN + 1));
    }

    #[test]
    fn garbage_payload_is_malformed() {
        let mut decoder = Decoder::new();
        decoder.extend(&3u32.to_le_bytes());
        decoder.extend(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::Malformed { len: 3, .. })
        ));
    }

    #[test]
    fn truncated_stream_is_reported_at_finish() {
        let bytes = encode_all(&sample());
        let mut decoder = Decoder::new();
        decoder.extend(&bytes[..bytes.len() - 1]);
        let frames = decode_all(&mut decoder);
        assert_eq!(frames.len(), sample().len() - 1);
        // The last frame is cut by one byte.
        assert!(matches!(
            decoder.finish(),
            Err(DecodeError::Truncated { have, need }) if need == have + 1
        ));
    }

    #[test]
    fn oversize_frame_is_refused_by_the_encoder() {
        let frame = Frame::AgentError("x".repeat(MAX_FRAME_LEN as usize + 1));
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode(&frame, &mut out),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(
            out,
            [1, 2, 3],
            "a refused frame leaves the buffer as it was"
        );
    }
}
