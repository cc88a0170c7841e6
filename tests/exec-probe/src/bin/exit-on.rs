//! Exits 3 on kernels whose release starts with the first argument, 0 on
//! the others.

fn main() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let prefix = std::env::args().nth(1).unwrap_or_default();
    if release.starts_with(&prefix) {
        eprintln!(
            "exit-on: {} starts with {prefix}: exiting 3",
            release.trim()
        );
        std::process::exit(3);
    }
}
