//! Under `--loader both`, each loader's load test as a row of its own in
//! every renderer.

use super::*;

/// Under `--loader both` each loader's load test is a row of its own, with
/// its own verifier statistics, in every renderer.
#[test]
fn each_loaders_load_test_is_a_row_of_its_own() {
    let tests = ["p::load[aya]", "p::load[libbpf]", "p::loaders-agree"];
    let mut summary = Summary::with(
        vec!["6.1".into()],
        tests.iter().map(|t| (*t).to_owned()).collect(),
    );
    for (test, insns) in [("p::load[aya]", 10), ("p::load[libbpf]", 12)] {
        summary.apply(&Record::Outcome {
            kernel: "6.1".into(),
            test: test.into(),
            reproduce: None,
            result: Outcome::Passed {
                detail: "xdp, 0.1 ms".into(),
            },
        });
        summary.apply(&Record::Stats {
            kernel: "6.1".into(),
            test: test.into(),
            stats: kmatrix_protocol::ProgramStats {
                insns_processed: Some(insns),
                ..Default::default()
            },
        });
    }
    summary.apply(&Record::Outcome {
        kernel: "6.1".into(),
        test: "p::loaders-agree".into(),
        reproduce: None,
        result: Outcome::Passed {
            detail: "both loaded it".into(),
        },
    });
    let mut stats = Vec::new();
    matrix::render_stats(&summary, &mut stats).unwrap();
    let stats = String::from_utf8(stats).unwrap();
    assert!(stats.contains("p::load[aya]     10 (0.0%)"), "{stats}");
    assert!(stats.contains("p::load[libbpf]  12 (0.0%)"), "{stats}");
    assert!(!stats.contains("loaders-agree"), "{stats}");

    let page = html::render(&summary);
    for caption in ["p [aya]", "p [libbpf]"] {
        assert!(
            page.contains(&format!("<figcaption>{caption}</figcaption>")),
            "{page}"
        );
    }
    let markdown = markdown::render(&summary);
    let junit = junit::render(&summary).unwrap();
    for test in tests {
        assert!(
            markdown.contains(&format!("| `{test}` | ✅ |")),
            "{markdown}"
        );
        assert!(
            junit.contains(&format!("<testcase name=\"{test}\"")),
            "{junit}"
        );
    }
    let libbpf = junit.split("name=\"p::load[libbpf]\"").nth(1).unwrap();
    assert!(
        libbpf.contains("\"verifier.insns_processed\" value=\"12\""),
        "{junit}"
    );
}
