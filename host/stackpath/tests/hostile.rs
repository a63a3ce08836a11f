//! The client against a hostile StackPath: a raw HTTP/1.1 server written here (127.0.0.1, a
//! free port) that answers what a broken or malicious gateway could: absurd `Retry-After` and
//! `expires_in` values, bodies that never end or lie about their length, errors that echo the
//! request with its secrets, and connections that never answer.
//!
//! Raw TCP rather than axum: the point is to send what a well-behaved HTTP server library
//! would refuse to (a `Content-Length` of a terabyte, a body that outlives it, silence).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use stackpath_client::model::{
    ContainerSpec, DockerRegistryCredentials, EnvironmentVariable, ImagePullCredential,
    PageRequest, Workload, WorkloadSpec,
};
use stackpath_client::{Client, Config, Error, LogOptions, RetryPolicy, routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const STACK: &str = "hostile-stack";
const CLIENT_ID: &str = "hostile-client";
const SECRET: &str = "client/secret+value=42";

/// A request as the hostile server read it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn is_token(&self) -> bool {
        self.path.starts_with("/identity/v1/oauth2/token")
    }
}

/// What the hostile server does with a request.
enum Reply {
    /// A complete answer, then the connection closes.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The status and headers, then `chunk` again and again until the client hangs up.
    Endless {
        status: u16,
        headers: Vec<(String, String)>,
        chunk: Vec<u8>,
        pause: Duration,
    },
    /// Nothing at all; the connection stays open.
    Silent,
}

fn json(status: u16, value: serde_json::Value) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&value).expect("json"),
    }
}

fn token_reply(token: &str, expires_in: serde_json::Value) -> Reply {
    json(
        200,
        serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in}),
    )
}

type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// The hostile server; stops (and drops every open connection) when dropped.
struct Hostile {
    base: String,
    task: tokio::task::JoinHandle<()>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn start(handler: impl Fn(Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let handler: Handler = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the server task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve(stream, handler.clone(), seen.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            base,
            task,
            requests,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve(
    mut stream: TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Request>>>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let Some(req) = read_request(&mut stream).await else {
            return;
        };
        seen.lock().expect("lock").push(req.clone());
        match handler(req) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            }
            Reply::Endless {
                status,
                headers,
                chunk,
                pause,
            } => {
                // No Content-Length (unless the test lies with one): the body runs until close.
                let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            Reply::Silent => std::future::pending::<()>().await,
        }
    })
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// A configuration with quick retries, no client-side rate limit, and a short attempt timeout.
fn config(base: &str) -> Config {
    let mut c = Config::new(base, STACK, CLIENT_ID, SECRET).expect("config");
    c.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(10),
    };
    c.rate_limit = None;
    c.request_timeout = Duration::from_secs(10);
    c
}

fn empty_page() -> Reply {
    json(200, serde_json::json!({"results": []}))
}

// ----- task: hostile numbers -----

#[tokio::test]
async fn huge_retry_after_is_clamped_not_a_panic() {
    let value = Arc::new(Mutex::new(String::new()));
    let v = value.clone();
    let server = Hostile::start(move |req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        Reply::Full {
            status: 429,
            headers: vec![("Retry-After".into(), v.lock().expect("lock").clone())],
            body: br#"{"code":8,"message":"slow down"}"#.to_vec(),
        }
    })
    .await;
    let mut cfg = config(&server.base);
    cfg.retry.max_attempts = 2;
    let c = Client::new(cfg).expect("client");
    for hostile in [
        "1e30",
        "99999999999999999999999",
        "18446744073709551615",
        "1.8446744073709552e19",
        "340282366920938463463374607431768211456",
    ] {
        *value.lock().expect("lock") = hostile.to_owned();
        let err = c
            .list_workloads(&PageRequest::default())
            .await
            .expect_err("429");
        match &err {
            Error::RateLimited {
                retry_after: Some(d),
                ..
            } => {
                assert!(
                    *d <= Duration::from_secs(24 * 3600),
                    "Retry-After {hostile} kept as {d:?}"
                );
                // What a caller does with it must not overflow either.
                let _ = Instant::now() + *d;
                let _ = std::time::SystemTime::now() + *d;
            }
            other => panic!("Retry-After {hostile}: expected RateLimited, got {other:?}"),
        }
        assert!(err.to_string().contains("rate limited"), "{err}");
    }
}

#[tokio::test]
async fn huge_expires_in_is_clamped_not_a_panic() {
    for hostile in [
        serde_json::json!(u64::MAX),
        serde_json::json!(1e300),
        serde_json::json!(f64::MAX),
        serde_json::json!("18446744073709551615"),
        serde_json::json!("99999999999999999999999"),
        serde_json::json!(-5),
        serde_json::json!({"nested": true}),
    ] {
        let tokens = Arc::new(AtomicUsize::new(0));
        let t = tokens.clone();
        let h = hostile.clone();
        let server = Hostile::start(move |req| {
            if req.is_token() {
                t.fetch_add(1, Ordering::SeqCst);
                return token_reply("tok", h.clone());
            }
            empty_page()
        })
        .await;
        let c = Client::new(config(&server.base)).expect("client");
        for _ in 0..3 {
            c.list_workloads(&PageRequest::default())
                .await
                .unwrap_or_else(|e| panic!("expires_in {hostile}: {e}"));
        }
        assert_eq!(
            tokens.load(Ordering::SeqCst),
            1,
            "expires_in {hostile}: the token is reused"
        );
    }
}

// ----- task: bounded bodies -----

fn endless_results() -> Reply {
    let mut chunk = Vec::new();
    while chunk.len() < 64 * 1024 {
        chunk.extend_from_slice(br#"{"slug":"endless","name":"endless"},"#);
    }
    Reply::Endless {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        chunk,
        // At most ~64 MiB/s, so the unbounded client this test guards against holds a few
        // hundred MiB before its timeout, not the machine's memory.
        pause: Duration::from_millis(1),
    }
}

#[tokio::test]
async fn never_ending_success_body_is_a_typed_error() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        endless_results()
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let start = Instant::now();
    let err = c
        .list_workloads(&PageRequest::default())
        .await
        .expect_err("endless body");
    let elapsed = start.elapsed();
    match &err {
        Error::TooLarge {
            op,
            limit,
            announced: None,
        } => {
            assert_eq!(*op, routes::LIST_WORKLOADS);
            assert_eq!(*limit, 32 << 20, "the default limit");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("GET /workload/v1/stacks/{stack_id}/workloads") && text.contains("larger"),
        "{text}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "read for {elapsed:?} instead of stopping at the limit"
    );
}

/// A metrics answer may be larger than any other; each has its own limit.
#[tokio::test]
async fn metrics_have_their_own_larger_limit() {
    // About 2 MiB each: over the 1 MiB general limit, under the 4 MiB metrics one.
    let results: Vec<serde_json::Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({"metric": {"__name__": "cpu", "instance_name": format!("i-{i}")},
                                     "values": [{"unixTime": "100", "value": "0.5"}]})
        })
        .collect();
    let metrics =
        serde_json::json!({"status": "SUCCESS", "data": {"matrix": {"results": results}}});
    let workloads: Vec<serde_json::Value> = (0..12_000)
        .map(|i| serde_json::json!({"slug": format!("w-{i:05}"), "name": "x".repeat(150)}))
        .collect();
    let page = serde_json::json!({"results": workloads});
    let server = Hostile::start(move |req| {
        if req.is_token() {
            token_reply("tok", 3600.into())
        } else if req.path.contains("/metrics") {
            json(200, metrics.clone())
        } else {
            json(200, page.clone())
        }
    })
    .await;
    let mut cfg = config(&server.base);
    cfg.max_response_bytes = 1 << 20;
    cfg.max_metrics_response_bytes = 4 << 20;
    let c = Client::new(cfg).expect("client");
    let now = chrono::Utc::now();
    let m = c
        .stack_metrics(now - chrono::Duration::minutes(5), now)
        .await
        .expect("2 MiB of metrics is under their limit");
    assert_eq!(m.latest_by_owner("cpu").len(), 20_000);
    match c.list_workloads(&PageRequest::default()).await {
        Err(Error::TooLarge {
            op,
            limit,
            announced: Some(n),
        }) => {
            assert_eq!(op, routes::LIST_WORKLOADS);
            assert_eq!(limit, 1 << 20);
            assert!(n > 2 << 20, "{n}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn lying_content_length_is_refused_before_reading() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        Reply::Endless {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Length".into(), "1099511627776".into()),
            ],
            chunk: b" ".to_vec(),
            pause: Duration::from_millis(50),
        }
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let start = Instant::now();
    let err = c.get_workload("w").await.expect_err("a terabyte announced");
    assert!(
        matches!(
            err,
            Error::TooLarge {
                op: routes::GET_WORKLOAD,
                announced: Some(1_099_511_627_776),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("GET /workload/v1/stacks/{stack_id}/workloads/{workload_id}")
            && text.contains("larger")
            && text.contains("announced 1099511627776"),
        "{text}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn never_ending_error_body_is_cut_not_waited_for() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        Reply::Endless {
            status: 400,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            chunk: b"bad request, and more, ".repeat(1000),
            pause: Duration::from_millis(1),
        }
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let start = Instant::now();
    let err = c.get_workload("w").await.expect_err("400");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("bad request, and more"), "{err}");
    assert!(err.to_string().len() < 2048, "{}", err.to_string().len());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

// ----- task: secrets echoed in errors -----

const ENV_SECRET: &str = "env\"secret\\value-from-a-Secret";
const REGISTRY_PASSWORD: &str = "registry\tpass\"word-7";
const BEARER: &str = "bearer-token-abcdef123456";

fn secretive_workload() -> Workload {
    let container = ContainerSpec {
        image: Some("registry.example.com/app:1".into()),
        // Long enough that the echo is past any 1 KiB cap.
        args: vec!["x".repeat(1500)],
        env: BTreeMap::from([
            ("PLAIN".to_owned(), EnvironmentVariable::value("visible")),
            ("TOKEN".to_owned(), EnvironmentVariable::secret(ENV_SECRET)),
        ]),
        ..ContainerSpec::default()
    };
    Workload {
        name: Some("echo".into()),
        slug: Some("echo".into()),
        spec: Some(WorkloadSpec {
            containers: BTreeMap::from([("app".to_owned(), container)]),
            image_pull_credentials: vec![ImagePullCredential {
                docker_registry: Some(DockerRegistryCredentials {
                    server: Some("registry.example.com".into()),
                    username: Some("user".into()),
                    password: Some(REGISTRY_PASSWORD.into()),
                    email: None,
                }),
            }],
            ..WorkloadSpec::default()
        }),
        ..Workload::default()
    }
}

/// Every form of `secret` that must not be shown: raw, JSON-escaped (once: the body quoted as
/// text; twice: that text quoted again, as serde and `Debug` do), form-encoded.
fn forms(secret: &str) -> Vec<String> {
    let escape = |s: &str| {
        let json = serde_json::to_string(s).expect("json");
        json[1..json.len() - 1].to_owned()
    };
    let once = escape(secret);
    let twice = escape(&once);
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    vec![secret.to_owned(), once, twice, form]
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [SECRET, ENV_SECRET, REGISTRY_PASSWORD, BEARER] {
        for form in forms(secret) {
            assert!(!text.contains(&form), "{what} leaks {form:?}: {text}");
        }
    }
}

/// A 400 that echoes the whole request: body as text in `message` and in a field violation,
/// the body as JSON and the headers in another detail.
fn echo_error(req: &Request) -> Reply {
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let parsed: serde_json::Value =
        serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    let headers: BTreeMap<_, _> = req.headers.iter().cloned().collect();
    json(
        400,
        serde_json::json!({
            "code": 3,
            "message": format!("cannot accept {text}"),
            "details": [
                {"@type": "stackpath.rpc.BadRequest",
                 "fieldViolations": [{"field": "workload", "description": text}]},
                {"@type": "stackpath.rpc.RequestInfo",
                 "request": parsed, "headers": headers,
                 "authorization": req.header("authorization").unwrap_or_default()},
            ]
        }),
    )
}

#[tokio::test]
async fn request_secrets_echoed_in_errors_are_redacted() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply(BEARER, 3600.into());
        }
        echo_error(&req)
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let err = c
        .create_workload(&secretive_workload())
        .await
        .expect_err("400");
    // The server did see the secrets (the test would prove nothing otherwise).
    let sent = server
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && !r.is_token())
        .expect("the create was sent");
    let sent_text = String::from_utf8_lossy(&sent.body);
    assert!(sent_text.contains(&forms(ENV_SECRET)[1]), "{sent_text}");
    assert!(
        sent_text.contains(&forms(REGISTRY_PASSWORD)[1]),
        "{sent_text}"
    );

    let Error::Invalid {
        message, details, ..
    } = &err
    else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(message.contains("cannot accept"), "{message}");
    assert!(!details.is_empty(), "details are kept, only cleaned");
    assert_no_secret(&err.to_string(), "Display");
    assert_no_secret(&format!("{err:?}"), "Debug");
    assert_no_secret(&format!("{err:#}"), "alternate Display");
    // Each shown field is capped.
    assert!(message.chars().count() <= 1025, "{}", message.len());
    let mut strings = Vec::new();
    for d in details {
        collect_strings(&serde_json::to_value(d).expect("detail"), &mut strings);
    }
    assert!(strings.iter().any(|s| s.contains("***")), "{strings:?}");
    for s in &strings {
        assert!(
            s.chars().count() <= 1025,
            "{} chars: {s}",
            s.chars().count()
        );
    }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out)
        }),
        _ => {}
    }
}

/// A plain-text echo quoted only in part: the cut must not fall inside a secret and leave its
/// start readable.
#[tokio::test]
async fn echo_cut_inside_a_secret_shows_none_of_it() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply(BEARER, 3600.into());
        }
        let text = String::from_utf8_lossy(&req.body).into_owned();
        let secret = &forms(ENV_SECRET)[1];
        let at = text.find(secret.as_str()).expect("the secret was sent");
        // The secret starts at the 196th character, so a quote cut at 200 ends inside it.
        Reply::Full {
            status: 400,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: format!("{}{}", "p".repeat(195), &text[at..]).into_bytes(),
        }
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let err = c
        .create_workload(&secretive_workload())
        .await
        .expect_err("400");
    let text = err.to_string();
    // Not even the secret's start: the mask sits where it began.
    assert!(text.contains(&format!("{}***", "p".repeat(195))), "{text}");
    assert_no_secret(&text, "Display");
}

/// A 2xx that echoes the request where a workload belongs: serde's complaint quotes it.
#[tokio::test]
async fn unreadable_success_echo_is_redacted() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply(BEARER, 3600.into());
        }
        let text = String::from_utf8_lossy(&req.body).into_owned();
        json(200, serde_json::json!({"workload": text}))
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let err = c
        .update_workload("w", &secretive_workload())
        .await
        .expect_err("not a workload");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid type"), "{err}");
    assert_no_secret(&err.to_string(), "Display");
    assert_no_secret(&format!("{err:?}"), "Debug");
}

#[tokio::test]
async fn token_endpoint_echoing_the_client_secret_is_redacted() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            let decoded: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
            return json(
                400,
                serde_json::json!({"code": 3, "message": format!("bad form {text} {decoded:?}"),
                    "details": [{"@type": "x", "form": decoded, "raw": text}]}),
            );
        }
        empty_page()
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let err = c
        .list_workloads(&PageRequest::default())
        .await
        .expect_err("token refused");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("bad form"), "{err}");
    assert_no_secret(&err.to_string(), "Display");
    assert_no_secret(&format!("{err:?}"), "Debug");
}

// ----- stack-wide metrics: the request -----

#[tokio::test]
async fn stack_metrics_ask_for_the_whole_stack_by_instance() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        json(200, serde_json::json!({"status": "SUCCESS"}))
    })
    .await;
    let c = Client::new(config(&server.base)).expect("client");
    let end = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:05:00Z")
        .expect("t")
        .to_utc();
    c.stack_metrics(end - chrono::Duration::minutes(5), end)
        .await
        .expect("metrics");
    let asked = server
        .requests()
        .into_iter()
        .find(|r| !r.is_token())
        .expect("a metrics request");
    assert_eq!(asked.method, "GET");
    assert_eq!(
        asked.path,
        "/workload/v1/stacks/hostile-stack/metrics?start_date=2026-11-25T10%3A00%3A00Z\
         &end_date=2026-11-25T10%3A05%3A00Z&type=INSTANCE&group_by=INSTANCE_NAME"
    );
}

// ----- task: every attempt has a deadline -----

#[tokio::test]
async fn silent_token_endpoint_times_out_each_attempt() {
    let server = Hostile::start(|_| Reply::Silent).await;
    let mut cfg = config(&server.base);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry.max_attempts = 2;
    let c = Client::new(cfg).expect("client");
    let start = Instant::now();
    let err = c
        .list_workloads(&PageRequest::default())
        .await
        .expect_err("silence");
    let elapsed = start.elapsed();
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("POST /identity/v1/oauth2/token"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(server.requests().len(), 2, "one request per attempt");
}

#[tokio::test]
async fn silent_api_times_out_each_attempt() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            token_reply("tok", 3600.into())
        } else {
            Reply::Silent
        }
    })
    .await;
    let mut cfg = config(&server.base);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry.max_attempts = 3;
    let c = Client::new(cfg).expect("client");
    let start = Instant::now();
    let err = c.get_workload("w").await.expect_err("silence");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let gets = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(gets, 3, "every attempt timed out and was retried");
}

#[tokio::test]
async fn trickling_body_times_out() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        Reply::Endless {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            chunk: b" ".to_vec(),
            pause: Duration::from_millis(100),
        }
    })
    .await;
    let mut cfg = config(&server.base);
    cfg.request_timeout = Duration::from_millis(500);
    let c = Client::new(cfg).expect("client");
    let start = Instant::now();
    let err = c.get_workload("w").await.expect_err("trickle");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn log_stream_without_headers_times_out_and_idle_one_ends() {
    let server = Hostile::start(|req| {
        if req.is_token() {
            return token_reply("tok", 3600.into());
        }
        if req.path.contains("follow=true") {
            // Headers, one line, then nothing.
            Reply::Endless {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                chunk: b"a line\n".to_vec(),
                pause: Duration::from_secs(3600),
            }
        } else {
            Reply::Silent
        }
    })
    .await;
    let mut cfg = config(&server.base);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.log_idle_timeout = Some(Duration::from_millis(300));
    let c = Client::new(cfg).expect("client");
    let start = Instant::now();
    let err = c
        .instance_logs("w", "i", &LogOptions::default())
        .await
        .expect_err("no headers");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    let mut stream = c
        .instance_logs(
            "w",
            "i",
            &LogOptions {
                follow: true,
                ..LogOptions::default()
            },
        )
        .await
        .expect("headers came");
    let first = stream.next().await.expect("a chunk").expect("the line");
    assert_eq!(&first[..], b"a line\n");
    let idle = tokio::time::timeout(Duration::from_secs(3), stream.next())
        .await
        .expect("the idle timeout fired")
        .expect("an item")
        .expect_err("an idle error");
    assert!(idle.to_string().contains("idle"), "{idle}");
}
