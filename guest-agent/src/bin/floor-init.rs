//! The benchmark floor: an init that only loads the virtio modules and powers
//! off, so that `kmatrix bench` can compare a full run against a bare boot of
//! the same kernel.

use kmatrix_guest_agent::system;

fn main() {
    for err in system::load_modules() {
        eprintln!("floor-init: {err}");
    }
    system::power_off();
}
