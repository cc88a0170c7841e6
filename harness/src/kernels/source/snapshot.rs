//! Pins that do not rot: Debian drops superseded kernels from its mirrors
//! weeks after a newer one arrives, but its snapshot archive keeps every
//! package ever published. When a pinned package is gone from the mirror,
//! the snapshot archive named by [`SNAPSHOT_ENV`] is asked for the
//! package's builds (its machine-readable API: `mr/binary/<package>/`, then
//! each version's `binfiles`), and each candidate is downloaded through the
//! blob store until one matches the pin, which is verified as always.

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

/// The URLs of every `arch` build of `package` the archive at `base` holds,
/// newest version first.
pub async fn candidates(
    client: &reqwest::Client,
    base: &str,
    package: &str,
    arch: kmatrix_protocol::Arch,
) -> Result<Vec<String>, String> {
    let get = |url: String| async move {
        let response = client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {}", crate::error_chain::error_chain(&e)))?;
        let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>((url, bytes))
    };
    let (url, bytes) = get(format!("{base}/mr/binary/{package}/")).await?;
    let versions: Versions = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
    let mut urls = Vec::new();
    for version in versions.result {
        let (url, bytes) = get(format!(
            "{base}/mr/binary/{package}/{}/binfiles",
            version.binary_version
        ))
        .await?;
        let files: Binfiles = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
        urls.extend(
            files
                .result
                .into_iter()
                .filter(|f| f.architecture == arch.name() || f.architecture == "all")
                .filter(|f| f.hash.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|f| format!("{base}/file/{}", f.hash)),
        );
    }
    Ok(urls)
}
