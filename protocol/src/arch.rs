//! The guest architectures kmatrix boots: one place for their names and
//! how an ELF file says which it is built for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A guest architecture, named as Debian names it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    #[default]
    Amd64,
    /// 64-bit Arm.
    Arm64,
}

impl Arch {
    /// Every architecture, amd64 first.
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's name (`amd64`, `arm64`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The architecture this program was built for, if kmatrix boots it.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::Amd64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Arm64)
        } else {
            None
        }
    }

    /// The ELF `e_machine` of its programs.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// The architecture an ELF file is built for, from its header: `None`
    /// for non-ELF data, `Some(Err(machine))` for another architecture.
    pub fn of_elf(data: &[u8]) -> Option<Result<Arch, u16>> {
        if data.get(..4)? != b"\x7fELF" {
            return None;
        }
        let machine = u16::from_le_bytes(data.get(18..20)?.try_into().ok()?);
        Some(
            Arch::ALL
                .into_iter()
                .find(|arch| arch.elf_machine() == machine)
                .ok_or(machine),
        )
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(format!(
                "`{other}` is not an architecture kmatrix boots (amd64 or arm64)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_elf_headers_are_read() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>(), Ok(arch));
        }
        assert!("riscv64"
            .parse::<Arch>()
            .unwrap_err()
            .contains("amd64 or arm64"));
        let mut header = b"\x7fELF".to_vec();
        header.resize(20, 0);
        header[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(Arch::of_elf(&header), Some(Ok(Arch::Arm64)));
        header[18..20].copy_from_slice(&243u16.to_le_bytes());
        assert_eq!(Arch::of_elf(&header), Some(Err(243)));
        assert_eq!(Arch::of_elf(b"#!/bin/sh\n"), None);
    }
}
