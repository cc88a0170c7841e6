//! Download progress on stderr: a bar per file (bytes, rate, ETA) on a
//! terminal, a line per start and end otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::kernels::FetchEvent;

/// Renders [`FetchEvent`]s.
pub struct FetchProgress {
    bars: Option<Mutex<Bars>>,
}

struct Bars {
    multi: MultiProgress,
    by_file: HashMap<(String, String), ProgressBar>,
}

impl Default for FetchProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// A progress callback for a [`crate::kernels::Fetcher`], rendering on
/// stderr.
pub fn on_stderr() -> impl Fn(FetchEvent) + Send + Sync + 'static {
    let progress = FetchProgress::new();
    move |event| progress.report(event)
}

impl FetchProgress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            Mutex::new(Bars {
                multi: MultiProgress::new(),
                by_file: HashMap::new(),
            })
        });
        Self { bars }
    }

    /// Shows one event.
    pub fn report(&self, event: FetchEvent) {
        let bars = self.bars.as_ref().map(|b| b.lock().expect("progress lock"));
        match (bars, event) {
            (Some(mut bars), FetchEvent::Downloading { label, what, bytes }) => {
                let bar = bars.multi.add(ProgressBar::new(bytes.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>8}  {msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("the template parses"),
                );
                bar.set_prefix(label.clone());
                bar.set_message(what.clone());
                bars.by_file.insert((label, what), bar);
            }
            (None, FetchEvent::Downloading { label, what, bytes }) => match bytes {
                Some(bytes) => eprintln!("{label:>8}  FETCH {what} ({:.1} MB)", bytes as f64 / 1e6),
                None => eprintln!("{label:>8}  FETCH {what}"),
            },
            (
                bars,
                FetchEvent::Progress {
                    label, what, done, ..
                },
            ) => {
                if let Some(bar) = bars.as_ref().and_then(|b| b.by_file.get(&(label, what))) {
                    bar.set_position(done);
                }
            }
            (
                mut bars,
                FetchEvent::Downloaded {
                    label,
                    what,
                    bytes,
                    seconds,
                },
            ) => {
                if let Some(bar) = bars
                    .as_mut()
                    .and_then(|b| b.by_file.remove(&(label.clone(), what.clone())))
                {
                    bar.finish_and_clear();
                }
                let line = format!(
                    "{label:>8}  GOT   {what} ({:.1} MB in {seconds:.1} s, sha256 verified)",
                    bytes as f64 / 1e6
                );
                print_line(bars.as_deref(), &line);
            }
            (
                bars,
                FetchEvent::Retrying {
                    label,
                    what,
                    error,
                    wait,
                },
            ) => {
                let line = format!("{label:>8}  RETRY {what} in {} s: {error}", wait.as_secs());
                print_line(bars.as_deref(), &line);
            }
            (bars, FetchEvent::Rebuilding { label }) => {
                let line = format!(
                    "{label:>8}  REPAIR its cache entry is incomplete (a crash or a clean-up): rebuilding it"
                );
                print_line(bars.as_deref(), &line);
            }
            (bars, FetchEvent::Extracted { label, release }) => {
                let line = format!("{label:>8}  READY {release} extracted into the cache");
                print_line(bars.as_deref(), &line);
            }
        }
    }
}

/// A line on stderr, above the bars when there are any.
fn print_line(bars: Option<&Bars>, line: &str) {
    match bars {
        Some(bars) => {
            let _ = bars.multi.println(line);
        }
        None => eprintln!("{line}"),
    }
}
