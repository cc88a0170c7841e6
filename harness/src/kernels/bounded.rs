//! Reading what a download holds without trusting its headers: every read
//! of decompressed or archived data has a cap, and no buffer is sized from
//! a size the data claims.

use std::io::Read;

/// The most a kernel image, module or config may be once decompressed.
pub const MAX_FILE: u64 = 512 << 20;

/// The most a decompressed package index may be.
pub const MAX_INDEX: u64 = 256 << 20;

/// Reads all of `reader`, failing if it holds more than `cap` bytes.
pub fn read_capped(reader: impl Read, cap: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} is larger than {} MiB; refusing it", cap >> 20),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_cap_is_refused() {
        assert_eq!(read_capped(&[1u8, 2, 3][..], 3, "x").unwrap(), [1, 2, 3]);
        let err = read_capped(std::io::repeat(0), 1 << 20, "the index").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the index is larger than 1 MiB; refusing it"
        );
    }
}
