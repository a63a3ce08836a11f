//! Through the REAL kube-apiserver with real kubectl: the apiserver dials this kubelet API
//! (verifying its CSR-issued serving certificate, presenting its kubelet client certificate),
//! the kubelet API authorizes it by SubjectAccessReview and bridges to the emulator.
//! `VK_K8S_VERSION=1.37` runs it on the 1.37 control plane. The three tests share one control
//! plane (with metrics-server) and run side by side, each with its own node and emulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::control_plane::*;
use common::*;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::io::AsyncReadExt;

/// Reads `r` into `got` until `needle` appears (or panics after `within`).
async fn read_until(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    got: &mut Vec<u8>,
    needle: &str,
    within: Duration,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !String::from_utf8_lossy(got).contains(needle) {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, r.read(&mut b))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: no {needle:?} within {within:?}; got {:?}",
                    String::from_utf8_lossy(got)
                )
            })
            .unwrap_or(0);
        assert!(
            n > 0,
            "{what} ended before {needle:?}: {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&b[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_through_the_real_apiserver() {
    init_tracing();
    // The container prints 40 lines, then one more once the test has seen a rotation.
    let mark = std::env::temp_dir().join(format!("vk-kl-rotated-{}", std::process::id()));
    let _ = std::fs::remove_file(&mark);
    let script = format!(
        "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.1; done; \
         while [ ! -e {m} ]; do sleep 0.2; done; echo after-rotation; sleep 3600",
        m = mark.display()
    );
    // A 10-minute certificate (the API minimum) renewed 595 s before expiry: the rotation
    // loop replaces it about 5 s after each issuance, for as long as the test runs.
    let edge = EdgeNode::start(
        "a",
        &script,
        CertPolicy {
            expiration: Some(Duration::from_secs(600)),
            renew_before: Some(Duration::from_secs(595)),
        },
    )
    .await;
    let _dump = edge.cluster.dump_logs_on_panic();
    let first_leaf = edge.store.leaf().expect("a serving certificate");
    let (nb, na) = vk_kubelet::tls::validity(&first_leaf).unwrap();
    let left = na - chrono::Utc::now().timestamp();
    assert!(
        (500..=600).contains(&left),
        "the signer honoured expirationSeconds=600 (valid {nb}..{na}, {left} s left)"
    );

    // kubectl logs, with options.
    let o = edge.kubectl("1.33", &["logs", "web", "-c", "app"]).await;
    let (out, err) = s(&o);
    assert!(o.status.success(), "kubectl logs: {err}");
    assert!(out.starts_with("line 0\nline 1\n"), "{out}");
    let o = edge
        .kubectl(
            "1.33",
            &["logs", "web", "-c", "app", "--tail=2", "--timestamps"],
        )
        .await;
    let (out, _) = s(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).is_ok()),
        "{out}"
    );
    let o = edge
        .kubectl(
            "1.33",
            &["logs", "web", "-c", "app", "--limit-bytes=8", "--since=1h"],
        )
        .await;
    assert_eq!(s(&o).0, "line 0\nl");

    // logs -f across StackPath's 2 s cuts and across the automatic certificate rotation.
    let (bin, base) = edge.kubectl_cmd("1.33");
    let mut follow = tokio::process::Command::new(bin)
        .args(&base)
        .args(["logs", "-f", "web", "-c", "app"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let mut got = Vec::new();
    let within = Duration::from_secs(40);
    read_until(&mut stdout, &mut got, "line 39\n", within, "logs -f").await;
    let want: String = (0..40).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&got), want, "no gaps or repeats");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while edge.store.leaf().as_ref() == Some(&first_leaf) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the serving certificate was not rotated within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = edge.store.leaf().unwrap();
    let (nb2, _) = vk_kubelet::tls::validity(&second).unwrap();
    assert!(nb2 >= nb, "the new certificate is newer");
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f must survive the rotation and StackPath's cuts"
    );
    std::fs::write(&mark, b"").unwrap();
    read_until(&mut stdout, &mut got, "after-rotation\n", within, "logs -f").await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("{want}after-rotation\n"),
        "the same stream carried on after the rotation, no gaps or repeats"
    );
    let _ = std::fs::remove_file(&mark);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f must not exit on a StackPath-side close"
    );
    let _ = follow.kill().await;
    // New connections get (and the apiserver accepts) the rotated certificate.
    let o = edge
        .kubectl("1.33", &["logs", "web", "-c", "app", "--tail=1"])
        .await;
    assert_eq!(s(&o).0, "after-rotation\n", "{}", s(&o).1);

    // exec through kubectl 1.27 (SPDY end to end) and 1.33 (WebSocket to the apiserver).
    let exec = |minor: &'static str, args: &'static [&'static str]| {
        let mut a = vec!["exec", "web", "-c", "app", "--"];
        a.extend_from_slice(args);
        let a: Vec<String> = a.into_iter().map(str::to_owned).collect();
        let edge = &edge;
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            edge.kubectl(minor, &a).await
        }
    };
    for minor in ["1.27", "1.33"] {
        let o = exec(minor, &["sh", "-c", "echo out-$((6*7)); echo err >&2"]).await;
        let (out, err) = s(&o);
        assert!(o.status.success(), "kubectl {minor} exec: {err}");
        assert_eq!(out, "out-42\n", "kubectl {minor}");
        assert!(err.contains("err"), "kubectl {minor}: {err}");
        let o = exec(minor, &["sh", "-c", "exit 3"]).await;
        assert_eq!(o.status.code(), Some(3), "kubectl {minor}: {:?}", s(&o));
        // stdin through -i.
        let (bin, base) = edge.kubectl_cmd(minor);
        let mut child = std::process::Command::new(bin)
            .args(&base)
            .args(["exec", "-i", "web", "-c", "app", "--", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            i.write_all(b"through stdin\n").unwrap();
        }
        let o = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s(&o).0,
            "through stdin\n",
            "kubectl {minor} -i: {}",
            s(&o).1
        );
        // Init container and wrong container.
        let o = edge
            .kubectl(minor, &["exec", "web", "-c", "init", "--", "ls"])
            .await;
        assert!(!o.status.success());
        assert!(s(&o).1.contains("init container"), "{minor}: {}", s(&o).1);
        let o = edge
            .kubectl(minor, &["exec", "web", "-c", "nope", "--", "ls"])
            .await;
        assert!(!o.status.success());
        assert!(s(&o).1.contains("nope"), "kubectl {minor}: {}", s(&o).1);
    }

    // attach and port-forward: the clear message.
    let o = edge.kubectl("1.33", &["attach", "web", "-c", "app"]).await;
    assert!(
        s(&o).1.contains("not supported by the StackPath provider"),
        "attach: {}",
        s(&o).1
    );
    // kubectl 1.27 speaks SPDY end to end; 1.33 tunnels SPDY through a WebSocket.
    for (minor, ports) in [("1.27", "18080:80"), ("1.33", "18081:80")] {
        let o = edge
            .kubectl(minor, &["port-forward", "pod/web", ports])
            .await;
        assert!(
            s(&o).1.contains("not supported by the StackPath provider"),
            "port-forward {minor}: {}",
            s(&o).1
        );
    }

    // 401 without credentials and 403 for a ServiceAccount token without nodes/proxy.
    let tls = tls_client(&std::fs::read_to_string(edge.cluster.ca_crt()).unwrap());
    let raw = raw_get(tls.clone(), edge.port, "/pods", None).await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let token = sa_token(edge.admin.clone(), &edge.ns).await;
    let path = format!("/containerLogs/{}/web/app", edge.ns);
    let raw = raw_get(tls.clone(), edge.port, &path, Some(&token)).await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains("subresource=proxy"), "{raw}");
    // The loop keeps rotating (about every 5 s here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while edge.store.leaf().as_ref() == Some(&second) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the serving certificate was not rotated a second time within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    edge.assert_exec_transport();
    drop(_dump);
    edge.stop().await;
}

/// kubectl running under a real pseudo-terminal, as a user's shell runs it.
struct PtyKubectl {
    child: tokio::process::Child,
    pty: pty_process::OwnedWritePty,
    out: Arc<std::sync::Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl PtyKubectl {
    fn spawn(bin: &std::path::Path, args: &[String], rows: u16, cols: u16) -> Self {
        let (pty, pts) = pty_process::open().expect("a pty");
        pty.resize(pty_process::Size::new(rows, cols)).unwrap();
        let child = pty_process::Command::new(bin)
            .args(args)
            .env("TERM", "xterm")
            .kill_on_drop(true)
            .spawn(pts)
            .expect("kubectl starts on the pty");
        let (mut r, w) = pty.into_split();
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 4096];
            // EIO once kubectl (the last holder of the pts) is gone.
            while let Ok(n) = r.read(&mut b).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        Self {
            child,
            pty: w,
            out,
            reader,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        // Enter on a raw-mode terminal is CR; the remote pty turns it into a newline.
        self.pty
            .write_all(format!("{line}\r").as_bytes())
            .await
            .unwrap();
    }
}

/// `kubectl exec -it` typed into through a pty (echo, output, resize seen by `stty`, exit
/// code), and binary-safe stdout, with kubectl 1.27 (SPDY) and 1.33 (WebSocket).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_with_a_terminal_and_binary_output() {
    init_tracing();
    let edge = EdgeNode::start("t", "sleep 3600", CertPolicy::default()).await;
    let _dump = edge.cluster.dump_logs_on_panic();
    for minor in ["1.27", "1.33"] {
        let (bin, mut args) = edge.kubectl_cmd(minor);
        args.extend(
            ["exec", "-it", "web", "-c", "app", "--", "sh"]
                .iter()
                .map(|a| a.to_string()),
        );
        let mut k = PtyKubectl::spawn(&bin, &args, 24, 80);
        let t = Duration::from_secs(20);
        k.type_line("echo hi-$((6*7))").await;
        assert!(
            k.wait_for("hi-42", t).await,
            "kubectl {minor}: no output: {:?}",
            k.text()
        );
        k.type_line("echo S=$(stty size)=E").await;
        assert!(
            k.wait_for("S=24 80=E", t).await,
            "kubectl {minor}: initial size: {:?}",
            k.text()
        );
        // kubectl has the local terminal in raw mode by now (no local echo): the typed line
        // shows once, echoed by the remote pty.
        let text = k.text();
        let since = &text[text.find("hi-42").unwrap()..];
        assert_eq!(
            since.matches("echo S=$(stty size)=E").count(),
            1,
            "kubectl {minor}: the remote terminal echoes what was typed: {since:?}"
        );
        // TIOCSWINSZ on the master: the kernel sends kubectl SIGWINCH; kubectl sends a resize,
        // the kubelet API an SSH window-change, the console resizes the remote pty. Resize and
        // keystrokes travel on separate streams, so ask again until the new size shows.
        k.pty.resize(pty_process::Size::new(37, 123)).unwrap();
        let mut resized = false;
        for _ in 0..20 {
            k.type_line("echo S=$(stty size)=E").await;
            if k.wait_for("S=37 123=E", Duration::from_millis(500)).await {
                resized = true;
                break;
            }
        }
        assert!(resized, "kubectl {minor}: resize not seen: {:?}", k.text());
        k.type_line("exit 3").await;
        let status = tokio::time::timeout(t, k.child.wait())
            .await
            .unwrap_or_else(|_| panic!("kubectl {minor} -it did not exit: {:?}", k.text()))
            .unwrap();
        assert_eq!(status.code(), Some(3), "kubectl {minor}: {:?}", k.text());
        k.reader.abort();
    }

    // Every byte value, 256 times over (64 KiB), through stdout untouched.
    let fmt: String = (0..=255u8).map(|b| format!("\\{b:03o}")).collect();
    let script = format!("i=0; while [ $i -lt 256 ]; do printf '{fmt}'; i=$((i+1)); done");
    let want: Vec<u8> = (0..256).flat_map(|_| 0..=255u8).collect();
    for minor in ["1.27", "1.33"] {
        let o = edge
            .kubectl(
                minor,
                &["exec", "web", "-c", "app", "--", "sh", "-c", &script],
            )
            .await;
        assert!(o.status.success(), "kubectl {minor}: {}", s(&o).1);
        assert_eq!(o.stdout.len(), want.len(), "kubectl {minor}: length");
        assert!(o.stdout == want, "kubectl {minor}: bytes differ");
    }
    drop(_dump);
    edge.stop().await;
}

/// `kubectl top pod`: metrics-server scrapes the kubelet API's `/metrics/resource` (as the
/// cluster CA's admin identity, authorized by SubjectAccessReview on nodes/metrics) and the
/// figures are StackPath's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_top_pod_shows_stackpath_metrics() {
    init_tracing();
    if edge_cluster_has_no_metrics_server() {
        eprintln!("skipped: an external cluster without our metrics-server");
        return;
    }
    let edge = EdgeNode::start("m", "sleep 3600", CertPolicy::default()).await;
    let _dump = edge.cluster.dump_logs_on_panic();
    let memory_now = || async {
        let now = chrono::Utc::now();
        let q = stackpath_client::model::MetricsQuery::instance(
            edge.loc.workload_id.clone(),
            edge.loc.instance_name.clone(),
            now - chrono::Duration::minutes(5),
            now,
        );
        let m = edge.sp.metrics(&q).await.expect("StackPath metrics");
        // Every sample of the window: metrics-server serves what it scraped up to a scrape
        // interval ago, which may be the sample before StackPath's latest.
        let all = |name: &str| -> Vec<f64> {
            m.series()
                .into_iter()
                .filter(|(labels, _)| labels.get("__name__").map(String::as_str) == Some(name))
                .flat_map(|(_, samples)| samples)
                .filter_map(|v| v.as_f64())
                .collect()
        };
        (all("cpu"), all("memory"))
    };
    // metrics-server needs two scrapes (15 s apart) for a CPU rate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (line, before, after) = loop {
        let before = memory_now().await;
        let o = edge
            .kubectl("1.33", &["top", "pod", "web", "--no-headers"])
            .await;
        let after = memory_now().await;
        let (out, err) = s(&o);
        if o.status.success() && out.starts_with("web ") {
            break (out, before, after);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl top pod never showed the pod: {out}{err}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    // "web   250m   512Mi"
    eprintln!("kubectl top pod: {line:?}; StackPath cpu/memory before {before:?}, after {after:?}");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{line}");
    let cpu_m: f64 = f[1].trim_end_matches('m').parse().expect(&line);
    let mem_mi: f64 = f[2].trim_end_matches("Mi").parse().expect(&line);
    let near = |got: f64, want: f64, slack: f64| (got - want).abs() <= slack;
    let mi = |b: f64| (b / (1024.0 * 1024.0)).floor();
    assert!(
        before
            .1
            .iter()
            .chain(&after.1)
            .any(|&b| near(mem_mi, mi(b), 1.0)),
        "memory {mem_mi}Mi is one of StackPath's samples ({:?} / {:?} bytes)",
        before.1,
        after.1
    );
    assert!(
        before
            .0
            .iter()
            .chain(&after.0)
            .any(|&c| near(cpu_m, c * 1000.0, 2.0)),
        "CPU {cpu_m}m is one of StackPath's samples ({:?} / {:?} cores)",
        before.0,
        after.0
    );
    assert!(mem_mi > 0.0, "{line}");
    drop(_dump);
    edge.stop().await;
}

/// An external cluster (`VK_TEST_KUBECONFIG`) has its own metrics-server, which cannot reach a
/// kubelet API on this machine's loopback.
fn edge_cluster_has_no_metrics_server() -> bool {
    std::env::var_os("VK_TEST_KUBECONFIG").is_some_and(|v| !v.is_empty())
}

async fn sa_token(admin: kube::Client, ns: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: Api<ServiceAccount> = Api::namespaced(admin, ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    let _ = sas.create(&PostParams::default(), &sa).await;
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let out = sas
        .create_token_request("nobody", &PostParams::default(), &tr)
        .await
        .unwrap();
    out.status.unwrap().token
}

async fn raw_get(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tls_connect(tls, ([127, 0, 0, 1], port).into()).await;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The CN of the certificate served at `addr`, verified against the cluster CA.
async fn served_cn(cluster: &local_cluster::Cluster, addr: std::net::SocketAddr) -> String {
    let tls = tls_client(&std::fs::read_to_string(cluster.ca_crt()).unwrap());
    let c = tls_connect(tls, addr).await;
    let leaf = c.get_ref().1.peer_certificates().unwrap()[0].clone();
    vk_kubelet::tls::identity_from_cert(&leaf).unwrap().0
}

/// Nobody approves kubelet-serving CSRs in a real cluster: the kubelet API waits (health,
/// Event on the Node with the command, a log line), and serves as soon as an admin approves,
/// in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unapproved_serving_csr_is_waited_for_and_reported() {
    use vk_kubelet::HealthState;
    init_tracing();
    let k = CsrKubelet::start("w", false).await;
    let _dump = k.cluster.dump_logs_on_panic();
    let s = k
        .wait(Duration::from_secs(60), |s| {
            matches!(s, HealthState::WaitingForCertificate { .. })
        })
        .await;
    let HealthState::WaitingForCertificate { csr, .. } = s else {
        unreachable!()
    };
    let why = k.health.readiness().unwrap_err();
    assert!(
        why.contains(&format!("kubectl certificate approve {csr}")),
        "{why}"
    );
    // The Event on the Node names the CSR and the command.
    let command = format!("kubectl certificate approve {csr}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let evs = k.events().await;
        if let Some(e) = evs.iter().find(|e| {
            e.reason.as_deref() == Some(vk_kubelet::event_reasons::PENDING)
                && e.note.as_deref().is_some_and(|n| n.contains(&command))
        }) {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Event with {command:?}: {evs:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // It keeps waiting on the same CSR: no giving up, no new CSR.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        matches!(k.health.state(), HealthState::WaitingForCertificate { csr: ref c, .. } if *c == csr)
    );
    assert!(!k.task.is_finished());
    // An admin approves: served at once, by the same run.
    k.decide(&csr, true).await;
    let s = k
        .wait(Duration::from_secs(60), HealthState::is_serving)
        .await;
    let HealthState::Serving { addr, .. } = s else {
        unreachable!()
    };
    assert_eq!(
        served_cn(k.cluster, addr).await,
        format!("system:node:{}", k.node)
    );
    assert_eq!(k.csrs().await.len(), 1, "one CSR in all");
    assert!(!k.task.is_finished());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !k
        .events()
        .await
        .iter()
        .any(|e| e.reason.as_deref() == Some(vk_kubelet::event_reasons::ISSUED))
    {
        assert!(tokio::time::Instant::now() < deadline, "no Issued Event");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(_dump);
    k.stop().await;
}

/// A denied CSR is said (Event, health) and a new one follows after the back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_serving_csr_is_reported_and_replaced() {
    use vk_kubelet::HealthState;
    init_tracing();
    let k = CsrKubelet::start("d", false).await;
    let _dump = k.cluster.dump_logs_on_panic();
    let HealthState::WaitingForCertificate { csr: first, .. } = k
        .wait(Duration::from_secs(60), |s| {
            matches!(s, HealthState::WaitingForCertificate { .. })
        })
        .await
    else {
        unreachable!()
    };
    let mut states = k.health.subscribe();
    k.decide(&first, false).await;
    // Failed (saying so), then waiting for a second CSR.
    let mut saw_denied = false;
    let second = loop {
        tokio::time::timeout(Duration::from_secs(30), states.changed())
            .await
            .expect("health moves on after the denial")
            .unwrap();
        match states.borrow_and_update().clone() {
            HealthState::Failed { error, .. } => {
                assert!(
                    error.contains(&first) && error.contains("denied"),
                    "{error}"
                );
                saw_denied = true;
            }
            HealthState::WaitingForCertificate { csr, .. } if csr != first => break csr,
            _ => {}
        }
    };
    assert!(saw_denied, "health said the CSR was denied");
    let evs = k.events().await;
    assert!(
        evs.iter().any(
            |e| e.reason.as_deref() == Some(vk_kubelet::event_reasons::DENIED)
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains(&first) && n.contains("denied"))
        ),
        "{evs:?}"
    );
    k.decide(&second, true).await;
    k.wait(Duration::from_secs(60), HealthState::is_serving)
        .await;
    assert_eq!(k.csrs().await.len(), 2);
    drop(_dump);
    k.stop().await;
}

/// `--approve-own-serving-csr`: with the RBAC it documents, the kubelet API approves its own
/// CSR (and nobody else's: a CSR filed by another user for the same node stays pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daemon_approves_its_own_serving_csr_only() {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequest, CertificateSigningRequestSpec,
    };
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use vk_kubelet::HealthState;
    init_tracing();
    let cluster = cluster_async().await;
    let admin = cluster.admin_client().await.unwrap();
    let role_name = format!("vk-kl-self-approve-{}", std::process::id());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "rules": [
            {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
            {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["kubernetes.io/kubelet-serving"], "verbs": ["approve"]}
        ]
    }))
    .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": local_cluster::DAEMON_SERVICE_ACCOUNT,
                      "namespace": local_cluster::DAEMON_NAMESPACE}]
    }))
    .unwrap();
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    roles.create(&PostParams::default(), &role).await.unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let k = CsrKubelet::start("s", true).await;
    let _dump = k.cluster.dump_logs_on_panic();
    // Someone else asks for a serving certificate in this node's name.
    let (_, pem) = vk_kubelet::bootstrap::build_request(
        &k.node,
        &vk_kubelet::CsrBootstrap {
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns_names: vec![k.node.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let foreign = csrs
        .create(
            &PostParams::default(),
            &CertificateSigningRequest {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("csr-{}-foreign", k.node)),
                    ..Default::default()
                },
                spec: CertificateSigningRequestSpec {
                    request: k8s_openapi::ByteString(pem.into_bytes()),
                    signer_name: vk_kubelet::bootstrap::SIGNER.into(),
                    usages: Some(
                        vk_kubelet::bootstrap::USAGES
                            .iter()
                            .map(|u| u.to_string())
                            .collect(),
                    ),
                    ..Default::default()
                },
                status: None,
            },
        )
        .await
        .unwrap();
    let foreign_name = foreign.metadata.name.unwrap();

    let s = k
        .wait(Duration::from_secs(60), HealthState::is_serving)
        .await;
    let HealthState::Serving { addr, .. } = s else {
        unreachable!()
    };
    assert_eq!(
        served_cn(k.cluster, addr).await,
        format!("system:node:{}", k.node)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = k.csrs().await;
    let own: Vec<_> = all
        .iter()
        .filter(|c| c.metadata.name.as_deref() != Some(foreign_name.as_str()))
        .collect();
    assert_eq!(own.len(), 1, "one CSR of its own");
    let approved = own[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Approved"))
        .expect("approved");
    assert_eq!(
        approved.reason.as_deref(),
        Some("SelfApprovedByVkStackpath")
    );
    let foreign_now = csrs.get(&foreign_name).await.unwrap();
    assert!(
        foreign_now
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none_or(|c| c.is_empty()),
        "a CSR this process did not file is left alone: {:?}",
        foreign_now.status
    );
    drop(_dump);
    k.stop().await;
    let _ = bindings.delete(&role_name, &Default::default()).await;
    let _ = roles.delete(&role_name, &Default::default()).await;
}
