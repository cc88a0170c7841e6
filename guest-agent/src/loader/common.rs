//! What the driver and both loaders share: the loaded [`Instance`], and
//! the verdicts and hints a loader words the same way whichever it is.

use std::os::fd::BorrowedFd;

use kmatrix_protocol::{ProgramStats, Verdict};

/// One program, loaded in its own instance of its object.
pub trait Instance {
    /// The loaded program's fd.
    fn program_fd(&self) -> BorrowedFd<'_>;
    /// The fd of the instance's map `name`, which a suite may read and
    /// write.
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, String>;
    /// What the verifier's log said about the program, where the loader
    /// keeps it.
    fn stats(&self) -> ProgramStats {
        ProgramStats::default()
    }
}

/// Settings that name something the object lacks are the suite's error,
/// checked on the host; here they are the loader's failure.
pub fn missing(what: &str, name: &str) -> Verdict {
    Verdict::Failed {
        error: format!("the object has no {what} `{name}`"),
    }
}

/// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: both loaders give one declared with 0
/// entries one per possible CPU.
pub const PERF_EVENT_ARRAY: u32 = 4;

/// Map types created with `max_entries` 0: the local storages (cgroup,
/// per-CPU cgroup, socket, inode, task, cgroup again).
const NO_ENTRIES: [u32; 6] = [19, 21, 24, 28, 29, 32];

/// Map types created with `value_size` 0: the ring buffers and arenas.
const NO_VALUE: [u32; 3] = [27, 31, 33];

/// Why the kernel may have refused to create map `name` (of type
/// `map_type`), given the sizes its loader created it with: those left 0
/// for a loader to set at run time, which the suite sets.
pub fn unsized_hint(
    name: &str,
    map_type: u32,
    max_entries: u32,
    value_size: u32,
) -> Option<String> {
    let mut unset = Vec::new();
    if max_entries == 0 && map_type != PERF_EVENT_ARRAY && !NO_ENTRIES.contains(&map_type) {
        unset.push(("max_entries", "N"));
    }
    if value_size == 0 && !NO_VALUE.contains(&map_type) {
        unset.push(("value_size", "BYTES"));
    }
    let declared: Vec<_> = unset.iter().map(|(size, _)| format!("{size} 0")).collect();
    let settings: Vec<_> = unset
        .iter()
        .map(|(size, value)| format!("{size} = {value}"))
        .collect();
    let them = match unset.len() {
        0 => return None,
        1 => "it",
        _ => "them",
    };
    Some(format!(
        "map `{name}` is declared with {}, for its loader to size at run time: give {them} in the suite, `maps = {{ {name} = {{ {} }} }}`",
        declared.join(" and "),
        settings.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK_TRACE: u32 = 7;
    const RINGBUF: u32 = 27;
    const TASK_STORAGE: u32 = 29;

    #[test]
    fn the_hint_names_exactly_the_sizes_still_unset() {
        assert_eq!(
            unsized_hint("stacks", STACK_TRACE, 0, 0).as_deref(),
            Some("map `stacks` is declared with max_entries 0 and value_size 0, for its loader to size at run time: give them in the suite, `maps = { stacks = { max_entries = N, value_size = BYTES } }`")
        );
        assert_eq!(
            unsized_hint("stacks", STACK_TRACE, 1024, 0).as_deref(),
            Some("map `stacks` is declared with value_size 0, for its loader to size at run time: give it in the suite, `maps = { stacks = { value_size = BYTES } }`")
        );
        assert_eq!(
            unsized_hint("events", RINGBUF, 0, 0).as_deref(),
            Some("map `events` is declared with max_entries 0, for its loader to size at run time: give it in the suite, `maps = { events = { max_entries = N } }`")
        );
        assert_eq!(unsized_hint("stacks", STACK_TRACE, 1024, 1016), None);
        assert_eq!(unsized_hint("starts", TASK_STORAGE, 0, 8), None);
        assert_eq!(unsized_hint("events", PERF_EVENT_ARRAY, 0, 4), None);
    }
}
