//! A libtest test binary asked on the host, before anything boots: listing
//! needs no kernel (`cargo test -- --list`, and cargo-nextest, which lists
//! through the runner and then runs one `--exact` test per call), and a
//! filter that leaves no test needs no kernel either.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the host found out.
#[derive(Debug, PartialEq, Eq)]
pub enum HostList {
    /// Not a libtest binary, or its listing failed: boot as usual.
    Boot,
    /// The arguments ask for the list: run the binary (at this path) on
    /// the host instead.
    ListOnHost(PathBuf),
    /// The filters leave this many tests (more than zero): boot.
    Tests(usize),
    /// The filters leave no test.
    NoTests {
        /// The `--exact` names given, if any: no match for them is an
        /// error, since a runner that asked for one test expects it to run.
        exact: Option<Vec<String>>,
    },
}

/// Whether `program` is a libtest test binary: an ELF executable that
/// carries libtest's own option names (a script that mentions them is
/// not, and is never run on the host).
pub fn is_libtest(program: &Path) -> bool {
    let Ok((bytes, _)) = crate::exec::read_regular(program) else {
        return false;
    };
    use object::Object;
    let executable = object::File::parse(&*bytes).is_ok_and(|elf| {
        matches!(
            elf.kind(),
            object::ObjectKind::Executable | object::ObjectKind::Dynamic
        ) && elf.entry() != 0
    });
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    executable && has(b"RUST_TEST_THREADS") && has(b"--include-ignored")
}

/// libtest's options that take a value (the next argument).
pub const LIBTEST_VALUED: &[&str] = &[
    "--skip",
    "--test-threads",
    "--logfile",
    "--color",
    "--format",
    "-Z",
    "--shuffle-seed",
];

/// The names after `--exact`'s other arguments, when `--exact` is given.
pub fn exact_names(args: &[impl AsRef<[u8]>]) -> Option<Vec<String>> {
    let is = |arg: &[u8], option: &str| arg == option.as_bytes();
    if !args.iter().any(|a| is(a.as_ref(), "--exact")) {
        return None;
    }
    let mut names = Vec::new();
    let mut iter = args.iter().map(AsRef::as_ref);
    while let Some(arg) = iter.next() {
        if LIBTEST_VALUED.iter().any(|option| is(arg, option)) {
            iter.next();
        } else if !arg.starts_with(b"-") {
            names.push(String::from_utf8_lossy(arg).into_owned());
        }
    }
    Some(names)
}

/// Decides what `argv` (a program and its arguments) needs.
pub fn decide(argv: &[String]) -> HostList {
    let Some((program, args)) = argv.split_first() else {
        return HostList::Boot;
    };
    let Some(program) = crate::exec::find_program(program)
        .ok()
        .filter(|p| is_libtest(p))
    else {
        return HostList::Boot;
    };
    if args.iter().any(|a| a == "--list") {
        return HostList::ListOnHost(program);
    }
    let listed = Command::new(program)
        .args(args)
        .arg("--list")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
        return HostList::Boot;
    };
    let tests = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(": test") || l.ends_with(": benchmark"))
        .count();
    if tests > 0 {
        HostList::Tests(tests)
    } else {
        HostList::NoTests {
            exact: exact_names(args),
        }
    }
}

/// What libtest prints when a filter leaves no test.
pub const ZERO_TESTS: &str = "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_names_skip_option_values() {
        assert_eq!(exact_names(&args(&["a", "--nocapture"])), None);
        assert_eq!(
            exact_names(&args(&[
                "--exact",
                "mod::a",
                "--nocapture",
                "--test-threads",
                "1",
                "--skip",
                "b"
            ])),
            Some(args(&["mod::a"]))
        );
    }

    #[test]
    fn this_test_binary_is_libtest_and_a_shell_is_not() {
        let me = std::env::current_exe().unwrap();
        assert!(is_libtest(&me));
        assert!(!is_libtest("/bin/sh".as_ref()));
        assert_eq!(decide(&args(&["/bin/sh", "--list"])), HostList::Boot);
        assert_eq!(
            decide(&[me.display().to_string(), "--list".into()]),
            HostList::ListOnHost(me.clone())
        );
        let me = me.display().to_string();
        assert_eq!(
            decide(&[me.clone(), "exact_names_skip".into()]),
            HostList::Tests(1)
        );
        assert_eq!(
            decide(&[me.clone(), "--exact".into(), "no::such::test".into()]),
            HostList::NoTests {
                exact: Some(vec!["no::such::test".into()])
            }
        );
        assert_eq!(
            decide(&[me, "no_such_filter_at_all".into()]),
            HostList::NoTests { exact: None }
        );
    }

    #[test]
    fn a_script_naming_libtest_options_is_no_libtest_and_never_runs_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran-on-the-host");
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# RUST_TEST_THREADS --include-ignored\ntouch '{}'\necho 'running 0 tests'\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(!is_libtest(&script));
        let script = script.display().to_string();
        for tail in [&[][..], &["--list"], &["a_filter"], &["--exact", "a::test"]] {
            let argv: Vec<String> = std::iter::once(script.clone())
                .chain(tail.iter().map(|s| s.to_string()))
                .collect();
            assert_eq!(decide(&argv), HostList::Boot, "{argv:?}");
        }
        assert!(!marker.exists(), "the script ran on the host");
    }
}
