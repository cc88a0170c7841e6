//! Debian's snapshot archive, which keeps every package Debian ever
//! published, at the base URL [`SNAPSHOT_ENV`] names. Two uses: pins that do
//! not rot (Debian drops superseded kernels from its mirrors weeks after a
//! newer one arrives; a pinned package gone from the mirror is looked up
//! here), and `debian = { suite, build }` entries, any build ever
//! published.
//!
//! What is read: the machine-readable API (`mr/binary/<package>/`, each
//! version's `binfiles`, a file's `info`: the archive and the time it was
//! first seen; `mr/package/<source>/` and each version's `binpackages`, the
//! builds of a series), the archive as it was at a time
//! (`archive/<archive>/<time>/`, an apt archive with its signed `InRelease`)
//! and files by their hash (`file/<hash>`).
use serde::Deserialize;

/// Environment variable naming the snapshot archive's base URL.
pub const SNAPSHOT_ENV: &str = "KMATRIX_DEBIAN_SNAPSHOT";

/// The configured snapshot archive, if any.
pub fn base() -> Option<String> {
    std::env::var(SNAPSHOT_ENV)
        .ok()
        .filter(|b| !b.is_empty())
        .map(|b| b.trim_end_matches('/').to_owned())
}

#[derive(Deserialize)]
struct Versions {
    result: Vec<Version>,
}

#[derive(Deserialize)]
struct Version {
    binary_version: String,
}

#[derive(Deserialize)]
struct Binfiles {
    result: Vec<Binfile>,
}

#[derive(Deserialize)]
struct Binfile {
    architecture: String,
    hash: String,
}

#[derive(Deserialize)]
struct FileInfo {
    result: Vec<Seen>,
}

/// Where and when the snapshot archive first saw a file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Seen {
    /// The archive, e.g. `debian` or `debian-security`.
    pub archive_name: String,
    /// The time of the archive's first copy holding it (`20240302T084214Z`).
    pub first_seen: String,
}

#[derive(Deserialize)]
struct SourceVersions {
    result: Vec<SourceVersion>,
}

#[derive(Deserialize)]
struct SourceVersion {
    version: String,
}

#[derive(Deserialize)]
struct BinPackages {
    result: Vec<BinPackage>,
}

#[derive(Deserialize)]
struct BinPackage {
    name: String,
}

/// Whether a name from the archive is safe in a URL path segment.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.:_~".contains(&b))
}

/// The JSON document at `url`.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: String,
) -> Result<T, String> {
    let response = client
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{url}: {}", crate::error_chain::error_chain(&e)))?;
    let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
}

/// Every version of the binary `package` the archive holds, newest first
/// (as the archive lists them).
pub async fn versions(
    client: &reqwest::Client,
    base: &str,
    package: &str,
) -> Result<Vec<String>, String> {
    let versions: Versions = get_json(client, format!("{base}/mr/binary/{package}/")).await?;
    Ok(versions
        .result
        .into_iter()
        .map(|v| v.binary_version)
        .filter(|v| plain(v))
        .collect())
}

/// The hashes of `package`'s `version` files for `arch`.
pub async fn hashes(
    client: &reqwest::Client,
    base: &str,
    package: &str,
    version: &str,
    arch: kmatrix_protocol::Arch,
) -> Result<Vec<String>, String> {
    let files: Binfiles = get_json(
        client,
        format!("{base}/mr/binary/{package}/{version}/binfiles"),
    )
    .await?;
    Ok(files
        .result
        .into_iter()
        .filter(|f| f.architecture == arch.name() || f.architecture == "all")
        .filter(|f| !f.hash.is_empty() && f.hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|f| f.hash)
        .collect())
}

/// Where and when the archive first saw the file `hash`.
pub async fn seen(client: &reqwest::Client, base: &str, hash: &str) -> Result<Vec<Seen>, String> {
    let info: FileInfo = get_json(client, format!("{base}/mr/file/{hash}/info")).await?;
    Ok(info
        .result
        .into_iter()
        .filter(|s| plain(&s.archive_name) && plain(&s.first_seen))
        .collect())
}

/// The URL of the archive `seen` names as it was when it first held the
/// file: an apt archive, with its `dists/` signed as it was then.
pub fn archive_at(base: &str, seen: &Seen) -> String {
    format!("{base}/archive/{}/{}", seen.archive_name, seen.first_seen)
}

/// The URL of the file `hash`.
pub fn file_url(base: &str, hash: &str) -> String {
    format!("{base}/file/{hash}")
}

/// The URLs of every `arch` build of `package` the archive at `base` holds,
/// newest version first.
pub async fn candidates(
    client: &reqwest::Client,
    base: &str,
    package: &str,
    arch: kmatrix_protocol::Arch,
) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for version in versions(client, base, package).await? {
        let hashes = hashes(client, base, package, &version, arch).await?;
        urls.extend(hashes.iter().map(|h| file_url(base, h)));
    }
    Ok(urls)
}

/// The builds (ABI names, e.g. `6.1.0-20`) of the `series` (`6.1`) that
/// the source package `source` (`linux-signed-amd64`) made an image
/// package `linux-image-<build>-<suffix>` of, oldest first, each once,
/// with the source version that first made it.
pub async fn builds(
    client: &reqwest::Client,
    base: &str,
    source: &str,
    series: &str,
    suffix: &str,
) -> Result<Vec<(String, String)>, String> {
    let listed: SourceVersions = get_json(client, format!("{base}/mr/package/{source}/")).await?;
    let mut in_series: Vec<String> = listed
        .result
        .into_iter()
        .map(|v| v.version)
        .filter(|v| plain(v) && v.strip_prefix(series).is_some_and(|r| r.starts_with('.')))
        .collect();
    in_series.reverse();
    let mut builds: Vec<(String, String)> = Vec::new();
    for version in in_series {
        let binaries: BinPackages = get_json(
            client,
            format!("{base}/mr/package/{source}/{version}/binpackages"),
        )
        .await?;
        for binary in binaries.result {
            if let Some(build) = image_build(&binary.name, suffix) {
                if !builds.iter().any(|(b, _)| b == build) {
                    builds.push((build.to_owned(), version.clone()));
                }
            }
        }
    }
    Ok(builds)
}

/// The build an image package `linux-image-<build>-<suffix>` names.
fn image_build<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let build = name
        .strip_prefix("linux-image-")?
        .strip_suffix(suffix)?
        .strip_suffix('-')?;
    build
        .starts_with(|c: char| c.is_ascii_digit())
        .then_some(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_builds_are_read_from_package_names() {
        assert_eq!(
            image_build("linux-image-6.1.0-20-cloud-amd64", "cloud-amd64"),
            Some("6.1.0-20")
        );
        assert_eq!(
            image_build("linux-image-6.1.0-20-cloud-amd64-unsigned", "cloud-amd64"),
            None
        );
        assert_eq!(image_build("linux-image-cloud-amd64", "cloud-amd64"), None);
        assert_eq!(
            image_build("linux-image-6.1.0-20-amd64", "cloud-amd64"),
            None
        );
    }

    #[test]
    fn names_that_would_leave_their_path_segment_are_refused() {
        assert!(plain("6.1.85-1"));
        assert!(plain("20240302T084214Z"));
        assert!(!plain("../x"));
        assert!(!plain("a/b"));
        assert!(!plain(""));
    }
}
