//! An error and its causes on one line, as reports and progress lines
//! show them (the protocol crate's, which the agent uses too). A leaf
//! module: every layer may use it.

pub use kmatrix_protocol::text::error_chain;
