//! `kmatrix bench boot --phases`: where a cold `kmatrix test` spends its
//! time. The measured `kmatrix test` writes each kernel's
//! [`KernelTimings`] to a file (its hidden `--timings FILE`); here they
//! become phases that add up to the process's wall time, each one's
//! median over the runs printed beside the best bare boot's total.
//!
//! Host instants and the guest's `CLOCK_BOOTTIME` are different clocks:
//! the two phases that cross between them (QEMU's start to the kernel's,
//! and the port's latency) are what is left of a host interval once the
//! guest's part of it is taken out.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::figures::Figure;
use crate::error::Error;
use crate::event::KernelTimings;

/// One phase: its name in `--json`, its words in the table, and whether
/// it is part of the nearest phase above it that is not a part (not
/// added to the total).
struct Row {
    name: &'static str,
    label: &'static str,
    part: bool,
}

const fn row(name: &'static str, label: &'static str) -> Row {
    Row {
        name,
        label,
        part: false,
    }
}

const fn part(name: &'static str, label: &'static str) -> Row {
    Row {
        name,
        label,
        part: true,
    }
}

/// The phases, in the order they happen; [`split`] gives their values in
/// this order.
const ROWS: [Row; 20] = [
    row("host-process", "host: kmatrix start, plan, report, exit"),
    row("host-fetch", "host: kernel fetch (the cache checked)"),
    row("host-initramfs", "host: initramfs written"),
    row("host-before-qemu", "host: other work before QEMU"),
    row("qemu-spawn", "QEMU: spawned, sockets joined"),
    row("qmp-negotiation", "QMP: greeting and qmp_capabilities"),
    row(
        "qemu-to-kernel",
        "QEMU ready to kernel start (firmware, kernel load)",
    ),
    row("kernel-boot", "kernel: boot to the agent's start"),
    row("agent-modules", "agent: modules loaded"),
    row("agent-mounts", "agent: mounts"),
    row("agent-port", "agent: port opened"),
    row("agent-hello", "agent: hello written"),
    row("input", "input: hello to Start read (files in)"),
    part("input-host", "host: writing the input, from the hello"),
    row("agent-start", "agent: clock and entropy set, Started"),
    row("agent-run", "agent: the run (probes, loads, cases)"),
    part("agent-btf", "parsing the kernel's BTF (aya)"),
    part(
        "agent-loads",
        "loading the programs (loader, verifier, JIT)",
    ),
    row("port-latency", "port and host, hello to Done (the rest)"),
    row("power-off", "ACK, power-off and QEMU's exit"),
];

/// The phase after QEMU's exit (its console judged, the run directory
/// removed), added to [`ROWS`]' host rows last.
const AFTER: Row = row("host-after-qemu", "host: after QEMU's exit");

/// Each phase of one run, in milliseconds, in [`ROWS`] order then
/// [`AFTER`]; `None` where the agent sent no timings. `wall` is the
/// `kmatrix test` process's wall time.
fn split(t: &KernelTimings, wall: Duration) -> Vec<Option<f64>> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // Signed: the clocks differ, and a difference may come out below zero.
    let diff = |a: Duration, b: Duration| ms(a) - ms(b);
    let vm = &t.vm;
    let agent = vm.agent.as_ref();
    let guest =
        |f: &dyn Fn(&kmatrix_protocol::AgentTimings) -> i128| agent.map(|a| f(a) as f64 / 1000.0);
    let us = |v: u64| i128::from(v);
    let host_hello_to_done = diff(vm.done, vm.hello);
    vec![
        Some(diff(wall, t.end)),
        Some(ms(t.fetch)),
        Some(ms(t.initramfs)),
        Some(ms(t.vm_begun) - ms(t.fetch) - ms(t.initramfs)),
        Some(ms(vm.joined)),
        Some(diff(vm.qmp_ready, vm.joined)),
        guest(&|a| us(a.hello)).map(|hello| diff(vm.hello, vm.qmp_ready) - hello),
        guest(&|a| us(a.begun)),
        guest(&|a| us(a.modules) - us(a.begun)),
        guest(&|a| us(a.mounted) - us(a.modules)),
        guest(&|a| us(a.port) - us(a.mounted)),
        guest(&|a| us(a.hello) - us(a.port)),
        guest(&|a| us(a.input) - us(a.hello)),
        vm.input_sent.map(|sent| diff(sent, vm.hello)),
        guest(&|a| us(a.started) - us(a.input)),
        guest(&|a| us(a.done) - us(a.started)),
        guest(&|a| us(a.btf_us)),
        guest(&|a| us(a.loads_us)),
        guest(&|a| us(a.done) - us(a.hello)).map(|inside| host_hello_to_done - inside),
        Some(diff(vm.exited, vm.done)),
        Some(ms(t.end) - ms(t.vm_begun) - ms(vm.exited)),
    ]
}

/// The phases' figures over every run: `runs` holds each run's kernel
/// timings and `kmatrix test`'s wall time. A phase without any sample
/// has a median of NaN (`null` in JSON).
pub fn figures(runs: &[(KernelTimings, Duration)]) -> Vec<Figure> {
    let splits: Vec<_> = runs.iter().map(|(t, wall)| split(t, *wall)).collect();
    ROWS.iter()
        .chain([&AFTER])
        .enumerate()
        .map(|(i, row)| {
            let samples = splits.iter().filter_map(|s| s[i]).collect();
            Figure::new(row.name, "ms", samples)
        })
        .collect()
}

/// The bare boot's own phases from its init's `(begun, modules)` line of
/// each run ([`kmatrix_protocol::floor`]; `None` where it printed none):
/// its kernel's boot to its init, and its module loads, in milliseconds.
pub fn floor_figures(runs: &[Option<(u64, u64)>]) -> Vec<Figure> {
    let runs: Vec<(u64, u64)> = runs.iter().flatten().copied().collect();
    let ms = |us: u64| us as f64 / 1000.0;
    vec![
        Figure::new(
            "bare-kernel-boot",
            "ms",
            runs.iter().map(|&(begun, _)| ms(begun)).collect(),
        ),
        Figure::new(
            "bare-modules",
            "ms",
            runs.iter()
                .map(|&(begun, modules)| ms(modules.saturating_sub(begun)))
                .collect(),
        ),
    ]
}

/// kmatrix's own time beyond the bare boot in each run, each side's
/// kernel boot aside (the kernel's boot varies from run to run by as much
/// as kmatrix's whole share): the cold run's wall time less its kernel's
/// boot, less the bare boot's wall time less its kernel's, in
/// milliseconds. `cold`, `floor` (the bare boots' wall times) and
/// `floor_lines` (their inits' lines) hold run `i` at `i`; a run without
/// both kernel boots gives no sample.
pub fn own_time(
    cold: &[(KernelTimings, Duration)],
    floor: &[Duration],
    floor_lines: &[Option<(u64, u64)>],
) -> Figure {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let samples = cold
        .iter()
        .zip(floor.iter().zip(floor_lines))
        .filter_map(|((t, wall), (floor_wall, floor_line))| {
            let cold_boot = t.vm.agent.as_ref()?.begun as f64 / 1000.0;
            let floor_boot = floor_line.as_ref()?.0 as f64 / 1000.0;
            Some((ms(*wall) - cold_boot) - (ms(*floor_wall) - floor_boot))
        })
        .collect();
    Figure::new("own-beyond-bare", "ms", samples)
}

/// Labels of [`floor_figures`], in its order.
const FLOOR_LABELS: [&str; 2] = [
    "  its kernel: boot to its init",
    "  its init: modules loaded",
];

/// Prints `phases` (from [`figures`]) as a table, their sum, the median
/// wall time of `kmatrix test --no-snapshot` (`cold`) and the best bare
/// boot's (`floor`) with its own phases (`floor_phases`, from
/// [`floor_figures`]) and kmatrix's own time beyond it (`own`, from
/// [`own_time`]), in milliseconds.
pub fn render(
    phases: &[Figure],
    cold: &Figure,
    floor: &Figure,
    floor_phases: &[Figure],
    own: &Figure,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let rows: Vec<&Row> = ROWS.iter().chain([&AFTER]).collect();
    let width = rows.iter().map(|r| r.label.len() + 2).max().unwrap_or(0);
    writeln!(
        out,
        "{:width$}  {:>9}",
        "phase of kmatrix test --no-snapshot", "median ms"
    )?;
    let mut sum = 0.0;
    for (row, figure) in rows.iter().zip(phases) {
        let label = if row.part {
            format!("  {}", row.label)
        } else {
            row.label.to_owned()
        };
        if figure.median.is_nan() {
            writeln!(out, "{label:width$}  {:>9}", "-")?;
            continue;
        }
        if !row.part {
            sum += figure.median;
        }
        writeln!(out, "{label:width$}  {:>9.1}", figure.median)?;
    }
    writeln!(out, "{:width$}  {sum:>9.1}", "sum of the phases' medians")?;
    writeln!(
        out,
        "{:width$}  {:>9.1}",
        "kmatrix test --no-snapshot, median",
        cold.median * 1000.0
    )?;
    writeln!(
        out,
        "{:width$}  {:>9.1}",
        "best bare boot, median",
        floor.median * 1000.0
    )?;
    for (label, figure) in FLOOR_LABELS.iter().zip(floor_phases) {
        if figure.median.is_nan() {
            writeln!(out, "{label:width$}  {:>9}", "-")?;
        } else {
            writeln!(out, "{label:width$}  {:>9.1}", figure.median)?;
        }
    }
    if !own.median.is_nan() {
        let floor_ms = floor.median * 1000.0;
        writeln!(
            out,
            "kmatrix's own time beyond the bare boot, each side's kernel boot aside: median {:.1} ms, {:.2}x the bare boot",
            own.median,
            (floor_ms + own.median) / floor_ms
        )?;
    }
    Ok(())
}

/// What `kmatrix test --timings FILE` writes: each completed kernel's
/// timings.
#[derive(Serialize, Deserialize)]
struct TimingsFile {
    kernels: Vec<KernelTimed>,
}

#[derive(Serialize, Deserialize)]
struct KernelTimed {
    kernel: String,
    timings: KernelTimings,
}

/// Writes `kernels`' timings to `path` (`kmatrix test --timings`).
pub fn write_timings(path: &Path, kernels: &[(String, KernelTimings)]) -> Result<(), Error> {
    let file = TimingsFile {
        kernels: kernels
            .iter()
            .map(|(kernel, timings)| KernelTimed {
                kernel: kernel.clone(),
                timings: timings.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&file).expect("timings serialize");
    std::fs::write(path, json).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// The timings of `kernel` in the file `kmatrix test --timings` wrote.
pub fn read_timings(path: &Path, kernel: &str) -> Result<KernelTimings, Error> {
    let bad = |why: String| Error::Bench(format!("reading {}: {why}", path.display()));
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file: TimingsFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    file.kernels
        .into_iter()
        .find(|k| k.kernel == kernel)
        .map(|k| k.timings)
        .ok_or_else(|| bad(format!("no timings of kernel {kernel}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmTimings;
    use kmatrix_protocol::AgentTimings;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A cold run of 2 s: each phase a distinct, known length.
    fn timings(agent: bool) -> (KernelTimings, Duration) {
        let t = KernelTimings {
            fetch: ms(3),
            initramfs: ms(40),
            vm_begun: ms(50),
            vm: VmTimings {
                joined: ms(30),
                qmp_ready: ms(35),
                // 100 ms before the kernel starts, whose agent says hello
                // 900 ms in.
                hello: ms(1035),
                saved: None,
                input_sent: Some(ms(1045)),
                started: ms(1100),
                done: ms(1600),
                acked: ms(1601),
                exited: ms(1700),
                agent: agent.then_some(AgentTimings {
                    begun: 800_000,
                    modules: 870_000,
                    mounted: 880_000,
                    port: 895_000,
                    hello: 900_000,
                    input: 960_000,
                    started: 962_000,
                    done: 1_450_000,
                    btf_us: 120_000,
                    loads_us: 300_000,
                }),
            },
            end: ms(1760),
        };
        (t, ms(2000))
    }

    fn medians(figures: &[Figure]) -> Vec<(&'static str, f64)> {
        figures
            .iter()
            .map(|f| (f.name, (f.median * 1000.0).round() / 1000.0))
            .collect()
    }

    #[test]
    fn a_run_splits_into_phases_that_add_up_to_its_wall_time() {
        let figures = figures(&[timings(true)]);
        let got = medians(&figures);
        assert_eq!(
            got,
            [
                ("host-process", 240.0),
                ("host-fetch", 3.0),
                ("host-initramfs", 40.0),
                ("host-before-qemu", 7.0),
                ("qemu-spawn", 30.0),
                ("qmp-negotiation", 5.0),
                ("qemu-to-kernel", 100.0),
                ("kernel-boot", 800.0),
                ("agent-modules", 70.0),
                ("agent-mounts", 10.0),
                ("agent-port", 15.0),
                ("agent-hello", 5.0),
                ("input", 60.0),
                ("input-host", 10.0),
                ("agent-start", 2.0),
                ("agent-run", 488.0),
                ("agent-btf", 120.0),
                ("agent-loads", 300.0),
                ("port-latency", 15.0),
                ("power-off", 100.0),
                ("host-after-qemu", 10.0),
            ]
        );
        let rows = ROWS.iter().chain([&AFTER]);
        let sum: f64 = rows
            .zip(&figures)
            .filter(|(row, _)| !row.part)
            .map(|(_, f)| f.median)
            .sum();
        assert!((sum - 2000.0).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn the_median_is_taken_per_phase_and_a_run_without_the_agents_timings_counts_only_on_the_host()
    {
        let (mut slow, wall) = timings(true);
        slow.fetch = ms(9);
        let (quick, _) = timings(false);
        let mut third = timings(true).0;
        third.fetch = ms(5);
        let figures = figures(&[(slow, wall), (quick, wall), (third, wall)]);
        let fetch = &figures[1];
        assert_eq!(fetch.samples, [9.0, 3.0, 5.0]);
        assert_eq!(fetch.median, 5.0);
        let kernel_boot = &figures[7];
        assert_eq!(kernel_boot.samples.len(), 2);
    }

    #[test]
    fn the_table_lists_every_phase_its_sum_and_the_floor() {
        let figures = figures(&[timings(true)]);
        let cold = Figure::new("cold", "s", vec![2.0]);
        let floor = Figure::new("bare-boot", "s", vec![0.95]);
        let mut out = Vec::new();
        let floor_phases = floor_figures(&[
            Some((780_000, 850_000)),
            Some((800_000, 860_000)),
            None,
            Some((790_000, 900_000)),
        ]);
        let own = Figure::new("own-beyond-bare", "ms", vec![95.0]);
        render(&figures, &cold, &floor, &floor_phases, &own, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{text}"))
                .split_whitespace()
                .last()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("kernel: boot to the agent's start"), "800.0");
        assert_eq!(line("  parsing the kernel's BTF (aya)"), "120.0");
        assert_eq!(
            line("  loading the programs (loader, verifier, JIT)"),
            "300.0"
        );
        assert_eq!(line("sum of the phases' medians"), "2000.0");
        assert_eq!(line("kmatrix test --no-snapshot, median"), "2000.0");
        assert_eq!(line("best bare boot, median"), "950.0");
        assert_eq!(line("  its kernel: boot to its init"), "790.0");
        assert_eq!(line("  its init: modules loaded"), "70.0");
        assert!(
            text.lines().any(|l| l
                == "kmatrix's own time beyond the bare boot, each side's kernel boot aside: median 95.0 ms, 1.10x the bare boot"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + ROWS.len() + 1 + 3 + 2 + 1);

        let without = figures_without_agent();
        let mut out = Vec::new();
        let no_own = own_time(&[], &[], &[]);
        render(
            &without,
            &cold,
            &floor,
            &floor_figures(&[]),
            &no_own,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text
            .lines()
            .any(|l| l.starts_with("  its kernel: boot") && l.ends_with(" -")));
        let boot = text
            .lines()
            .find(|l| l.starts_with("kernel: boot"))
            .unwrap();
        assert!(boot.ends_with(" -"), "{boot}");
    }

    #[test]
    fn kmatrixs_own_time_sets_each_sides_kernel_boot_aside() {
        // Cold: 2000 ms, its kernel booted in 800 ms (the agent began then).
        let (cold, wall) = timings(true);
        let (no_agent, _) = timings(false);
        // 1500 ms, its kernel in 750 ms: kmatrix's own 1200 - 750.
        let floor = [ms(1500), ms(1400), ms(1400)];
        let lines = [Some((750_000, 820_000)), None, Some((700_000, 760_000))];
        let own = own_time(
            &[(cold.clone(), wall), (cold.clone(), wall), (no_agent, wall)],
            &floor,
            &lines,
        );
        assert_eq!(
            own.samples,
            [450.0],
            "only runs with both kernel boots count"
        );
        assert_eq!(own.median, 450.0);
    }

    fn figures_without_agent() -> Vec<Figure> {
        figures(&[timings(false)])
    }

    #[test]
    fn the_timings_file_round_trips_and_names_a_missing_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.json");
        let (t, _) = timings(true);
        write_timings(&path, &[("6.1".into(), t.clone())]).unwrap();
        assert_eq!(read_timings(&path, "6.1").unwrap(), t);
        let err = read_timings(&path, "7.3").unwrap_err().to_string();
        assert!(err.contains("no timings of kernel 7.3"), "{err}");
        let err = read_timings(&dir.path().join("none.json"), "6.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.json"), "{err}");
    }

    #[test]
    fn the_json_document_holds_the_phases_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.json");
        let mut doc = super::super::figures::Document::new("boot", "6.1", 1);
        doc.write(&path).unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(read.get("phases").is_none());
        doc.phases = figures_without_agent();
        doc.write(&path).unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(read["phases"][1]["name"], "host-fetch");
        assert_eq!(read["phases"][1]["unit"], "ms");
        assert_eq!(read["phases"][1]["median"], 3.0);
        assert_eq!(read["phases"][7]["name"], "kernel-boot");
        assert!(read["phases"][7]["median"].is_null());
        assert_eq!(read["phases"][7]["samples"], serde_json::json!([]));
    }
}
