//! `run_containers`: each container's command and args run as a local process in its own
//! process group, temporary directory and environment (`instanceFieldRef` values resolved from
//! the instance), with the instance's volume claims mounted (see `mounts`). Init containers run
//! to completion, one after the other in name order, before the containers start. Output goes
//! to the logs; exits drive the container and instance phases, and exited containers are
//! restarted with back-off per [`ContainerRestart`]. Groups are killed on delete, restart and
//! shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::config::ContainerRestart;
use crate::logs::LogBuf;
use crate::model::{self, ContainerRun};
use crate::mounts::{self, Mount, Plan, View};
use crate::state::Shared;
use crate::{field_ref, locations};

/// Live process groups by owner (an instance id, or `exec:<n>` for console sessions).
#[derive(Default)]
pub(crate) struct Processes {
    groups: Mutex<HashMap<String, Vec<i32>>>,
    /// (instance id, container) → the mount namespace of its running process, for execs.
    views: Mutex<HashMap<(String, String), View>>,
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

    fn set_view(&self, instance_id: &str, container: &str, view: Option<View>) {
        if let Ok(mut v) = self.views.lock() {
            let key = (instance_id.to_string(), container.to_string());
            match view {
                Some(view) => v.insert(key, view),
                None => v.remove(&key),
            };
        }
    }

    /// The mount namespace of a container's running process, if it has its own.
    pub(crate) fn view(&self, instance_id: &str, container: &str) -> Option<View> {
        self.views
            .lock()
            .ok()?
            .get(&(instance_id.to_string(), container.to_string()))
            .cloned()
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
/// directory), HOSTNAME (the instance name), the container's `value`/`secretValue` env, and
/// `valueFrom.instanceFieldRef` values taken from `instance` (the rendered instance). The
/// second list holds notes for the container's log (a field with no value).
pub(crate) fn container_env(
    container: &Value,
    instance: &Value,
    home: &Path,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".to_string(), home.display().to_string()),
        (
            "HOSTNAME".to_string(),
            instance
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
    ];
    let mut notes = Vec::new();
    if let Some(m) = container.get("env").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(r) = v.pointer("/valueFrom/instanceFieldRef") {
                let path = r.get("fieldPath").and_then(Value::as_str).unwrap_or("");
                let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
                let value = field_ref::parse(path).ok().and_then(|steps| {
                    field_ref::resolve(instance, &steps).map(field_ref::env_text)
                });
                match value {
                    Some(val) => env.push((k.clone(), val)),
                    None if optional => notes.push(format!(
                        "emulator: instance field {path} has no value; optional {k} is not set"
                    )),
                    None => {
                        notes.push(format!(
                            "emulator: instance field {path} has no value; {k} is set empty"
                        ));
                        env.push((k.clone(), String::new()));
                    }
                }
                continue;
            }
            let val = v
                .get("value")
                .and_then(Value::as_str)
                .or_else(|| v.get("secretValue").and_then(Value::as_str))
                .unwrap_or("");
            env.push((k.clone(), val.to_string()));
        }
    }
    (env, notes)
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

/// `<workdir>/<instance>/.volumes/<claim>`: one directory per claim and instance, shared by
/// its containers. (Container names are RFC 1123 labels, so `.volumes` cannot clash.)
fn claim_dir(shared: &Shared, instance: &str, claim: &str) -> std::io::Result<PathBuf> {
    let dir = shared
        .workdir
        .path()
        .join(instance)
        .join(".volumes")
        .join(claim);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The instance's volumes as a container mounts them (`spec.volumeMounts`).
fn container_mounts(shared: &Shared, instance: &str, spec: &Value) -> std::io::Result<Vec<Mount>> {
    let mut out = Vec::new();
    for m in spec
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let (Some(slug), Some(target)) = (
            m.get("slug").and_then(Value::as_str),
            m.get("mountPath").and_then(Value::as_str),
        ) else {
            continue;
        };
        out.push(Mount {
            slug: slug.to_string(),
            source: claim_dir(shared, instance, slug)?,
            target: PathBuf::from(target),
        });
    }
    Ok(out)
}

/// `STACKPATH_EMULATOR_VOLUME_<SLUG>`: where a claim is when it cannot be mounted.
fn volume_env(slug: &str) -> String {
    format!(
        "STACKPATH_EMULATOR_VOLUME_{}",
        slug.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether mount namespaces work here; probed once, the answer logged once.
fn mounts_supported(shared: &Shared) -> bool {
    shared
        .mounts_ok
        .get_or_init(|| {
            match mounts::probe(&shared.mountdir.path().join("probe")) {
                Ok(()) => true,
                Err(why) => {
                    tracing::warn!(
                        %why,
                        "volume mounts need mount namespaces (root); containers get each claim's directory in STACKPATH_EMULATOR_VOLUME_<SLUG> instead of at its mountPath"
                    );
                    false
                }
            }
        })
        .to_owned()
}

/// Which list a container is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Init,
    Main,
}

/// What a container run needs to know about where it belongs.
#[derive(Clone)]
struct Ctx {
    stack_id: String,
    wid: String,
    iid: String,
    iname: String,
    generation: u32,
}

/// Start (after the STARTING delay) the processes of every instance of a workload, for the
/// instances' current generation.
pub(crate) fn schedule(shared: Arc<Shared>, stack_id: String, workload_id: String) {
    let plan: Vec<(String, String, u32, DateTime<Utc>)> = {
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
        let cx = Ctx {
            stack_id: stack_id.clone(),
            wid: workload_id.clone(),
            iid,
            iname,
            generation,
        };
        tokio::spawn(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shared.cancel.cancelled() => return,
            }
            run_instance(shared, cx).await;
        });
    }
}

/// The containers of an instance that is still in `cx`'s generation, not failed and not being
/// deleted, with the instance as the API renders it now (for `instanceFieldRef`).
struct Current {
    init: Vec<(String, Value)>,
    main: Vec<(String, Value)>,
    instance: Value,
}

fn current(shared: &Shared, cx: &Ctx) -> Option<Current> {
    let store = shared.lock();
    let w = store
        .stacks
        .get(&cx.stack_id)
        .and_then(|s| s.workloads.get(&cx.wid))?;
    let i = w.instances.iter().find(|i| i.id == cx.iid)?;
    if i.generation != cx.generation || i.failure.is_some() || w.delete_requested_at.is_some() {
        return None;
    }
    let list = |key: &str| -> Vec<(String, Value)> {
        w.body
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let rcx = shared.render_ctx(&cx.stack_id, Utc::now());
    Some(Current {
        init: list("initContainers"),
        main: list("containers"),
        instance: model::render_instance(w, i, &rcx, locations::location(&i.city)),
    })
}

/// How long to wait before restart number `n + 1`.
fn backoff(shared: &Shared, n: u32) -> Duration {
    let base = shared.config.restart_backoff;
    base.checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX)
        .min(shared.config.restart_backoff_max)
}

/// Whether an exit with `code` is followed by a restart.
fn restarts_after(policy: ContainerRestart, role: Role, code: i32) -> bool {
    match policy {
        // An init container that completed is done whatever the policy.
        _ if role == Role::Init => code != 0 && policy != ContainerRestart::Never,
        ContainerRestart::Always => true,
        ContainerRestart::OnFailure => code != 0,
        ContainerRestart::Never => false,
    }
}

/// Waits until `until` unless the emulator stops; false when it stopped.
async fn sleep_until(shared: &Shared, until: DateTime<Utc>) -> bool {
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shared.cancel.cancelled() => false,
    }
}

async fn run_instance(shared: Arc<Shared>, cx: Ctx) {
    let Some(now) = current(&shared, &cx) else {
        return;
    };
    // Init containers in order (the spec's map has none: by name, as they are reported).
    for (name, _) in &now.init {
        let mut restarts = 0;
        loop {
            let Some(cur) = current(&shared, &cx) else {
                return;
            };
            let Some(spec) = cur.init.iter().find(|(n, _)| n == name).map(|(_, s)| s) else {
                return;
            };
            let run = run_once(
                &shared,
                &cx,
                Role::Init,
                name,
                spec,
                &cur.instance,
                restarts,
            );
            match run.await {
                Outcome::Exited { code: 0, .. } | Outcome::Idle => break,
                Outcome::Exited {
                    backoff_until: Some(until),
                    ..
                } => {
                    if !sleep_until(&shared, until).await {
                        return;
                    }
                    restarts += 1;
                }
                // Failed for good (restart policy never): the instance is FAILED.
                Outcome::Exited { .. } | Outcome::Gone => return,
            }
        }
    }
    let Some(cur) = current(&shared, &cx) else {
        return;
    };
    for (name, _) in cur.main {
        let shared = shared.clone();
        let cx = cx.clone();
        tokio::spawn(async move {
            let mut restarts = 0;
            loop {
                let Some(cur) = current(&shared, &cx) else {
                    return;
                };
                let Some(spec) = cur.main.iter().find(|(n, _)| *n == name).map(|(_, s)| s) else {
                    return;
                };
                match run_once(
                    &shared,
                    &cx,
                    Role::Main,
                    &name,
                    spec,
                    &cur.instance,
                    restarts,
                )
                .await
                {
                    Outcome::Exited {
                        backoff_until: Some(until),
                        ..
                    } => {
                        if !sleep_until(&shared, until).await {
                            return;
                        }
                        restarts += 1;
                    }
                    Outcome::Exited { .. } | Outcome::Idle | Outcome::Gone => return,
                }
            }
        });
    }
}

enum Outcome {
    /// The process exited; it is restarted at `backoff_until`, if set.
    Exited {
        code: i32,
        backoff_until: Option<DateTime<Utc>>,
    },
    /// Nothing to run (no command): the container idles.
    Idle,
    /// The instance moved on (restart, delete) while it ran.
    Gone,
}

/// One run of a container: start it, wait for it, record its exit and whether it restarts.
async fn run_once(
    shared: &Arc<Shared>,
    cx: &Ctx,
    role: Role,
    name: &str,
    spec: &Value,
    instance: &Value,
    restarts: u32,
) -> Outcome {
    let buf = shared.logs.new_generation(&cx.iid, name);
    let started = spawn_container(shared, cx, role, name, spec, instance, &buf);
    let now = Utc::now();
    let recorded = update_run(shared, cx, role, name, |r| {
        *r = ContainerRun {
            started_at: Some(now),
            restarts,
            ..ContainerRun::default()
        };
    });
    shared.changed();
    let (code, reason, message) = match started {
        Ok(Some(child)) => {
            let code = wait_child(shared, cx, name, child, &buf).await;
            let reason = if code == 0 { "Completed" } else { "Error" };
            (code, reason, None)
        }
        Ok(None) if role == Role::Init => (0, "Completed", None),
        Ok(None) => return Outcome::Idle,
        Err((code, why)) => (code, "StartError", Some(why)),
    };
    buf.close();
    if !recorded {
        return Outcome::Gone;
    }
    let now = Utc::now();
    let backoff_until = restarts_after(shared.config.container_restart, role, code)
        .then(|| now + backoff(shared, restarts));
    let still = update_run(shared, cx, role, name, |r| {
        r.exit_code = Some(code);
        r.finished_at = Some(now);
        r.backoff_until = backoff_until;
        r.reason = Some(reason.to_string());
        r.message = message;
    });
    shared.changed();
    if still {
        Outcome::Exited {
            code,
            backoff_until,
        }
    } else {
        Outcome::Gone
    }
}

/// Changes the run record of a container of the instance in `cx`'s generation; false when
/// the instance has moved on.
fn update_run(
    shared: &Shared,
    cx: &Ctx,
    role: Role,
    container: &str,
    f: impl FnOnce(&mut ContainerRun),
) -> bool {
    let mut store = shared.lock();
    let Some(i) = store
        .stacks
        .get_mut(&cx.stack_id)
        .and_then(|s| s.workloads.get_mut(&cx.wid))
        .and_then(|w| w.instances.iter_mut().find(|i| i.id == cx.iid))
        .filter(|i| i.generation == cx.generation)
    else {
        return false;
    };
    let runs = match role {
        Role::Main => &mut i.runs,
        Role::Init => &mut i.init_runs,
    };
    f(runs.entry(container.to_string()).or_default());
    true
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

/// `Ok(None)`: nothing to run. `Err((code, why))`: could not start (also in the container's
/// log).
fn spawn_container(
    shared: &Shared,
    cx: &Ctx,
    role: Role,
    name: &str,
    spec: &Value,
    instance: &Value,
    buf: &LogBuf,
) -> Result<Option<tokio::process::Child>, (i32, String)> {
    let fail = |code: i32, why: String| {
        buf.push(format!("emulator: {why}"));
        Err((code, why))
    };
    let argv = argv(spec);
    let Some((prog, args)) = argv.split_first() else {
        buf.push(match role {
            Role::Main => "emulator: no command given; the image's entrypoint is not emulated, so the container idles",
            Role::Init => "emulator: no command given; the image's entrypoint is not emulated, so the init container completes at once",
        });
        return Ok(None);
    };
    let dir = match container_dir(shared, &cx.iname, name) {
        Ok(d) => d,
        Err(e) => return fail(128, format!("cannot create the container directory: {e}")),
    };
    let (mut env, notes) = container_env(spec, instance, &dir);
    for n in notes {
        buf.push(n);
    }
    let mounts = match container_mounts(shared, &cx.iname, spec) {
        Ok(m) => m,
        Err(e) => return fail(128, format!("cannot create a volume directory: {e}")),
    };
    let mut cmd = tokio::process::Command::new(prog);
    let mut scratch = None;
    if !mounts.is_empty() {
        if mounts_supported(shared) {
            let dir_s = shared.mountdir.path().join(format!("{}.{name}", cx.iname));
            if let Err(e) = std::fs::create_dir_all(&dir_s) {
                return fail(128, format!("cannot create {}: {e}", dir_s.display()));
            }
            let plan = match Plan::container(&mounts, &dir_s, shared.workdir.path(), &dir) {
                Ok(p) => p,
                Err(e) => return fail(128, format!("cannot mount the volumes: {e}")),
            };
            scratch = Some((dir_s.join("root"), plan.description.clone()));
            // SAFETY: `apply` only makes system calls on strings built before the fork.
            unsafe {
                cmd.pre_exec(move || plan.apply());
            }
        } else {
            for m in &mounts {
                env.push((volume_env(&m.slug), m.source.display().to_string()));
            }
        }
    }
    cmd.args(args)
        .env_clear()
        .envs(env)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    match cmd.spawn() {
        Ok(child) => {
            if let Some(pid) = child.id() {
                shared.processes.register(&cx.iid, pid as i32);
                if let Some((root, _)) = scratch {
                    shared.processes.set_view(
                        &cx.iid,
                        name,
                        Some(View {
                            pid: pid as i32,
                            root,
                        }),
                    );
                }
            }
            Ok(Some(child))
        }
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let why = match scratch {
                Some((_, steps)) => {
                    format!("cannot start {prog:?} with its volumes mounted ({steps}): {e}")
                }
                None => format!("cannot start {prog:?}: {e}"),
            };
            fail(code, why)
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
    cx: &Ctx,
    name: &str,
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
        shared.processes.unregister(&cx.iid, p);
        if shared
            .processes
            .view(&cx.iid, name)
            .is_some_and(|v| v.pid == p)
        {
            shared.processes.set_view(&cx.iid, name, None);
        }
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
