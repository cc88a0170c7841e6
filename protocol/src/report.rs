//! What kmatrix reports, as stable types: a test's [`Outcome`], the
//! `--json` [`Record`]s (schema [`SCHEMA`]) and the process's exit codes
//! ([`exit`]).
//!
//! Schema version 4 (version 3 had no `reproduce` in `run-started` and
//! `outcome`; version 2 had no `splat` records nor a failed outcome's
//! `kernel_log`; version 1 had neither `stats` nor `notice` records, nor
//! `restored`), one object per line, each with a `type`:
//!
//! | type | fields |
//! | --- | --- |
//! | `run-started` | `schema` (3), `kmatrix` (version), `matrix` (the selected kernels, before sharding), `kernels` (this run's), `tests` (names, in order; empty for `kmatrix exec`, whose tests appear as they run), `shard` (`"K/N"` or null), `reproduce` (what a reproducing command line repeats: `matrix`, `suite`, `arch`, `loader`, `objects` as the run was given them; for `kmatrix exec`, `matrix`, `arch` and `exec`: `command` (the program and its arguments), `files`, `env`, `no_share`; absent for `kmatrix shell`) |
//! | `kernel-started` | `kernel` |
//! | `kernel-booted` | `kernel`, `release`, `btf`, `restored` (its VM came from a saved state) |
//! | `outcome` | `kernel`, `test`, `reproduce` (on a failure: the `kmatrix test` command line that runs this test alone on this kernel; under `kmatrix exec`, a libtest test's `kmatrix exec` line with the test's name and `--exact`), `result`: `{"outcome": "passed", "detail"}`, `{"outcome": "failed", "reason", "verifier_log", "kernel_log"}` (`kernel_log`: what the kernel logged during the test, when anything), `{"outcome": "expected-failure", "reason"}`, `{"outcome": "skipped", "reason"}` or `{"outcome": "loader-limitation", "reason"}` (the loader could not express the program; the kernel was never asked) |
//! | `stats` | `kernel`, `test` (a program's load test), `stats`: `insns_processed`, `insn_limit`, `max_states_per_insn`, `total_states`, `peak_states`, `stack_depth`, `verification_us`, `xlated_insns`, `jited_bytes`, each null where the kernel did not say |
//! | `agent-error` | `kernel`, `message` |
//! | `splat` | `kernel`, `source` (`kmsg` or `console`), `lines`: a kernel splat outside any test |
//! | `notice` | `kernel`, `message` (a saved VM that could not be restored or saved) |
//! | `output` | `kernel`, `stream` (`stdout` or `stderr`), `text` (what `kmatrix exec`'s program wrote, UTF-8 with replacements) |
//! | `exited` | `kernel`, `status` (how `kmatrix exec`'s program ended) |
//! | `kernel-finished` | `kernel`, `error` (null when it completed), `console_tail`, `infrastructure` (present and true when it failed for the machinery's sake: a download, QEMU, a VM that broke down before the agent ran anything) |
//! | `run-finished` | `passed` |
//!
//! A file without `run-finished`, or with a line that does not parse, is
//! from a run that died or was cut short.

use serde::{Deserialize, Serialize};

/// The schema version written in `run-started`.
pub const SCHEMA: u32 = 4;

/// The process's exit codes, the same for every command.
pub mod exit {
    /// Everything ran and passed.
    pub const PASSED: u8 = 0;
    /// A test failed, or a kernel failed while running them (a panic, a
    /// hang, a splat).
    pub const FAILED: u8 = 1;
    /// The run could not start: bad input (a file, a flag, a suite).
    pub const BAD_INPUT: u8 = 2;
    /// The machinery failed and no test did: a kernel could not be
    /// fetched, QEMU could not start or its VM broke down before the agent
    /// ran anything, an output file or the cache could not be written.
    /// Worth retrying; a regression is not.
    pub const INFRASTRUCTURE: u8 = 3;
    /// Interrupted by Ctrl-C (SIGINT).
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM (what CI sends on cancel, and `timeout`).
    pub const TERMINATED: u8 = 143;
    /// Stopped by SIGHUP (the terminal went away).
    pub const HUNG_UP: u8 = 129;
}

/// The outcome of one test on one kernel. Its JSON form (`outcome` names
/// the variant) is part of the `--json` schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// It did what the suite expects.
    Passed {
        /// A short note (load time, return value and run time).
        detail: String,
    },
    /// It did not.
    Failed {
        /// Why: expected against actual.
        reason: String,
        /// The verifier's log, when the verifier was involved.
        verifier_log: Option<String>,
        /// What the kernel logged during the test, when it logged anything
        /// (a splat's lines, when a splat failed it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel_log: Option<String>,
    },
    /// It failed where the suite says it must.
    ExpectedFailure {
        /// The suite's reason, and what happened.
        reason: String,
    },
    /// It was not run.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The loader cannot express what the program uses, so the kernel was
    /// never asked: not the kernel's verdict, but not a pass either.
    LoaderLimitation {
        /// The loader, what it cannot do, and what to try.
        reason: String,
    },
}

impl Outcome {
    /// Whether this outcome fails the run: a failure, or a program no
    /// kernel was asked about.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed { .. } | Outcome::LoaderLimitation { .. }
        )
    }

    /// This outcome once the kernel printed a splat (`headline`, with its
    /// `kernel_log`) while the test ran: a failure, naming the test's own
    /// failure too.
    pub fn with_splat(self, headline: &str, kernel_log: String) -> Self {
        match self {
            Outcome::Failed {
                reason,
                verifier_log,
                ..
            } => Outcome::Failed {
                reason: format!("{reason}; and the kernel printed a splat: {headline}"),
                verifier_log,
                kernel_log: Some(kernel_log),
            },
            other => Outcome::Failed {
                reason: match other {
                    Outcome::ExpectedFailure { reason } => format!(
                        "the kernel printed a splat: {headline} (the test itself failed as expected: {reason})"
                    ),
                    _ => format!("the kernel printed a splat: {headline}"),
                },
                verifier_log: None,
                kernel_log: Some(kernel_log),
            },
        }
    }

    /// A failure without a verifier log.
    pub fn failed(reason: impl Into<String>) -> Self {
        Outcome::Failed {
            reason: reason.into(),
            verifier_log: None,
            kernel_log: None,
        }
    }
}

/// What a `kmatrix test` or `kmatrix exec` run was given that a command
/// line reproducing one of its failures repeats, as given (paths as the
/// user wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reproduce {
    /// `--matrix`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<String>,
    /// `--suite`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// `--arch`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `--loader`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
    /// The objects given on the command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// `kmatrix exec`'s program, when the run was one (its suite fields
    /// are then empty; absent in files written before exec runs carried
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecReproduce>,
}

/// What a `kmatrix exec` run was given that a reproducing command line
/// repeats, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReproduce {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// `--file`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// `--env`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `--no-share`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_share: bool,
}

/// How an executed program's end reads when it succeeded (`exited`'s
/// `status`).
pub const EXIT_SUCCESS_STATUS: &str = "exit code 0";

/// One line of a `--json` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// The first line.
    RunStarted {
        /// [`SCHEMA`].
        schema: u32,
        /// The kmatrix version that wrote the file.
        kmatrix: String,
        /// Every selected kernel, before sharding, in matrix order.
        matrix: Vec<String>,
        /// The kernels this run covers.
        kernels: Vec<String>,
        /// Test names, in suite order.
        tests: Vec<String>,
        /// `K/N` when sharded.
        shard: Option<String>,
        /// What a command line reproducing one of its failures repeats
        /// (schema 4; absent for `kmatrix shell`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reproduce: Option<Reproduce>,
    },
    /// A kernel's VM is starting.
    KernelStarted {
        /// Its label.
        kernel: String,
        /// Its architecture (absent in files written before arm64 guests:
        /// amd64).
        #[serde(default)]
        arch: crate::Arch,
    },
    /// A kernel booted.
    KernelBooted {
        /// Its label.
        kernel: String,
        /// `uname -r`.
        release: String,
        /// Whether it has BTF.
        btf: bool,
        /// Whether its VM was restored from a saved state (absent in files
        /// written before snapshots: false).
        #[serde(default)]
        restored: bool,
    },
    /// A test's outcome.
    Outcome {
        /// The kernel's label.
        kernel: String,
        /// The test's name.
        test: String,
        /// On a failure, the command line that runs this test alone on this
        /// kernel (schema 4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reproduce: Option<String>,
        /// What happened.
        result: Outcome,
    },
    /// The agent reported a problem outside any test.
    AgentError {
        /// The kernel's label.
        kernel: String,
        /// What it said.
        message: String,
    },
    /// The kernel printed a splat outside any test (schema 3): it fails
    /// the kernel's column.
    Splat {
        /// The kernel's label.
        kernel: String,
        /// Where it was read: `kmsg` (the agent) or `console`.
        source: String,
        /// The splat's lines.
        lines: Vec<String>,
    },
    /// What the kernel said about verifying a program (schema 2): the
    /// verifier's statistics and the program's size, for its load test.
    Stats {
        /// The kernel's label.
        kernel: String,
        /// The program's load test.
        test: String,
        /// Each figure, or `null` where the kernel did not give it.
        stats: crate::ProgramStats,
    },
    /// What a feature probe found on a kernel (`requires`, `kmatrix
    /// probe`).
    Probed {
        /// The kernel's label.
        kernel: String,
        /// The feature, as `requires` names it (`helper:bpf_loop@xdp`).
        feature: String,
        /// Whether the kernel has it; `null` where it could not be told.
        available: Option<bool>,
    },
    /// A line about a kernel's VM (a saved VM that could not be restored
    /// or saved); it does not change any result.
    Notice {
        /// The kernel's label.
        kernel: String,
        /// What happened.
        message: String,
    },
    /// What `kmatrix exec`'s program wrote.
    Output {
        /// The kernel's label.
        kernel: String,
        /// `stdout` or `stderr`.
        stream: String,
        /// The bytes, as UTF-8 with replacements.
        text: String,
    },
    /// How `kmatrix exec`'s program ended.
    Exited {
        /// The kernel's label.
        kernel: String,
        /// E.g. `exit code 3`, `killed by signal 11 (SIGSEGV), core dumped`;
        /// [`EXIT_SUCCESS_STATUS`] when it succeeded.
        status: String,
    },
    /// A kernel is done.
    KernelFinished {
        /// Its label.
        kernel: String,
        /// Why it failed; `None` when it completed.
        error: Option<String>,
        /// The end of its console, when it failed.
        console_tail: Option<String>,
        /// Whether it failed for the machinery's sake (schema 3; absent:
        /// false), not because of anything it ran.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        infrastructure: bool,
    },
    /// The last line.
    RunFinished {
        /// Whether the run passed.
        passed: bool,
    },
}
