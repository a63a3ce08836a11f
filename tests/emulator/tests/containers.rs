//! `run_containers`: real processes, their output as logs, exit codes as phases, no orphans.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stackpath_emulator::{ContainerRestart, EmulatorConfig};

fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        run_containers: true,
        ..fast_config()
    }
}

#[tokio::test]
async fn exit_code_drives_failed_and_logs_hold_output() {
    // Without restarts (the emulator's old behaviour, still selectable).
    let emu = start(EmulatorConfig {
        container_restart: ContainerRestart::Never,
        ..cfg()
    })
    .await;
    let api = Api::new(&emu).await;
    let (s, w) = api
        .create(&workload(
            "job",
            container(Some(vec![
                "sh",
                "-c",
                "echo hi; echo \"$FOO $SECRET\"; exit 3",
            ])),
        ))
        .await;
    assert_eq!(s, 200, "{w}");
    let id = w["workload"]["id"].as_str().unwrap();
    let i = api
        .wait_phase(id, "job-city-code-dfw-0", "FAILED", 10)
        .await;
    let cs = &i["containerStatuses"][0];
    assert_eq!(cs["phase"], "FAILED");
    assert_eq!(cs["terminated"]["exitCode"], 3);
    let (s, logs) = api.logs(id, "job-city-code-dfw-0", "").await;
    assert_eq!(s, 200);
    assert_eq!(logs, "hi\nbar s3cret\n");

    let (_, ok) = api
        .create(&workload("okjob", container(Some(vec!["true"]))))
        .await;
    let id = ok["workload"]["id"].as_str().unwrap();
    let i = api
        .wait_phase(id, "okjob-city-code-dfw-0", "COMPLETED", 10)
        .await;
    assert_eq!(i["containerStatuses"][0]["phase"], "STOPPED");
    assert_eq!(i["containerStatuses"][0]["terminated"]["exitCode"], 0);
    emu.shutdown().await;
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes: check /proc state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
        Err(_) => false,
    }
}

async fn pid_of(api: &Api, id: &str, name: &str) -> i32 {
    // The container writes its shell's pid and that of a background child into its log.
    for _ in 0..100 {
        let (s, logs) = api.logs(id, name, "").await;
        if s == 200
            && let Some(l) = logs.lines().find(|l| l.starts_with("child "))
        {
            return l[6..].trim().parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid logged");
}

#[tokio::test]
async fn processes_die_on_delete_restart_and_shutdown() {
    let emu = start(cfg()).await;
    let api = Api::new(&emu).await;
    let script = vec![
        "sh",
        "-c",
        "sleep 300 & echo child $!; echo follow-me; wait",
    ];
    let (_, w) = api
        .create(&workload("longrun", container(Some(script.clone()))))
        .await;
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    let name = "longrun-city-code-dfw-0";
    api.wait_phase(&id, name, "RUNNING", 10).await;
    let child = pid_of(&api, &id, name).await;
    assert!(alive(child));

    // Follow a real process's log: the line is there and the stream ends at the server cut.
    let (_, f) = api.logs(&id, name, "follow=true").await;
    assert!(f.contains("follow-me"), "{f}");

    // Restart kills the group (grandchild included) and starts a new generation.
    let (s, _) = api
        .call(
            reqwest::Method::POST,
            &api.url(&format!("/workloads/{id}/instances/{name}/power/restart")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    for _ in 0..60 {
        if !alive(child) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(child), "grandchild {child} survived a restart");
    api.wait_phase(&id, name, "RUNNING", 10).await;
    let (s, prev) = api.logs(&id, name, "previous=true").await;
    assert_eq!(s, 200);
    assert!(prev.contains("follow-me"));
    let child2 = pid_of(&api, &id, name).await;
    assert_ne!(child, child2);

    // Delete kills it.
    api.call(
        reqwest::Method::DELETE,
        &api.url(&format!("/workloads/{id}")),
        None,
    )
    .await;
    for _ in 0..60 {
        if !alive(child2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(child2), "grandchild survived a delete");

    // Shutdown kills whatever still runs.
    let (_, w) = api
        .create(&workload("survivor", container(Some(script))))
        .await;
    let id = w["workload"]["id"].as_str().unwrap().to_string();
    api.wait_phase(&id, "survivor-city-code-dfw-0", "RUNNING", 10)
        .await;
    let child3 = pid_of(&api, &id, "survivor-city-code-dfw-0").await;
    emu.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(child3), "process survived emulator shutdown");
}

fn fast_restarts() -> EmulatorConfig {
    EmulatorConfig {
        restart_backoff: Duration::from_millis(300),
        restart_backoff_max: Duration::from_millis(1200),
        ..cfg()
    }
}

async fn create(api: &Api, body: &Value) -> String {
    let (s, w) = api.create(body).await;
    assert_eq!(s, 200, "{w}");
    w["workload"]["id"].as_str().unwrap().to_string()
}

/// Polls the instance until `pred` holds for it.
async fn wait_for(
    api: &Api,
    id: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..200 {
        let i = api.instance(id, name).await;
        if pred(&i) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened: {}", api.instance(id, name).await);
}

#[tokio::test]
async fn failed_containers_restart_with_back_off_and_report_their_exit() {
    let emu = start(fast_restarts()).await;
    let api = Api::new(&emu).await;
    let id = create(
        &api,
        &workload(
            "crashy",
            container(Some(vec!["sh", "-c", "echo run; exit 3"])),
        ),
    )
    .await;
    let name = "crashy-city-code-dfw-0";
    // Between runs: FAILED container with its exit (code, reason, finish time) and the
    // back-off as waiting; the instance stays RUNNING (it is being restarted).
    let i = wait_for(&api, &id, name, "a back-off", |i| {
        i["containerStatuses"][0]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    assert_eq!(i["phase"], "RUNNING", "{i}");
    let cs = &i["containerStatuses"][0];
    assert_eq!(cs["phase"], "FAILED");
    assert_eq!(cs["ready"], false);
    assert_eq!(cs["terminated"]["exitCode"], 3);
    assert_eq!(cs["terminated"]["reason"], "Error");
    let fin = cs["terminated"]["finishedAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(fin).is_ok());
    assert_eq!(cs["finishedAt"], fin);
    assert_eq!(
        check_shape(&spec(), "workloadv1Instance", &i),
        Vec::<String>::new()
    );
    // The restart count rises; each finish time is later than the last.
    let later = wait_for(&api, &id, name, "two restarts", |i| {
        i["containerStatuses"][0]["restartCount"].as_i64() >= Some(2)
    })
    .await;
    let cs2 = &later["containerStatuses"][0];
    if let Some(f2) = cs2["terminated"]["finishedAt"].as_str() {
        assert!(f2 >= fin);
    }
    // The previous run's output is the previous log.
    let (s, prev) = api.logs(&id, name, "previous=true").await;
    assert_eq!((s, prev.as_str()), (200, "run\n"));
    emu.shutdown().await;
}

#[tokio::test]
async fn completed_containers_stay_completed_unless_the_policy_is_always() {
    let emu = start(fast_restarts()).await;
    let api = Api::new(&emu).await;
    let id = create(&api, &workload("done", container(Some(vec!["true"])))).await;
    let i = api
        .wait_phase(&id, "done-city-code-dfw-0", "COMPLETED", 10)
        .await;
    assert_eq!(i["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        i["containerStatuses"][0]["terminated"]["reason"],
        "Completed"
    );
    emu.shutdown().await;

    let emu = start(EmulatorConfig {
        container_restart: ContainerRestart::Always,
        ..fast_restarts()
    })
    .await;
    let api = Api::new(&emu).await;
    let id = create(&api, &workload("again", container(Some(vec!["true"])))).await;
    let i = wait_for(&api, &id, "again-city-code-dfw-0", "a restart", |i| {
        i["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)
    })
    .await;
    assert_ne!(i["phase"], "COMPLETED");
    emu.shutdown().await;
}

fn env_ref(path: &str) -> Value {
    json!({"valueFrom": {"instanceFieldRef": {"fieldPath": path}}})
}

#[tokio::test]
async fn instance_field_refs_resolve_into_the_env_and_unknown_paths_are_400s() {
    let emu = start(cfg()).await;
    let api = Api::new(&emu).await;
    let mut c = container(Some(vec![
        "sh",
        "-c",
        "echo \"ip=$IP city=$CITY name=$NAME gw=$GW slug=$SLUG image=$IMAGE opt=${OPT-unset}\"; sleep 3600",
    ]));
    c["env"]["IP"] = env_ref(".ipAddress");
    c["env"]["CITY"] = env_ref(".location.cityCode");
    c["env"]["NAME"] = env_ref(".name");
    c["env"]["GW"] = env_ref(".networkInterfaces[?(@.network==\"default\")].gateway");
    c["env"]["SLUG"] =
        env_ref(".metadata.labels['workload\\.platform\\.stackpath\\.net/workload-slug']");
    c["env"]["IMAGE"] = env_ref(".containers[0].image");
    c["env"]["OPT"] = json!({"valueFrom": {"instanceFieldRef": {"fieldPath": ".externalIpv6Address", "optional": true}}});
    let id = create(&api, &workload("refs", c.clone())).await;
    let name = "refs-city-code-dfw-0";
    let i = api.wait_phase(&id, name, "RUNNING", 10).await;
    let mut logs = String::new();
    for _ in 0..100 {
        logs = api.logs(&id, name, "").await.1;
        if logs.contains("ip=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ip = i["ipAddress"].as_str().unwrap();
    let gw = i["networkInterfaces"][0]["gateway"].as_str().unwrap();
    assert!(
        logs.contains(&format!(
            "ip={ip} city=DFW name={name} gw={gw} slug=refs image=busybox:1.36 opt=unset"
        )),
        "{logs}"
    );

    // Unknown fields and forbidden forms: 400 naming the env var's field path.
    for bad in [
        ".ipAdress",
        ".location.town",
        "..name",
        ".networkInterfaces[0:1].gateway",
    ] {
        let mut c2 = c.clone();
        c2["env"]["BAD"] = env_ref(bad);
        let (s, v) = api.create(&workload("refs-bad", c2)).await;
        assert_eq!((s, v["code"].as_i64()), (400, Some(3)), "{bad}: {v}");
        assert_eq!(
            v["details"][0]["fieldViolations"][0]["field"],
            "workload.spec.containers.app.env.BAD.valueFrom.instanceFieldRef.fieldPath",
            "{v}"
        );
    }
    let mut c3 = c.clone();
    c3["env"]["BOTH"] =
        json!({"value": "x", "valueFrom": {"instanceFieldRef": {"fieldPath": ".name"}}});
    let (s, _) = api.create(&workload("refs-both", c3)).await;
    assert_eq!(s, 400);
    emu.shutdown().await;
}

/// Does this path exist on this machine (it must not, before or after)?
fn absent(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_err()
}

#[tokio::test]
async fn volume_claims_are_shared_directories_at_their_mount_paths() {
    let emu = start(cfg()).await;
    let api = Api::new(&emu).await;
    let tag = format!("{}", std::process::id());
    let conf = format!("/etc/stackpath-emulator-test-{tag}/conf.d");
    let data = format!("/stackpath-emulator-test-{tag}");
    assert!(absent(&conf) && absent(&data));
    let mounts = json!([{"slug": "conf", "mountPath": conf}, {"slug": "data", "mountPath": data}]);
    let mut body = workload(
        "vols",
        container(Some(vec![
            "sh",
            "-c",
            &format!("cat {conf}/site.conf; echo main >> {data}/order; sleep 3600"),
        ])),
    );
    let spec = &mut body["workload"]["spec"];
    spec["volumeClaimTemplates"] = json!([
        {"name": "conf", "slug": "conf", "spec": {"resources": {"requests": {"storage": "1Gi"}}}},
        {"name": "data", "slug": "data", "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    ]);
    spec["containers"]["app"]["volumeMounts"] = mounts.clone();
    let mut side = container(Some(vec![
        "sh",
        "-c",
        &format!("ls {conf}; echo side >> {data}/order; sleep 0.6; cat {data}/order; sleep 3600"),
    ]));
    side["volumeMounts"] =
        json!([{"slug": "conf", "mountPath": conf}, {"slug": "data", "mountPath": data}]);
    spec["containers"]["side"] = side;
    // Init containers run in order, to completion, before the containers.
    for (n, script) in [
        (
            "a-first",
            format!("echo 'server_name edge;' > {conf}/site.conf; echo a >> {data}/order"),
        ),
        ("b-second", format!("sleep 0.3; echo b >> {data}/order")),
    ] {
        let mut c = container(Some(vec!["sh", "-c", &script]));
        c["volumeMounts"] = mounts.clone();
        spec["initContainers"][n] = c;
    }
    let id = create(&api, &body).await;
    let name = "vols-city-code-dfw-0";
    let i = api.wait_phase(&id, name, "RUNNING", 15).await;
    assert_eq!(i["initContainerStatuses"][0]["phase"], "STOPPED", "{i}");
    assert_eq!(i["initContainerStatuses"][0]["terminated"]["exitCode"], 0);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = api.logs(&id, name, "container_name=app").await.1;
        if !logs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        logs, "server_name edge;\n",
        "the init container's file, seen by app"
    );
    // The order file: both init containers, in order, then the two containers.
    let mut side_logs = String::new();
    for _ in 0..100 {
        side_logs = api.logs(&id, name, "container_name=side").await.1;
        if side_logs.lines().count() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<&str> = side_logs.lines().collect();
    assert_eq!(lines[..3], ["site.conf", "a", "b"], "{side_logs}");
    let mut rest = lines[3..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["main", "side"], "{side_logs}");
    assert!(
        absent(&conf) && absent(&data),
        "nothing was created on this machine"
    );
    // Another workload has its own claims: its /data starts empty.
    let mut reader = workload(
        "vols-reader",
        container(Some(vec![
            "sh",
            "-c",
            &format!("cat {data}/order 2>/dev/null; echo end; sleep 3600"),
        ])),
    );
    reader["workload"]["spec"]["containers"]["app"]["volumeMounts"] =
        json!([{"slug": "data", "mountPath": data}]);
    let id2 = create(&api, &reader).await;
    let r = "vols-reader-city-code-dfw-0";
    api.wait_phase(&id2, r, "RUNNING", 10).await;
    let mut other = String::new();
    for _ in 0..100 {
        other = api.logs(&id2, r, "").await.1;
        if !other.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        other,
        "end
"
    );
    emu.shutdown().await;
    assert!(absent(&conf) && absent(&data));
}

#[tokio::test]
async fn volume_mounts_must_name_a_claim_and_an_absolute_path() {
    let emu = start(cfg()).await;
    let api = Api::new(&emu).await;
    for (mount, field) in [
        (json!({"slug": "nope", "mountPath": "/x"}), "slug"),
        (
            json!({"slug": "data", "mountPath": "relative"}),
            "mountPath",
        ),
        (json!({"slug": "data", "mountPath": "/a/../b"}), "mountPath"),
    ] {
        let mut body = workload("badmount", container(None));
        body["workload"]["spec"]["containers"]["app"]["volumeMounts"] = json!([mount]);
        let (s, v) = api.create(&body).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(
            v["details"][0]["fieldViolations"][0]["field"],
            format!("workload.spec.containers.app.volumeMounts[0].{field}"),
            "{v}"
        );
    }
    emu.shutdown().await;
}
