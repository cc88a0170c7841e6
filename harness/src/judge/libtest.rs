//! Judging a libtest test binary by what it prints: each `test NAME ...
//! ok|FAILED|ignored` line becomes an [`Outcome`], and a failed test's
//! `---- NAME stdout ----` block becomes its reason.

use std::collections::HashMap;

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::Stream;

/// Longer lines are no libtest result and are not kept.
const MAX_LINE: usize = 1 << 20;

/// One kernel's run of a test binary, read as it streams.
#[derive(Debug, Default)]
pub struct Libtest {
    /// The unfinished line of each stream.
    partial: HashMap<bool, Vec<u8>>,
    /// Failed tests, held until their printed output has been read.
    failed: Vec<String>,
    /// The test whose `---- NAME stdout ----` block is being read.
    capturing: Option<String>,
    /// What each failed test printed.
    printed: HashMap<String, String>,
    /// How many tests libtest said it runs (`running N tests`).
    running: Option<usize>,
    /// Splats the kernel printed while a test ran, by test: its headline
    /// and lines.
    splats: HashMap<String, (String, String)>,
}

impl Libtest {
    /// Reads what the program wrote; returns the outcomes now decided.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) -> Vec<(String, Outcome)> {
        let buffer = self.partial.entry(stream == Stream::Stderr).or_default();
        let before = buffer.len();
        buffer.extend_from_slice(data);
        // Only the new bytes can hold the last newline.
        let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
            // No libtest line is this long: keep the memory, not the text.
            if buffer.len() > MAX_LINE {
                buffer.clear();
            }
            return Vec::new();
        };
        let end = before + end;
        let complete: Vec<u8> = buffer.drain(..=end).collect();
        let mut outcomes = Vec::new();
        for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
            outcomes.extend(self.line(&String::from_utf8_lossy(line)));
        }
        outcomes
    }

    /// The program ended: reads what is left and returns every outcome
    /// still held, and fails each test the kernel splatted during that
    /// never reported its result (the splat may have killed it).
    pub fn finish(&mut self) -> Vec<(String, Outcome)> {
        let mut outcomes = Vec::new();
        let rests: Vec<Vec<u8>> = self.partial.drain().map(|(_, rest)| rest).collect();
        for rest in rests.iter().filter(|r| !r.is_empty()) {
            outcomes.extend(self.line(&String::from_utf8_lossy(rest)));
        }
        outcomes.extend(self.release_failed());
        let unfinished: Vec<String> = self.splats.keys().cloned().collect();
        for name in unfinished {
            let outcome =
                self.splatted(&name, Outcome::failed("the test never reported its result"));
            outcomes.push((name, outcome));
        }
        outcomes
    }

    /// Takes in a splat the kernel printed while the program ran: it fails
    /// the test running then (the one whose `test NAME ... ` line is
    /// waiting for its result), which this returns; `None` when no test
    /// was running (several at once, or between tests).
    pub fn splat(&mut self, lines: &[String]) -> Option<String> {
        let open = self.partial.get(&false)?;
        let name = String::from_utf8_lossy(open)
            .strip_prefix("test ")?
            .strip_suffix(" ... ")?
            .to_owned();
        let headline = kmatrix_protocol::splat::headline_of(lines);
        self.splats
            .entry(name.clone())
            .or_insert((headline, lines.join("\n")));
        Some(name)
    }

    /// How many tests the binary said it runs, once it has said so.
    pub fn running(&self) -> Option<usize> {
        self.running
    }

    fn line(&mut self, line: &str) -> Vec<(String, Outcome)> {
        let text = line.trim_end();
        if let Some(count) = text
            .strip_prefix("running ")
            .and_then(|t| t.strip_suffix(" tests").or_else(|| t.strip_suffix(" test")))
            .and_then(|n| n.parse::<usize>().ok())
        {
            self.running = Some(self.running.unwrap_or(0) + count);
            return Vec::new();
        }
        if let Some(name) = text
            .strip_prefix("---- ")
            .and_then(|t| t.strip_suffix(" stdout ----"))
        {
            self.capturing = Some(name.to_owned());
            return Vec::new();
        }
        if text == "failures:" {
            self.capturing = None;
        }
        if text.starts_with("test result:") {
            self.capturing = None;
            return self.release_failed();
        }
        if let Some(name) = &self.capturing {
            let printed = self.printed.entry(name.clone()).or_default();
            printed.push_str(text);
            printed.push('\n');
            return Vec::new();
        }
        match result_line(text) {
            Some((name, None)) => {
                self.failed.push(name.to_owned());
                Vec::new()
            }
            Some((name, Some(outcome))) => vec![(name.to_owned(), self.splatted(name, outcome))],
            None => Vec::new(),
        }
    }

    /// `outcome` of test `name`, failed by a splat during it if there was one.
    fn splatted(&mut self, name: &str, outcome: Outcome) -> Outcome {
        match self.splats.remove(name) {
            Some((headline, log)) => outcome.with_splat(&headline, log),
            None => outcome,
        }
    }

    fn release_failed(&mut self) -> Vec<(String, Outcome)> {
        let failed = std::mem::take(&mut self.failed);
        failed
            .into_iter()
            .map(|name| {
                let reason = match self.printed.remove(&name) {
                    Some(printed) => format!("the test failed:\n{}", printed.trim_end()),
                    None => "the test failed; its output is above".to_owned(),
                };
                let outcome = self.splatted(&name, Outcome::failed(reason));
                (name, outcome)
            })
            .collect()
    }
}

/// A libtest result line: `test NAME ... ok|FAILED|ignored[, reason]`;
/// `None` as the outcome for a failure, whose reason comes later.
fn result_line(line: &str) -> Option<(&str, Option<Outcome>)> {
    let rest = line.strip_prefix("test ")?;
    let (name, verdict) = rest.rsplit_once(" ... ")?;
    let outcome = match verdict.trim_end() {
        "ok" => Some(Outcome::Passed {
            detail: String::new(),
        }),
        "FAILED" => None,
        ignored if ignored.starts_with("ignored") => Some(Outcome::Skipped {
            reason: ignored
                .strip_prefix("ignored, ")
                .unwrap_or("ignored")
                .to_owned(),
        }),
        _ => return None,
    };
    Some((name.trim(), outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_splat_during_a_test_that_never_ends_fails_it() {
        let mut libtest = Libtest::default();
        libtest.feed(Stream::Stdout, b"running 1 test\ntest dies ... ");
        let splat = ["BUG: kernel NULL pointer dereference, address: 0".to_owned()];
        assert_eq!(libtest.splat(&splat).as_deref(), Some("dies"));
        let outcomes = libtest.finish();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        let (
            name,
            Outcome::Failed {
                reason, kernel_log, ..
            },
        ) = &outcomes[0]
        else {
            panic!("{outcomes:?}")
        };
        assert_eq!(name, "dies");
        assert!(
            reason.starts_with(
                "the test never reported its result; and the kernel printed a splat: BUG"
            ),
            "{reason}"
        );
        assert!(kernel_log.is_some());
    }

    #[test]
    fn reads_libtest_lines() {
        assert!(matches!(
            result_line("test maps::counts ... ok"),
            Some(("maps::counts", Some(Outcome::Passed { .. })))
        ));
        assert!(matches!(
            result_line("test a ... FAILED"),
            Some(("a", None))
        ));
        match result_line("test slow ... ignored, needs 6.6") {
            Some(("slow", Some(Outcome::Skipped { reason }))) => assert_eq!(reason, "needs 6.6"),
            other => panic!("{other:?}"),
        }
        assert!(result_line("test result: ok. 1 passed").is_none());
        assert!(result_line("running 2 tests").is_none());
    }

    #[test]
    fn a_failed_tests_output_becomes_its_reason() {
        let mut judge = Libtest::default();
        let mut outcomes = Vec::new();
        // Split mid-line, as frames arrive.
        let text = "test ok_one ... ok\ntest maps::counts ... FAILED\n\nfailures:\n\n---- maps::counts stdout ----\nassertion failed: dropped >= 1\n\nfailures:\n    maps::counts\n\ntest result: FAILED. 1 passed; 1 failed\n";
        for chunk in text.as_bytes().chunks(7) {
            outcomes.extend(judge.feed(Stream::Stdout, chunk));
        }
        outcomes.extend(judge.finish());
        assert_eq!(
            outcomes,
            [
                (
                    "ok_one".to_owned(),
                    Outcome::Passed {
                        detail: String::new()
                    }
                ),
                (
                    "maps::counts".to_owned(),
                    Outcome::failed("the test failed:\nassertion failed: dropped >= 1")
                ),
            ]
        );
    }

    #[test]
    fn a_crash_releases_held_failures() {
        let mut judge = Libtest::default();
        assert!(judge
            .feed(Stream::Stdout, b"test a ... FAILED\ntest b ... ok")
            .is_empty());
        let outcomes = judge.finish();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].0, "b");
        assert!(outcomes[1].1.is_failure());
    }

    #[test]
    fn the_number_of_tests_run_is_read() {
        let mut libtest = Libtest::default();
        assert_eq!(libtest.running(), None);
        libtest.feed(Stream::Stdout, b"\nrunning 0 tests\n");
        assert_eq!(libtest.running(), Some(0));
        libtest.feed(Stream::Stdout, b"running 1 test\ntest a ... ok\n");
        assert_eq!(libtest.running(), Some(1));
    }
}
