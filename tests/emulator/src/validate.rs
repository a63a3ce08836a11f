//! Create/replace validation, following the rules the real API enforces.

use std::collections::HashSet;

use serde_json::Value;

use crate::api_error::{ApiError, Violation};
use crate::field_ref;

pub(crate) const SIZES: [(&str, &str, &str); 8] = [
    ("SP-1", "1", "2Gi"),
    ("SP-2", "2", "4Gi"),
    ("SP-3", "2", "8Gi"),
    ("SP-4", "4", "16Gi"),
    ("SP-5", "8", "32Gi"),
    ("SP-6", "16", "64Gi"),
    ("SP-7", "32", "128Gi"),
    ("SP-8", "48", "256Gi"),
];

/// Lower-case RFC 1123 label, at most 63 characters.
pub(crate) fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes container name (RFC 1123 label: a leading digit is allowed). StackPath's spec
/// sets no rule for container names; its Go provider passes Kubernetes' names through, so
/// StackPath accepts at least these.
fn is_container_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn push(v: &mut Vec<Violation>, field: impl Into<String>, description: impl Into<String>) {
    v.push(Violation {
        field: field.into(),
        description: description.into(),
    });
}

/// Validate `workload` (the object inside `{"workload": …}`) and return its normalised form
/// (slug filled in from the name when absent). `cities` are the offered city codes.
pub(crate) fn workload(workload: &Value, cities: &[String]) -> Result<Value, ApiError> {
    let mut w = workload.clone();
    let Some(obj) = w.as_object_mut() else {
        return Err(ApiError::invalid_field(
            "workload",
            "a workload object is required",
        ));
    };
    let mut v = Vec::new();
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        push(&mut v, "workload.name", "a name is required");
    } else if name.len() > 63 {
        push(&mut v, "workload.name", "must be at most 63 characters");
    }
    let slug = match obj.get("slug").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => name.to_lowercase(),
    };
    if !is_slug(&slug) {
        push(
            &mut v,
            "workload.slug",
            "must be 1-63 lower-case letters, digits or '-', start with a letter and not end with '-'",
        );
    }
    obj.insert("slug".into(), Value::String(slug));

    let spec = obj.get("spec");
    let claims: HashSet<&str> = spec
        .and_then(|s| s.get("volumeClaimTemplates"))
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| t.get("slug").and_then(Value::as_str))
        .collect();
    let containers = spec.and_then(|s| s.get("containers"));
    let vms = spec.and_then(|s| s.get("virtualMachines"));
    match (
        containers.and_then(Value::as_object),
        vms.and_then(Value::as_object),
    ) {
        (Some(c), _) if !c.is_empty() => {
            for (cname, c) in c {
                container(&mut v, "containers", cname, c, &claims);
            }
        }
        (_, Some(m)) if !m.is_empty() => {}
        _ => push(
            &mut v,
            "workload.spec.containers",
            "at least one container is required",
        ),
    }
    if let Some(init) = spec.and_then(|s| s.get("initContainers")) {
        match init.as_object() {
            Some(m) => {
                for (cname, c) in m {
                    container(&mut v, "initContainers", cname, c, &claims);
                    if containers.and_then(|c| c.get(cname)).is_some() {
                        push(
                            &mut v,
                            format!("workload.spec.initContainers.{cname}"),
                            "an init container cannot have the name of a container",
                        );
                    }
                }
            }
            None => push(&mut v, "workload.spec.initContainers", "must be an object"),
        }
    }
    if let Some(nics) = spec.and_then(|s| s.get("networkInterfaces")) {
        match nics.as_array() {
            Some(a) => {
                for (i, n) in a.iter().enumerate() {
                    if n.get("network")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        push(
                            &mut v,
                            format!("workload.spec.networkInterfaces[{i}].network"),
                            "a network slug is required",
                        );
                    }
                }
            }
            None => push(&mut v, "workload.spec.networkInterfaces", "must be a list"),
        }
    }
    if let Some(vcts) = spec.and_then(|s| s.get("volumeClaimTemplates")) {
        let mut seen = HashSet::new();
        for (i, t) in vcts
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let f = format!("workload.spec.volumeClaimTemplates[{i}]");
            let slug = t.get("slug").and_then(Value::as_str).unwrap_or("");
            if !is_slug(slug) {
                push(&mut v, format!("{f}.slug"), "a valid slug is required");
            } else if !seen.insert(slug.to_string()) {
                push(&mut v, format!("{f}.slug"), "duplicate volume claim slug");
            }
            if t.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                push(
                    &mut v,
                    format!("{f}.spec.resources.requests.storage"),
                    "a storage size is required",
                );
            }
        }
    }

    match obj.get("targets").and_then(Value::as_object) {
        Some(t) if !t.is_empty() => {
            for (tname, target) in t {
                target_check(&mut v, tname, target, cities);
            }
        }
        _ => push(
            &mut v,
            "workload.targets",
            "at least one deployment target is required",
        ),
    }
    if v.is_empty() {
        Ok(w)
    } else {
        Err(ApiError::invalid(v))
    }
}

fn container(v: &mut Vec<Violation>, kind: &str, name: &str, c: &Value, claims: &HashSet<&str>) {
    let f = format!("workload.spec.{kind}.{name}");
    if !is_container_name(name) {
        push(
            v,
            f.clone(),
            "container names must be lower-case RFC 1123 labels",
        );
    }
    if c.get("image")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        push(v, format!("{f}.image"), "an image is required");
    }
    let req = c.pointer("/resources/requests");
    let cpu = req.and_then(|r| r.get("cpu")).and_then(Value::as_str);
    let mem = req.and_then(|r| r.get("memory")).and_then(Value::as_str);
    match (cpu, mem) {
        (Some(cpu), Some(mem)) => {
            if !SIZES.iter().any(|(_, c, m)| *c == cpu && *m == mem) {
                push(
                    v,
                    format!("{f}.resources.requests"),
                    format!(
                        "cpu {cpu} / memory {mem} is not an instance size; use one of {}",
                        SIZES
                            .iter()
                            .map(|(n, c, m)| format!("{n} (cpu {c}, memory {m})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        _ => push(
            v,
            format!("{f}.resources.requests"),
            "cpu and memory requests naming an instance size are required",
        ),
    }
    if c.get("args")
        .is_some_and(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        && c.get("command")
            .is_none_or(|a| a.as_array().is_none_or(|a| a.is_empty()))
    {
        // StackPath cannot append args to an image's entrypoint.
        push(v, format!("{f}.args"), "args require a command");
    }
    if let Some(env) = c.get("env") {
        match env.as_object() {
            Some(m) => {
                for (k, e) in m {
                    if k.is_empty() || k.contains('=') {
                        push(
                            v,
                            format!("{f}.env.{k}"),
                            "invalid environment variable name",
                        );
                    }
                    if !e.is_object() {
                        push(
                            v,
                            format!("{f}.env.{k}"),
                            "must be an object with value, secretValue or valueFrom",
                        );
                    } else if let Some(from) = e.get("valueFrom") {
                        value_from(v, &format!("{f}.env.{k}"), e, from);
                    }
                }
            }
            None => push(v, format!("{f}.env"), "must be an object"),
        }
    }
    if let Some(mounts) = c.get("volumeMounts") {
        let mut paths = HashSet::new();
        for (i, m) in mounts
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let mf = format!("{f}.volumeMounts[{i}]");
            let slug = m.get("slug").and_then(Value::as_str).unwrap_or("");
            if !claims.contains(slug) {
                push(
                    v,
                    format!("{mf}.slug"),
                    format!(
                        "{slug:?} names no volume claim template of this workload (spec.volumeClaimTemplates[].slug)"
                    ),
                );
            }
            let path = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
            if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
                push(
                    v,
                    format!("{mf}.mountPath"),
                    "must be an absolute path without '..' components",
                );
            } else if !paths.insert(path.trim_end_matches('/').to_string()) {
                push(
                    v,
                    format!("{mf}.mountPath"),
                    format!("{path:?} is mounted twice in this container"),
                );
            }
        }
        if !mounts.is_array() {
            push(v, format!("{f}.volumeMounts"), "must be a list");
        }
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_object) {
        for (pname, p) in ports {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                push(v, format!("{f}.ports.{pname}.port"), "must be 1-65535");
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && proto != "TCP"
                && proto != "UDP"
            {
                push(
                    v,
                    format!("{f}.ports.{pname}.protocol"),
                    "must be TCP or UDP",
                );
            }
        }
    }
}

/// `valueFrom`: an `instanceFieldRef` whose `fieldPath` names a field of the instance model.
fn value_from(v: &mut Vec<Violation>, f: &str, env: &Value, from: &Value) {
    if env.get("value").is_some_and(|x| !x.is_null())
        || env.get("secretValue").is_some_and(|x| !x.is_null())
    {
        push(
            v,
            format!("{f}.valueFrom"),
            "valueFrom cannot be combined with value or secretValue",
        );
    }
    let path = from
        .get("instanceFieldRef")
        .and_then(|r| r.get("fieldPath"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let field = format!("{f}.valueFrom.instanceFieldRef.fieldPath");
    if path.is_empty() {
        push(
            v,
            field,
            "an instance field path is required, e.g. .ipAddress or .location.cityCode",
        );
        return;
    }
    if let Err(e) = field_ref::parse(path).and_then(|steps| field_ref::check(&steps)) {
        push(
            v,
            field,
            format!("invalid instance field path {path:?}: {e}"),
        );
    }
}

fn target_check(v: &mut Vec<Violation>, name: &str, t: &Value, cities: &[String]) {
    let f = format!("workload.targets.{name}");
    if !is_slug(name) {
        push(
            v,
            f.clone(),
            "target names must be lower-case RFC 1123 labels",
        );
    }
    let d = t.pointer("/spec/deployments");
    let min = d
        .and_then(|d| d.get("minReplicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let max = d
        .and_then(|d| d.get("maxReplicas"))
        .and_then(Value::as_i64)
        .unwrap_or(min);
    if min < 0 || max < min {
        push(
            v,
            format!("{f}.spec.deployments"),
            "minReplicas must be >= 0 and maxReplicas >= minReplicas",
        );
    }
    let selectors = d
        .and_then(|d| d.get("selectors"))
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    let mut any_city = false;
    for (i, s) in selectors.iter().enumerate() {
        let sf = format!("{f}.spec.deployments.selectors[{i}]");
        if s.get("key").and_then(Value::as_str) != Some("cityCode") {
            continue;
        }
        if s.get("operator").and_then(Value::as_str) != Some("in") {
            push(
                v,
                format!("{sf}.operator"),
                "only the 'in' operator is supported",
            );
        }
        for city in s
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or(&[])
        {
            let c = city.as_str().unwrap_or("");
            any_city = true;
            if !cities.iter().any(|k| k == c) {
                push(
                    v,
                    format!("{sf}.values"),
                    format!("unknown city code {c:?}; offered: {}", cities.join(", ")),
                );
            }
        }
    }
    if !any_city {
        push(
            v,
            format!("{f}.spec.deployments.selectors"),
            "a cityCode selector with at least one city is required",
        );
    }
}

/// `(target name, city code, replica count)` for each deployment, in a stable order.
pub(crate) fn deployments(workload: &Value) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    if let Some(t) = workload.get("targets").and_then(Value::as_object) {
        for (tname, target) in t {
            let d = target.pointer("/spec/deployments");
            let min = d
                .and_then(|d| d.get("minReplicas"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            for s in d
                .and_then(|d| d.get("selectors"))
                .and_then(Value::as_array)
                .map(|a| a.as_slice())
                .unwrap_or(&[])
            {
                if s.get("key").and_then(Value::as_str) != Some("cityCode") {
                    continue;
                }
                for c in s
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.as_slice())
                    .unwrap_or(&[])
                {
                    if let Some(c) = c.as_str() {
                        out.push((tname.clone(), c.to_string(), min));
                    }
                }
            }
        }
    }
    out
}
