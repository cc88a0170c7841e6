//! A suite file's syntax, as a user might write it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kmatrix::suite::check_syntax(text, "kmatrix-suite.toml".as_ref());
    }
});
