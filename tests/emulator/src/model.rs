//! The stored records (a workload as the client sent it plus server state) and how they are
//! rendered into the API's JSON shapes at a given moment.
//!
//! Phases are derived from timestamps when rendered, so tens of thousands of simulated
//! instances cost no timers; only `run_containers` instances have tasks behind them.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::InstanceDelays;

/// A stored workload: the JSON as the API returns it (server fields included) plus state.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct WorkloadRec {
    /// Creation sequence in its stack: the pagination cursor.
    pub seq: u64,
    pub body: Value,
    pub delete_requested_at: Option<DateTime<Utc>>,
    pub instances: Vec<InstanceRec>,
}

impl WorkloadRec {
    /// The server-assigned id (the store's key).
    pub(crate) fn id(&self) -> String {
        self.body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }
}

/// What a container process did (only with `run_containers`): its current or last run.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub(crate) struct ContainerRun {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// Restarts after exits in this generation (the instance's own restarts come on top).
    #[serde(default)]
    pub restarts: u32,
    /// Exited and to be started again at this time (CrashLoopBackOff).
    #[serde(default)]
    pub backoff_until: Option<DateTime<Utc>>,
    /// Why it terminated (`Completed`, `Error`, `StartError`) and the details.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl ContainerRun {
    /// Exited for good (not running, not waiting to restart).
    pub(crate) fn is_done(&self) -> bool {
        self.exit_code.is_some() && self.backoff_until.is_none()
    }
}

/// An injected failure.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Failure {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct InstanceRec {
    pub id: String,
    pub name: String,
    pub city: String,
    pub created_at: DateTime<Utc>,
    /// Bumped by every restart (PUT, restart call, injected restart).
    pub generation: u32,
    /// When the current generation began SCHEDULING.
    pub generation_started: DateTime<Utc>,
    pub restart_count: u32,
    pub ip: String,
    pub ipv6: String,
    pub external_ip: String,
    pub failure: Option<Failure>,
    /// Keyed by container name; filled in by the process runner.
    #[serde(default)]
    pub runs: BTreeMap<String, ContainerRun>,
    /// The same for init containers.
    #[serde(default)]
    pub init_runs: BTreeMap<String, ContainerRun>,
}

/// Phase timing of one generation.
pub(crate) fn starting_at(i: &InstanceRec, d: &InstanceDelays) -> DateTime<Utc> {
    i.generation_started + d.scheduling
}
pub(crate) fn running_at(i: &InstanceRec, d: &InstanceDelays) -> DateTime<Utc> {
    i.generation_started + d.scheduling + d.starting
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Container names in the order StackPath reports them (sorted; the spec's maps are unordered).
pub(crate) fn container_names(body: &Value, key: &str) -> Vec<String> {
    body.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

pub(crate) struct RenderCtx<'a> {
    pub now: DateTime<Utc>,
    pub delays: &'a InstanceDelays,
    pub run_containers: bool,
    pub stack_id: &'a str,
}

/// A label StackPath puts on instances (the spec's `instanceFieldRef` example reads it).
pub(crate) const WORKLOAD_SLUG_LABEL: &str = "workload.platform.stackpath.net/workload-slug";

/// Instance phase at `now` plus per-container phases.
pub(crate) fn instance_phase(w: &WorkloadRec, i: &InstanceRec, cx: &RenderCtx) -> &'static str {
    if w.delete_requested_at.is_some() {
        return "DELETING";
    }
    if i.failure.is_some() {
        return "FAILED";
    }
    if cx.now < starting_at(i, cx.delays) {
        return "SCHEDULING";
    }
    if cx.now < running_at(i, cx.delays) {
        return "STARTING";
    }
    if !cx.run_containers {
        return "RUNNING";
    }
    // Init containers first: one that failed for good fails the instance; until all have
    // completed, the instance is starting.
    let inits = container_names(&w.body, "initContainers");
    for n in &inits {
        match i.init_runs.get(n) {
            Some(r) if r.is_done() && r.exit_code != Some(0) => return "FAILED",
            Some(r) if r.is_done() => {}
            _ => return "STARTING",
        }
    }
    let names = container_names(&w.body, "containers");
    let runs: Vec<Option<&ContainerRun>> = names.iter().map(|n| i.runs.get(n)).collect();
    if runs
        .iter()
        .any(|r| r.is_none_or(|r| r.started_at.is_none()))
    {
        return "STARTING";
    }
    if runs.iter().any(|r| r.is_some_and(|r| !r.is_done())) {
        return "RUNNING";
    }
    if runs
        .iter()
        .all(|r| r.is_some_and(|r| r.exit_code == Some(0)))
    {
        "COMPLETED"
    } else {
        "FAILED"
    }
}

fn container_status(
    name: &str,
    w: &WorkloadRec,
    i: &InstanceRec,
    cx: &RenderCtx,
    phase: &str,
) -> Value {
    let restarts = i.runs.get(name).map_or(0, |r| r.restarts);
    let container_id = format!(
        "containerd://{}-{}-g{}-r{}",
        i.id, name, i.generation, restarts
    );
    let mut s = Map::new();
    s.insert("name".into(), json!(name));
    s.insert("restartCount".into(), json!(i.restart_count + restarts));
    s.insert("containerId".into(), json!(container_id));
    let started = running_at(i, cx.delays);
    let waiting = |reason: &str, message: &str| json!({"reason": reason, "message": message});
    if let Some(f) = &i.failure {
        s.insert("phase".into(), json!("FAILED"));
        s.insert("ready".into(), json!(false));
        let began = started.min(f.at);
        s.insert("startedAt".into(), json!(ts(began)));
        s.insert("finishedAt".into(), json!(ts(f.at)));
        s.insert(
            "terminated".into(),
            json!({"exitCode": 1, "reason": f.reason, "message": f.message,
                   "startedAt": ts(began), "finishedAt": ts(f.at)}),
        );
        return Value::Object(s);
    }
    match phase {
        "SCHEDULING" | "STARTING" if cx.run_containers || cx.now < started => {
            if let Some(run) = i.runs.get(name).filter(|r| r.started_at.is_some()) {
                return run_status(s, name, run);
            }
            s.insert("phase".into(), json!("STARTING"));
            s.insert("ready".into(), json!(false));
            s.insert(
                "waiting".into(),
                waiting("ContainerCreating", "the container is being created"),
            );
        }
        "DELETING" if w.delete_requested_at.is_some() => {
            s.insert("phase".into(), json!("STOPPED"));
            s.insert("ready".into(), json!(false));
            let at = w.delete_requested_at.unwrap_or(cx.now);
            s.insert("startedAt".into(), json!(ts(started.min(at))));
            s.insert("finishedAt".into(), json!(ts(at)));
            s.insert(
                "terminated".into(),
                json!({"exitCode": 0, "reason": "Deleted", "message": "the workload is being deleted",
                       "startedAt": ts(started.min(at)), "finishedAt": ts(at)}),
            );
        }
        _ => {
            if cx.run_containers
                && let Some(run) = i.runs.get(name)
            {
                return run_status(s, name, run);
            }
            s.insert("phase".into(), json!("RUNNING"));
            s.insert("ready".into(), json!(true));
            s.insert("startedAt".into(), json!(ts(started)));
            s.insert("running".into(), json!({"startedAt": ts(started)}));
        }
    }
    Value::Object(s)
}

/// A container run's status: running; or terminated (exit code, reason, start and finish
/// times), and while it waits for its restart also `waiting: CrashLoopBackOff` (kubelet's
/// precedence running > waiting > terminated still shows the back-off; the exit stays readable).
fn run_status(mut s: Map<String, Value>, name: &str, run: &ContainerRun) -> Value {
    let started = run.started_at.map(ts);
    match (run.exit_code, run.finished_at) {
        (Some(code), Some(fin)) => {
            let (phase, default_reason) = if code == 0 {
                ("STOPPED", "Completed")
            } else {
                ("FAILED", "Error")
            };
            let reason = run.reason.as_deref().unwrap_or(default_reason);
            let message = run
                .message
                .clone()
                .unwrap_or_else(|| format!("the process exited with code {code}"));
            s.insert("phase".into(), json!(phase));
            s.insert("ready".into(), json!(false));
            if let Some(st) = &started {
                s.insert("startedAt".into(), json!(st));
            }
            s.insert("finishedAt".into(), json!(ts(fin)));
            let mut t = json!({"exitCode": code, "reason": reason, "message": message,
                               "finishedAt": ts(fin)});
            if let Some(st) = &started {
                t["startedAt"] = json!(st);
            }
            s.insert("terminated".into(), t);
            if let Some(until) = run.backoff_until {
                let secs = (until - fin).num_milliseconds().max(0) as f64 / 1000.0;
                s.insert(
                    "waiting".into(),
                    json!({"reason": "CrashLoopBackOff",
                           "message": format!("back-off {secs}s restarting exited container {name:?} (exit code {code})")}),
                );
            }
        }
        _ => {
            s.insert("phase".into(), json!("RUNNING"));
            s.insert("ready".into(), json!(true));
            if let Some(st) = &started {
                s.insert("startedAt".into(), json!(st));
                s.insert("running".into(), json!({"startedAt": st}));
            }
        }
    }
    Value::Object(s)
}

fn init_status(name: &str, i: &InstanceRec, cx: &RenderCtx) -> Value {
    if cx.run_containers {
        let restarts = i.init_runs.get(name).map_or(0, |r| r.restarts);
        let mut s = Map::new();
        s.insert("name".into(), json!(name));
        s.insert("restartCount".into(), json!(restarts));
        s.insert(
            "containerId".into(),
            json!(format!(
                "containerd://{}-{}-g{}-r{}",
                i.id, name, i.generation, restarts
            )),
        );
        return match i.init_runs.get(name).filter(|r| r.started_at.is_some()) {
            Some(run) => {
                let mut v = run_status(s, name, run);
                if v["phase"] == "RUNNING" {
                    // An init container is never "ready": it runs to completion.
                    v["ready"] = json!(false);
                }
                v
            }
            None => {
                s.insert("phase".into(), json!("STARTING"));
                s.insert("ready".into(), json!(false));
                s.insert(
                    "waiting".into(),
                    json!({"reason": "PodInitializing", "message": "waiting for the init containers before it"}),
                );
                Value::Object(s)
            }
        };
    }
    let at = starting_at(i, cx.delays);
    if cx.now < running_at(i, cx.delays) {
        return json!({"name": name, "phase": "STARTING", "ready": false, "restartCount": 0,
                      "waiting": {"reason": "PodInitializing", "message": "init container is running"}});
    }
    json!({"name": name, "phase": "STOPPED", "ready": false, "restartCount": 0,
           "startedAt": ts(at), "finishedAt": ts(running_at(i, cx.delays)),
           "terminated": {"exitCode": 0, "reason": "Completed", "message": "",
                          "startedAt": ts(at), "finishedAt": ts(running_at(i, cx.delays))}})
}

/// The `workloadv1Instance` JSON.
pub(crate) fn render_instance(
    w: &WorkloadRec,
    i: &InstanceRec,
    cx: &RenderCtx,
    location: Value,
) -> Value {
    let phase = instance_phase(w, i, cx);
    let spec = w.body.get("spec").cloned().unwrap_or(Value::Null);
    let containers = spec.get("containers").cloned().unwrap_or(json!({}));
    let statuses: Vec<Value> = container_names(&w.body, "containers")
        .iter()
        .map(|n| container_status(n, w, i, cx, phase))
        .collect();
    let init_statuses: Vec<Value> = container_names(&w.body, "initContainers")
        .iter()
        .map(|n| init_status(n, i, cx))
        .collect();
    let resources = containers
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|c| c.get("resources"))
        .cloned()
        .unwrap_or(json!({}));
    let version = w
        .body
        .pointer("/metadata/version")
        .cloned()
        .unwrap_or(json!("1"));
    let mut o = Map::new();
    o.insert("stackId".into(), json!(cx.stack_id));
    o.insert(
        "workloadId".into(),
        w.body.get("id").cloned().unwrap_or(Value::Null),
    );
    o.insert("id".into(), json!(i.id));
    o.insert("name".into(), json!(i.name));
    o.insert(
        "metadata".into(),
        json!({"labels": instance_labels(w),
               "annotations": w.body.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
               "createdAt": ts(i.created_at), "updatedAt": ts(i.generation_started),
               "version": version}),
    );
    o.insert("location".into(), location);
    o.insert("phase".into(), json!(phase));
    o.insert("createdAt".into(), json!(ts(i.created_at)));
    o.insert("scheduledAt".into(), json!(ts(starting_at(i, cx.delays))));
    let scheduled = cx.now >= starting_at(i, cx.delays);
    if scheduled {
        o.insert("ipAddress".into(), json!(i.ip));
        o.insert("ipv6Address".into(), json!(i.ipv6));
        let nat = spec
            .pointer("/networkInterfaces/0/enableOneToOneNat")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if nat {
            o.insert("externalIpAddress".into(), json!(i.external_ip));
        }
        let nets: Vec<Value> = spec
            .get("networkInterfaces")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|n| {
                json!({"network": n.get("network").cloned().unwrap_or(json!("default")),
                       "ipAddress": i.ip, "gateway": gateway(&i.ip),
                       "ipv6Address": i.ipv6, "ipv6Gateway": "fd00::1"})
            })
            .collect();
        o.insert("networkInterfaces".into(), json!(nets));
    }
    if cx.now >= running_at(i, cx.delays) {
        o.insert("startedAt".into(), json!(ts(running_at(i, cx.delays))));
    }
    if let Some(at) = w.delete_requested_at {
        o.insert("deletedAt".into(), json!(ts(at)));
    }
    o.insert("resources".into(), resources);
    o.insert("containers".into(), containers);
    o.insert("containerStatuses".into(), json!(statuses));
    if let Some(ic) = spec.get("initContainers") {
        o.insert("initContainers".into(), ic.clone());
        o.insert("initContainerStatuses".into(), json!(init_statuses));
    }
    if let Some(rt) = spec.get("runtime") {
        o.insert("runtime".into(), rt.clone());
    }
    let (reason, message) = match (&i.failure, phase) {
        (Some(f), _) => (f.reason.clone(), f.message.clone()),
        (None, "FAILED") => (
            "ContainerFailed".to_string(),
            "a container exited with a non-zero code".to_string(),
        ),
        (None, "SCHEDULING") => (
            "Scheduling".into(),
            "the instance is being scheduled".into(),
        ),
        _ => (String::new(), String::new()),
    };
    if !reason.is_empty() {
        o.insert("reason".into(), json!(reason));
        o.insert("message".into(), json!(message));
    }
    Value::Object(o)
}

/// The workload's labels plus StackPath's own on the instance.
fn instance_labels(w: &WorkloadRec) -> Value {
    let mut labels = w
        .body
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[WORKLOAD_SLUG_LABEL] = w.body.get("slug").cloned().unwrap_or(json!(""));
    labels
}

fn gateway(ip: &str) -> String {
    match ip.rsplit_once('.') {
        Some((net, _)) => format!("{net}.1"),
        None => String::new(),
    }
}
