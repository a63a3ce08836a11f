//! `fieldRef`: the pod's own fields, for env (`env[].valueFrom.fieldRef`) and for
//! downward-API files (`downwardAPI` volume items, projected `downwardAPI` sources).
//!
//! Most fields are known before the workload exists and resolve here. The pod's IP is known
//! only to StackPath, once the instance runs: it becomes an instance field StackPath resolves
//! itself (`valueFrom.instanceFieldRef`). The host IP is the node's InternalIP, the value the
//! pod's status reports as `hostIP`. As in Kubernetes, files take the pod's metadata only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The instance field that holds the pod's IP: the pod's status reports the instance's
/// `ipAddress` as `podIP`. The workload asks for IPv4 only, so `podIPs` is that one address.
pub const POD_IP_FIELD: &str = ".ipAddress";

/// What a field resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Plain(String),
    /// A field of the StackPath instance (`instanceFieldRef.fieldPath`).
    Instance(&'static str),
}

/// Where the field is read: env accepts single labels and annotations only, a downward-API
/// file also the whole maps (as `key="value"` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Env,
    File,
}

/// The fields a pod may refer to, as Kubernetes' API validation lists them.
const ENV_FIELDS: &str = "metadata.name, metadata.namespace, metadata.uid, \
    metadata.labels['…'], metadata.annotations['…'], spec.nodeName, spec.serviceAccountName, \
    status.hostIP, status.hostIPs, status.podIP, status.podIPs";
const FILE_FIELDS: &str = "metadata.name, metadata.namespace, metadata.uid, metadata.labels, \
    metadata.annotations, metadata.labels['…'], metadata.annotations['…']; status and spec \
    fields are env-only";

/// Resolves `path` of `pod`; `host_ip` is the node's InternalIP.
pub fn field(pod: &Pod, path: &str, host_ip: &str, usage: Use) -> Result<FieldValue, String> {
    let m = &pod.metadata;
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let plain = |v: Option<&String>| Ok(FieldValue::Plain(v.cloned().unwrap_or_default()));
    let spec = pod.spec.as_ref();
    // Kubernetes allows only the pod's metadata in files.
    if usage == Use::File && !path.starts_with("metadata.") {
        return Err(unsupported(path, usage));
    }
    match path {
        "metadata.name" => plain(m.name.as_ref()),
        "metadata.namespace" => plain(m.namespace.as_ref()),
        "metadata.uid" => plain(m.uid.as_ref()),
        "spec.nodeName" => plain(spec.and_then(|s| s.node_name.as_ref())),
        // The ServiceAccount admission plugin sets `default` when the pod names none: a raw
        // pod must resolve as the stored one does.
        "spec.serviceAccountName" => Ok(FieldValue::Plain(
            spec.and_then(|s| s.service_account_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
        )),
        "status.hostIP" | "status.hostIPs" => Ok(FieldValue::Plain(host_ip.to_string())),
        "status.podIP" | "status.podIPs" => Ok(FieldValue::Instance(POD_IP_FIELD)),
        "metadata.labels" if usage == Use::File => {
            Ok(FieldValue::Plain(format_map(m.labels.as_ref())))
        }
        "metadata.annotations" if usage == Use::File => {
            Ok(FieldValue::Plain(format_map(m.annotations.as_ref())))
        }
        _ => keyed("metadata.labels['", m.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", m.annotations.as_ref()))
            .map(FieldValue::Plain)
            .ok_or_else(|| unsupported(path, usage)),
    }
}

fn unsupported(path: &str, usage: Use) -> String {
    format!(
        "fieldRef `{path}` is not supported (supported: {})",
        match usage {
            Use::Env => ENV_FIELDS,
            Use::File => FILE_FIELDS,
        }
    )
}

/// A map as the kubelet writes it into a downward-API file: `key="value"` lines in key
/// order, the value quoted as Go's `%q` does, no newline after the last.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`: printable characters as they are, the rest escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"tier": "web", "app": "shop"},
                "annotations": {"note": "a \"quoted\"\nline"}},
            "spec": {"nodeName": "node", "containers": []}
        }))
        .unwrap()
    }

    #[test]
    fn pod_ips_are_instance_fields_and_host_ips_the_nodes() {
        let p = pod();
        for path in ["status.podIP", "status.podIPs"] {
            assert_eq!(
                field(&p, path, "10.0.0.9", Use::Env),
                Ok(FieldValue::Instance(".ipAddress"))
            );
        }
        for path in ["status.hostIP", "status.hostIPs"] {
            assert_eq!(
                field(&p, path, "10.0.0.9", Use::Env),
                Ok(FieldValue::Plain("10.0.0.9".into()))
            );
        }
    }

    #[test]
    fn service_account_defaults_as_admission_does() {
        assert_eq!(
            field(&pod(), "spec.serviceAccountName", "", Use::Env),
            Ok(FieldValue::Plain("default".into()))
        );
    }

    #[test]
    fn whole_maps_only_in_files_and_formatted_as_the_kubelet_does() {
        let p = pod();
        assert!(field(&p, "metadata.labels", "", Use::Env).is_err());
        assert_eq!(
            field(&p, "metadata.labels", "", Use::File),
            Ok(FieldValue::Plain("app=\"shop\"\ntier=\"web\"".into()))
        );
        assert_eq!(
            field(&p, "metadata.annotations", "", Use::File),
            Ok(FieldValue::Plain("note=\"a \\\"quoted\\\"\\nline\"".into()))
        );
        assert_eq!(
            field(&p, "metadata.labels['tier']", "", Use::Env),
            Ok(FieldValue::Plain("web".into()))
        );
        let err = field(&p, "spec.hostname", "", Use::Env).unwrap_err();
        assert!(err.contains("status.podIP"), "{err}");
        let err = field(&p, "status.podIP", "", Use::File).unwrap_err();
        assert!(err.contains("env-only"), "{err}");
    }

    #[test]
    fn go_quote_escapes_what_go_escapes() {
        assert_eq!(go_quote("plain é"), "\"plain é\"");
        assert_eq!(go_quote("\u{1}\t\\"), "\"\\x01\\t\\\\\"");
    }
}
