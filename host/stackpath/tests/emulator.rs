//! The client against the in-process StackPath emulator: real HTTP(S), real OAuth2, injected
//! faults. Every server binds 127.0.0.1 on a free port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use stackpath_client::model::{
    ContainerSpec, DeploymentSpec, EnvironmentVariable, InstancePhase, IpFamily, MatchExpression,
    Metadata, MetricsQuery, NetworkInterface, PageRequest, ResourceRequirements, Target,
    TargetSpec, Workload, WorkloadSpec,
};
use stackpath_client::{
    CallObserver, Client, Config, Error, LogOptions, RateLimit, RetryPolicy, routes,
};
use stackpath_emulator::{EmulatorConfig, Faults, RunningEmulator};

const STACK: &str = "demo-stack";
const CLIENT_ID: &str = "emulator-client";
const SECRET: &str = "emulator-secret";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

async fn emulator(config: EmulatorConfig) -> RunningEmulator {
    stackpath_emulator::start(config, loopback(), None)
        .await
        .expect("emulator starts")
}

/// A configuration with quick retries, so fault tests stay short.
fn config(base: &str) -> Config {
    let mut c = Config::new(base, STACK, CLIENT_ID, SECRET).expect("config");
    c.retry = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(10),
    };
    c.rate_limit = None;
    c.request_timeout = Duration::from_secs(10);
    c
}

fn client(emu: &RunningEmulator) -> Client {
    Client::new(config(&emu.base_url)).expect("client")
}

fn workload(slug: &str) -> Workload {
    let container = ContainerSpec {
        image: Some("nginx:1.27".into()),
        command: vec!["/bin/sh".into()],
        args: vec!["-c".into(), "echo hello; sleep 3600".into()],
        env: BTreeMap::from([
            ("PLAIN".to_owned(), EnvironmentVariable::value("v")),
            (
                "TOKEN".to_owned(),
                EnvironmentVariable::secret("env-secret-value"),
            ),
        ]),
        resources: Some(ResourceRequirements {
            requests: BTreeMap::from([("cpu".into(), "1".into()), ("memory".into(), "2Gi".into())]),
            limits: BTreeMap::from([("cpu".into(), "1".into()), ("memory".into(), "2Gi".into())]),
        }),
        ..ContainerSpec::default()
    };
    Workload {
        name: Some(slug.into()),
        slug: Some(slug.into()),
        metadata: Some(Metadata {
            labels: BTreeMap::from([
                ("vk-pod-name".into(), slug.into()),
                ("vk-pod-namespace".into(), "default".into()),
                ("vk-node-name".into(), "vk-test".into()),
            ]),
            ..Metadata::default()
        }),
        spec: Some(WorkloadSpec {
            network_interfaces: vec![NetworkInterface {
                network: Some("default".into()),
                ip_families: vec![IpFamily::IPv4],
                enable_one_to_one_nat: Some(true),
                ..NetworkInterface::default()
            }],
            containers: BTreeMap::from([("app".to_owned(), container)]),
            ..WorkloadSpec::default()
        }),
        targets: BTreeMap::from([(
            "city-code".to_owned(),
            Target {
                spec: Some(TargetSpec {
                    deployment_scope: Some("cityCode".into()),
                    deployments: Some(DeploymentSpec {
                        min_replicas: Some(1),
                        max_replicas: Some(1),
                        selectors: vec![MatchExpression {
                            key: Some("cityCode".into()),
                            operator: Some("in".into()),
                            values: vec!["DFW".into()],
                        }],
                        ..DeploymentSpec::default()
                    }),
                }),
            },
        )]),
        ..Workload::default()
    }
}

/// `GET /_emulator/stats`, through a plain HTTP client (the admin interface is public).
async fn stats(emu: &RunningEmulator) -> serde_json::Value {
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(emu.ca_pem.clone().unwrap_or_default().as_bytes())
                .unwrap_or_else(|_| reqwest::Certificate::from_der(&[]).expect("cert")),
        )
        .build()
        .expect("http");
    http.get(format!("{}/_emulator/stats", emu.base_url))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json")
}

fn route_count(stats: &serde_json::Value, key: &str) -> u64 {
    stats["routes"][key].as_u64().unwrap_or(0)
}

fn status_count(stats: &serde_json::Value, status: u16) -> u64 {
    stats["statuses"][status.to_string()].as_u64().unwrap_or(0)
}

async fn wait_running(c: &Client, workload_id: &str, instance: &str) {
    for _ in 0..100 {
        match c.get_instance(workload_id, instance).await {
            Ok(i) if i.phase == Some(InstancePhase::Running) => return,
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("get instance: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance {instance} never reached RUNNING");
}

/// Records what the observer hook sees.
#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, String, Option<u16>)>>);

impl CallObserver for Recorder {
    fn observe(&self, route: &'static str, method: &str, status: Option<u16>, _elapsed: Duration) {
        self.0
            .lock()
            .expect("lock")
            .push((route, method.to_owned(), status));
    }
}

#[tokio::test]
async fn every_operation_round_trips() {
    let emu = emulator(EmulatorConfig::default()).await;
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config(&emu.base_url);
    cfg.observer = Some(recorder.clone());
    let c = Client::new(cfg).expect("client");

    let cities: Vec<String> = c
        .list_all_locations()
        .await
        .expect("locations")
        .into_iter()
        .filter_map(|l| l.city_code)
        .collect();
    assert!(cities.contains(&"DFW".to_owned()), "{cities:?}");

    let created = c
        .create_workload(&workload("default-web"))
        .await
        .expect("create");
    let id = created.id.clone().expect("id assigned");
    assert_eq!(created.stack_id.as_deref(), Some(STACK));
    assert!(
        created
            .metadata
            .as_ref()
            .and_then(|m| m.created_at)
            .is_some()
    );

    let got = c.get_workload(&id).await.expect("get");
    assert_eq!(got.slug.as_deref(), Some("default-web"));
    assert_eq!(
        got.metadata.as_ref().unwrap().labels["vk-node-name"],
        "vk-test"
    );

    let found = c
        .find_workload_by_slug("default-web")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id.as_deref(), Some(id.as_str()));
    assert!(
        c.find_workload_by_slug("no-such")
            .await
            .expect("find")
            .is_none()
    );

    let instance = "default-web-city-code-dfw-0";
    wait_running(&c, &id, instance).await;
    let instances = c.list_all_instances(&id).await.expect("instances");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].name.as_deref(), Some(instance));
    assert!(instances[0].ip_address.is_some());

    let logs = c
        .instance_logs(
            &id,
            instance,
            &LogOptions {
                tail_lines: Some(2),
                ..LogOptions::default()
            },
        )
        .await
        .expect("logs")
        .collect_bytes()
        .await
        .expect("log bytes");
    assert!(!logs.is_empty());

    let now = chrono::Utc::now();
    let metrics = c
        .metrics(&MetricsQuery::instance(
            &id,
            instance,
            now - chrono::Duration::minutes(10),
            now,
        ))
        .await
        .expect("metrics");
    assert!(!metrics.series().is_empty(), "{metrics:?}");
    let cpu = metrics.latest("cpu").expect("cpu sample");
    let memory = metrics.latest("memory").expect("memory sample");
    assert!(cpu > 0.0 && memory > 0.0, "cpu {cpu} memory {memory}");

    // PUT replaces the spec.
    let mut changed = got.clone();
    changed
        .spec
        .as_mut()
        .unwrap()
        .containers
        .get_mut("app")
        .unwrap()
        .env
        .insert("NEW".into(), EnvironmentVariable::value("1"));
    let updated = c.update_workload(&id, &changed).await.expect("put");
    assert!(
        updated.spec.as_ref().unwrap().containers["app"]
            .env
            .contains_key("NEW")
    );
    assert_ne!(
        updated.metadata.as_ref().unwrap().version,
        got.metadata.as_ref().unwrap().version
    );

    c.restart_instance(&id, instance).await.expect("restart");

    // Creating again resolves the conflict to the existing workload.
    let again = c
        .create_workload(&workload("default-web"))
        .await
        .expect("create again");
    assert_eq!(again.id.as_deref(), Some(id.as_str()));

    c.delete_workload(&id).await.expect("delete");
    // Deleting moves through DELETING, then the workload is gone.
    let mut gone = false;
    for _ in 0..100 {
        match c.get_workload(&id).await {
            Err(Error::NotFound { .. }) => {
                gone = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(gone, "workload never disappeared");
    let err = c.delete_workload(&id).await.expect_err("second delete");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .contains("DELETE /workload/v1/stacks/{stack_id}/workloads/{workload_id}"),
        "{err}"
    );

    let seen = recorder.0.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|(r, m, s)| *r == routes::TOKEN.route && m == "POST" && *s == Some(200))
    );
    assert!(
        seen.iter()
            .any(|(r, m, s)| *r == routes::PUT_WORKLOAD.route && m == "PUT" && *s == Some(200))
    );
    assert!(
        seen.iter()
            .any(|(r, _, s)| *r == routes::DELETE_WORKLOAD.route && *s == Some(404))
    );
    // The route keys agree with the emulator's (the spec's templates).
    let st = stats(&emu).await;
    for op in [
        routes::CREATE_WORKLOAD,
        routes::GET_WORKLOAD,
        routes::PUT_WORKLOAD,
        routes::GET_METRICS,
    ] {
        assert!(
            route_count(&st, &format!("{} {}", op.method, op.route)) > 0,
            "{op} not counted: {st}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn stack_metrics_attribute_every_instance() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client(&emu);
    let mut expected = BTreeMap::new();
    for slug in ["metrics-a", "metrics-b"] {
        let id = c
            .create_workload(&workload(slug))
            .await
            .expect("create")
            .id
            .expect("id");
        let instance = format!("{slug}-city-code-dfw-0");
        wait_running(&c, &id, &instance).await;
        expected.insert(instance, id);
    }
    let now = chrono::Utc::now();
    let before = route_count(
        &stats(&emu).await,
        "GET /workload/v1/stacks/{stack_id}/metrics",
    );
    let m = c
        .stack_metrics(now - chrono::Duration::minutes(5), now)
        .await
        .expect("stack metrics");
    let after = route_count(
        &stats(&emu).await,
        "GET /workload/v1/stacks/{stack_id}/metrics",
    );
    assert_eq!(after - before, 1, "one call for the whole stack");
    for name in ["cpu", "memory"] {
        let by_owner = m.latest_by_owner(name);
        let seen: BTreeMap<String, String> = by_owner
            .iter()
            .map(|(owner, value)| {
                assert!(*value > 0.0, "{name} {owner:?} {value}");
                (
                    owner.instance_name.clone().expect("instance label"),
                    owner.workload_id.clone().expect("workload label"),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{name}: {m:?}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn token_expiry_mid_run_is_transparent() {
    let emu = emulator(EmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu);
    let w = c
        .create_workload(&workload("expiring"))
        .await
        .expect("create");
    let id = w.id.expect("id");
    // 3 s of calls over 1 s tokens: several refreshes, no error reaches the caller.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut calls = 0;
    while tokio::time::Instant::now() < deadline {
        c.get_workload(&id).await.expect("get across token expiry");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = stats(&emu).await;
    let tokens = route_count(&st, "POST /identity/v1/oauth2/token");
    assert!(
        tokens >= 3,
        "expected refreshes, got {tokens} token calls for {calls} calls"
    );
    assert!(tokens <= 6, "refreshing too often: {tokens}");
    assert_eq!(
        status_count(&st, 401),
        0,
        "refresh ahead of expiry should avoid any 401: {st}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn rejected_token_is_refreshed_once() {
    // An emulator restart forgets the tokens it issued: the client's cached token gets a 401,
    // which must cost one refresh and one retry, invisibly.
    let first = emulator(EmulatorConfig::default()).await;
    let addr = first.http_addr;
    let c = client(&first);
    c.list_workloads(&PageRequest::default())
        .await
        .expect("list");
    first.shutdown().await;
    let second = stackpath_emulator::start(EmulatorConfig::default(), addr, None)
        .await
        .expect("restart on same port");
    c.list_workloads(&PageRequest::default())
        .await
        .expect("list after server forgot the token");
    let st = stats(&second).await;
    assert_eq!(status_count(&st, 401), 1, "{st}");
    assert_eq!(
        route_count(&st, "POST /identity/v1/oauth2/token"),
        1,
        "{st}"
    );
    second.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_never_fail_or_duplicate() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client(&emu);
    emu.set_faults(Faults {
        error_rate: 0.2,
        ..Faults::default()
    });
    let slugs: Vec<String> = (0..20).map(|i| format!("flaky-{i}")).collect();
    let mut tasks = Vec::new();
    for slug in &slugs {
        let c = c.clone();
        let slug = slug.clone();
        tasks.push(tokio::spawn(async move {
            let w = c
                .create_workload(&workload(&slug))
                .await
                .expect("create under 5xx");
            let id = w.id.expect("id");
            let got = c.get_workload(&id).await.expect("get under 5xx");
            c.update_workload(&id, &got).await.expect("put under 5xx");
            c.list_all_instances(&id)
                .await
                .expect("instances under 5xx");
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    let all = c.list_all_workloads(None).await.expect("list under 5xx");
    let listed: BTreeSet<String> = all.iter().filter_map(|w| w.slug.clone()).collect();
    assert_eq!(all.len(), slugs.len(), "duplicates or losses: {listed:?}");
    assert_eq!(listed, slugs.iter().cloned().collect());
    for id in &ids {
        c.delete_workload(id).await.expect("delete under 5xx");
    }
    let st = stats(&emu).await;
    assert!(
        status_count(&st, 500) + status_count(&st, 503) > 10,
        "faults were injected: {st}"
    );
    assert_eq!(
        status_count(&st, 409),
        0,
        "a create was blindly re-sent: {st}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn lost_create_responses_make_exactly_one_workload() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client(&emu);
    c.list_workloads(&PageRequest::default())
        .await
        .expect("warm up the token");
    emu.set_faults(Faults {
        drop_rate: 0.3,
        ..Faults::default()
    });
    let mut created = Vec::new();
    for i in 0..12 {
        let slug = format!("lost-{i}");
        let w = c
            .create_workload(&workload(&slug))
            .await
            .expect("create with lost responses");
        assert_eq!(w.slug.as_deref(), Some(slug.as_str()));
        created.push(w.id.expect("id"));
    }
    emu.set_faults(Faults::default());
    let all = c.list_all_workloads(None).await.expect("list");
    assert_eq!(
        all.len(),
        12,
        "{:?}",
        all.iter().map(|w| &w.slug).collect::<Vec<_>>()
    );
    let ids: BTreeSet<_> = all.iter().filter_map(|w| w.id.clone()).collect();
    assert_eq!(ids, created.into_iter().collect());
    let st = stats(&emu).await;
    assert_eq!(
        status_count(&st, 409),
        0,
        "a create was blindly re-sent: {st}"
    );
    // Some responses were really lost (there were more calls than 12 creates + list).
    assert!(
        route_count(&st, "GET /workload/v1/stacks/{stack_id}/workloads") > 1,
        "{st}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_bursts_honour_retry_after() {
    let emu = emulator(EmulatorConfig::default()).await;
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config(&emu.base_url);
    cfg.observer = Some(recorder.clone());
    let c = Client::new(cfg).expect("client");
    c.list_workloads(&PageRequest::default())
        .await
        .expect("warm up");
    emu.set_faults(Faults {
        rate_limit_burst: 2,
        retry_after_seconds: 1,
        ..Faults::default()
    });
    let start = tokio::time::Instant::now();
    c.list_workloads(&PageRequest::default())
        .await
        .expect("list through 429s");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "Retry-After not honoured: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let seen = recorder.0.lock().expect("lock").clone();
    assert_eq!(seen.iter().filter(|(_, _, s)| *s == Some(429)).count(), 2);

    // A POST that meets a 429 was not acted on, so it is re-sent.
    emu.set_faults(Faults {
        rate_limit_burst: 1,
        retry_after_seconds: 1,
        ..Faults::default()
    });
    c.create_workload(&workload("after-429"))
        .await
        .expect("create through 429");

    // A Retry-After longer than the client will wait comes back as a typed error.
    emu.set_faults(Faults {
        rate_limit_burst: 1,
        retry_after_seconds: 3600,
        ..Faults::default()
    });
    match c.list_workloads(&PageRequest::default()).await {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn client_side_rate_limit_is_shared_by_clones() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut cfg = config(&emu.base_url);
    cfg.rate_limit = Some(RateLimit {
        per_second: 20.0,
        burst: 5,
    });
    let c = Client::new(cfg).expect("client");
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                c.list_workloads(&PageRequest::default())
                    .await
                    .expect("list");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // 20 calls + 1 token request, 5 free, at 20/s: at least 0.8 s.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(780), "{elapsed:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn pagination_walks_a_thousand_workloads() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client(&emu);
    let mut tasks = Vec::new();
    for shard in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (shard..1000).step_by(8) {
                c.create_workload(&workload(&format!("page-{i:04}")))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let before = route_count(
        &stats(&emu).await,
        "GET /workload/v1/stacks/{stack_id}/workloads",
    );
    let all = c.list_all_workloads(None).await.expect("list all");
    let slugs: BTreeSet<_> = all.iter().filter_map(|w| w.slug.clone()).collect();
    assert_eq!(all.len(), 1000);
    assert_eq!(slugs.len(), 1000);
    let pages = route_count(
        &stats(&emu).await,
        "GET /workload/v1/stacks/{stack_id}/workloads",
    ) - before;
    assert_eq!(
        pages,
        1000 / u64::from(stackpath_client::PAGE_SIZE),
        "one request per page"
    );

    let first = c
        .list_workloads(&PageRequest {
            first: Some(7),
            ..PageRequest::default()
        })
        .await
        .expect("first page");
    assert_eq!(first.results.len(), 7);
    assert_eq!(
        first.page_info.as_ref().and_then(|p| p.has_next_page),
        Some(true)
    );
    let filtered = c
        .list_all_workloads(Some("slug = \"page-0042\""))
        .await
        .expect("filter");
    assert_eq!(filtered.len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn follow_log_stream_closed_by_server_ends_cleanly() {
    let emu = emulator(EmulatorConfig {
        log_follow_cut: Duration::from_millis(800),
        log_line_interval: Duration::from_millis(50),
        ..EmulatorConfig::default()
    })
    .await;
    let c = client(&emu);
    let w = c
        .create_workload(&workload("logger"))
        .await
        .expect("create");
    let id = w.id.expect("id");
    let instance = "logger-city-code-dfw-0";
    wait_running(&c, &id, instance).await;
    let opts = LogOptions {
        container_name: Some("app".into()),
        follow: true,
        timestamps: true,
        ..LogOptions::default()
    };
    let mut stream = c.instance_logs(&id, instance, &opts).await.expect("logs");
    let mut bytes = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("no error when the server closes the stream"));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "stream did not end after the server closed it"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.lines().count() >= 3,
        "expected several followed lines, got {text:?}"
    );

    let limited = c
        .instance_logs(
            &id,
            instance,
            &LogOptions {
                limit_bytes: Some(10),
                ..LogOptions::default()
            },
        )
        .await
        .expect("limited logs")
        .collect_bytes()
        .await
        .expect("bytes");
    assert!(limited.len() <= 10, "{}", limited.len());
    emu.shutdown().await;
}

#[tokio::test]
async fn idle_log_stream_times_out() {
    let emu = emulator(EmulatorConfig {
        log_follow_cut: Duration::from_secs(30),
        log_line_interval: Duration::from_secs(20),
        ..EmulatorConfig::default()
    })
    .await;
    let mut cfg = config(&emu.base_url);
    cfg.log_idle_timeout = Some(Duration::from_millis(500));
    let c = Client::new(cfg).expect("client");
    let w = c.create_workload(&workload("quiet")).await.expect("create");
    let id = w.id.expect("id");
    wait_running(&c, &id, "quiet-city-code-dfw-0").await;
    // Only lines from now on: the next generated line is 20 s away, the idle limit 0.5 s.
    let opts = LogOptions {
        follow: true,
        since_time: Some(chrono::Utc::now()),
        ..LogOptions::default()
    };
    let mut stream = c
        .instance_logs(&id, "quiet-city-code-dfw-0", &opts)
        .await
        .expect("logs");
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("idle timeout fired");
    let err = outcome.expect("an idle error, not a clean end");
    assert!(err.to_string().contains("idle"), "{err}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after its error"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn https_with_the_emulators_ca_and_without() {
    let emu = emulator(EmulatorConfig {
        tls: true,
        ..EmulatorConfig::default()
    })
    .await;
    assert!(
        emu.base_url.starts_with("https://127.0.0.1:"),
        "{}",
        emu.base_url
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem.as_deref().expect("generated CA")).expect("write CA");

    let mut cfg = config(&emu.base_url);
    cfg.ca_file = Some(ca);
    let c = Client::new(cfg).expect("client");
    c.create_workload(&workload("tls-ok"))
        .await
        .expect("create over https with the CA");

    let mut cfg = config(&emu.base_url);
    cfg.retry.max_attempts = 1;
    let untrusting = Client::new(cfg).expect("client");
    match untrusting.list_workloads(&PageRequest::default()).await {
        Err(Error::Transport {
            request_sent,
            message,
            ..
        }) => {
            assert!(!request_sent);
            assert!(message.to_lowercase().contains("certificate"), "{message}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    let mut cfg = config(&emu.base_url);
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    cfg.ca_file = Some(bogus);
    let err = Client::new(cfg).expect_err("bad CA file");
    assert!(matches!(err, Error::Config { .. }), "{err}");
    emu.shutdown().await;
}

#[test]
fn plain_http_to_a_non_loopback_host_is_refused() {
    for host in ["http://gateway.stackpath.com", "http://192.0.2.10:8080"] {
        let err = Config::new(host, STACK, CLIENT_ID, SECRET).expect_err(host);
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains("plain http"), "{err}");
    }
    Config::new("http://127.0.0.1:1", STACK, CLIENT_ID, SECRET).expect("loopback http is fine");
}

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary. A thread-scoped one (`set_default`) lost
/// events when another test thread had already cached the callsites' interest (seen once in CI
/// under load); the global one also catches every other test's logs, which must not hold
/// secrets either.
fn global_sink() -> LogSink {
    static SINK: std::sync::OnceLock<LogSink> = std::sync::OnceLock::new();
    SINK.get_or_init(|| {
        let sink = LogSink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("stackpath_client=trace")
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        sink
    })
    .clone()
}

#[tokio::test]
async fn secrets_stay_out_of_errors_debug_and_logs() {
    let sink = global_sink();

    let emu = emulator(EmulatorConfig::default()).await;
    // Wrong secret: the token endpoint refuses it.
    let wrong = "wrong-secret-xyzzy";
    let mut cfg = Config::new(&emu.base_url, STACK, CLIENT_ID, wrong).expect("config");
    cfg.retry.max_attempts = 2;
    let c = Client::new(cfg.clone()).expect("client");
    let err = c
        .list_workloads(&PageRequest::default())
        .await
        .expect_err("bad secret");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        format!("{cfg:?}"),
        format!("{c:?}"),
    ] {
        assert!(!text.contains(wrong), "secret leaked: {text}");
    }

    // Right secret, a workload with secret env: nothing sensitive in Debug or logs.
    let good = client(&emu);
    let w = good
        .create_workload(&workload("secretive"))
        .await
        .expect("create");
    let dbg = format!("{w:?}");
    assert!(!dbg.contains("env-secret-value"), "{dbg}");
    let logs = String::from_utf8_lossy(&sink.0.lock().expect("lock")).into_owned();
    assert!(
        logs.contains("StackPath call"),
        "tracing captured nothing: {logs}"
    );
    for secret in [wrong, SECRET, "env-secret-value"] {
        assert!(!logs.contains(secret), "{secret} in logs");
    }
    assert!(!logs.to_lowercase().contains("bearer "), "token in logs");
    emu.shutdown().await;
}

#[tokio::test]
async fn retries_only_what_is_safe_to_repeat() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client(&emu);
    let w = c
        .create_workload(&workload("steady"))
        .await
        .expect("create");
    let id = w.id.expect("id");
    wait_running(&c, &id, "steady-city-code-dfw-0").await;
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let before = stats(&emu).await;

    // GET: idempotent, retried up to max_attempts (8), then the 5xx comes back typed.
    let err = c.get_workload(&id).await.expect_err("always 5xx");
    assert!(
        matches!(err, Error::Server { .. }) && err.is_transient(),
        "{err}"
    );
    // POST restart: not idempotent, never re-sent after a 5xx.
    let err = c
        .restart_instance(&id, "steady-city-code-dfw-0")
        .await
        .expect_err("always 5xx");
    assert!(matches!(err, Error::Server { .. }), "{err}");
    // POST create: the slug lookup fails too, so the create is not re-sent blindly.
    c.create_workload(&workload("never"))
        .await
        .expect_err("always 5xx");

    let after = stats(&emu).await;
    let delta = |key: &str| route_count(&after, key) - route_count(&before, key);
    assert_eq!(
        delta("GET /workload/v1/stacks/{stack_id}/workloads/{workload_id}"),
        8
    );
    assert_eq!(
        delta(
            "POST /workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}/power/restart"
        ),
        1
    );
    assert_eq!(delta("POST /workload/v1/stacks/{stack_id}/workloads"), 1);
    emu.shutdown().await;
}
