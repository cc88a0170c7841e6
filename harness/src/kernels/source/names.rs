//! How sources name their releases: pure functions over names, for the
//! entry checker and the sources alike (neither imports the other for
//! them).

use kmatrix_protocol::Arch;

use crate::kernels::Version;

/// The kernel version a tag names: only when it starts with one (`6.6`,
/// `6.6-20250101.012345`); `bpf-next-20250101.012345` and `rhel9.6-…`
/// name none.
pub fn tag_version(tag: &str) -> Option<Version> {
    tag.starts_with(|c: char| c.is_ascii_digit())
        .then(|| Version::find_in(tag))?
}

/// The image package of Debian's `build` (`6.1.0-20`) of `flavour`
/// (`cloud`) for `arch`: `linux-image-6.1.0-20-cloud-amd64`.
pub fn image_package(build: &str, flavour: &str, arch: Arch) -> String {
    format!("linux-image-{build}-{flavour}-{arch}")
}
