//! Feature probes, made the way bpftool and libbpf make them: a minimal
//! program or map of the type is loaded or created and the kernel's verdict
//! read (libbpf's `libbpf_probe_bpf_*`). The names come from the kernel's
//! own BTF (`enum bpf_prog_type`, `bpf_map_type`, `bpf_attach_type`,
//! `bpf_func_id`): a name the kernel does not have is a feature it lacks.
//! kfuncs are read from BTF alone: a `FUNC` of that name (tagged
//! `bpf_kfunc` where the kernel's BTF carries such tags).

use std::collections::{BTreeSet, HashSet};
use std::ffi::{c_int, CStr, CString};

use kmatrix_protocol::{Feature, FeatureKind, Frame, Plan, Probe};
use libbpf_sys as sys;

use crate::channel::Channel;

const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_DECL_TAG: u32 = 17;

/// `r0 = 1; exit`: a program every probed type accepts.
const RETURN_ONE: [u64; 2] = [
    u64::from_le_bytes([0xb7, 0, 0, 0, 1, 0, 0, 0]),
    u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
];

/// The names the kernel's BTF gives, each with its value.
#[derive(Default)]
struct Names {
    prog_types: Vec<(String, u32)>,
    map_types: Vec<(String, u32)>,
    attach_types: Vec<(String, u32)>,
    helpers: Vec<(String, u32)>,
    funcs: HashSet<String>,
    /// FUNCs tagged `bpf_kfunc`; `None` where the BTF has no such tags.
    kfuncs: Option<BTreeSet<String>>,
}

impl Names {
    fn of(&self, kind: FeatureKind) -> &[(String, u32)] {
        match kind {
            FeatureKind::Prog => &self.prog_types,
            FeatureKind::Map => &self.map_types,
            FeatureKind::Attach => &self.attach_types,
            FeatureKind::Helper => &self.helpers,
            FeatureKind::Kfunc => &[],
        }
    }

    fn value(&self, kind: FeatureKind, name: &str) -> Option<u32> {
        self.of(kind)
            .iter()
            .find(|(have, _)| have == name)
            .map(|(_, value)| *value)
    }
}

/// Probes what `plan` asks for, one [`Frame::Probed`] each.
pub fn run(plan: &Plan, channel: &mut Channel) {
    if plan.probes.is_empty() && !plan.probe_all {
        return;
    }
    let names = match read_names() {
        Ok(names) => names,
        Err(err) => {
            channel.send(&Frame::AgentError(format!(
                "feature probes: reading the kernel's BTF: {err}"
            )));
            Names::default()
        }
    };
    let mut send = |feature: Feature, available: Option<bool>| {
        channel.send(&Frame::Probed(Probe { feature, available }));
    };
    for feature in &plan.probes {
        send(feature.clone(), probe(&names, feature));
    }
    if !plan.probe_all {
        return;
    }
    for kind in [FeatureKind::Prog, FeatureKind::Map, FeatureKind::Attach] {
        for (name, _) in names.of(kind) {
            let feature = Feature {
                kind,
                name: name.clone(),
                prog: None,
            };
            let available = probe(&names, &feature);
            send(feature, available);
        }
    }
    for (prog, prog_type) in &names.prog_types {
        // Types libbpf cannot probe helpers for (tracing, LSM, struct_ops,
        // extensions) are left out rather than reported as lacking them.
        if unsafe { sys::libbpf_probe_bpf_prog_type(*prog_type, std::ptr::null()) } != 1 {
            continue;
        }
        for (helper, id) in &names.helpers {
            let verdict =
                unsafe { sys::libbpf_probe_bpf_helper(*prog_type, *id, std::ptr::null()) };
            if verdict < 0 {
                break;
            }
            send(
                Feature {
                    kind: FeatureKind::Helper,
                    name: helper.clone(),
                    prog: Some(prog.clone()),
                },
                Some(verdict == 1),
            );
        }
    }
    for kfunc in names.kfuncs.iter().flatten() {
        send(
            Feature {
                kind: FeatureKind::Kfunc,
                name: kfunc.clone(),
                prog: None,
            },
            Some(true),
        );
    }
}

/// Whether the kernel has `feature`; `None` when it cannot be told.
fn probe(names: &Names, feature: &Feature) -> Option<bool> {
    let verdict = |code: c_int| match code {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    };
    if feature.kind == FeatureKind::Kfunc {
        if names.funcs.is_empty() {
            return None;
        }
        return Some(
            names.funcs.contains(&feature.name)
                && names
                    .kfuncs
                    .as_ref()
                    .is_none_or(|tagged| tagged.contains(&feature.name)),
        );
    }
    if names.of(feature.kind).is_empty() {
        return None;
    }
    let Some(value) = names.value(feature.kind, &feature.name) else {
        return Some(false);
    };
    match feature.kind {
        FeatureKind::Prog => {
            verdict(unsafe { sys::libbpf_probe_bpf_prog_type(value, std::ptr::null()) })
        }
        FeatureKind::Map => {
            verdict(unsafe { sys::libbpf_probe_bpf_map_type(value, std::ptr::null()) })
        }
        FeatureKind::Attach => attach(names, &feature.name, value),
        FeatureKind::Helper => {
            let helper = |prog_type: u32| {
                verdict(unsafe { sys::libbpf_probe_bpf_helper(prog_type, value, std::ptr::null()) })
            };
            match feature.prog.as_deref().map(|p| prog_type(names, p)) {
                // The program's own type; types libbpf cannot probe helpers
                // for (tracing, LSM) are asked as kprobes, which share the
                // tracing helpers.
                Some(Some(prog_type)) => helper(prog_type)
                    .or_else(|| names.value(FeatureKind::Prog, "kprobe").and_then(helper)),
                Some(None) => None,
                None => {
                    let answers: Vec<_> =
                        names.prog_types.iter().map(|(_, t)| helper(*t)).collect();
                    if answers.contains(&Some(true)) {
                        Some(true)
                    } else if answers.contains(&Some(false)) {
                        Some(false)
                    } else {
                        None
                    }
                }
            }
        }
        FeatureKind::Kfunc => unreachable!("answered above"),
    }
}

/// The program type `name` names: a type (`xdp`) or a section (`tc`,
/// `fentry/…`) as libbpf reads it.
fn prog_type(names: &Names, name: &str) -> Option<u32> {
    if let Some(value) = names.value(FeatureKind::Prog, name) {
        return Some(value);
    }
    let section = CString::new(name).ok()?;
    let (mut prog_type, mut attach_type) = (0, 0);
    let found = unsafe {
        sys::libbpf_prog_type_by_name(section.as_ptr(), &mut prog_type, &mut attach_type)
    };
    (found == 0).then_some(prog_type)
}

/// Whether attach type `name` (its value `value`) is there: tcx hooks by
/// linking to the loopback device, cgroup and sk_lookup hooks by loading a
/// program that names it (the kernel checks those at load). Others cannot
/// be told without a target to attach to.
fn attach(names: &Names, name: &str, value: u32) -> Option<bool> {
    let prog = match name {
        "tcx_ingress" | "tcx_egress" => "sched_cls",
        "cgroup_inet_ingress" | "cgroup_inet_egress" => "cgroup_skb",
        "cgroup_inet_sock_create"
        | "cgroup_inet_sock_release"
        | "cgroup_inet4_post_bind"
        | "cgroup_inet6_post_bind" => "cgroup_sock",
        "cgroup_getsockopt" | "cgroup_setsockopt" => "cgroup_sockopt",
        "sk_lookup" => "sk_lookup",
        other
            if other.starts_with("cgroup_") && other.contains(['4', '6'])
                || other.starts_with("cgroup_unix_") =>
        {
            "cgroup_sock_addr"
        }
        _ => return None,
    };
    let prog_type = names.value(FeatureKind::Prog, prog)?;
    let linked = name.starts_with("tcx_");
    let fd = load(prog_type, if linked { 0 } else { value });
    if fd < 0 {
        return Some(false);
    }
    let available = if linked {
        let link = unsafe { sys::bpf_link_create(fd, 1, value, std::ptr::null()) };
        if link >= 0 {
            unsafe { libc::close(link) };
        }
        link >= 0
    } else {
        true
    };
    unsafe { libc::close(fd) };
    Some(available)
}

/// Loads [`RETURN_ONE`] as a `prog_type` program for `attach_type`; its fd
/// or a negative error.
fn load(prog_type: u32, attach_type: u32) -> c_int {
    let mut opts: sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_prog_load_opts>() as u64;
    opts.expected_attach_type = attach_type;
    unsafe {
        sys::bpf_prog_load(
            prog_type,
            std::ptr::null(),
            c"GPL".as_ptr(),
            RETURN_ONE.as_ptr().cast(),
            RETURN_ONE.len() as u64,
            &mut opts,
        )
    }
}

/// The names in the kernel's BTF.
fn read_names() -> Result<Names, String> {
    let btf = unsafe { sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut names = Names::default();
    let mut tagged = Vec::new();
    let mut any_tags = false;
    let name_at = |offset: u32| -> String {
        let text = unsafe { sys::btf__name_by_offset(btf, offset) };
        if text.is_null() {
            return String::new();
        }
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    let count = unsafe { sys::btf__type_cnt(btf) };
    let mut func_names = Vec::new();
    for id in 1..count {
        let ty = unsafe { sys::btf__type_by_id(btf, id) };
        if ty.is_null() {
            continue;
        }
        let (name_off, info) = unsafe { ((*ty).name_off, (*ty).info) };
        match (info >> 24) & 0x1f {
            BTF_KIND_ENUM => {
                let (list, prefix) = match name_at(name_off).as_str() {
                    "bpf_prog_type" => (&mut names.prog_types, "BPF_PROG_TYPE_"),
                    "bpf_map_type" => (&mut names.map_types, "BPF_MAP_TYPE_"),
                    "bpf_attach_type" => (&mut names.attach_types, "BPF_"),
                    "bpf_func_id" => (&mut names.helpers, "BPF_FUNC_"),
                    _ => continue,
                };
                // `struct btf_enum { name_off, val }` entries follow the type.
                let entries = unsafe { ty.add(1).cast::<[u32; 2]>() };
                for i in 0..(info & 0xffff) as usize {
                    let [off, value] = unsafe { *entries.add(i) };
                    let full = name_at(off);
                    let Some(rest) = full.strip_prefix(prefix) else {
                        continue;
                    };
                    let rest = rest.to_ascii_lowercase();
                    if rest == "unspec" || full.starts_with("__") {
                        continue;
                    }
                    let name = if prefix == "BPF_FUNC_" {
                        format!("bpf_{rest}")
                    } else {
                        rest
                    };
                    list.push((name, value));
                }
            }
            BTF_KIND_FUNC => func_names.push((id, name_at(name_off))),
            BTF_KIND_DECL_TAG if name_at(name_off) == "bpf_kfunc" => {
                any_tags = true;
                tagged.push(unsafe { (*ty).__bindgen_anon_1.type_ });
            }
            _ => {}
        }
    }
    let tagged: HashSet<u32> = tagged.into_iter().collect();
    if any_tags {
        names.kfuncs = Some(
            func_names
                .iter()
                .filter(|(id, _)| tagged.contains(id))
                .map(|(_, name)| name.clone())
                .collect(),
        );
    }
    names.funcs = func_names.into_iter().map(|(_, name)| name).collect();
    unsafe { sys::btf__free(btf) };
    Ok(names)
}
