//! The agent's queue: frames encoded but not yet written to the port, kept
//! in locked pages whose guest-physical addresses the agent sends
//! ([`crate::Frame::Queue`]). Results wait there instead of costing a write
//! each; when a guest hangs, the host stops it and reads the queue out of
//! its memory, so that nothing sent before the hang is lost.
//!
//! Layout, little-endian: [`MAGIC`], `base` (`u64`: the stream offset of
//! the first queued byte, counted from the byte after the `Queue` frame,
//! which the agent writes out at once), `len` (`u64`), then `len` bytes of
//! encoded frames. The agent sets `len` to 0 before it
//! moves `base` on, and writes the bytes before it raises `len`: a guest
//! stopped between two stores is read as a queue holding less, never
//! bytes that are not there.

/// The queue's first bytes.
pub const MAGIC: [u8; 8] = *b"KMXQUEUE";

/// Bytes before the queued frames.
pub const HEADER: usize = 24;

/// The queue's size, in bytes: a few write-outs' worth.
pub const SIZE: usize = 128 * 1024;

/// Why a queue read from guest memory could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// The bytes read are not a queue.
    #[error("the guest memory read holds no result queue (its pages moved, or the read failed)")]
    NoQueue,
    /// The header says more than the queue holds.
    #[error("the result queue says it holds {len} bytes, more than its {capacity}")]
    TooLong {
        /// What the header says.
        len: u64,
        /// What the queue can hold.
        capacity: usize,
    },
    /// Bytes between what the host received and the queue were written
    /// but never arrived.
    #[error("{missing} bytes written before the result queue never arrived")]
    Gap {
        /// How many.
        missing: u64,
    },
}

/// The queue's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes written out between the `Queue` frame and the first queued
    /// byte.
    pub base: u64,
    /// Bytes queued.
    pub len: u64,
}

impl Header {
    /// Reads the header at the start of `area`.
    pub fn read(area: &[u8]) -> Result<Self, QueueError> {
        if area.len() < HEADER || area[..8] != MAGIC {
            return Err(QueueError::NoQueue);
        }
        let field = |at: usize| u64::from_le_bytes(area[at..at + 8].try_into().expect("8 bytes"));
        Ok(Self {
            base: field(8),
            len: field(16),
        })
    }

    /// Writes the header at the start of `area`.
    pub fn write(&self, area: &mut [u8]) {
        area[..8].copy_from_slice(&MAGIC);
        area[8..16].copy_from_slice(&self.base.to_le_bytes());
        self.write_len(area);
    }

    /// Writes `len` alone, into a header written before.
    pub fn write_len(&self, area: &mut [u8]) {
        area[16..24].copy_from_slice(&self.len.to_le_bytes());
    }
}

/// The bytes of `area` (a queue read from a stopped guest) that the host,
/// having received `received` bytes of the stream, has not seen.
pub fn unreceived(area: &[u8], received: u64) -> Result<&[u8], QueueError> {
    let header = Header::read(area)?;
    let capacity = area.len() - HEADER;
    if header.len > capacity as u64 {
        return Err(QueueError::TooLong {
            len: header.len,
            capacity,
        });
    }
    if received < header.base {
        return Err(QueueError::Gap {
            missing: header.base - received,
        });
    }
    let seen = (received - header.base).min(header.len) as usize;
    Ok(&area[HEADER + seen..HEADER + header.len as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(base: u64, bytes: &[u8]) -> Vec<u8> {
        let mut area = vec![0; 64];
        Header {
            base,
            len: bytes.len() as u64,
        }
        .write(&mut area);
        area[HEADER..HEADER + bytes.len()].copy_from_slice(bytes);
        area
    }

    #[test]
    fn only_what_the_host_did_not_receive_is_recovered() {
        let area = area(100, b"abcdef");
        assert_eq!(unreceived(&area, 100).unwrap(), b"abcdef");
        assert_eq!(unreceived(&area, 104).unwrap(), b"ef");
        assert_eq!(unreceived(&area, 106).unwrap(), b"");
        assert_eq!(unreceived(&area, 500).unwrap(), b"");
    }

    #[test]
    fn a_damaged_or_missing_queue_is_an_error() {
        assert_eq!(unreceived(&[0; 64], 0), Err(QueueError::NoQueue));
        let mut area = area(0, b"ab");
        area[16] = 200;
        assert_eq!(
            unreceived(&area, 0),
            Err(QueueError::TooLong {
                len: 200,
                capacity: 40
            })
        );
        assert_eq!(
            unreceived(&self::area(10, b"ab"), 4),
            Err(QueueError::Gap { missing: 6 })
        );
    }
}
