//! Kernel modules: decompressing them, reading `.modinfo`, and ordering the
//! ones a guest needs so that each loads after its dependencies.

use std::collections::{HashMap, HashSet};

use object::{Object, ObjectSection};

use super::bounded::{read_capped, MAX_FILE};

/// A module name as the kernel spells it (`-` folded to `_`), from a path
/// such as `kernel/drivers/virtio/virtio_pci.ko.xz`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))?;
    Some(stem.replace('-', "_"))
}

/// The module's ELF bytes, decompressed according to its file name.
pub fn decompress(path: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let out;
    if path.ends_with(".xz") {
        out = read_capped(xz2::read::XzDecoder::new(bytes), MAX_FILE, path)?;
    } else if path.ends_with(".zst") {
        out = read_capped(zstd::Decoder::new(bytes)?, MAX_FILE, path)?;
    } else if path.ends_with(".gz") {
        return Err(std::io::Error::other(
            "gzip-compressed modules are not supported",
        ));
    } else {
        out = bytes.to_vec();
    }
    Ok(out)
}

/// The `depends=` list of a module's `.modinfo` section.
pub fn depends(elf: &[u8]) -> Result<Vec<String>, String> {
    let file = object::File::parse(elf).map_err(|e| e.to_string())?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|dep| !dep.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Why the module closure could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A needed module is neither built in nor shipped.
    #[error("module `{name}` (needed by {needed_by}) is neither built into the kernel nor in its packages")]
    Missing {
        /// The module.
        name: String,
        /// What needs it.
        needed_by: String,
    },
    /// A module could not be read.
    #[error("module `{name}` ({path}): {reason}")]
    Unreadable {
        /// The module.
        name: String,
        /// Its path in the package.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A module file found in a kernel package.
pub struct ModuleFile {
    /// Its path in the package.
    pub path: String,
    /// Its bytes as shipped (possibly compressed).
    pub bytes: Vec<u8>,
}

/// The modules `roots` need, in load order (dependencies first), as
/// `(name, decompressed ELF)`. Built-in modules are skipped; when `builtin`
/// is unknown (`None`), a module that is not shipped is taken as built in.
pub fn load_order(
    roots: &[&str],
    available: &HashMap<String, ModuleFile>,
    builtin: Option<&HashSet<String>>,
) -> Result<Vec<(String, Vec<u8>)>, ModuleError> {
    let mut order = Vec::new();
    let mut done = HashSet::new();
    for root in roots {
        visit(
            root,
            "the results port",
            available,
            builtin,
            &mut done,
            &mut order,
        )?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    needed_by: &str,
    available: &HashMap<String, ModuleFile>,
    builtin: Option<&HashSet<String>>,
    done: &mut HashSet<String>,
    order: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), ModuleError> {
    let shipped = available.contains_key(name);
    if builtin.map_or(!shipped, |b| b.contains(name)) || !done.insert(name.to_owned()) {
        return Ok(());
    }
    let file = available.get(name).ok_or_else(|| ModuleError::Missing {
        name: name.to_owned(),
        needed_by: needed_by.to_owned(),
    })?;
    let unreadable = |reason: String| ModuleError::Unreadable {
        name: name.to_owned(),
        path: file.path.clone(),
        reason,
    };
    let elf = decompress(&file.path, &file.bytes).map_err(|e| unreadable(e.to_string()))?;
    for dep in depends(&elf).map_err(unreadable)? {
        visit(&dep, name, available, builtin, done, order)?;
    }
    order.push((name.to_owned(), elf));
    Ok(())
}

/// Module names listed in a `modules.builtin` file.
pub fn builtin_names(text: &str) -> HashSet<String> {
    text.lines().filter_map(module_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal relocatable ELF with a `.modinfo` section, as modules have.
    fn module(modinfo: &[u8]) -> Vec<u8> {
        use object::write::{Object as WriteObject, StandardSection};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = WriteObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let id = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        obj.append_section_data(id, modinfo, 1);
        let _ = obj.section_id(StandardSection::Text);
        obj.write().unwrap()
    }

    fn file(path: &str, modinfo: &str) -> (String, ModuleFile) {
        (
            module_name(path).unwrap(),
            ModuleFile {
                path: path.to_owned(),
                bytes: module(modinfo.as_bytes()),
            },
        )
    }

    #[test]
    fn names_fold_dashes_and_strip_compression() {
        assert_eq!(
            module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(
            module_name("a/virtio_pci.ko").as_deref(),
            Some("virtio_pci")
        );
        assert_eq!(module_name("a/modules.order"), None);
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = module(b"license=GPL\0depends=virtio,virtio_ring\0name=virtio_pci\0");
        assert_eq!(depends(&elf).unwrap(), ["virtio", "virtio_ring"]);
        assert!(depends(&module(b"depends=\0")).unwrap().is_empty());
    }

    #[test]
    fn orders_dependencies_first_and_skips_builtins() {
        // The Debian 5.10/6.1 chain.
        let available: HashMap<_, _> = [
            file("d/virtio_ring.ko", "depends=\0"),
            file("d/virtio.ko", "depends=virtio_ring\0"),
            file("d/virtio_pci_modern_dev.ko", "depends=\0"),
            file("d/virtio_pci_legacy_dev.ko", "depends=\0"),
            file(
                "d/virtio_pci.ko",
                "depends=virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio_ring,virtio\0",
            ),
            file("c/virtio_console.ko", "depends=virtio_ring,virtio\0"),
        ]
        .into_iter()
        .collect();
        let order = load_order(
            &["virtio_pci", "virtio_console"],
            &available,
            Some(&HashSet::new()),
        )
        .unwrap();
        let names: Vec<_> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "virtio_console"
            ]
        );

        let builtin = builtin_names("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci.ko\n");
        let order = load_order(
            &["virtio_pci", "virtio_console"],
            &available,
            Some(&builtin),
        )
        .unwrap();
        let names: Vec<_> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["virtio_console"]);
    }

    #[test]
    fn a_missing_module_names_who_needs_it() {
        let available: HashMap<_, _> = [file("c/virtio_console.ko", "depends=virtio\0")]
            .into_iter()
            .collect();
        let builtin = builtin_names("kernel/drivers/virtio/virtio_pci.ko\n");
        let err = load_order(
            &["virtio_pci", "virtio_console"],
            &available,
            Some(&builtin),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "module `virtio` (needed by virtio_console) is neither built into the kernel nor in its packages");
    }
}
