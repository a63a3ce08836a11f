//! No component outlives the test binary that started it, however that binary ends: normal
//! exit (statics are never dropped), a panic, or SIGKILL. The test re-runs this binary as a
//! child that starts the shared cluster, records the component pids, then ends in each way.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use local_cluster::Cluster;

const MODE: &str = "LOCAL_CLUSTER_TEARDOWN_MODE";
const PIDS: &str = "LOCAL_CLUSTER_TEARDOWN_PIDS";

/// The child side, run only by `no_component_survives_its_test_binary`.
#[test]
#[ignore = "helper: run as a child process by no_component_survives_its_test_binary"]
fn teardown_child() {
    let (Ok(mode), Ok(pid_file)) = (std::env::var(MODE), std::env::var(PIDS)) else {
        return;
    };
    let cluster = Cluster::shared();
    let pids: Vec<String> = cluster
        .components()
        .iter()
        .map(|(_, pid, _)| pid.to_string())
        .collect();
    let tmp = format!("{pid_file}.tmp");
    std::fs::write(&tmp, pids.join("\n")).expect("writing pids");
    std::fs::rename(&tmp, &pid_file).expect("publishing pids");
    // End only once the parent has seen the components alive.
    let go = format!("{pid_file}.go");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !Path::new(&go).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    match mode.as_str() {
        "panic" => panic!("deliberate panic with a running cluster"),
        "kill" => std::thread::sleep(Duration::from_secs(300)),
        _ => {}
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); read its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn run_child(mode: &str, dir: &Path) {
    let pid_file = dir.join(format!("{mode}.pids"));
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "teardown_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(PIDS, &pid_file)
        // The child's own test report (a deliberate panic reads as FAILED) stays out of ours.
        .stdout(std::fs::File::create(dir.join(format!("{mode}.log"))).expect("child log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("re-running the test binary");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "{mode}: the child never reported its cluster"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{mode}: child exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids: Vec<i32> = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        4,
        "{mode}: etcd, apiserver, controller-manager, scheduler"
    );
    assert!(
        pids.iter().all(|p| alive(*p)),
        "{mode}: components run while the child lives"
    );

    let go = dir.join(format!("{mode}.pids.go"));
    std::fs::write(&go, "").expect("go file");
    if mode == "kill" {
        // SAFETY: SIGKILL to the child we spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    }
    let status = child.wait().expect("waiting for the child");
    match mode {
        "exit" => assert!(status.success(), "{mode}: {status}"),
        _ => assert!(!status.success(), "{mode}: {status}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "{mode}: components survived their test binary: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_component_survives_its_test_binary() {
    if std::env::var_os(MODE).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("local-cluster-teardown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for mode in ["exit", "panic", "kill"] {
        run_child(mode, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dropping_a_cluster_stops_it_and_errors_name_the_component() {
    if std::env::var_os(MODE).is_some() {
        return;
    }
    let cluster = Cluster::builder()
        .start()
        .expect("starting a dedicated cluster");
    let pids: Vec<i32> = cluster
        .components()
        .iter()
        .map(|(_, p, _)| *p as i32)
        .collect();
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("logs/kube-apiserver.log").is_file());
    drop(cluster);
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "drop stops every component"
    );
    assert!(!dir.exists(), "the harness-chosen dir is removed");
}
