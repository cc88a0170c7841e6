//! The guest binaries `kmatrix` carries: the agent that runs as `/init` in
//! every VM, and the benchmark's floor init. `build.rs` builds both as static
//! binaries.

use std::borrow::Cow;
use std::path::PathBuf;

/// Environment variable naming an agent binary to use instead of the built-in
/// one (for developing the agent, or testing what happens when it breaks).
pub const AGENT_ENV: &str = "KMATRIX_AGENT";

static AGENT: &[u8] = include_bytes!(env!("KMATRIX_AGENT_BIN"));
static FLOOR_INIT: &[u8] = include_bytes!(env!("KMATRIX_FLOOR_INIT_BIN"));

/// Which init to pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The guest agent.
    Agent,
    /// An init that only loads the modules and powers off.
    Floor,
}

impl Init {
    /// The binary's bytes, honouring [`AGENT_ENV`] for the agent.
    pub fn binary(self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            Init::Agent => match std::env::var_os(AGENT_ENV) {
                Some(path) => std::fs::read(PathBuf::from(path)).map(Cow::Owned),
                None => Ok(Cow::Borrowed(AGENT)),
            },
            Init::Floor => Ok(Cow::Borrowed(FLOOR_INIT)),
        }
    }
}
