//! The program-kind table both sides share: each kind's name (as libbpf
//! names its section), whether `BPF_PROG_TEST_RUN` can run it, on what, and
//! how its return values are named.

use serde::{Deserialize, Serialize};

/// A program kind kmatrix knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The kind's name, as libbpf names its section (`xdp`, `classifier`).
    pub name: &'static str,
    /// How a case runs it, if one can.
    pub test_run: Option<TestRunKind>,
}

/// Every kind whose programs a suite can run cases on, and the common
/// kinds that only load. Other kinds are named by the loader and load only.
pub const KINDS: &[Kind] = &[
    kind("xdp", Some(TestRunKind::Xdp)),
    kind("classifier", Some(TestRunKind::Tc)),
    kind("socket", Some(TestRunKind::SocketFilter)),
    kind("cgroup_skb", Some(TestRunKind::CgroupSkb)),
    kind("flow_dissector", Some(TestRunKind::FlowDissector)),
    kind("raw_tracepoint", Some(TestRunKind::RawTracepoint)),
    kind("sk_lookup", Some(TestRunKind::SkLookup)),
    kind("fentry", Some(TestRunKind::Tracing)),
    kind("fexit", Some(TestRunKind::Tracing)),
    kind("kprobe", None),
    kind("kretprobe", None),
    kind("tracepoint", None),
    kind("tp_btf", None),
    kind("lsm", None),
];

const fn kind(name: &'static str, test_run: Option<TestRunKind>) -> Kind {
    Kind { name, test_run }
}

/// Section name prefixes, as libbpf reads them, and the kind each names.
/// The first match wins, so longer prefixes come first.
const SECTIONS: &[(&str, &str)] = &[
    ("xdp", "xdp"),
    ("tcx/", "classifier"),
    ("tc", "classifier"),
    ("classifier", "classifier"),
    ("socket", "socket"),
    ("cgroup_skb/", "cgroup_skb"),
    ("flow_dissector", "flow_dissector"),
    ("raw_tracepoint.w/", "raw_tracepoint"),
    ("raw_tp.w/", "raw_tracepoint"),
    ("raw_tracepoint/", "raw_tracepoint"),
    ("raw_tp/", "raw_tracepoint"),
    ("sk_lookup", "sk_lookup"),
    ("fentry/", "fentry"),
    ("fentry.s/", "fentry"),
    ("fexit/", "fexit"),
    ("fexit.s/", "fexit"),
    ("fmod_ret/", "fmod_ret"),
    ("kretprobe", "kretprobe"),
    ("kretsyscall/", "kretprobe"),
    ("kprobe", "kprobe"),
    ("ksyscall/", "kprobe"),
    ("uretprobe", "uretprobe"),
    ("uprobe", "uprobe"),
    ("usdt", "usdt"),
    ("tracepoint/", "tracepoint"),
    ("tp/", "tracepoint"),
    ("tp_btf/", "tp_btf"),
    ("lsm/", "lsm"),
    ("lsm.s/", "lsm"),
    ("lsm_cgroup/", "lsm"),
    ("struct_ops", "struct_ops"),
    ("netfilter", "netfilter"),
    ("perf_event", "perf_event"),
    ("iter/", "iter"),
    ("iter.s/", "iter"),
    ("cgroup/", "cgroup"),
    ("sk_msg", "sk_msg"),
    ("sk_skb", "sk_skb"),
    ("sockops", "sockops"),
    ("syscall", "syscall"),
];

/// The kind a program in `section` is, as libbpf names sections: `tc` and
/// `tcx/ingress` are classifiers, `ksyscall/openat` a kprobe; `None` for a
/// section libbpf would not know either.
pub fn of_section(section: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .find(|(prefix, _)| section.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

/// How a case runs a program of this kind, if one can.
pub fn test_run(kind: &str) -> Option<TestRunKind> {
    KINDS
        .iter()
        .find(|k| k.name == kind)
        .and_then(|k| k.test_run)
}

/// A program kind that `BPF_PROG_TEST_RUN` can run, which also names its
/// return values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestRunKind {
    /// XDP: `XDP_*` verdicts.
    Xdp,
    /// tc classifier: `TC_ACT_*` verdicts.
    Tc,
    /// Socket filter: the number of bytes to keep.
    SocketFilter,
    /// cgroup skb: `SK_DROP`/`SK_PASS` style 0/1.
    CgroupSkb,
    /// Flow dissector: `BPF_OK`/`BPF_DROP`.
    FlowDissector,
    /// Raw tracepoint: run on a context of `u64` arguments (`ctx`).
    RawTracepoint,
    /// sk_lookup: run on a `struct bpf_sk_lookup` context (`ctx`).
    SkLookup,
    /// fentry/fexit: the kernel calls its `bpf_fentry_test*` functions; no
    /// input.
    Tracing,
}

const XDP: &[(&str, u32)] = &[
    ("XDP_ABORTED", 0),
    ("XDP_DROP", 1),
    ("XDP_PASS", 2),
    ("XDP_TX", 3),
    ("XDP_REDIRECT", 4),
];
const TC: &[(&str, u32)] = &[
    ("TC_ACT_UNSPEC", u32::MAX),
    ("TC_ACT_OK", 0),
    ("TC_ACT_RECLASSIFY", 1),
    ("TC_ACT_SHOT", 2),
    ("TC_ACT_PIPE", 3),
    ("TC_ACT_STOLEN", 4),
    ("TC_ACT_QUEUED", 5),
    ("TC_ACT_REPEAT", 6),
    ("TC_ACT_REDIRECT", 7),
];
const SK: &[(&str, u32)] = &[("SK_DROP", 0), ("SK_PASS", 1)];
const FLOW: &[(&str, u32)] = &[("BPF_OK", 0), ("BPF_DROP", 2)];

impl TestRunKind {
    /// Whether cases of this kind run on a packet (`input`); the others
    /// take at most a context, and the kernel runs them once.
    pub fn takes_packet(self) -> bool {
        matches!(
            self,
            TestRunKind::Xdp
                | TestRunKind::Tc
                | TestRunKind::SocketFilter
                | TestRunKind::CgroupSkb
                | TestRunKind::FlowDissector
        )
    }

    /// The kind's named return values (`XDP_DROP` = 1, …).
    pub fn return_values(self) -> &'static [(&'static str, u32)] {
        match self {
            TestRunKind::Xdp => XDP,
            TestRunKind::Tc => TC,
            TestRunKind::CgroupSkb => SK,
            TestRunKind::FlowDissector => FLOW,
            TestRunKind::SocketFilter
            | TestRunKind::RawTracepoint
            | TestRunKind::SkLookup
            | TestRunKind::Tracing => &[],
        }
    }

    /// The value a return value's name stands for.
    pub fn return_value(self, name: &str) -> Option<u32> {
        self.return_values()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// A return value as the kind names it, e.g. `XDP_DROP (1)`.
    pub fn show_return(self, value: u32) -> String {
        match self.return_values().iter().find(|(_, v)| *v == value) {
            Some((name, _)) => format!("{name} ({value})"),
            None => value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_test_runs_and_return_values() {
        assert_eq!(test_run("xdp"), Some(TestRunKind::Xdp));
        assert_eq!(test_run("kprobe"), None);
        assert_eq!(test_run("no_such_kind"), None);
        assert_eq!(of_section("tc"), Some("classifier"));
        assert_eq!(of_section("tcx/ingress"), Some("classifier"));
        assert_eq!(of_section("ksyscall/openat"), Some("kprobe"));
        assert_eq!(of_section("kretprobe/do_unlinkat"), Some("kretprobe"));
        assert_eq!(of_section("xdp.frags"), Some("xdp"));
        assert_eq!(of_section(".text"), None);
        assert_eq!(TestRunKind::Tc.return_value("TC_ACT_SHOT"), Some(2));
        assert_eq!(TestRunKind::Xdp.show_return(1), "XDP_DROP (1)");
        assert_eq!(TestRunKind::Tracing.show_return(7), "7");
    }
}
