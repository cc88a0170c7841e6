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
    /// Map sizes (`max_entries`, `value_size`).
    pub maps: Vec<MapSetting>,
    /// Read-only globals.
    pub globals: Vec<GlobalSetting>,
}

impl ObjectSettings {
    /// Sizes `object`'s maps as the loader will create them: with the
    /// suite's `max_entries` and `value_size` where it gives them.
    pub fn size_maps(&self, object: &mut TestObject) {
        for setting in &self.maps {
            if let Some(map) = object.maps.iter_mut().find(|m| m.name == setting.name) {
                map.max_entries = setting.max_entries.unwrap_or(map.max_entries);
                map.value_size = setting.value_size.unwrap_or(map.value_size);
            }
        }
    }
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
        let Some(declared) = object.map(name.get_ref()) else {
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
        };
        let map = |message: String| at(name, format!("map `{}`: {message}", name.get_ref()));
        if setting.max_entries.is_none() && setting.value_size.is_none() {
            return Err(map("give its max_entries, value_size or both".into()));
        }
        if setting.max_entries == Some(0) {
            return Err(map("max_entries must be at least 1".into()));
        }
        if setting.value_size == Some(0) {
            return Err(map("value_size must be at least 1".into()));
        }
        if setting.value_size.is_some() && declared.typed_value {
            return Err(map(format!(
                "its value is declared as a type (`__type(value, …)`) of {} bytes, which \
                 value_size cannot change; value_size sizes maps declared without a value \
                 type (none, or `__uint(value_size, N)`)",
                declared.value_size
            )));
        }
        maps.push(MapSetting {
            name: name.get_ref().clone(),
            max_entries: setting.max_entries,
            value_size: setting.value_size,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MapInfo;

    /// BPF_MAP_TYPE_STACK_TRACE.
    const STACK_TRACE: u32 = 7;

    fn map(name: &str, value_size: u32, typed_value: bool) -> MapInfo {
        MapInfo {
            name: name.into(),
            map_type: STACK_TRACE,
            key_size: 4,
            value_size,
            typed_value,
            max_entries: 0,
        }
    }

    /// An object with `stacks` (no value size), `sized` (`__uint(value_size,
    /// 8)`) and `typed` (`__type(value, u64)`).
    fn object() -> TestObject {
        TestObject {
            path: "stacks.bpf.o".into(),
            name: "stacks.bpf.o".into(),
            data: Vec::new(),
            programs: Vec::new(),
            maps: vec![
                map("sized", 8, false),
                map("stacks", 0, false),
                map("typed", 8, true),
            ],
            globals: Vec::new(),
            aya_error: None,
        }
    }

    fn check_maps(maps: &str) -> Result<ObjectSettings, String> {
        let text = format!("path = \"stacks.bpf.o\"\nmaps = {{ {maps} }}\n");
        let path = Path::new("suite.toml");
        let raw: RawObject =
            crate::toml_file::parse(&text, path).map_err(|e| SuiteError::from(e).to_string())?;
        check(&object(), &raw, &text, path).map_err(|e| e.to_string())
    }

    #[test]
    fn value_size_and_max_entries_are_each_optional() {
        let settings = check_maps(
            "stacks = { max_entries = 1024, value_size = 1016 }, sized = { value_size = 16 }",
        )
        .unwrap();
        assert_eq!(
            settings.maps,
            [
                MapSetting {
                    name: "sized".into(),
                    max_entries: None,
                    value_size: Some(16),
                },
                MapSetting {
                    name: "stacks".into(),
                    max_entries: Some(1024),
                    value_size: Some(1016),
                },
            ]
        );
        let mut object = object();
        settings.size_maps(&mut object);
        let sizes: Vec<_> = object
            .maps
            .iter()
            .map(|m| (m.name.as_str(), m.max_entries, m.value_size))
            .collect();
        assert_eq!(
            sizes,
            [("sized", 0, 16), ("stacks", 1024, 1016), ("typed", 0, 8)]
        );
    }

    #[test]
    fn unusable_sizes_are_refused_at_the_map() {
        for (maps, expected) in [
            (
                "stacks = {}",
                "suite.toml:2:10: map `stacks`: give its max_entries, value_size or both",
            ),
            (
                "stacks = { value_size = 0 }",
                "suite.toml:2:10: map `stacks`: value_size must be at least 1",
            ),
            (
                "stacks = { max_entries = 0, value_size = 8 }",
                "suite.toml:2:10: map `stacks`: max_entries must be at least 1",
            ),
            (
                "typed = { value_size = 16 }",
                "suite.toml:2:10: map `typed`: its value is declared as a type (`__type(value, …)`) of 8 bytes",
            ),
            (
                "stack = { value_size = 16 }",
                "suite.toml:2:10: stacks.bpf.o has no map `stack`; it has: sized, stacks, typed",
            ),
            ("stacks = { key_size = 4 }", "unknown field `key_size`"),
        ] {
            let err = check_maps(maps).unwrap_err();
            assert!(err.contains(expected), "{maps}: {err}");
        }
        // A typed map's entries can still be sized.
        assert!(check_maps("typed = { max_entries = 4 }").is_ok());
    }
}
