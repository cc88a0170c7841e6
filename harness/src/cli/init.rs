//! `kmatrix init`: writes the built-in kernels.toml (to pin or change the
//! matrix; with `--lts`, the unpinned matrix of the kernels fleets run) and
//! a starter suite for the eBPF objects it finds, never over an
//! existing file.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Status};
use crate::kernels::BUILT_IN;

/// The suite file `kmatrix test --suite` is pointed at.
const SUITE: &str = "kmatrix-suite.toml";

/// `kmatrix init --lts`'s kernels.toml: the kernel.org LTS lines and
/// Ubuntu's LTS kernels, unpinned.
pub const LTS: &str = include_str!("lts.toml");

/// How deep objects are looked for.
const MAX_DEPTH: usize = 4;

/// `kmatrix init` arguments.
#[derive(Args)]
pub struct InitArgs {
    /// The directory to write in [default: the current directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write a kernels.toml of the kernel.org LTS lines and Ubuntu's LTS
    /// kernels, unpinned (`kmatrix kernels update` pins them; a run
    /// reports an unpinned entry as not run).
    #[arg(long)]
    lts: bool,
}

/// Writes the files that are not there yet.
pub fn run(args: InitArgs) -> Result<Status, Error> {
    let dir = match args.dir.clone() {
        Some(dir) => dir,
        None => std::env::current_dir().map_err(|source| Error::Write {
            path: ".".into(),
            source,
        })?,
    };
    let mut objects = Vec::new();
    find_objects(&dir, &dir, 0, &mut objects);
    objects.sort();
    let files = [
        (
            "kernels.toml",
            if args.lts { LTS } else { BUILT_IN }.to_owned(),
        ),
        (SUITE, starter_suite(&objects)),
    ];
    let mut wrote = 0;
    for (name, text) in files {
        let path = dir.join(name);
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match created {
            Ok(mut file) => {
                std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| {
                    Error::Write {
                        path: path.clone(),
                        source,
                    }
                })?;
                println!("wrote {}", path.display());
                wrote += 1;
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                println!("{} exists: left as it is", path.display());
            }
            Err(source) => return Err(Error::Write { path, source }),
        }
    }
    if wrote == 0 {
        return Err(Error::Usage(format!(
            "kernels.toml and {SUITE} exist in {}: kmatrix init writes only new files",
            dir.display()
        )));
    }
    println!(
        "next: kmatrix test --suite {SUITE}  (kmatrix kernels update moves the pins to the newest kernels)"
    );
    Ok(Status::Passed)
}

/// eBPF sources and objects (`*.bpf.c`, `*.bpf.o`) below `dir`, relative to
/// `root`; build output and hidden directories are skipped, and a source
/// hides the object built from it.
fn find_objects(root: &Path, dir: &Path, depth: usize, found: &mut Vec<String>) {
    if depth > MAX_DEPTH || dir.join("CACHEDIR.TAG").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            find_objects(root, &path, depth + 1, found);
        } else if name.ends_with(".bpf.c")
            || (name.ends_with(".bpf.o") && !path.with_extension("c").exists())
        {
            if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.display().to_string());
            }
        }
    }
}

/// A suite listing `objects`, or a commented template when there are none.
fn starter_suite(objects: &[String]) -> String {
    let mut text = String::from(
        "# What each eBPF program must do on every kernel (`kmatrix test --suite kmatrix-suite.toml`).\n\
         #\n\
         # Each [[object]] names an object (.o) or C source (.c, built with clang)\n\
         # relative to this file. Programs not listed must load on every kernel.\n\
         # Per program ([[object.program]] with its `name`):\n\
         #   min_kernel = \"5.17\", reason = \"...\"   where it must load; elsewhere the\n\
         #                                         verifier must reject it\n\
         #   [[object.program.case]]               a BPF_PROG_TEST_RUN case: input (hex),\n\
         #                                         expect_return (a number or XDP_DROP, ...)\n\
         # See the README's \"Suites\" section for everything else.\n",
    );
    if objects.is_empty() {
        text.push_str(
            "\n# No *.bpf.c or *.bpf.o found; for example:\n\
             #\n\
             # [[object]]\n\
             # path = \"src/bpf/probe.bpf.c\"\n\
             #\n\
             # [[object.program]]\n\
             # name = \"probe\"\n",
        );
    }
    for object in objects {
        text.push_str(&format!("\n[[object]]\npath = \"{object}\"\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_both_files_with_the_objects_found_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/bpf")).unwrap();
        std::fs::create_dir_all(dir.path().join("target/bpf")).unwrap();
        std::fs::write(dir.path().join("target/CACHEDIR.TAG"), "").unwrap();
        std::fs::write(dir.path().join("target/bpf/built.bpf.o"), "").unwrap();
        std::fs::write(dir.path().join("src/bpf/probe.bpf.c"), "").unwrap();
        std::fs::write(dir.path().join("src/bpf/probe.bpf.o"), "").unwrap();
        std::fs::write(dir.path().join("src/bpf/prebuilt.bpf.o"), "").unwrap();
        let args = || InitArgs {
            dir: Some(dir.path().to_owned()),
            lts: false,
        };
        assert_eq!(run(args()).unwrap(), Status::Passed);
        let kernels = std::fs::read_to_string(dir.path().join("kernels.toml")).unwrap();
        assert_eq!(kernels, BUILT_IN);
        let suite = std::fs::read_to_string(dir.path().join(SUITE)).unwrap();
        assert!(
            suite.contains("path = \"src/bpf/prebuilt.bpf.o\"\n"),
            "{suite}"
        );
        assert!(
            suite.contains("path = \"src/bpf/probe.bpf.c\"\n"),
            "{suite}"
        );
        assert!(!suite.contains("probe.bpf.o"), "{suite}");
        assert!(!suite.contains("target/"), "{suite}");
        let parsed: toml::Value = toml::from_str(&suite).unwrap();
        assert_eq!(parsed["object"].as_array().unwrap().len(), 2);

        std::fs::write(dir.path().join(SUITE), "mine").unwrap();
        let err = run(args()).unwrap_err();
        assert!(err.to_string().contains("writes only new files"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SUITE)).unwrap(),
            "mine"
        );
    }

    #[test]
    fn the_lts_matrix_parses_unpinned_and_a_range_selects_across_sources() {
        let dir = tempfile::tempdir().unwrap();
        let args = InitArgs {
            dir: Some(dir.path().to_owned()),
            lts: true,
        };
        assert_eq!(run(args).unwrap(), Status::Passed);
        let path = dir.path().join("kernels.toml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), LTS);
        let matrix = crate::kernels::Matrix::load(&path).unwrap();
        assert!(matrix.kernels.iter().all(|k| !k.is_pinned()));
        let selection: crate::kernels::Selection = "5.4..6.8".parse().unwrap();
        let labels: Vec<_> = selection
            .apply(&matrix.kernels)
            .unwrap()
            .into_iter()
            .map(|k| k.label.as_str())
            .collect();
        assert_eq!(
            labels,
            [
                "5.4",
                "5.10",
                "5.15",
                "6.1",
                "6.6",
                "ubuntu-5.15",
                "ubuntu-6.8"
            ]
        );
    }
}
