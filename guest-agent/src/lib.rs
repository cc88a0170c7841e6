//! The parts of the kmatrix guest agent, shared by the agent (`main.rs`) and
//! the benchmark's minimal init (`bin/floor-init.rs`).

pub mod btf_maps;
pub mod cases;
pub mod channel;
pub mod error;
pub mod exec;
pub mod isolate;
pub mod kmsg;
pub mod loader;
pub mod probe;
pub mod queue;
mod sys;
pub mod system;
#[cfg(test)]
mod test_data;
mod tty;
