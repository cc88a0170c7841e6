//! A suite's `Packages` index: every package with its file, digest, size
//! and dependencies, and which `.deb` files make up a kernel.

use std::collections::HashMap;

use crate::kernels::Version;

/// One package of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Path of the `.deb` below the mirror.
    pub filename: String,
    /// Its sha256, as hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The names in its `Depends` field (alternatives and versions dropped).
    pub depends: Vec<String>,
}

/// A suite's `Packages` index, by package name.
#[derive(Debug, Default)]
pub struct PackageIndex {
    packages: HashMap<String, Package>,
}

impl PackageIndex {
    /// Parses the text of a `Packages` file.
    pub fn parse(text: &str) -> Self {
        let mut packages = HashMap::new();
        for stanza in text.split("\n\n") {
            let mut name = None;
            let mut package = Package {
                filename: String::new(),
                sha256: String::new(),
                size: 0,
                depends: Vec::new(),
            };
            for line in stanza.lines() {
                let Some((key, value)) = line.split_once(": ") else {
                    continue;
                };
                match key {
                    "Package" => name = Some(value.to_owned()),
                    "Filename" => package.filename = value.to_owned(),
                    "SHA256" => package.sha256 = value.to_owned(),
                    "Size" => package.size = value.parse().unwrap_or(0),
                    "Depends" => {
                        package.depends = value
                            .split(',')
                            .filter_map(|dep| dep.split(['|', '(']).next())
                            .map(|dep| dep.trim().to_owned())
                            .collect()
                    }
                    _ => {}
                }
            }
            if let Some(name) = name {
                packages.insert(name, package);
            }
        }
        Self { packages }
    }

    /// Looks a package up by name.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    /// The packages a kernel is made of: the image package itself, or, for a
    /// split kernel (Debian 6.19 on), the packages its metapackage depends on
    /// that carry the same version and flavour (`linux-binary-…`,
    /// `linux-modules-…`, `linux-base-…`).
    pub fn kernel_packages(&self, image: &str) -> Option<Vec<(String, &Package)>> {
        let package = self.get(image)?;
        let parts = self.parts(image);
        if parts.is_empty() {
            Some(vec![(image.to_owned(), package)])
        } else {
            Some(parts)
        }
    }

    /// The image package and the parts it depends on, for kernels whose
    /// image package holds the image and depends on its modules (Ubuntu's
    /// `linux-image(-unsigned)-…` and `linux-modules-…`).
    pub fn image_and_parts(&self, image: &str) -> Option<Vec<(String, &Package)>> {
        let package = self.get(image)?;
        let mut packages = vec![(image.to_owned(), package)];
        packages.extend(self.parts(image));
        Some(packages)
    }

    /// The packages of the index `image` depends on that carry its release
    /// (the same version, ABI and flavour).
    fn parts(&self, image: &str) -> Vec<(String, &Package)> {
        self.part_names(image)
            .filter_map(|dep| Some((dep.to_owned(), self.get(dep)?)))
            .collect()
    }

    /// The names `image` depends on that carry its release.
    fn part_names<'a>(&'a self, image: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let release = release(image);
        self.get(image)
            .into_iter()
            .flat_map(|package| package.depends.iter())
            .map(String::as_str)
            .filter(move |dep| dep.starts_with("linux-") && dep.ends_with(release))
            .filter(move |dep| *dep != image)
    }

    /// The parts of a split kernel its image depends on that the index
    /// does not have.
    pub fn missing_parts(&self, image: &str) -> Vec<String> {
        self.part_names(image)
            .filter(|dep| self.get(dep).is_none())
            .map(str::to_owned)
            .collect()
    }

    /// The newest `linux-image-<version>-<flavour>` in the index for the
    /// series of `like` (same flavour suffix, and signed or unsigned as
    /// `like` is), by Debian version order of the package names' numbers.
    pub fn newest_like(&self, like: &str) -> Option<&str> {
        let series = Version::find_in(like)?.series();
        let wanted = (unsigned(like), flavour(like));
        self.packages
            .keys()
            .filter(|name| name.starts_with("linux-image-"))
            .filter(|name| (unsigned(name), flavour(name)) == wanted)
            .filter(|name| Version::find_in(name).is_some_and(|v| v.series() == series))
            .filter(|name| !name.ends_with("-dbg"))
            .max_by_key(|name| numbers(name))
            .map(String::as_str)
    }
}

/// The prefix of Ubuntu's image packages without a signed image.
const UNSIGNED: &str = "linux-image-unsigned-";

/// Whether `name` is an Ubuntu `linux-image-unsigned-…` package.
fn unsigned(name: &str) -> bool {
    name.starts_with(UNSIGNED)
}

/// The kernel release an image package names (`6.1.0-50-cloud-amd64`,
/// `5.15.0-91-generic`): what its parts' names end with.
fn release(image: &str) -> &str {
    image
        .strip_prefix(UNSIGNED)
        .or_else(|| image.strip_prefix("linux-image-"))
        .unwrap_or(image)
}

/// The part of a kernel package name after its version and ABI, e.g.
/// `cloud-amd64` or `cloud-amd64-unsigned`.
fn flavour(name: &str) -> &str {
    let rest = release(name);
    match rest.find(|c: char| c.is_ascii_alphabetic()) {
        Some(start) => {
            let rest = &rest[start..];
            // `+deb13-cloud-amd64`: skip the distribution tag.
            match rest.strip_prefix("deb") {
                Some(tagged) => tagged.split_once('-').map_or(tagged, |(_, f)| f),
                None => rest,
            }
        }
        None => "",
    }
}

/// The numbers in a package name, for ordering versions.
fn numbers(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: linux-image-7.3.4+deb13-cloud-amd64
Version: 7.3.4-1~bpo13+1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)
Filename: pool/main/l/linux-signed-amd64/linux-image-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1_amd64.deb
Size: 1928
SHA256: 4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9

Package: linux-binary-7.3.4+deb13-cloud-amd64
Filename: pool/b.deb
Size: 13604064
SHA256: bb

Package: linux-modules-7.3.4+deb13-cloud-amd64
Filename: pool/m.deb
SHA256: mm

Package: linux-base-7.3.4+deb13-cloud-amd64
Filename: pool/base.deb
SHA256: 00

Package: linux-image-7.3.10+deb13-cloud-amd64
Depends: linux-base (>= 4.3~), initramfs-tools
Filename: pool/i.deb
SHA256: ii

Package: linux-image-6.1.0-50-cloud-amd64
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.158-1_amd64.deb
Size: 25000000
SHA256: 61

Package: linux-image-6.1.0-9-cloud-amd64
Filename: pool/old.deb
SHA256: 69

Package: linux-image-6.1.0-50-cloud-amd64-unsigned
Filename: pool/u.deb
SHA256: 6u
";

    #[test]
    fn a_whole_kernel_is_one_package() {
        let index = PackageIndex::parse(INDEX);
        let parts = index
            .kernel_packages("linux-image-6.1.0-50-cloud-amd64")
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "linux-image-6.1.0-50-cloud-amd64");
        assert_eq!(parts[0].1.size, 25_000_000);
        assert!(parts[0].1.filename.ends_with("6.1.158-1_amd64.deb"));
    }

    #[test]
    fn a_split_kernel_follows_its_depends() {
        let index = PackageIndex::parse(INDEX);
        let parts = index
            .kernel_packages("linux-image-7.3.4+deb13-cloud-amd64")
            .unwrap();
        let names: Vec<_> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-base-7.3.4+deb13-cloud-amd64",
                "linux-binary-7.3.4+deb13-cloud-amd64",
                "linux-modules-7.3.4+deb13-cloud-amd64"
            ]
        );
        assert_eq!(parts[1].1.sha256, "bb");
        assert!(index
            .kernel_packages("linux-image-9.9.9-cloud-amd64")
            .is_none());
        assert!(index
            .missing_parts("linux-image-7.3.4+deb13-cloud-amd64")
            .is_empty());
    }

    #[test]
    fn parts_the_index_lacks_are_named() {
        let text = INDEX.replace(
            "Package: linux-modules-7.3.4+deb13-cloud-amd64",
            "Package: linux-modules-0.0.0-gone",
        );
        let index = PackageIndex::parse(&text);
        assert_eq!(
            index.missing_parts("linux-image-7.3.4+deb13-cloud-amd64"),
            ["linux-modules-7.3.4+deb13-cloud-amd64"]
        );
        assert_eq!(
            index
                .kernel_packages("linux-image-7.3.4+deb13-cloud-amd64")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn newest_package_of_a_series_and_flavour() {
        let index = PackageIndex::parse(INDEX);
        assert_eq!(
            index.newest_like("linux-image-6.1.0-9-cloud-amd64"),
            Some("linux-image-6.1.0-50-cloud-amd64")
        );
        assert_eq!(
            index.newest_like("linux-image-7.3.4+deb13-cloud-amd64"),
            Some("linux-image-7.3.10+deb13-cloud-amd64")
        );
    }

    /// Ubuntu's stanzas as its archive writes them (fields as in jammy's
    /// and bionic's `Packages`): the signed image and the unsigned one
    /// each depend on the modules; the modules' extras are not a part.
    const UBUNTU: &str = "\
Package: linux-image-5.15.0-91-generic
Architecture: amd64
Version: 5.15.0-91.101
Built-Using: linux (= 5.15.0-91.101)
Source: linux-signed
Depends: kmod, linux-base (>= 4.5ubuntu1~16.04.1), linux-modules-5.15.0-91-generic
Recommends: grub-pc | grub-efi-amd64 | grub-efi-ia32 | grub | lilo, initramfs-tools | linux-initramfs-tool
Conflicts: linux-image-unsigned-5.15.0-91-generic
Filename: pool/main/l/linux-signed/linux-image-5.15.0-91-generic_5.15.0-91.101_amd64.deb
Size: 11600000
SHA256: 5a

Package: linux-image-unsigned-5.15.0-91-generic
Source: linux
Depends: kmod, linux-base (>= 4.5ubuntu1~16.04.1), linux-modules-5.15.0-91-generic
Filename: pool/main/l/linux/linux-image-unsigned-5.15.0-91-generic_5.15.0-91.101_amd64.deb
SHA256: 5u

Package: linux-modules-5.15.0-91-generic
Source: linux
Filename: pool/main/l/linux/linux-modules-5.15.0-91-generic_5.15.0-91.101_amd64.deb
SHA256: 5m

Package: linux-modules-extra-5.15.0-91-generic
Depends: linux-modules-5.15.0-91-generic, linux-image-5.15.0-91-generic | linux-image-unsigned-5.15.0-91-generic, wireless-regdb
Filename: pool/main/l/linux/linux-modules-extra-5.15.0-91-generic_5.15.0-91.101_amd64.deb
SHA256: 5e

Package: linux-image-5.15.0-100-generic
Depends: kmod, linux-base (>= 4.5ubuntu1~16.04.1), linux-modules-5.15.0-100-generic
Filename: pool/a.deb
SHA256: a1

Package: linux-image-unsigned-5.15.0-102-generic
Depends: kmod, linux-base (>= 4.5ubuntu1~16.04.1), linux-modules-5.15.0-102-generic
Filename: pool/b.deb
SHA256: b2

Package: linux-image-5.15.0-1050-aws
Filename: pool/aws.deb
SHA256: aw

Package: linux-image-6.8.0-40-generic
Filename: pool/hwe.deb
SHA256: 68

Package: linux-image-generic
Depends: linux-image-5.15.0-91-generic
Filename: pool/meta.deb
SHA256: me
";

    #[test]
    fn an_ubuntu_kernel_is_its_image_and_the_modules_it_depends_on() {
        let index = PackageIndex::parse(UBUNTU);
        for image in [
            "linux-image-5.15.0-91-generic",
            "linux-image-unsigned-5.15.0-91-generic",
        ] {
            let parts = index.image_and_parts(image).unwrap();
            let names: Vec<_> = parts.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, [image, "linux-modules-5.15.0-91-generic"]);
            assert!(index.missing_parts(image).is_empty());
        }
        assert_eq!(
            index.missing_parts("linux-image-5.15.0-100-generic"),
            ["linux-modules-5.15.0-100-generic"]
        );
    }

    #[test]
    fn the_newest_ubuntu_image_keeps_its_series_flavour_and_signing() {
        let index = PackageIndex::parse(UBUNTU);
        assert_eq!(
            index.newest_like("linux-image-5.15.0-91-generic"),
            Some("linux-image-5.15.0-100-generic")
        );
        assert_eq!(
            index.newest_like("linux-image-unsigned-5.15.0-91-generic"),
            Some("linux-image-unsigned-5.15.0-102-generic")
        );
        assert_eq!(
            index.newest_like("linux-image-5.15.0-1000-aws"),
            Some("linux-image-5.15.0-1050-aws")
        );
    }
}
