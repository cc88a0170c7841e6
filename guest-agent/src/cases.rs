//! Running one test-run case: map writes, `BPF_PROG_TEST_RUN`, map reads.

use std::os::fd::{AsFd, BorrowedFd};

use aya::programs::{Program, TestRun, TestRunOptions, TestRunResult};
use kmatrix_protocol::{CaseOutcome, CasePlan, TestRunKind};

use crate::sys;

/// Room for a program that grows the packet (`bpf_xdp_adjust_head`).
const OUTPUT_HEADROOM: usize = 256;

/// Runs `case` on `program` as the kind table says its kind runs (packet
/// kinds through aya's `TestRun`, the others through the raw syscall),
/// finding maps with `map_fd`.
pub fn run<'a>(
    program: &Program,
    kind: Option<TestRunKind>,
    case: &CasePlan,
    map_fd: impl Fn(&str) -> Result<BorrowedFd<'a>, String>,
) -> CaseOutcome {
    match try_run(program, kind, case, map_fd) {
        Ok(outcome) => outcome,
        Err(error) => CaseOutcome::Error(error),
    }
}

fn try_run<'a>(
    program: &Program,
    kind: Option<TestRunKind>,
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
    let opts = TestRunOptions {
        data_in: Some(&case.data),
        data_out: output.as_deref_mut(),
        ctx_in: case.ctx.as_deref(),
        repeat: case.repeat.max(1),
        ..TestRunOptions::default()
    };
    let (retval, duration_ns) = if kind.is_some_and(TestRunKind::takes_packet) {
        let result =
            test_run(program, opts).ok_or("the program's kind has no packet test run in aya")??;
        if let Some(output) = &mut output {
            output.truncate(result.data_size_out as usize);
        }
        let ns = result.duration.as_nanos().min(u32::MAX as u128) as u32;
        (result.return_value, ns)
    } else {
        // Context kinds (raw tracepoints, tracing, sk_lookup): the raw
        // syscall, with what the case gives.
        let fd = program.fd().map_err(|e| format!("program fd: {e}"))?;
        let data = (!case.data.is_empty()).then_some(&case.data[..]);
        sys::prog_test_run(fd.as_fd(), data, case.ctx.as_deref(), case.repeat)
            .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?
    };

    let mut reads = Vec::with_capacity(case.reads.len());
    for read in &case.reads {
        let fd = map_fd(&read.map)?;
        let value = sys::map_lookup(fd, &read.key, read.value_size as usize)
            .map_err(|e| format!("reading map `{}`: {e}", read.map))?;
        reads.push(value);
    }
    Ok(CaseOutcome::Ran {
        retval,
        duration_ns,
        output,
        reads,
    })
}

/// `BPF_PROG_TEST_RUN` through aya for the program kinds that take packet
/// data; `None` for the others.
fn test_run(program: &Program, opts: TestRunOptions<'_>) -> Option<Result<TestRunResult, String>> {
    let result = match program {
        Program::Xdp(p) => p.test_run(opts),
        Program::SchedClassifier(p) => p.test_run(opts),
        Program::SocketFilter(p) => p.test_run(opts),
        Program::ReusePortSocketFilter(p) => p.test_run(opts),
        Program::CgroupSkb(p) => p.test_run(opts),
        Program::FlowDissector(p) => p.test_run(opts),
        _ => return None,
    };
    Some(result.map_err(|e| format!("BPF_PROG_TEST_RUN: {}", crate::error::chain(&e))))
}
