//! The guest binaries `kmatrix` carries, per architecture: the agent that
//! runs as `/init` in every VM, and the benchmark's floor init. `build.rs`
//! builds them as static binaries (arm64's where its toolchain is
//! installed).

use std::borrow::Cow;
use std::path::PathBuf;

use kmatrix_protocol::Arch;
use sha2::Digest;

/// Environment variable naming an amd64 agent binary to use instead of the
/// built-in one (for developing the agent, or testing what happens when it
/// breaks).
pub const AGENT_ENV: &str = "KMATRIX_AGENT";

static AGENT: &[u8] = include_bytes!(env!("KMATRIX_AGENT_BIN"));
static FLOOR_INIT: &[u8] = include_bytes!(env!("KMATRIX_FLOOR_INIT_BIN"));
static AGENT_ARM64: &[u8] = include_bytes!(env!("KMATRIX_AGENT_ARM64_BIN"));
static FLOOR_INIT_ARM64: &[u8] = include_bytes!(env!("KMATRIX_FLOOR_INIT_ARM64_BIN"));

/// What installs the arm64 toolchain `build.rs` needs.
const ARM64_SETUP: &str = env!("KMATRIX_ARM64_SETUP");

/// Which init to pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The guest agent.
    Agent,
    /// An init that only loads the modules and powers off.
    Floor,
}

impl Init {
    /// The binary's bytes for `arch`, honouring [`AGENT_ENV`] for the amd64
    /// agent; an error that says how to get it if this kmatrix was built
    /// without it.
    pub fn binary(self, arch: Arch) -> std::io::Result<Cow<'static, [u8]>> {
        let built_in = match (self, arch) {
            (Init::Agent, Arch::Amd64) => {
                if let Some(path) = std::env::var_os(AGENT_ENV) {
                    return std::fs::read(PathBuf::from(path)).map(Cow::Owned);
                }
                AGENT
            }
            (Init::Floor, Arch::Amd64) => FLOOR_INIT,
            (Init::Agent, Arch::Arm64) => AGENT_ARM64,
            (Init::Floor, Arch::Arm64) => FLOOR_INIT_ARM64,
        };
        if built_in.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("this kmatrix was built without the {arch} guest agent, so it cannot boot {arch} kernels: {ARM64_SETUP}; then rebuild kmatrix (or pass --arch amd64)"),
            ));
        }
        Ok(Cow::Borrowed(built_in))
    }
}

/// The sha256 (hex) of the agent for each architecture this kmatrix has
/// one for: what its saved VMs and probe answers are kept by.
pub fn digests() -> &'static std::collections::BTreeMap<Arch, String> {
    static DIGESTS: std::sync::OnceLock<std::collections::BTreeMap<Arch, String>> =
        std::sync::OnceLock::new();
    DIGESTS.get_or_init(|| {
        Arch::ALL
            .into_iter()
            .filter_map(|arch| {
                let bytes = Init::Agent.binary(arch).ok()?;
                Some((arch, hex::encode(sha2::Sha256::digest(&bytes))))
            })
            .collect()
    })
}
