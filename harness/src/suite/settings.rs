//! An object's loader settings in a suite: which loader, map sizes, and
//! read-only globals, checked against the object before anything boots.

use std::path::Path;

use kmatrix_protocol::{GlobalSetting, Loader, MapSetting};
use toml::Spanned;

use super::file::RawObject;
use super::SuiteError;
use crate::objects::TestObject;
use crate::toml_file::{line_column, SyntaxError};

/// What a suite says about how to load one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSettings {
    /// The loader, when the suite names one (else `--loader`'s, else aya).
    pub loader: Option<Loader>,
    /// Map sizes.
    pub maps: Vec<MapSetting>,
    /// Read-only globals.
    pub globals: Vec<GlobalSetting>,
}

/// Checks `raw`'s settings against `object`; errors point at the suite
/// (`text`, read from `path`) at file:line:column.
pub fn check(
    object: &TestObject,
    raw: &RawObject,
    text: &str,
    path: &Path,
) -> Result<ObjectSettings, SuiteError> {
    let at = |spanned: &Spanned<String>, message: String| {
        let (line, column) = line_column(text, spanned.span().start);
        SuiteError::Syntax(SyntaxError {
            path: path.to_owned(),
            line,
            column,
            message,
        })
    };
    let loader = match &raw.loader {
        Some(name) => Some(Loader::from_name(name.get_ref()).ok_or_else(|| {
            at(
                name,
                format!(
                    "unknown loader `{}`; use \"aya\" or \"libbpf\"",
                    name.get_ref()
                ),
            )
        })?),
        None => None,
    };
    let mut maps = Vec::new();
    for (name, setting) in &raw.maps {
        if object.map(name.get_ref()).is_none() {
            let known: Vec<_> = object.maps.iter().map(|m| m.name.as_str()).collect();
            return Err(at(
                name,
                format!(
                    "{} has no map `{}`; it has: {}",
                    object.name,
                    name.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        if setting.max_entries == 0 {
            return Err(at(name, "max_entries must be at least 1".into()));
        }
        maps.push(MapSetting {
            name: name.get_ref().clone(),
            max_entries: setting.max_entries,
        });
    }
    let mut globals = Vec::new();
    for (name, value) in &raw.globals {
        let Some(global) = object.globals.iter().find(|g| g.name == *name.get_ref()) else {
            let known: Vec<_> = object.globals.iter().map(|g| g.name.as_str()).collect();
            return Err(at(
                name,
                format!(
                    "{} has no global `{}`; it has: {}",
                    object.name,
                    name.get_ref(),
                    known.join(", ")
                ),
            ));
        };
        if !global.section.starts_with(".rodata") {
            return Err(at(
                name,
                format!(
                    "`{}` is in {}: only read-only globals (`const volatile`, .rodata) are set before loading",
                    global.name, global.section
                ),
            ));
        }
        let value = super::check::sized_bytes(value, global.size)
            .map_err(|e| at(name, format!("global `{}`: {e}", global.name)))?;
        globals.push(GlobalSetting {
            name: global.name.clone(),
            value,
        });
    }
    Ok(ObjectSettings {
        loader,
        maps,
        globals,
    })
}
