//! Config volumes: the files a kubelet would write for the pod's `configMap`, `secret`,
//! `downwardAPI`, `projected` and `emptyDir` volumes (kubelet's `MakePayload` and the
//! projected volume's merge): their paths (`items[].path` or the keys), modes (`mode`, else
//! `defaultMode`, else 0644) and content. StackPath has no such volumes; the host writes these
//! files into a volume claim (see [`crate::materialize`]), so their content stays with the host.
//!
//! Bad input fails the pod with the volume and the key named: a missing object (unless
//! optional), a missing key named in `items` (unless optional), a key or path that is not a
//! valid file name, two files on one path, more content than the host can carry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret as K8sSecret, Volume,
};

use super::fields::{self, FieldValue, Use};
use super::resources::{self, ResourceValue, SizeRef};
use super::{Objects, secret_data};
use crate::materialize::MAX_CONTENT_BYTES;
use crate::policy::{ConfigFile, ConfigVolume, ConfigVolumeKind, Violation};

/// Kubernetes' `defaultMode` when unset.
pub const DEFAULT_MODE: u32 = 0o644;
/// Counted per file besides its content: its name and the writer's command for it.
const FILE_OVERHEAD: usize = 64;
/// Kubernetes' `IsConfigMapKey` length limit and the kubelet's path limits.
const MAX_KEY_LEN: usize = 253;
const MAX_PATH_LEN: usize = 4096;
const MAX_NAME_LEN: usize = 255;
/// The volume the ServiceAccount admission plugin adds; its token is meaningless off-cluster.
const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

/// A Secret's bytes: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "*** ({} bytes)", self.0.len())
    }
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Plain(Vec<u8>),
    Secret(SecretBytes),
    /// A figure of the StackPath size the policy chooses (`limits.*` left unset).
    Size(SizeRef),
}

impl Content {
    fn len(&self) -> usize {
        match self {
            Content::Plain(b) => b.len(),
            Content::Secret(b) => b.0.len(),
            Content::Size(_) => 0,
        }
    }
}

/// A file of a config volume, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the volume root.
    pub path: String,
    pub mode: u32,
    pub content: Content,
}

/// A config volume, with its files' content: for the host only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFiles {
    pub name: String,
    pub kind: ConfigVolumeKind,
    pub files: Vec<File>,
}

impl VolumeFiles {
    /// What the policy learns: names, paths and modes, never content.
    pub fn description(&self) -> ConfigVolume {
        ConfigVolume {
            name: self.name.clone(),
            kind: self.kind,
            files: self
                .files
                .iter()
                .map(|f| ConfigFile {
                    path: f.path.clone(),
                    mode: f.mode,
                })
                .collect(),
            bytes: self.files.iter().map(|f| f.content.len() as u64).sum(),
        }
    }
}

/// The files of every config volume of the pod, checked; problems go to `problems`.
pub(super) fn config_volumes(
    pod: &Pod,
    namespace: &str,
    objects: &Objects,
    host_ip: &str,
    problems: &mut Vec<Violation>,
) -> Vec<VolumeFiles> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut budget = Budget::default();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let mut b = Builder {
            pod,
            namespace,
            objects,
            host_ip,
            volume: &v.name,
            path: &path,
            files: BTreeMap::new(),
            problems: Vec::new(),
        };
        let kind = b.volume(v);
        let Builder {
            files,
            problems: mut found,
            ..
        } = b;
        let Some(kind) = kind else {
            problems.append(&mut found);
            continue;
        };
        if found.is_empty() {
            check_paths(&v.name, &path, &files, &mut found);
        }
        if found.is_empty() {
            for (file_path, (file, origin)) in &files {
                if let Err(message) = budget.add(file_path, file.content.len()) {
                    found.push(Violation {
                        path: path.clone(),
                        message: format!("volume `{}`: {origin}: {message}", v.name),
                    });
                    break;
                }
            }
        }
        if found.is_empty() {
            out.push(VolumeFiles {
                name: v.name.clone(),
                kind,
                files: files.into_values().map(|(f, _)| f).collect(),
            });
        } else {
            problems.append(&mut found);
        }
    }
    out
}

/// The content all config volumes of a pod carry, against [`MAX_CONTENT_BYTES`].
#[derive(Default)]
struct Budget {
    used: usize,
}

impl Budget {
    fn add(&mut self, path: &str, len: usize) -> Result<(), String> {
        self.used += len + path.len() + FILE_OVERHEAD;
        if self.used > MAX_CONTENT_BYTES {
            return Err(format!(
                "it brings the content of the pod's config volumes to more than \
                 {MAX_CONTENT_BYTES} bytes ({} KiB), what the host carries into the pod (in \
                 environment variables of the init container that writes the files); put large \
                 content in the image or in a CSI volume",
                MAX_CONTENT_BYTES >> 10
            ));
        }
        Ok(())
    }
}

/// Collects one volume's files by path, each with a phrase naming where it came from.
struct Builder<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    objects: &'a Objects,
    host_ip: &'a str,
    volume: &'a str,
    path: &'a str,
    files: BTreeMap<String, (File, String)>,
    problems: Vec<Violation>,
}

impl Builder<'_> {
    fn problem(&mut self, field: String, message: String) {
        self.problems.push(Violation {
            path: field,
            message: format!("volume `{}`: {message}", self.volume),
        });
    }

    fn add(&mut self, field: &str, file_path: &str, mode: u32, content: Content, origin: String) {
        if let Err(why) = valid_path(file_path) {
            self.problem(
                field.to_string(),
                format!("{origin}: `{file_path}` is not a valid file name ({why})"),
            );
            return;
        }
        if self.files.contains_key(file_path) {
            self.problem(
                field.to_string(),
                format!("{origin}: a second file at `{file_path}`; each path may appear once"),
            );
            return;
        }
        self.files.insert(
            file_path.to_string(),
            (
                File {
                    path: file_path.to_string(),
                    mode,
                    content,
                },
                origin,
            ),
        );
    }

    /// The volume's kind, or `None` when it is no config volume (or the service-account
    /// token's).
    fn volume(&mut self, v: &Volume) -> Option<ConfigVolumeKind> {
        let path = self.path.to_string();
        if let Some(cm) = &v.config_map {
            let mode = self.mode(cm.default_mode, &format!("{path}.configMap.defaultMode"))?;
            self.config_map(
                &format!("{path}.configMap"),
                &cm.name,
                cm.items.as_deref(),
                cm.optional,
                mode,
            );
            return Some(ConfigVolumeKind::ConfigMap);
        }
        if let Some(s) = &v.secret {
            let mode = self.mode(s.default_mode, &format!("{path}.secret.defaultMode"))?;
            self.secret(
                &format!("{path}.secret"),
                s.secret_name.as_deref().unwrap_or_default(),
                s.items.as_deref(),
                s.optional,
                mode,
            );
            return Some(ConfigVolumeKind::Secret);
        }
        if let Some(d) = &v.downward_api {
            let mode = self.mode(d.default_mode, &format!("{path}.downwardAPI.defaultMode"))?;
            self.downward(
                &format!("{path}.downwardAPI"),
                d.items.as_deref().unwrap_or_default(),
                mode,
            );
            return Some(ConfigVolumeKind::DownwardApi);
        }
        if let Some(p) = &v.projected {
            if v.name.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX) {
                return None;
            }
            let mode = self.mode(p.default_mode, &format!("{path}.projected.defaultMode"))?;
            for (i, s) in p.sources.iter().flatten().enumerate() {
                let field = format!("{path}.projected.sources[{i}]");
                if let Some(cm) = &s.config_map {
                    self.config_map(
                        &format!("{field}.configMap"),
                        &cm.name,
                        cm.items.as_deref(),
                        cm.optional,
                        mode,
                    );
                } else if let Some(sec) = &s.secret {
                    self.secret(
                        &format!("{field}.secret"),
                        &sec.name,
                        sec.items.as_deref(),
                        sec.optional,
                        mode,
                    );
                } else if let Some(d) = &s.downward_api {
                    self.downward(
                        &format!("{field}.downwardAPI"),
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                    );
                } else if s.service_account_token.is_some() {
                    // Left out: the workload does not run in the cluster (the policy warns).
                } else {
                    self.problem(
                        field,
                        "this projected source (clusterTrustBundle, podCertificate) is not \
                         supported on StackPath; use configMap, secret or downwardAPI sources"
                            .into(),
                    );
                }
            }
            return Some(ConfigVolumeKind::Projected);
        }
        if v.empty_dir.is_some() {
            return Some(ConfigVolumeKind::EmptyDir);
        }
        None
    }

    fn mode(&mut self, mode: Option<i32>, field: &str) -> Option<u32> {
        match mode {
            None => Some(DEFAULT_MODE),
            Some(m) if (0..=0o777).contains(&m) => Some(m as u32),
            Some(m) => {
                self.problem(
                    field.to_string(),
                    format!("mode {m} is not between 0 and 0777 (511)"),
                );
                None
            }
        }
    }

    fn config_map(
        &mut self,
        field: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: Option<bool>,
        mode: u32,
    ) {
        let Some(cm) = self.objects.config_maps.get(name) else {
            self.missing(field, "ConfigMap", name, optional);
            return;
        };
        let data = config_map_files(cm);
        self.keyed(
            field,
            "ConfigMap",
            name,
            &data,
            items,
            optional,
            mode,
            Content::Plain,
        );
    }

    fn secret(
        &mut self,
        field: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: Option<bool>,
        mode: u32,
    ) {
        let Some(secret) = self.objects.secrets.get(name) else {
            self.missing(field, "Secret", name, optional);
            return;
        };
        let data = secret_files(secret);
        self.keyed(field, "Secret", name, &data, items, optional, mode, |b| {
            Content::Secret(SecretBytes(b))
        });
    }

    fn missing(&mut self, field: &str, kind: &str, name: &str, optional: Option<bool>) {
        // An optional source that is missing gives no files (an empty volume).
        if !optional.unwrap_or(false) {
            let ns = self.namespace;
            self.problem(
                field.to_string(),
                format!(
                    "{kind} `{name}` not found in namespace `{ns}`; create it, or mark the \
                     source optional"
                ),
            );
        }
    }

    /// ConfigMap and Secret files: every key, or the `items` that name keys.
    #[allow(clippy::too_many_arguments)]
    fn keyed(
        &mut self,
        field: &str,
        kind: &str,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
        items: Option<&[KeyToPath]>,
        optional: Option<bool>,
        mode: u32,
        content: impl Fn(Vec<u8>) -> Content,
    ) {
        match items.filter(|i| !i.is_empty()) {
            None => {
                for (key, value) in data {
                    let origin = format!("key `{key}` of {kind} `{name}`");
                    if let Err(why) = valid_key(key) {
                        self.problem(
                            field.to_string(),
                            format!("{origin} is not a valid file name ({why})"),
                        );
                        continue;
                    }
                    self.add(field, key, mode, content(value.clone()), origin);
                }
            }
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ifield = format!("{field}.items[{i}]");
                    let origin = format!("key `{}` of {kind} `{name}`", item.key);
                    let Some(value) = data.get(&item.key) else {
                        if !optional.unwrap_or(false) {
                            self.problem(
                                ifield,
                                format!("{kind} `{name}` has no key `{}`", item.key),
                            );
                        }
                        continue;
                    };
                    let Some(mode) = self.item_mode(item.mode, &ifield, mode) else {
                        continue;
                    };
                    self.add(&ifield, &item.path, mode, content(value.clone()), origin);
                }
            }
        }
    }

    fn item_mode(&mut self, mode: Option<i32>, field: &str, default: u32) -> Option<u32> {
        match mode {
            None => Some(default),
            Some(_) => self.mode(mode, &format!("{field}.mode")),
        }
    }

    fn downward(&mut self, field: &str, items: &[DownwardAPIVolumeFile], mode: u32) {
        for (i, item) in items.iter().enumerate() {
            let ifield = format!("{field}.items[{i}]");
            let Some(mode) = self.item_mode(item.mode, &ifield, mode) else {
                continue;
            };
            let origin = format!("file `{}`", item.path);
            let content = if let Some(f) = &item.field_ref {
                match fields::field(self.pod, &f.field_path, self.host_ip, Use::File) {
                    Ok(FieldValue::Plain(v)) => Content::Plain(v.into_bytes()),
                    // Files take metadata only: nothing StackPath resolves.
                    Ok(FieldValue::Instance(p)) => {
                        self.problem(
                            format!("{ifield}.fieldRef"),
                            format!("{origin}: `{p}` cannot be written into a file"),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.problem(format!("{ifield}.fieldRef"), format!("{origin}: {e}"));
                        continue;
                    }
                }
            } else if let Some(r) = &item.resource_field_ref {
                // In a volume the container must be named: the volume has no container.
                let container = r
                    .container_name
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .and_then(|n| super::container(self.pod, n));
                let Some(container) = container else {
                    self.problem(
                        format!("{ifield}.resourceFieldRef.containerName"),
                        format!(
                            "{origin}: name one of the pod's containers (`{}` is not one)",
                            r.container_name.as_deref().unwrap_or_default()
                        ),
                    );
                    continue;
                };
                match resources::resource(container, r) {
                    Ok(ResourceValue::Plain(v)) => Content::Plain(v.into_bytes()),
                    Ok(ResourceValue::Size(s)) => Content::Size(s),
                    Err(e) => {
                        self.problem(
                            format!("{ifield}.resourceFieldRef"),
                            format!("{origin}: {e}"),
                        );
                        continue;
                    }
                }
            } else {
                self.problem(
                    ifield,
                    format!("{origin} names no source; set fieldRef or resourceFieldRef"),
                );
                continue;
            };
            self.add(
                &format!("{field}.items[{i}].path"),
                &item.path,
                mode,
                content,
                origin,
            );
        }
    }
}

/// `data` then `binaryData` (the kubelet writes both; a key in both ends as binaryData).
fn config_map_files(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        files.insert(k.clone(), v.0.clone());
    }
    files
}

fn secret_files(secret: &K8sSecret) -> BTreeMap<String, Vec<u8>> {
    secret_data(secret)
}

/// Kubernetes' `IsConfigMapKey`: what a key must be to be a file name.
fn valid_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("1 to {MAX_KEY_LEN} characters"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("letters, digits, '-', '_' and '.' only".into());
    }
    if key == "." || key.starts_with("..") {
        return Err("not '.', nor starting with '..'".into());
    }
    Ok(())
}

/// The kubelet's rules for a file's path in a volume (`items[].path`): relative, no `..`
/// element, not starting with `..` (its own bookkeeping names), within length limits.
fn valid_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("longer than {MAX_PATH_LEN} characters"));
    }
    if path.starts_with('/') {
        return Err("absolute; it must be relative to the volume".into());
    }
    if path.starts_with("..") {
        return Err("starts with '..'".into());
    }
    for part in path.split('/') {
        if part == ".." {
            return Err("contains '..'".into());
        }
        if part.len() > MAX_NAME_LEN {
            return Err(format!("a part is longer than {MAX_NAME_LEN} characters"));
        }
        if part.contains('\0') {
            return Err("contains a NUL character".into());
        }
    }
    Ok(())
}

/// A file whose path is also a directory of another (`a` and `a/b`) cannot be written.
fn check_paths(
    volume: &str,
    field: &str,
    files: &BTreeMap<String, (File, String)>,
    problems: &mut Vec<Violation>,
) {
    for path in files.keys() {
        let mut dir = path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if files.contains_key(parent) {
                problems.push(Violation {
                    path: field.to_string(),
                    message: format!(
                        "volume `{volume}`: `{parent}` is both a file and the directory of \
                         `{path}`"
                    ),
                });
                return;
            }
            dir = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::{objects, pod};
    use crate::resolve::{ResolveSettings, resolve};

    fn settings() -> ResolveSettings {
        ResolveSettings {
            host_ip: "192.0.2.7".into(),
            config_volumes: true,
        }
    }

    fn files(v: &VolumeFiles) -> Vec<(String, u32, String)> {
        v.files
            .iter()
            .map(|f| {
                let shown = match &f.content {
                    Content::Plain(b) => String::from_utf8_lossy(b).into_owned(),
                    Content::Secret(b) => format!("secret:{}", String::from_utf8_lossy(&b.0)),
                    Content::Size(_) => "size".into(),
                };
                (f.path.clone(), f.mode, shown)
            })
            .collect()
    }

    fn volumes(spec: serde_json::Value) -> Result<Vec<VolumeFiles>, Vec<Violation>> {
        resolve(&pod(spec), &objects(), &settings()).map(|r| r.config_volumes)
    }

    fn container() -> serde_json::Value {
        serde_json::json!([{"name": "app", "image": "i", "resources": {"limits": {"memory": "1Gi"}}}])
    }

    #[test]
    fn config_map_keys_items_and_modes() {
        let v = volumes(serde_json::json!({"containers": container(), "volumes": [
            {"name": "all", "configMap": {"name": "settings", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "settings", "items": [
                {"key": "mode", "path": "conf/mode.txt", "mode": 0o400},
                {"key": "absent", "path": "x"}
            ], "optional": true}},
            {"name": "missing-optional", "configMap": {"name": "nope", "optional": true}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
        ]}))
        .unwrap();
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["all", "some", "missing-optional", "scratch"]);
        assert_eq!(
            files(&v[0]),
            vec![
                ("level".into(), 0o600, "info".into()),
                ("mode".into(), 0o600, "production".into())
            ]
        );
        assert_eq!(
            files(&v[1]),
            vec![("conf/mode.txt".into(), 0o400, "production".into())]
        );
        assert!(v[2].files.is_empty() && v[3].files.is_empty());
        assert_eq!(v[3].kind, ConfigVolumeKind::EmptyDir);
    }

    #[test]
    fn projected_sources_merge_and_downward_items_resolve() {
        let v = volumes(serde_json::json!({"containers": container(), "volumes": [
            {"name": "merged", "projected": {"defaultMode": 0o640, "sources": [
                {"configMap": {"name": "settings", "items": [{"key": "mode", "path": "mode"}]}},
                {"secret": {"name": "db", "items": [{"key": "password", "path": "db/password", "mode": 0o400}]}},
                {"downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
                    {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}}
                ]}},
                {"serviceAccountToken": {"path": "token"}}
            ]}}
        ]}))
        .unwrap();
        assert_eq!(
            files(&v[0]),
            vec![
                ("cpu".into(), 0o640, "size".into()),
                ("db/password".into(), 0o400, "secret:s3cr3t".into()),
                ("labels".into(), 0o640, "tier=\"web\"".into()),
                ("mem".into(), 0o640, "1024".into()),
                ("mode".into(), 0o640, "production".into()),
            ]
        );
        let d = v[0].description();
        assert_eq!(d.kind, ConfigVolumeKind::Projected);
        assert_eq!(d.files.len(), 5);
    }

    #[test]
    fn bad_input_names_the_volume_and_the_key() {
        let err = volumes(serde_json::json!({"containers": container(), "volumes": [
            {"name": "odd", "configMap": {"name": "odd-keys"}},
            {"name": "gone", "secret": {"secretName": "gone"}},
            {"name": "escape", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "../etc/passwd"}]}},
            {"name": "nokey", "configMap": {"name": "settings", "items": [{"key": "nope", "path": "x"}]}},
            {"name": "twice", "projected": {"sources": [
                {"configMap": {"name": "settings", "items": [{"key": "mode", "path": "a"}]}},
                {"configMap": {"name": "settings", "items": [{"key": "level", "path": "a"}]}}
            ]}}
        ]}))
        .unwrap_err();
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(
            all.contains(
                "volume `odd`: key `has=equals` of ConfigMap `odd-keys` is not a valid file name"
            ),
            "{all}"
        );
        assert!(
            all.contains("volume `gone`: Secret `gone` not found in namespace `default`"),
            "{all}"
        );
        assert!(all.contains("volume `escape`: key `mode` of ConfigMap `settings`: `../etc/passwd` is not a valid file name"), "{all}");
        assert!(
            all.contains("volume `nokey`: ConfigMap `settings` has no key `nope`"),
            "{all}"
        );
        assert!(
            all.contains(
                "volume `twice`: key `level` of ConfigMap `settings`: a second file at `a`"
            ),
            "{all}"
        );
        assert!(!all.contains("s3cr3t"), "{all}");
    }

    #[test]
    fn too_much_content_fails_the_pod_naming_the_key() {
        let big = "x".repeat(MAX_CONTENT_BYTES / 2 + 1);
        let mut objs = objects();
        objs.config_maps.insert(
            "big".into(),
            serde_json::from_value(serde_json::json!({"metadata": {"name": "big"},
                "data": {"a": big, "b": big}}))
            .unwrap(),
        );
        let p = pod(serde_json::json!({"containers": container(), "volumes": [
            {"name": "huge", "configMap": {"name": "big"}}]}));
        let err = resolve(&p, &objs, &settings()).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0]
                .message
                .starts_with("volume `huge`: key `b` of ConfigMap `big`: it brings"),
            "{}",
            err[0].message
        );
    }

    #[test]
    fn skip_mode_reads_no_volume() {
        let p = pod(serde_json::json!({"containers": container(), "volumes": [
            {"name": "gone", "secret": {"secretName": "gone"}}]}));
        let r = resolve(
            &p,
            &objects(),
            &ResolveSettings {
                config_volumes: false,
                ..settings()
            },
        )
        .unwrap();
        assert!(r.config_volumes.is_empty());
    }

    #[test]
    fn secret_bytes_do_not_print() {
        let c = Content::Secret(SecretBytes(b"hunter2".to_vec()));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
