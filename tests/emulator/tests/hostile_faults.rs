//! Faults for hardening clients: errors echoing the request, absurd `Retry-After` and
//! `expires_in`, oversized bodies, and requests that are never answered.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stackpath_emulator::Faults;

#[tokio::test]
async fn errors_echo_the_request_body_secrets_included() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    emu.set_faults(Faults {
        echo_request_in_errors: true,
        ..Faults::default()
    });
    let body = workload("echoed", container(Some(vec!["true"])));
    for (method, path) in [
        (reqwest::Method::POST, "/workloads".to_string()),
        (reqwest::Method::PUT, "/workloads/echoed".to_string()),
        (reqwest::Method::PATCH, "/workloads/echoed".to_string()),
    ] {
        let (s, v) = api.call(method.clone(), &api.url(&path), Some(&body)).await;
        assert_eq!((s, v["code"].as_i64()), (400, Some(3)), "{method} {v}");
        // The secret env value and the whole body come back in message and details.
        assert!(v["message"].as_str().unwrap().contains("s3cret"), "{v}");
        let details = v["details"].to_string();
        assert!(details.contains("stackpath.rpc.BadRequest"), "{details}");
        assert!(details.contains("s3cret"), "{details}");
        let serving: Value =
            serde_json::from_str(v["details"][1]["servingData"].as_str().unwrap()).unwrap();
        assert_eq!(serving, body);
    }
    // Nothing was created; reads are not affected.
    let (s, v) = api.get("/workloads").await;
    assert_eq!(s, 200);
    assert_eq!(v["pageInfo"]["totalCount"], "0");
    emu.set_faults(Faults::default());
    assert_eq!(api.create(&body).await.0, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn retry_after_of_any_size_or_form() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    emu.set_faults(Faults {
        rate_limit_burst: 1,
        retry_after_seconds: u64::MAX,
        ..Faults::default()
    });
    let r = api
        .client
        .get(api.url("/workloads"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "18446744073709551615");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["details"][0]["retryDelay"], "18446744073709551615s");

    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    emu.set_faults(Faults {
        rate_limit_burst: 2,
        retry_after_header: Some(date.into()),
        ..Faults::default()
    });
    for want in [date, date] {
        let r = api
            .client
            .get(api.url("/workloads"))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], want);
    }
    assert_eq!(api.get("/workloads").await.0, 200, "the burst is spent");

    // A header value HTTP cannot carry is refused where faults are set.
    let r = api
        .client
        .put(format!("{}/_emulator/faults", api.base))
        .json(&json!({"retry_after_header": "line\nbreak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("retry_after_header"),
        "{v}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn token_expires_in_override_and_the_token_still_works() {
    let emu = start(fast_config()).await;
    emu.set_faults(Faults {
        token_expires_in: Some(u64::MAX),
        ..Faults::default()
    });
    let r = http()
        .post(format!("{}/identity/v1/oauth2/token", emu.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("\"expires_in\":18446744073709551615"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let token = v["access_token"].as_str().unwrap();
    let r = http()
        .get(format!(
            "{}/workload/v1/stacks/{STACK}/workloads",
            emu.base_url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_valid_json_padded_to_the_size() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let (_, w) = api.create(&workload("big", container(None))).await;
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    const SIZE: u64 = 3 * 1024 * 1024 + 17;
    emu.set_faults(Faults {
        oversize_body_bytes: SIZE,
        ..Faults::default()
    });
    for path in ["/workloads".to_string(), format!("/workloads/{id}")] {
        let r = api
            .client
            .get(api.url(&path))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-length").is_none());
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len() as u64, SIZE, "{path}");
        let v: Value = serde_json::from_slice(&body).expect("still JSON");
        assert!(v.is_object());
    }
    // Errors are not padded.
    let (s, _) = api.get("/workloads/nope").await;
    assert_eq!(s, 404);
    let r = api
        .client
        .get(api.url("/workloads/nope"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap().len() < 1000);
    emu.shutdown().await;
}

#[tokio::test]
async fn hung_requests_are_never_answered_nor_carried_out() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    emu.set_faults(Faults {
        hang_rate: 1.0,
        ..Faults::default()
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .post(api.url("/workloads"))
        .bearer_auth(&api.token)
        .json(&workload("hung", container(None)))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(650));
    emu.set_faults(Faults::default());
    let (s, v) = api.get("/workloads").await;
    assert_eq!(s, 200);
    assert_eq!(
        v["pageInfo"]["totalCount"], "0",
        "the hung create did not run"
    );
    // The stats saw the call.
    assert_eq!(
        emu.stats()["routes"]["POST /workload/v1/stacks/{stack_id}/workloads"],
        1
    );
    emu.shutdown().await;
}
