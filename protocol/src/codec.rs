//! The length-prefixed stream: [`encode`] (or [`encode_into`]) on the guest, the bounded
//! [`Decoder`] on the host.

use crate::{CaseOutcome, CaseResult, Frame, HEADER_LEN, MAX_FRAME_LEN};

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

/// Encodes `frame` at the start of `out` as a length-prefixed frame, in
/// place; the bytes written, or `None` when `out` is too short for it.
pub fn encode_into(frame: &Frame, out: &mut [u8]) -> Result<Option<usize>, EncodeError> {
    if let Frame::Case(result) = frame {
        if let Some(len) = case_fast(result, out) {
            return Ok(Some(len));
        }
    }
    let Some(payload) = out.get_mut(HEADER_LEN..) else {
        return Ok(None);
    };
    let len = match postcard::to_slice(frame, payload) {
        Ok(written) => written.len(),
        Err(postcard::Error::SerializeBufferFull) => return Ok(None),
        Err(err) => return Err(EncodeError::Serialize(err)),
    };
    if len > MAX_FRAME_LEN as usize {
        return Err(EncodeError::TooLarge { len });
    }
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(Some(HEADER_LEN + len))
}

/// postcard's variant index of [`Frame::Case`].
const CASE: u8 = 4;

/// postcard's variant index of [`CaseOutcome::Ran`].
const RAN: u8 = 0;

/// The room [`encode_case_ran`] needs, and the longest frame it writes.
pub const CASE_RAN_ROOM: usize = 32;

/// A case that ran with no output packet, map reads or kernel lines: a
/// suite's commonest frame by far, which [`encode_case_ran`] writes from
/// these figures alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaseRan {
    /// [`CaseResult::object`].
    pub object: u32,
    /// [`CaseResult::program`].
    pub program: u32,
    /// [`CaseResult::case`].
    pub case: u32,
    /// The program's return value.
    pub retval: u32,
    /// The kernel's figure for one run.
    pub duration_ns: u32,
}

impl CaseRan {
    /// The figures of a case result of this shape; `None` for any other.
    #[inline]
    pub fn of(
        object: u32,
        program: u32,
        case: u32,
        outcome: &CaseOutcome,
        kernel_log: &[String],
    ) -> Option<Self> {
        match outcome {
            CaseOutcome::Ran {
                retval,
                duration_ns,
                output: None,
                reads,
            } if reads.is_empty() && kernel_log.is_empty() => Some(Self {
                object,
                program,
                case,
                retval: *retval,
                duration_ns: *duration_ns,
            }),
            _ => None,
        }
    }

    /// Its object, program and case.
    #[inline]
    pub fn id(&self) -> [u32; 3] {
        [self.object, self.program, self.case]
    }

    /// The [`Frame::Case`] it stands for.
    pub fn frame(self) -> Frame {
        Frame::Case(CaseResult {
            object: self.object,
            program: self.program,
            case: self.case,
            outcome: CaseOutcome::Ran {
                retval: self.retval,
                duration_ns: self.duration_ns,
                output: None,
                reads: Vec::new(),
            },
            kernel_log: Vec::new(),
        })
    }

    /// Whether this is the case after `last` (object, program and case of
    /// a case result) of the same object and program.
    #[inline]
    pub fn follows(&self, last: Option<[u32; 3]>) -> bool {
        self.case
            .checked_sub(1)
            .is_some_and(|before| last == Some([self.object, self.program, before]))
    }
}

/// The first payload byte of a next-case frame: a [`CaseRan`] of the
/// object and program of the last case result in the stream, and of the
/// case after it, written as its return value and duration alone (postcard
/// varints); the [`Decoder`] reads it as that [`Frame::Case`]. Past every
/// [`Frame`] variant's index, so no postcard frame starts with it.
const NEXT_CASE: u8 = 0x7f;

/// Writes `ran` at the start of `out`, composed in registers and stored in
/// one or two 16-byte steps (under emulation serde's per-field steps and a
/// store per byte cost most of what streaming a case costs): as a
/// next-case frame when it [follows](CaseRan::follows) `last`, the last
/// case result written to the stream; else as [`encode_into`] writes its
/// [`Frame::Case`], as postcard writes it. The bytes written; `None` when
/// `out` is shorter than [`CASE_RAN_ROOM`] or the frame longer (figures and
/// indices of more than 23 varint bytes in all, say two past 2^28: left to
/// postcard). Bytes of `out` past the frame may be overwritten.
#[inline]
pub fn encode_case_ran(ran: CaseRan, last: Option<[u32; 3]>, out: &mut [u8]) -> Option<usize> {
    let out = out.get_mut(..CASE_RAN_ROOM)?;
    let follows = ran.follows(last);
    if follows && ran.retval < 0x80 && ran.duration_ns < 0x4000 {
        // The commonest by far, in one 8-byte word: a one-byte return
        // value and a duration of one or two varint bytes.
        let (duration, len) = match ran.duration_ns {
            d @ 0..0x80 => (u64::from(d), 3),
            d => (u64::from(d & 0x7f | 0x80) | u64::from(d >> 7) << 8, 4),
        };
        let word = len | u64::from(NEXT_CASE) << 32 | u64::from(ran.retval) << 40 | duration << 48;
        out[..8].copy_from_slice(&word.to_le_bytes());
        return Some(HEADER_LEN + len as usize);
    }
    let mut frame = Packed {
        lo: 0,
        hi: 0,
        len: HEADER_LEN as u32,
    };
    if follows {
        frame.put(NEXT_CASE.into(), 1);
        frame.varint(ran.retval);
        frame.varint(ran.duration_ns);
    } else {
        frame.put(CASE.into(), 1);
        for value in [ran.object, ran.program, ran.case] {
            frame.varint(value);
        }
        frame.put(RAN.into(), 1);
        frame.varint(ran.retval);
        frame.varint(ran.duration_ns);
        // No output packet, no reads, no kernel lines.
        frame.put(0, 3);
    }
    let len = frame.len as usize;
    if len > CASE_RAN_ROOM {
        return None;
    }
    frame.lo |= u128::from(frame.len - HEADER_LEN as u32);
    out[..16].copy_from_slice(&frame.lo.to_le_bytes());
    if len > 16 {
        out[16..].copy_from_slice(&frame.hi.to_le_bytes());
    }
    Some(len)
}

/// Up to 32 bytes, little-endian in two registers.
struct Packed {
    lo: u128,
    hi: u128,
    /// Bytes put so far (those past 32 are dropped).
    len: u32,
}

impl Packed {
    /// Puts the low `bytes` (at most 8) bytes of `value`.
    #[inline]
    fn put(&mut self, value: u64, bytes: u32) {
        let at = self.len * 8;
        let value = u128::from(value);
        if at < 128 {
            self.lo |= value << at;
            if at > 64 {
                self.hi |= value >> (128 - at);
            }
        } else if at < 256 {
            self.hi |= value << (at - 128);
        }
        self.len += bytes;
    }

    /// Puts `value` as postcard does: seven bits a byte, low first, the
    /// top bit set on every byte but the last.
    #[inline]
    fn varint(&mut self, mut value: u32) {
        let mut bytes = 0u64;
        let mut n = 0;
        while value >= 0x80 {
            bytes |= u64::from(value as u8 | 0x80) << (8 * n);
            value >>= 7;
            n += 1;
        }
        self.put(bytes | u64::from(value) << (8 * n), n + 1);
    }
}

/// [`encode_case_ran`] for a case result of its shape.
fn case_fast(result: &CaseResult, out: &mut [u8]) -> Option<usize> {
    let ran = CaseRan::of(
        result.object,
        result.program,
        result.case,
        &result.outcome,
        &result.kernel_log,
    )?;
    encode_case_ran(ran, None, out)
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
    /// A next-case frame came with no case result it can follow (none
    /// before it, or one of the last case index).
    #[error("a next-case frame with no case result it can follow")]
    NoCaseToFollow,
}

/// Incremental frame decoder: feed it bytes, take frames out. It reads a
/// stream from its start (a next-case frame follows the case before it).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    pos: usize,
    /// Object, program and case of the last case result decoded, which a
    /// next-case frame follows.
    last_case: Option<[u32; 3]>,
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
        let malformed = |source| DecodeError::Malformed { len, source };
        let frame = match payload.split_first() {
            Some((&NEXT_CASE, figures)) => {
                let (retval, duration_ns) = postcard::from_bytes(figures).map_err(malformed)?;
                let [object, program, case] = self
                    .last_case
                    .and_then(|[o, p, c]| Some([o, p, c.checked_add(1)?]))
                    .ok_or(DecodeError::NoCaseToFollow)?;
                CaseRan {
                    object,
                    program,
                    case,
                    retval,
                    duration_ns,
                }
                .frame()
            }
            _ => postcard::from_bytes(payload).map_err(malformed)?,
        };
        if let Frame::Case(result) = &frame {
            self.last_case = Some([result.object, result.program, result.case]);
        }
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

    #[test]
    fn encoding_in_place_gives_the_same_bytes_or_says_it_does_not_fit() {
        for frame in sample() {
            let mut expected = Vec::new();
            encode(&frame, &mut expected).unwrap();
            let mut out = vec![0; expected.len()];
            assert_eq!(encode_into(&frame, &mut out).unwrap(), Some(out.len()));
            assert_eq!(out, expected);
            for short in [0, 3, expected.len() - 1] {
                assert_eq!(encode_into(&frame, &mut out[..short]).unwrap(), None);
            }
        }
        let frame = Frame::AgentError("x".repeat(MAX_FRAME_LEN as usize + 1));
        assert!(matches!(
            encode_into(&frame, &mut vec![0; 2 * MAX_FRAME_LEN as usize]),
            Err(EncodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_plain_case_is_written_as_postcard_writes_it() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX,
        ];
        let case = |object, program, case, retval, duration_ns, output, reads, log: &[&str]| {
            Frame::Case(CaseResult {
                object,
                program,
                case,
                outcome: CaseOutcome::Ran {
                    retval,
                    duration_ns,
                    output,
                    reads,
                },
                kernel_log: log.iter().map(|l| l.to_string()).collect(),
            })
        };
        let mut frames = Vec::new();
        for (i, &a) in values.iter().enumerate() {
            let b = values[(i + 3) % values.len()];
            let c = values[(i + 7) % values.len()];
            frames.push(case(a, b, c, a, b, None, Vec::new(), &[]));
            frames.push(case(c, a, b, c, a, None, Vec::new(), &[]));
            // Any case index and figures of a suite's first objects fit.
            frames.push(case(i as u32, 1, a, b, c, None, Vec::new(), &[]));
        }
        let plain = frames.len();
        // The shapes it leaves to postcard.
        frames.push(case(1, 2, 3, 4, 5, Some(vec![1]), Vec::new(), &[]));
        frames.push(case(1, 2, 3, 4, 5, None, vec![None], &[]));
        frames.push(case(1, 2, 3, 4, 5, None, Vec::new(), &["line"]));
        frames.push(Frame::Case(CaseResult {
            object: 1,
            program: 2,
            case: 3,
            outcome: CaseOutcome::Error("no map".into()),
            kernel_log: Vec::new(),
        }));
        let mut fast = 0;
        for (i, frame) in frames.into_iter().enumerate() {
            let Frame::Case(result) = &frame else {
                unreachable!()
            };
            let mut expected = vec![0; HEADER_LEN];
            expected.extend(postcard::to_allocvec(&frame).unwrap());
            let fits = expected.len() <= CASE_RAN_ROOM;
            assert_eq!(
                case_fast(result, &mut [0xff; 64]).is_some(),
                i < plain && fits,
                "{frame:?}"
            );
            assert_eq!(case_fast(result, &mut [0; CASE_RAN_ROOM - 1]), None);
            fast += usize::from(fits && i < plain);
            let len = expected.len() as u32 - HEADER_LEN as u32;
            expected[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
            let mut out = vec![0; 64];
            let written = encode_into(&frame, &mut out).unwrap().unwrap();
            assert_eq!(&out[..written], expected, "{frame:?}");
            let mut decoder = Decoder::new();
            decoder.extend(&out[..written]);
            assert_eq!(decoder.next_frame().unwrap(), Some(frame));
        }
        assert!(fast >= 20, "{fast} frames written by encode_case_ran");
    }

    fn plain(object: u32, program: u32, case: u32, retval: u32, duration_ns: u32) -> Frame {
        CaseRan {
            object,
            program,
            case,
            retval,
            duration_ns,
        }
        .frame()
    }

    #[test]
    fn a_case_after_the_last_is_written_in_a_few_bytes_and_read_as_its_case() {
        let figures = [
            0,
            1,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            (1 << 21) - 1,
            1 << 21,
            1 << 28,
            u32::MAX,
        ];
        // Runs of cases of one program, broken by a case of another
        // program, by one that is not the next, and by one that is not
        // plain; other frames between cases do not break a run.
        let mut frames = Vec::new();
        for (i, &retval) in figures.iter().enumerate() {
            for (j, &duration_ns) in figures.iter().enumerate() {
                frames.push(plain(
                    2,
                    3,
                    (i * figures.len() + j) as u32,
                    retval,
                    duration_ns,
                ));
            }
            frames.push(Frame::AgentError(format!("between {i}")));
        }
        frames.push(plain(2, 4, 100, 2, 300));
        frames.push(plain(2, 4, 101, 2, 300));
        frames.push(plain(2, 4, 103, 2, 300));
        frames.push(plain(2, 4, 104, 2, 300));
        frames.push(Frame::Case(CaseResult {
            object: 2,
            program: 4,
            case: 105,
            outcome: CaseOutcome::Error("no map".into()),
            kernel_log: Vec::new(),
        }));
        frames.push(plain(2, 4, 106, 2, 300));
        frames.push(plain(2, 4, u32::MAX, 2, 300));
        frames.push(plain(2, 5, 0, 2, 300));

        // As the agent's channel writes them.
        let (mut bytes, mut last, mut compact) = (Vec::new(), None, 0);
        for frame in &frames {
            let mut out = [0xff; 64];
            let ran = match frame {
                Frame::Case(r) => {
                    CaseRan::of(r.object, r.program, r.case, &r.outcome, &r.kernel_log)
                }
                _ => None,
            };
            let len = match ran {
                Some(ran) => {
                    let follows = ran.follows(last);
                    let len = encode_case_ran(ran, last, &mut out).unwrap();
                    last = Some([ran.object, ran.program, ran.case]);
                    if follows {
                        assert_eq!(out[HEADER_LEN], NEXT_CASE, "{frame:?}");
                        if ran.retval < 0x80 && ran.duration_ns < 0x4000 {
                            assert!(len <= 8, "{len} bytes for {frame:?}");
                        }
                        compact += 1;
                    }
                    len
                }
                None => {
                    if let Frame::Case(_) = frame {
                        last = None;
                    }
                    encode_into(frame, &mut out).unwrap().unwrap()
                }
            };
            bytes.extend_from_slice(&out[..len]);
        }
        // Every run's cases but its first; not after the case that is not
        // the next, not after the one that is not plain, nor after the
        // last case of a program.
        assert_eq!(compact, figures.len() * figures.len() - 1 + 1 + 1);

        let mut decoder = Decoder::new();
        decoder.extend(&bytes);
        assert_eq!(decode_all(&mut decoder), frames);
        decoder.finish().unwrap();
        let mut decoder = Decoder::new();
        let mut read = Vec::new();
        for byte in bytes {
            decoder.extend(&[byte]);
            read.extend(decode_all(&mut decoder));
        }
        assert_eq!(read, frames);
    }

    #[test]
    fn a_next_case_frame_with_no_case_to_follow_or_no_figures_is_refused() {
        let next = |figures: &[u8]| {
            let mut frame = ((1 + figures.len()) as u32).to_le_bytes().to_vec();
            frame.push(NEXT_CASE);
            frame.extend_from_slice(figures);
            frame
        };
        let mut decoder = Decoder::new();
        decoder.extend(&next(&[2, 5]));
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::NoCaseToFollow)
        ));

        let mut decoder = Decoder::new();
        decoder.extend(&encode_all(&[plain(0, 0, u32::MAX, 2, 5)]));
        decoder.extend(&next(&[2, 5]));
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::NoCaseToFollow)
        ));

        let mut decoder = Decoder::new();
        decoder.extend(&encode_all(&[plain(0, 0, 7, 2, 5)]));
        decoder.extend(&next(&[2, 0x80]));
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::Malformed { len: 3, .. })
        ));
    }
}
