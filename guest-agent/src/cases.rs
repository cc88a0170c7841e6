//! Running one test-run case on a loaded program, whichever loader loaded
//! it: map writes, `BPF_PROG_TEST_RUN` through the raw syscall, map reads.

use std::os::fd::BorrowedFd;

use kmatrix_protocol::{CaseOutcome, CasePlan};

use crate::sys;

/// Room for a program that grows the packet (`bpf_xdp_adjust_head`).
const OUTPUT_HEADROOM: usize = 256;

/// Runs `case` on the program `prog`, finding maps with `map_fd`.
pub fn run<'a>(
    prog: BorrowedFd<'_>,
    case: &CasePlan,
    map_fd: impl Fn(&str) -> Result<BorrowedFd<'a>, String>,
) -> CaseOutcome {
    match try_run(prog, case, map_fd) {
        Ok(outcome) => outcome,
        Err(error) => CaseOutcome::Error(error),
    }
}

fn try_run<'a>(
    prog: BorrowedFd<'_>,
    case: &CasePlan,
    map_fd: impl Fn(&str) -> Result<BorrowedFd<'a>, String>,
) -> Result<CaseOutcome, String> {
    for write in &case.writes {
        let fd = map_fd(&write.map)?;
        sys::map_update(fd, &write.key, &write.value)
            .map_err(|e| format!("writing map `{}`: {e}", write.map))?;
    }

    let mut output = case
        .want_output
        .then(|| vec![0u8; case.data.len() + OUTPUT_HEADROOM]);
    let data = (!case.data.is_empty()).then_some(&case.data[..]);
    let result = sys::prog_test_run(
        prog,
        data,
        output.as_deref_mut(),
        case.ctx.as_deref(),
        // 0 for context kinds, which the kernel runs once.
        case.repeat,
    )
    .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
    if let Some(output) = &mut output {
        output.truncate(result.data_size_out as usize);
    }

    let mut reads = Vec::with_capacity(case.reads.len());
    for read in &case.reads {
        let fd = map_fd(&read.map)?;
        let value = sys::map_lookup(fd, &read.key, read.value_size as usize)
            .map_err(|e| format!("reading map `{}`: {e}", read.map))?;
        reads.push(value);
    }
    Ok(CaseOutcome::Ran {
        retval: result.retval,
        duration_ns: result.duration_ns,
        output,
        reads,
    })
}
