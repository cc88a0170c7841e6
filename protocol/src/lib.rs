//! The wire protocol between the kmatrix host and the guest agent.
//!
//! The guest writes a stream of [`Frame`]s to a virtio-serial port. Each frame
//! is a little-endian `u32` payload length followed by the payload, a
//! [postcard](https://docs.rs/postcard) encoding of the frame. The first frame
//! is always a [`Hello`] carrying [`VERSION`]; the last is [`Frame::Done`].
//! The host answers `Done` with a single [`ACK`] byte so that the guest knows
//! every byte arrived before it powers off.
//!
//! What the guest does comes from the host as a [`Plan`], packed into the
//! initramfs at [`PLAN_PATH`] in the same encoding.
//!
//! [`Decoder`] is the host's side: it takes bytes as they arrive, bounds every
//! frame by [`MAX_FRAME_LEN`] and reports a malformed or truncated stream as a
//! [`DecodeError`] instead of trusting the guest.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// The protocol version the guest announces in its [`Hello`].
pub const VERSION: u32 = 3;

/// Name of the virtio-serial port that carries the frames.
pub const PORT_NAME: &str = "org.kmatrix.results";

/// The largest frame payload the host accepts.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// The byte the host sends back after it has read [`Frame::Done`].
pub const ACK: u8 = 0x06;

/// Where the host packs the [`Plan`] in the guest.
pub const PLAN_PATH: &str = "/kmatrix/plan";

/// Length of the frame header (the payload length).
const HEADER_LEN: usize = 4;

/// One message from the guest agent.
///
/// Variants are only ever appended so that an older host can still read the
/// version in a newer guest's hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The agent is up and its port is open. Always the first frame.
    Hello(Hello),
    /// The outcome of loading one program.
    Program(ProgramResult),
    /// Something went wrong outside any one program (a module that would not
    /// load, an unreadable object). The agent goes on where it can.
    AgentError(String),
    /// Every result has been sent. Always the last frame.
    Done,
    /// The outcome of one test-run case.
    Case(CaseResult),
    /// Bytes the executed program wrote.
    Output {
        /// Which stream.
        stream: Stream,
        /// What it wrote.
        data: Vec<u8>,
    },
    /// The executed program ended.
    Exit(ExitInfo),
}

/// One of the executed program's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the executed program ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitInfo {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal {
        /// The signal's number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// It could not be started.
    SpawnFailed(String),
}

/// A program to run in the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    /// The program (a guest path) and its arguments.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: String,
}

/// What the guest is to do: which programs of which objects to load, and
/// which test-run cases to run on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Objects, each found in the guest by its index.
    pub objects: Vec<ObjectPlan>,
    /// Whether to send a [`Frame::Case`] per case (false only to measure
    /// what streaming costs).
    pub report_cases: bool,
    /// A program to run after the objects, its output streamed back.
    pub exec: Option<ExecPlan>,
}

/// The work on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPlan {
    /// The object's index (its file name in the guest).
    pub index: u32,
    /// Programs to load, in order; the object's other programs are skipped.
    pub programs: Vec<ProgramPlan>,
}

/// One program to load, and its cases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramPlan {
    /// The program's name.
    pub name: String,
    /// Cases to run once it is loaded.
    pub cases: Vec<CasePlan>,
}

/// One `BPF_PROG_TEST_RUN` invocation and the map work around it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasePlan {
    /// Packet data (`data_in`).
    pub data: Vec<u8>,
    /// Context (`ctx_in`), if any.
    pub ctx: Option<Vec<u8>>,
    /// How many times the kernel runs the program.
    pub repeat: u32,
    /// Whether to send the output packet back.
    pub want_output: bool,
    /// Map entries written before the run.
    pub writes: Vec<MapEntry>,
    /// Map entries read after the run.
    pub reads: Vec<MapRead>,
}

/// A map entry to write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// The map's name.
    pub map: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The value's bytes.
    pub value: Vec<u8>,
}

/// A map entry to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRead {
    /// The map's name.
    pub map: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The map's value size.
    pub value_size: u32,
}

/// The outcome of one case, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Index of the object in the plan.
    pub object: u32,
    /// Index of the program in the object's plan.
    pub program: u32,
    /// Index of the case in the program's plan.
    pub case: u32,
    /// What happened.
    pub outcome: CaseOutcome,
}

/// What running a case gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseOutcome {
    /// The program ran.
    Ran {
        /// Its return value.
        retval: u32,
        /// Mean duration of one run, in nanoseconds.
        duration_ns: u32,
        /// The output packet, when asked for.
        output: Option<Vec<u8>>,
        /// The values read after the run, in plan order (`None`: no entry).
        reads: Vec<Option<Vec<u8>>>,
    },
    /// The case could not run (a map write or the test run failed).
    Error(String),
}

/// What the guest tells the host about itself once it is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the guest speaks, [`VERSION`] for this crate.
    pub version: u32,
    /// `uname -r` inside the guest.
    pub kernel_release: String,
    /// Whether the kernel exposes its BTF at `/sys/kernel/btf/vmlinux`.
    pub btf: bool,
    /// Milliseconds from kernel start to the agent's hello (`CLOCK_BOOTTIME`).
    pub boot_ms: u64,
}

/// The outcome of loading one program of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramResult {
    /// Index of the object in the order the host packed them.
    pub object: u32,
    /// The program's name (its function symbol).
    pub program: String,
    /// The ELF section the program lives in, e.g. `xdp` or `fentry/do_unlinkat`.
    pub section: String,
    /// What happened.
    pub verdict: Verdict,
    /// Time spent in the load, in microseconds.
    pub load_us: u64,
}

/// Whether a program loaded, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The kernel accepted the program.
    Loaded,
    /// `BPF_PROG_LOAD` failed; the verifier said why.
    Rejected {
        /// The syscall's error.
        error: String,
        /// The verifier's log (its tail, when it was very long).
        verifier_log: String,
    },
    /// The program could not be loaded for a reason other than the verifier
    /// (missing attach target, map creation failure, unsupported kernel).
    Failed {
        /// The error, with its causes.
        error: String,
    },
}

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

/// Encodes the plan the host packs for the guest.
pub fn encode_plan(plan: &Plan) -> Vec<u8> {
    postcard::to_stdvec(plan).expect("a plan always serializes")
}

/// Decodes a packed plan.
pub fn decode_plan(bytes: &[u8]) -> Result<Plan, postcard::Error> {
    postcard::from_bytes(bytes)
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
                verdict: Verdict::Loaded,
                load_us: 812,
            }),
            Frame::Program(ProgramResult {
                object: 1,
                program: "bad".into(),
                section: "xdp".into(),
                verdict: Verdict::Rejected {
                    error: "EACCES".into(),
                    verifier_log: "R0 !read_ok\nprocessed 1 insns".into(),
                },
                load_us: 90,
            }),
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
