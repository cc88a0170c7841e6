//! What the guest is to do, sent by the host in [`crate::Start`].

use serde::{Deserialize, Serialize};

use crate::kind::TestRunKind;

/// A program to run in the guest. Paths and arguments are bytes, as the
/// kernel takes them: they need not be UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    /// The program (a guest path) and its arguments.
    pub argv: Vec<Vec<u8>>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: Vec<u8>,
    /// Directories made read-only (bind-mounted onto themselves) before it
    /// starts: the host's working directory shared with the guest.
    pub read_only: Vec<Vec<u8>>,
    /// Run it on a pseudo-terminal of this size, as its controlling
    /// terminal (`kmatrix shell`): its output comes as
    /// [`crate::Stream::Stdout`], and [`crate::Input::Stdin`] and
    /// [`crate::Input::Resize`] reach it while it runs. `None`: pipes, no
    /// input.
    pub tty: Option<WindowSize>,
}

/// A terminal's size, in character cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What the guest is to do: which programs of which objects to load, and
/// which test-run cases to run on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Objects, each found in the guest by its index.
    pub objects: Vec<ObjectPlan>,
    /// Whether to send a [`Frame::Case`] per case (false only to measure
    /// what streaming costs).
    pub report_cases: bool,
    /// Whether a program aya loaded is loaded once more by libbpf for the
    /// verifier's figures (`BPF_LOG_STATS`), which aya's own load does
    /// not keep: only where a report shows them.
    pub verifier_stats: bool,
    /// A program to run after the objects, its output streamed back.
    pub exec: Option<ExecPlan>,
    /// Features to probe before anything loads, each answered with a
    /// [`crate::Frame::Probed`].
    pub probes: Vec<crate::Feature>,
    /// Whether to probe every feature the kernel names (`kmatrix probe`).
    pub probe_all: bool,
}

/// The library that loads an object in the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Loader {
    /// aya (Rust).
    #[default]
    Aya,
    /// libbpf (C), what most C and Go projects ship.
    Libbpf,
}

impl Loader {
    /// Every loader.
    pub const ALL: [Loader; 2] = [Loader::Aya, Loader::Libbpf];

    /// Its name, as suites and `--loader` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Loader::Aya => "aya",
            Loader::Libbpf => "libbpf",
        }
    }

    /// The other loader.
    pub fn other(self) -> Self {
        match self {
            Loader::Aya => Loader::Libbpf,
            Loader::Libbpf => Loader::Aya,
        }
    }

    /// The loader named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// Map sizes a loader sets before it creates the map; `None` keeps the
/// object's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSetting {
    /// The map's name.
    pub name: String,
    /// Its `max_entries`.
    pub max_entries: Option<u32>,
    /// Its `value_size`, in bytes.
    pub value_size: Option<u32>,
}

/// A read-only global (`const volatile`) set before loading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalSetting {
    /// The variable's name.
    pub name: String,
    /// Its bytes, sized to the variable.
    pub value: Vec<u8>,
}

/// The work on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPlan {
    /// The object's index (its file name in the guest).
    pub index: u32,
    /// The loader to use.
    pub loader: Loader,
    /// Map sizes, applied by the loader.
    pub maps: Vec<MapSetting>,
    /// Read-only globals, set by the loader.
    pub globals: Vec<GlobalSetting>,
    /// Programs to load, in order; the object's other programs are skipped.
    pub programs: Vec<ProgramPlan>,
}

/// One program to load, and its cases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramPlan {
    /// The program's name.
    pub name: String,
    /// How its cases run (from [`crate::kind::KINDS`]); `None` when it has
    /// none.
    pub test_run: Option<TestRunKind>,
    /// Cases to run once it is loaded.
    pub cases: Vec<CasePlan>,
}

/// One `BPF_PROG_TEST_RUN` invocation and the map work around it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasePlan {
    /// Packet data (`data_in`).
    pub data: Vec<u8>,
    /// Context (`ctx_in`), if any.
    pub ctx: Option<Vec<u8>>,
    /// How many times the kernel runs the program.
    pub repeat: u32,
    /// Whether to send the output packet back.
    pub want_output: bool,
    /// Map entries written before the run.
    pub writes: Vec<MapEntry>,
    /// Map entries read after the run.
    pub reads: Vec<MapRead>,
}

/// A map entry to write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// The map's name.
    pub map: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The value's bytes.
    pub value: Vec<u8>,
}

/// A map entry to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRead {
    /// The map's name.
    pub map: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The map's value size.
    pub value_size: u32,
}
