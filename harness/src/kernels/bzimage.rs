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

/// The upstream version a Debian build names in its version string
/// (`… Debian 5.10.237-1 (2025-05-19)` gives `5.10.237`; a backport's
/// `7.3.4-1~bpo13+1` gives `7.3.4`).
pub fn upstream_version(version_string: &str) -> Option<String> {
    let (_, after) = version_string.split_once(" Debian ")?;
    let version = after.split_whitespace().next()?;
    let upstream = version.split(['-', '~', '+']).next()?;
    upstream
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| upstream.to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_debian_s_upstream_version() {
        assert_eq!(
            upstream_version("5.10.0-32-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110) #1 SMP Debian 5.10.237-1 (2025-05-19)").as_deref(),
            Some("5.10.237")
        );
        assert_eq!(
            upstream_version("7.3.4+deb13-cloud-amd64 (x@y) #1 SMP PREEMPT_DYNAMIC Debian 7.3.4-1~bpo13+1 (2026-10-01)").as_deref(),
            Some("7.3.4")
        );
        assert_eq!(upstream_version("6.9.0 (me@host) #1 SMP"), None);
    }

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
