//! State persistence across restarts, and HTTPS with the generated CA.

mod common;

use common::*;
use stackpath_emulator::EmulatorConfig;

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let cfg = || EmulatorConfig {
        state_file: Some(state.clone()),
        ..fast_config()
    };
    let emu = start(cfg()).await;
    let api = Api::new(&emu).await;
    let (_, w) = api.create(&workload("keeper", container(None))).await;
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    let (_, gone) = api.create(&workload("goner", container(None))).await;
    let gone_id = gone["workload"]["id"].as_str().unwrap().to_string();
    api.call(
        reqwest::Method::DELETE,
        &api.url(&format!("/workloads/{gone_id}")),
        None,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    emu.shutdown().await;
    assert!(state.exists());

    let emu = start(cfg()).await;
    let api = Api::new(&emu).await; // tokens do not survive; a new one is needed
    let (s, got) = api.get(&format!("/workloads/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(got["workload"], w["workload"]);
    assert_eq!(api.get(&format!("/workloads/{gone_id}")).await.0, 404);
    // The slug is still taken, and new workloads page after the old ones.
    assert_eq!(
        api.create(&workload("keeper", container(None))).await.0,
        409
    );
    assert_eq!(api.create(&workload("newer", container(None))).await.0, 200);
    let (_, page) = api.get("/workloads").await;
    let slugs: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["keeper", "newer"]);
    api.wait_phase(&id, "keeper-city-code-dfw-0", "RUNNING", 5)
        .await;
    emu.shutdown().await;

    // A corrupt state file is refused with a message naming it.
    std::fs::write(&state, "{not json").unwrap();
    let err = stackpath_emulator::start(cfg(), loopback(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
}

#[tokio::test]
async fn https_with_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let emu = start(EmulatorConfig {
        tls: true,
        ca_out: Some(ca_path.clone()),
        ..fast_config()
    })
    .await;
    assert!(emu.base_url.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(&ca_path).unwrap();
    assert_eq!(Some(String::from_utf8(pem.clone()).unwrap()), emu.ca_pem);

    // Trusting only the CA: works for 127.0.0.1 and localhost.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let port = emu.http_addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let r = client
            .post(format!("https://{host}:{port}/identity/v1/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "emulator-client"),
                ("client_secret", "emulator-secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // Without the CA the certificate is refused.
    let plain = reqwest::Client::builder().build().unwrap();
    assert!(
        plain
            .get(format!("{}/_emulator/health", emu.base_url))
            .send()
            .await
            .is_err()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn https_with_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let emu = start(EmulatorConfig {
        tls: true,
        tls_cert: Some(cert_path),
        tls_key: Some(key_path.clone()),
        ..fast_config()
    })
    .await;
    assert!(emu.ca_pem.is_none());
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/_emulator/health", emu.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    emu.shutdown().await;

    // A key file without a key is refused with a message.
    std::fs::write(&key_path, "nothing here").unwrap();
    let err = stackpath_emulator::start(
        EmulatorConfig {
            tls: true,
            tls_cert: Some(dir.path().join("c.pem")),
            tls_key: Some(key_path),
            ..fast_config()
        },
        loopback(),
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
}
