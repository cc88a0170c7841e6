//! Reading the version out of an x86 kernel image (bzImage).
//!
//! The boot protocol header (at 0x1f1) carries the magic `HdrS` at 0x202
//! and, at 0x20e, a pointer (less 0x200) to a NUL-terminated string such as
//! `6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP …`.

/// The image's version string, if it is a bzImage.
pub fn version_string(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let pointer = u16::from_le_bytes(image.get(0x20e..0x210)?.try_into().ok()?) as usize;
    let start = pointer + 0x200;
    let rest = image.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_header_string() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        image[0x300..0x316].copy_from_slice(b"6.1.0-50-cloud-amd64 (");
        assert_eq!(
            version_string(&image).as_deref(),
            Some("6.1.0-50-cloud-amd64 (")
        );
        assert_eq!(version_string(&[0; 16]), None);
    }
}
