//! Where things are in the guest: the host packs the init and modules into
//! the initramfs and sends the objects over the port; the agent reads them
//! from there. Paths are absolute; the cpio writer strips the leading `/`.

/// The directory holding everything kmatrix packs.
pub const ROOT: &str = "/kmatrix";

/// The objects under test, each named by its index in the plan (written
/// by the agent from the host's input).
pub const OBJECTS_DIR: &str = "/kmatrix/objects";

/// The kernel modules the agent loads, named `NN-<module>.ko` in load
/// order.
pub const MODULES_DIR: &str = "/kmatrix/modules";

/// The directories every initramfs has before the agent mounts anything.
pub const BASE_DIRS: &[&str] = &["/dev", "/proc", "/sys", "/tmp", ROOT];

/// The agent, started by the kernel as PID 1.
pub const INIT: &str = "/init";

/// `path` as a cpio entry name (no leading `/`).
pub fn entry(path: &str) -> &str {
    path.trim_start_matches('/')
}
