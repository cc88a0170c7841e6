//! OCI kernel images: resolving a tag to the image manifest it names now,
//! and pulling a pinned image's layers into the cache.
//!
//! Registries are spoken to through `oci-client` (the distribution API,
//! anonymous bearer tokens). An image index (one tag for several
//! platforms, as little-vm-helper publishes its kernel images for amd64
//! and arm64) is resolved to the image of the entry's architecture; the
//! pin is that image's manifest. Loopback registries, and those named in
//! [`INSECURE_ENV`], are reached over plain HTTP, as container engines do.

use std::path::PathBuf;

use futures::StreamExt;
use kmatrix_protocol::Arch;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{ImageIndexEntry, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::kernels::blobs::{Attempt, Blobs, Body, Timeouts};
use crate::kernels::error::{FetchError, OciError};
use crate::kernels::{KernelEntry, Pinning, Version};

/// The `sha256` key an OCI entry pins: its image manifest's digest.
pub const PIN: &str = "manifest";

/// Environment variable listing registries (`host:port`, comma separated)
/// to reach over plain HTTP.
pub const INSECURE_ENV: &str = "KMATRIX_INSECURE_REGISTRIES";

/// The kernel version a tag names: only when it starts with one (`6.6`,
/// `6.6-20250101.012345`); `bpf-next-20250101.012345` and `rhel9.6-…`
/// name none.
pub fn tag_version(tag: &str) -> Option<Version> {
    tag.starts_with(|c: char| c.is_ascii_digit())
        .then(|| Version::find_in(tag))?
}

/// Whether `registry` (`host:port`) is reached over plain HTTP: a loopback
/// one, or one [`INSECURE_ENV`] lists.
pub fn plain_http(registry: &str) -> bool {
    let host = registry.split(':').next().unwrap_or_default();
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    loopback
        || std::env::var(INSECURE_ENV)
            .is_ok_and(|list| list.split(',').any(|r| r.trim() == registry))
}

pub(super) fn parse(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| OciError::Reference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// The digest of the linux image for `arch` among an index's `manifests`;
/// else the platforms it has (`os/architecture[/variant]`, `unknown` for
/// an entry that names none).
fn platform_image(manifests: &[ImageIndexEntry], arch: Arch) -> Result<String, Vec<String>> {
    manifests
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch.name())
        })
        .map(|entry| entry.digest.clone())
        .ok_or_else(|| {
            manifests
                .iter()
                .map(|entry| match &entry.platform {
                    Some(p) => match &p.variant {
                        Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    },
                    None => "unknown".to_owned(),
                })
                .collect()
        })
}

fn client(reference: &Reference, arch: Arch) -> Client {
    let timeouts = Timeouts::from_env();
    let registry = reference.resolve_registry().to_owned();
    Client::new(ClientConfig {
        protocol: if plain_http(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(move |manifests: &[ImageIndexEntry]| {
            platform_image(manifests, arch).ok()
        })),
        connect_timeout: Some(timeouts.connect),
        read_timeout: Some(timeouts.read),
        ..ClientConfig::default()
    })
}

/// The image manifest `manifest` names for linux on `arch`: itself, or
/// that platform's entry of an index. Returns it with its digest.
async fn image_manifest(
    client: &Client,
    reference: &Reference,
    manifest: OciManifest,
    digest: String,
    arch: Arch,
) -> Result<(OciImageManifest, String), OciError> {
    match manifest {
        OciManifest::Image(image) => Ok((image, digest)),
        OciManifest::ImageIndex(index) => {
            let chosen =
                platform_image(&index.manifests, arch).map_err(|found| OciError::NoPlatform {
                    reference: reference.whole(),
                    arch,
                    found,
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

/// The pin `entry` would have now: the image manifest its reference names
/// for the entry's architecture.
pub async fn newest(entry: &KernelEntry, reference: &str) -> Result<Pinning, FetchError> {
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let client = client(&parsed, entry.arch);
    let (manifest, digest) = client
        .pull_manifest(&parsed, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            oci(OciError::Registry {
                reference: reference.to_owned(),
                error: e.to_string(),
            })
        })?;
    let (_, digest) = image_manifest(&client, &parsed, manifest, digest, entry.arch)
        .await
        .map_err(oci)?;
    Ok(Pinning {
        missing: Vec::new(),
        label: entry.label.clone(),
        package: None,
        sha256: [(PIN.to_owned(), digest)].into(),
    })
}

/// Pulls the layers of the image `entry` pins into the cache (each kept by
/// its digest, through the blob store) and returns their paths, in order.
pub async fn pull(
    blobs: &Blobs,
    entry: &KernelEntry,
    reference: &str,
) -> Result<Vec<PathBuf>, FetchError> {
    let pin = super::pin(entry, PIN)?;
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let pinned = parsed.clone_with_digest(format!("sha256:{}", hex::encode(pin)));
    if blobs.offline() {
        return Err(FetchError::Offline {
            label: entry.label.clone(),
            what: pinned.whole(),
        });
    }
    let client = client(&parsed, entry.arch);
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
    let (image, _) = image_manifest(&client, &pinned, manifest, digest, entry.arch)
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
        let what = format!("layer {}", &layer.digest[..19.min(layer.digest.len())]);
        let url = format!("{}@{}", pinned.whole(), layer.digest);
        let open = || async {
            let stream = client
                .pull_blob_stream(&pinned, layer)
                .await
                .map_err(|e| Attempt::Transient(e.to_string().into()))?;
            Ok::<_, Attempt>(Body {
                size: stream.content_length,
                stream: stream.stream.boxed(),
            })
        };
        let limit = u64::try_from(layer.size).ok();
        layers.push(
            blobs
                .get(&entry.label, &what, &url, &expected, limit, open)
                .await?,
        );
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::manifest::Platform;

    fn entry(digest: &str, platform: Option<(&str, &str, Option<&str>)>) -> ImageIndexEntry {
        ImageIndexEntry {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 1,
            platform: platform.map(|(os, architecture, variant)| Platform {
                architecture: architecture.into(),
                os: os.into(),
                os_version: None,
                os_features: None,
                variant: variant.map(str::to_owned),
                features: None,
            }),
            annotations: None,
        }
    }

    #[test]
    fn an_index_resolves_to_the_entrys_architecture_or_names_what_it_has() {
        let index = [
            entry("sha256:a", Some(("linux", "amd64", None))),
            entry("sha256:w", Some(("windows", "arm64", None))),
            entry("sha256:b", Some(("linux", "arm64", Some("v8")))),
        ];
        assert_eq!(
            platform_image(&index, Arch::Amd64).as_deref(),
            Ok("sha256:a")
        );
        assert_eq!(
            platform_image(&index, Arch::Arm64).as_deref(),
            Ok("sha256:b")
        );
        let amd64_only = [
            entry("sha256:a", Some(("linux", "amd64", None))),
            entry("sha256:s", Some(("linux", "arm", Some("v7")))),
            entry("sha256:u", None),
        ];
        let found = platform_image(&amd64_only, Arch::Arm64).unwrap_err();
        assert_eq!(found, ["linux/amd64", "linux/arm/v7", "unknown"]);
        let message = OciError::NoPlatform {
            reference: "r/k:6.6".into(),
            arch: Arch::Arm64,
            found,
        }
        .to_string();
        assert_eq!(message, "r/k:6.6 is an image index with no linux/arm64 image: it has linux/amd64, linux/arm/v7, unknown; name an image built for arm64, or give the entry the `arch` of one it has");
    }
}
