//! An RPM repository's metadata (repomd.xml, primary.xml) and an RPM
//! package's lead and headers. Sizes they claim must not be trusted.
#![no_main]

use kmatrix::kernels::rpm::Package;
use kmatrix::kernels::source::repodata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(package) = Package::read(data) {
        let _ = package.nvr();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = repodata::primary_location(text);
        let _ = repodata::packages(text, "x86_64");
        if let Some((a, b)) = text.split_once('\n') {
            let _ = repodata::vercmp(a, b);
        }
    }
});
