//! `run_containers`: each container's command and args run as a local process in its own
//! process group, temporary directory and environment. Output goes to the logs; exit codes
//! drive the container and instance phases. Groups are killed on delete, restart and shutdown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logs::LogBuf;
use crate::model::{self, ContainerRun};
use crate::state::Shared;

/// Live process groups by owner (an instance id, or `exec:<n>` for console sessions).
#[derive(Default)]
pub(crate) struct Processes {
    groups: Mutex<HashMap<String, Vec<i32>>>,
}

fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

impl Processes {
    pub(crate) fn register(&self, owner: &str, pgid: i32) {
        if let Ok(mut g) = self.groups.lock() {
            g.entry(owner.to_string()).or_default().push(pgid);
        }
    }

    pub(crate) fn unregister(&self, owner: &str, pgid: i32) {
        if let Ok(mut g) = self.groups.lock()
            && let Some(v) = g.get_mut(owner)
        {
            v.retain(|p| *p != pgid);
            if v.is_empty() {
                g.remove(owner);
            }
        }
    }

    /// Drop an owner's groups without signalling them (its process has exited).
    pub(crate) fn forget(&self, owner: &str) {
        if let Ok(mut g) = self.groups.lock() {
            g.remove(owner);
        }
    }

    /// SIGTERM now, SIGKILL two seconds later (as a kubelet grace period would).
    pub(crate) fn kill_instance(&self, owner: &str) {
        let pgids = self
            .groups
            .lock()
            .ok()
            .and_then(|mut g| g.remove(owner))
            .unwrap_or_default();
        if pgids.is_empty() {
            return;
        }
        for p in &pgids {
            signal_group(*p, libc::SIGTERM);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                for p in pgids {
                    signal_group(p, libc::SIGKILL);
                }
            });
        } else {
            for p in pgids {
                signal_group(p, libc::SIGKILL);
            }
        }
    }

    pub(crate) fn kill_all(&self) {
        let all: Vec<i32> = self
            .groups
            .lock()
            .map(|mut g| g.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        for p in all {
            signal_group(p, libc::SIGKILL);
        }
    }
}

/// The environment a container (or an exec in it) sees: a clean env with PATH, HOME (its
/// directory), HOSTNAME (the instance name), and the container's `value`/`secretValue` env.
pub(crate) fn container_env(
    container: &Value,
    instance: &str,
    home: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".to_string(), home.display().to_string()),
        ("HOSTNAME".to_string(), instance.to_string()),
    ];
    if let Some(m) = container.get("env").and_then(Value::as_object) {
        for (k, v) in m {
            let val = v
                .get("value")
                .and_then(Value::as_str)
                .or_else(|| v.get("secretValue").and_then(Value::as_str))
                .unwrap_or("");
            env.push((k.clone(), val.to_string()));
        }
    }
    env
}

/// `<workdir>/<instance>/<container>`, created if missing.
pub(crate) fn container_dir(
    shared: &Shared,
    instance: &str,
    container: &str,
) -> std::io::Result<PathBuf> {
    let dir = shared.workdir.path().join(instance).join(container);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Start (after the STARTING delay) the processes of every instance of a workload, for the
/// instances' current generation.
pub(crate) fn schedule(shared: Arc<Shared>, stack_id: String, workload_id: String) {
    let plan: Vec<(String, String, u32, chrono::DateTime<Utc>)> = {
        let store = shared.lock();
        let Some(w) = store
            .stacks
            .get(&stack_id)
            .and_then(|s| s.workloads.get(&workload_id))
        else {
            return;
        };
        w.instances
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    i.name.clone(),
                    i.generation,
                    model::running_at(i, &shared.config.delays),
                )
            })
            .collect()
    };
    for (iid, iname, generation, at) in plan {
        let shared = shared.clone();
        let (stack_id, workload_id) = (stack_id.clone(), workload_id.clone());
        tokio::spawn(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shared.cancel.cancelled() => return,
            }
            start_instance(&shared, &stack_id, &workload_id, &iid, &iname, generation);
        });
    }
}

fn start_instance(
    shared: &Arc<Shared>,
    stack_id: &str,
    wid: &str,
    iid: &str,
    iname: &str,
    generation: u32,
) {
    // Still the same generation, not failed, not being deleted?
    let containers: Vec<(String, Value)> = {
        let store = shared.lock();
        let Some(w) = store
            .stacks
            .get(stack_id)
            .and_then(|s| s.workloads.get(wid))
        else {
            return;
        };
        let Some(i) = w.instances.iter().find(|i| i.id == iid) else {
            return;
        };
        if i.generation != generation || i.failure.is_some() || w.delete_requested_at.is_some() {
            return;
        }
        w.body
            .pointer("/spec/containers")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    for (name, spec) in containers {
        let buf = shared.logs.new_generation(iid, &name);
        let started = spawn_container(shared, iid, iname, &name, &spec, &buf);
        let now = Utc::now();
        update_run(shared, stack_id, wid, iid, generation, &name, |r| {
            r.started_at = Some(now);
        });
        let shared = shared.clone();
        let (stack_id, wid, iid) = (stack_id.to_string(), wid.to_string(), iid.to_string());
        tokio::spawn(async move {
            let code = match started {
                Ok(Some(child)) => wait_child(&shared, &iid, child, &buf).await,
                Ok(None) => return, // no command: the container idles
                Err(code) => code,
            };
            buf.close();
            let now = Utc::now();
            update_run(&shared, &stack_id, &wid, &iid, generation, &name, |r| {
                r.exit_code = Some(code);
                r.finished_at = Some(now);
            });
            shared.changed();
        });
    }
    shared.changed();
}

fn update_run(
    shared: &Shared,
    stack_id: &str,
    wid: &str,
    iid: &str,
    generation: u32,
    container: &str,
    f: impl FnOnce(&mut ContainerRun),
) {
    let mut store = shared.lock();
    if let Some(i) = store
        .stacks
        .get_mut(stack_id)
        .and_then(|s| s.workloads.get_mut(wid))
        .and_then(|w| w.instances.iter_mut().find(|i| i.id == iid))
        .filter(|i| i.generation == generation)
    {
        f(i.runs.entry(container.to_string()).or_default());
    }
}

fn argv(spec: &Value) -> Vec<String> {
    let list = |k: &str| -> Vec<String> {
        spec.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut v = list("command");
    v.extend(list("args"));
    v
}

/// `Ok(None)`: nothing to run. `Err(code)`: could not start (logged to the container's log).
fn spawn_container(
    shared: &Shared,
    iid: &str,
    iname: &str,
    name: &str,
    spec: &Value,
    buf: &LogBuf,
) -> Result<Option<tokio::process::Child>, i32> {
    let argv = argv(spec);
    let Some((prog, args)) = argv.split_first() else {
        buf.push("emulator: no command given; the image's entrypoint is not emulated, so the container idles");
        return Ok(None);
    };
    let dir = container_dir(shared, iname, name).map_err(|e| {
        buf.push(format!(
            "emulator: cannot create the container directory: {e}"
        ));
        128
    })?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(container_env(spec, iname, &dir))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    match cmd.spawn() {
        Ok(child) => {
            if let Some(pid) = child.id() {
                shared.processes.register(iid, pid as i32);
            }
            Ok(Some(child))
        }
        Err(e) => {
            buf.push(format!("emulator: cannot start {prog:?}: {e}"));
            Err(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        }
    }
}

async fn pump(r: impl AsyncRead + Unpin, buf: &LogBuf) {
    let mut lines = BufReader::new(r).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        buf.push(line);
    }
}

async fn wait_child(
    shared: &Shared,
    iid: &str,
    mut child: tokio::process::Child,
    buf: &LogBuf,
) -> i32 {
    let pid = child.id().map(|p| p as i32);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read_out = async {
        if let Some(o) = out {
            pump(o, buf).await;
        }
    };
    let read_err = async {
        if let Some(e) = err {
            pump(e, buf).await;
        }
    };
    let (_, _, status) = tokio::join!(read_out, read_err, child.wait());
    if let Some(p) = pid {
        shared.processes.unregister(iid, p);
    }
    match status {
        Ok(s) => exit_code(s),
        Err(_) => 128,
    }
}

pub(crate) fn exit_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}
