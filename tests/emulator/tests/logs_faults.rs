//! Logs (tail, since, timestamps, limit, follow with a server cut), faults and stats.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

async fn running(api: &Api, slug: &str) -> (String, String) {
    let (s, w) = api.create(&workload(slug, container(None))).await;
    assert_eq!(s, 200, "{w}");
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    let name = format!("{slug}-city-code-dfw-0");
    api.wait_phase(&id, &name, "RUNNING", 5).await;
    (id, name)
}

#[tokio::test]
async fn logs_options() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let (id, name) = running(&api, "logger").await;
    tokio::time::sleep(Duration::from_millis(700)).await; // ~7 lines at 100 ms

    let (s, all) = api.logs(&id, &name, "").await;
    assert_eq!(s, 200);
    let n_all = all.lines().count();
    assert!(n_all >= 5, "{all}");
    assert!(all.lines().all(|l| l.contains("emulated log line")));

    let (_, tail) = api.logs(&id, &name, "tail_lines=2").await;
    assert_eq!(tail.lines().count(), 2);

    let (_, ts) = api.logs(&id, &name, "tail_lines=1&timestamps=true").await;
    let first = ts.split(' ').next().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(first).expect("RFC 3339 prefix");
    assert_eq!(
        first.split('.').nth(1).unwrap().len(),
        10,
        "nanoseconds + Z: {first}"
    );
    assert!(parsed.timestamp() > 0);

    let (_, lim) = api.logs(&id, &name, "limit_bytes=10").await;
    assert_eq!(lim.len(), 10);

    let (_, since) = api.logs(&id, &name, "since_seconds=1").await;
    assert!(since.lines().count() <= n_all + 2);
    let (s, v) = api
        .logs(
            &id,
            &name,
            "since_seconds=1&since_time=2020-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let (s, _) = api.logs(&id, &name, "container_name=nope").await;
    assert_eq!(s, 400);
    let (s, _) = api.logs(&id, &name, "previous=true").await;
    assert_eq!(s, 400, "no previous generation yet");

    // Content type is text/plain.
    let r = api
        .client
        .get(api.url(&format!("/workloads/{id}/instances/{name}/logs")))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn follow_streams_then_server_cuts() {
    let emu = start(fast_config()).await; // cut after 2 s
    let api = Api::new(&emu).await;
    let (id, name) = running(&api, "follower").await;
    let started = Instant::now();
    let r = api
        .client
        .get(api.url(&format!(
            "/workloads/{id}/instances/{name}/logs?follow=true&tail_lines=0"
        )))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut chunks = Vec::new();
    let mut first_at = None;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        first_at.get_or_insert(started.elapsed());
        chunks.push(c);
    }
    let took = started.elapsed();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    // Lines arrive as they are made (streamed, not buffered until the end)...
    assert!(
        first_at.unwrap() < Duration::from_millis(1000),
        "first chunk at {first_at:?}"
    );
    assert!(text.lines().count() >= 10, "{text}");
    // ...and the server ends the stream at the cut time; the client must resume.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_errors_429_latency_drop_and_stats() {
    let emu = start(fast_config()).await;
    let api = Api::new(&emu).await;
    let admin = format!("{}/_emulator", api.base);
    let c = http();
    let put = |f: Value| {
        let c = c.clone();
        let admin = admin.clone();
        async move {
            let r = c
                .put(format!("{admin}/faults"))
                .json(&f)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    // 429 burst with Retry-After, counted down.
    put(json!({"rate_limit_burst": 3, "retry_after_seconds": 7})).await;
    for _ in 0..3 {
        let r = c
            .get(api.url("/workloads"))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], 8);
    }
    assert_eq!(api.get("/workloads").await.0, 200);
    let f: Value = c
        .get(format!("{admin}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f["rate_limit_burst"], 0);

    // Error rate 1.0: every call is a 5xx with code 13 or 14; admin stays reachable.
    put(json!({"error_rate": 1.0})).await;
    for _ in 0..6 {
        let (s, v) = api.get("/workloads").await;
        assert!(s == 500 || s == 503, "{s}");
        assert!(v["code"] == 13 || v["code"] == 14);
    }
    put(json!({"error_rate": 0.5})).await;
    let mut errors = 0;
    for _ in 0..60 {
        if api.get("/workloads").await.0 >= 500 {
            errors += 1;
        }
    }
    assert!((10..=50).contains(&errors), "{errors} of 60 at rate 0.5");

    // Latency.
    put(json!({"latency_ms": 300})).await;
    let t = Instant::now();
    assert_eq!(api.get("/workloads").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Drop: the create happens but the response is lost.
    put(json!({"drop_rate": 1.0})).await;
    let r = c
        .post(api.url("/workloads"))
        .bearer_auth(&api.token)
        .json(&workload("lost-response", container(None)))
        .send()
        .await;
    assert!(r.is_err(), "expected a dropped connection, got {r:?}");
    put(json!({})).await;
    let (_, page) = api
        .get("/workloads?page_request.filter=slug%3D%22lost-response%22")
        .await;
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        1,
        "the dropped create took effect"
    );

    // Stats keyed by the spec's route templates; reset.
    let stats: Value = c
        .get(format!("{admin}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["routes"]["GET /workload/v1/stacks/{stack_id}/workloads"]
            .as_u64()
            .unwrap()
            >= 70
    );
    assert_eq!(
        stats["routes"]["POST /workload/v1/stacks/{stack_id}/workloads"],
        1
    );
    assert_eq!(stats["routes"]["POST /identity/v1/oauth2/token"], 1);
    let total = stats["total"].as_u64().unwrap();
    let sum: u64 = stats["routes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, sum);
    let r = c.post(format!("{admin}/reset")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, w) = api.create(&workload("counted", container(None))).await;
    let id = w["workload"]["id"].as_str().unwrap();
    let body = workload("counted", container(None));
    assert_eq!(
        api.call(
            Method::PUT,
            &api.url(&format!("/workloads/{id}")),
            Some(&body)
        )
        .await
        .0,
        200
    );
    let stats: Value = c
        .get(format!("{admin}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 2);
    assert_eq!(
        stats["routes"]["PUT /workload/v1/stacks/{workload.stack_id}/workloads/{workload.id}"],
        1
    );

    // The token endpoint is spared unless asked for.
    put(json!({"error_rate": 1.0})).await;
    let _ = token(&api.base).await;
    put(json!({"error_rate": 1.0, "include_token_endpoint": true})).await;
    let r = c
        .post(format!("{}/identity/v1/oauth2/token", api.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error());
    put(json!({})).await;

    // Invalid fault settings are refused.
    let r = c
        .put(format!("{admin}/faults"))
        .json(&json!({"error_rate": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}
