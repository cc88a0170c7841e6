//! An arm64 kernel image as Debian ships it: a plain `Image`, a gzip-ed
//! one, or an EFI zboot image (a PE file whose header at offset 4 says
//! `zimg` and points at the compressed `Image`). QEMU boots a plain
//! `Image` directly; the others are decompressed once, when the kernel
//! enters the cache, so that no boot pays for it.

/// Where an `Image` header carries its magic, and the magic.
const MAGIC_AT: usize = 0x38;
const MAGIC: &[u8; 4] = b"ARMd";

/// Whether `data` is a plain arm64 `Image`.
pub fn is_image(data: &[u8]) -> bool {
    data.get(MAGIC_AT..MAGIC_AT + 4) == Some(MAGIC)
}

/// The plain `Image` inside `data`, if `data` is a compressed one kmatrix
/// can decompress; `None` for a plain `Image` or anything else.
pub fn uncompressed(data: &[u8]) -> Option<Vec<u8>> {
    let payload = if data.get(..2) == Some(b"MZ") && data.get(4..8) == Some(b"zimg") {
        let field = |at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let (offset, size) = (field(8)?, field(12)?);
        data.get(offset..offset.checked_add(size)?)?
    } else {
        data
    };
    let image = super::vmlinux::decompress(payload)?;
    is_image(&image).then_some(image)
}

/// The kernel's version string (`6.1.0-50-cloud-arm64 (debian-kernel@…)
/// … #1 SMP Debian 6.1.158-1 (…)`), found in a plain `Image`.
pub fn version_string(image: &[u8]) -> Option<String> {
    const PREFIX: &[u8] = b"Linux version ";
    let start = image.windows(PREFIX.len()).position(|w| w == PREFIX)? + PREFIX.len();
    let rest = &image[start..];
    let end = rest.iter().position(|&b| b == 0 || b == b'\n')?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image() -> Vec<u8> {
        let mut image = vec![0u8; 0x1000];
        image[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(MAGIC);
        image.extend_from_slice(
            b"Linux version 6.1.0-50-cloud-arm64 (x@y) #1 SMP Debian 6.1.158-1\n\0",
        );
        image
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn plain_gzip_and_zboot_images_give_the_plain_image() {
        let plain = image();
        assert!(is_image(&plain));
        assert_eq!(uncompressed(&plain), None);
        assert_eq!(uncompressed(&gzip(&plain)).unwrap(), plain);

        let payload = gzip(&plain);
        let mut zboot = vec![0u8; 0x100];
        zboot[..2].copy_from_slice(b"MZ");
        zboot[4..8].copy_from_slice(b"zimg");
        zboot[8..12].copy_from_slice(&0x100u32.to_le_bytes());
        zboot[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        zboot[24..28].copy_from_slice(b"gzip");
        zboot.extend_from_slice(&payload);
        assert_eq!(uncompressed(&zboot).unwrap(), plain);

        assert_eq!(uncompressed(&gzip(b"not a kernel")), None);
        assert_eq!(
            version_string(&plain).as_deref(),
            Some("6.1.0-50-cloud-arm64 (x@y) #1 SMP Debian 6.1.158-1")
        );
    }
}
