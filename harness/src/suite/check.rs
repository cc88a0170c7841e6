//! Checking a suite entry against its object: every program, map, input
//! file and return value it names must exist and fit.

use std::path::Path;

use kmatrix_protocol::{Arch, CasePlan, Feature, FeatureKind, MapEntry, MapRead, TestRunKind};

use super::file::{self, RawNumber};
use super::{AllowedSplat, CaseSpec, Expectation, ProgramSpec, Skip};
use crate::kernels::Selection;
use crate::objects::TestObject;

/// Map types a suite may read and write (`BPF_MAP_TYPE_HASH`, `ARRAY`,
/// `LRU_HASH`).
const SUITE_MAP_TYPES: [u32; 3] = [1, 2, 9];

/// Checks one program entry against its object. Errors carry the entry's
/// detail (the case) and the message.
pub(super) fn check_program(
    object: &TestObject,
    raw: file::RawProgram,
    dir: &Path,
) -> Result<ProgramSpec, (Option<String>, String)> {
    let info = object.program(&raw.name).ok_or_else(|| {
        let names: Vec<_> = object.programs.iter().map(|p| p.name.as_str()).collect();
        (
            None,
            format!(
                "the object has no such program; it has: {}",
                names.join(", ")
            ),
        )
    })?;
    let selection = |text: &str| -> Result<Selection, (Option<String>, String)> {
        text.parse()
            .map_err(|e: crate::kernels::SelectError| (None, e.to_string()))
    };
    let bound = |text: &str| -> Result<(u32, u32), (Option<String>, String)> {
        match selection(&format!("{text}.."))? {
            Selection::Range {
                from: Some(from), ..
            } => Ok(from),
            _ => Err((
                None,
                format!("`{text}` is not a MAJOR.MINOR kernel version"),
            )),
        }
    };
    let load_on = match (&raw.kernels, &raw.min_kernel, &raw.max_kernel) {
        (None, None, None) => None,
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err((
                None,
                "give either `kernels` or `min_kernel`/`max_kernel`, not both".into(),
            ))
        }
        (Some(kernels), None, None) => Some(selection(kernels)?),
        (None, min, max) => Some(Selection::Range {
            from: min.as_deref().map(bound).transpose()?,
            to: max.as_deref().map(bound).transpose()?,
        }),
    };
    let arch = raw
        .arch
        .as_deref()
        .map(str::parse::<Arch>)
        .transpose()
        .map_err(|e| (None, e))?;
    if arch.is_some() && load_on.is_none() {
        return Err((
            None,
            "`arch` scopes `min_kernel`, `max_kernel` or `kernels` to one architecture; give one of them".into(),
        ));
    }
    let load_on = match (load_on, raw.reason) {
        (Some(kernels), Some(reason)) => Some(Expectation {
            kernels,
            arch,
            reason,
        }),
        (Some(_), None) => {
            return Err((
                None,
                "a kernel constraint needs a `reason`, shown when it fails as expected".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                None,
                "`reason` goes with `min_kernel`, `max_kernel` or `kernels`".into(),
            ))
        }
        (None, None) => None,
    };
    let requires = raw
        .requires
        .iter()
        .map(|text| {
            let mut feature: Feature = text.parse().map_err(|e| (None, e))?;
            // A helper is probed for the program's own type.
            if feature.kind == FeatureKind::Helper && feature.prog.is_none() {
                feature.prog = Some(info.section.clone());
            }
            Ok(feature)
        })
        .collect::<Result<Vec<Feature>, (Option<String>, String)>>()?;
    let skips = raw
        .skip
        .into_iter()
        .map(|skip| {
            Ok(Skip {
                kernels: selection(&skip.kernels)?,
                reason: skip.reason,
            })
        })
        .collect::<Result<Vec<Skip>, (Option<String>, String)>>()?;
    let allowed_splats = raw
        .allow_splat
        .into_iter()
        .map(|allow| {
            Ok(AllowedSplat {
                kernels: selection(&allow.kernels)?,
                reason: allow.reason,
                contains: allow.contains,
            })
        })
        .collect::<Result<Vec<AllowedSplat>, (Option<String>, String)>>()?;
    let mut cases: Vec<CaseSpec> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for raw_case in raw.case {
        let name = raw_case.name.clone();
        if !names.insert(name.clone()) {
            return Err((
                Some(format!("case {name}")),
                "the case name is used twice".into(),
            ));
        }
        if name == "loaders-agree" || name == "load" || name.starts_with("load[") {
            return Err((
                Some(format!("case {name}")),
                "the program's load tests are named so; give the case another name".into(),
            ));
        }
        let Some(kind) = info.test_run else {
            return Err((
                Some(format!("case {name}")),
                format!(
                    "BPF_PROG_TEST_RUN cannot run a {} program; cases need xdp, classifier, socket, cgroup_skb, flow_dissector, raw_tracepoint, sk_lookup, fentry or fexit programs",
                    info.kind
                ),
            ));
        };
        let case = check_case(object, kind, raw_case, dir)
            .map_err(|m| (Some(format!("case {name}")), m))?;
        cases.push(case);
    }
    Ok(ProgramSpec {
        name: info.name.clone(),
        kind: info.kind.clone(),
        test_run: info.test_run,
        load_on,
        requires,
        skips,
        allowed_splats,
        cases,
        load_test: 0,
        other_load_test: None,
        agree_test: None,
    })
}

fn check_case(
    object: &TestObject,
    kind: TestRunKind,
    raw: file::RawCase,
    dir: &Path,
) -> Result<CaseSpec, String> {
    let data = match (raw.input, raw.input_file) {
        (Some(_), _) | (_, Some(_)) if !kind.takes_packet() => {
            return Err(format!(
                "{kind:?} programs run on no packet: drop `input`, give a `ctx` if the program reads one"
            ))
        }
        (None, None) if !kind.takes_packet() => Vec::new(),
        (Some(hex), None) => parse_hex(&hex).map_err(|e| format!("input: {e}"))?,
        (None, Some(file)) => {
            let path = dir.join(&file);
            std::fs::read(&path).map_err(|e| format!("input_file {}: {e}", path.display()))?
        }
        (None, None) => return Err("give the packet as `input` (hex) or `input_file`".into()),
        (Some(_), Some(_)) => return Err("give either `input` or `input_file`, not both".into()),
    };
    if kind.takes_packet() && data.len() < 14 {
        return Err(format!(
            "the input is {} bytes; BPF_PROG_TEST_RUN needs at least an Ethernet header (14 bytes)",
            data.len()
        ));
    }
    let ctx = raw
        .ctx
        .as_deref()
        .map(parse_hex)
        .transpose()
        .map_err(|e| format!("ctx: {e}"))?;
    let expect_return = raw
        .expect_return
        .map(|value| return_value(kind, &value))
        .transpose()?;
    if raw.expect_output.is_some() && !kind.takes_packet() {
        return Err(format!("{kind:?} programs leave no output packet to check"));
    }
    let expect_output = raw
        .expect_output
        .as_deref()
        .map(parse_hex)
        .transpose()
        .map_err(|e| format!("expect_output: {e}"))?;
    let map = |name: &str| -> Result<&crate::objects::MapInfo, String> {
        let map = object.map(name).ok_or_else(|| {
            let names: Vec<_> = object.maps.iter().map(|m| m.name.as_str()).collect();
            format!(
                "the object has no map `{name}`; it has: {}",
                names.join(", ")
            )
        })?;
        if !SUITE_MAP_TYPES.contains(&map.map_type) {
            return Err(format!(
                "map `{name}` has type {}; suites read and write ARRAY, HASH and LRU_HASH maps",
                map.map_type
            ));
        }
        Ok(map)
    };
    let mut writes = Vec::new();
    for entry in &raw.before {
        let info = map(&entry.map)?;
        writes.push(MapEntry {
            map: entry.map.clone(),
            key: sized_bytes(&entry.key, info.key_size)
                .map_err(|e| format!("map `{}` key: {e}", entry.map))?,
            value: sized_bytes(&entry.value, info.value_size)
                .map_err(|e| format!("map `{}` value: {e}", entry.map))?,
        });
    }
    let mut reads = Vec::new();
    let mut expect_maps = Vec::new();
    for entry in &raw.after {
        let info = map(&entry.map)?;
        reads.push(MapRead {
            map: entry.map.clone(),
            key: sized_bytes(&entry.key, info.key_size)
                .map_err(|e| format!("map `{}` key: {e}", entry.map))?,
            value_size: info.value_size,
        });
        expect_maps.push(
            sized_bytes(&entry.value, info.value_size)
                .map_err(|e| format!("map `{}` value: {e}", entry.map))?,
        );
    }
    if raw.repeat == 0 {
        return Err("`repeat` must be at least 1".into());
    }
    // The kernel runs context-only kinds once and refuses a repeat count.
    let repeat = match (kind.takes_packet(), raw.repeat) {
        (true, n) => n,
        (false, 1) => 0,
        (false, _) => return Err(format!("{kind:?} programs run once: drop `repeat`")),
    };
    Ok(CaseSpec {
        name: raw.name,
        plan: CasePlan {
            data,
            ctx,
            repeat,
            want_output: expect_output.is_some(),
            writes,
            reads,
        },
        expect_return,
        expect_output,
        expect_maps,
        test: 0,
    })
}

/// Hex bytes; whitespace, `:` and `_` between digits are ignored.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '_')
        .collect();
    hex::decode(&digits).map_err(|e| format!("`{text}` is not hex bytes ({e})"))
}

/// A key or value as bytes of the map's size: an integer is written
/// little-endian, as the guest's CPU stores it.
pub(super) fn sized_bytes(raw: &file::RawBytes, size: u32) -> Result<Vec<u8>, String> {
    let size = size as usize;
    match raw {
        file::RawBytes::Number(n) => {
            if size > 8 {
                return Err(format!(
                    "the map's entries are {size} bytes; give them as hex"
                ));
            }
            let bytes = n.to_le_bytes();
            let fits = size == 8
                || (*n >= 0 && (*n as u64) >> (size * 8) == 0)
                || (*n < 0 && *n >= -(1i64 << (size * 8 - 1)));
            if !fits {
                return Err(format!("{n} does not fit in {size} bytes"));
            }
            Ok(bytes[..size].to_vec())
        }
        file::RawBytes::Hex(text) => {
            let bytes = parse_hex(text)?;
            if bytes.len() != size {
                return Err(format!("{} bytes given, the map's are {size}", bytes.len()));
            }
            Ok(bytes)
        }
    }
}

/// A return value from the suite: a number, or a name the program's kind
/// uses.
fn return_value(kind: TestRunKind, raw: &RawNumber) -> Result<u32, String> {
    match raw {
        RawNumber::Number(n) => u32::try_from(*n)
            .or_else(|_| i32::try_from(*n).map(|n| n as u32))
            .map_err(|_| format!("expect_return {n} is not a 32-bit value")),
        RawNumber::Name(name) => kind.return_value(name).ok_or_else(|| {
            let known: Vec<_> = kind.return_values().iter().map(|(n, _)| *n).collect();
            if known.is_empty() {
                format!("expect_return `{name}`: give this program kind's return value as a number")
            } else {
                format!("expect_return `{name}` is not one of {}", known.join(", "))
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_values_by_name_or_number() {
        let name = |s: &str| RawNumber::Name(s.into());
        assert_eq!(return_value(TestRunKind::Xdp, &name("XDP_DROP")), Ok(1));
        assert_eq!(return_value(TestRunKind::Tc, &name("TC_ACT_SHOT")), Ok(2));
        assert_eq!(
            return_value(TestRunKind::Tc, &RawNumber::Number(-1)),
            Ok(u32::MAX)
        );
        assert_eq!(
            return_value(TestRunKind::SocketFilter, &RawNumber::Number(64)),
            Ok(64)
        );
        let err = return_value(TestRunKind::Xdp, &name("TC_ACT_SHOT")).unwrap_err();
        assert!(err.contains("is not one of XDP_ABORTED, XDP_DROP"), "{err}");
    }

    #[test]
    fn hex_allows_separators() {
        assert_eq!(
            parse_hex("00 11:22_33\n44").unwrap(),
            [0, 0x11, 0x22, 0x33, 0x44]
        );
        assert!(parse_hex("0g").unwrap_err().contains("not hex bytes"));
    }

    #[test]
    fn integers_are_sized_little_endian() {
        use file::RawBytes::*;
        assert_eq!(
            sized_bytes(&Number(3), 8).unwrap(),
            [3, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(sized_bytes(&Number(0x0102), 4).unwrap(), [2, 1, 0, 0]);
        assert_eq!(sized_bytes(&Number(-1), 2).unwrap(), [0xff, 0xff]);
        assert!(sized_bytes(&Number(256), 1)
            .unwrap_err()
            .contains("does not fit"));
        assert!(sized_bytes(&Hex("0102".into()), 4)
            .unwrap_err()
            .contains("2 bytes given, the map's are 4"));
        assert!(sized_bytes(&Number(1), 16)
            .unwrap_err()
            .contains("give them as hex"));
    }

    #[test]
    fn a_case_name_used_twice_or_a_load_tests_is_refused() {
        let object = crate::suite::tests::object("a.o", &["p"]);
        let raw = |names: &[String]| -> file::RawProgram {
            let packet = "00".repeat(14);
            let mut text = "name = \"p\"\n".to_owned();
            for name in names {
                text += &format!("[[case]]\nname = \"{name}\"\ninput = \"{packet}\"\n");
            }
            toml::from_str(&text).unwrap()
        };
        let mut names: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
        let checked = check_program(&object, raw(&names), Path::new(".")).unwrap();
        assert_eq!(checked.cases.len(), 20_000);
        names.push("c17".into());
        let (detail, message) = check_program(&object, raw(&names), Path::new(".")).unwrap_err();
        assert_eq!(detail.as_deref(), Some("case c17"));
        assert_eq!(message, "the case name is used twice");
        // A load test's name would be two tests' in every report.
        for name in ["load", "load[libbpf]", "loaders-agree"] {
            let (detail, message) =
                check_program(&object, raw(&[name.to_owned()]), Path::new(".")).unwrap_err();
            assert_eq!(detail, Some(format!("case {name}")));
            assert!(message.contains("give the case another name"), "{message}");
        }
    }
}
