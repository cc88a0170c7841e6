//! Each loader's verdict under `--loader both`, static programs under
//! libbpf, skipped programs.

use super::*;
use crate::judge::suite::KernelCheck;
use crate::suite::{Expectation, Skip};
use kmatrix_protocol::{Frame, Loader, ProgramResult, Verdict};
use std::collections::BTreeMap;

use super::verdicts::suite;

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
