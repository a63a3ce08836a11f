//! `run_containers`: real processes, their output as logs, exit codes as phases, no orphans.

mod common;

use std::time::Duration;

use common::*;
use stackpath_emulator::EmulatorConfig;

fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        run_containers: true,
        ..fast_config()
    }
}

#[tokio::test]
async fn exit_code_drives_failed_and_logs_hold_output() {
    let emu = start(cfg()).await;
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
