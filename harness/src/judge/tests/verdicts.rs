//! The load-verdict decision table: a load verdict against what excuses
//! it (a lacking feature, a kernel constraint), and the helpers the other
//! tables share.

use kmatrix_protocol::{Arch, Feature, Frame, Loader, Probe, Verdict};

use super::*;
use crate::suite::{AllowedSplat, Expectation};

/// The program `p`, with its case `c` that must return XDP_PASS, and the
/// probe answers it is judged with.
pub(super) fn p(excuse: &str) -> (ProgramSpec, Vec<Frame>) {
    let mut spec = program("p");
    spec.cases.push(case_spec("c", 2));
    let mut probes = Vec::new();
    let mut require = |available| {
        let feature: Feature = "helper:bpf_loop@xdp".parse().unwrap();
        spec.requires.push(feature.clone());
        probes.push(Frame::Probed(Probe { feature, available }));
    };
    let constraint = |kernels: &str, arch| {
        Some(Expectation {
            kernels: kernels.parse().unwrap(),
            arch,
            reason: "needs 6.2".into(),
        })
    };
    match excuse {
        "none" => {}
        "feature present" => require(Some(true)),
        "feature unknown" => require(None),
        "feature lacking" => require(Some(false)),
        "constraint met" => spec.load_on = constraint("6.1..", None),
        "constraint" => spec.load_on = constraint("6.2..", None),
        "constraint on amd64" => spec.load_on = constraint("6.2..", Some(Arch::Amd64)),
        "constraint on arm64" => spec.load_on = constraint("6.2..", Some(Arch::Arm64)),
        "lacking and constraint" => {
            require(Some(false));
            spec.load_on = constraint("6.2..", None);
        }
        other => panic!("no excuse {other}"),
    }
    (spec, probes)
}

/// A splat the suite allows on `kernels` (when its headline holds
/// `contains`), fixed in 6.2.
pub(super) fn allow(kernels: &str, contains: Option<&str>) -> AllowedSplat {
    AllowedSplat {
        kernels: kernels.parse().unwrap(),
        reason: "fixed in 6.2".into(),
        contains: contains.map(str::to_owned),
    }
}

pub(super) fn verdict(name: &str) -> Verdict {
    match name {
        "loaded" => Verdict::Loaded,
        "rejected" => rejected(),
        "rejected, no cause" => Verdict::Rejected {
            error: "Invalid argument".into(),
            verifier_log: String::new(),
        },
        "failed" => Verdict::Failed {
            error: "map creation: Invalid argument".into(),
        },
        "unsupported" => Verdict::Unsupported {
            loader: Loader::Aya,
            error: "invalid program section `tc`".into(),
        },
        other => panic!("no verdict {other}"),
    }
}

/// `p`'s load and case outcomes on 6.1, with `log` the kernel's lines
/// during its load; the case runs when it loaded.
pub(super) fn load_and_case(
    spec: ProgramSpec,
    probes: Vec<Frame>,
    verdict: Verdict,
    log: &[&str],
) -> Vec<String> {
    let loaded = verdict == Verdict::Loaded;
    let suite = suite_of(vec![spec]);
    let frames = probes
        .into_iter()
        .chain([Frame::Program(load("p", verdict, log))])
        .chain(loaded.then(|| Frame::Case(ran(0, 0, 2, &[]))));
    let outcomes = outcomes(judged(&suite, "6.1", frames));
    let names: Vec<&str> = outcomes.iter().map(|(test, _)| test.as_str()).collect();
    assert_eq!(names, ["p::load", "p::c"]);
    outcomes.iter().map(|(_, o)| summary(o)).collect()
}

#[test]
fn a_load_verdict_against_what_excuses_it() {
    const PASS: &str = "pass: xdp, 0.0 ms";
    const CASE: &str = "pass: XDP_PASS (2), 5 ns";
    const NOT_RUN: &str = "skip: not run: the program did not load";
    const VERIFIER: &str = "verifier: R1 offset is outside of the packet (Permission denied)";
    const MAP: &str = "map creation: Invalid argument";
    const LIMIT: &str = "LIMIT: aya cannot load it: invalid program section `tc`; try `loader = \"libbpf\"` for this object in the suite (or --loader libbpf)";
    const LACKING_LOADED: &str = "FAIL: unexpectedly loaded: the suite requires helper:bpf_loop, which this kernel's probe says it lacks; fix `requires`";
    let fail = |reason: &str| format!("FAIL: {reason}");
    let lacks = |reason: &str| format!("xfail: the kernel lacks helper:bpf_loop ({reason})");
    let needs = |reason: &str| format!("xfail: needs 6.2 ({reason})");
    let constrained = |arch: &str| {
        format!("FAIL: unexpectedly loaded: the suite expects it to load only on {arch}6.2.. (needs 6.2); update the expectation")
    };
    // What excuses a failure to load, the verdict, then the load test's
    // outcome and its case's.
    let no_excuse = |excuse: &'static str| {
        [
            (excuse, "loaded", PASS.to_owned(), CASE),
            (excuse, "rejected", fail(VERIFIER), NOT_RUN),
            (
                excuse,
                "rejected, no cause",
                fail("rejected (Invalid argument)"),
                NOT_RUN,
            ),
            (excuse, "failed", fail(MAP), NOT_RUN),
            (excuse, "unsupported", LIMIT.to_owned(), NOT_RUN),
        ]
    };
    let mut table = Vec::new();
    for excuse in [
        "none",
        "feature present",
        "feature unknown",
        "constraint met",
        "constraint on arm64",
    ] {
        table.extend(no_excuse(excuse));
    }
    table.extend([
        ("feature lacking", "loaded", LACKING_LOADED.to_owned(), CASE),
        ("feature lacking", "rejected", lacks(VERIFIER), NOT_RUN),
        (
            "feature lacking",
            "rejected, no cause",
            lacks("rejected (Invalid argument)"),
            NOT_RUN,
        ),
        ("feature lacking", "failed", lacks(MAP), NOT_RUN),
        ("feature lacking", "unsupported", LIMIT.to_owned(), NOT_RUN),
        ("constraint", "loaded", constrained(""), CASE),
        ("constraint", "rejected", needs(VERIFIER), NOT_RUN),
        ("constraint", "failed", needs(MAP), NOT_RUN),
        ("constraint", "unsupported", LIMIT.to_owned(), NOT_RUN),
        (
            "constraint on amd64",
            "loaded",
            constrained("amd64 kernels "),
            CASE,
        ),
        ("constraint on amd64", "rejected", needs(VERIFIER), NOT_RUN),
        // A lacking feature is the excuse named first.
        (
            "lacking and constraint",
            "loaded",
            LACKING_LOADED.to_owned(),
            CASE,
        ),
        (
            "lacking and constraint",
            "rejected",
            lacks(VERIFIER),
            NOT_RUN,
        ),
    ]);
    for (excuse, name, load, case) in table {
        let (spec, probes) = p(excuse);
        assert_eq!(
            load_and_case(spec, probes, verdict(name), &[]),
            [load, case.to_owned()],
            "{excuse}, {name}"
        );
    }
}

/// One object with program `p` (a load test and case `c`), which may
/// splat on the kernels `allowed` names.
pub(super) fn suite(allowed: Option<(&str, Option<&str>)>) -> Suite {
    let (mut spec, _) = p("none");
    spec.allowed_splats
        .extend(allowed.map(|(kernels, contains)| allow(kernels, contains)));
    suite_of(vec![spec])
}
