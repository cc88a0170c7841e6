//! CI at scale: shards, their JSON files merged back into one matrix, and
//! the JUnit and Markdown reports.

use std::process::Command;

use crate::support::records::records;
use crate::support::{example, exited, kmatrix, text};

crate::support::tests! {
    vm sharded_then_merged_equals_unsharded,
    vm report_diff_finds_a_program_that_grew,
}

/// Two shards merged give the same matrix as one unsharded run; the merged
/// JUnit file reads back with another parser; a cut shard file is refused
/// with its name.
fn sharded_then_merged_equals_unsharded() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let suite = example("kmatrix-suite.toml");
    let run = |extra: &[&str]| {
        let mut args = vec!["test", "--kernels", "5.10,6.1", "--suite", &suite];
        args.extend_from_slice(extra);
        let output = kmatrix(&args)
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
    };
    run(&["--json", &path("all.json"), "--summary", &path("all.md")]);
    run(&["--shard", "1/2", "--json", &path("shard-1.json")]);
    run(&["--shard", "2/2", "--json", &path("shard-2.json")]);

    let merged = kmatrix(&[
        "report",
        "merge",
        "--junit",
        &path("merged.xml"),
        "--summary",
        &path("merged.md"),
        "--html",
        &path("merged.html"),
        &path("shard-2.json"),
        &path("shard-1.json"),
    ])
    .output()
    .unwrap();
    assert!(merged.status.success(), "{}", text(&merged));
    let all = std::fs::read_to_string(path("all.md")).unwrap();
    assert_eq!(std::fs::read_to_string(path("merged.md")).unwrap(), all);
    assert!(
        all.contains("| `xdp_loop_sum::load` | xfail | ✅ |"),
        "{all}"
    );

    // A JUnit consumer other than the writer.
    let xml = std::fs::File::open(path("merged.xml")).unwrap();
    let suites = junit_parser::from_reader(std::io::BufReader::new(xml)).unwrap();
    assert_eq!(suites.suites.len(), 2);
    let oldest = &suites.suites[0];
    assert_eq!(
        (
            oldest.name.as_str(),
            oldest.tests,
            oldest.failures,
            oldest.errors
        ),
        ("5.10", 15, 0, 0)
    );
    assert_eq!(oldest.skipped, 2, "the expected failure and the skip");
    let xfail = oldest
        .cases
        .iter()
        .find(|c| c.original_name == "xdp_loop_sum::load")
        .unwrap();
    match &xfail.status {
        junit_parser::TestStatus::Skipped(skip) => {
            assert!(
                skip.message
                    .starts_with("expected failure: the kernel lacks helper:bpf_loop"),
                "{skip:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((suites.suites[1].tests, suites.suites[1].skipped), (15, 0));

    // The HTML page, as a browser builds it: the matrix, the expected
    // failure, and a chart per program with a point per kernel that
    // reported a figure.
    let dom = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", path("merged.html")))
        .output()
        .expect("chromium is installed (Debian's chromium package)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<h1 class=\"passed\">kmatrix: passed</h1>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<tr><td class=\"test\">").count(), 15, "{dom}");
    assert!(
        dom.contains("<td class=\"test\">xdp_loop_sum::load</td><td class=\"xfail\">xfail</td><td class=\"pass\">pass</td>"),
        "{dom}"
    );
    assert!(dom.contains("the kernel lacks helper:bpf_loop"), "{dom}");
    assert_eq!(dom.matches("<figure class=\"chart\">").count(), 6, "{dom}");
    assert!(dom.contains("<title>6.1: "), "{dom}");
    let page = std::fs::read_to_string(path("merged.html")).unwrap();
    for external in ["<script", "<link", "src=", "url("] {
        assert!(!page.contains(external), "{external} in {page}");
    }

    // A shard file cut in the middle of a line.
    let text2 = std::fs::read_to_string(path("shard-2.json")).unwrap();
    let cut = text2.len() - text2.lines().last().unwrap().len() / 2 - 1;
    std::fs::write(path("shard-2.json"), &text2[..cut]).unwrap();
    let output = kmatrix(&[
        "report",
        "merge",
        &path("shard-1.json"),
        &path("shard-2.json"),
    ])
    .output()
    .unwrap();
    let out = exited(&output, 2);
    assert!(out.contains(&format!("{}:", path("shard-2.json"))), "{out}");
    assert!(out.contains("truncated or damaged"), "{out}");
}

/// `report diff` on two real runs of a program that grew: the second
/// version makes the verifier process more instructions, a regression
/// (exit 1) with `--threshold 10`; the other way round it is none.
fn report_diff_finds_a_program_that_grew() {
    let dir = tempfile::tempdir().unwrap();
    // Helper calls clang cannot fold: each is instructions the verifier
    // processes.
    let source = |steps: usize| {
        let body = "    x += bpf_get_prandom_u32();\n".repeat(steps);
        format!(
            "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nSEC(\"xdp\")\nint grow(struct xdp_md *ctx)\n{{\n    __u64 x = 0;\n{body}    return x & 1 ? XDP_PASS : XDP_DROP;\n}}\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
        )
    };
    let mut runs = Vec::new();
    for (name, steps) in [("small", 5), ("big", 50)] {
        let version = dir.path().join(name);
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("grow.bpf.c"), source(steps)).unwrap();
        let json = dir.path().join(format!("{name}.json"));
        let output = kmatrix(&["test", "--kernels", "6.1"])
            .arg(version.join("grow.bpf.c"))
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        runs.push(json.display().to_string());
    }
    // The statistics are there and plausible: the verifier processed at
    // least every instruction of the (loop-free) program once, and the
    // figures only its log gives are there too, for a program aya loaded.
    let stats: serde_json::Value = records(&runs[1])
        .into_iter()
        .find(|record| record["type"] == "stats")
        .expect("a stats record")["stats"]
        .clone();
    let processed = stats["insns_processed"].as_u64().expect("{stats}");
    let insns = stats["xlated_insns"].as_u64().expect("{stats}");
    assert!(insns >= 100 && processed >= insns, "{stats}");
    assert!(
        stats["jited_bytes"].as_u64().is_some_and(|b| b > 0),
        "{stats}"
    );
    assert!(stats["stack_depth"].is_string(), "{stats}");
    assert!(stats["verification_us"].as_u64().is_some(), "{stats}");
    assert!(stats["peak_states"].as_u64().is_some(), "{stats}");

    let output = kmatrix(&["report", "diff", &runs[0], &runs[1]])
        .output()
        .unwrap();
    let out = exited(&output, 1);
    assert!(
        out.contains("REGRESSION grow::load on 6.1: instructions processed grew from"),
        "{out}"
    );
    let output = kmatrix(&["report", "diff", &runs[1], &runs[0]])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}
