//! Runs the container of a rendered Deployment as the kubelet would, unprivileged, for the
//! deploy contract test: its args and env as the Deployment says (`$(VAR)` expansion,
//! `valueFrom` and `envFrom` resolved from the rendered objects or the cluster, the image's
//! entrypoint, CMD and ENV), its ConfigMap, Secret, emptyDir and projected volumes and the
//! service-account token the ServiceAccount admission plugin adds, written into a directory.
//!
//! What differs from a real kubelet, and why (each is applied by a rule, never per test):
//! - **Paths**: a volume mounted at `/etc/x` is written to `<root>/etc/x` and every arg or env
//!   value naming `/etc/x` is rewritten to it (writing to `/etc` needs root). Mounts no arg
//!   names are paths the program finds on its own: the service-account token under
//!   `/var/run/secrets` (kube-rs reads a fixed path) is put there for real, in a private mount
//!   namespace (`unshare --user --mount`) where `/run` is the pod's own directory.
//! - **Network**: the pod's IP is 127.0.0.1 (tests listen on loopback only), so a wildcard
//!   bind address (`0.0.0.0:port`) in the args becomes the pod IP, and the API server's
//!   in-cluster address (`KUBERNETES_SERVICE_HOST`) is its loopback address.
//! - **Image and user**: the daemon binary built for the tests stands in for the image's
//!   `/vk-stackpath`; it runs as the invoking user, not `runAsUser`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::Value;

/// What the Containerfile says the image runs (`deploy/Containerfile`).
pub struct Image {
    pub entrypoint: PathBuf,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The world the pod runs in.
pub struct PodWorld<'a> {
    /// Everything `kubectl kustomize` rendered.
    pub objects: &'a [Value],
    pub admin: kube::Client,
    /// Where `kubectl` finds the cluster (for `kubectl create token`).
    pub admin_kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` of the API server.
    pub apiserver_url: String,
    pub pod_name: String,
    pub pod_ip: IpAddr,
    /// Volumes are written below this directory (not under /tmp or /run, which the pod's
    /// mount namespace replaces).
    pub root: PathBuf,
}

/// A container ready to start.
#[derive(Debug)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Declared container ports by name.
    pub ports: BTreeMap<String, u16>,
    /// `(directory below root, path it is bound to)` in the pod's mount namespace.
    binds: Vec<(PathBuf, &'static str)>,
}

impl Prepared {
    /// The command: `unshare` sets up the mount namespace, then execs the program (so the
    /// child's pid is the program's and signals reach it).
    pub fn command(&self) -> Command {
        let mut script = String::new();
        for (i, (_, target)) in self.binds.iter().enumerate() {
            script.push_str(&format!("mount --bind \"${}\" {target} && ", i + 1));
        }
        script.push_str(&format!("shift {} && exec \"$@\"", self.binds.len()));
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
            .arg(script)
            .arg("sh");
        for (dir, _) in &self.binds {
            cmd.arg(dir);
        }
        cmd.arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir("/");
        cmd
    }
}

/// The one container of `deployment`'s pod template, prepared to run in `world`.
pub async fn prepare(world: &PodWorld<'_>, deployment: &Value, image: &Image) -> Result<Prepared> {
    let pod = &deployment["spec"]["template"]["spec"];
    let ns = deployment["metadata"]["namespace"]
        .as_str()
        .context("the Deployment has no namespace")?;
    let containers = pod["containers"].as_array().context("no containers")?;
    if containers.len() != 1 || pod.get("initContainers").is_some() {
        bail!("only a pod of one container (and no init containers) is supported here");
    }
    let c = &containers[0];
    let lookup = Lookup { world, ns };

    // The kubelet's environment first (service links, HOSTNAME), then the image's ENV, then
    // envFrom, then env: later entries win, as in Kubernetes.
    let (host, port) = world
        .apiserver_url
        .trim_start_matches("https://")
        .rsplit_once(':')
        .context("API server URL without a port")?;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("KUBERNETES_SERVICE_HOST".into(), host.into());
    env.insert("KUBERNETES_SERVICE_PORT".into(), port.into());
    env.insert("HOSTNAME".into(), world.pod_name.clone());
    env.insert("HOME".into(), "/".into());
    env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    env.extend(image.env.iter().cloned());
    for source in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or("");
        let (kind, r) = match (source.get("configMapRef"), source.get("secretRef")) {
            (Some(r), _) => ("ConfigMap", r),
            (_, Some(r)) => ("Secret", r),
            _ => bail!("envFrom entry with neither configMapRef nor secretRef: {source}"),
        };
        let name = r["name"].as_str().context("envFrom without a name")?;
        match lookup.data(kind, name).await? {
            Some(data) => {
                for (k, v) in data {
                    env.insert(format!("{prefix}{k}"), String::from_utf8(v)?);
                }
            }
            None if r["optional"].as_bool() == Some(true) => {}
            None => bail!("envFrom {kind} {ns}/{name} does not exist"),
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().context("env without a name")?;
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(from) = e.get("valueFrom") {
            lookup.value_from(from).await?
        } else {
            String::new()
        };
        env.insert(name.to_owned(), value);
    }

    let mut args: Vec<String> = match c["command"].as_array() {
        Some(cmd) => bail!("a command override ({cmd:?}) would not run the image's entrypoint"),
        None => vec![],
    };
    match c["args"].as_array() {
        Some(a) => args.extend(
            a.iter()
                .map(|v| expand(v.as_str().unwrap_or_default(), &env)),
        ),
        None => args.extend(image.cmd.iter().cloned()),
    }

    // Volumes: written below root; named paths rewritten, the rest bound.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        if m.get("subPath").is_some() {
            bail!("subPath mounts are not supported here: {m}");
        }
        let name = m["name"].as_str().context("volumeMount without a name")?;
        let path = m["mountPath"]
            .as_str()
            .context("volumeMount without a path")?;
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .with_context(|| format!("volumeMount {name} names no volume"))?;
        let dir = world.root.join(host_relative(path));
        lookup.materialize(volume, &dir).await?;
        mounts.push((path.to_owned(), dir));
    }
    // The ServiceAccount admission plugin's token volume.
    if pod["automountServiceAccountToken"].as_bool() != Some(false) {
        let path = "/var/run/secrets/kubernetes.io/serviceaccount";
        let sa = pod["serviceAccountName"].as_str().unwrap_or("default");
        let dir = world.root.join(host_relative(path));
        lookup.service_account_token(sa, &dir).await?;
        mounts.push((path.to_owned(), dir));
    }
    // Longest first, so /etc/a/b is rewritten before /etc/a.
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut binds: Vec<(PathBuf, &'static str)> = Vec::new();
    for (path, dir) in &mounts {
        // Every value naming the path is rewritten (no short-circuit).
        let mut named = false;
        for v in args.iter_mut().chain(env.values_mut()) {
            named |= rewrite(v, path, dir);
        }
        if !named {
            let anchor = ["/run", "/tmp"]
                .into_iter()
                .find(|a| host_relative(path).starts_with(&a[1..]))
                .with_context(|| {
                    format!("mount {path} is named by no arg or env value and is not under /run or /tmp, so it cannot be placed unprivileged")
                })?;
            let source = world.root.join(&anchor[1..]);
            if !binds.iter().any(|(_, t)| *t == anchor) {
                binds.push((source, anchor));
            }
        }
    }
    // The pod network: a wildcard bind is a bind on the pod's own address.
    for a in &mut args {
        *a = a.replace("0.0.0.0:", &format!("{}:", world.pod_ip));
    }

    let ports = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["containerPort"].as_u64()? as u16,
            ))
        })
        .collect();
    Ok(Prepared {
        program: image.entrypoint.clone(),
        args,
        env,
        ports,
        binds,
    })
}

/// A mount path relative to `/`, with `/var/run` as the `/run` it links to.
fn host_relative(path: &str) -> PathBuf {
    let p = path.trim_start_matches('/');
    PathBuf::from(match p.strip_prefix("var/run") {
        Some(rest) => format!("run{rest}"),
        None => p.to_owned(),
    })
}

/// Rewrites `mount` to `dir` in `value` where it stands as a path (followed by `/` or
/// the end); whether it did.
fn rewrite(value: &mut String, mount: &str, dir: &Path) -> bool {
    let Some(at) = value.find(mount) else {
        return false;
    };
    let after = &value[at + mount.len()..];
    if !(after.is_empty() || after.starts_with('/')) {
        return false;
    }
    *value = format!("{}{}{after}", &value[..at], dir.display());
    true
}

/// Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`,
/// anything else is left as written.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(v) = env.get(&inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

struct Lookup<'a> {
    world: &'a PodWorld<'a>,
    ns: &'a str,
}

impl Lookup<'_> {
    /// A ConfigMap's or Secret's data (decoded), from the rendered objects or else the cluster.
    async fn data(&self, kind: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        let rendered = self.world.objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or(self.ns) == self.ns
        });
        let obj = match rendered {
            Some(o) => o.clone(),
            None => {
                use k8s_openapi::api::core::v1::{ConfigMap, Secret};
                let c = self.world.admin.clone();
                let got = if kind == "Secret" {
                    kube::Api::<Secret>::namespaced(c, self.ns)
                        .get_opt(name)
                        .await?
                        .map(serde_json::to_value)
                } else {
                    kube::Api::<ConfigMap>::namespaced(c, self.ns)
                        .get_opt(name)
                        .await?
                        .map(serde_json::to_value)
                };
                match got {
                    Some(v) => v?,
                    None => return Ok(None),
                }
            }
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = BTreeMap::new();
        let (plain, encoded) = if kind == "Secret" {
            ("stringData", "data")
        } else {
            ("data", "binaryData")
        };
        for (k, v) in obj[encoded].as_object().into_iter().flatten() {
            let bytes = b64
                .decode(v.as_str().unwrap_or_default())
                .with_context(|| format!("{kind} {name} key {k} is not base64"))?;
            out.insert(k.clone(), bytes);
        }
        for (k, v) in obj[plain].as_object().into_iter().flatten() {
            out.insert(
                k.clone(),
                v.as_str().unwrap_or_default().as_bytes().to_vec(),
            );
        }
        Ok(Some(out))
    }

    async fn required(&self, kind: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        self.data(kind, name)
            .await?
            .with_context(|| format!("{kind} {}/{name} does not exist", self.ns))
    }

    async fn value_from(&self, from: &Value) -> Result<String> {
        if let Some(f) = from.get("fieldRef") {
            let w = self.world;
            return Ok(match f["fieldPath"].as_str().unwrap_or_default() {
                "status.podIP" | "status.hostIP" => w.pod_ip.to_string(),
                "metadata.name" => w.pod_name.clone(),
                "metadata.namespace" => self.ns.to_owned(),
                other => bail!("fieldRef {other} is not supported here"),
            });
        }
        for (key, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
            if let Some(r) = from.get(key) {
                let name = r["name"].as_str().unwrap_or_default();
                let k = r["key"].as_str().unwrap_or_default();
                let data = self.required(kind, name).await?;
                let v = data
                    .get(k)
                    .with_context(|| format!("{kind} {name} has no key {k}"))?;
                return Ok(String::from_utf8(v.clone())?);
            }
        }
        bail!("valueFrom {from} is not supported here")
    }

    /// Writes a volume's files into `dir`.
    async fn materialize(&self, volume: &Value, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        if volume.get("emptyDir").is_some() {
            return Ok(());
        }
        for (key, kind) in [("configMap", "ConfigMap"), ("secret", "Secret")] {
            if let Some(src) = volume.get(key) {
                let name = src["name"]
                    .as_str()
                    .or(src["secretName"].as_str())
                    .context("volume source without a name")?;
                return self.write_items(kind, name, &src["items"], dir).await;
            }
        }
        bail!("volume {volume} is of a kind not supported here")
    }

    async fn write_items(&self, kind: &str, name: &str, items: &Value, dir: &Path) -> Result<()> {
        let data = self.required(kind, name).await?;
        let pairs: Vec<(String, String)> = match items.as_array() {
            Some(items) => items
                .iter()
                .map(|i| {
                    (
                        i["key"].as_str().unwrap_or_default().to_owned(),
                        i["path"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in pairs {
            let bytes = data
                .get(&key)
                .with_context(|| format!("{kind} {name} has no key {key}"))?;
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(dir))?;
            std::fs::write(&file, bytes)?;
        }
        Ok(())
    }

    /// What the kubelet writes for the admission plugin's `kube-api-access` volume: a bound
    /// token (TokenRequest), the cluster CA from `kube-root-ca.crt`, the namespace.
    async fn service_account_token(&self, sa: &str, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.world.admin_kubeconfig)
            .args(["-n", self.ns, "create", "token", sa, "--duration=1h"])
            .output()?;
        if !out.status.success() {
            bail!(
                "kubectl create token {sa}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(dir.join("token"), out.stdout.trim_ascii())?;
        // The root CA publisher fills kube-root-ca.crt shortly after the namespace appears.
        let mut tries = 0;
        let ca = loop {
            match self.data("ConfigMap", "kube-root-ca.crt").await? {
                Some(d) if d.contains_key("ca.crt") => break d["ca.crt"].clone(),
                _ if tries < 100 => tries += 1,
                _ => bail!("ConfigMap {}/kube-root-ca.crt never appeared", self.ns),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        std::fs::write(dir.join("ca.crt"), ca)?;
        std::fs::write(dir.join("namespace"), self.ns)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
        assert_eq!(expand("--n=$(A)", &env), "--n=x");
        assert_eq!(expand("$(B) $$(A) $", &env), "$(B) $(A) $");
    }

    #[test]
    fn paths_are_rewritten_only_as_whole_components() {
        let mut v = "--f=/etc/a/b".to_owned();
        assert!(rewrite(&mut v, "/etc/a", Path::new("/r/etc/a")));
        assert_eq!(v, "--f=/r/etc/a/b");
        let mut v = "--f=/etc/ab".to_owned();
        assert!(!rewrite(&mut v, "/etc/a", Path::new("/r/etc/a")));
        assert_eq!(host_relative("/var/run/x"), PathBuf::from("run/x"));
    }
}
