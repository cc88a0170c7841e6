//! Downloaded archives: a .deb (ar with a compressed data.tar) and a
//! tarball (plain, gzip or zstd). Headers must not be trusted.
#![no_main]

use kmatrix::kernels::deb::KernelFiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    let _ = KernelFiles::default().read_deb_from(&data[..], "fuzz.deb".as_ref());
    let _ = KernelFiles::default()
        .read_tarball_from(std::io::Cursor::new(data), "fuzz.tar".as_ref());
});
