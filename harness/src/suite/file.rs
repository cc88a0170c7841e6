//! The suite file as written: serde types, checked in `super`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuite {
    #[serde(default)]
    pub object: Vec<RawObject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObject {
    pub path: String,
    pub loader: Option<Spanned<String>>,
    #[serde(default)]
    pub maps: BTreeMap<Spanned<String>, RawMapSetting>,
    #[serde(default)]
    pub globals: BTreeMap<Spanned<String>, RawBytes>,
    #[serde(default)]
    pub program: Vec<RawProgram>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub name: String,
    pub min_kernel: Option<String>,
    pub max_kernel: Option<String>,
    pub kernels: Option<String>,
    pub arch: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub skip: Vec<RawSkip>,
    #[serde(default)]
    pub allow_splat: Vec<RawAllowSplat>,
    #[serde(default)]
    pub case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowSplat {
    pub kernels: String,
    pub reason: String,
    pub contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSkip {
    pub kernels: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    pub name: String,
    pub input: Option<String>,
    pub input_file: Option<String>,
    pub ctx: Option<String>,
    #[serde(default = "one")]
    pub repeat: u32,
    pub expect_return: Option<RawNumber>,
    pub expect_output: Option<String>,
    #[serde(default)]
    pub before: Vec<RawMapEntry>,
    #[serde(default)]
    pub after: Vec<RawMapEntry>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapEntry {
    pub map: String,
    pub key: RawBytes,
    pub value: RawBytes,
}

/// A return value: a number or a name such as `XDP_DROP`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawNumber {
    Number(i64),
    Name(String),
}

/// Bytes: an integer (little-endian, sized to the map) or a hex string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBytes {
    Number(i64),
    Hex(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapSetting {
    pub max_entries: Option<u32>,
    pub value_size: Option<u32>,
}
