//! Rendering `deploy/` the way an operator does (`kubectl kustomize`), for the tests in
//! `tests/`. Overlays need files that are never committed (each overlay's `credentials.env`, a
//! custom `policy.wasm`): [`Workspace`] copies `deploy/` into a temporary directory and puts
//! stand-ins there, so the source tree is never written to.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not run `{command}`: {source}; is kubectl on PATH (or set KUBECTL)?")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("the rendering of {overlay} is not a YAML stream of objects: {reason}")]
    Yaml { overlay: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .components()
        .collect()
}

/// `$KUBECTL`, else `kubectl` from PATH.
pub fn kubectl() -> PathBuf {
    std::env::var_os("KUBECTL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "kubectl".into())
}

/// Every kustomization an operator may render, relative to `deploy/`: the root, each overlay
/// (single-city and multi-city) and each example. Found on disk, so a new overlay is tested without editing a list.
pub fn kustomizations() -> Result<Vec<String>> {
    let root = deploy_dir();
    let mut found = vec![String::from(".")];
    for group in ["overlays", "examples"] {
        let dir = root.join(group);
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            action: "listing",
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("kustomization.yaml").is_file())
            .map(|e| format!("{group}/{}", e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        found.extend(names);
    }
    Ok(found)
}

/// Every overlay (`overlays/<name>`), by directory name: the single-city ones ([`cities`]) and
/// the multi-city ones ([`multi_city_overlays`]).
pub fn overlays() -> Result<Vec<String>> {
    Ok(kustomizations()?
        .into_iter()
        .filter_map(|k| k.strip_prefix("overlays/").map(str::to_owned))
        .collect())
}

/// The file by which a single-city overlay (`overlays/<city>`, named like its city) patches the
/// Deployment: one city, one node.
pub const CITY_PATCH: &str = "city.yaml";

/// The file by which a multi-city overlay patches the Deployment: several cities (a
/// comma-separated `SP_CITY_CODE`), one node per city, one daemon.
pub const CITIES_PATCH: &str = "cities.yaml";

fn overlays_with(patch: &str) -> Result<Vec<String>> {
    let root = deploy_dir().join("overlays");
    Ok(overlays()?
        .into_iter()
        .filter(|o| root.join(o).join(patch).is_file())
        .collect())
}

/// The single-city overlays (`overlays/<city>`, with a [`CITY_PATCH`]), by city name.
pub fn cities() -> Result<Vec<String>> {
    overlays_with(CITY_PATCH)
}

/// The multi-city overlays (`overlays/<name>`, with a [`CITIES_PATCH`]), by directory name.
pub fn multi_city_overlays() -> Result<Vec<String>> {
    overlays_with(CITIES_PATCH)
}

/// A private copy of `deploy/` with stand-ins for the files an operator provides.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// The stand-in policy: any bytes will do for rendering and dry runs (not valid UTF-8, so it
/// lands in `binaryData` as a real policy does).
pub const STAND_IN_POLICY: &[u8] = b"\0asm\x0d\0\x01\0\xff\xfe stand-in policy";

/// A stand-in console host key (a throwaway ed25519 key), in known_hosts format.
pub const STAND_IN_KNOWN_HOSTS: &str = "[container-console.edgeengine.io]:9600 ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIATPqWfKYbcaVNIQRZi9+qdSGkKPNJ8d5FLtkXRb4iv3\n";

impl Workspace {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            action: "creating",
            path: std::env::temp_dir(),
            source,
        })?;
        copy_tree(&deploy_dir(), &dir.path().join("deploy"))?;
        let ws = Workspace { dir };
        // Each overlay's credentials.env comes from its committed example; its console host
        // key is a stand-in (the operator's comes from ssh-keyscan).
        for name in overlays()? {
            let overlay = ws.deploy().join("overlays").join(&name);
            copy_file(
                &overlay.join("credentials.env.example"),
                &overlay.join("credentials.env"),
            )?;
            write(
                &overlay.join("console-known-hosts"),
                STAND_IN_KNOWN_HOSTS.as_bytes(),
            )?;
        }
        for example in std::fs::read_dir(ws.deploy().join("examples"))
            .map_err(|source| Error::Io {
                action: "listing",
                path: ws.deploy().join("examples"),
                source,
            })?
            .filter_map(|e| e.ok())
        {
            let kustomization = example.path().join("kustomization.yaml");
            let text = read(&kustomization)?;
            if text.contains("policy.wasm") && text.contains("configMapGenerator") {
                write(&example.path().join("policy.wasm"), STAND_IN_POLICY)?;
            }
        }
        Ok(ws)
    }

    pub fn deploy(&self) -> PathBuf {
        self.dir.path().join("deploy")
    }

    /// `kubectl kustomize deploy/<kustomization>`: the rendered YAML stream.
    pub fn render_text(&self, kustomization: &str) -> Result<String> {
        let dir = self.deploy().join(kustomization);
        let out = run(Command::new(kubectl()).arg("kustomize").arg(&dir))?;
        Ok(out)
    }

    /// The rendered objects, as JSON values.
    pub fn render(&self, kustomization: &str) -> Result<Vec<Value>> {
        parse_stream(kustomization, &self.render_text(kustomization)?)
    }
}

/// Parses a YAML stream into JSON values (empty documents dropped).
pub fn parse_stream(origin: &str, text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Yaml {
            overlay: origin.into(),
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(value).map_err(|e| Error::Yaml {
            overlay: origin.into(),
            reason: e.to_string(),
        })?;
        objects.push(json);
    }
    Ok(objects)
}

/// cert-manager is not part of the test control plane: a stand-in for its Certificate CRD
/// (schema left open) lets the cert-manager component's objects be applied and checked.
pub const CERTIFICATE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Certificate, plural: certificates, singular: certificate}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// Applies [`CERTIFICATE_CRD`] with the admin `kubeconfig` and waits until it is established.
pub fn install_certificate_crd(kubeconfig: &Path) -> Result<()> {
    apply(kubeconfig, CERTIFICATE_CRD, "deploy-tests")?;
    run(Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/certificates.cert-manager.io",
        ]))?;
    Ok(())
}

/// `kubectl apply --server-side` of a YAML stream, as an operator applies a rendering.
pub fn apply(kubeconfig: &Path, yaml: &str, field_manager: &str) -> Result<String> {
    use std::io::Write as _;
    let mut cmd = Command::new(kubectl());
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "--force-conflicts"])
        .arg(format!("--field-manager={field_manager}"))
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let command = format!("{cmd:?}");
    let spawn_err = |source| Error::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(yaml.as_bytes())
        .map_err(spawn_err)?;
    let out = child.wait_with_output().map_err(spawn_err)?;
    stdout_of(command, out)
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    stdout_of(command, out)
}

fn stdout_of(command: String, out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kind/namespace/name` of an object, for messages.
pub fn id(obj: &Value) -> String {
    format!(
        "{}/{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.into(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        action: "writing",
        path: path.into(),
        source,
    })
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| Error::Io {
            action: "copying",
            path: from.into(),
            source,
        })
}

/// Copies a directory tree, leaving out what an operator's checkout may hold but tests must not
/// use (real credentials, real policies).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|source| Error::Io {
        action: "creating",
        path: to.into(),
        source,
    })?;
    let entries = std::fs::read_dir(from).map_err(|source| Error::Io {
        action: "listing",
        path: from.into(),
        source,
    })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name();
        let target = to.join(&name);
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else if name != "credentials.env"
            && name != "console-known-hosts"
            && !name.to_string_lossy().ends_with(".wasm")
        {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}
