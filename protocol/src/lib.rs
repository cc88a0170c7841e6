//! What the kmatrix host and its guest agent share.
//!
//! The guest writes a stream of [`Frame`]s to a virtio-serial port. Each frame
//! is a little-endian `u32` payload length followed by the payload, a
//! [postcard](https://docs.rs/postcard) encoding of the frame (a plain case
//! result that follows the last one is written in a few bytes instead:
//! [`encode_case_ran`]). The first frame
//! is always a [`Hello`] carrying [`VERSION`]; the last is [`Frame::Done`].
//! The host answers `Done` with a single [`ACK`] byte so that the guest knows
//! every byte arrived before it powers off.
//!
//! What the guest does comes from the host over the same port after the
//! hello ([`input`]): the run's files, then the [`Plan`]. The initramfs holds
//! only what is the same for every run of a kernel, so that a VM saved while
//! it waits can be restored for any run. [`kind`] is the
//! program-kind table both sides judge by; [`report`] holds the stable
//! types of kmatrix's own output (outcomes, `--json` records, exit codes).
//!
//! [`Decoder`] is the host's side: it takes bytes as they arrive, bounds every
//! frame by [`MAX_FRAME_LEN`] and reports a malformed or truncated stream as a
//! [`DecodeError`] instead of trusting the guest. One decoder reads a stream
//! from its start: a next-case frame is read after the case before it.

#![warn(missing_docs)]

mod arch;
mod codec;
pub mod feature;
pub mod floor;
mod frame;
pub mod input;
pub mod kind;
pub mod layout;
mod plan;
pub mod queue;
pub mod report;
pub mod splat;
pub mod stats;
pub mod text;

pub use arch::Arch;
pub use codec::{
    encode, encode_case_ran, encode_into, CaseRan, DecodeError, Decoder, EncodeError, CASE_RAN_ROOM,
};
pub use feature::{Feature, FeatureKind, Probe};
pub use frame::{
    AgentTimings, CaseOutcome, CaseResult, ExitInfo, Frame, Hello, ProgramResult, Stream, Verdict,
};
pub use input::{Input, Start};
pub use kind::TestRunKind;
pub use plan::{
    CasePlan, ExecPlan, GlobalSetting, Loader, MapEntry, MapRead, MapSetting, ObjectPlan, Plan,
    ProgramPlan, WindowSize,
};
pub use stats::ProgramStats;

/// The protocol version the guest announces in its [`Hello`].
pub const VERSION: u32 = 11;

/// Name of the virtio-serial port that carries the frames.
pub const PORT_NAME: &str = "org.kmatrix.results";

/// The largest frame payload the host accepts. The largest the agent sends
/// is a verifier log's 256 KiB tail; the bound also bounds what a frame can
/// decode to (a frame of tiny elements grows about 24-fold in memory).
pub const MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// Bytes before each frame's payload and each input message's: its length,
/// a little-endian `u32`.
pub const HEADER_LEN: usize = 4;

/// The byte the host sends back after it has read [`Frame::Done`].
pub const ACK: u8 = 0x06;
