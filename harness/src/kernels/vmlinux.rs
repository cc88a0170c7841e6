//! The uncompressed kernel, extracted once when a kernel enters the cache.
//!
//! Under emulation, decompressing the kernel is the largest single cost of
//! a boot. A bzImage carries its compressed ELF `vmlinux` as the payload
//! its boot header points at (`payload_offset`/`payload_length`, boot
//! protocol 2.08); when that ELF has a PVH entry point (the Xen ELF note
//! `PHYS32_ENTRY`, `CONFIG_PVH=y`), QEMU boots it directly and the guest
//! decompresses nothing. Images without one are booted as they are.

use std::io::Read;

use object::{Object, ObjectSection};

use super::bounded::{read_capped, MAX_FILE};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH entry point.
const PHYS32_ENTRY: u32 = 18;

/// The legacy LZ4 frame magic the kernel's build uses.
const LZ4_LEGACY: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

/// The largest block of a legacy LZ4 frame, decompressed.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// The ELF kernel inside `image`, if it is a bzImage whose payload kmatrix
/// can decompress and whose ELF has a PVH entry point.
pub fn extract(image: &[u8]) -> Option<Vec<u8>> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes(image.get(0x206..0x208)?.try_into().ok()?);
    if version < 0x0208 {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let field = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let start = (setup_sects + 1) * 512 + field(0x248)?;
    let payload = image.get(start..start.checked_add(field(0x24c)?)?)?;
    let elf = decompress(payload)?;
    has_pvh_entry(&elf).then_some(elf)
}

/// `payload` decompressed, if it is in a format the kernel's build uses.
pub(super) fn decompress(payload: &[u8]) -> Option<Vec<u8>> {
    let capped = |reader: &mut dyn Read| read_capped(reader, MAX_FILE, "the kernel").ok();
    match payload {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            // One frame: the kernel's build appends the size after it.
            let mut decoder = zstd::stream::read::Decoder::new(payload)
                .ok()?
                .single_frame();
            capped(&mut decoder)
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => capped(&mut xz2::read::XzDecoder::new(payload)),
        [0x1f, 0x8b, ..] => capped(&mut flate2::read::GzDecoder::new(payload)),
        [a, b, c, d, ..] if [*a, *b, *c, *d] == LZ4_LEGACY => lz4_legacy(&payload[4..]),
        _ => None,
    }
}

/// A legacy LZ4 frame: blocks, each its compressed length and its bytes,
/// until the data (or another frame) ends.
fn lz4_legacy(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let (raw, tail) = rest.split_at(4);
        if raw == LZ4_LEGACY {
            // Frames may follow one another.
            rest = tail;
            continue;
        }
        let len = u32::from_le_bytes(raw.try_into().ok()?) as usize;
        if len == 0 || len > tail.len() {
            break;
        }
        let (block, tail) = tail.split_at(len);
        let mut buf = vec![0u8; LZ4_LEGACY_BLOCK];
        let n = lz4_flex::block::decompress_into(block, &mut buf).ok()?;
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > MAX_FILE {
            return None;
        }
        rest = tail;
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `elf` has the PVH entry note.
fn has_pvh_entry(elf: &[u8]) -> bool {
    let Ok(file) = object::File::parse(elf) else {
        return false;
    };
    file.sections()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with(".note")))
        .filter_map(|s| s.data().ok())
        .any(|data| notes(data).any(|(name, kind)| name == b"Xen\0" && kind == PHYS32_ENTRY))
}

/// The (name, type) of each ELF note in a note section.
fn notes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], u32)> {
    std::iter::from_fn(move || {
        let word = |d: &[u8], at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
        };
        let name_len = word(data, 0)? as usize;
        let desc_len = word(data, 4)? as usize;
        let kind = word(data, 8)?;
        let align = |n: usize| n.div_ceil(4) * 4;
        let name = data.get(12..12 + name_len)?;
        let next = 12 + align(name_len) + align(desc_len);
        data = data.get(next..).unwrap_or_default();
        Some((name, kind))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_lz4_frame_decompresses() {
        let text = b"an uncompressed kernel, many times over. ".repeat(1000);
        let block = lz4_flex::block::compress(&text);
        let mut frame = LZ4_LEGACY.to_vec();
        frame.extend_from_slice(&(block.len() as u32).to_le_bytes());
        frame.extend_from_slice(&block);
        // The size the kernel's build appends.
        frame.extend_from_slice(&(text.len() as u32).to_le_bytes());
        assert_eq!(decompress(&frame).unwrap(), text);
    }

    #[test]
    fn notes_are_walked_with_their_padding() {
        let mut data = Vec::new();
        for (name, kind, desc) in [
            (&b"GNU\0"[..], 3u32, &b"abcdef"[..]),
            (b"Xen\0", 18, b"\x01\x02\x03\x04"),
        ] {
            data.extend_from_slice(&(name.len() as u32).to_le_bytes());
            data.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            data.extend_from_slice(&kind.to_le_bytes());
            data.extend_from_slice(name);
            data.extend_from_slice(desc);
            data.resize(data.len().div_ceil(4) * 4, 0);
        }
        let found: Vec<_> = notes(&data).collect();
        assert_eq!(found, [(&b"GNU\0"[..], 3), (&b"Xen\0"[..], 18)]);
    }

    #[test]
    fn not_a_bzimage_gives_nothing() {
        assert_eq!(extract(&[0; 4096]), None);
    }
}
