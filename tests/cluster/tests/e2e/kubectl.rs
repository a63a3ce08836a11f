//! The kubectl releases users run (1.27 and 1.33) against the real apiserver.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{kubectl, kubectl_ok, run_kubectl};
use local_cluster::Cluster;

fn pod_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: kubectl-test}}\nspec:\n  \
         containers:\n  - name: main\n    image: {image}\n"
    )
}

fn apply_stdin(
    cluster: &Cluster,
    minor: &str,
    ns: &str,
    yaml: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut child = Command::new(kubectl(minor))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(["-n", ns, "apply", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl apply");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("writing manifest");
    child.wait_with_output().expect("kubectl apply")
}

fn kubectl_workflow(minor: &str) {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = format!("kubectl-{}", minor.replace('.', "-"));

    // Namespaces.
    kubectl_ok(cluster, minor, &["create", "namespace", &ns]);
    let out = kubectl_ok(
        cluster,
        minor,
        &["get", "namespace", &ns, "-o", "jsonpath={.status.phase}"],
    );
    assert_eq!(out, "Active");

    // The server's version is the pinned release, stamped at build time.
    let v = kubectl_ok(cluster, minor, &["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).expect("kubectl version -o json");
    if cluster.release().starts_with('v') {
        assert_eq!(v["serverVersion"]["gitVersion"], cluster.release(), "{v}");
    }

    // --dry-run=server: validated and defaulted by the apiserver, not stored.
    let dry = apply_stdin(
        cluster,
        minor,
        &ns,
        &pod_yaml("web", "nginx:1.27"),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("dry-run output");
    // Defaulting by the real apiserver (not echoed input).
    assert_eq!(
        dry["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert_eq!(dry["spec"]["restartPolicy"], "Always");
    let missing = run_kubectl(cluster, minor, &["-n", &ns, "get", "pod", "web"]);
    assert!(!missing.status.success(), "dry-run must not create the pod");

    // Validation errors come from the apiserver too.
    let bad = apply_stdin(cluster, minor, &ns, &pod_yaml("Bad_Name", "nginx"), &[]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Invalid value"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Watch: start `get -w`, then create the pod and see it arrive.
    let mut watch = Command::new(kubectl(minor))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(["-n", &ns, "get", "pods", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning kubectl get -w");
    let stdout = watch.stdout.take().expect("watch stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let applied = apply_stdin(cluster, minor, &ns, &pod_yaml("web", "nginx:1.27"), &[]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let seen = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("get -w saw no event");
    assert_eq!(seen, "pod/web");
    let _ = watch.kill();
    let _ = watch.wait();

    // get / describe / patch.
    let image = kubectl_ok(
        cluster,
        minor,
        &[
            "-n",
            &ns,
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "nginx:1.27");
    let described = kubectl_ok(cluster, minor, &["-n", &ns, "describe", "pod", "web"]);
    assert!(
        described.contains("Name:")
            && described.contains("web")
            && described.contains("nginx:1.27"),
        "{described}"
    );
    kubectl_ok(
        cluster,
        minor,
        &[
            "-n",
            &ns,
            "patch",
            "pod",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
        ],
    );
    let label = kubectl_ok(
        cluster,
        minor,
        &[
            "-n",
            &ns,
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.labels.patched}",
        ],
    );
    assert_eq!(label, "yes");
    // The apiserver enforces pod immutability: changing a container's command is refused.
    let refused = run_kubectl(
        cluster,
        minor,
        &[
            "-n",
            &ns,
            "patch",
            "pod",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/containers/0/command","value":["sh"]}]"#,
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // explain: served from the apiserver's OpenAPI.
    let explained = kubectl_ok(cluster, minor, &["explain", "pod.spec.tolerations"]);
    assert!(explained.contains("tolerationSeconds"), "{explained}");

    // delete: an unscheduled pod goes at once; then the namespace.
    kubectl_ok(
        cluster,
        minor,
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            "web",
            "--wait=true",
            "--timeout=30s",
        ],
    );
    let gone = run_kubectl(cluster, minor, &["-n", &ns, "get", "pod", "web"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
    kubectl_ok(
        cluster,
        minor,
        &["delete", "namespace", &ns, "--wait=false"],
    );
}

#[test]
fn kubectl_1_27_workflow() {
    kubectl_workflow("1.27");
}

#[test]
fn kubectl_1_33_workflow() {
    kubectl_workflow("1.33");
}
