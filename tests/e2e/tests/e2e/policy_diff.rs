//! `vk-stackpath policy diff` against the real control plane, as the daemon's identity (its
//! least-privilege RBAC): pods bound to a node (no daemon runs; they stay Pending), compared
//! between the built-in default policy and the rust-strict example policy.

use std::path::PathBuf;
use std::process::{Command, Output};

use e2e::{Env, STACK, binary};

/// examples/policies/rust-strict, built as tests/policies builds it (one build serves both).
fn rust_strict() -> PathBuf {
    policy_examples_tests::rust_strict().expect("building examples/policies/rust-strict")
}

const SECRET_VALUE: &str = "hunter2-policy-diff";

fn container(name: &str, extra: &str) -> String {
    format!(
        "  tolerations: [{{key: virtual-kubelet.io/provider, operator: Exists}}]\n  containers:\n    \
         - name: {name}\n      image: nginx:1.27\n{extra}"
    )
}

fn pod(name: &str, namespace: &str, node: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  \
         annotations: {{{annotations}}}\nspec:\n  nodeName: {node}\n{spec}"
    )
}

/// `kubectl apply` into another namespace than the test's.
fn apply_in(env: &Env, namespace: &str, manifest: &str) {
    use std::io::Write as _;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.cluster.admin_kubeconfig())
        .args(["-n", namespace, "apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kubectl");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(manifest.as_bytes())
            .expect("writing to kubectl");
    }
    let out = child.wait_with_output().expect("kubectl finishes");
    assert!(
        out.status.success(),
        "kubectl apply in {namespace}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn diff(env: &Env, extra: &[&str]) -> Run {
    let cache = policy_examples_tests::target_dir().join("policies/cache");
    let out: Output = Command::new(binary())
        .args(["policy", "diff", "--policy"])
        .arg(rust_strict())
        .arg("--kubeconfig")
        .arg(env.cluster.daemon_kubeconfig())
        .args(["--node", &env.node])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.dir)
        .env("VK_POLICY_CACHE_DIR", cache)
        // As in the daemon's pod: the stack from the environment, no credentials needed; the
        // city comes from the Node's zone label.
        .env("SP_STACK_ID", STACK)
        .output()
        .expect("running vk-stackpath policy diff");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_diff_lists_rejections_first_then_changes() -> anyhow::Result<()> {
    let env = Env::start("diff").await?;
    let (ns, node) = (env.ns.clone(), env.node.clone());
    let ops_pod = format!("tool-{}", &ns[2..]);
    // The node the pods are bound to, as the daemon would have registered it (zone = city),
    // readable by the daemon's identity as its overlay grants.
    env.cluster.grant_node(&node).await?;
    env.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{topology.kubernetes.io/zone: LAX, type: virtual-kubelet}}\nspec:\n  taints: [{{key: virtual-kubelet.io/provider, value: stackpath, effect: NoSchedule}}]\n"
    ))?;
    let ops = env.kubectl(&["create", "namespace", "ops"]);
    let ops_err = String::from_utf8_lossy(&ops.stderr);
    assert!(
        ops.status.success() || ops_err.contains("AlreadyExists"),
        "creating namespace ops: {ops_err}"
    );
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\nstringData: {{token: {SECRET_VALUE}}}\n"
    ))?;
    // Changed by the strict policy: one size up, read-only root filesystem.
    env.apply(&pod(
        "web",
        &ns,
        &node,
        "",
        &container(
            "app",
            "      env:\n        - name: TOKEN\n          valueFrom: {secretKeyRef: {name: creds, key: token}}\n",
        ),
    ))?;
    // Unchanged: the largest size already, and a read-only root filesystem asked for.
    env.apply(&pod(
        "crunch",
        &ns,
        &node,
        "",
        &container(
            "job",
            "      resources: {requests: {cpu: \"40\", memory: 200Gi}}\n      securityContext: {readOnlyRootFilesystem: true}\n",
        ),
    ))?;
    // Rejected by the strict policy: namespace ops without remote management.
    apply_in(
        &env,
        "ops",
        &pod(&ops_pod, "ops", &node, "", &container("tool", "")),
    );
    // Not translated again by the daemon: skipped.
    env.apply(&pod("done", &ns, &node, "", &container("app", "")))?;
    let status = serde_json::json!({"status": {"phase": "Succeeded"}});
    env.pods()
        .patch_status(
            "done",
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await?;

    // Context enough to show whole workloads, so the redacted Secret variable is in view.
    let all = diff(&env, &["-U", "200"]);
    let text = &all.stdout;
    assert_eq!(
        all.code, 2,
        "exit code with a rejection\n{text}\n{}",
        all.stderr
    );
    assert!(
        text.starts_with(&format!(
            "policy diff for node {node} (city LAX, stack {STACK}): 4 pod(s)"
        )),
        "{text}"
    );
    let rejected = text
        .find("REJECTED by the new policy: 1 pod(s)")
        .unwrap_or_else(|| panic!("no rejection section:\n{text}"));
    let tool = text
        .find(&format!(
            "ops/{ops_pod}: rejected by the policy (the current policy runs it)"
        ))
        .unwrap_or_else(|| panic!("ops pod not listed as rejected:\n{text}"));
    assert!(text.contains(
        "  - metadata.annotations[workload.platform.stackpath.net/remote-management]: pods in namespace `ops` must allow remote management"
    ), "{text}");
    let changed = text
        .find("CHANGED: 1 pod(s)")
        .unwrap_or_else(|| panic!("no change section:\n{text}"));
    let web = text
        .find(&format!(
            "--- {ns}/web (current policy)\n+++ {ns}/web (new policy)\n"
        ))
        .unwrap_or_else(|| panic!("no diff of web:\n{text}"));
    let unchanged = text
        .find("unchanged: 1 pod(s)")
        .unwrap_or_else(|| panic!("no unchanged count:\n{text}"));
    assert!(
        rejected < tool && tool < changed && changed < web && web < unchanged,
        "{text}"
    );
    // The strict rules as diff lines: SP-1 → SP-2 and a read-only root filesystem.
    for line in [
        "-            \"cpu\": \"1\",",
        "+            \"cpu\": \"2\",",
        "+          \"readOnlyRootFilesystem\": true",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
    assert!(text.contains("skipped: 1 pod(s)"), "{text}");
    assert!(!text.contains("crunch (current policy)"), "{text}");
    // The Secret-sourced variable is there, its value is not.
    assert!(text.contains("\"secretValue\": \"***\""), "{text}");
    assert!(
        !text.contains(SECRET_VALUE) && !all.stderr.contains(SECRET_VALUE),
        "a Secret value was printed"
    );

    // One namespace: no rejection, one change.
    let one = diff(&env, &["--namespace", &ns]);
    assert_eq!(one.code, 1, "{}\n{}", one.stdout, one.stderr);
    assert!(!one.stdout.contains("REJECTED"), "{}", one.stdout);

    // The same policy on both sides: nothing changes.
    let same = diff(
        &env,
        &[
            "--namespace",
            &ns,
            "--current-policy",
            &rust_strict().display().to_string(),
        ],
    );
    assert_eq!(same.code, 0, "{}\n{}", same.stdout, same.stderr);
    assert!(
        same.stdout.contains("unchanged: 2 pod(s)"),
        "{}",
        same.stdout
    );

    // A policy that does not load is an error of its own (3), named.
    let bad = env.dir.join("not-a-policy.wasm");
    std::fs::write(&bad, b"not wasm")?;
    let out = Command::new(binary())
        .args(["policy", "diff", "--policy"])
        .arg(&bad)
        .args(["--city-code", "DFW", "--stack-id", "s"])
        .env_clear()
        .env("HOME", &env.dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the new policy (--policy)"), "{stderr}");

    // Pods on a node without a kubelet only go away when forced.
    let _ = env.kubectl(&["delete", "pods", "--all", "--force", "--grace-period=0"]);
    let _ = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.cluster.admin_kubeconfig())
        .args([
            "-n",
            "ops",
            "delete",
            "pod",
            &ops_pod,
            "--force",
            "--grace-period=0",
        ])
        .output();
    let _ = env.kubectl(&["delete", "node", &node]);
    Ok(())
}
