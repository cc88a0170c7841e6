//! kernels.toml as a user (or a bad merge) might write it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kmatrix::kernels::Matrix::parse(text, "kernels.toml".as_ref());
    }
});
