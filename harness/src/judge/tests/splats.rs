//! A kernel splat against what the suite allows: it fails the test that
//! caused it, unless allowed on that kernel; ordinary kernel lines fail
//! nothing.

use super::*;
use kmatrix_protocol::{Frame, ProgramResult, Verdict};

use super::verdicts::{allow, load_and_case, p, suite};

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
