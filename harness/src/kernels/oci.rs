//! OCI kernel images: resolving a tag to the image manifest it names now,
//! and pulling a pinned image's layers into the cache.
//!
//! Registries are spoken to through `oci-client` (the distribution API,
//! anonymous bearer tokens, image indexes resolved to linux/amd64). Loopback
//! registries, and those named in [`INSECURE_ENV`], are reached over plain
//! HTTP, as container engines do.

use std::path::PathBuf;
use std::time::Instant;

use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::fetch::{FetchError, FetchEvent, Fetcher};
use super::KernelEntry;

/// The `sha256` key an OCI entry pins: its image manifest's digest.
pub const PIN: &str = "manifest";

/// Environment variable listing registries (`host:port`, comma separated)
/// to reach over plain HTTP.
pub const INSECURE_ENV: &str = "KMATRIX_INSECURE_REGISTRIES";

/// A registry that refused or lacks what was asked.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error(
        "`{reference}` is not an image reference (registry/repository:tag or @sha256:…): {reason}"
    )]
    Reference {
        /// What was given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry call failed.
    #[error("{reference}: {error}")]
    Registry {
        /// The reference asked for.
        reference: String,
        /// What the registry or the connection said.
        error: String,
    },
    /// The pinned manifest is gone.
    #[error("the registry no longer has {reference} ({error}); run `kmatrix kernels update --kernels {label}` to pin what its tag names now")]
    Gone {
        /// The kernel's label.
        label: String,
        /// The pinned reference.
        reference: String,
        /// What the registry said.
        error: String,
    },
    /// An image index has no linux/amd64 image.
    #[error("{reference} is an image index with no linux/amd64 image")]
    NoPlatform {
        /// The reference.
        reference: String,
    },
}

fn parse(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| OciError::Reference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

fn client(reference: &Reference) -> Client {
    let registry = reference.resolve_registry().to_owned();
    let host = registry.split(':').next().unwrap_or_default();
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    let listed =
        std::env::var(INSECURE_ENV).is_ok_and(|list| list.split(',').any(|r| r.trim() == registry));
    Client::new(ClientConfig {
        protocol: if loopback || listed {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        ..ClientConfig::default()
    })
}

/// The image manifest `manifest` names for linux/amd64: itself, or the
/// linux/amd64 entry of an index. Returns it with its digest.
async fn image_manifest(
    client: &Client,
    reference: &Reference,
    manifest: OciManifest,
    digest: String,
) -> Result<(OciImageManifest, String), OciError> {
    match manifest {
        OciManifest::Image(image) => Ok((image, digest)),
        OciManifest::ImageIndex(index) => {
            let chosen =
                linux_amd64_resolver(&index.manifests).ok_or_else(|| OciError::NoPlatform {
                    reference: reference.whole(),
                })?;
            let platform = reference.clone_with_digest(chosen.clone());
            let (image, _) = client
                .pull_image_manifest(&platform, &RegistryAuth::Anonymous)
                .await
                .map_err(|e| OciError::Registry {
                    reference: platform.whole(),
                    error: e.to_string(),
                })?;
            Ok((image, chosen))
        }
    }
}

/// The digest of the linux/amd64 image manifest `reference` names now.
pub async fn resolve(reference: &str) -> Result<String, OciError> {
    let parsed = parse(reference)?;
    let client = client(&parsed);
    let (manifest, digest) = client
        .pull_manifest(&parsed, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| OciError::Registry {
            reference: reference.to_owned(),
            error: e.to_string(),
        })?;
    let (_, digest) = image_manifest(&client, &parsed, manifest, digest).await?;
    Ok(digest)
}

/// Pulls the layers of the image pinned by `pin` into the cache (each kept
/// by its digest) and returns their paths, in order.
pub async fn pull(
    fetcher: &Fetcher,
    entry: &KernelEntry,
    reference: &str,
    pin: &[u8; 32],
) -> Result<Vec<PathBuf>, FetchError> {
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let pinned = parsed.clone_with_digest(format!("sha256:{}", hex::encode(pin)));
    if fetcher.offline() {
        return Err(FetchError::Offline {
            label: entry.label.clone(),
            what: pinned.whole(),
        });
    }
    let client = client(&parsed);
    let (manifest, digest) = client
        .pull_manifest(&pinned, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            oci(OciError::Gone {
                label: entry.label.clone(),
                reference: pinned.whole(),
                error: e.to_string(),
            })
        })?;
    let (image, _) = image_manifest(&client, &pinned, manifest, digest)
        .await
        .map_err(oci)?;

    let mut layers = Vec::new();
    for layer in &image.layers {
        let mut expected = [0u8; 32];
        let hex = layer.digest.strip_prefix("sha256:").unwrap_or_default();
        if hex::decode_to_slice(hex, &mut expected).is_err() {
            return Err(oci(OciError::Registry {
                reference: pinned.whole(),
                error: format!("layer digest `{}` is not sha256", layer.digest),
            }));
        }
        let path = fetcher.cache().blob(&expected);
        if !path.exists() {
            pull_layer(fetcher, entry, &client, &pinned, layer, &expected, &path).await?;
        }
        layers.push(path);
    }
    Ok(layers)
}

async fn pull_layer(
    fetcher: &Fetcher,
    entry: &KernelEntry,
    client: &Client,
    reference: &Reference,
    layer: &oci_client::manifest::OciDescriptor,
    expected: &[u8; 32],
    dest: &std::path::Path,
) -> Result<(), FetchError> {
    let what = format!("layer {}", &layer.digest[..19.min(layer.digest.len())]);
    let io = |source| FetchError::Io {
        path: dest.to_owned(),
        source,
    };
    fetcher.progress(FetchEvent::Downloading {
        label: entry.label.clone(),
        what: what.clone(),
        bytes: u64::try_from(layer.size).ok(),
    });
    let start = Instant::now();
    let temp = fetcher.cache().temp_file().map_err(io)?;
    let mut file = tokio::fs::File::from_std(temp.reopen().map_err(io)?);
    client
        .pull_blob(reference, layer, &mut file)
        .await
        .map_err(|e| FetchError::Download {
            url: format!("{}@{}", reference.whole(), layer.digest),
            source: e.to_string().into(),
        })?;
    file.flush().await.map_err(io)?;
    let bytes = std::fs::read(temp.path()).map_err(io)?;
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if &actual != expected {
        return Err(FetchError::DigestMismatch {
            label: entry.label.clone(),
            what,
            url: reference.whole(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        });
    }
    temp.persist(dest).map_err(|e| io(e.error))?;
    fetcher.progress(FetchEvent::Downloaded {
        label: entry.label.clone(),
        what,
        bytes: bytes.len() as u64,
        seconds: start.elapsed().as_secs_f64(),
    });
    Ok(())
}
