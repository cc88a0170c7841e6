//! What Ubuntu's mainline builds publish, read without I/O: a release's
//! directory name, its `CHECKSUMS` file (the list `sha256sum -c` checks,
//! signed by the kernel team in `CHECKSUMS.gpg`), the kernel packages in it,
//! and the releases a directory listing offers.
//!
//! A release lives in `<base>/v6.6.64/` (`v6.6` for 6.6.0, `v6.7-rc3` for
//! a release candidate). Newer ones hold an `amd64/` and an `arm64/`
//! directory, each with its packages and its own `CHECKSUMS`; older ones
//! hold the packages and one `CHECKSUMS` directly. The `CHECKSUMS` names
//! each file below its own directory, SHA1 lines then SHA256 lines.

use kmatrix_protocol::Arch;

use crate::kernels::Version;

/// The package the kernel image is in: unsigned from 4.x on, before that
/// the whole kernel with its modules.
const IMAGE_PREFIXES: [&str; 2] = ["linux-image-unsigned-", "linux-image-"];

/// The package holding the modules, `/boot/config-*` and `System.map`.
const MODULES_PREFIX: &str = "linux-modules-";

/// The flavour kmatrix boots.
const FLAVOUR: &str = "-generic";

/// The directory name of a release given as `6.6.64`, `v6.6.64`, `6.6`,
/// `6.6.0` or `6.7-rc3`.
pub fn tag(text: &str) -> Result<String, String> {
    let bare = text.trim().trim_start_matches('v');
    if let Some(series) = bare.strip_suffix(".x") {
        let version: Version = series.parse().map_err(|_| not_a_release(text))?;
        if version.patch != 0 || series.matches('.').count() != 1 {
            return Err(not_a_release(text));
        }
        return Ok(format!("v{series}.x"));
    }
    let (numbers, rc) = match bare.split_once("-rc") {
        Some((numbers, rc)) if !rc.is_empty() && rc.bytes().all(|b| b.is_ascii_digit()) => {
            (numbers, Some(rc))
        }
        Some(_) => return Err(not_a_release(text)),
        None => (bare, None),
    };
    let version: Version = numbers.parse().map_err(|_| not_a_release(text))?;
    let mut tag = format!("v{}.{}", version.major, version.minor);
    if version.patch != 0 {
        tag.push_str(&format!(".{}", version.patch));
    }
    if let Some(rc) = rc {
        tag.push_str(&format!("-rc{rc}"));
    }
    Ok(tag)
}

fn not_a_release(text: &str) -> String {
    format!("mainline release `{text}` is not one: give it as `6.6.64` or `v6.6.64` (`6.6` for 6.6.0, `6.6.x` for the series' newest point release at `kmatrix kernels update`, `6.7-rc3` for a release candidate)")
}

/// The series a tag names with `vX.Y.x` (pinned to its newest point
/// release), if it is one.
pub fn series(tag: &str) -> Option<Version> {
    tag.strip_prefix('v')?.strip_suffix(".x")?.parse().ok()
}

/// The version a release's directory names, `None` for release candidates
/// and other names.
pub fn release_version(tag: &str) -> Option<Version> {
    let numbers = tag.strip_prefix('v')?;
    if !numbers.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    numbers.parse().ok()
}

/// The releases a directory listing (an HTTP server's index page) links
/// to, as directory names, ordered by version; release candidates left
/// out.
pub fn releases(html: &str) -> Vec<(Version, String)> {
    let mut found: Vec<(Version, String)> = hrefs(html)
        .filter_map(|href| {
            let name = href.trim_end_matches('/').rsplit('/').next()?;
            let version = release_version(name)?;
            Some((version, name.to_owned()))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The `href` values of a page's links.
fn hrefs(html: &str) -> impl Iterator<Item = &str> {
    html.split("href=").skip(1).filter_map(|rest| {
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        Some(&value[..value.find(quote)?])
    })
}

/// A release directory's `CHECKSUMS`: its SHA256 lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checksums {
    files: Vec<File>,
}

/// One file `CHECKSUMS` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Its name below the directory of the `CHECKSUMS`.
    pub name: String,
    /// Its sha256, lower-case hex.
    pub sha256: String,
}

impl File {
    /// The package's name: the file name up to its first `_`.
    pub fn package(&self) -> &str {
        let base = self.name.rsplit('/').next().unwrap_or(&self.name);
        base.split('_').next().unwrap_or(base)
    }
}

impl Checksums {
    /// Reads the SHA256 lines (`<64 hex> [ *]name`) of a `CHECKSUMS` file;
    /// comments and other digests are skipped.
    pub fn parse(text: &str) -> Self {
        let files = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (digest, name) = line.trim().split_once(char::is_whitespace)?;
                let name = name.trim_start().trim_start_matches('*');
                let hex = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
                (hex && !name.is_empty()).then(|| File {
                    name: name.to_owned(),
                    sha256: digest.to_ascii_lowercase(),
                })
            })
            .collect();
        Self { files }
    }

    /// The file with this sha256 (hex).
    pub fn by_digest(&self, sha256: &str) -> Option<&File> {
        self.files.iter().find(|f| f.sha256 == sha256)
    }

    /// The packages a generic kernel of `arch` is made of: its image and,
    /// where the release splits them off, its modules.
    pub fn kernel(&self, arch: Arch) -> Result<Vec<&File>, String> {
        let suffix = format!("_{arch}.deb");
        let generic: Vec<&File> = self
            .files
            .iter()
            .filter(|f| f.name.ends_with(&suffix) && f.package().ends_with(FLAVOUR))
            .collect();
        let image = IMAGE_PREFIXES
            .iter()
            .map(|prefix| {
                generic
                    .iter()
                    .copied()
                    .filter(|f| f.package().starts_with(prefix))
                    .collect::<Vec<_>>()
            })
            .find(|found| !found.is_empty())
            .ok_or_else(|| {
                format!("it lists no generic {arch} kernel image (linux-image-unsigned-…-generic_…_{arch}.deb): the {arch} build may have failed")
            })?;
        let modules: Vec<&File> = generic
            .iter()
            .copied()
            .filter(|f| f.package().starts_with(MODULES_PREFIX))
            .collect();
        if image.len() > 1 || modules.len() > 1 {
            let names: Vec<&str> = image.iter().chain(&modules).map(|f| f.package()).collect();
            return Err(format!(
                "it lists more than one generic {arch} kernel: {}",
                names.join(", ")
            ));
        }
        Ok(image.into_iter().chain(modules).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_names_its_newest_point_release() {
        assert_eq!(tag("5.15.x").unwrap(), "v5.15.x");
        assert_eq!(tag("v6.6.x").unwrap(), "v6.6.x");
        assert_eq!(series("v5.15.x").map(Version::series), Some((5, 15)));
        assert_eq!(series("v5.15.3"), None);
        assert!(tag("5.x").is_err());
        assert!(tag("5.15.1.x").is_err());
    }

    const SHA_A: &str = "4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9";
    const SHA_B: &str = "0f4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906c";

    #[test]
    fn release_names_follow_the_directories() {
        assert_eq!(tag("6.6.64").unwrap(), "v6.6.64");
        assert_eq!(tag("v6.6.64").unwrap(), "v6.6.64");
        assert_eq!(tag("6.6").unwrap(), "v6.6");
        assert_eq!(tag("6.6.0").unwrap(), "v6.6");
        assert_eq!(tag("v6.7-rc3").unwrap(), "v6.7-rc3");
        for bad in ["6", "six", "6.x", "6.7-rc", "6.6.1.2"] {
            assert!(tag(bad).unwrap_err().contains("give it as"), "{bad}");
        }
        assert_eq!(release_version("v6.6").unwrap().to_string(), "6.6.0");
        assert_eq!(release_version("v6.7-rc3"), None);
    }

    #[test]
    fn listings_give_releases_in_version_order() {
        let html = r#"<tr><td><a href="v6.6.10/">v6.6.10/</a></td></tr>
<a href="v6.6.9/">v6.6.9/</a> <a href='/mainline/v6.6/'>v6.6/</a>
<a href="v6.7-rc3/">v6.7-rc3/</a> <a href="daily/">daily/</a> <a href="?C=M;O=A">Last</a>
<a href="v6.6.9/">again</a>"#;
        let names: Vec<String> = releases(html).into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["v6.6", "v6.6.9", "v6.6.10"]);
    }

    fn checksums() -> String {
        format!(
            "# Checksums, check with the command below:\n#     shasum -c CHECKSUMS\n#\n# Checksums-Sha1:\n{sha1}  linux-image-unsigned-6.6.64-060664-generic_6.6.64-060664.202412141046_amd64.deb\n#\n# Checksums-Sha256:\n{SHA_A}  linux-headers-6.6.64-060664_6.6.64-060664.202412141046_all.deb\n{SHA_A}  linux-image-unsigned-6.6.64-060664-generic_6.6.64-060664.202412141046_amd64.deb\n{SHA_B}  linux-modules-6.6.64-060664-generic_6.6.64-060664.202412141046_amd64.deb\n{SHA_B}  linux-image-unsigned-6.6.64-060664-lowlatency_6.6.64-060664.202412141046_amd64.deb\n",
            sha1 = "a".repeat(40)
        )
    }

    #[test]
    fn checksums_give_the_generic_kernel_of_an_architecture() {
        let sums = Checksums::parse(&checksums());
        let kernel = sums.kernel(Arch::Amd64).unwrap();
        let packages: Vec<&str> = kernel.iter().map(|f| f.package()).collect();
        assert_eq!(
            packages,
            [
                "linux-image-unsigned-6.6.64-060664-generic",
                "linux-modules-6.6.64-060664-generic"
            ]
        );
        assert_eq!(kernel[1].sha256, SHA_B);
        assert_eq!(
            sums.by_digest(SHA_B).unwrap().name,
            "linux-modules-6.6.64-060664-generic_6.6.64-060664.202412141046_amd64.deb"
        );
        let err = sums.kernel(Arch::Arm64).unwrap_err();
        assert!(err.contains("no generic arm64 kernel image"), "{err}");
    }

    #[test]
    fn older_releases_ship_the_whole_kernel_in_its_image() {
        let text = format!("{SHA_A} *linux-image-3.19.0-031900-generic_3.19.0-031900.201502091451_amd64.deb\n{SHA_B}  linux-image-3.19.0-031900-generic_3.19.0-031900.201502091451_i386.deb\n");
        let sums = Checksums::parse(&text);
        let kernel = sums.kernel(Arch::Amd64).unwrap();
        assert_eq!(kernel.len(), 1);
        assert_eq!(kernel[0].package(), "linux-image-3.19.0-031900-generic");

        let twice =
            format!("{text}{SHA_B}  linux-image-3.19.0-031901-generic_3.19.0-031901.1_amd64.deb\n");
        let err = Checksums::parse(&twice).kernel(Arch::Amd64).unwrap_err();
        assert!(err.contains("more than one"), "{err}");
    }
}
