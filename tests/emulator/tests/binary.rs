//! The binary's contract with scripts: key=value lines on stdout, then a clean SIGTERM exit.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn prints_addresses_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stackpath-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ssh-listen",
            "127.0.0.1:0",
            "--tls",
            "--run-containers",
            "--stack-id",
            "s1",
            "--stack-id",
            "s2",
            "--city-code",
            "DFW",
            "--city-code",
            "AMS",
            // The hostile-fault and restart flags parse (huge values included).
            "--token-expires-in",
            "18446744073709551615",
            "--retry-after-seconds",
            "18446744073709551615",
            "--retry-after-header",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "--hang-rate",
            "0",
            "--oversize-body-bytes",
            "0",
            "--container-restart",
            "never",
            "--restart-backoff-ms",
            "100",
            "--restart-backoff-max-ms",
            "200",
        ])
        .arg("--ca-out")
        .arg(d.join("ca.pem"))
        .arg("--ssh-host-key")
        .arg(d.join("hk"))
        .arg("--state")
        .arg(d.join("state.json"))
        .env("SP_CLIENT_SECRET", "from-env")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut kv = HashMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l == "ready=1" {
                break;
            }
            let (k, v) = l.split_once('=').unwrap();
            kv.insert(k.to_string(), v.to_string());
        }
    })
    .await
    .expect("ready=1 within 30 s");
    for k in [
        "base_url",
        "ssh_addr",
        "ssh_fingerprint",
        "ssh_host_key",
        "ca_file",
    ] {
        assert!(kv.contains_key(k), "{k} missing: {kv:?}");
    }
    assert!(kv["base_url"].starts_with("https://127.0.0.1:"));
    assert!(kv["ssh_host_key"].starts_with("ssh-ed25519 "));
    let pem = std::fs::read(&kv["ca_file"]).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let base = &kv["base_url"];
    let r = client
        .post(format!("{base}/identity/v1/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "from-env"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tok["expires_in"].as_u64(), Some(u64::MAX));
    let r = client
        .get(format!("{base}/workload/v1/locations"))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let loc: serde_json::Value = r.json().await.unwrap();
    let cities: Vec<&str> = loc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cityCode"].as_str().unwrap())
        .collect();
    assert_eq!(cities, ["DFW", "AMS"]);

    // SIGTERM: clean exit, state written, secret never logged.
    let pid = child.id().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(d.join("state.json").exists());
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(!err.contains("from-env"), "secret in logs: {err}");
}
