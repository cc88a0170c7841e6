//! A [`RunEvent`] as the [`Record`] that the `--json` file stores and the
//! [`Summary`](super::Summary) folds.

use kmatrix_protocol::report::{Record, SCHEMA};
use kmatrix_protocol::{ExitInfo, Stream};

use crate::error_chain::error_chain;
use crate::event::{KernelOutcome, RunEvent};
use crate::vm::Start;

/// The record of `event`; `passed` is asked only for `run-finished`.
pub fn of(event: &RunEvent, passed: impl FnOnce() -> bool) -> Record {
    match event {
        RunEvent::RunStarted {
            matrix,
            kernels,
            tests,
            shard,
            reproduce,
        } => Record::RunStarted {
            schema: SCHEMA,
            kmatrix: env!("CARGO_PKG_VERSION").to_owned(),
            matrix: matrix.clone(),
            kernels: kernels.clone(),
            tests: tests.clone(),
            shard: shard.clone(),
            reproduce: reproduce.clone(),
        },
        RunEvent::KernelStarted { kernel, arch } => Record::KernelStarted {
            kernel: kernel.clone(),
            arch: *arch,
        },
        RunEvent::KernelBooted {
            kernel,
            hello,
            start,
        } => Record::KernelBooted {
            kernel: kernel.clone(),
            release: hello.kernel_release.clone(),
            btf: hello.btf,
            restored: *start == Start::Restored,
        },
        RunEvent::Stats {
            kernel,
            test,
            stats,
        } => Record::Stats {
            kernel: kernel.clone(),
            test: test.clone(),
            stats: stats.clone(),
        },
        RunEvent::Probed { kernel, probe } => Record::Probed {
            kernel: kernel.clone(),
            feature: probe.feature.to_string(),
            available: probe.available,
        },
        RunEvent::Notice { kernel, message } => Record::Notice {
            kernel: kernel.clone(),
            message: message.clone(),
        },
        RunEvent::Outcome {
            kernel,
            test,
            outcome,
        } => Record::Outcome {
            kernel: kernel.clone(),
            test: test.clone(),
            // The reporter, which knows the run, adds it to a failure.
            reproduce: None,
            result: outcome.clone(),
        },
        RunEvent::AgentError { kernel, message } => Record::AgentError {
            kernel: kernel.clone(),
            message: message.clone(),
        },
        RunEvent::Splat {
            kernel,
            source,
            lines,
        } => Record::Splat {
            kernel: kernel.clone(),
            source: source.name().to_owned(),
            lines: lines.clone(),
        },
        RunEvent::Output {
            kernel,
            stream,
            data,
        } => Record::Output {
            kernel: kernel.clone(),
            stream: match stream {
                Stream::Stdout => "stdout".into(),
                Stream::Stderr => "stderr".into(),
            },
            text: String::from_utf8_lossy(data).into_owned(),
        },
        RunEvent::Exited { kernel, info } => Record::Exited {
            kernel: kernel.clone(),
            status: exit_status(info),
        },
        RunEvent::KernelFinished { kernel, outcome } => match outcome {
            KernelOutcome::Completed { .. } => Record::KernelFinished {
                kernel: kernel.clone(),
                error: None,
                console_tail: None,
                infrastructure: false,
            },
            KernelOutcome::Failed(err) => Record::KernelFinished {
                kernel: kernel.clone(),
                error: Some(error_chain(err)),
                console_tail: err.console_tail().map(str::to_owned),
                infrastructure: err.is_infrastructure(),
            },
        },
        RunEvent::RunFinished => Record::RunFinished { passed: passed() },
    }
}

/// How a program ended, in words.
pub fn exit_status(info: &ExitInfo) -> String {
    match info {
        ExitInfo::Code(code) => format!("exit code {code}"),
        ExitInfo::Signal {
            signal,
            core_dumped,
        } => {
            let name = nix::sys::signal::Signal::try_from(*signal)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| "unknown".into());
            let core = if *core_dumped { ", core dumped" } else { "" };
            format!("killed by signal {signal} ({name}){core}")
        }
        ExitInfo::SpawnFailed(reason) => format!("could not start: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmatrix_protocol::report::EXIT_SUCCESS_STATUS;

    #[test]
    fn describes_how_programs_end() {
        assert_eq!(exit_status(&ExitInfo::Code(0)), EXIT_SUCCESS_STATUS);
        assert_eq!(exit_status(&ExitInfo::Code(3)), "exit code 3");
        assert_eq!(
            exit_status(&ExitInfo::Signal {
                signal: 11,
                core_dumped: true
            }),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
    }
}
