//! A kernel image's header, read for its version.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kmatrix::kernels::bzimage::version_string(data);
});
