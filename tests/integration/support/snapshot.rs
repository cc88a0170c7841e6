//! A loopback stand-in for Debian's snapshot archive, in the format its
//! client reads (`harness/src/kernels/source/snapshot.rs`): the
//! machine-readable API (`mr/package/linux-signed-amd64/` and each
//! version's `binpackages`, the series' builds; `mr/binary/<image>/`, its
//! version's `binfiles` and the file's `info`), the archive as it was when
//! each build was first seen (`archive/debian/<time>/`, a `bookworm` index
//! signed by the test key) and the files by hash (`file/<hash>`).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::mirror::{packages_xz, signed_index};

/// The suite every build of the stand-in was published in.
pub const SUITE: &str = "bookworm";

/// The source package whose versions make the series' builds.
const SOURCE: &str = "linux-signed-amd64";

/// One build of the series: its ABI name (`6.1.0-11`), the version of the
/// source package that made it (`6.1.61+1`) and its image package's bytes.
pub struct Build {
    pub name: String,
    pub source_version: String,
    pub deb: Vec<u8>,
}

impl Build {
    /// Build `name` of `deb`'s bytes, made by source version `source_version`.
    pub fn new(name: &str, source_version: &str, deb: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            source_version: source_version.to_owned(),
            deb,
        }
    }

    /// Its image package, `linux-image-<build>-cloud-amd64`.
    pub fn package(&self) -> String {
        format!("linux-image-{}-cloud-amd64", self.name)
    }

    /// The binary packages' version (`6.1.61-1` for source `6.1.61+1`).
    fn binary_version(&self) -> String {
        self.source_version.replacen('+', "-", 1)
    }

    /// The path the stand-in serves its `.deb` at.
    pub fn file(&self) -> String {
        format!("/file/{}", hash(&self.deb))
    }
}

/// The name the stand-in gives a file (the archive's are 40 hex digits).
fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..40].to_owned()
}

/// The time the archive first saw the `n`th build.
pub fn first_seen(n: usize) -> String {
    format!("202403{:02}T084214Z", n + 1)
}

/// `deb` with an `ar` member `_kmatrix-build` naming `build` appended
/// (dpkg leaves `_` members alone, kmatrix reads up to `data.tar`): the
/// same kernel, other bytes, as each rebuild's package has.
pub fn repackaged(deb: &[u8], build: &str) -> Vec<u8> {
    let mut out = deb.to_vec();
    if out.len() % 2 == 1 {
        out.push(b'\n');
    }
    let data = build.as_bytes();
    out.extend(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "_kmatrix-build",
            0,
            0,
            0,
            644,
            data.len()
        )
        .bytes(),
    );
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
    out
}

/// The stand-in's files for `builds`, oldest first. The `n`th was first
/// seen at [`first_seen`]`(n)`, when the signed `bookworm` index listed it
/// and the builds before it.
pub fn archive(builds: &[Build]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let versions: Vec<String> = builds
        .iter()
        .rev()
        .map(|b| format!(r#"{{"version":"{}"}}"#, b.source_version))
        .collect();
    files.insert(
        format!("/mr/package/{SOURCE}/"),
        format!(
            r#"{{"package":"{SOURCE}","result":[{}]}}"#,
            versions.join(",")
        )
        .into_bytes(),
    );
    for (n, build) in builds.iter().enumerate() {
        let (package, version) = (build.package(), build.binary_version());
        let other = format!("linux-image-{}-amd64", build.name);
        files.insert(
            format!("/mr/package/{SOURCE}/{}/binpackages", build.source_version),
            format!(
                r#"{{"package":"{SOURCE}","result":[{{"name":"linux-image-cloud-amd64","version":"{version}"}},{{"name":"{other}","version":"{version}"}},{{"name":"{package}","version":"{version}"}}]}}"#
            )
            .into_bytes(),
        );
        files.insert(
            format!("/mr/binary/{package}/"),
            format!(
                r#"{{"binary":"{package}","result":[{{"binary_version":"{version}","name":"{SOURCE}","source":"{SOURCE}","version":"{}"}}]}}"#,
                build.source_version
            )
            .into_bytes(),
        );
        let hash = hash(&build.deb);
        files.insert(
            format!("/mr/binary/{package}/{version}/binfiles"),
            format!(r#"{{"binary_version":"{version}","binary":"{package}","result":[{{"architecture":"amd64","hash":"{hash}"}}]}}"#)
                .into_bytes(),
        );
        files.insert(
            format!("/mr/file/{hash}/info"),
            format!(
                r#"{{"hash":"{hash}","result":[{{"archive_name":"debian","first_seen":"{}","name":"{package}_{version}_amd64.deb","path":"/pool/main/l/{SOURCE}","size":{}}}]}}"#,
                first_seen(n),
                build.deb.len()
            )
            .into_bytes(),
        );
        let listed: Vec<(String, String, &[u8])> = builds[..=n]
            .iter()
            .map(|b| {
                let file = format!(
                    "pool/main/l/{SOURCE}/{}_{}_amd64.deb",
                    b.package(),
                    b.binary_version()
                );
                (b.package(), file, &b.deb[..])
            })
            .collect();
        let entries: Vec<(&str, &str, &[u8])> = listed
            .iter()
            .map(|(p, f, d)| (p.as_str(), f.as_str(), *d))
            .collect();
        let at = format!("/archive/debian/{}", first_seen(n));
        files.extend(
            signed_index(SUITE, packages_xz(&entries))
                .into_iter()
                .map(|(path, bytes)| (path.replacen("/debian", &at, 1), bytes)),
        );
        files.insert(build.file(), build.deb.clone());
    }
    files
}
