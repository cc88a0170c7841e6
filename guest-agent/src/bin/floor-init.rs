//! The benchmark floor: an init that only loads the virtio modules and powers
//! off, so that `kmatrix bench` can compare a full run against a bare boot of
//! the same kernel. It says on the console when it began and when the
//! modules were in ([`kmatrix_protocol::floor`]).

use kmatrix_guest_agent::system;

fn main() {
    let begun = system::boot_us();
    for err in system::load_modules() {
        eprintln!("floor-init: {err}");
    }
    eprintln!(
        "{}",
        kmatrix_protocol::floor::line(begun, system::boot_us())
    );
    system::power_off();
}
