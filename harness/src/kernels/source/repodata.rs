//! An RPM repository's metadata, as createrepo writes it and dnf reads it:
//! `repodata/repomd.xml` names each metadata file with its location and
//! checksum, and `primary.xml` lists every package (name, arch, epoch,
//! version, release, its sha256, size and location).

use std::cmp::Ordering;

use quick_xml::events::{BytesStart, Event};

/// One package of `primary.xml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmPackage {
    /// The package name, e.g. `kernel-core`.
    pub name: String,
    /// Its architecture, e.g. `x86_64`.
    pub arch: String,
    /// Its version, e.g. `5.14.0`.
    pub version: String,
    /// Its release, e.g. `362.el9`.
    pub release: String,
    /// Its epoch (0 when absent).
    pub epoch: u64,
    /// Its sha256, hex (`None` when the repository gives another digest).
    pub sha256: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// Where it is, relative to the repository (or to `base`).
    pub href: String,
    /// The `xml:base` its location names, if any.
    pub base: Option<String>,
}

impl RpmPackage {
    /// `name-version-release`.
    pub fn nvr(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.release)
    }

    /// `name-version-release.arch`, the name kmatrix pins it by.
    pub fn nvra(&self) -> String {
        format!("{}.{}", self.nvr(), self.arch)
    }

    /// Orders by epoch, version and release, as rpm does.
    pub fn cmp_evr(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| vercmp(&self.release, &other.release))
    }
}

/// What `repomd.xml` says of one metadata file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataFile {
    /// Its location below the repository, e.g.
    /// `repodata/<digest>-primary.xml.zst`.
    pub href: String,
    /// Its checksum's type (`sha256` from createrepo_c).
    pub checksum_type: String,
    /// Its checksum, hex.
    pub checksum: String,
}

/// The `primary` entry of `repomd.xml`.
pub fn primary_location(repomd: &str) -> Result<MetadataFile, String> {
    let mut reader = quick_xml::Reader::from_str(repomd);
    let (mut in_primary, mut field) = (false, None);
    let (mut href, mut checksum_type, mut checksum) = (None, None, None);
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("repomd.xml: {e}"))?
        {
            Event::Start(e) if e.local_name().as_ref() == b"data" => {
                in_primary = attribute(&e, b"type").as_deref() == Some("primary");
            }
            Event::End(e) if e.local_name().as_ref() == b"data" => in_primary = false,
            Event::Start(e) | Event::Empty(e) if in_primary => match e.local_name().as_ref() {
                b"location" => href = attribute(&e, b"href"),
                b"checksum" => {
                    checksum_type = attribute(&e, b"type");
                    field = Some(());
                }
                _ => {}
            },
            Event::Text(text) if in_primary && field.take().is_some() => {
                checksum = Some(text.decode().map_err(|e| e.to_string())?.trim().to_owned());
            }
            Event::Eof => break,
            _ => field = None,
        }
    }
    match (href, checksum_type, checksum) {
        (Some(href), Some(checksum_type), Some(checksum)) => Ok(MetadataFile {
            href,
            checksum_type,
            checksum: checksum.to_ascii_lowercase(),
        }),
        _ => Err("repomd.xml names no primary metadata with a location and checksum".into()),
    }
}

/// Which element's text is being read.
#[derive(Clone, Copy)]
enum Field {
    Name,
    Arch,
    Checksum,
}

/// The packages of `primary.xml` whose architecture is `arch`.
pub fn packages(primary: &str, arch: &str) -> Result<Vec<RpmPackage>, String> {
    let mut reader = quick_xml::Reader::from_str(primary);
    let mut packages = Vec::new();
    let mut current: Option<RpmPackage> = None;
    let mut field = None;
    // Elements inside `<format>` (dependencies, files) are not read.
    let mut in_format = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("primary.xml: {e}"))?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"package" => {
                current = Some(RpmPackage {
                    name: String::new(),
                    arch: String::new(),
                    version: String::new(),
                    release: String::new(),
                    epoch: 0,
                    sha256: None,
                    size: None,
                    href: String::new(),
                    base: None,
                });
            }
            Event::End(e) if e.local_name().as_ref() == b"package" => {
                if let Some(package) = current.take() {
                    if package.arch == arch && !package.href.is_empty() {
                        packages.push(package);
                    }
                }
            }
            Event::Start(e) if e.local_name().as_ref() == b"format" => in_format = true,
            Event::End(e) if e.local_name().as_ref() == b"format" => in_format = false,
            Event::Start(e) | Event::Empty(e) if !in_format => {
                let Some(package) = current.as_mut() else {
                    continue;
                };
                field = None;
                match e.local_name().as_ref() {
                    b"name" => field = Some(Field::Name),
                    b"arch" => field = Some(Field::Arch),
                    b"checksum" if attribute(&e, b"type").as_deref() == Some("sha256") => {
                        field = Some(Field::Checksum)
                    }
                    b"version" => {
                        package.version = attribute(&e, b"ver").unwrap_or_default();
                        package.release = attribute(&e, b"rel").unwrap_or_default();
                        package.epoch = attribute(&e, b"epoch")
                            .and_then(|e| e.parse().ok())
                            .unwrap_or(0);
                    }
                    b"size" => {
                        package.size = attribute(&e, b"package").and_then(|s| s.parse().ok())
                    }
                    b"location" => {
                        package.href = attribute(&e, b"href").unwrap_or_default();
                        package.base = attribute(&e, b"base");
                    }
                    _ => {}
                }
            }
            Event::Text(text) => {
                if let (Some(package), Some(field)) = (current.as_mut(), field.take()) {
                    let text = text.decode().map_err(|e| e.to_string())?.trim().to_owned();
                    match field {
                        Field::Name => package.name = text,
                        Field::Arch => package.arch = text,
                        Field::Checksum => package.sha256 = Some(text.to_ascii_lowercase()),
                    }
                }
            }
            Event::Eof => break,
            _ => field = None,
        }
    }
    Ok(packages)
}

/// An attribute's unescaped value, by its local name (`xml:base` is
/// `base`).
fn attribute(element: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    element
        .attributes()
        .filter_map(Result::ok)
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// rpm's version comparison (`rpmvercmp`): alternating runs of digits
/// (compared as numbers) and letters (compared as text), other characters
/// separating them; `~` sorts before anything, even the end, `^` after the
/// end but before anything else.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    'segments: loop {
        while a.first().is_some_and(separator) {
            a = &a[1..];
        }
        while b.first().is_some_and(separator) {
            b = &b[1..];
        }
        for mark in [b'~', b'^'] {
            match (a.first() == Some(&mark), b.first() == Some(&mark)) {
                (true, true) => {
                    a = &a[1..];
                    b = &b[1..];
                    continue 'segments;
                }
                (true, false) if mark == b'~' || !b.is_empty() => return Ordering::Less,
                (true, false) => return Ordering::Greater,
                (false, true) if mark == b'~' || !a.is_empty() => return Ordering::Greater,
                (false, true) => return Ordering::Less,
                (false, false) => {}
            }
        }
        if a.is_empty() || b.is_empty() {
            return a.len().cmp(&b.len());
        }
        let numeric = a[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (la, lb) = (run(a), run(b));
        if lb == 0 {
            // A number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (ra, rb) = (&a[..la], &b[..lb]);
        let order = if numeric {
            let (ra, rb) = (trim_zeros(ra), trim_zeros(rb));
            ra.len().cmp(&rb.len()).then_with(|| ra.cmp(rb))
        } else {
            ra.cmp(rb)
        };
        if order != Ordering::Equal {
            return order;
        }
        a = &a[la..];
        b = &b[lb..];
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|d| *d != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_rpm_does() {
        for (a, b, order) in [
            ("1.0", "1.0", Ordering::Equal),
            ("5.14.0", "5.14.0", Ordering::Equal),
            ("362.el9", "70.el9", Ordering::Greater),
            ("503.11.1.el9_4", "503.el9", Ordering::Greater),
            ("1.0a", "1.0", Ordering::Greater),
            ("1.0", "1.0.1", Ordering::Less),
            ("2.0", "10", Ordering::Less),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0^git1", "1.0", Ordering::Greater),
            ("1.0^git1", "1.0.1", Ordering::Less),
            ("a", "1", Ordering::Less),
            ("010", "10", Ordering::Equal),
            ("6.1.102-108.177", "6.1.94-99", Ordering::Greater),
        ] {
            assert_eq!(vercmp(a, b), order, "{a} vs {b}");
            assert_eq!(vercmp(b, a), order.reverse(), "{b} vs {a}");
        }
    }

    const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">ABCDEF</checksum>
    <open-checksum type="sha256">0123</open-checksum>
    <location href="repodata/abcdef-primary.xml.zst"/>
    <size>100</size>
  </data>
  <data type="filelists">
    <checksum type="sha256">ffff</checksum>
    <location href="repodata/ffff-filelists.xml.zst"/>
  </data>
</repomd>"#;

    #[test]
    fn repomd_names_the_primary_metadata() {
        assert_eq!(
            primary_location(REPOMD).unwrap(),
            MetadataFile {
                href: "repodata/abcdef-primary.xml.zst".into(),
                checksum_type: "sha256".into(),
                checksum: "abcdef".into(),
            }
        );
        let err = primary_location("<repomd></repomd>").unwrap_err();
        assert!(err.contains("no primary"), "{err}");
    }

    #[test]
    fn primary_lists_packages_of_one_architecture() {
        let primary = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="3">
<package type="rpm">
  <name>kernel-core</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="5.14.0" rel="362.el9"/>
  <checksum type="sha256" pkgid="YES">AA11</checksum>
  <summary>The Linux kernel</summary>
  <size package="123" installed="456" archive="789"/>
  <location xml:base="http://other.example/repo" href="Packages/kernel-core-5.14.0-362.el9.x86_64.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="kernel" flags="EQ" epoch="0" ver="5.14.0"/></rpm:provides>
    <file>/lib/modules/5.14.0-362.el9.x86_64/vmlinuz</file>
  </format>
</package>
<package type="rpm">
  <name>kernel-core</name>
  <arch>aarch64</arch>
  <version epoch="0" ver="5.14.0" rel="362.el9"/>
  <checksum type="sha256" pkgid="YES">bb22</checksum>
  <location href="Packages/kernel-core-5.14.0-362.el9.aarch64.rpm"/>
</package>
<package type="rpm">
  <name>kernel-modules-core</name>
  <arch>x86_64</arch>
  <version epoch="1" ver="5.14.0" rel="70.el9"/>
  <checksum type="sha1" pkgid="YES">cc33</checksum>
  <location href="Packages/m.rpm"/>
</package>
</metadata>"#;
        let packages = packages(primary, "x86_64").unwrap();
        assert_eq!(packages.len(), 2);
        let core = &packages[0];
        assert_eq!(core.nvra(), "kernel-core-5.14.0-362.el9.x86_64");
        assert_eq!(core.sha256.as_deref(), Some("aa11"));
        assert_eq!(core.size, Some(123));
        assert_eq!(core.base.as_deref(), Some("http://other.example/repo"));
        let modules = &packages[1];
        assert_eq!(modules.sha256, None);
        assert_eq!(modules.epoch, 1);
        assert_eq!(modules.cmp_evr(core), Ordering::Greater);
    }
}
