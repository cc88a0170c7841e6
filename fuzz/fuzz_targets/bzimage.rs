//! A kernel image's header, read for its version, and an arm64 image
//! (plain, gzip-ed or EFI zboot) decompressed: neither header nor payload
//! is trusted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kmatrix::kernels::bzimage::version_string(data);
    let _ = kmatrix::kernels::arm64::uncompressed(data);
    let _ = kmatrix::kernels::arm64::version_string(data);
});
