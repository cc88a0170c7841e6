//! `kmatrix kernels update`: moving pins to the packages the archive has
//! now, rewriting `kernels.toml` in place with its comments and layout kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use toml_edit::{DocumentMut, Item, TableLike};

use super::{KernelEntry, Source, Version};

/// New pins for one kernel entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinning {
    /// The entry's label.
    pub label: String,
    /// The package to use: Debian's or Ubuntu's image package, an RPM
    /// kernel's `name-version-release` (`None` for other sources).
    pub package: Option<String>,
    /// sha256 (hex) of every package the kernel is made of.
    pub sha256: BTreeMap<String, String>,
    /// Packages the kernel's image depends on that the index lacks (its
    /// modules, on a mirror that dropped them): pinned without them.
    pub missing: Vec<String>,
}

/// Why the file could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The file is not TOML (it parsed a moment ago: it changed under us).
    #[error("kernels.toml is not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    /// An entry to update is not in the file.
    #[error("no [[kernel]] entry `{0}` in kernels.toml")]
    NoEntry(String),
    /// The file could not be read or replaced.
    #[error("cannot rewrite {}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What moving an entry to its newest pins changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: it already has those pins.
    UpToDate {
        /// What it names (its package, or its source).
        name: String,
    },
    /// New pins.
    Moved {
        /// What it named.
        from: String,
        /// What it names now.
        to: String,
    },
}

/// The sources whose table names the package `kmatrix kernels update`
/// moves.
const PACKAGE_SOURCES: [&str; 3] = ["debian", "ubuntu", "rpm"];

/// Compares `entry` with its newest `pinning`.
pub fn change(entry: &KernelEntry, pinning: &Pinning) -> Change {
    let pins: BTreeMap<_, _> = entry
        .sha256
        .iter()
        .map(|(name, pin)| (name.clone(), hex::encode(pin)))
        .collect();
    let (from, to) = match (&entry.source, &pinning.package) {
        (
            Source::Debian { package, .. }
            | Source::Ubuntu { package, .. }
            | Source::Rpm { package, .. },
            Some(newest),
        ) => (package.clone(), newest.clone()),
        _ => (entry.source.to_string(), entry.source.to_string()),
    };
    if from == to && pins == pinning.sha256 {
        Change::UpToDate { name: from }
    } else {
        Change::Moved { from, to }
    }
}

/// Applies `pinnings` to the matrix file at `path`, replacing it
/// atomically.
pub fn write(path: &Path, pinnings: &[Pinning]) -> Result<(), UpdateError> {
    let io = |source| UpdateError::Io {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let updated = rewrite(&text, pinnings)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(updated.as_bytes()).map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Applies `pinnings` to the matrix text, touching only the `package` and
/// `sha256` of the entries named.
pub fn rewrite(text: &str, pinnings: &[Pinning]) -> Result<String, UpdateError> {
    let mut doc: DocumentMut = text.parse()?;
    for pinning in pinnings {
        let entry = doc
            .get_mut("kernel")
            .and_then(Item::as_array_of_tables_mut)
            .and_then(|kernels| {
                kernels
                    .iter_mut()
                    .find(|k| label_of(k) == Some(pinning.label.clone()))
            })
            .ok_or_else(|| UpdateError::NoEntry(pinning.label.clone()))?;
        let named = PACKAGE_SOURCES
            .into_iter()
            .find(|key| entry.contains_key(key));
        if let (Some(package), Some(source)) = (
            &pinning.package,
            named
                .and_then(|key| entry.get_mut(key))
                .and_then(Item::as_table_like_mut),
        ) {
            set_string(source, "package", package);
        }
        if entry.get("sha256").and_then(Item::as_table_like).is_none() {
            entry.insert("sha256", Item::Table(toml_edit::Table::new()));
        }
        let pins = entry
            .get_mut("sha256")
            .and_then(Item::as_table_like_mut)
            .expect("inserted above");
        let old: Vec<String> = pins.iter().map(|(k, _)| k.to_owned()).collect();
        for key in old.iter().filter(|k| !pinning.sha256.contains_key(*k)) {
            pins.remove(key);
        }
        for (package, digest) in &pinning.sha256 {
            set_string(pins, package, digest);
        }
    }
    Ok(doc.to_string())
}

/// The label an entry is known by: its own, or the one `Matrix::parse`
/// derives from its version and architecture.
fn label_of(entry: &toml_edit::Table) -> Option<String> {
    if let Some(label) = entry.get("label").and_then(Item::as_str) {
        return Some(label.to_owned());
    }
    let version = match entry.get("version").and_then(Item::as_str) {
        Some(text) => text.parse::<Version>().ok()?,
        None => match entry.get("rpm").and_then(|r| r.get("package")) {
            Some(package) => super::entry::nvr_version(package.as_str()?)?,
            None => {
                let named = ["debian", "ubuntu"]
                    .into_iter()
                    .find_map(|key| {
                        let source = entry.get(key)?;
                        source.get("package").or_else(|| source.get("build"))
                    })
                    .or_else(|| entry.get("oci"))
                    .or_else(|| entry.get("mainline"))?
                    .as_str()?;
                Version::find_in(named.rsplit([':', '/']).next()?)?
            }
        },
    };
    let arch = match entry.get("arch").and_then(Item::as_str) {
        Some(text) => text.parse().ok()?,
        None => kmatrix_protocol::Arch::Amd64,
    };
    Some(super::entry::default_label(&version, arch))
}

/// Sets a string value, keeping the old value's surrounding whitespace and
/// comments.
fn set_string(table: &mut dyn TableLike, key: &str, value: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = value.into();
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = r#"# The matrix.
[debian]
# mirror = "http://example/debian"

[[kernel]]
label = "6.1"   # LTS
debian = { suite = "bookworm", package = "linux-image-6.1.0-50-cloud-amd64" }
[kernel.sha256]
"linux-image-6.1.0-50-cloud-amd64" = "aa"  # 26 MB

# Split packages from here on.
[[kernel]]
debian = { suite = "trixie-backports", package = "linux-image-7.3.4+deb13-cloud-amd64" }
sha256 = { "linux-binary-7.3.4+deb13-cloud-amd64" = "bb" }
"#;

    #[test]
    fn moves_pins_and_keeps_comments() {
        let updated = rewrite(
            MATRIX,
            &[
                Pinning {
                    missing: Vec::new(),
                    label: "6.1".into(),
                    package: Some("linux-image-6.1.0-51-cloud-amd64".into()),
                    sha256: BTreeMap::from([(
                        "linux-image-6.1.0-51-cloud-amd64".into(),
                        "cc".into(),
                    )]),
                },
                Pinning {
                    missing: Vec::new(),
                    label: "7.3".into(),
                    package: Some("linux-image-7.3.5+deb13-cloud-amd64".into()),
                    sha256: BTreeMap::from([
                        ("linux-base-7.3.5+deb13-cloud-amd64".into(), "dd".into()),
                        ("linux-binary-7.3.5+deb13-cloud-amd64".into(), "ee".into()),
                    ]),
                },
            ],
        )
        .unwrap();
        for kept in [
            "# The matrix.",
            "# mirror = \"http://example/debian\"",
            "label = \"6.1\"   # LTS",
            "# Split packages from here on.",
        ] {
            assert!(updated.contains(kept), "lost `{kept}`:\n{updated}");
        }
        assert!(
            updated.contains(r#"package = "linux-image-6.1.0-51-cloud-amd64" }"#),
            "{updated}"
        );
        assert!(
            updated.contains(r#""linux-image-6.1.0-51-cloud-amd64" = "cc""#),
            "{updated}"
        );
        assert!(!updated.contains("6.1.0-50"), "{updated}");
        assert!(
            updated.contains(r#""linux-base-7.3.5+deb13-cloud-amd64" = "dd""#),
            "{updated}"
        );
        assert!(!updated.contains("7.3.4"), "{updated}");
        // The result is still TOML.
        updated.parse::<toml::Table>().unwrap();
    }

    #[test]
    fn an_unknown_label_is_an_error() {
        let pinning = Pinning {
            missing: Vec::new(),
            label: "4.19".into(),
            package: None,
            sha256: BTreeMap::new(),
        };
        assert!(matches!(
            rewrite(MATRIX, &[pinning]),
            Err(UpdateError::NoEntry(_))
        ));
    }

    #[test]
    fn moves_an_ubuntu_entry_to_its_new_image_and_modules() {
        let matrix = "[[kernel]]\nubuntu = { suite = \"jammy-updates\", package = \"linux-image-5.15.0-91-generic\" }\n";
        let updated = rewrite(
            matrix,
            &[Pinning {
                missing: Vec::new(),
                label: "5.15".into(),
                package: Some("linux-image-5.15.0-100-generic".into()),
                sha256: BTreeMap::from([
                    ("linux-image-5.15.0-100-generic".into(), "aa".into()),
                    ("linux-modules-5.15.0-100-generic".into(), "bb".into()),
                ]),
            }],
        )
        .unwrap();
        assert!(
            updated.contains(r#"package = "linux-image-5.15.0-100-generic" }"#),
            "{updated}"
        );
        assert!(
            updated.contains(r#""linux-modules-5.15.0-100-generic" = "bb""#),
            "{updated}"
        );
    }
}
