//! Aborts: a program that dies by a signal.

fn main() {
    eprintln!("crash: aborting");
    std::process::abort();
}
