//! The SSH container console, driven by the system OpenSSH client (password via
//! SSH_ASKPASS, host key pinned in known_hosts) and by a russh client for PTY resizing and
//! signals. CI must have `ssh` (openssh-client) installed.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Sig};
use stackpath_emulator::{EmulatorConfig, RunningEmulator};
use tokio::io::AsyncWriteExt;

const INSTANCE: &str = "shell-city-code-dfw-0";

fn user() -> String {
    format!("{STACK}.{INSTANCE}.app.emulator-client")
}

async fn console(dir: &Path) -> (RunningEmulator, Api) {
    let cfg = EmulatorConfig {
        ssh_host_key: Some(dir.join("host_key")),
        ..fast_config()
    };
    let emu = stackpath_emulator::start(cfg, loopback(), Some(loopback()))
        .await
        .unwrap();
    let api = Api::new(&emu).await;
    let (s, w) = api.create(&workload("shell", container(None))).await;
    assert_eq!(s, 200);
    api.wait_phase(
        w["workload"]["id"].as_str().unwrap(),
        INSTANCE,
        "RUNNING",
        5,
    )
    .await;
    (emu, api)
}

/// Run the system ssh client; returns (exit code, stdout, stderr).
async fn ssh(
    emu: &RunningEmulator,
    dir: &Path,
    password: &str,
    user: &str,
    extra: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    // Options first, then the destination, then the command (the last element).
    let (command, opts) = extra.split_last().unwrap();
    ssh_run(emu, dir, password, user, opts, command, stdin).await
}

async fn ssh_run(
    emu: &RunningEmulator,
    dir: &Path,
    password: &str,
    user: &str,
    opts: &[&str],
    command: &str,
    stdin: &[u8],
) -> (i32, String, String) {
    let askpass = dir.join(format!("askpass-{}.sh", password.len()));
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let addr = emu.ssh_addr.unwrap();
    let known = dir.join("known_hosts");
    if !known.exists() {
        std::fs::write(
            &known,
            format!(
                "[127.0.0.1]:{} {}\n",
                addr.port(),
                emu.ssh_host_key_openssh.as_ref().unwrap()
            ),
        )
        .unwrap();
    }
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "none")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-p", &addr.port().to_string()])
        .args(opts)
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("the system ssh client (openssh-client) must be installed");
    let mut sin = child.stdin.take().unwrap();
    sin.write_all(stdin).await.unwrap();
    drop(sin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn system_ssh_exec_stdin_exit_status_pty_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, _api) = console(dir.path()).await;
    let u = user();

    // Exec without a PTY: env from the spec, stdin forwarded to EOF, stderr separate, exit code.
    let (code, out, err) = ssh(
        &emu,
        dir.path(),
        "emulator-secret",
        &u,
        &["echo $FOO $SECRET $HOSTNAME; tr a-z A-Z; echo oops >&2; exit 7"],
        b"from stdin\n",
    )
    .await;
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(out, format!("bar s3cret {INSTANCE}\nFROM STDIN\n"));
    assert!(err.contains("oops"), "{err}");

    // Quoting: the command string goes to sh -c as is.
    let (code, out, _) = ssh(
        &emu,
        dir.path(),
        "emulator-secret",
        &u,
        &["printf '%s|' 'a b' \"c\"; echo"],
        b"",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "a b|c|\n"));

    // With a PTY (-tt): a real terminal.
    let (code, out, err) = ssh(
        &emu,
        dir.path(),
        "emulator-secret",
        &u,
        &["-tt", "tty; exit 4"],
        b"",
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(out.contains("/dev/pts/"), "{out}");

    // Wrong password, unknown container, wrong client id: rejected.
    let (code, _, err) = ssh(&emu, dir.path(), "wrong", &u, &["true"], b"").await;
    assert_eq!(code, 255);
    assert!(err.contains("Permission denied"), "{err}");
    for bad in [
        format!("{STACK}.{INSTANCE}.nope.emulator-client"),
        format!("{STACK}.{INSTANCE}.app.other-client"),
        format!("other-stack.{INSTANCE}.app.emulator-client"),
    ] {
        let (code, _, _) = ssh(&emu, dir.path(), "emulator-secret", &bad, &["true"], b"").await;
        assert_eq!(code, 255, "{bad}");
    }

    // Host key pinning: a different pinned key makes the client refuse the server.
    let key2 = dir.path().join("other");
    std::fs::create_dir(&key2).unwrap();
    let other = stackpath_emulator::start(
        EmulatorConfig {
            ssh_host_key: Some(key2.join("hk")),
            ..fast_config()
        },
        loopback(),
        Some(loopback()),
    )
    .await
    .unwrap();
    std::fs::write(
        dir.path().join("known_hosts"),
        format!(
            "[127.0.0.1]:{} {}\n",
            emu.ssh_addr.unwrap().port(),
            other.ssh_host_key_openssh.as_ref().unwrap()
        ),
    )
    .unwrap();
    let (code, _, err) = ssh(&emu, dir.path(), "emulator-secret", &u, &["true"], b"").await;
    assert_eq!(code, 255);
    assert!(
        err.contains("HOST IDENTIFICATION HAS CHANGED") || err.contains("verification failed"),
        "{err}"
    );
    other.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn host_key_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/host_key");
    let start = || {
        stackpath_emulator::start(
            EmulatorConfig {
                ssh_host_key: Some(key.clone()),
                ..fast_config()
            },
            loopback(),
            Some(loopback()),
        )
    };
    let a = start().await.unwrap();
    let fp = a.ssh_fingerprint.clone().unwrap();
    assert!(fp.starts_with("SHA256:"));
    a.shutdown().await;
    let b = start().await.unwrap();
    assert_eq!(b.ssh_fingerprint.as_deref(), Some(fp.as_str()));
    b.shutdown().await;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "host key readable by others");
}

struct Pinned(String);

impl client::Handler for Pinned {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.to_openssh().ok().as_deref() == Some(self.0.as_str())
            }
            _ => false,
        })
    }
}

async fn russh_session(emu: &RunningEmulator) -> client::Handle<Pinned> {
    let cfg = Arc::new(client::Config::default());
    let mut s = client::connect(
        cfg,
        emu.ssh_addr.unwrap(),
        Pinned(emu.ssh_host_key_openssh.clone().unwrap()),
    )
    .await
    .unwrap();
    assert!(
        s.authenticate_password(user(), "emulator-secret")
            .await
            .unwrap()
            .success()
    );
    s
}

/// Read channel output until `want` appears; returns everything read.
async fn read_until(ch: &mut russh::Channel<client::Msg>, want: &str) -> String {
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains(want) {
        let msg = tokio::time::timeout_at(deadline, ch.wait())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {want:?}; got {got:?}"));
        match msg {
            Some(ChannelMsg::Data { data }) => got.push_str(&String::from_utf8_lossy(&data)),
            Some(_) => {}
            None => panic!("channel closed before {want:?}; got {got:?}"),
        }
    }
    got
}

async fn exit_status(ch: &mut russh::Channel<client::Msg>) -> u32 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ch.wait())
            .await
            .unwrap()
        {
            Some(ChannelMsg::ExitStatus { exit_status }) => return exit_status,
            Some(_) => {}
            None => panic!("channel closed without an exit status"),
        }
    }
}

#[tokio::test]
async fn russh_pty_window_change_signal_and_eof() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, _api) = console(dir.path()).await;
    let s = russh_session(&emu).await;

    // PTY size from the request, then resized by window-change.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 100, 30, 0, 0, &[])
        .await
        .unwrap();
    ch.exec(true, "stty size; read x; stty size; exit 0")
        .await
        .unwrap();
    read_until(&mut ch, "30 100").await;
    ch.window_change(120, 40, 0, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    ch.data_bytes(&b"go\n"[..]).await.unwrap();
    read_until(&mut ch, "40 120").await;
    assert_eq!(exit_status(&mut ch).await, 0);

    // A signal reaches the process: TERM → 128 + 15.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.exec(true, "echo started; exec sleep 30").await.unwrap();
    read_until(&mut ch, "started").await;
    ch.signal(Sig::TERM).await.unwrap();
    assert_eq!(exit_status(&mut ch).await, 143);

    // Stdin EOF without a PTY ends `cat`.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.exec(true, "cat; echo done").await.unwrap();
    ch.data_bytes(&b"ping\n"[..]).await.unwrap();
    ch.eof().await.unwrap();
    let out = read_until(&mut ch, "done").await;
    assert_eq!(out, "ping\ndone\n");
    assert_eq!(exit_status(&mut ch).await, 0);

    // An interactive shell on a PTY.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    ch.request_shell(true).await.unwrap();
    ch.data_bytes(&b"echo $((6*7))x; exit 3\n"[..])
        .await
        .unwrap();
    read_until(&mut ch, "42x").await;
    assert_eq!(exit_status(&mut ch).await, 3);

    // Stdin EOF with a PTY (^D) ends `cat` too.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    ch.exec(true, "cat; echo done-pty").await.unwrap();
    ch.eof().await.unwrap();
    read_until(&mut ch, "done-pty").await;
    assert_eq!(exit_status(&mut ch).await, 0);

    // A client that goes away does not leave its command running.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.exec(true, "echo pid=$$.; exec sleep 60").await.unwrap();
    let out = read_until(&mut ch, ".").await;
    let pid: i32 = out
        .trim()
        .trim_start_matches("pid=")
        .trim_end_matches('.')
        .parse()
        .unwrap();
    let proc_path = format!("/proc/{pid}");
    assert!(Path::new(&proc_path).exists());
    s.disconnect(russh::Disconnect::ByApplication, "bye", "")
        .await
        .unwrap();
    drop(ch);
    let mut gone = false;
    for _ in 0..100 {
        let zombie_or_gone = std::fs::read_to_string(format!("{proc_path}/stat"))
            .map(|st| st.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
            .unwrap_or(true);
        if zombie_or_gone {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "exec process {pid} outlived its SSH session");
    emu.shutdown().await;
}

#[tokio::test]
async fn exec_sees_the_containers_volume_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmulatorConfig {
        run_containers: true,
        ..fast_config()
    };
    let emu = stackpath_emulator::start(cfg, loopback(), Some(loopback()))
        .await
        .unwrap();
    let api = Api::new(&emu).await;
    let mount = format!("/var/lib/stackpath-emulator-exec-{}", std::process::id());
    let mut body = workload(
        "shell",
        container(Some(vec![
            "sh",
            "-c",
            &format!("echo from-the-container > {mount}/note; sleep 3600"),
        ])),
    );
    body["workload"]["spec"]["containers"]["app"]["volumeMounts"] =
        serde_json::json!([{"slug": "data", "mountPath": mount}]);
    let (s, w) = api.create(&body).await;
    assert_eq!(s, 200, "{w}");
    api.wait_phase(
        w["workload"]["id"].as_str().unwrap(),
        INSTANCE,
        "RUNNING",
        10,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, err) = ssh(
        &emu,
        dir.path(),
        "emulator-secret",
        &user(),
        &[&format!(
            "cat {mount}/note; echo from-exec > {mount}/back; pwd"
        )],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from-the-container"), "{out}");
    assert!(lines.next().unwrap().ends_with("/app"), "{out}");
    assert!(
        std::fs::symlink_metadata(&mount).is_err(),
        "{mount} must not exist on this machine"
    );
    emu.shutdown().await;
}
