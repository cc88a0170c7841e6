//! The records of a `kmatrix --json` file, and the outcome of a test
//! among them.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The records of the `--json` file at `path`.
pub fn records(path: impl AsRef<Path>) -> Vec<Value> {
    records_as(path)
}

/// The records of the `--json` file at `path`, each read as a `T`.
pub fn records_as<T: DeserializeOwned>(path: impl AsRef<Path>) -> Vec<T> {
    parse(&std::fs::read_to_string(path).unwrap())
}

/// The records of `--json` output, one a line.
pub fn parse<T: DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The outcome record of `test`, if there is one.
pub fn find_outcome<'a>(records: &'a [Value], test: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["type"] == "outcome" && r["test"] == test)
}

/// The outcome record of `test`.
pub fn outcome<'a>(records: &'a [Value], test: &str) -> &'a Value {
    find_outcome(records, test).unwrap_or_else(|| panic!("no outcome for {test} in {records:?}"))
}

/// The kernels the `--json` file at `path` says booted, each with whether
/// its VM was restored, sorted.
pub fn booted(path: impl AsRef<Path>) -> Vec<(String, bool)> {
    let mut kernels: Vec<_> = records(path)
        .iter()
        .filter(|r| r["type"] == "kernel-booted")
        .map(|r| {
            (
                r["kernel"].as_str().unwrap().to_owned(),
                r["restored"] == true,
            )
        })
        .collect();
    kernels.sort();
    kernels
}
