//! The CI templates (`action.yml`, `ci/github/`, `ci/gitlab/`): their
//! steps, the scripts in `ci/steps/`, run as a CI job runs them, on a
//! loopback stand-in: the build job's artifact is the `kmatrix` built
//! here, without its executable bit (as artifacts come back), and the
//! artifact store a directory per artifact.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kmatrix_protocol::report::{Outcome, Record, SCHEMA};

use crate::support::{example, repo, text};

crate::support::tests! {
    host the_templates_name_steps_that_are_there,
    host the_plan_and_merge_steps_run_as_in_ci,
    host a_shard_count_that_differs_from_the_jobs_fails_before_booting,
    vm one_shard_runs_and_merges_as_in_ci,
}

/// The YAML files whose steps run `ci/steps/` scripts.
const TEMPLATES: &[&str] = &[
    "action.yml",
    "ci/github/build/action.yml",
    "ci/github/plan/action.yml",
    "ci/github/merge/action.yml",
    "ci/gitlab/kmatrix.gitlab-ci.yml",
];

/// A job's working directory: the stand-in artifact, installed.
struct Job {
    dir: tempfile::TempDir,
    /// The directory `install-kmatrix.sh` printed, for the PATH.
    bin: PathBuf,
}

impl Job {
    /// Downloads the "artifact" (the `kmatrix` built here, not executable)
    /// and runs `install-kmatrix.sh` on it, as every job after the build
    /// does.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join("kmatrix-bin");
        std::fs::create_dir(&artifact).unwrap();
        let bin = artifact.join("kmatrix");
        std::fs::copy(env!("CARGO_BIN_EXE_kmatrix"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut job = Self {
            dir,
            bin: PathBuf::new(),
        };
        let installed = job.step(
            "install-kmatrix.sh",
            &[("KMATRIX_CI_BIN_DIR", artifact.to_str().unwrap())],
        );
        assert!(installed.status.success(), "{}", text(&installed));
        job.bin = PathBuf::from(String::from_utf8(installed.stdout).unwrap().trim());
        assert_eq!(job.bin, artifact);
        let mode = bin.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "the binary is executable now");
        job
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ci/steps/SCRIPT` in the repository (where kernels.toml is), with
    /// `env` and the installed kmatrix first on the PATH, and no CI
    /// variables from outside.
    fn step(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(repo().join("ci/steps").join(script));
        command
            .current_dir(repo())
            .env_remove("GITHUB_STEP_SUMMARY");
        for (name, _) in std::env::vars() {
            if name.starts_with("KMATRIX_CI_") {
                command.env_remove(name);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", self.bin.display()));
        command.envs(env.iter().copied()).output().unwrap()
    }
}

/// `name=value` lines, as a step writes them to `$GITHUB_OUTPUT`.
fn output(out: &Output, name: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= output: {}", text(out)))
        .to_owned()
}

/// Every `KMATRIX_CI_` name in `text`.
fn ci_names(text: &str) -> BTreeSet<String> {
    let prefix = "KMATRIX_CI_";
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// The `ci/steps/` scripts `text` names, and the ones they run or source
/// (`"$here/NAME.sh"`), each with whether it is run (not sourced).
fn scripts_named(text: &str) -> BTreeMap<String, bool> {
    let mut found: BTreeMap<String, bool> = text
        .match_indices("steps/")
        .filter_map(|(at, _)| {
            let rest = &text[at + "steps/".len()..];
            let name = &rest[..rest.find(".sh")?];
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
                .then(|| (format!("{name}.sh"), true))
        })
        .collect();
    let mut queue: Vec<String> = found.keys().cloned().collect();
    while let Some(script) = queue.pop() {
        let Ok(source) = std::fs::read_to_string(repo().join("ci/steps").join(&script)) else {
            continue;
        };
        for (at, _) in source.match_indices("\"$here/") {
            let rest = &source[at + "\"$here/".len()..];
            let Some(end) = rest.find('"') else { continue };
            let run = !source[..at].ends_with(". ");
            if found.insert(rest[..end].to_owned(), run).is_none() {
                queue.push(rest[..end].to_owned());
            }
        }
    }
    found
}

/// Each template's steps name scripts that are there and executable (or,
/// sourced, there); a variable a template sets is one its scripts or its
/// own shell read (no misspelt input is silently dropped), and one a script
/// requires (`${NAME:?…}`) is set by every template that runs it.
fn the_templates_name_steps_that_are_there() {
    for template in TEMPLATES {
        let yaml = std::fs::read_to_string(repo().join(template)).unwrap();
        let scripts = scripts_named(&yaml);
        assert!(!scripts.is_empty(), "{template} runs no ci/steps script");
        let mut read = BTreeSet::new();
        for (script, run) in &scripts {
            let path = repo().join("ci/steps").join(script);
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{template} runs {}: {e}", path.display()));
            let mode = path.metadata().unwrap().permissions().mode();
            assert!(
                !run || mode & 0o111 == 0o111,
                "{} is not executable",
                path.display()
            );
            read.extend(ci_names(&source));
            for required in ci_names(&source)
                .into_iter()
                .filter(|n| source.contains(&format!("${{{n}:?")))
            {
                assert!(
                    yaml.contains(&required),
                    "{template} runs {script}, which requires {required}, but never sets it"
                );
            }
        }
        for name in ci_names(&yaml) {
            let own_shell =
                yaml.contains(&format!("${name}")) || yaml.contains(&format!("${{{name}}}"));
            assert!(
                read.contains(&name) || own_shell,
                "{template} sets {name}, which none of {:?} reads",
                scripts.keys()
            );
        }
    }
    for script in std::fs::read_dir(repo().join("ci/steps")).unwrap() {
        let name = script.unwrap().file_name().into_string().unwrap();
        let used = TEMPLATES.iter().any(|t| {
            scripts_named(&std::fs::read_to_string(repo().join(t)).unwrap()).contains_key(&name)
        });
        assert!(used, "no template runs ci/steps/{name}");
    }
}

/// One shard's `--json` file, as a shard of the plan's `entry` writes it
/// with a test `p::load` on each of its kernels.
fn shard_file(path: &Path, matrix: &[String], entry: &serde_json::Value, outcome: &Outcome) {
    let kernels: Vec<String> = serde_json::from_value(entry["kernels"].clone()).unwrap();
    let mut records = vec![Record::RunStarted {
        schema: SCHEMA,
        kmatrix: "0".into(),
        matrix: matrix.to_vec(),
        kernels: kernels.clone(),
        tests: vec!["p::load".into()],
        shard: Some(entry["shard"].as_str().unwrap().to_owned()),
        reproduce: None,
    }];
    for kernel in &kernels {
        records.push(Record::Outcome {
            kernel: kernel.clone(),
            test: "p::load".into(),
            reproduce: None,
            result: outcome.clone(),
        });
        records.push(Record::KernelFinished {
            kernel: kernel.clone(),
            error: None,
            console_tail: None,
            infrastructure: false,
        });
    }
    records.push(Record::RunFinished {
        passed: !outcome.is_failure(),
    });
    let lines: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines).unwrap();
}

/// The plan step prints `kmatrix matrix`'s JSON as a step output; each
/// entry's shard names its artifact; the merge step finds the shards'
/// files in their artifacts' directories and merges them into the step
/// summary (GitHub) or a summary file (GitLab) and JUnit, and fails when
/// a test failed or a shard's results are missing.
fn the_plan_and_merge_steps_run_as_in_ci() {
    let job = Job::new();
    let plan = job.step(
        "plan.sh",
        &[
            ("KMATRIX_CI_KERNELS", "5.10,6.1"),
            ("KMATRIX_CI_ARCH", "amd64"),
            ("KMATRIX_CI_SHARDS", "2"),
        ],
    );
    assert!(plan.status.success(), "{}", text(&plan));
    let matrix: serde_json::Value = serde_json::from_str(&output(&plan, "matrix")).unwrap();
    let direct = crate::support::kmatrix(&[
        "matrix",
        "--kernels",
        "5.10,6.1",
        "--arch",
        "amd64",
        "--shards",
        "2",
    ])
    .output()
    .unwrap();
    assert!(direct.status.success(), "{}", text(&direct));
    assert_eq!(
        matrix,
        serde_json::from_slice::<serde_json::Value>(&direct.stdout).unwrap()
    );
    let entries = matrix["include"].as_array().unwrap();
    let shards: Vec<&str> = entries
        .iter()
        .map(|e| e["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["1/2", "2/2"]);
    let labels = ["5.10".to_owned(), "6.1".to_owned()];

    // The shard jobs' uploads, each artifact in its own directory (as the
    // merge job downloads them), under the name its shard step gave.
    let upload = |root: &Path, failing: Option<&str>| {
        for entry in entries {
            let shard = entry["shard"].as_str().unwrap();
            let named = job.step("shard-name.sh", &[("KMATRIX_CI_SHARD", shard)]);
            assert!(named.status.success(), "{}", text(&named));
            let name = output(&named, "name");
            let outcome = if failing == Some(shard) {
                Outcome::failed("return value: expected 1, got 2")
            } else {
                Outcome::Passed {
                    detail: "xdp".into(),
                }
            };
            let file = root.join(&name).join(format!("{name}.json"));
            shard_file(&file, &labels, entry, &outcome);
        }
    };
    let green = job.path("green");
    upload(&green, None);
    assert!(green.join("kmatrix-shard-1-of-2").is_dir());
    let (summary, junit) = (job.path("step-summary.md"), job.path("kmatrix-junit.xml"));
    let merged = job.step(
        "merge.sh",
        &[
            ("KMATRIX_CI_SHARDS_DIR", green.to_str().unwrap()),
            ("KMATRIX_CI_JUNIT", junit.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert!(merged.status.success(), "{}", text(&merged));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("| `p::load` | ✅ | ✅ |"), "{markdown}");
    let xml = std::fs::File::open(&junit).unwrap();
    let suites = junit_parser::from_reader(std::io::BufReader::new(xml)).unwrap();
    let names: Vec<&str> = suites.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, labels);

    // GitLab: no step summary, a file.
    let red = job.path("red");
    upload(&red, Some("2/2"));
    let file = job.path("kmatrix-summary.md");
    let failed = job.step(
        "merge.sh",
        &[
            ("KMATRIX_CI_SHARDS_DIR", red.to_str().unwrap()),
            ("KMATRIX_CI_SUMMARY", file.to_str().unwrap()),
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let markdown = std::fs::read_to_string(&file).unwrap();
    assert!(markdown.contains("expected 1, got 2"), "{markdown}");

    std::fs::remove_dir_all(green.join("kmatrix-shard-2-of-2")).unwrap();
    let missing = job.step(
        "merge.sh",
        &[("KMATRIX_CI_SHARDS_DIR", green.to_str().unwrap())],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("no results for kernel(s) 6.1"),
        "{}",
        text(&missing)
    );
    let none = job.step(
        "merge.sh",
        &[(
            "KMATRIX_CI_SHARDS_DIR",
            job.path("nothing").to_str().unwrap(),
        )],
    );
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(text(&none).contains("no shard results"), "{}", text(&none));
}

/// A shard that is not K/N, or whose N is not the number of shard jobs
/// (GitLab's `parallel:matrix` listing too few), fails before kmatrix runs.
fn a_shard_count_that_differs_from_the_jobs_fails_before_booting() {
    let job = Job::new();
    let json = job.path("shard.json");
    let json = json.to_str().unwrap();
    for (shard, jobs, expected) in [
        ("1/3", "2", "there are 2 shard jobs"),
        ("3", "", "is not K/N"),
        ("0/2", "", "is not K/N"),
    ] {
        let out = job.step(
            "shard.sh",
            &[
                ("KMATRIX_CI_SHARD", shard),
                ("KMATRIX_CI_JOBS", jobs),
                ("KMATRIX_CI_JSON", json),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{shard}: {}", text(&out));
        assert!(text(&out).contains(expected), "{shard}: {}", text(&out));
        assert!(!Path::new(json).exists(), "{shard}: kmatrix ran");
    }
}

/// A shard job and the merge job as CI runs them, on one kernel: QEMU's
/// step (nothing to install where it is), the example suite's shard with
/// `--json` and JUnit, then the merge into a summary and JUnit.
fn one_shard_runs_and_merges_as_in_ci() {
    let job = Job::new();
    let installed = job.step("install-qemu.sh", &[("KMATRIX_CI_ARCH", "amd64")]);
    assert!(installed.status.success(), "{}", text(&installed));
    let shards = job.path("kmatrix-shards");
    let json = shards.join("kmatrix-shard-1-of-1/shard.json");
    let shard_junit = shards.join("kmatrix-shard-1-of-1/shard.xml");
    let suite = example("kmatrix-suite.toml");
    let ran = job.step(
        "shard.sh",
        &[
            ("KMATRIX_CI_SHARD", "1/1"),
            ("KMATRIX_CI_JOBS", "1"),
            ("KMATRIX_CI_KERNELS", "6.1"),
            ("KMATRIX_CI_ARCH", "amd64"),
            ("KMATRIX_CI_SUITE", &suite),
            ("KMATRIX_CI_JSON", json.to_str().unwrap()),
            ("KMATRIX_CI_JUNIT", shard_junit.to_str().unwrap()),
        ],
    );
    assert!(ran.status.success(), "{}", text(&ran));
    assert!(shard_junit.is_file());
    let (summary, junit) = (job.path("summary.md"), job.path("kmatrix-junit.xml"));
    let merged = job.step(
        "merge.sh",
        &[
            ("KMATRIX_CI_SHARDS_DIR", shards.to_str().unwrap()),
            ("KMATRIX_CI_JUNIT", junit.to_str().unwrap()),
            ("KMATRIX_CI_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert!(merged.status.success(), "{}", text(&merged));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.contains("| `xdp_filter::load` | ✅ |"),
        "{markdown}"
    );
    let xml = std::fs::File::open(&junit).unwrap();
    let suites = junit_parser::from_reader(std::io::BufReader::new(xml)).unwrap();
    assert_eq!(suites.suites.len(), 1);
    assert_eq!(suites.suites[0].name, "6.1");
    assert_eq!(suites.suites[0].failures, 0);
}
