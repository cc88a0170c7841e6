//! Reading an RPM package (rpm's v4 file format): the 96-byte lead, the
//! signature header, the header, then the payload, a cpio archive
//! compressed with xz, zstd or gzip.
//!
//! Trust follows rpm's own chain: the signature header holds an OpenPGP
//! signature over the header's bytes (`RPMSIGTAG_RSA`, or `RPMSIGTAG_DSA`
//! for other key types), checked with gpgv against the distribution's
//! keyring; the header holds the sha256 of the compressed payload
//! (`RPMTAG_PAYLOADDIGEST`), checked against the payload. Nothing is
//! extracted from a package that fails either.
//!
//! Every size a header claims is bounded before anything is allocated.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::bounded::{read_capped, MAX_FILE};
use super::deb::{DebError, KernelFiles};
use super::source::release::Keyring;

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const LEAD_SIZE: usize = 96;
const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
/// rpm's own bounds on a header: entries and data bytes.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 256 << 20;

const SIGTAG_DSA: u32 = 267;
const SIGTAG_RSA: u32 = 268;
const SIGTAG_SHA256: u32 = 273;
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_PAYLOADFORMAT: u32 = 1124;
const TAG_PAYLOADDIGEST: u32 = 5092;
const TAG_PAYLOADDIGESTALGO: u32 = 5093;
/// `PGPHASHALGO_SHA256`, the payload digest's algorithm in every
/// distribution kmatrix reads.
const HASH_SHA256: u32 = 8;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;

/// One header structure: its bytes as stored (what a header signature
/// covers), with the index and data store inside.
struct Header {
    bytes: Vec<u8>,
    entries: u32,
}

impl Header {
    /// Reads a header at the start of `data`; `what` names it in errors.
    fn read(data: &mut impl Read, what: &str) -> Result<Self, String> {
        let mut intro = [0u8; 16];
        data.read_exact(&mut intro)
            .map_err(|e| format!("the {what} ends early: {e}"))?;
        if intro[..8] != HEADER_MAGIC {
            return Err(format!("the {what} has no header magic"));
        }
        let entries = u32::from_be_bytes(intro[8..12].try_into().expect("4 bytes"));
        let data_len = u32::from_be_bytes(intro[12..16].try_into().expect("4 bytes"));
        if entries > MAX_ENTRIES || data_len > MAX_DATA {
            return Err(format!(
                "the {what} claims {entries} entries and {data_len} bytes, more than rpm allows"
            ));
        }
        let rest = u64::from(entries) * 16 + u64::from(data_len);
        let mut bytes = intro.to_vec();
        data.take(rest)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("the {what}: {e}"))?;
        if bytes.len() as u64 != 16 + rest {
            return Err(format!("the {what} ends early"));
        }
        Ok(Self { bytes, entries })
    }

    /// The type, count and data of `tag`'s entry.
    fn entry(&self, tag: u32) -> Option<(u32, u32, &[u8])> {
        let store = 16 + self.entries as usize * 16;
        (0..self.entries as usize).find_map(|i| {
            let at = 16 + i * 16;
            let field = |n: usize| {
                u32::from_be_bytes(
                    self.bytes[at + n * 4..at + n * 4 + 4]
                        .try_into()
                        .expect("4 bytes"),
                )
            };
            if field(0) != tag {
                return None;
            }
            let offset = field(2) as usize;
            Some((field(1), field(3), self.bytes.get(store + offset..)?))
        })
    }

    fn binary(&self, tag: u32) -> Option<&[u8]> {
        match self.entry(tag)? {
            (TYPE_BIN, count, data) => data.get(..count as usize),
            _ => None,
        }
    }

    /// A string tag, or the first string of a string array.
    fn string(&self, tag: u32) -> Option<&str> {
        match self.entry(tag)? {
            (TYPE_STRING | TYPE_STRING_ARRAY, _, data) => {
                let end = data.iter().position(|b| *b == 0)?;
                std::str::from_utf8(&data[..end]).ok()
            }
            _ => None,
        }
    }

    fn int32(&self, tag: u32) -> Option<u32> {
        match self.entry(tag)? {
            (TYPE_INT32, 1.., data) => Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?)),
            _ => None,
        }
    }
}

/// An RPM package's headers, read from its start; the payload follows.
pub struct Package<R> {
    signature: Header,
    header: Header,
    payload: R,
}

impl<R: BufRead> Package<R> {
    /// Reads the lead and both headers of the package in `data`.
    pub fn read(mut data: R) -> Result<Self, String> {
        let mut lead = [0u8; LEAD_SIZE];
        data.read_exact(&mut lead)
            .map_err(|_| "not an RPM package (shorter than its lead)".to_owned())?;
        if lead[..4] != LEAD_MAGIC {
            return Err("not an RPM package (no lead magic)".into());
        }
        if lead[4] != 3 {
            return Err(format!(
                "an RPM package of format {}, not 3 (rpm 4's)",
                lead[4]
            ));
        }
        let signature = Header::read(&mut data, "signature header")?;
        // The signature header is padded to a multiple of 8 bytes.
        let padding = (8 - signature.bytes.len() % 8) % 8;
        std::io::copy(&mut (&mut data).take(padding as u64), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        let header = Header::read(&mut data, "header")?;
        Ok(Self {
            signature,
            header,
            payload: data,
        })
    }

    /// `name-version-release`, as the header gives it.
    pub fn nvr(&self) -> String {
        [TAG_NAME, TAG_VERSION, TAG_RELEASE]
            .map(|tag| self.header.string(tag).unwrap_or("?"))
            .join("-")
    }

    /// Checks the header's signature against `keyring`, then the payload's
    /// digest against the header, and gives what follows the headers (the
    /// payload, read to its end).
    pub fn verify(mut self, keyring: &Keyring) -> Result<R, String> {
        self.verify_header(keyring)?;
        let expected = self.payload_digest()?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut self.payload, &mut hasher).map_err(|e| e.to_string())?;
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            return Err(format!(
                "its payload has sha256 {actual}, but its signed header says {expected}: the package is corrupt or tampered with"
            ));
        }
        Ok(self.payload)
    }

    /// How many bytes precede the payload.
    fn payload_offset(&self) -> u64 {
        let signature = self.signature.bytes.len().next_multiple_of(8);
        (LEAD_SIZE + signature + self.header.bytes.len()) as u64
    }

    fn verify_header(&self, keyring: &Keyring) -> Result<(), String> {
        if let Some(digest) = self.signature.string(SIGTAG_SHA256) {
            let actual = hex::encode(Sha256::digest(&self.header.bytes));
            if !digest.eq_ignore_ascii_case(&actual) {
                return Err(format!(
                    "its header has sha256 {actual}, but its signature header says {digest}: the package is corrupt or tampered with"
                ));
            }
        }
        let signature = self
            .signature
            .binary(SIGTAG_RSA)
            .or_else(|| self.signature.binary(SIGTAG_DSA))
            .ok_or("it is not signed (its signature header has no header signature), so kmatrix cannot tell it came from the distribution")?;
        keyring
            .verify_binary(&self.header.bytes, signature)
            .map_err(|e| format!("its header signature {e}"))
    }

    fn payload_digest(&self) -> Result<String, String> {
        let algo = self.header.int32(TAG_PAYLOADDIGESTALGO);
        let digest = self.header.string(TAG_PAYLOADDIGEST);
        match (algo, digest) {
            (Some(HASH_SHA256), Some(digest)) => Ok(digest.to_ascii_lowercase()),
            (Some(other), Some(_)) => Err(format!(
                "its payload digest uses hash algorithm {other}, not sha256"
            )),
            _ => Err("its header names no payload digest (a package built by rpm older than 4.14), so its payload cannot be verified".into()),
        }
    }
}

/// Adds the kernel files of a package's payload (in `format`, as its
/// header names it), read from `payload`.
fn read_payload(
    format: Option<&str>,
    mut payload: impl BufRead,
    files: &mut KernelFiles,
) -> Result<(), String> {
    let format = format.unwrap_or("cpio");
    if format != "cpio" {
        return Err(format!("its payload is `{format}`, not a cpio archive"));
    }
    let magic = payload.fill_buf().map_err(|e| e.to_string())?;
    let decoder: Box<dyn Read + '_> = if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(payload))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(payload).map_err(|e| e.to_string())?)
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::GzDecoder::new(payload))
    } else if magic.starts_with(b"0707") {
        Box::new(payload)
    } else {
        return Err(
            "its payload is compressed with neither xz, zstd nor gzip (the compressions kmatrix reads)"
                .into(),
        );
    };
    read_cpio(decoder, files).map_err(|e| format!("reading its payload: {e}"))
}

/// Adds the kernel files of a newc cpio archive (what rpm writes).
fn read_cpio(mut data: impl Read, files: &mut KernelFiles) -> std::io::Result<()> {
    const MODE_TYPE: u32 = 0o170000;
    const MODE_FILE: u32 = 0o100000;
    loop {
        let mut entry = cpio::NewcReader::new(data).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{e} (a cpio archive in the newc format is expected)"),
            )
        })?;
        if entry.entry().is_trailer() {
            return Ok(());
        }
        let meta = entry.entry();
        let path = meta.name().trim_start_matches("./").to_owned();
        // A hard-linked file's bytes come with its last link, which is
        // read after (and so replaces) the empty earlier ones.
        if meta.mode() & MODE_TYPE == MODE_FILE && files.wants(&path) {
            let bytes = read_capped(&mut entry, MAX_FILE, &path)?;
            files.add_path(&path, bytes);
        }
        data = entry.finish()?;
    }
}

impl KernelFiles {
    /// Adds the kernel files of the RPM package at `path`, once its header
    /// signature verifies against `keyring` and its payload matches the
    /// header's digest.
    pub fn read_rpm(&mut self, path: &Path, keyring: &Keyring) -> Result<(), DebError> {
        let fail = |reason: String| DebError {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let package = Package::read(std::io::BufReader::new(file)).map_err(fail)?;
        let nvr = package.nvr();
        let fail = |e: String| fail(format!("{nvr}: {e}"));
        let offset = package.payload_offset();
        let format = package.header.string(TAG_PAYLOADFORMAT).map(str::to_owned);
        // Verified whole first: nothing is decompressed from a payload its
        // signed header does not vouch for.
        let mut file = package.verify(keyring).map_err(fail)?.into_inner();
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| fail(e.to_string()))?;
        read_payload(format.as_deref(), std::io::BufReader::new(file), self).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header structure holding `entries` (tag, type, count, data).
    pub(crate) fn header(entries: &[(u32, u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        for (tag, kind, count, data) in entries {
            if *kind == TYPE_INT32 {
                while !store.len().is_multiple_of(4) {
                    store.push(0);
                }
            }
            for field in [*tag, *kind, store.len() as u32, *count] {
                index.extend_from_slice(&field.to_be_bytes());
            }
            store.extend_from_slice(data);
        }
        let mut bytes = HEADER_MAGIC.to_vec();
        bytes.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&(store.len() as u32).to_be_bytes());
        bytes.extend(index);
        bytes.extend(store);
        bytes
    }

    fn lead() -> Vec<u8> {
        let mut lead = vec![0u8; LEAD_SIZE];
        lead[..4].copy_from_slice(&LEAD_MAGIC);
        lead[4] = 3;
        lead
    }

    fn cpio(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            let mut writer = cpio::newc::Builder::new(name)
                .mode(0o100644)
                .write(&mut out, data.len() as u32);
            std::io::Write::write_all(&mut writer, data).unwrap();
            writer.finish().unwrap();
        }
        cpio::newc::trailer(&mut out).unwrap();
        out
    }

    fn package(header_entries: &[(u32, u32, u32, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut bytes = lead();
        bytes.extend(header(&[(SIGTAG_SHA256, TYPE_STRING, 1, b"00\0")]));
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
        bytes.extend(header(header_entries));
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn reads_tags_and_the_payload() {
        let payload = cpio(&[
            ("./lib/modules/6.1.0-x/vmlinuz", b"IMAGE"),
            ("./lib/modules/6.1.0-x/config", b"CONFIG_BPF=y\n"),
            ("./lib/modules/6.1.0-x/modules.builtin", b""),
            (
                "./lib/modules/6.1.0-x/kernel/drivers/char/virtio_console.ko.xz",
                b"xz",
            ),
            ("./usr/share/doc/README", b"not wanted"),
        ]);
        let mut zst = Vec::new();
        zstd::stream::copy_encode(&payload[..], &mut zst, 1).unwrap();
        let bytes = package(
            &[
                (TAG_NAME, TYPE_STRING, 1, b"kernel-core\0"),
                (TAG_VERSION, TYPE_STRING, 1, b"6.1.0\0"),
                (TAG_RELEASE, TYPE_STRING, 1, b"50.el9\0"),
                (TAG_PAYLOADDIGESTALGO, TYPE_INT32, 1, &8u32.to_be_bytes()),
            ],
            &zst,
        );
        let package = Package::read(&bytes[..]).unwrap();
        assert_eq!(package.nvr(), "kernel-core-6.1.0-50.el9");
        assert_eq!(package.header.int32(TAG_PAYLOADDIGESTALGO), Some(8));
        assert!(package
            .payload_digest()
            .unwrap_err()
            .contains("older than 4.14"));

        assert_eq!(package.payload_offset() as usize, bytes.len() - zst.len());
        let mut files = KernelFiles::default();
        read_payload(None, &zst[..], &mut files).unwrap();
        assert_eq!(files.image.as_deref(), Some(&b"IMAGE"[..]));
        assert_eq!(files.release.as_deref(), Some("6.1.0-x"));
        assert!(files.modules.contains_key("virtio_console"));
    }

    #[test]
    fn unsigned_and_malformed_packages_are_refused() {
        let bytes = package(&[], &cpio(&[]));
        let keyring = Keyring::at("/nonexistent".into(), "test".into());
        let err = Package::read(&bytes[..])
            .unwrap()
            .verify(&keyring)
            .err()
            .unwrap();
        assert!(err.contains("sha256"), "{err}");

        assert!(Package::read(&b"<html>"[..])
            .err()
            .unwrap()
            .contains("not an RPM"));
        let mut huge = lead();
        huge.extend_from_slice(&HEADER_MAGIC);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        let err = Package::read(&huge[..]).err().unwrap();
        assert!(err.contains("more than rpm allows"), "{err}");
        let mut short = lead();
        short.extend(header(&[(TAG_NAME, TYPE_STRING, 1, b"kernel\0")]));
        short.truncate(short.len() - 3);
        assert!(Package::read(&short[..])
            .err()
            .unwrap()
            .contains("ends early"));
    }

    #[test]
    fn an_unknown_compression_is_named() {
        let err = read_payload(None, &b"BZh91AY"[..], &mut KernelFiles::default()).unwrap_err();
        assert!(err.contains("neither xz, zstd nor gzip"), "{err}");
        let err = read_payload(Some("drpm"), &b""[..], &mut KernelFiles::default()).unwrap_err();
        assert!(err.contains("not a cpio archive"), "{err}");
    }
}
