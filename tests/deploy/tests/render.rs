//! Every kustomization under deploy/ renders with real `kubectl kustomize`, and what it renders
//! keeps the promises of deploy/: a locked-down Deployment, least-privilege RBAC, credentials
//! from a generated Secret, and a mounted policy whenever `--policy` is passed.

use std::collections::{BTreeMap, BTreeSet};

use deploy_tests::{Workspace, cities, id, kustomizations, multi_city_overlays, overlays};
use serde_json::Value;

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The daemon container's plain env values (not those from `valueFrom`).
fn env_of(d: &Value) -> BTreeMap<&str, &str> {
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect()
}

/// `SP_CITY_CODE` as the daemon reads it: comma-separated, trimmed, upper-cased, order kept.
fn city_codes(who: &str, value: &str) -> Vec<String> {
    let codes: Vec<String> = value.split(',').map(|c| c.trim().to_uppercase()).collect();
    for c in &codes {
        assert!(
            (2..=8).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphabetic()),
            "{who}: SP_CITY_CODE `{value}`: `{c}` is not a city code"
        );
    }
    let distinct: BTreeSet<&String> = codes.iter().collect();
    assert_eq!(
        distinct.len(),
        codes.len(),
        "{who}: SP_CITY_CODE `{value}` names a city twice"
    );
    codes
}

/// A city's node name from `--nodename`, as the daemon derives it: `{city}` is replaced by the
/// lower-case city code; a name without it gets `-<city>` appended unless it already ends so.
fn node_name(template: &str, city: &str) -> String {
    let city = city.to_lowercase();
    if template.contains("{city}") {
        template.replace("{city}", &city)
    } else if template.ends_with(&format!("-{city}")) {
        template.to_owned()
    } else {
        format!("{template}-{city}")
    }
}

/// The cities of an overlay's Deployment and their node names, in `SP_CITY_CODE`'s order, as the
/// daemon derives them from the rendered env (`--nodename=$(VK_NODE_NAME)`).
fn nodes_of(who: &str, d: &Value) -> Vec<(String, String)> {
    let env = env_of(d);
    let args = strs(&d["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--nodename=$(VK_NODE_NAME)"),
        "{who}: {args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--city-code")),
        "{who}: SP_CITY_CODE is the one list of cities, no --city-code overrides it: {args:?}"
    );
    let template = env.get("VK_NODE_NAME").expect("VK_NODE_NAME");
    let codes = city_codes(who, env.get("SP_CITY_CODE").expect("SP_CITY_CODE"));
    let nodes: Vec<(String, String)> = codes
        .into_iter()
        .map(|c| {
            let node = node_name(template, &c);
            (c, node)
        })
        .collect();
    for (city, node) in &nodes {
        // What the daemon accepts as a node name (also its kubernetes.io/hostname label).
        assert!(
            node.len() <= 63
                && node
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !node.starts_with('-')
                && !node.ends_with('-'),
            "{who}: node name `{node}` of {city} is not a DNS label"
        );
    }
    let distinct: BTreeSet<&String> = nodes.iter().map(|(_, n)| n).collect();
    assert_eq!(distinct.len(), nodes.len(), "{who}: two cities, one node");
    nodes
}

/// The kubelet API ports: one per node, from KUBELET_PORT up in the cities' order, each declared
/// as a container port named `kubelet…` (IANA service names: at most 15 characters).
fn check_kubelet_ports(who: &str, d: &Value, nodes: usize) {
    let env = env_of(d);
    let first: u64 = env
        .get("KUBELET_PORT")
        .unwrap_or(&"10250")
        .parse()
        .expect("KUBELET_PORT is a number");
    let ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports");
    let mut names = BTreeSet::new();
    for p in ports {
        let name = p["name"].as_str().expect("every port is named");
        assert!(
            !name.is_empty()
                && name.len() <= 15
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && name.chars().any(|c| c.is_ascii_lowercase())
                && !name.starts_with('-')
                && !name.ends_with('-')
                && !name.contains("--"),
            "{who}: port name `{name}` is not an IANA service name"
        );
        assert!(names.insert(name), "{who}: port name {name} twice");
    }
    let kubelet: BTreeSet<u64> = ports
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("kubelet")))
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    let expected: BTreeSet<u64> = (first..first + nodes as u64).collect();
    assert_eq!(
        kubelet, expected,
        "{who}: one kubelet port per node, from KUBELET_PORT {first}"
    );
    let named_kubelet = ports
        .iter()
        .find(|p| p["name"] == "kubelet")
        .and_then(|p| p["containerPort"].as_u64());
    assert_eq!(
        named_kubelet,
        Some(first),
        "{who}: port `kubelet` is KUBELET_PORT"
    );
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

/// Every overlay is one of two kinds, so each is checked as what it is: single-city
/// (`overlays/<city>`, city.yaml) or multi-city (cities.yaml).
#[test]
fn every_overlay_is_single_city_or_multi_city() {
    let cities = cities().expect("listing overlays");
    let multi = multi_city_overlays().expect("listing overlays");
    assert!(
        cities.len() >= 2,
        "at least two city overlays, found {cities:?}"
    );
    assert!(!multi.is_empty(), "a multi-city overlay");
    for o in overlays().expect("listing overlays") {
        assert!(
            cities.contains(&o) != multi.contains(&o),
            "overlays/{o} must have exactly one of city.yaml (one city) and cities.yaml (several)"
        );
    }
}

#[test]
fn each_city_overlay_names_its_node_and_city() {
    let ws = Workspace::new().expect("copying deploy/");
    for city in &cities().expect("listing overlays") {
        let objects = ws
            .render(&format!("overlays/{city}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        assert_eq!(d["metadata"]["name"], format!("vk-stackpath-{city}"));
        let env = env_of(d);
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
        // The daemon reads VK_NODE_NAME as a template: this one is used as is.
        assert_eq!(
            nodes_of(city, d),
            [(
                city.to_uppercase(),
                format!("stackpath-edge-provider-{city}")
            )],
            "{city}"
        );
        check_kubelet_ports(city, d, 1);
        // The node's InternalIP is the pod IP, from the downward API.
        let pod_ip = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["name"] == "VKUBELET_POD_IP"))
            .expect("VKUBELET_POD_IP");
        assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    }
}

/// The multi-city overlay: one Deployment of its own, one daemon for a list of cities, one node
/// per city named by the VK_NODE_NAME template, one kubelet port per node; the nodes of cities
/// that also have a per-city overlay keep that overlay's node name (switching adopts them).
#[test]
fn the_multi_city_overlay_runs_one_daemon_for_its_cities() {
    let ws = Workspace::new().expect("copying deploy/");
    let singles = cities().expect("listing overlays");
    for o in multi_city_overlays().expect("listing overlays") {
        let objects = ws
            .render(&format!("overlays/{o}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let deployments = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{o}: one Deployment, one daemon");
        let d = deployments[0];
        assert_eq!(d["metadata"]["name"], format!("vk-stackpath-{o}"));
        assert_eq!(
            d["spec"]["replicas"], 1,
            "{o}: one replica (leader election guards more)"
        );
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], o,
            "{o}: its own selector"
        );
        let env = env_of(d);
        assert!(
            env["VK_NODE_NAME"].contains("{city}"),
            "{o}: VK_NODE_NAME is a template naming each city's node: {}",
            env["VK_NODE_NAME"]
        );
        let nodes = nodes_of(&o, d);
        assert!(
            nodes.len() >= 2,
            "{o}: SP_CITY_CODE lists several cities: {nodes:?}"
        );
        check_kubelet_ports(&o, d, nodes.len());
        let pod_ip = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["name"] == "VKUBELET_POD_IP"))
            .expect("VKUBELET_POD_IP");
        assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");

        // A city that also has its own overlay gets the same node there and here, so switching
        // from one to the other adopts the node's workloads instead of duplicating them.
        for (city, node) in &nodes {
            let single = city.to_lowercase();
            if !singles.contains(&single) {
                continue;
            }
            let objects = ws
                .render(&format!("overlays/{single}"))
                .unwrap_or_else(|e| panic!("{e}"));
            let theirs = nodes_of(&single, of_kind(&objects, "Deployment")[0]);
            assert_eq!(
                theirs,
                [(city.clone(), node.clone())],
                "{o}: {city}'s node differs from overlays/{single}"
            );
            // Applying both would make two daemons act for one node: the overlay says not to.
            let header = std::fs::read_to_string(
                deploy_tests::deploy_dir()
                    .join("overlays")
                    .join(&o)
                    .join("kustomization.yaml"),
            )
            .expect("reading the kustomization");
            assert!(
                header.contains(&format!("overlays/{single}")),
                "{o}: its kustomization.yaml must warn against applying it with overlays/{single}"
            );
        }
    }
}

/// Beyond what makes it multi-city (name, instance label, cities, node-name template, kubelet
/// ports), the multi-city Deployment is a per-city one: same image, args, identity, security
/// settings, volumes and resources.
#[test]
fn the_multi_city_deployment_differs_from_a_city_one_only_in_its_cities() {
    let ws = Workspace::new().expect("copying deploy/");
    let city = cities().expect("listing overlays").remove(0);
    let objects = ws
        .render(&format!("overlays/{city}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let single = of_kind(&objects, "Deployment")[0].clone();
    for o in multi_city_overlays().expect("listing overlays") {
        let objects = ws
            .render(&format!("overlays/{o}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut multi = of_kind(&objects, "Deployment")[0].clone();
        multi["metadata"]["name"] = single["metadata"]["name"].clone();
        for labels in [
            "/metadata/labels",
            "/spec/selector/matchLabels",
            "/spec/template/metadata/labels",
        ] {
            *multi
                .pointer_mut(&format!("{labels}/app.kubernetes.io~1instance"))
                .expect("an instance label") = city.as_str().into();
        }
        let container = &mut multi["spec"]["template"]["spec"]["containers"][0];
        container["ports"] = single["spec"]["template"]["spec"]["containers"][0]["ports"].clone();
        for e in container["env"].as_array_mut().expect("env") {
            let theirs = single["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .and_then(|es| es.iter().find(|x| x["name"] == e["name"]))
                .unwrap_or_else(|| panic!("{o}: env {} is not in overlays/{city}", e["name"]));
            if ["SP_CITY_CODE", "VK_NODE_NAME"].contains(&e["name"].as_str().unwrap_or("")) {
                *e = theirs.clone();
            }
        }
        assert_eq!(
            multi, single,
            "{o}: the Deployment differs from overlays/{city}'s in more than its cities"
        );
    }
}

/// With cert files (components/cert-manager) one certificate serves every node of the daemon,
/// so it must name all of them.
#[test]
fn the_cert_manager_certificate_names_every_node_of_the_multi_city_daemon() {
    let ws = Workspace::new().expect("copying deploy/");
    for o in multi_city_overlays().expect("listing overlays") {
        let dir = ws.deploy().join(format!("test-{o}-cert-manager"));
        std::fs::create_dir_all(&dir).expect("creating a kustomization");
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources: [../overlays/{o}]\ncomponents: [../components/cert-manager]\n"
            ),
        )
        .expect("writing a kustomization");
        let objects = ws
            .render(&format!("test-{o}-cert-manager"))
            .unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        assert!(arg_value(d, "--tls-cert-file").is_some(), "{o}: cert files");
        let names = strs(&of_kind(&objects, "Certificate")[0]["spec"]["dnsNames"]);
        for (_, node) in nodes_of(&o, d) {
            assert!(
                names.contains(&node.as_str()),
                "{o}: {node} not in {names:?}"
            );
        }
    }
}

/// Applying two overlays to one cluster must not make them fight over an object: whatever both
/// render under one name is identical (the shared namespace, identity and RBAC), and their
/// Deployments select only their own pods. (A multi-city overlay and the per-city overlay of
/// one of its cities share a cluster only while switching from one to the other: both
/// running would be two daemons for one node.)
#[test]
fn overlays_can_share_a_cluster() {
    let ws = Workspace::new().expect("copying deploy/");
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut selectors = Vec::new();
    for overlay in overlays().expect("listing overlays") {
        for obj in ws
            .render(&format!("overlays/{overlay}"))
            .unwrap_or_else(|e| panic!("{e}"))
        {
            if obj["kind"] == "Deployment" {
                selectors.push((
                    overlay.clone(),
                    obj["spec"]["selector"]["matchLabels"].clone(),
                    obj["spec"]["template"]["metadata"]["labels"].clone(),
                ));
            }
            let key = id(&obj);
            if let Some((other, before)) = seen.get(&key) {
                assert_eq!(before, &obj, "{key} differs between {other} and {overlay}");
            } else {
                seen.insert(key, (overlay.clone(), obj));
            }
        }
    }
    // A selector picks a pod whose labels include all its matchLabels: no Deployment's
    // selector may match another one's pod template.
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    for (a, sa, la) in &selectors {
        for (b, sb, lb) in &selectors {
            if a == b {
                continue;
            }
            assert!(selects(sa, la), "{a}: its selector misses its own pods");
            assert!(
                !selects(sa, lb) && !selects(sb, la),
                "the Deployments of {a} and {b} select each other's pods"
            );
        }
    }
}

/// Real credentials and policies dropped into deploy/ must never be committed.
#[test]
fn operator_files_are_git_ignored() {
    let deploy = deploy_tests::deploy_dir();
    for overlay in overlays().expect("listing overlays") {
        for file in ["credentials.env", "policy.wasm"] {
            let path = deploy.join("overlays").join(&overlay).join(file);
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

/// Node and Lease writes are granted only for the overlay's own nodes (derived from its
/// SP_CITY_CODE and VK_NODE_NAME as the daemon does); what the base grants on them without a
/// name is `create` alone (RBAC cannot name a create).
#[test]
fn node_and_lease_rights_name_the_overlays_own_node() {
    let ws = Workspace::new().expect("copying deploy/");
    for overlay in overlays().expect("listing overlays") {
        let objects = ws
            .render(&format!("overlays/{overlay}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let d = of_kind(&objects, "Deployment")[0];
        let nodes: BTreeSet<String> = nodes_of(&overlay, d).into_iter().map(|(_, n)| n).collect();
        // (resource, node) -> verbs granted on it by name.
        let mut named: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
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
                        "{overlay}: {} grants more than create on {resources:?} without a name",
                        id(r)
                    );
                    continue;
                }
                // One node per rule, as in the per-city files: a rule is that node's grant.
                assert_eq!(names.len(), 1, "{overlay}: {} names {names:?}", id(r));
                assert!(
                    nodes.contains(names[0]),
                    "{overlay}: {} names {}, not one of its nodes {nodes:?}",
                    id(r),
                    names[0]
                );
                for res in &resources {
                    let verbs = named
                        .entry((res.to_string(), names[0].to_owned()))
                        .or_default();
                    verbs.extend(strs(&rule["verbs"]).into_iter().map(str::to_owned));
                    verbs.sort();
                }
            }
        }
        let expected: BTreeMap<(String, String), Vec<String>> = nodes
            .iter()
            .flat_map(|n| {
                [
                    ("nodes", vec!["get", "patch"]),
                    ("nodes/status", vec!["patch"]),
                    ("leases", vec!["patch"]),
                ]
                .map(|(res, verbs)| {
                    (
                        (res.to_owned(), n.clone()),
                        verbs.into_iter().map(str::to_owned).collect(),
                    )
                })
            })
            .collect();
        assert_eq!(
            named, expected,
            "{overlay}: nodes, nodes/status and the lease of each of its nodes, by name"
        );
    }
}

/// What an identity may do, flattened: (binding's subject, namespace or "" for cluster-wide,
/// API group, resource, resource name or "" for any, verb). An overlay's own node names become
/// `<own node>`, so overlays of different cities compare.
fn grants(objects: &[Value], own_nodes: &BTreeSet<String>) -> BTreeSet<[String; 6]> {
    let mut out = BTreeSet::new();
    for b in of_kind(objects, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(objects, "RoleBinding"))
    {
        let namespace = b["metadata"]["namespace"].as_str().unwrap_or("");
        let role = objects
            .iter()
            .find(|r| {
                r["kind"] == b["roleRef"]["kind"]
                    && r["metadata"]["name"] == b["roleRef"]["name"]
                    && r["metadata"]["namespace"].as_str().unwrap_or("") == namespace
            })
            .unwrap_or_else(|| panic!("{}: its role is not rendered", id(b)));
        for subject in b["subjects"].as_array().into_iter().flatten() {
            let who = format!(
                "{}/{}/{}",
                subject["kind"].as_str().unwrap_or(""),
                subject["namespace"].as_str().unwrap_or(""),
                subject["name"].as_str().unwrap_or("")
            );
            for rule in role["rules"].as_array().into_iter().flatten() {
                let mut names: Vec<&str> = strs(&rule["resourceNames"]);
                if names.is_empty() {
                    names.push("");
                }
                for group in strs(&rule["apiGroups"]) {
                    for res in strs(&rule["resources"]) {
                        for name in &names {
                            let name = if own_nodes.contains(*name) {
                                "<own node>"
                            } else {
                                name
                            };
                            for verb in strs(&rule["verbs"]) {
                                out.insert([
                                    who.clone(),
                                    namespace.to_owned(),
                                    group.to_owned(),
                                    res.to_owned(),
                                    name.to_owned(),
                                    verb.to_owned(),
                                ]);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The multi-city daemon may do nothing a per-city daemon may not, its own nodes aside.
#[test]
fn the_multi_city_overlay_grants_no_more_than_a_city_overlay() {
    let ws = Workspace::new().expect("copying deploy/");
    let rendered = |o: &str| {
        let objects = ws
            .render(&format!("overlays/{o}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let nodes = nodes_of(o, of_kind(&objects, "Deployment")[0])
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        grants(&objects, &nodes)
    };
    let mut allowed = BTreeSet::new();
    for city in cities().expect("listing overlays") {
        allowed.extend(rendered(&city));
    }
    for o in multi_city_overlays().expect("listing overlays") {
        let extra: Vec<_> = rendered(&o).difference(&allowed).cloned().collect();
        assert!(
            extra.is_empty(),
            "{o} grants what no city overlay does: {extra:?}"
        );
    }
}
