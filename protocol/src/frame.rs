//! The frames the guest sends: its hello, each program's verdict, each
//! case's result, what an executed program wrote and how it ended.

use serde::{Deserialize, Serialize};

use crate::plan::Loader;

/// One message from the guest agent.
///
/// Variants are only ever appended so that an older host can still read the
/// version in a newer guest's hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The agent is up and its port is open. Always the first frame.
    Hello(Hello),
    /// The outcome of loading one program.
    Program(ProgramResult),
    /// Something went wrong outside any one program (a module that would not
    /// load, an unreadable object). The agent goes on where it can.
    AgentError(String),
    /// Every result has been sent. Always the last frame.
    Done,
    /// The outcome of one test-run case.
    Case(CaseResult),
    /// Bytes the executed program wrote.
    Output {
        /// Which stream.
        stream: Stream,
        /// What it wrote.
        data: Vec<u8>,
    },
    /// The executed program ended.
    Exit(ExitInfo),
    /// The answer to [`crate::Input::Prepare`]: the agent waits for its
    /// input again, in a state worth saving.
    Prepared,
    /// The answer to [`crate::Input::Start`], before any result: the files
    /// are written and the clock set. A VM restored from a saved state
    /// says which kernel it runs, so that a state saved from another
    /// kernel is caught.
    Started {
        /// `uname -r`.
        kernel_release: String,
    },
    /// What the guest found about one feature it was asked to probe.
    Probed(crate::Probe),
    /// Lines of the kernel's log holding a splat that appeared outside any
    /// load or case (while booting, between tests, during `kmatrix exec`'s
    /// program), sent as soon as the agent read them.
    Splat(Vec<String>),
    /// Where the agent queues encoded frames before writing them out
    /// ([`crate::queue`]), sent once the run started: the guest-physical
    /// address of each of its pages, in order. The host reads the queue
    /// from a guest that stopped answering.
    Queue {
        /// The guest's page size.
        page_size: u32,
        /// Each page's guest-physical address.
        pages: Vec<u64>,
    },
    /// When the agent reached each of its phases, sent just before
    /// [`Frame::Done`] (`kmatrix bench boot --phases` reads them).
    Timings(AgentTimings),
}

/// The agent's phases as instants of the guest's `CLOCK_BOOTTIME` (which
/// starts with the kernel), in microseconds. A VM restored from a saved
/// state keeps the clock of the boot it was saved in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTimings {
    /// The agent began (the kernel ran its init).
    pub begun: u64,
    /// Its filesystems were mounted (after the modules).
    pub mounted: u64,
    /// Its modules were loaded (first).
    pub modules: u64,
    /// Its results port was open.
    pub port: u64,
    /// Its hello was written out.
    pub hello: u64,
    /// The host's `Start` was read: every file before it written (and a
    /// `Prepare` done).
    pub input: u64,
    /// Its `Started` was queued (the clock set, the entropy added).
    pub started: u64,
    /// Its run was over, just before `Done`.
    pub done: u64,
    /// Time the agent spent parsing the kernel's BTF for aya, in `Prepare`
    /// or at the first load that needs it; 0 when none did.
    pub btf_us: u64,
    /// Time the agent spent in the loads that judge its programs: the
    /// loader's work and the kernel's (its verifier and JIT, which TCG
    /// translates at the first load), with [`btf_us`](Self::btf_us) when a
    /// load waited for it; libbpf's second load for verifier statistics
    /// aside.
    pub loads_us: u64,
}

/// One of the executed program's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the executed program ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitInfo {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal {
        /// The signal's number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// It could not be started.
    SpawnFailed(String),
}

/// The outcome of one case, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Index of the object in the plan.
    pub object: u32,
    /// Index of the program in the object's plan.
    pub program: u32,
    /// Index of the case in the program's plan.
    pub case: u32,
    /// What happened.
    pub outcome: CaseOutcome,
    /// What the kernel logged while the case ran (at most
    /// [`crate::splat::MAX_LINES`] lines).
    pub kernel_log: Vec<String>,
}

/// What running a case gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseOutcome {
    /// The program ran.
    Ran {
        /// Its return value.
        retval: u32,
        /// Mean duration of one run, in nanoseconds.
        duration_ns: u32,
        /// The output packet, when asked for.
        output: Option<Vec<u8>>,
        /// The values read after the run, in plan order (`None`: no entry).
        reads: Vec<Option<Vec<u8>>>,
    },
    /// The case could not run (a map write or the test run failed).
    Error(String),
}

/// What the guest tells the host about itself once it is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the guest speaks, [`crate::VERSION`] for this crate.
    pub version: u32,
    /// `uname -r` inside the guest.
    pub kernel_release: String,
    /// Whether the kernel exposes its BTF at `/sys/kernel/btf/vmlinux`.
    pub btf: bool,
    /// Milliseconds from kernel start to the agent's hello (`CLOCK_BOOTTIME`).
    pub boot_ms: u64,
}

/// The outcome of loading one program of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramResult {
    /// Index of the object in the order the host packed them.
    pub object: u32,
    /// The program's name (its function symbol).
    pub program: String,
    /// The ELF section the program lives in, e.g. `xdp` or `fentry/do_unlinkat`.
    pub section: String,
    /// The loader that loaded it.
    pub loader: Loader,
    /// What happened.
    pub verdict: Verdict,
    /// Time spent in the load, in microseconds.
    pub load_us: u64,
    /// What the kernel said about verifying it.
    pub stats: crate::ProgramStats,
    /// What the kernel logged while it was loaded (at most
    /// [`crate::splat::MAX_LINES`] lines).
    pub kernel_log: Vec<String>,
}

/// Whether a program loaded, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The kernel accepted the program.
    Loaded,
    /// `BPF_PROG_LOAD` failed; the verifier said why.
    Rejected {
        /// The syscall's error.
        error: String,
        /// The verifier's log (its tail, when it was very long).
        verifier_log: String,
    },
    /// The program could not be loaded for a reason other than the verifier
    /// (missing attach target, map creation failure, unsupported kernel).
    Failed {
        /// The error, with its causes.
        error: String,
    },
    /// The loader cannot express something the object uses (a section, a
    /// map type, a relocation): the kernel was never asked.
    Unsupported {
        /// The loader.
        loader: Loader,
        /// What it cannot do, with its error.
        error: String,
    },
}
