//! The one command line that reproduces a failure locally: `kmatrix test`
//! on the failure's kernel, with the run's matrix, suite, architecture,
//! loader and objects as the run was given them, and `--only` for each
//! failed test. Every report ends a failure with it, and the `--json`
//! file's failed outcomes carry it.

use kmatrix_protocol::report::Reproduce;

/// The command that runs `tests` (each with `--only`; none: the whole
/// suite) on `kernel` as the run described by `run` did, quoted for a POSIX
/// shell.
pub fn command(run: &Reproduce, kernel: &str, tests: &[&str]) -> String {
    let mut words: Vec<&str> = vec!["kmatrix"];
    if let Some(matrix) = &run.matrix {
        words.extend(["--matrix", matrix]);
    }
    words.extend(["test", "--kernels", kernel]);
    let flags = [
        ("--arch", &run.arch),
        ("--suite", &run.suite),
        ("--loader", &run.loader),
    ];
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
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
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
        };
        assert_eq!(
            command(&run, "6.12-arm64", &["p::load[libbpf]", "p::loaders-agree"]),
            "kmatrix --matrix ci/kernels.toml test --kernels 6.12-arm64 --arch arm64 \
             --loader both --only 'p::load[libbpf]' --only p::loaders-agree -- a.bpf.o -odd.o"
        );
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
