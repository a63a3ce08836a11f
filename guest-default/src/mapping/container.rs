//! One Kubernetes container → one StackPath container spec.

use crate::prelude::*;

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;

use serde_json::Value;

use crate::text::Str;

use super::probe::{map_handler, map_probe};
use super::{Findings, Path};
use crate::api::{Context, EnvOrigin, EnvValue, ResolvedEnv};
use crate::input::{Container, ContainerPort, EnvVar, SecurityContext, ValueFrom};
use crate::output::{
    Capabilities, ContainerSpec, EnvVar as OutEnv, InstanceFieldRef, Lifecycle, Port, Resources,
    SecurityContext as OutSecurityContext, ValueFrom as OutValueFrom, VolumeMount,
};
use crate::quantity::Quantity;
use crate::sizing::{SIZES, smallest_fitting};

/// Service-discovery variables Kubernetes injects; meaningless on StackPath.
const DROPPED_ENV: &[&str] = &[
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "KUBERNETES_SERVICE_PORT_HTTPS",
    "KUBERNETES_PORT",
    "KUBERNETES_PORT_443_TCP",
    "KUBERNETES_PORT_443_TCP_ADDR",
    "KUBERNETES_PORT_443_TCP_PORT",
    "KUBERNETES_PORT_443_TCP_PROTO",
];
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Where a volume mounted only in parts (`subPath`) is mounted whole, out of the way.
pub const SUBPATH_ROOT: &str = "/.vk-stackpath/volumes";

/// Maps one container, returning its name and spec. It is taken by value so that its strings
/// move into the output.
pub(crate) fn map_container<'a>(
    mut c: Container<'a>,
    path: &str,
    ctx: &Context,
    skipped_volumes: &BTreeMap<Str<'a>, bool>,
    f: &mut Findings,
) -> Option<(Str<'a>, ContainerSpec<'a>)> {
    let before = f.violations.len();
    if c.name.is_empty() {
        f.violate(format!("{path}.name"), "every container needs a name");
    }
    let image = c.image.take().unwrap_or_default();
    if image.trim().is_empty() {
        f.violate(
            format!("{path}.image"),
            format!("container `{}` has no image; set one", c.name),
        );
    }
    let mut command = c.command.take().unwrap_or_default();
    let args = c.args.take().unwrap_or_default();
    if !args.is_empty() && command.is_empty() {
        f.violate(
            format!("{path}.args"),
            format!(
                "container `{}` has args but no command; StackPath cannot append args to an \
                 image's entrypoint, so set command too",
                c.name
            ),
        );
    }
    let ports = map_ports(&c.ports, path, f);
    let mounts = map_mounts(
        core::mem::take(&mut c.volume_mounts),
        path,
        skipped_volumes,
        f,
    );
    if !mounts.links.is_empty() {
        if command.is_empty() {
            f.violate(
                format!("{path}.volumeMounts"),
                format!(
                    "container `{}` mounts part of a volume (subPath); StackPath mounts whole \
                     volumes only, so the part is linked into place by a shell wrapper around \
                     the command, and the container has no command to wrap: set command (and \
                     args) to the image's entrypoint",
                    c.name
                ),
            );
        } else {
            command = wrap_command(&mounts.links, command);
        }
    }
    let env = map_env(core::mem::take(&mut c.env), &c.name, path, ctx, f);
    let spec = ContainerSpec {
        working_dir: c.working_dir.take().filter(|w| !w.is_empty()),
        env,
        ports,
        liveness_probe: map_probe(
            c.liveness_probe.as_ref(),
            Path(path, ".livenessProbe"),
            &c.ports,
            f,
        ),
        readiness_probe: map_probe(
            c.readiness_probe.as_ref(),
            Path(path, ".readinessProbe"),
            &c.ports,
            f,
        ),
        startup_probe: map_probe(
            c.startup_probe.as_ref(),
            Path(path, ".startupProbe"),
            &c.ports,
            f,
        ),
        resources: map_resources(&c, path, f),
        lifecycle: c.lifecycle.as_ref().and_then(|l| {
            let out = Lifecycle {
                post_start: l.post_start.as_ref().and_then(|h| {
                    map_handler(h.view(), Path(path, ".lifecycle.postStart"), &c.ports, f)
                }),
                pre_stop: l.pre_stop.as_ref().and_then(|h| {
                    map_handler(h.view(), Path(path, ".lifecycle.preStop"), &c.ports, f)
                }),
            };
            (out.post_start.is_some() || out.pre_stop.is_some()).then_some(out)
        }),
        termination_message_path: c
            .termination_message_path
            .take()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: match c.termination_message_policy.as_deref() {
            None | Some("") | Some("File") => "FILE",
            Some("FallbackToLogsOnError") => "FALLBACK_TO_LOGS_ON_ERROR",
            Some(other) => {
                f.violate(
                    format!("{path}.terminationMessagePolicy"),
                    format!("`{other}` is not a policy; use File or FallbackToLogsOnError"),
                );
                "FILE"
            }
        },
        image_pull_policy: map_pull_policy(c.image_pull_policy.as_deref(), &image, path, f),
        security_context: c
            .security_context
            .take()
            .and_then(|sc| map_security_context(sc, path, f)),
        volume_mounts: mounts.mounts,
        image,
        command,
        args,
    };
    (f.violations.len() == before).then_some((c.name, spec))
}

fn map_ports<'a>(
    ports: &[ContainerPort<'a>],
    path: &str,
    f: &mut Findings,
) -> BTreeMap<Str<'a>, Port> {
    let mut out = BTreeMap::new();
    for (i, p) in ports.iter().enumerate() {
        let ppath = || format!("{path}.ports[{i}]");
        let name = p
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(Str::borrowed("default"));
        let port = match p.container_port {
            Some(n) if (1..=65535).contains(&n) => n,
            Some(n) => {
                f.violate(
                    format!("{}.containerPort", ppath()),
                    format!("{n} is not between 1 and 65535"),
                );
                continue;
            }
            None => {
                f.violate(
                    format!("{}.containerPort", ppath()),
                    "containerPort is required",
                );
                continue;
            }
        };
        let protocol = match p.protocol.as_deref() {
            Some("UDP") => "UDP",
            None | Some("") | Some("TCP") => "TCP",
            Some(other) => {
                f.warn(
                    format!("{}.protocol", ppath()),
                    format!(
                        "StackPath supports TCP and UDP; port {port} uses {other}, sent as TCP"
                    ),
                );
                "TCP"
            }
        };
        if out.contains_key(&name) {
            let why = if p.name.as_deref().unwrap_or("").is_empty() {
                "two unnamed ports both become `default` on StackPath; give each port a name"
                    .to_string()
            } else {
                format!("port name `{name}` is used twice")
            };
            f.violate(format!("{}.name", ppath()), why);
            continue;
        }
        out.insert(name, Port { port, protocol });
    }
    out
}

fn map_env<'a>(
    env: Vec<EnvVar<'a>>,
    container: &str,
    path: &str,
    ctx: &Context,
    f: &mut Findings,
) -> BTreeMap<Str<'a>, OutEnv<'a>> {
    let mut out = BTreeMap::new();
    // Kubernetes' order: every envFrom source first, then env, which wins. The host has
    // already kept only the winner of each name.
    for r in ctx.from_env_from(container) {
        if !DROPPED_ENV.contains(&r.name.as_str()) {
            out.insert(Str::from(r.name.clone()), resolved_value(r));
        }
    }
    let last: BTreeMap<Str<'a>, usize> = env
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    for (i, e) in env.into_iter().enumerate() {
        if DROPPED_ENV.contains(&e.name.as_str()) {
            continue;
        }
        let value = match &e.value_from {
            None => OutEnv::Value(e.value.unwrap_or_default()),
            Some(source) => match ctx.resolved(container, EnvOrigin::Env(i as u32)) {
                Some(r) => resolved_value(r),
                None if is_optional(source) => continue,
                // A later entry of the same name decides (the host resolved that one).
                None if last.get(e.name.as_str()).is_some_and(|l| *l > i) => continue,
                None => {
                    f.violate(
                        format!("{path}.env[{i}].valueFrom"),
                        format!(
                            "env `{}` of container `{container}` takes its value from elsewhere, \
                             and the host did not resolve it",
                            e.name
                        ),
                    );
                    continue;
                }
            },
        };
        out.insert(e.name, value);
    }
    out
}

/// What a resolved value becomes in the container's `env` (see `EnvValue`).
fn resolved_value<'a>(r: &ResolvedEnv) -> OutEnv<'a> {
    match &r.value {
        EnvValue::Plain(v) => OutEnv::Value(Str::from(v.clone())),
        EnvValue::Secret => OutEnv::SecretValue(Str::default()),
        EnvValue::InstanceField(p) => OutEnv::ValueFrom(OutValueFrom {
            instance_field_ref: InstanceFieldRef {
                field_path: Str::from(p.clone()),
            },
        }),
        // The host writes the figure of the size chosen here.
        EnvValue::SizeLimit => OutEnv::Value(Str::default()),
    }
}

/// `configMapKeyRef` / `secretKeyRef` with `optional: true`: kubelet leaves the variable unset.
fn is_optional(source: &ValueFrom) -> bool {
    [&source.config_map_key_ref, &source.secret_key_ref]
        .iter()
        .any(|r| r.as_ref().and_then(|r| r.optional).unwrap_or(false))
}

fn quantity(
    v: &Value,
    field: impl Fn() -> String,
    container: &str,
    f: &mut Findings,
) -> Option<Quantity> {
    let number;
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) => {
            number = n.to_string();
            number.as_str()
        }
        other => {
            f.violate(
                field(),
                format!("container `{container}`: expected a quantity such as `500m` or `2Gi`, got {other}"),
            );
            return None;
        }
    };
    match Quantity::parse(text) {
        Ok(q) => Some(q),
        Err(e) => {
            f.violate(field(), format!("container `{container}`: {e}"));
            None
        }
    }
}

/// requests = limits = the smallest StackPath size holding max(request, limit).
fn map_resources(c: &Container, path: &str, f: &mut Findings) -> Resources {
    let mut pick = |key: &str, default: Quantity| -> Quantity {
        let mut best: Option<Quantity> = None;
        for (kind, map) in [
            ("requests", &c.resources.requests),
            ("limits", &c.resources.limits),
        ] {
            if let Some(v) = map.get(key) {
                let field = || format!("{path}.resources.{kind}.{key}");
                if let Some(q) = quantity(v, field, &c.name, f) {
                    best = Some(match best {
                        Some(b) if b.cmp_exact(&q).is_ge() => b,
                        _ => q,
                    });
                }
            }
        }
        best.unwrap_or(default)
    };
    let cpu = pick("cpu", Quantity::units(1));
    let memory = pick("memory", Quantity::gib(2));
    // One warning per resource name: the API server copies limits into requests, and a raw
    // and a defaulted pod must give the same warnings.
    let others: alloc::collections::BTreeSet<&Str<'_>> = c
        .resources
        .requests
        .keys()
        .chain(c.resources.limits.keys())
        .filter(|k| *k != "cpu" && *k != "memory")
        .collect();
    for key in others {
        let kind = if c.resources.limits.contains_key(key.as_str()) {
            "limits"
        } else {
            "requests"
        };
        f.warn(
            format!("{path}.resources.{kind}.{key}"),
            format!("StackPath sizes only cpu and memory; `{key}` is left out"),
        );
    }
    let size = match smallest_fitting(&cpu, &memory) {
        Ok(s) => s,
        Err(largest) => {
            f.warn(
                format!("{path}.resources"),
                format!(
                    "container `{}` asks for more than the largest StackPath size ({}: {} cpu, \
                     {}); it gets {}",
                    c.name,
                    largest.name,
                    largest.cpu(),
                    largest.memory(),
                    largest.name
                ),
            );
            SIZES[SIZES.len() - 1]
        }
    };
    let figures = || {
        BTreeMap::from([
            ("cpu", Cow::Borrowed(size.cpu())),
            ("memory", Cow::Borrowed(size.memory())),
        ])
    };
    Resources {
        requests: figures(),
        limits: figures(),
    }
}

/// A container's mounts, and the parts of volumes (`subPath`) to link into place.
struct Mounts<'a> {
    mounts: Vec<VolumeMount<'a>>,
    /// (in the mounted volume, where the pod wants it)
    links: Vec<(String, String)>,
}

fn map_mounts<'a>(
    mounts: Vec<crate::input::VolumeMount<'a>>,
    path: &str,
    skipped: &BTreeMap<Str<'a>, bool>,
    f: &mut Findings,
) -> Mounts<'a> {
    let mut out = Mounts {
        mounts: Vec::with_capacity(mounts.len()),
        links: Vec::new(),
    };
    // Where each volume is mounted whole: a subPath of it links from there.
    let mut whole: BTreeMap<Str<'a>, String> = BTreeMap::new();
    for m in &mounts {
        if m.sub_path.as_deref().unwrap_or("").is_empty() && !skipped.contains_key(m.name.as_str())
        {
            whole
                .entry(m.name.clone())
                .or_insert_with(|| m.mount_path.trim_end_matches('/').to_string());
        }
    }
    for (i, m) in mounts.into_iter().enumerate() {
        if m.mount_path == SERVICE_ACCOUNT_MOUNT {
            continue;
        }
        match skipped.get(m.name.as_str()) {
            Some(true) => continue,
            Some(false) => {
                f.warn(
                    format!("{path}.volumeMounts[{i}]"),
                    format!(
                        "mount of `{}` at {} is left out: its volume is not supported",
                        m.name, m.mount_path
                    ),
                );
                continue;
            }
            None => {}
        }
        if m.sub_path_expr.as_deref().is_some_and(|e| !e.is_empty()) {
            f.violate(
                format!("{path}.volumeMounts[{i}].subPathExpr"),
                format!(
                    "mount of `{}` at {}: subPathExpr is not supported on StackPath (it mounts \
                     whole volumes only); use subPath",
                    m.name, m.mount_path
                ),
            );
            continue;
        }
        let sub = m.sub_path.as_deref().unwrap_or("").trim_matches('/');
        if sub.is_empty() {
            out.mounts.push(VolumeMount {
                slug: m.name,
                mount_path: m.mount_path,
            });
            continue;
        }
        if m.sub_path.as_deref().is_some_and(|p| p.starts_with('/'))
            || sub.split('/').any(|s| s == "..")
        {
            f.violate(
                format!("{path}.volumeMounts[{i}].subPath"),
                format!(
                    "`{}` must be a relative path without `..`",
                    m.sub_path.as_deref().unwrap_or("")
                ),
            );
            continue;
        }
        let root = match whole.get(m.name.as_str()) {
            Some(root) => root.clone(),
            None => {
                let hidden = format!("{SUBPATH_ROOT}/{}", m.name);
                whole.insert(m.name.clone(), hidden.clone());
                out.mounts.push(VolumeMount {
                    slug: m.name.clone(),
                    mount_path: Str::from(hidden.clone()),
                });
                hidden
            }
        };
        out.links.push((
            format!("{root}/{sub}"),
            m.mount_path.trim_end_matches('/').to_string(),
        ));
    }
    out
}

/// The command behind a shell that first links each subPath into place (as a kubelet would
/// bind-mount it): the target is replaced by a symbolic link into the mounted volume, a part
/// missing from the volume is created as a directory, as the kubelet does.
fn wrap_command<'a>(links: &[(String, String)], command: Vec<Str<'a>>) -> Vec<Str<'a>> {
    let mut script = String::from(
        "set -e\nl() { [ -e \"$1\" ] || mkdir -p \"$1\"; rm -rf \"$2\"; mkdir -p \"$3\"; ln -s \"$1\" \"$2\"; }\n",
    );
    for (source, target) in links {
        let parent = match target.rsplit_once('/') {
            Some((p, _)) if !p.is_empty() => p,
            _ => "/",
        };
        script.push_str(&format!(
            "l {} {} {}\n",
            shell_quote(source),
            shell_quote(target),
            shell_quote(parent)
        ));
    }
    script.push_str("exec \"$@\"");
    let mut out = vec![
        Str::borrowed("/bin/sh"),
        Str::borrowed("-c"),
        Str::from(script),
        Str::borrowed("vk-subpath"),
    ];
    out.extend(command);
    out
}

/// `s` as one word of a POSIX shell command.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn map_pull_policy(
    policy: Option<&str>,
    image: &str,
    path: &str,
    f: &mut Findings,
) -> Option<&'static str> {
    let policy = match policy {
        None | Some("") => default_pull_policy(image),
        Some(p) => p,
    };
    match policy {
        "Always" => Some("ALWAYS"),
        "IfNotPresent" => Some("IF_NOT_PRESENT"),
        "Never" => {
            f.warn(
                format!("{path}.imagePullPolicy"),
                "imagePullPolicy Never is not supported by StackPath (every instance pulls); \
                 left out",
            );
            None
        }
        other => {
            f.violate(
                format!("{path}.imagePullPolicy"),
                format!("`{other}` is not a pull policy; use Always or IfNotPresent"),
            );
            None
        }
    }
}

/// Kubernetes: `Always` when the tag is `latest` or absent (and no digest), else `IfNotPresent`.
fn default_pull_policy(image: &str) -> &'static str {
    let (name, has_digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

fn map_security_context<'a>(
    sc: SecurityContext<'a>,
    path: &str,
    f: &mut Findings,
) -> Option<OutSecurityContext<'a>> {
    f.warn_unsupported(
        Path(path, ".securityContext"),
        &[
            ("privileged", sc.privileged == Some(true)),
            ("seLinuxOptions", sc.se_linux_options.is_some()),
            ("seccompProfile", sc.seccomp_profile.is_some()),
            ("appArmorProfile", sc.app_armor_profile.is_some()),
            (
                "procMount",
                sc.proc_mount.as_deref().is_some_and(|p| p != "Default"),
            ),
            ("windowsOptions", sc.windows_options.is_some()),
        ],
    );
    let capabilities = sc.capabilities.and_then(|c| {
        (!c.add.is_empty() || !c.drop.is_empty()).then_some(Capabilities {
            add: c.add,
            drop: c.drop,
        })
    });
    let out = OutSecurityContext {
        run_as_user: sc.run_as_user.map(|v| v.to_string().into()),
        run_as_group: sc.run_as_group.map(|v| v.to_string().into()),
        run_as_non_root: sc.run_as_non_root,
        read_only_root_filesystem: sc.read_only_root_filesystem,
        allow_privilege_escalation: sc.allow_privilege_escalation,
        capabilities,
    };
    let empty = out.run_as_user.is_none()
        && out.run_as_group.is_none()
        && out.run_as_non_root.is_none()
        && out.read_only_root_filesystem.is_none()
        && out.allow_privilege_escalation.is_none()
        && out.capabilities.is_none();
    (!empty).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::{default_pull_policy, wrap_command};
    use crate::text::Str;

    /// The wrapper, run by a real shell: the parts appear where the pod mounts them, replacing
    /// what the image had there, and the command runs with its arguments.
    #[test]
    fn the_subpath_wrapper_links_parts_into_place_then_runs_the_command() {
        let dir = std::env::temp_dir().join(format!("vk-subpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let volume = dir.join("volume");
        std::fs::create_dir_all(volume.join("conf")).unwrap();
        std::fs::write(volume.join("conf/app.conf"), "from the volume").unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/app.conf"), "from the image").unwrap();
        let d = dir.to_str().unwrap();
        let links = [
            (
                format!("{d}/volume/conf/app.conf"),
                format!("{d}/etc/app.conf"),
            ),
            (format!("{d}/volume/new dir"), format!("{d}/var/it's here")),
        ];
        let command = wrap_command(
            &links,
            vec![Str::borrowed("cat"), Str::from(format!("{d}/etc/app.conf"))],
        );
        assert_eq!(command[0], "/bin/sh");
        let out = std::process::Command::new(command[0].as_str())
            .args(command[1..].iter().map(|s| s.as_str()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from the volume");
        assert!(volume.join("new dir").is_dir());
        assert!(dir.join("var/it's here").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pull_policy_defaults_follow_kubernetes() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(default_pull_policy("registry:5000/nginx:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
