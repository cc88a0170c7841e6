//! What the host sends the guest after its hello: the run's files, then
//! [`Input::Start`] with the plan. Nothing run-specific is in the initramfs,
//! so a VM saved while it waits for its input can be restored for any run.
//!
//! A program run on a terminal ([`crate::ExecPlan::tty`]) is sent
//! [`Input::Stdin`], [`Input::Resize`] and [`Input::Hangup`] while it runs.
//!
//! Each message is a little-endian `u32` length and its postcard encoding;
//! a [`Input::File`] is followed by its `len` raw bytes.

use serde::{Deserialize, Serialize};

use crate::{Plan, WindowSize, HEADER_LEN};

/// One message from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Do now what can be done before the plan is known (parse the
    /// kernel's BTF), then answer [`crate::Frame::Prepared`]: the host saves
    /// the VM after that.
    Prepare,
    /// A file the guest writes before it starts; its bytes follow.
    File {
        /// The absolute guest path, as bytes: a file name need not be
        /// UTF-8.
        path: Vec<u8>,
        /// Its permission bits.
        mode: u32,
        /// The number of bytes that follow.
        len: u64,
    },
    /// Start: the guest answers [`crate::Frame::Started`] and carries out
    /// the plan.
    Start(Start),
    /// Bytes typed at the host's terminal, for the program's terminal.
    Stdin(Vec<u8>),
    /// The host's terminal changed size.
    Resize(WindowSize),
    /// The host left the session: the program's terminal hangs up.
    Hangup,
}

/// What the guest needs to start, fresh for every run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// What to do.
    pub plan: Plan,
    /// The host's wall clock (nanoseconds since the Unix epoch): a restored
    /// VM's clock is as old as its saved state.
    pub unix_nanos: u64,
    /// Host randomness the guest mixes into its pool, which a restored VM
    /// would otherwise share with every run restored from the same state
    /// ([`ENTROPY_LEN`] bytes).
    pub entropy: Vec<u8>,
}

/// The largest input message (not counting a file's bytes) the guest reads.
pub const MAX_INPUT_LEN: u32 = 16 * 1024 * 1024;

/// The bytes of host randomness a [`Start`] carries.
pub const ENTROPY_LEN: usize = 64;

/// Appends `input` to `out` as a length-prefixed message.
pub fn encode_input(input: &Input, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    postcard::to_io(input, &mut *out).expect("writing to a Vec cannot fail");
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start..start + HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

/// Reads one message from `reader`.
pub fn read_input(reader: &mut impl std::io::Read) -> std::io::Result<Input> {
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header);
    if len > MAX_INPUT_LEN {
        return Err(std::io::Error::other(format!(
            "input message of {len} bytes exceeds {MAX_INPUT_LEN}"
        )));
    }
    let mut payload = vec![0; len as usize];
    reader.read_exact(&mut payload)?;
    postcard::from_bytes(&payload).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_file_bytes_round_trip() {
        let mut bytes = Vec::new();
        encode_input(&Input::Prepare, &mut bytes);
        encode_input(
            &Input::File {
                path: b"/kmatrix/objects/0".to_vec(),
                mode: 0o644,
                len: 3,
            },
            &mut bytes,
        );
        bytes.extend_from_slice(b"abc");
        let start = Start {
            unix_nanos: 7,
            entropy: vec![1; 32],
            ..Start::default()
        };
        encode_input(&Input::Start(start.clone()), &mut bytes);
        let mut reader = &bytes[..];
        assert_eq!(read_input(&mut reader).unwrap(), Input::Prepare);
        let Input::File { len, .. } = read_input(&mut reader).unwrap() else {
            panic!("not a file")
        };
        let (data, mut reader) = reader.split_at(len as usize);
        assert_eq!(data, b"abc");
        assert_eq!(read_input(&mut reader).unwrap(), Input::Start(start));
        assert!(read_input(&mut reader).is_err());
    }

    #[test]
    fn terminal_messages_round_trip() {
        let messages = [
            Input::Stdin(b"uname -r\r\x03".to_vec()),
            Input::Resize(WindowSize {
                rows: 40,
                cols: 120,
            }),
            Input::Hangup,
        ];
        let mut bytes = Vec::new();
        for message in &messages {
            encode_input(message, &mut bytes);
        }
        let mut reader = &bytes[..];
        for message in messages {
            assert_eq!(read_input(&mut reader).unwrap(), message);
        }
        assert!(reader.is_empty());
    }

    #[test]
    fn an_oversize_header_is_refused() {
        let bytes = (MAX_INPUT_LEN + 1).to_le_bytes();
        assert!(read_input(&mut &bytes[..]).is_err());
    }
}
