//! The archive's signed index of indexes: a suite's `InRelease`, verified
//! with `gpgv` (what apt itself calls) against a keyring, and the SHA256
//! digests and sizes it gives for the package indexes. Nothing from a
//! mirror is used unless this signature covers it.
//!
//! The keyring is the archive's [`Distro::keyring_env`]
//! (`KMATRIX_DEBIAN_KEYRING`, `KMATRIX_UBUNTU_KEYRING`), else the
//! machine's (`/usr/share/keyrings/<distro>-archive-keyring.gpg`, the one
//! apt's sources name with `Signed-By`), else the copy of the archive's
//! keyring shipped with kmatrix (`images/keyring/`).
//!
//! [`Keyring::at`] is a keyring a matrix names, for the sources that
//! verify with gpgv too: mainline `CHECKSUMS`, RPM metadata and packages.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::distro::Distro;
use crate::kernels::bounded::MAX_INDEX;

/// The keyring to verify with, and where it came from (for messages).
pub struct Keyring {
    path: PathBuf,
    origin: String,
    /// Holds a temporary keyring (the shipped one, or one dearmored) while
    /// it is used.
    _file: Option<tempfile::NamedTempFile>,
}

impl Keyring {
    /// `distro`'s keyring: its environment variable's, else the
    /// machine's, else the shipped one.
    pub fn resolve(distro: Distro) -> std::io::Result<Self> {
        let env = distro.keyring_env();
        if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
            let path = std::path::absolute(PathBuf::from(path))?;
            return Ok(Self {
                origin: format!("{} ({env})", path.display()),
                path,
                _file: None,
            });
        }
        let system = distro.system_keyring();
        if Path::new(system).is_file() {
            return Ok(Self {
                path: system.into(),
                origin: system.into(),
                _file: None,
            });
        }
        let file = temporary(distro.shipped_keyring())?;
        Ok(Self {
            path: file.path().to_owned(),
            origin: format!("{distro}'s archive keyring shipped with kmatrix"),
            _file: Some(file),
        })
    }

    /// The keyring at `path` (binary, or ASCII-armored as distributions
    /// publish their keys: gpgv reads only the former, so such a file is
    /// dearmored into a temporary one); `origin` names it in messages.
    /// A relative path is made absolute: gpgv would look for it in its
    /// home directory.
    pub fn at(path: PathBuf, origin: String) -> Self {
        let path = std::path::absolute(&path).unwrap_or(path);
        let file = std::fs::read(&path)
            .ok()
            .filter(|bytes| bytes.starts_with(b"-----BEGIN PGP"))
            .and_then(|bytes| dearmor(&bytes))
            .and_then(|keys| temporary(&keys).ok());
        Self {
            path: file.as_ref().map_or(path, |f| f.path().to_owned()),
            origin,
            _file: file,
        }
    }

    /// Where it came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Checks the signature of a clearsigned `InRelease` and returns the
    /// text it covers.
    pub fn verify(&self, inrelease: &[u8]) -> Result<String, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let signed = dir.path().join("InRelease");
        let text = dir.path().join("Release");
        std::fs::write(&signed, inrelease).map_err(|e| e.to_string())?;
        self.gpgv(
            dir.path(),
            &[OsStr::new("--output"), text.as_os_str(), signed.as_os_str()],
        )?;
        std::fs::read_to_string(&text).map_err(|e| e.to_string())
    }

    /// Checks `Release` against its detached signature (`Release.gpg`,
    /// for mirrors without `InRelease`) and returns its text.
    pub fn verify_detached(&self, release: &[u8], signature: &[u8]) -> Result<String, String> {
        self.verify_binary(release, signature)?;
        String::from_utf8(release.to_vec()).map_err(|e| e.to_string())
    }

    /// Checks `data` against its detached `signature` (binary or
    /// ASCII-armored): an RPM header and its header signature,
    /// `repomd.xml` and `repomd.xml.asc`, a `CHECKSUMS` and its `.gpg`.
    pub fn verify_binary(&self, data: &[u8], signature: &[u8]) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (file, sig) = (dir.path().join("data"), dir.path().join("data.sig"));
        std::fs::write(&file, data).map_err(|e| e.to_string())?;
        std::fs::write(&sig, signature).map_err(|e| e.to_string())?;
        self.gpgv(dir.path(), &[sig.as_os_str(), file.as_os_str()])
    }

    /// Runs gpgv with this keyring and `args`.
    fn gpgv(&self, home: &Path, args: &[&OsStr]) -> Result<(), String> {
        let output = Command::new("gpgv")
            .arg("--keyring")
            .arg(&self.path)
            .args(args)
            .env("GNUPGHOME", home)
            .output()
            .map_err(|e| {
                format!("cannot run gpgv ({e}); install it (apt-get install gpgv) to verify what kmatrix downloads")
            })?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let said: Vec<&str> = said
                .lines()
                .map(|l| l.trim_start_matches("gpgv: ").trim())
                .filter(|l| !l.is_empty() && !l.contains("keyblock resource"))
                .collect();
            return Err(format!(
                "its signature does not verify against {}: {}",
                self.origin,
                said.join("; ")
            ));
        }
        Ok(())
    }
}

/// A temporary keyring file holding `keys`.
fn temporary(keys: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new()
        .prefix("kmatrix-keyring-")
        .suffix(".gpg")
        .tempfile()?;
    std::fs::write(file.path(), keys)?;
    Ok(file)
}

/// The binary keys of an ASCII-armored key file (its base64 body; the
/// checksum line after it is left out).
fn dearmor(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(text).ok()?;
    let mut keys = Vec::new();
    for block in text.split("-----BEGIN PGP").skip(1) {
        let body = block
            .split_once("\n\n")
            .or_else(|| block.split_once("\r\n\r\n"))?
            .1;
        let body: String = body
            .lines()
            .take_while(|l| !l.starts_with('=') && !l.starts_with("-----"))
            .collect();
        keys.extend(
            base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .ok()?,
        );
    }
    Some(keys)
}

/// The digests a verified `Release` gives, by path below the suite.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Release {
    sha256: HashMap<String, (String, u64)>,
}

impl Release {
    /// Reads the `SHA256:` field of a `Release` file.
    pub fn parse(text: &str) -> Self {
        let mut sha256 = HashMap::new();
        let mut in_sha256 = false;
        for line in text.lines() {
            if !line.starts_with(' ') {
                in_sha256 = line.trim_end() == "SHA256:";
                continue;
            }
            if !in_sha256 {
                continue;
            }
            let mut fields = line.split_whitespace();
            if let (Some(digest), Some(size), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            {
                if let Ok(size) = size.parse() {
                    sha256.insert(path.to_owned(), (digest.to_ascii_lowercase(), size));
                }
            }
        }
        Self { sha256 }
    }

    /// The sha256 (hex) and size of `path` (e.g.
    /// `main/binary-amd64/Packages.xz`).
    pub fn get(&self, path: &str) -> Option<(&str, u64)> {
        self.sha256.get(path).map(|(d, s)| (d.as_str(), *s))
    }
}

/// Downloads `url` whole, up to [`MAX_INDEX`] bytes; `Ok(None)` when the
/// server has no such file.
pub async fn download_if_there(
    client: &reqwest::Client,
    url: &str,
) -> Result<Option<Vec<u8>>, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| crate::error_chain::error_chain(&e))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let response = response
        .error_for_status()
        .map_err(|e| crate::error_chain::error_chain(&e))?;
    let mut bytes = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        bytes.extend_from_slice(&chunk.map_err(|e| crate::error_chain::error_chain(&e))?);
        if bytes.len() as u64 > MAX_INDEX {
            return Err(format!("{url} is larger than {} MiB", MAX_INDEX >> 20));
        }
    }
    Ok(Some(bytes))
}

/// Downloads `url` whole, up to [`MAX_INDEX`] bytes.
pub async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    download_if_there(client, url)
        .await?
        .ok_or_else(|| format!("{url}: 404 Not Found"))
}

/// The suite's signed `Release` text: `InRelease`, else `Release` with
/// its detached `Release.gpg`.
pub async fn signed_text(
    client: &reqwest::Client,
    dists: &str,
    keyring: &Keyring,
) -> Result<String, Fetched> {
    if let Some(inrelease) = download_if_there(client, &format!("{dists}/InRelease"))
        .await
        .map_err(Fetched::Network)?
    {
        return keyring
            .verify(&inrelease)
            .map_err(|e| Fetched::Unverified(format!("InRelease: {e}")));
    }
    let release = download(client, &format!("{dists}/Release"))
        .await
        .map_err(Fetched::Network)?;
    let signature = download_if_there(client, &format!("{dists}/Release.gpg"))
        .await
        .map_err(Fetched::Network)?
        .ok_or_else(|| {
            Fetched::Unverified("the mirror has neither InRelease nor Release.gpg".into())
        })?;
    keyring
        .verify_detached(&release, &signature)
        .map_err(|e| Fetched::Unverified(format!("Release: {e}")))
}

/// Why a signed text could not be had.
pub enum Fetched {
    /// The mirror could not be reached or refused.
    Network(String),
    /// It arrived, but its signature does not check out.
    Unverified(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sha256_field() {
        let text = "Origin: Debian\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n ABCD 42 main/binary-amd64/Packages.xz\n ef01 7 main/Contents-amd64\nAcquire-By-Hash: yes\n";
        let release = Release::parse(text);
        assert_eq!(
            release.get("main/binary-amd64/Packages.xz"),
            Some(("abcd", 42))
        );
        assert_eq!(release.get("main/Contents-amd64"), Some(("ef01", 7)));
        assert_eq!(release.get("main/binary-arm64/Packages.xz"), None);
    }

    #[test]
    fn a_named_keyring_is_absolute_and_dearmored() {
        let binary = Keyring::at("keys.gpg".into(), "test".into());
        assert_eq!(binary.path, std::path::absolute("keys.gpg").unwrap());
        assert!(binary._file.is_none());

        let dir = tempfile::tempdir().unwrap();
        let armored = dir.path().join("RPM-GPG-KEY");
        std::fs::write(
            &armored,
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nVersion: x\n\nAQID\nBAU=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n",
        )
        .unwrap();
        let keyring = Keyring::at(armored.clone(), "test".into());
        assert_ne!(keyring.path, armored);
        assert_eq!(std::fs::read(&keyring.path).unwrap(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_shipped_keyring_verifies_nothing_forged() {
        let keyring = Keyring {
            path: PathBuf::from("/nonexistent"),
            origin: "test".into(),
            _file: None,
        };
        let forged = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";
        assert!(keyring.verify(forged).is_err());
    }
}
