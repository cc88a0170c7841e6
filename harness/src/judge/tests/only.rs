//! `--only`: what the guest is sent for the tests named, and how their
//! results come back.

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::{Frame, ProgramStats, Verdict};

use super::{case_spec, judged, kernel, load, mark, outcomes, program, ran, rejected, suite_of};
use crate::event::RunEvent;
use crate::suite::Suite;

/// `p` with cases returning 1, 2 and 3 (`c1`, `c2`, `c3`), and `q`.
fn suite(only: &[&str]) -> Suite {
    let mut p = program("p");
    p.cases = (1..=3).map(|n| case_spec(&format!("c{n}"), n)).collect();
    let mut suite = suite_of(vec![p, program("q")]);
    let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
    suite.select(&only).unwrap();
    suite
}

fn marks(events: Vec<RunEvent>) -> Vec<(String, &'static str)> {
    outcomes(events)
        .into_iter()
        .map(|(test, outcome)| (test, mark(&outcome)))
        .collect()
}

#[test]
fn only_the_named_cases_program_goes_to_the_guest() {
    let suite = suite(&["p::c3"]);
    let plan = suite.plan_for(&kernel("6.1"), true);
    let programs: Vec<(&str, usize)> = plan.plan.objects[0]
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.cases.len()))
        .collect();
    assert_eq!(programs, [("p", 1)], "q is not loaded, p runs c3 alone");
    let names: Vec<&str> = suite.reported().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["p::c3"]);
}

#[test]
fn the_guests_first_case_is_the_named_one() {
    let suite = suite(&["p::c3", "q::load"]);
    let mut loaded = load("p", Verdict::Loaded, &[]);
    loaded.stats = ProgramStats {
        insns_processed: Some(12),
        ..Default::default()
    };
    let events = judged(
        &suite,
        "6.1",
        [
            Frame::Program(loaded),
            // The guest numbers the planned cases: c3 is its case 0.
            Frame::Case(ran(0, 0, 3, &[])),
            Frame::Program(load("q", Verdict::Loaded, &[])),
        ],
    );
    assert!(
        !events.iter().any(|e| matches!(e, RunEvent::Stats { .. })),
        "p::load is not reported, nor its statistics"
    );
    assert_eq!(
        marks(events),
        [("p::c3".into(), "pass"), ("q::load".into(), "pass")]
    );
}

#[test]
fn a_load_that_failed_fails_the_named_case() {
    let narrowed = suite(&["p::c2"]);
    let events = judged(
        &narrowed,
        "6.1",
        [Frame::Program(load("p", rejected(), &[]))],
    );
    let outcomes = outcomes(events);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let (test, outcome) = &outcomes[0];
    assert_eq!(test, "p::c2");
    assert!(
        matches!(outcome, Outcome::Failed { reason, verifier_log: Some(_), .. }
            if reason.starts_with("not run: the program did not load: verifier:")),
        "{outcome:?}"
    );

    // Named, the load reports itself and the case is skipped as ever.
    let named = suite(&["p::load", "p::c2"]);
    let events = judged(&named, "6.1", [Frame::Program(load("p", rejected(), &[]))]);
    assert_eq!(
        marks(events),
        [("p::load".into(), "FAIL"), ("p::c2".into(), "skip")]
    );
}
