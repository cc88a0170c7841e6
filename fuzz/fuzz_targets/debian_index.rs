//! A mirror's package index and signed Release text.
#![no_main]

use kmatrix::kernels::source::{packages::PackageIndex, release::Release};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let index = PackageIndex::parse(&text);
    if let Some(name) = text.lines().next() {
        if let Some(newest) = index.newest_like(name) {
            let _ = index.kernel_packages(newest);
        }
        let _ = index.get(name);
    }
    let _ = Release::parse(&text).get("main/binary-amd64/Packages.xz");
});
