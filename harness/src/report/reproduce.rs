//! The one command line that reproduces a failure locally, on the
//! failure's kernel, with what the run was given as it was given: for
//! `kmatrix test`, the matrix, suite, architecture, loader and objects, and
//! `--only` for each failed test; for `kmatrix exec`, the matrix,
//! architecture, `--file`s, `--env`s, `--no-share` and the program, with a
//! failed libtest test named alone (`NAME --exact`). Where more than
//! [`super::failure::NAMED`] others failed alike, none is named: the whole
//! suite or program runs again. Every report ends a failure with it, and
//! the `--json` file's failed outcomes carry it.

use kmatrix_protocol::report::{ExecReproduce, Reproduce};

/// The command that runs `tests` (none: the whole suite, or the whole
/// program) on `kernel` as the run described by `run` did, quoted for a
/// POSIX shell.
pub fn command(run: &Reproduce, kernel: &str, tests: &[&str]) -> String {
    let mut words: Vec<&str> = vec!["kmatrix"];
    if let Some(matrix) = &run.matrix {
        words.extend(["--matrix", matrix]);
    }
    let command = if run.exec.is_some() { "exec" } else { "test" };
    words.extend([command, "--kernels", kernel]);
    if let Some(arch) = &run.arch {
        words.extend(["--arch", arch]);
    }
    match &run.exec {
        Some(exec) => exec_words(&mut words, exec, tests),
        None => suite_words(&mut words, run, tests),
    }
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

fn suite_words<'a>(words: &mut Vec<&'a str>, run: &'a Reproduce, tests: &[&'a str]) {
    let flags = [("--suite", &run.suite), ("--loader", &run.loader)];
    for (flag, value) in flags {
        if let Some(value) = value {
            words.extend([flag, value]);
        }
    }
    for test in tests {
        words.extend(["--only", test]);
    }
    // An object named like a flag must not be read as one.
    if run.objects.iter().any(|o| o.starts_with('-')) {
        words.push("--");
    }
    words.extend(run.objects.iter().map(String::as_str));
}

/// `kmatrix exec`'s flags and program; with `tests` (libtest's names), the
/// program's arguments without the run's own test selection, then the
/// names and `--exact`.
fn exec_words<'a>(words: &mut Vec<&'a str>, exec: &'a ExecReproduce, tests: &[&'a str]) {
    for file in &exec.files {
        words.extend(["--file", file]);
    }
    for name in &exec.env {
        words.extend(["--env", name]);
    }
    if exec.no_share {
        words.push("--no-share");
    }
    words.push("--");
    let Some((program, args)) = exec.command.split_first() else {
        return;
    };
    words.push(program);
    if tests.is_empty() {
        words.extend(args.iter().map(String::as_str));
    } else {
        words.extend(libtest_options(args));
        words.extend(tests);
        words.push("--exact");
    }
}

/// `args` without what selects libtest's tests (its filters, `--exact`,
/// `--skip`'s patterns): the options that say how they run
/// (`--nocapture`, `--include-ignored`, `--test-threads N`) stay.
fn libtest_options(args: &[String]) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut args = args.iter().map(String::as_str);
    while let Some(arg) = args.next() {
        match arg {
            // What follows `--` is filters only.
            "--" => break,
            "--exact" => {}
            "--skip" => {
                args.next();
            }
            _ if arg.starts_with("--skip=") => {}
            _ if crate::host_list::LIBTEST_VALUED.contains(&arg) => {
                kept.push(arg);
                kept.extend(args.next());
            }
            _ if arg.starts_with('-') => kept.push(arg),
            _ => {}
        }
    }
    kept
}

/// `word` as a POSIX shell reads it back: bare when it holds only
/// characters no shell treats specially, else in single quotes (a single
/// quote written `'\''`).
pub fn quote(word: &str) -> String {
    // Brackets are glob characters: unquoted, `p::load[aya]` would match a
    // file named `p::loada`.
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Reproduce {
        Reproduce {
            suite: Some("tests/kmatrix-suite.toml".into()),
            ..Reproduce::default()
        }
    }

    #[test]
    fn names_the_kernel_the_suite_and_the_test() {
        assert_eq!(
            command(&run(), "6.1", &["xdp_filter::drops_ssh"]),
            "kmatrix test --kernels 6.1 --suite tests/kmatrix-suite.toml --only xdp_filter::drops_ssh"
        );
        // A kernel's own failure reruns the whole suite there.
        assert_eq!(
            command(&run(), "5.10", &[]),
            "kmatrix test --kernels 5.10 --suite tests/kmatrix-suite.toml"
        );
    }

    #[test]
    fn repeats_only_what_the_run_was_given() {
        let run = Reproduce {
            matrix: Some("ci/kernels.toml".into()),
            suite: None,
            arch: Some("arm64".into()),
            loader: Some("both".into()),
            objects: vec!["a.bpf.o".into(), "-odd.o".into()],
            exec: None,
        };
        assert_eq!(
            command(&run, "6.12-arm64", &["p::load[libbpf]", "p::loaders-agree"]),
            "kmatrix --matrix ci/kernels.toml test --kernels 6.12-arm64 --arch arm64 \
             --loader both --only 'p::load[libbpf]' --only p::loaders-agree -- a.bpf.o -odd.o"
        );
    }

    fn exec_run(command: &[&str]) -> Reproduce {
        Reproduce {
            exec: Some(ExecReproduce {
                command: command.iter().map(|w| w.to_string()).collect(),
                ..ExecReproduce::default()
            }),
            ..Reproduce::default()
        }
    }

    #[test]
    fn an_exec_program_runs_again_as_given_on_its_kernel() {
        let mut run = exec_run(&["./probe.sh", "--flag", "it's"]);
        assert_eq!(
            command(&run, "6.1", &[]),
            r"kmatrix exec --kernels 6.1 -- ./probe.sh --flag 'it'\''s'"
        );
        run.matrix = Some("ci/kernels.toml".into());
        run.arch = Some("arm64".into());
        run.exec = Some(ExecReproduce {
            command: vec!["prog".into()],
            files: vec!["data dir".into()],
            env: vec!["RUST_LOG".into()],
            no_share: true,
        });
        assert_eq!(
            command(&run, "6.1-arm64", &[]),
            "kmatrix --matrix ci/kernels.toml exec --kernels 6.1-arm64 --arch arm64 \
             --file 'data dir' --env RUST_LOG --no-share -- prog"
        );
    }

    #[test]
    fn a_libtest_test_runs_alone_with_the_runs_options() {
        let run = exec_run(&[
            "/t/deps/probe-1a2b",
            "attach",
            "--nocapture",
            "--skip",
            "slow",
            "--test-threads",
            "1",
            "--exact",
            "--skip=other",
            "--include-ignored",
            "--",
            "--odd-filter",
        ]);
        assert_eq!(
            command(&run, "7.3", &["xdp::attaches_to_lo"]),
            "kmatrix exec --kernels 7.3 -- /t/deps/probe-1a2b --nocapture --test-threads 1 \
             --include-ignored xdp::attaches_to_lo --exact"
        );
        // The whole program, for the kernel's own failure or its exit.
        assert!(command(&run, "7.3", &[]).ends_with("--include-ignored -- --odd-filter"));
    }

    #[test]
    fn quotes_what_a_shell_would_change() {
        assert_eq!(quote("plain/path.o"), "plain/path.o");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("my suite.toml"), "'my suite.toml'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("a;b"), "'a;b'");
        assert_eq!(quote("*.o"), "'*.o'");
        assert_eq!(quote("~/x"), "'~/x'");
        assert_eq!(quote("p::load[aya]"), "'p::load[aya]'");
    }

    #[test]
    fn a_shell_reads_the_words_back() {
        let odd = "we'ird $(name) \"x\" \\ [a]";
        let run = Reproduce {
            suite: Some(odd.into()),
            ..Reproduce::default()
        };
        let line = command(&run, "6.1", &["p::c"]);
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {line}")])
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            words,
            [
                "kmatrix",
                "test",
                "--kernels",
                "6.1",
                "--suite",
                odd,
                "--only",
                "p::c"
            ]
        );
    }
}
