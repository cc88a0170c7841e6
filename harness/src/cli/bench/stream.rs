//! `kmatrix bench stream`: test-run cases per second, every result
//! streamed to the host against the same cases' results discarded in the
//! guest.

use std::path::PathBuf;
use std::time::Duration;

use super::figures::{Document, Figure};
use super::{ensure, io, prepare, request, scratch, Result, StreamArgs};
use crate::error::{Error, Status};
use crate::error_chain::error_chain;
use crate::event::{KernelOutcome, RunEvent};
use crate::plan::{RunPlan, Tests};
use crate::runner;

/// A minimal Ethernet/IPv4/TCP packet for the cases.
const PACKET: &str = "020000000002020000000001080045000028000040004006000000000a0000010a00000230390016000000000000000050020fff00000000";

pub(super) async fn stream(matrix: Option<PathBuf>, args: StreamArgs) -> Result<Status> {
    if args.cases == 0 {
        return Err(Error::Usage("--cases must be at least 1".into()));
    }
    let dir = scratch()?;
    let object = std::path::absolute(&args.object).map_err(io("reading the object"))?;
    let objects = crate::objects::load(std::slice::from_ref(&object), dir.path())
        .map_err(|e| Error::Plan(e.into()))?;
    let program = objects[0]
        .programs
        .iter()
        .find(|p| p.kind == "xdp")
        .ok_or_else(|| Error::Usage(format!("{} has no XDP program", object.display())))?;

    let mut text = format!(
        "[[object]]\npath = {:?}\n[[object.program]]\nname = {:?}\n",
        object.display().to_string(),
        program.name
    );
    for i in 0..args.cases {
        text += &format!("[[object.program.case]]\nname = \"c{i}\"\ninput = \"{PACKET}\"\n");
    }
    let suite_path = dir.path().join("stream.toml");
    std::fs::write(&suite_path, text).map_err(io("writing the suite"))?;
    let plan = |report_cases| -> Result<RunPlan> {
        let tests = Tests::Suite {
            suite: Some(suite_path.clone()),
            objects: Vec::new(),
            loader: None,
            compare_loaders: false,
            only: Vec::new(),
        };
        let request = request(matrix.clone(), &args.common, tests, report_cases)?;
        Ok(super::noticed(
            prepare(request)?.plan(crate::report::progress::on_stderr()),
        )?)
    };
    let plans = [plan(true)?, plan(false)?];
    let kernel = plans[0].kernels[0].clone();
    plans[0].fetcher.fetch(&kernel).await?;

    println!(
        "stream: kernel {}, {} cases of {} per run, {} runs each",
        kernel.label, args.cases, program.name, args.common.runs
    );
    let (mut streamed, mut discarded) = (Vec::new(), Vec::new());
    for run in 1..=args.common.runs {
        // Which goes first alternates, so that neither has the machine
        // as the other left it every time.
        let order = if run % 2 == 1 { [0, 1] } else { [1, 0] };
        for plan in order.map(|i| &plans[i]) {
            let report_cases = plan.config.report_cases;
            let (seconds, outcomes) = run_cases(plan).await?;
            // One load result per program of the object, and each case's
            // when they are reported.
            let loads = plan.suite.tests.iter().filter(|t| t.case.is_none()).count();
            let expected = if report_cases {
                args.cases + loads
            } else {
                loads
            };
            ensure(outcomes == expected, || {
                format!("{outcomes} results arrived, {expected} expected")
            })?;
            let rate = args.cases as f64 / seconds;
            println!(
                "run {run}: {} {rate:.0} cases/s",
                if report_cases {
                    "streamed "
                } else {
                    "discarded"
                }
            );
            if report_cases {
                &mut streamed
            } else {
                &mut discarded
            }
            .push(rate);
        }
    }
    let streamed = Figure::new("streamed", "cases/s", streamed);
    let discarded = Figure::new("discarded", "cases/s", discarded);
    let ratio = streamed.ratio_to(&discarded);
    println!(
        "streamed to the host:     median {:.0} cases/s",
        streamed.median
    );
    println!(
        "discarded in the guest:   median {:.0} cases/s",
        discarded.median
    );
    println!("ratio: {:.2}", ratio.value);
    if let Some(path) = &args.common.json {
        let mut doc = Document::new("stream", &kernel.label, args.common.runs);
        doc.settings.extend([
            ("arch", kernel.arch.name().into()),
            ("cases", args.cases.into()),
            ("program", program.name.clone().into()),
        ]);
        doc.figures = vec![streamed, discarded];
        doc.ratios = vec![ratio];
        doc.write(path)?;
    }
    Ok(Status::Passed)
}

/// Runs `plan`; returns the seconds from the agent's hello to its last
/// result, and how many outcomes arrived.
async fn run_cases(plan: &RunPlan) -> Result<(f64, usize)> {
    let mut outcomes = 0;
    let mut run = None;
    let mut failure = None;
    runner::run(plan, |event| {
        match event {
            RunEvent::Outcome { .. } => outcomes += 1,
            RunEvent::KernelFinished {
                outcome: KernelOutcome::Completed { run: time, .. },
                ..
            } => run = Some(time),
            RunEvent::KernelFinished {
                outcome: KernelOutcome::Failed(err),
                ..
            } => failure = Some(error_chain(&err)),
            _ => {}
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .unwrap_or_else(|never| match never {});
    if let Some(failure) = failure {
        return Err(Error::Bench(format!("the kernel failed: {failure}")));
    }
    let run: Duration = run.ok_or_else(|| Error::Bench("the kernel did not finish".into()))?;
    Ok((run.as_secs_f64(), outcomes))
}
