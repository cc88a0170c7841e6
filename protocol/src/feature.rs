//! Kernel features a program can need, named as `bpftool feature probe`
//! and libbpf name them: `prog:xdp`, `map:ringbuf`, `attach:tcx_ingress`,
//! `helper:bpf_loop` (for one program type: `helper:bpf_loop@xdp`) and
//! `kfunc:bpf_rcu_read_lock`. The guest probes them (see the agent's
//! `probe.rs`); suites require them; `kmatrix probe` lists them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FeatureKind {
    /// A program type (`BPF_PROG_TYPE_*`).
    Prog,
    /// A map type (`BPF_MAP_TYPE_*`).
    Map,
    /// An attach type (`BPF_*` of `enum bpf_attach_type`).
    Attach,
    /// A helper (`BPF_FUNC_*`), for a program type.
    Helper,
    /// A kfunc the kernel's BTF offers.
    Kfunc,
}

impl FeatureKind {
    /// Every kind, in the order listings show them.
    pub const ALL: [FeatureKind; 5] = [
        FeatureKind::Prog,
        FeatureKind::Map,
        FeatureKind::Attach,
        FeatureKind::Helper,
        FeatureKind::Kfunc,
    ];

    /// Its prefix (`prog`, `map`, `attach`, `helper`, `kfunc`).
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Prog => "prog",
            FeatureKind::Map => "map",
            FeatureKind::Attach => "attach",
            FeatureKind::Helper => "helper",
            FeatureKind::Kfunc => "kfunc",
        }
    }
}

/// One feature.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Feature {
    /// Its kind.
    pub kind: FeatureKind,
    /// Its name, lower case as libbpf spells it (`xdp`, `cgrp_storage`,
    /// `tcx_ingress`, `bpf_loop`).
    pub name: String,
    /// For a helper: the program type (`xdp`) or, when a suite requires it,
    /// the requiring program's section (`tc`, `fentry/…`), which the guest
    /// turns into a program type as libbpf does; `None`: any program type.
    pub prog: Option<String>,
}

impl Feature {
    /// The same feature for any program type.
    pub fn any_prog(&self) -> Feature {
        Feature {
            prog: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.name)?;
        match &self.prog {
            Some(prog) => write!(f, "@{prog}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Feature {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected prog:NAME, map:NAME, attach:NAME, helper:NAME[@PROG_TYPE] or kfunc:NAME, such as helper:bpf_loop or map:ringbuf";
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not a feature: {expected}"))?;
        let kind = FeatureKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(|| format!("`{text}`: `{kind}` is not a kind of feature; {expected}"))?;
        let (name, prog) = match rest.split_once('@') {
            Some((name, prog)) if kind == FeatureKind::Helper => (name, Some(prog.to_owned())),
            Some(_) => return Err(format!("`{text}`: only helpers take `@PROG_TYPE`")),
            None => (rest, None),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !valid(name) || !prog.as_deref().is_none_or(valid) {
            return Err(format!(
                "`{text}`: names are lower case letters, digits and `_`; {expected}"
            ));
        }
        if kind == FeatureKind::Helper && !name.starts_with("bpf_") {
            return Err(format!(
                "`{text}`: helpers are named as in C, such as bpf_loop or bpf_map_lookup_elem"
            ));
        }
        // `attach:tcx` is the ingress hook, the one programs attach to first.
        let name = match (kind, name) {
            (FeatureKind::Attach, "tcx") => "tcx_ingress",
            (_, name) => name,
        };
        Ok(Feature {
            kind,
            name: name.to_owned(),
            prog,
        })
    }
}

/// What the guest found about one feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The feature.
    pub feature: Feature,
    /// Whether the kernel has it; `None` when it could not be told.
    pub available: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_parse_and_print_as_written() {
        for text in [
            "prog:xdp",
            "map:cgrp_storage",
            "attach:tcx_ingress",
            "helper:bpf_loop",
            "helper:bpf_loop@xdp",
            "kfunc:bpf_rcu_read_lock",
        ] {
            assert_eq!(text.parse::<Feature>().unwrap().to_string(), text);
        }
        assert_eq!(
            "attach:tcx".parse::<Feature>().unwrap().to_string(),
            "attach:tcx_ingress"
        );
        for bad in [
            "bpf_loop",
            "func:x",
            "map:Ring",
            "map:ringbuf@xdp",
            "helper:loop",
            "prog:",
        ] {
            let err = bad.parse::<Feature>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
