//! Every kustomization under deploy/ renders with real `kubectl kustomize`, and what it renders
//! keeps the promises of deploy/: a locked-down Deployment, least-privilege RBAC, credentials
//! from a generated Secret, and a mounted policy whenever `--policy` is passed.

use std::collections::BTreeMap;

use deploy_tests::{Workspace, cities, id, kustomizations};
use serde_json::Value;

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The restricted-profile settings every container (init containers too) must carry.
fn check_container(where_: &str, c: &Value) {
    let sc = &c["securityContext"];
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{where_}: allowPrivilegeEscalation"
    );
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{where_}: readOnlyRootFilesystem"
    );
    assert_ne!(sc["privileged"], true, "{where_}: privileged");
    assert!(
        strs(&sc["capabilities"]["drop"]).contains(&"ALL"),
        "{where_}: must drop ALL capabilities"
    );
    assert!(
        sc["capabilities"]["add"].is_null(),
        "{where_}: adds capabilities"
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "{where_}: resources.{kind}.{res} missing"
            );
        }
    }
}

fn check_deployment(overlay: &str, d: &Value, objects: &[Value]) {
    let who = format!("{overlay}: {}", id(d));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "{who}: runAsNonRoot"
    );
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0);
    assert!(uid > 0, "{who}: runAsUser must be a non-root uid");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{who}: seccomp"
    );
    assert_eq!(
        pod["serviceAccountName"], "vk-stackpath",
        "{who}: service account"
    );
    assert_ne!(pod["hostNetwork"], true, "{who}: hostNetwork");

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{who}: one container, the daemon");
    let daemon = &containers[0];
    check_container(&format!("{who}: container vk-stackpath"), daemon);
    for init in pod["initContainers"].as_array().into_iter().flatten() {
        check_container(&format!("{who}: init container {}", init["name"]), init);
    }

    // Probes on the metrics port, which the daemon serves on the address it is given.
    let metrics_port = daemon["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "metrics"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("a port named metrics");
    let args = strs(&daemon["args"]);
    assert_eq!(args.first(), Some(&"run"), "{who}: runs `vk-stackpath run`");
    assert!(
        args.contains(&format!("--metrics-addr=0.0.0.0:{metrics_port}").as_str()),
        "{who}: --metrics-addr must match the metrics port: {args:?}"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &daemon[probe]["httpGet"];
        assert_eq!(get["path"], path, "{who}: {probe} path");
        assert_eq!(get["port"], "metrics", "{who}: {probe} port");
    }

    // The read-only root filesystem needs a writable policy cache.
    let cache = args
        .iter()
        .find_map(|a| a.strip_prefix("--policy-cache-dir="))
        .expect("--policy-cache-dir");
    let mounts: BTreeMap<&str, &str> = daemon["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["mountPath"].as_str()?, m["name"].as_str()?)))
        .collect();
    assert!(
        mounts.contains_key(cache),
        "{who}: the policy cache {cache} is not a volume"
    );

    // A --policy file lies in a mounted volume, and that volume exists.
    if let Some(policy) = args.iter().find_map(|a| a.strip_prefix("--policy=")) {
        let (mount, volume) = mounts
            .iter()
            .find(|(path, _)| policy.starts_with(&format!("{path}/")))
            .unwrap_or_else(|| panic!("{who}: --policy={policy} is in no mounted volume"));
        let volume = pod["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == *volume))
            .unwrap_or_else(|| panic!("{who}: volume {volume} (mounted at {mount}) is missing"));
        if let Some(cm) = volume["configMap"]["name"].as_str() {
            let key = policy.rsplit('/').next().unwrap_or_default();
            let rendered = of_kind(objects, "ConfigMap")
                .into_iter()
                .find(|o| o["metadata"]["name"] == cm)
                .unwrap_or_else(|| panic!("{who}: ConfigMap {cm} is not rendered"));
            assert!(
                rendered["binaryData"][key].is_string(),
                "{who}: ConfigMap {cm} has no binaryData key {key}"
            );
        }
    }

    // Credentials: from a Secret the same rendering generates.
    for from in daemon["envFrom"].as_array().into_iter().flatten() {
        let Some(name) = from["secretRef"]["name"].as_str() else {
            continue;
        };
        if overlay == "." {
            continue; // the base alone has no credentials; the overlays generate them
        }
        let secret = of_kind(objects, "Secret")
            .into_iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{who}: Secret {name} is not generated"));
        assert_eq!(
            secret["metadata"]["namespace"], d["metadata"]["namespace"],
            "{who}: Secret namespace"
        );
        let keys: Vec<&String> = secret["data"].as_object().expect("data").keys().collect();
        for required in ["SP_STACK_ID", "SP_CLIENT_ID", "SP_CLIENT_SECRET"] {
            assert!(
                keys.iter().any(|k| *k == required),
                "{who}: Secret {name} lacks {required}"
            );
        }
    }
    // No secret material in plain env.
    for env in daemon["env"].as_array().into_iter().flatten() {
        assert_ne!(
            env["name"], "SP_CLIENT_SECRET",
            "{who}: the client secret must come from the Secret"
        );
    }
}

/// No binding to cluster-admin (the old provider's mistake) and no wildcard grant.
fn check_rbac(overlay: &str, objects: &[Value]) {
    for b in of_kind(objects, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(objects, "RoleBinding"))
    {
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        assert!(
            !["cluster-admin", "admin", "edit"].contains(&role),
            "{overlay}: {} binds {role}",
            id(b)
        );
    }
    for r in of_kind(objects, "ClusterRole")
        .into_iter()
        .chain(of_kind(objects, "Role"))
    {
        for rule in r["rules"].as_array().into_iter().flatten() {
            for field in ["verbs", "resources", "apiGroups"] {
                assert!(
                    !strs(&rule[field]).contains(&"*"),
                    "{overlay}: {} grants {field} *",
                    id(r)
                );
            }
        }
    }
}

#[test]
fn every_kustomization_renders_and_keeps_the_invariants() {
    let ws = Workspace::new().expect("copying deploy/");
    let all = kustomizations().expect("listing deploy/");
    assert!(
        all.len() >= 4,
        "expected the root, two cities and examples, found {all:?}"
    );
    for k in &all {
        let objects = ws.render(k).unwrap_or_else(|e| panic!("{e}"));
        let deployments = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{k}: exactly one Deployment");
        for d in deployments {
            check_deployment(k, d, &objects);
        }
        check_rbac(k, &objects);
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
        ] {
            assert!(!of_kind(&objects, kind).is_empty(), "{k}: no {kind}");
        }
    }
}

#[test]
fn each_city_overlay_names_its_node_and_city() {
    let ws = Workspace::new().expect("copying deploy/");
    let cities = cities().expect("listing overlays");
    assert!(
        cities.len() >= 2,
        "at least two city overlays, found {cities:?}"
    );
    for city in &cities {
        let objects = ws
            .render(&format!("overlays/{city}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        assert_eq!(d["metadata"]["name"], format!("vk-stackpath-{city}"));
        let env: BTreeMap<&str, &str> = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
            .collect();
        assert_eq!(
            env.get("SP_CITY_CODE"),
            Some(&city.to_uppercase().as_str()),
            "{city}"
        );
        assert_eq!(
            env.get("VK_NODE_NAME").copied(),
            Some(format!("stackpath-edge-provider-{city}").as_str()),
            "{city}"
        );
        let args = strs(&d["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(
            args.contains(&"--nodename=$(VK_NODE_NAME)"),
            "{city}: {args:?}"
        );
        // The node's InternalIP is the pod IP, from the downward API.
        let pod_ip = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["name"] == "VKUBELET_POD_IP"))
            .expect("VKUBELET_POD_IP");
        assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    }
}

/// Applying two cities to one cluster must not make them fight over an object: whatever both
/// render under one name is identical (the shared namespace, identity and RBAC), and their
/// Deployments select only their own pods.
#[test]
fn city_overlays_can_share_a_cluster() {
    let ws = Workspace::new().expect("copying deploy/");
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut selectors = Vec::new();
    for city in cities().expect("listing overlays") {
        for obj in ws
            .render(&format!("overlays/{city}"))
            .unwrap_or_else(|e| panic!("{e}"))
        {
            if obj["kind"] == "Deployment" {
                selectors.push((city.clone(), obj["spec"]["selector"]["matchLabels"].clone()));
            }
            let key = id(&obj);
            if let Some((other, before)) = seen.get(&key) {
                assert_eq!(before, &obj, "{key} differs between {other} and {city}");
            } else {
                seen.insert(key, (city.clone(), obj));
            }
        }
    }
    for (i, (a, sa)) in selectors.iter().enumerate() {
        for (b, sb) in &selectors[i + 1..] {
            assert_ne!(
                sa, sb,
                "the Deployments of {a} and {b} select the same pods"
            );
        }
    }
}

/// Real credentials and policies dropped into deploy/ must never be committed.
#[test]
fn operator_files_are_git_ignored() {
    let deploy = deploy_tests::deploy_dir();
    for city in cities().expect("listing overlays") {
        for file in ["credentials.env", "policy.wasm"] {
            let path = deploy.join("overlays").join(&city).join(file);
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(&deploy)
                .args(["check-ignore", "-q", "--no-index"])
                .arg(&path)
                .status()
                .expect("git runs");
            assert!(status.success(), "{} is not git-ignored", path.display());
        }
    }
}

/// The mount (path, volume) holding `file`, and that volume.
fn volume_of<'a>(d: &'a Value, file: &str) -> Option<&'a Value> {
    let pod = &d["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| file.starts_with(&format!("{p}/")))
        })?;
    pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}

fn arg_value<'a>(d: &'a Value, flag: &str) -> Option<&'a str> {
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// `kubectl exec` works out of the box: every overlay pins the console host key from a
/// ConfigMap it generates, mounted where --console-known-hosts points.
#[test]
fn every_overlay_ships_the_console_host_key() {
    let ws = Workspace::new().expect("copying deploy/");
    // The base alone (".") generates nothing; every installable kustomization does.
    for k in kustomizations()
        .expect("listing deploy/")
        .into_iter()
        .skip(1)
    {
        let objects = ws.render(&k).unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        let file = arg_value(d, "--console-known-hosts")
            .unwrap_or_else(|| panic!("{k}: no --console-known-hosts"));
        let volume = volume_of(d, file).unwrap_or_else(|| panic!("{k}: {file} is not mounted"));
        let cm = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {file} is not from a ConfigMap"));
        assert_eq!(
            volume["configMap"]["optional"],
            Value::Null,
            "{k}: required"
        );
        let rendered = of_kind(&objects, "ConfigMap")
            .into_iter()
            .find(|o| o["metadata"]["name"] == cm)
            .unwrap_or_else(|| panic!("{k}: ConfigMap {cm} is not generated"));
        assert!(
            rendered["data"]["known_hosts"]
                .as_str()
                .is_some_and(|t| t.contains("ssh-ed25519")),
            "{k}: ConfigMap {cm} holds no known_hosts"
        );
        assert!(
            !strs(&d["spec"]["template"]["spec"]["containers"][0]["args"])
                .contains(&"--insecure-console-host-key"),
            "{k}: the console host key must be checked"
        );
    }
}

/// The CSR self-approver: the flag, and a grant that reaches only the kubelet-serving signer.
#[test]
fn the_csr_approver_component_grants_only_the_serving_signer() {
    let ws = Workspace::new().expect("copying deploy/");
    let objects = ws.render("examples/csr-approver").expect("renders");
    let d = of_kind(&objects, "Deployment")[0];
    assert!(
        strs(&d["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--approve-own-serving-csr")
    );
    let role = of_kind(&objects, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "vk-stackpath-serving-csr-approver")
        .expect("the approver's ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let signers = rules
        .iter()
        .find(|r| strs(&r["resources"]) == ["signers"])
        .expect("a signers rule");
    assert_eq!(
        strs(&signers["resourceNames"]),
        ["kubernetes.io/kubelet-serving"]
    );
    assert_eq!(strs(&signers["verbs"]), ["approve"]);
    for r in rules {
        assert!(
            !strs(&r["verbs"])
                .iter()
                .any(|v| ["create", "delete", "patch"].contains(v)),
            "the approver role only approves: {r}"
        );
    }
    let bound = of_kind(&objects, "ClusterRoleBinding")
        .into_iter()
        .any(|b| {
            b["roleRef"]["name"] == role["metadata"]["name"]
                && b["subjects"][0]["name"] == "vk-stackpath"
        });
    assert!(
        bound,
        "the approver role is bound to the daemon's ServiceAccount"
    );
    // The default overlay does not approve anything.
    let dfw = ws.render("overlays/dfw").expect("renders");
    assert!(
        !strs(&of_kind(&dfw, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--approve-own-serving-csr")
    );
}

/// cert-manager: the Certificate's Secret is mounted where the cert and key flags point.
#[test]
fn the_cert_manager_component_mounts_what_the_certificate_issues() {
    let ws = Workspace::new().expect("copying deploy/");
    let objects = ws.render("examples/cert-manager").expect("renders");
    let cert = of_kind(&objects, "Certificate")[0];
    let secret = cert["spec"]["secretName"].as_str().expect("secretName");
    let d = of_kind(&objects, "Deployment")[0];
    for (flag, file) in [
        ("--tls-cert-file", "tls.crt"),
        ("--tls-private-key-file", "tls.key"),
    ] {
        let path = arg_value(d, flag).unwrap_or_else(|| panic!("{flag} missing"));
        assert!(path.ends_with(&format!("/{file}")), "{flag}={path}");
        let volume = volume_of(d, path).unwrap_or_else(|| panic!("{path} is not mounted"));
        assert_eq!(volume["secret"]["secretName"], secret, "{flag}");
    }
    assert_eq!(
        cert["metadata"]["namespace"], d["metadata"]["namespace"],
        "the Secret is issued in the daemon's namespace"
    );
    let names = strs(&cert["spec"]["dnsNames"]);
    assert!(names.contains(&"stackpath-edge-provider-dfw"), "{names:?}");
}

/// Node and Lease writes are granted only for the overlay's own node (its VK_NODE_NAME); what
/// the base grants on them without a name is `create` alone (RBAC cannot name a create).
#[test]
fn node_and_lease_rights_name_the_overlays_own_node() {
    let ws = Workspace::new().expect("copying deploy/");
    for city in cities().expect("listing overlays") {
        let node = format!("stackpath-edge-provider-{city}");
        let objects = ws
            .render(&format!("overlays/{city}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env");
        assert!(
            env.iter()
                .any(|e| e["name"] == "VK_NODE_NAME" && e["value"] == node.as_str()),
            "{city}: VK_NODE_NAME is {node}"
        );
        let mut named = 0;
        for r in of_kind(&objects, "ClusterRole")
            .into_iter()
            .chain(of_kind(&objects, "Role"))
        {
            for rule in r["rules"].as_array().into_iter().flatten() {
                let resources = strs(&rule["resources"]);
                if !resources
                    .iter()
                    .any(|res| ["nodes", "nodes/status", "leases"].contains(res))
                {
                    continue;
                }
                let in_node_lease = r["metadata"]["namespace"] == "kube-node-lease";
                if resources.contains(&"leases") && !in_node_lease && r["kind"] == "Role" {
                    continue; // leader election, in the daemon's own namespace
                }
                let names = strs(&rule["resourceNames"]);
                if names.is_empty() {
                    assert_eq!(
                        strs(&rule["verbs"]),
                        ["create"],
                        "{city}: {} grants more than create on {resources:?} without a name",
                        id(r)
                    );
                } else {
                    assert_eq!(names, [node.as_str()], "{city}: {}", id(r));
                    named += 1;
                }
            }
        }
        assert_eq!(
            named, 3,
            "{city}: nodes, nodes/status and the lease, by name"
        );
    }
}
