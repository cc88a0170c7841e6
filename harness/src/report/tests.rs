//! The renderers on a fixed run, without VMs: every kind of cell and
//! failure, checked against snapshot files (`snapshots/`).

use std::process::Command;
use std::time::Duration;

use kmatrix_protocol::report::{Outcome, Record};
use kmatrix_protocol::{ExitInfo, Hello};

use super::{html, junit, live, markdown, matrix, record, Reporter, Summary};
use crate::event::{JudgeError, KernelError, KernelOutcome, RunEvent};

const LOG: &str = "0: (61) r2 = *(u32 *)(r1 +0)\n1: (71) r1 = *(u8 *)(r2 +20)\ninvalid access to packet, off=20 size=1, R2(id=0,off=20,r=0)\nR2 offset is outside of the packet\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";

fn outcome(kernel: &str, test: &str, outcome: Outcome) -> RunEvent {
    RunEvent::Outcome {
        kernel: kernel.into(),
        test: test.into(),
        outcome,
    }
}

/// A run on three kernels: one passes but for a rejected program, one
/// fails to boot, one has an agent error and an expected failure.
fn events() -> Vec<RunEvent> {
    let booted = |kernel: &str, release: &str| RunEvent::KernelBooted {
        kernel: kernel.into(),
        hello: Hello {
            version: kmatrix_protocol::VERSION,
            kernel_release: release.into(),
            btf: true,
            boot_ms: 812,
        },
        start: if kernel == "6.1" {
            crate::vm::Start::Restored
        } else {
            crate::vm::Start::Cold
        },
    };
    let done = |kernel: &str| RunEvent::KernelFinished {
        kernel: kernel.into(),
        outcome: KernelOutcome::Completed {
            boot: Duration::from_millis(1500),
            run: Duration::from_millis(300),
            total: Duration::from_millis(1900),
        },
    };
    let pass = |detail: &str| Outcome::Passed {
        detail: detail.into(),
    };
    vec![
        RunEvent::RunStarted {
            matrix: vec!["5.10".into(), "6.1".into(), "7.3".into()],
            kernels: vec!["5.10".into(), "6.1".into(), "7.3".into()],
            tests: vec![
                "xdp_pass::load".into(),
                "unchecked_read::load".into(),
                "xdp_loop_sum::load".into(),
                "xdp_filter::drops_ssh".into(),
            ],
            shard: None,
        },
        RunEvent::KernelStarted {
            kernel: "5.10".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        booted("5.10", "5.10.0-35-cloud-amd64"),
        outcome("5.10", "xdp_pass::load", pass("xdp, 0.8 ms")),
        outcome(
            "5.10",
            "unchecked_read::load",
            Outcome::Failed {
                reason: "verifier: R2 offset is outside of the packet (Permission denied)".into(),
                verifier_log: Some(LOG.into()),
                kernel_log: None,
            },
        ),
        outcome(
            "5.10",
            "xdp_loop_sum::load",
            Outcome::ExpectedFailure {
                reason: "bpf_loop() arrived in Linux 5.17 (unknown func bpf_loop#181)".into(),
            },
        ),
        outcome(
            "5.10",
            "xdp_filter::drops_ssh",
            Outcome::Skipped {
                reason: "not run: the program did not load".into(),
            },
        ),
        done("5.10"),
        RunEvent::KernelStarted {
            kernel: "6.1".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        RunEvent::KernelFinished {
            kernel: "6.1".into(),
            outcome: KernelOutcome::Failed(KernelError::Judge(JudgeError::NoExit)),
        },
        RunEvent::KernelStarted {
            kernel: "7.3".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        RunEvent::Notice {
            kernel: "7.3".into(),
            message: "the saved VM could not be restored (restoring the saved VM failed: the VM did not answer within 15s); booting cold and saving it again".into(),
        },
        booted("7.3", "7.3.1+bpo-cloud-amd64"),
        RunEvent::AgentError {
            kernel: "7.3".into(),
            message: "module virtio_console: EEXIST".into(),
        },
        outcome("7.3", "xdp_pass::load", pass("xdp, 0.6 ms")),
        RunEvent::Stats {
            kernel: "7.3".into(),
            test: "xdp_pass::load".into(),
            stats: kmatrix_protocol::ProgramStats {
                insns_processed: Some(2),
                xlated_insns: Some(2),
                jited_bytes: Some(21),
                ..Default::default()
            },
        },
        outcome("7.3", "unchecked_read::load", pass("xdp, 0.7 ms")),
        outcome(
            "7.3",
            "xdp_loop_sum::load",
            Outcome::LoaderLimitation {
                reason: "aya cannot load it: error parsing BPF object: invalid program section `tc`; try `loader = \"libbpf\"` for this object in the suite (or --loader libbpf)".into(),
            },
        ),
        outcome(
            "7.3",
            "xdp_filter::drops_ssh",
            Outcome::Failed {
                reason: "the kernel printed a splat: WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2".into(),
                verifier_log: None,
                kernel_log: Some("------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2\nCall Trace:\n ---[ end trace 0000000000000000 ]---".into()),
            },
        ),
        RunEvent::Splat {
            kernel: "7.3".into(),
            source: crate::event::SplatSource::Kmsg,
            lines: vec![
                "INFO: task kworker/0:1:12 blocked for more than 120 seconds.".into(),
                "      Not tainted 7.3.1+bpo-cloud-amd64 #1".into(),
            ],
        },
        RunEvent::Exited {
            kernel: "7.3".into(),
            info: ExitInfo::Code(0),
        },
        done("7.3"),
        RunEvent::RunFinished,
    ]
}

fn summary() -> Summary {
    let mut reporter = Reporter::new();
    for event in events() {
        reporter.report(&event).unwrap();
    }
    reporter.into_summary()
}

#[test]
fn matrix_render() {
    let mut out = Vec::new();
    matrix::render(&summary(), &mut out).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn stats_render() {
    let mut out = Vec::new();
    matrix::render_stats(&summary(), &mut out).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn markdown_render() {
    insta::assert_snapshot!(markdown::render(&summary()));
}

#[test]
fn html_render() {
    insta::assert_snapshot!(html::render(&summary()));
}

#[test]
fn junit_render() {
    let xml = junit::render(&summary()).unwrap();
    insta::assert_snapshot!(xml);
}

#[test]
fn live_lines() {
    let mut out = Vec::new();
    let mut live = live::LiveReporter::new(&mut out);
    for event in events() {
        live.report(&event).unwrap();
    }
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn json_lines_fold_back_into_the_same_matrix() {
    let mut lines = Vec::new();
    let mut reporter = Reporter::new().json(&mut lines);
    for event in events() {
        reporter.report(&event).unwrap();
    }
    let live = reporter.into_summary();
    let records: Vec<Record> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.last(), Some(&Record::RunFinished { passed: false }));
    let mut replayed = Summary::default();
    for record in &records {
        replayed.apply(record);
    }
    assert_eq!(replayed.columns, live.columns);
    assert_eq!(replayed.rows, live.rows);
    let mut a = Vec::new();
    let mut b = Vec::new();
    matrix::render(&live, &mut a).unwrap();
    matrix::render(&replayed, &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        record::of(&RunEvent::RunFinished, || true),
        Record::RunFinished { passed: true }
    );
}

#[test]
fn one_cause_for_several_tests_is_reported_once() {
    let map = "map error: failed to create map `events`: Invalid argument (map `events` is declared with max_entries 0)";
    let mut summary = Summary::with(
        vec!["6.1".into()],
        vec!["a::load".into(), "b::load".into(), "c::load".into()],
    );
    for (test, reason) in [("a::load", map), ("b::load", map), ("c::load", "other")] {
        summary.apply(&Record::Outcome {
            kernel: "6.1".into(),
            test: test.into(),
            result: Outcome::failed(reason),
        });
    }
    let failures = super::failure::all(&summary);
    assert_eq!(failures.len(), 2);
    assert_eq!(
        failures[0].headline(),
        "a::load on 6.1 (and, for the same reason, b::load)"
    );
}

/// `markdown` as GitHub renders it: cmark-gfm with tables and raw HTML.
/// CI installs cmark-gfm; without it this fails rather than skip.
pub(super) fn cmark_gfm(markdown: &str) -> String {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, markdown.as_bytes()).unwrap();
    let output = Command::new("cmark-gfm")
        .args(["-e", "table", "--unsafe"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cmark-gfm, GitHub's Markdown renderer, did not start ({e}): install it (apt-get install cmark-gfm)")
        });
    assert!(output.status.success(), "cmark-gfm: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A node of cmark-gfm's HTML.
#[derive(Debug)]
pub(super) enum Node {
    Element { tag: String, children: Vec<Node> },
    Text(String),
}

impl Node {
    /// The tree of `html`, which must close every element it opens, in
    /// order. Sound for cmark-gfm's output, where every `<` in text is
    /// escaped.
    pub(super) fn parse(html: &str) -> Result<Node, String> {
        let text = |raw: &str| {
            Node::Text(
                raw.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&"),
            )
        };
        let mut open = vec![(String::new(), Vec::new())];
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            open.last_mut().unwrap().1.push(text(&rest[..start]));
            let end = rest[start..].find('>').ok_or("a tag never ends")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            let name = tag
                .trim_end_matches('/')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            if let Some(closing) = tag.strip_prefix('/') {
                if open.len() < 2 {
                    return Err(format!("</{closing}> closes nothing"));
                }
                let (tag, children) = open.pop().unwrap();
                if tag != closing {
                    return Err(format!("</{closing}> closes <{tag}>"));
                }
                open.last_mut()
                    .unwrap()
                    .1
                    .push(Node::Element { tag, children });
            } else if tag.ends_with('/') || ["img", "br", "hr", "input"].contains(&name.as_str()) {
                open.last_mut().unwrap().1.push(Node::Element {
                    tag: name,
                    children: Vec::new(),
                });
            } else {
                open.push((name, Vec::new()));
            }
        }
        open.last_mut().unwrap().1.push(text(rest));
        if open.len() > 1 {
            let unclosed: Vec<&str> = open[1..].iter().map(|(tag, _)| tag.as_str()).collect();
            return Err(format!("never closed: {unclosed:?}"));
        }
        let (_, children) = open.pop().unwrap();
        Ok(Node::Element {
            tag: String::new(),
            children,
        })
    }

    /// The element's tag; empty for text.
    pub(super) fn tag(&self) -> &str {
        match self {
            Node::Element { tag, .. } => tag,
            Node::Text(_) => "",
        }
    }

    /// The child elements tagged `tag`.
    pub(super) fn children(&self, tag: &str) -> Vec<&Node> {
        match self {
            Node::Element { children, .. } => children.iter().filter(|c| c.tag() == tag).collect(),
            Node::Text(_) => Vec::new(),
        }
    }

    /// Every element tagged `tag` below this one.
    pub(super) fn all(&self, tag: &str) -> Vec<&Node> {
        let mut found = Vec::new();
        if let Node::Element { children, .. } = self {
            for child in children {
                if child.tag() == tag {
                    found.push(child);
                }
                found.extend(child.all(tag));
            }
        }
        found
    }

    /// Its text, unescaped.
    pub(super) fn text(&self) -> String {
        self.text_outside("")
    }

    /// Its text, unescaped, but for that of elements tagged `skipped`.
    pub(super) fn text_outside(&self, skipped: &str) -> String {
        match self {
            Node::Element { tag, .. } if tag == skipped => String::new(),
            Node::Element { children, .. } => children
                .iter()
                .map(|child| child.text_outside(skipped))
                .collect(),
            Node::Text(text) => text.clone(),
        }
    }
}

#[test]
fn markdown_renders_on_github() {
    let mut summary = Summary::with(
        vec!["5.10".into(), "6.1".into()],
        vec!["a::load".into(), "b::load".into()],
    );
    let records = [
        Record::AgentError {
            kernel: "5.10".into(),
            message: "module virtio_console: EEXIST".into(),
        },
        Record::Outcome {
            kernel: "5.10".into(),
            test: "a::load".into(),
            result: Outcome::Failed {
                reason: "verifier: R1 invalid mem access 'scalar'".into(),
                verifier_log: Some(
                    "0: (79) r1 = *(u64 *)(r1 +0)\n; if (x < `y`) {\n```\nR1 invalid mem access 'scalar'\n\n    indented <b>not bold</b>\n</details>\nprocessed 1 insns\n".into(),
                ),
                kernel_log: None,
            },
        },
        Record::Outcome {
            kernel: "5.10".into(),
            test: "b::load".into(),
            result: Outcome::Failed {
                reason: "verifier: too complex\nfirst detail <x>\n- `not an item`".into(),
                verifier_log: Some("` `` ```` <script>\n- `x`\nthe end".into()),
                kernel_log: None,
            },
        },
        Record::KernelFinished {
            kernel: "5.10".into(),
            error: None,
            console_tail: None,
            infrastructure: false,
        },
        Record::KernelFinished {
            kernel: "6.1".into(),
            error: Some("the VM died\nKernel panic - not syncing: <VFS>".into()),
            console_tail: Some("[    1.0] ```\n[    1.1] <end>".into()),
            infrastructure: false,
        },
    ];
    for record in &records {
        summary.apply(record);
    }
    let failures = super::failure::all(&summary);
    assert_eq!(failures.len(), 4);

    let html = cmark_gfm(&markdown::render(&summary));
    let document = Node::parse(&html).unwrap_or_else(|e| panic!("{e}:\n{html}"));
    let lists = document.children("ul");
    assert_eq!(lists.len(), 1, "{html}");
    let items = lists[0].children("li");
    assert_eq!(items.len(), failures.len(), "{html}");
    for (item, failure) in items.iter().zip(&failures) {
        let (_, sections) = failure.folded();
        let folds = item.children("details");
        assert_eq!(folds.len(), sections.len(), "{html}");
        for (fold, (title, log)) in folds.iter().zip(sections) {
            assert_eq!(fold.children("summary")[0].text(), title);
            let blocks = fold.children("pre");
            assert_eq!(blocks.len(), 1, "{html}");
            let shown: String = log.lines().map(|line| format!("{line}\n")).collect();
            assert_eq!(blocks[0].text(), shown);
        }
    }
    assert_eq!(document.all("details").len(), 5);
    let prose = document.text_outside("pre");
    for raw in ["- `", "- **", "<details", "</details"] {
        assert!(!prose.contains(raw), "{raw} outside the logs:\n{html}");
    }
}

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
