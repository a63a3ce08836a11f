//! Every rendered object passes `kubectl apply --dry-run=server` on a real control plane
//! (tests/cluster): schema, defaulting, validation and admission (Pod Security "restricted"
//! in the daemon's namespace warns about any Deployment that would not be admitted) are the
//! server's, not ours.
//!
//! The control plane runs with the ImageVolume feature gate on, so the image-volume example is
//! checked too (the gate is off by default before Kubernetes 1.35). With
//! `VK_TEST_KUBECONFIG=<admin kubeconfig>` an existing cluster is used instead.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use deploy_tests::{Workspace, install_certificate_crd, kubectl, kustomizations, parse_stream};
use local_cluster::Cluster;

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let started = match std::env::var_os("VK_TEST_KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(path) => Cluster::external(std::path::Path::new(&path)),
            None => Cluster::builder()
                .apiserver_arg("--feature-gates=ImageVolume=true")
                .start(),
        };
        started.unwrap_or_else(|e| panic!("the test control plane failed to start: {e}"))
    })
}

/// `kubectl apply --server-side --dry-run=server` of `yaml`; the server's stdout and stderr.
fn dry_run(cluster: &Cluster, yaml: &str) -> (bool, String, String) {
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        // Server-side apply, as the test control plane applies deploy/base: a client-side
        // apply would warn about objects it did not create.
        .args([
            "apply",
            "--server-side",
            "--field-manager=deploy-tests",
            "--dry-run=server",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("writing to kubectl");
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_kustomization_passes_a_server_side_dry_run() {
    let cluster = cluster();
    let _logs = cluster.dump_logs_on_panic();
    install_certificate_crd(&cluster.admin_kubeconfig()).unwrap_or_else(|e| panic!("{e}"));
    let ws = Workspace::new().expect("copying deploy/");
    for k in kustomizations().expect("listing deploy/") {
        let yaml = ws.render_text(&k).unwrap_or_else(|e| panic!("{e}"));
        let objects = parse_stream(&k, &yaml).expect("rendered YAML parses");
        let (ok, stdout, stderr) = dry_run(cluster, &yaml);
        assert!(ok, "{k}: the API server refused it:\n{stderr}");
        // Pod Security (warn=restricted on the namespace) and deprecations come as warnings.
        assert!(
            !stderr.contains("Warning"),
            "{k}: the API server warned:\n{stderr}"
        );
        // One line per object, each marked as a server dry run.
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), objects.len(), "{k}: {stdout}");
        assert!(
            lines.iter().all(|l| l.ends_with("(server dry run)")),
            "{k}: {stdout}"
        );
    }
}

/// The check is real: the same server refuses a Deployment that breaks Pod Security
/// "restricted" in the daemon's namespace (it warns for the Deployment, refuses its pods).
#[test]
fn the_dry_run_catches_a_privileged_daemon() {
    let cluster = cluster();
    let ws = Workspace::new().expect("copying deploy/");
    let yaml = ws.render_text("overlays/dfw").expect("renders");
    let broken = yaml.replace(
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
    );
    assert_ne!(broken, yaml, "the rendering sets allowPrivilegeEscalation");
    let (ok, _, stderr) = dry_run(cluster, &broken);
    assert!(ok, "a Deployment is admitted with a warning: {stderr}");
    assert!(
        stderr.contains("allowPrivilegeEscalation"),
        "Pod Security should warn about allowPrivilegeEscalation:\n{stderr}"
    );
}
