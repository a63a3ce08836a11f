//! Config volumes on StackPath. StackPath has no configMap, secret, downwardAPI, projected or
//! emptyDir volumes, only volume claims; so each such volume becomes a claim (the policy's
//! choice: it emits a `volumeClaimTemplate` whose slug is the volume's name) and the host adds
//! one init container, [`WRITER_NAME`], run before all others (StackPath runs init containers
//! in name order), that writes the files into those claims and exits.
//!
//! The writer is a POSIX shell script in its `command`; the content travels in its
//! environment, base64 in chunks of [`CHUNK`] characters: a ConfigMap's as `value`, a Secret's
//! as `secretValue` (stored encrypted by StackPath, never returned, never in the policy's input
//! nor in a log). Linux limits one environment string
//! to 128 KiB and a process's environment and arguments together to about 2 MiB, hence the
//! bound on a pod's content, [`MAX_CONTENT_BYTES`].
//!
//! Each start of the instance runs the writer again: it empties each config volume's claim and
//! writes it anew, so a claim never keeps a file the pod no longer has. An emptyDir claim is
//! not emptied (it holds what the containers wrote); it is made writable by every user.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use stackpath_client::Secret;
use stackpath_client::model::{
    ContainerSecurityContext, ContainerSpec, EnvironmentVariable, ImagePullPolicy,
    InstanceVolumeMount, ResourceRequirements,
};

use crate::policy::ConfigVolumeKind;
use crate::resolve::{Content, SizeRef, VolumeFiles};

/// The writer's name: it sorts before any container name that starts with a letter or digit,
/// so StackPath runs it first.
pub const WRITER_NAME: &str = "0-vk-config-volumes";
/// The writer's image when the operator names none: small, pinned, with `sh` and `base64`.
pub const DEFAULT_IMAGE: &str = "docker.io/library/busybox:1.37-musl";
/// What a pod's config volumes may hold, content and file names together: 1 MiB (a
/// ConfigMap's own limit) is ~1.4 MiB in base64, within the ~2 MiB a process's environment
/// and arguments may take.
pub const MAX_CONTENT_BYTES: usize = 1 << 20;
/// Base64 characters per environment variable, below Linux's 128 KiB per string.
pub const CHUNK: usize = 96 << 10;
/// Where the writer mounts each claim: `<root>/<slug>`.
const MOUNT_ROOT: &str = "/vk";
/// The smallest StackPath size: the writer needs a few MiB.
const WRITER_SIZE: (&str, &str) = ("1", "2Gi");

/// How the host treats config volumes (`--config-volumes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigVolumes {
    /// Written into volume claims by an init container of this image.
    Materialize { image: String },
    /// Not provided: the policy leaves them out with a warning.
    Skip,
}

impl Default for ConfigVolumes {
    fn default() -> Self {
        ConfigVolumes::Materialize {
            image: DEFAULT_IMAGE.into(),
        }
    }
}

impl ConfigVolumes {
    pub fn enabled(&self) -> bool {
        matches!(self, ConfigVolumes::Materialize { .. })
    }
}

/// Where a piece of the writer's environment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Plain(String),
    Secret(Secret),
}

/// The writer's script and the environment it reads.
#[derive(Debug)]
pub struct Script {
    pub text: String,
    pub env: Vec<(String, EnvSource)>,
}

/// The writer container for `volumes` (those the policy gave a claim), or `None` when there
/// are none. `size` answers a file that is a figure of a container's StackPath size.
pub fn writer(
    volumes: &[&VolumeFiles],
    fs_group: Option<i64>,
    image: &str,
    size: impl Fn(&SizeRef) -> Result<String, String>,
) -> Result<Option<ContainerSpec>, String> {
    if volumes.is_empty() {
        return Ok(None);
    }
    let script = script(MOUNT_ROOT, volumes, fs_group, size)?;
    let figures = || {
        [("cpu", WRITER_SIZE.0), ("memory", WRITER_SIZE.1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Ok(Some(ContainerSpec {
        image: Some(image.to_string()),
        command: vec!["/bin/sh".into(), "-c".into(), script.text],
        env: script
            .env
            .into_iter()
            .map(|(name, source)| {
                let var = match source {
                    EnvSource::Plain(v) => EnvironmentVariable::value(v),
                    EnvSource::Secret(v) => EnvironmentVariable::secret(v),
                };
                (name, var)
            })
            .collect(),
        resources: Some(ResourceRequirements {
            requests: figures(),
            limits: figures(),
        }),
        volume_mounts: volumes
            .iter()
            .map(|v| InstanceVolumeMount {
                slug: Some(v.name.clone()),
                mount_path: Some(format!("{MOUNT_ROOT}/{}", v.name)),
            })
            .collect(),
        image_pull_policy: Some(ImagePullPolicy::IfNotPresent),
        // Root, whatever the pod asks of its own containers: to set owners and modes, as the
        // kubelet does.
        security_context: Some(ContainerSecurityContext {
            run_as_user: Some("0".into()),
            run_as_group: Some("0".into()),
            run_as_non_root: Some(false),
            ..ContainerSecurityContext::default()
        }),
        ..ContainerSpec::default()
    }))
}

/// `s` as one word of a POSIX shell command.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script writing `volumes` under `root` (`/vk` in the writer; a directory in tests).
pub fn script(
    root: &str,
    volumes: &[&VolumeFiles],
    fs_group: Option<i64>,
    size: impl Fn(&SizeRef) -> Result<String, String>,
) -> Result<Script, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut text = String::from("set -eu\numask 022\n");
    let mut env = Vec::new();
    // With fsGroup, the kubelet gives the group read access to read-only volumes' files, and
    // directories the group's bit and setgid.
    let file_mode = |m: u32| if fs_group.is_some() { m | 0o440 } else { m };
    let dir_mode = if fs_group.is_some() { 0o2755 } else { 0o755 };
    for (v, volume) in volumes.iter().enumerate() {
        let dir = format!("{root}/{}", volume.name);
        let d = quote(&dir);
        if volume.kind == ConfigVolumeKind::EmptyDir {
            // Writable by all, as the kubelet makes an emptyDir.
            let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
            if let Some(g) = fs_group {
                writeln!(text, "chgrp {g} {d}").expect("to a String");
            }
            writeln!(text, "chmod {mode:04o} {d}").expect("to a String");
            continue;
        }
        writeln!(
            text,
            "rm -rf {d}/* {d}/.[!.]* {d}/..?*\nchmod {dir_mode:04o} {d}"
        )
        .expect("to a String");
        let mut dirs = BTreeSet::new();
        for file in &volume.files {
            let mut parent = file.path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                dirs.insert(p.to_string());
                parent = p;
            }
        }
        for sub in &dirs {
            let q = quote(&format!("{dir}/{sub}"));
            writeln!(text, "mkdir -p {q}\nchmod {dir_mode:04o} {q}").expect("to a String");
        }
        for (f, file) in volume.files.iter().enumerate() {
            let target = quote(&format!("{dir}/{}", file.path));
            let var = format!("VK_{v}_{f}");
            let (bytes, secret) = match &file.content {
                Content::Plain(b) => (b.clone(), false),
                Content::Secret(b) => (b.0.clone(), true),
                Content::Size(s) => (
                    size(s)
                        .map_err(|e| {
                            format!("volume `{}`, file `{}`: {e}", volume.name, file.path)
                        })?
                        .into_bytes(),
                    false,
                ),
            };
            if bytes.is_empty() {
                writeln!(text, ": > {target}").expect("to a String");
            } else {
                let encoded = b64.encode(&bytes);
                let mut names = Vec::new();
                // Base64 is ASCII: any byte offset is a character boundary.
                for (k, chunk) in encoded.as_bytes().chunks(CHUNK).enumerate() {
                    let name = format!("{var}_{k}");
                    let chunk = String::from_utf8_lossy(chunk).into_owned();
                    env.push((
                        name.clone(),
                        if secret {
                            EnvSource::Secret(Secret::new(chunk))
                        } else {
                            EnvSource::Plain(chunk)
                        },
                    ));
                    names.push(format!("\"${name}\""));
                }
                writeln!(text, "printf %s {} | base64 -d > {target}", names.join(" "))
                    .expect("to a String");
            }
            writeln!(text, "chmod {:04o} {target}", file_mode(file.mode)).expect("to a String");
        }
        if let Some(g) = fs_group {
            writeln!(text, "chgrp -R {g} {d}").expect("to a String");
        }
    }
    Ok(Script { text, env })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::resolve::{File, SecretBytes, SizeResource};

    fn volume(name: &str, kind: ConfigVolumeKind, files: Vec<File>) -> VolumeFiles {
        VolumeFiles {
            name: name.into(),
            kind,
            files,
        }
    }

    fn file(path: &str, mode: u32, content: Content) -> File {
        File {
            path: path.into(),
            mode,
            content,
        }
    }

    fn no_size(_: &SizeRef) -> Result<String, String> {
        Err("no size".into())
    }

    /// Runs the script with a real `sh` and `base64`, its environment as StackPath would give
    /// it.
    fn run(script: &Script) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&script.text).env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (name, source) in &script.env {
            let value = match source {
                EnvSource::Plain(v) => v.clone(),
                EnvSource::Secret(v) => v.expose().to_string(),
            };
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            script.text,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_script_writes_contents_modes_and_clears_old_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        for v in ["conf", "creds", "scratch"] {
            std::fs::create_dir(tmp.path().join(v)).unwrap();
        }
        // Left over from an earlier start: must go.
        std::fs::write(tmp.path().join("conf/stale"), "old").unwrap();
        std::fs::write(tmp.path().join("conf/.hidden"), "old").unwrap();
        std::fs::write(tmp.path().join("scratch/kept"), "data").unwrap();
        let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let conf = volume(
            "conf",
            ConfigVolumeKind::Projected,
            vec![
                file(
                    "nginx.conf",
                    0o644,
                    Content::Plain(b"server { listen 80; }\n".to_vec()),
                ),
                file("a dir/it's.bin", 0o600, Content::Plain(binary.clone())),
                file("empty", 0o644, Content::Plain(Vec::new())),
                file("name", 0o444, Content::Plain(b"nginx".to_vec())),
                file(
                    "mem",
                    0o644,
                    Content::Size(SizeRef {
                        container: "app".into(),
                        resource: SizeResource::Memory,
                        divisor: guest_default::quantity::Quantity::parse("1Mi").unwrap(),
                    }),
                ),
            ],
        );
        let creds = volume(
            "creds",
            ConfigVolumeKind::Secret,
            vec![file(
                "password",
                0o400,
                Content::Secret(SecretBytes(b"hunter2".to_vec())),
            )],
        );
        let scratch = volume("scratch", ConfigVolumeKind::EmptyDir, vec![]);
        let script = script(root, &[&conf, &creds, &scratch], None, |s| s.value("2Gi")).unwrap();
        // Large content is split, and a Secret's goes as a Secret.
        assert!(
            script
                .env
                .iter()
                .filter(|(n, _)| n.starts_with("VK_0_1_"))
                .count()
                >= 4
        );
        assert!(script.env.iter().all(|(_, s)| match s {
            EnvSource::Plain(v) => v.len() <= CHUNK,
            EnvSource::Secret(v) => v.expose().len() <= CHUNK,
        }));
        assert!(matches!(
            script.env.iter().find(|(n, _)| n.starts_with("VK_1_0")),
            Some((_, EnvSource::Secret(_)))
        ));
        assert!(!script.text.contains("hunter2") && !script.text.contains("aHVudGVyMg"));
        run(&script);

        let conf_dir = tmp.path().join("conf");
        assert_eq!(
            std::fs::read_to_string(conf_dir.join("nginx.conf")).unwrap(),
            "server { listen 80; }\n"
        );
        assert_eq!(
            std::fs::read(conf_dir.join("a dir/it's.bin")).unwrap(),
            binary
        );
        assert_eq!(std::fs::read(conf_dir.join("empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_to_string(conf_dir.join("name")).unwrap(),
            "nginx"
        );
        assert_eq!(
            std::fs::read_to_string(conf_dir.join("mem")).unwrap(),
            "2048"
        );
        assert!(!conf_dir.join("stale").exists() && !conf_dir.join(".hidden").exists());
        assert_eq!(mode(&conf_dir.join("a dir/it's.bin")), 0o600);
        assert_eq!(mode(&conf_dir.join("name")), 0o444);
        assert_eq!(mode(&conf_dir.join("a dir")), 0o755);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("creds/password")).unwrap(),
            "hunter2"
        );
        assert_eq!(mode(&tmp.path().join("creds/password")), 0o400);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("scratch/kept")).unwrap(),
            "data"
        );
        assert_eq!(mode(&tmp.path().join("scratch")), 0o777);
    }

    #[test]
    fn fs_group_adds_group_read_and_setgid() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("c")).unwrap();
        let gid = unsafe { libc::getgid() };
        let c = volume(
            "c",
            ConfigVolumeKind::ConfigMap,
            vec![file("sub/k", 0o400, Content::Plain(b"v".to_vec()))],
        );
        let script = script(
            tmp.path().to_str().unwrap(),
            &[&c],
            Some(gid.into()),
            no_size,
        )
        .unwrap();
        run(&script);
        assert_eq!(mode(&tmp.path().join("c/sub/k")), 0o440);
        assert_eq!(mode(&tmp.path().join("c/sub")), 0o2755);
    }

    #[test]
    fn the_writer_container_mounts_the_claims_and_keeps_secrets_secret() {
        let creds = volume(
            "creds",
            ConfigVolumeKind::Secret,
            vec![file(
                "password",
                0o400,
                Content::Secret(SecretBytes(b"hunter2".to_vec())),
            )],
        );
        let c = writer(&[&creds], None, DEFAULT_IMAGE, no_size)
            .unwrap()
            .unwrap();
        assert_eq!(c.image.as_deref(), Some(DEFAULT_IMAGE));
        assert_eq!(c.command[..2], ["/bin/sh".to_string(), "-c".to_string()]);
        assert_eq!(c.volume_mounts[0].mount_path.as_deref(), Some("/vk/creds"));
        let var = &c.env["VK_0_0_0"];
        assert!(var.value.is_none());
        assert_eq!(
            var.secret_value.as_ref().map(Secret::expose),
            Some("aHVudGVyMg==")
        );
        assert!(!format!("{c:?}").contains("aHVudGVyMg"));
        assert_eq!(writer(&[], None, DEFAULT_IMAGE, no_size).unwrap(), None);
    }
}
