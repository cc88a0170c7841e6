//! The parts of the kmatrix guest agent, shared by the agent (`main.rs`) and
//! the benchmark's minimal init (`bin/floor-init.rs`).

pub mod channel;
pub mod loader;
pub mod system;
