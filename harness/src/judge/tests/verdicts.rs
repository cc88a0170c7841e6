//! The decision tables: a load verdict against what excuses it, a splat
//! against what the suite allows, and each loader's verdict under
//! `--loader both`.

use std::collections::BTreeMap;

use kmatrix_protocol::{Arch, Feature, Frame, Loader, Probe, ProgramResult, Verdict};

use super::*;
use crate::judge::suite::KernelCheck;
use crate::suite::{AllowedSplat, Expectation, Skip};

/// The program `p`, with its case `c` that must return XDP_PASS, and the
/// probe answers it is judged with.
fn p(excuse: &str) -> (ProgramSpec, Vec<Frame>) {
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
fn allow(kernels: &str, contains: Option<&str>) -> AllowedSplat {
    AllowedSplat {
        kernels: kernels.parse().unwrap(),
        reason: "fixed in 6.2".into(),
        contains: contains.map(str::to_owned),
    }
}

fn verdict(name: &str) -> Verdict {
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
fn load_and_case(
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

#[test]
fn a_splat_during_a_load_against_what_the_suite_allows() {
    const HEADLINE: &str = "WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2";
    const VERIFIER: &str = "verifier: R1 offset is outside of the packet (Permission denied)";
    let printed = format!("FAIL: the kernel printed a splat: {HEADLINE}");
    let allowed = format!(
        "xfail: the kernel printed a splat the suite allows here: fixed in 6.2 ({HEADLINE})"
    );
    let with_failure = format!("FAIL: {VERIFIER}; and the kernel printed a splat: {HEADLINE}");
    let with_expected =
        format!("{printed} (the test itself failed as expected: needs 6.2 ({VERIFIER}))");
    // How the load went, the splat the suite allows (on which kernels,
    // holding what), then the load test's outcome.
    let here = Some(("..6.1", None));
    let table = [
        ("loaded", None, printed.clone()),
        (
            "loaded",
            Some(("..6.1", Some("bpf_prog_run"))),
            allowed.clone(),
        ),
        ("loaded", here, allowed),
        ("loaded", Some(("6.2..", None)), printed.clone()),
        ("loaded", Some(("..6.1", Some("NULL pointer"))), printed),
        // A splat never excuses a failure; it is added to it.
        ("rejected", None, with_failure.clone()),
        ("rejected", here, with_failure),
        // An expected failure with a splat fails, unless the splat is
        // allowed: then it stays the expected failure it was.
        ("rejected as expected", None, with_expected.clone()),
        (
            "rejected as expected",
            here,
            format!("xfail: needs 6.2 ({VERIFIER})"),
        ),
        ("rejected as expected", Some(("6.2..", None)), with_expected),
    ];
    for (base, allowance, expected) in table {
        let (excuse, verdict) = match base {
            "loaded" => ("none", Verdict::Loaded),
            "rejected" => ("none", rejected()),
            _ => ("constraint", rejected()),
        };
        let (mut spec, probes) = p(excuse);
        spec.allowed_splats
            .extend(allowance.map(|(kernels, contains)| allow(kernels, contains)));
        let judged = load_and_case(spec, probes, verdict, SPLAT);
        assert_eq!(judged[0], expected, "{base}, {allowance:?}");
    }
}

/// One object with program `p` (a load test and case `c`), which may
/// splat on the kernels `allowed` names.
fn suite(allowed: Option<(&str, Option<&str>)>) -> Suite {
    let (mut spec, _) = p("none");
    spec.allowed_splats
        .extend(allowed.map(|(kernels, contains)| allow(kernels, contains)));
    suite_of(vec![spec])
}

/// The outcomes of a load of `p` and a run of its case on `label`.
fn judge(suite: &Suite, label: &str, load: ProgramResult, case: CaseResult) -> Vec<Outcome> {
    outcomes(judged(
        suite,
        label,
        [Frame::Program(load), Frame::Case(case)],
    ))
    .into_iter()
    .map(|(_, o)| o)
    .collect()
}

fn loaded(log: &[&str]) -> ProgramResult {
    load("p", Verdict::Loaded, log)
}

#[test]
fn a_splat_fails_the_test_that_caused_it_with_its_lines() {
    let suite = suite(None);
    let outcomes = judge(&suite, "6.1", loaded(&[]), ran(0, 0, 2, SPLAT));
    assert!(
        matches!(outcomes[0], Outcome::Passed { .. }),
        "{outcomes:?}"
    );
    let Outcome::Failed {
        reason, kernel_log, ..
    } = &outcomes[1]
    else {
        panic!("{outcomes:?}")
    };
    assert_eq!(
        reason,
        "the kernel printed a splat: WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2"
    );
    assert_eq!(kernel_log.as_deref(), Some(SPLAT.join("\n").as_str()));

    let outcomes = judge(&suite, "6.1", loaded(SPLAT), ran(0, 0, 2, &[]));
    assert!(
        matches!(outcomes[0], Outcome::Failed { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Outcome::Passed { .. }),
        "{outcomes:?}"
    );
}

#[test]
fn an_allowed_splat_is_an_expected_failure_on_its_kernels_only() {
    let suite = suite(Some(("..6.1", Some("bpf_prog_run"))));
    let outcomes = judge(&suite, "6.1", loaded(SPLAT), ran(0, 0, 2, &[]));
    let Outcome::ExpectedFailure { reason } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.contains("fixed in 6.2"), "{reason}");
    // Elsewhere, and for another splat, it fails.
    let outcomes = judge(&suite, "6.12", loaded(SPLAT), ran(0, 0, 2, &[]));
    assert!(
        matches!(outcomes[0], Outcome::Failed { .. }),
        "{outcomes:?}"
    );
    let other = ["BUG: kernel NULL pointer dereference, address: 0000000000000008"];
    let outcomes = judge(&suite, "6.1", loaded(&other), ran(0, 0, 2, &[]));
    assert!(
        matches!(outcomes[0], Outcome::Failed { .. }),
        "{outcomes:?}"
    );
    // An allowed splat does not excuse a wrong result.
    let outcomes = judge(&suite, "6.1", loaded(&[]), ran(0, 0, 1, SPLAT));
    let Outcome::Failed { reason, .. } = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.starts_with("return value: expected"), "{reason}");
}

#[test]
fn ordinary_kernel_lines_go_with_a_failure_and_fail_nothing() {
    let suite = suite(None);
    let banner = ["**   trace_printk() being used. Allocating extra memory.  **"];
    let outcomes = judge(&suite, "6.1", loaded(&banner), ran(0, 0, 1, &banner));
    assert!(
        matches!(outcomes[0], Outcome::Passed { .. }),
        "{outcomes:?}"
    );
    let Outcome::Failed { kernel_log, .. } = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(kernel_log.as_deref(), Some(banner[0]));
}

fn by(loader: Loader, verdict: Verdict) -> ProgramResult {
    ProgramResult {
        loader,
        ..load("p", verdict, &[])
    }
}

/// Every test decided on `label`, by name: on the host, then from
/// `loads` and `cases` in order, each decided once.
fn marks(
    suite: &Suite,
    label: &str,
    loads: &[ProgramResult],
    cases: &[CaseResult],
) -> BTreeMap<String, &'static str> {
    let frames = loads
        .iter()
        .cloned()
        .map(Frame::Program)
        .chain(cases.iter().cloned().map(Frame::Case));
    let mut marks = BTreeMap::new();
    for (name, outcome) in outcomes(judged(suite, label, frames)) {
        assert!(
            marks.insert(name.clone(), mark(&outcome)).is_none(),
            "{name} decided twice"
        );
    }
    marks
}

fn expect(marks: &[(&str, &'static str)]) -> BTreeMap<String, &'static str> {
    marks.iter().map(|(t, m)| ((*t).to_owned(), *m)).collect()
}

fn case(retval: u32) -> CaseResult {
    ran(0, 0, retval, &[])
}

#[test]
fn under_both_loaders_each_verdict_is_its_own_test() {
    let (aya, libbpf) = (Loader::Aya, Loader::Libbpf);
    let mut suite = suite(None);
    suite.use_loaders(aya, true);
    let names: Vec<&str> = suite.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "p::load[aya]",
            "p::load[libbpf]",
            "p::loaders-agree",
            "p::c"
        ]
    );
    let kernel = kernel("6.1");
    let plan = suite.plan_for(&kernel, true);
    let check = KernelCheck::new(&suite, &kernel, &plan);
    for loader in Loader::ALL {
        let test = check.load_test(&by(loader, Verdict::Loaded)).unwrap();
        assert_eq!(
            suite.tests[test].name,
            format!("p::load[{}]", loader.name())
        );
    }

    let loads = [by(aya, Verdict::Loaded), by(libbpf, rejected())];
    let disagree = expect(&[
        ("p::load[aya]", "pass"),
        ("p::load[libbpf]", "FAIL"),
        ("p::loaders-agree", "FAIL"),
        ("p::c", "pass"),
    ]);
    assert_eq!(marks(&suite, "6.1", &loads, &[case(2)]), disagree);
    let reversed = [loads[1].clone(), loads[0].clone()];
    assert_eq!(marks(&suite, "6.1", &reversed, &[case(2)]), disagree);

    let unsupported = Verdict::Unsupported {
        loader: libbpf,
        error: "unknown section".into(),
    };
    assert_eq!(
        marks(
            &suite,
            "6.1",
            &[by(aya, Verdict::Loaded), by(libbpf, unsupported)],
            &[case(2)]
        ),
        expect(&[
            ("p::load[aya]", "pass"),
            ("p::load[libbpf]", "LIMIT"),
            ("p::loaders-agree", "LIMIT"),
            ("p::c", "pass"),
        ])
    );

    // Each loader's verdict is held against the suite's expectations.
    suite.programs[0][0].load_on = Some(Expectation {
        kernels: "6.2..".parse().unwrap(),
        arch: None,
        reason: "needs 6.2".into(),
    });
    assert_eq!(
        marks(
            &suite,
            "6.1",
            &[by(aya, rejected()), by(libbpf, rejected())],
            &[]
        ),
        expect(&[
            ("p::load[aya]", "xfail"),
            ("p::load[libbpf]", "xfail"),
            ("p::loaders-agree", "pass"),
            ("p::c", "skip"),
        ])
    );
    assert_eq!(
        marks(&suite, "6.1", &loads, &[case(2)]),
        expect(&[
            ("p::load[aya]", "FAIL"),
            ("p::load[libbpf]", "xfail"),
            ("p::loaders-agree", "FAIL"),
            ("p::c", "pass"),
        ])
    );
}

#[test]
fn under_both_loaders_the_objects_own_loader_runs_the_cases() {
    let (aya, libbpf) = (Loader::Aya, Loader::Libbpf);
    let mut suite = suite(None);
    suite.use_loaders(libbpf, true);
    let plan = suite.plan_for(&kernel("6.1"), true);
    let loaders: Vec<(Loader, usize)> = plan
        .plan
        .objects
        .iter()
        .map(|o| (o.loader, o.programs[0].cases.len()))
        .collect();
    assert_eq!(loaders, [(libbpf, 1), (aya, 0)]);
    assert_eq!(
        marks(
            &suite,
            "6.1",
            &[by(aya, Verdict::Loaded), by(libbpf, rejected())],
            &[]
        ),
        expect(&[
            ("p::load[aya]", "pass"),
            ("p::load[libbpf]", "FAIL"),
            ("p::loaders-agree", "FAIL"),
            ("p::c", "skip"),
        ])
    );
}

#[test]
fn a_static_program_is_libbpfs_limitation_without_asking_the_guest() {
    let (aya, libbpf) = (Loader::Aya, Loader::Libbpf);
    let mut suite = suite(None);
    suite.objects[0].programs[0].is_static = true;
    // The programs each loader is asked about, per planned object.
    let asked = |suite: &Suite| -> Vec<(Loader, usize)> {
        let plan = suite.plan_for(&kernel("6.1"), true);
        plan.plan
            .objects
            .iter()
            .map(|o| (o.loader, o.programs.len()))
            .collect()
    };

    suite.use_loaders(aya, true);
    assert_eq!(asked(&suite), [(aya, 1), (libbpf, 0)]);
    assert_eq!(
        marks(&suite, "6.1", &[by(aya, Verdict::Loaded)], &[case(2)]),
        expect(&[
            ("p::load[aya]", "pass"),
            ("p::load[libbpf]", "LIMIT"),
            ("p::loaders-agree", "LIMIT"),
            ("p::c", "pass"),
        ])
    );

    suite.use_loaders(libbpf, true);
    assert_eq!(asked(&suite), [(libbpf, 0), (aya, 1)]);
    assert_eq!(
        marks(&suite, "6.1", &[by(aya, Verdict::Loaded)], &[]),
        expect(&[
            ("p::load[aya]", "pass"),
            ("p::load[libbpf]", "LIMIT"),
            ("p::loaders-agree", "LIMIT"),
            ("p::c", "skip"),
        ])
    );

    suite.use_loaders(libbpf, false);
    assert_eq!(asked(&suite), [(libbpf, 0)]);
    assert_eq!(
        marks(&suite, "6.1", &[], &[]),
        expect(&[("p::load", "LIMIT"), ("p::c", "skip")])
    );
}

#[test]
fn a_skipped_program_skips_every_test_of_it() {
    let mut suite = suite(None);
    suite.programs[0][0].skips.push(Skip {
        kernels: "..6.1".parse().unwrap(),
        reason: "hangs".into(),
    });
    suite.use_loaders(Loader::Aya, true);
    assert_eq!(
        marks(&suite, "6.1", &[], &[]),
        expect(&[
            ("p::load[aya]", "skip"),
            ("p::load[libbpf]", "skip"),
            ("p::loaders-agree", "skip"),
            ("p::c", "skip"),
        ])
    );
}

#[test]
fn an_allowed_splat_does_not_hide_another_in_the_same_test() {
    let (mut spec, probes) = p("none");
    spec.allowed_splats
        .push(allow("..6.1", Some("bpf_prog_run")));
    let log = [
        "WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2",
        "BUG: KASAN: use-after-free in bpf_map_lookup_elem+0x1/0x2",
    ];
    let judged = load_and_case(spec, probes, Verdict::Loaded, &log);
    assert_eq!(
        judged[0],
        "FAIL: the kernel printed a splat: BUG: KASAN: use-after-free in bpf_map_lookup_elem+0x1/0x2"
    );
}
