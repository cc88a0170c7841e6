//! The host's frame decoder on whatever a guest might send: it must bound
//! every frame and fail cleanly, never panic or allocate without limit.
#![no_main]

use kmatrix_protocol::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The stream as it arrives: in two pieces split by the first byte.
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut decoder = Decoder::new();
    for piece in [&data[..split], &data[split..]] {
        decoder.extend(piece);
        while let Ok(Some(_)) = decoder.next_frame() {}
    }
    let _ = decoder.finish();
});
