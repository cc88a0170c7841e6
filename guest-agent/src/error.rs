//! Errors as the agent sends them: one line with every cause, written as
//! the host writes its own.

pub use kmatrix_protocol::text::error_chain as chain;
