//! The shared in-memory state and the workload operations on it. One `std::sync::Mutex`
//! guards the store; every critical section is a few map operations, never I/O or awaits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api_error::{ApiError, Code};
use crate::config::EmulatorConfig;
use crate::error::Error;
use crate::faults::FaultState;
use crate::model::{Failure, InstanceRec, RenderCtx, WorkloadRec, render_instance, ts};
use crate::{auth, locations, logs, persist, processes, stats, validate};

pub(crate) type AppState = Arc<Shared>;

pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    pub tokens: auth::Tokens,
    pub faults: FaultState,
    pub stats: stats::Stats,
    pub logs: logs::LogRegistry,
    pub processes: processes::Processes,
    /// Signalled on every change when a state file is configured.
    pub persist: Notify,
    pub cancel: CancellationToken,
    /// Container working directories and volume claims live under here (removed on drop).
    pub workdir: tempfile::TempDir,
    /// Empty directories that the containers' mount namespaces mount scratch space on.
    pub mountdir: tempfile::TempDir,
    /// Whether mount namespaces work here (probed on first use).
    pub mounts_ok: std::sync::OnceLock<bool>,
    ip_counter: AtomicU32,
    me: Weak<Shared>,
}

#[derive(Default)]
pub(crate) struct Store {
    pub stacks: HashMap<String, StackState>,
}

#[derive(Default)]
pub(crate) struct StackState {
    pub workloads: HashMap<String, WorkloadRec>,
    pub by_slug: HashMap<String, String>,
    /// seq → workload id, for cursor pagination in creation order.
    pub order: BTreeMap<u64, String>,
    pub next_seq: u64,
}

impl StackState {
    pub(crate) fn insert(&mut self, w: WorkloadRec) {
        let id = w
            .body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let slug = w
            .body
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.next_seq = self.next_seq.max(w.seq + 1);
        self.order.insert(w.seq, id.clone());
        self.by_slug.insert(slug, id.clone());
        self.workloads.insert(id, w);
    }
    /// The workload a reference names: its id or, as the spec's "the ID or slug of the
    /// workload" allows (and StackPath's own Go provider relies on), its slug. Ids win.
    pub(crate) fn get(&self, reference: &str) -> Option<&WorkloadRec> {
        self.workloads.get(reference).or_else(|| {
            self.by_slug
                .get(reference)
                .and_then(|id| self.workloads.get(id))
        })
    }

    pub(crate) fn get_mut(&mut self, reference: &str) -> Option<&mut WorkloadRec> {
        let id = if self.workloads.contains_key(reference) {
            reference
        } else {
            self.by_slug.get(reference)?.as_str()
        }
        .to_string();
        self.workloads.get_mut(&id)
    }

    fn remove(&mut self, id: &str) -> Option<WorkloadRec> {
        let w = self.workloads.remove(id)?;
        self.order.remove(&w.seq);
        if let Some(slug) = w.body.get("slug").and_then(Value::as_str)
            && self.by_slug.get(slug).is_some_and(|i| i == id)
        {
            self.by_slug.remove(slug);
        }
        Some(w)
    }
}

fn lock(m: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // to an emulator; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(
        config: EmulatorConfig,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, Error> {
        let mut store = Store::default();
        for s in &config.stack_ids {
            store.stacks.insert(s.clone(), StackState::default());
        }
        if let Some(path) = &config.state_file {
            for (stack, recs) in persist::load(path)? {
                let st = store.stacks.entry(stack).or_default();
                for r in recs {
                    st.insert(r);
                }
            }
        }
        let count: u32 = store
            .stacks
            .values()
            .map(|s| {
                s.workloads
                    .values()
                    .map(|w| w.instances.len() as u32)
                    .sum::<u32>()
            })
            .sum();
        let workdir = tempfile::Builder::new()
            .prefix("stackpath-emulator-")
            .tempdir()
            .map_err(|source| Error::File {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mountdir = tempfile::Builder::new()
            .prefix("stackpath-emulator-mnt-")
            .tempdir()
            .map_err(|source| Error::File {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let faults = FaultState::new(config.faults.clone());
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            tokens: auth::Tokens::new(config.token_lifetime),
            faults,
            stats: stats::Stats::default(),
            logs: logs::LogRegistry::default(),
            processes: processes::Processes::default(),
            persist: Notify::new(),
            cancel,
            workdir,
            mountdir,
            mounts_ok: std::sync::OnceLock::new(),
            ip_counter: AtomicU32::new(count + 2),
            store: Mutex::new(store),
            config,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn changed(&self) {
        if self.config.state_file.is_some() {
            self.persist.notify_one();
        }
    }

    pub(crate) fn render_ctx<'a>(&'a self, stack_id: &'a str, now: DateTime<Utc>) -> RenderCtx<'a> {
        RenderCtx {
            now,
            delays: &self.config.delays,
            run_containers: self.config.run_containers,
            stack_id,
        }
    }

    /// 403 unless the stack is one this client may use.
    pub(crate) fn check_stack(&self, stack_id: &str) -> Result<(), ApiError> {
        if self.config.stack_ids.iter().any(|s| s == stack_id) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::PermissionDenied,
                format!("the client is not allowed to access stack {stack_id:?}"),
            ))
        }
    }

    fn new_instance(&self, name: String, city: String, now: DateTime<Utc>) -> InstanceRec {
        let n = self.ip_counter.fetch_add(1, Ordering::Relaxed);
        // Host numbers 2..=251 (never .0, .1 = gateway, .255), 250 per /24.
        let (a, b) = ((n / 250) % 256, n % 250 + 2);
        InstanceRec {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            city,
            created_at: now,
            generation: 0,
            generation_started: now,
            restart_count: 0,
            ip: format!("10.128.{a}.{b}"),
            ipv6: format!("fd00::{n:x}"),
            external_ip: format!("151.139.{a}.{b}"),
            failure: self.injected_failure(now),
            runs: BTreeMap::new(),
            init_runs: BTreeMap::new(),
        }
    }

    fn injected_failure(&self, now: DateTime<Utc>) -> Option<Failure> {
        self.faults.fail_new_instances().then(|| Failure {
            at: now + self.config.delays.scheduling + self.config.delays.starting,
            reason: "InjectedFailure".into(),
            message: "emulator: instance failure injected (fail_new_instances)".into(),
        })
    }

    /// Instances a workload should have: `<slug>-<target>-<city>-<n>`, lower case.
    fn wanted_instances(body: &Value) -> Vec<(String, String)> {
        let slug = body.get("slug").and_then(Value::as_str).unwrap_or("");
        let mut out = Vec::new();
        for (target, city, n) in validate::deployments(body) {
            for i in 0..n.max(0) {
                out.push((
                    format!("{slug}-{target}-{city}-{i}").to_lowercase(),
                    city.clone(),
                ));
            }
        }
        out
    }

    pub(crate) fn render_workload(&self, w: &WorkloadRec) -> Value {
        w.body.clone()
    }

    pub(crate) fn create_workload(&self, stack_id: &str, req: &Value) -> Result<Value, ApiError> {
        let raw = req.get("workload").ok_or_else(|| {
            ApiError::invalid_field("workload", "the request body must be {\"workload\": {…}}")
        })?;
        let mut body = validate::workload(raw, &self.config.city_codes)?;
        let now = Utc::now();
        let id = uuid::Uuid::new_v4().to_string();
        set_server_fields(&mut body, stack_id, &id, now, None, 1);
        let instances: Vec<InstanceRec> = Self::wanted_instances(&body)
            .into_iter()
            .map(|(name, city)| self.new_instance(name, city, now))
            .collect();
        let slug = body
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let out = {
            let mut store = self.lock();
            let st = store.stacks.entry(stack_id.to_string()).or_default();
            if st.by_slug.contains_key(&slug) {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!("a workload with slug {slug:?} already exists in stack {stack_id:?}"),
                ));
            }
            let rec = WorkloadRec {
                seq: st.next_seq,
                body,
                delete_requested_at: None,
                instances,
            };
            let out = self.render_workload(&rec);
            st.insert(rec);
            out
        };
        self.changed();
        self.start_processes_for(stack_id, &id);
        Ok(out)
    }

    pub(crate) fn get_workload(&self, stack_id: &str, id: &str) -> Result<Value, ApiError> {
        let store = self.lock();
        store
            .stacks
            .get(stack_id)
            .and_then(|s| s.get(id))
            .map(|w| self.render_workload(w))
            .ok_or_else(|| workload_not_found(stack_id, id))
    }

    /// PUT (replace) or PATCH (merge): new spec, version + 1, instances restarted. `reference`
    /// is the workload's id or slug.
    pub(crate) fn update_workload(
        &self,
        stack_id: &str,
        reference: &str,
        req: &Value,
        merge: bool,
    ) -> Result<Value, ApiError> {
        let raw = req.get("workload").ok_or_else(|| {
            ApiError::invalid_field("workload", "the request body must be {\"workload\": {…}}")
        })?;
        let now = Utc::now();
        let (out, killed, id) = {
            let mut store = self.lock();
            let st = store
                .stacks
                .get_mut(stack_id)
                .ok_or_else(|| workload_not_found(stack_id, reference))?;
            let w = st
                .get_mut(reference)
                .ok_or_else(|| workload_not_found(stack_id, reference))?;
            let id = w.id();
            let id = id.as_str();
            if w.delete_requested_at.is_some() {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    format!("workload {id:?} is being deleted"),
                ));
            }
            let mut candidate = if merge {
                let mut base = w.body.clone();
                merge_json(&mut base, raw);
                base
            } else {
                raw.clone()
            };
            let old_slug = w.body.get("slug").cloned().unwrap_or(Value::Null);
            if candidate
                .get("slug")
                .is_none_or(|s| s.as_str().is_none_or(str::is_empty))
                && let Some(o) = candidate.as_object_mut()
            {
                o.insert("slug".into(), old_slug.clone());
            }
            if candidate.get("slug") != Some(&old_slug) {
                return Err(ApiError::invalid_field(
                    "workload.slug",
                    "a workload's slug cannot change",
                ));
            }
            // PUT's path parameter *is* `workload.id` (grpc-gateway fills the body field from
            // the path), so only PATCH can disagree with its path.
            if merge
                && let Some(other) = raw.get("id").and_then(Value::as_str)
                && !other.is_empty()
                && other != id
                && other != reference
            {
                return Err(ApiError::invalid_field(
                    "workload.id",
                    "the body's id differs from the id in the path",
                ));
            }
            let mut body = validate::workload(&candidate, &self.config.city_codes)?;
            let version = w
                .body
                .pointer("/metadata/version")
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                + 1;
            let created = w
                .body
                .pointer("/metadata/createdAt")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or(now);
            set_server_fields(&mut body, stack_id, id, created, Some(now), version);
            w.body = body;
            // Restart what stays, create what is new, drop what is gone.
            let wanted = Self::wanted_instances(&w.body);
            let mut old: HashMap<String, InstanceRec> =
                w.instances.drain(..).map(|i| (i.name.clone(), i)).collect();
            let mut next = Vec::new();
            for (name, city) in wanted {
                match old.remove(&name) {
                    Some(mut i) => {
                        restart(&mut i, now);
                        i.failure = self.injected_failure(now);
                        next.push(i);
                    }
                    None => next.push(self.new_instance(name, city, now)),
                }
            }
            w.instances = next;
            let killed: Vec<String> = old
                .into_values()
                .map(|i| i.id)
                .chain(w.instances.iter().map(|i| i.id.clone()))
                .collect();
            (self.render_workload(w), killed, id.to_string())
        };
        for iid in killed {
            self.processes.kill_instance(&iid);
        }
        self.changed();
        self.start_processes_for(stack_id, &id);
        Ok(out)
    }

    /// Mark DELETING now; remove after the configured delay. `reference`: id or slug.
    pub(crate) fn delete_workload(
        self: &Arc<Self>,
        stack_id: &str,
        reference: &str,
    ) -> Result<(), ApiError> {
        let now = Utc::now();
        let (ids, id) = {
            let mut store = self.lock();
            let w = store
                .stacks
                .get_mut(stack_id)
                .and_then(|s| s.get_mut(reference))
                .ok_or_else(|| workload_not_found(stack_id, reference))?;
            if w.delete_requested_at.is_none() {
                w.delete_requested_at = Some(now);
                if let Some(m) = w.body.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("deleteRequestedAt".into(), json!(ts(now)));
                }
            }
            (
                w.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
                w.id(),
            )
        };
        for iid in &ids {
            self.processes.kill_instance(iid);
        }
        self.changed();
        let me = self.clone();
        let stack_id = stack_id.to_string();
        let delay = self.config.delays.deleting;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = me.cancel.cancelled() => {}
            }
            me.finish_delete(&stack_id, &id);
        });
        Ok(())
    }

    pub(crate) fn finish_delete(&self, stack_id: &str, id: &str) {
        let removed = {
            let mut store = self.lock();
            store
                .stacks
                .get_mut(stack_id)
                .filter(|s| {
                    s.workloads
                        .get(id)
                        .is_some_and(|w| w.delete_requested_at.is_some())
                })
                .and_then(|s| s.remove(id))
        };
        if let Some(w) = removed {
            for i in &w.instances {
                self.logs.forget(&i.id);
                self.processes.kill_instance(&i.id);
                // Its volumes go with it (a new workload of the same slug starts empty).
                let _ = std::fs::remove_dir_all(self.workdir.path().join(&i.name));
            }
            self.changed();
        }
    }

    pub(crate) fn list_instances(&self, stack_id: &str, id: &str) -> Result<Vec<Value>, ApiError> {
        let now = Utc::now();
        let cx = self.render_ctx(stack_id, now);
        let store = self.lock();
        let w = store
            .stacks
            .get(stack_id)
            .and_then(|s| s.get(id))
            .ok_or_else(|| workload_not_found(stack_id, id))?;
        Ok(w.instances
            .iter()
            .map(|i| render_instance(w, i, &cx, locations::location(&i.city)))
            .collect())
    }

    pub(crate) fn get_instance(
        &self,
        stack_id: &str,
        id: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let now = Utc::now();
        let cx = self.render_ctx(stack_id, now);
        let store = self.lock();
        let w = store
            .stacks
            .get(stack_id)
            .and_then(|s| s.get(id))
            .ok_or_else(|| workload_not_found(stack_id, id))?;
        let i = w
            .instances
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| instance_not_found(id, name))?;
        Ok(render_instance(w, i, &cx, locations::location(&i.city)))
    }

    /// Restart one instance (API call) or, with `name` None, all of a workload's instances
    /// (admin fault). `fail` marks them FAILED instead. `reference`: the workload's id or slug.
    pub(crate) fn act_on_instances(
        &self,
        stack_id: Option<&str>,
        reference: &str,
        name: Option<&str>,
        fail: bool,
    ) -> Result<usize, ApiError> {
        let now = Utc::now();
        let (stack, touched, id) = {
            let mut store = self.lock();
            let mut found = None;
            for (sid, st) in store.stacks.iter_mut() {
                if stack_id.is_some_and(|s| s != sid) {
                    continue;
                }
                if let Some(w) = st.get_mut(reference) {
                    found = Some((sid.clone(), w));
                    break;
                }
            }
            let (sid, w) =
                found.ok_or_else(|| workload_not_found(stack_id.unwrap_or("*"), reference))?;
            let id = w.id();
            if w.delete_requested_at.is_some() {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    format!("workload {id:?} is being deleted"),
                ));
            }
            let mut touched = Vec::new();
            for i in w.instances.iter_mut() {
                if name.is_some_and(|n| n != i.name) {
                    continue;
                }
                if fail {
                    i.failure = Some(Failure {
                        at: now,
                        reason: "InjectedFailure".into(),
                        message: "emulator: instance failure injected by /_emulator".into(),
                    });
                } else {
                    restart(i, now);
                    i.failure = self.injected_failure(now);
                }
                touched.push(i.id.clone());
            }
            if let Some(n) = name
                && touched.is_empty()
            {
                return Err(instance_not_found(&id, n));
            }
            (sid, touched, id)
        };
        for iid in &touched {
            self.processes.kill_instance(iid);
        }
        self.changed();
        if !fail {
            self.start_processes_for(&stack, &id);
        }
        Ok(touched.len())
    }

    /// After a restart from a state file, processes must be started again.
    pub(crate) fn resume_loaded_instances(self: &Arc<Self>) {
        if !self.config.run_containers {
            return;
        }
        let now = Utc::now();
        let list: Vec<(String, String)> = {
            let mut store = self.lock();
            let mut list = Vec::new();
            for (sid, st) in store.stacks.iter_mut() {
                for (wid, w) in st.workloads.iter_mut() {
                    for i in w.instances.iter_mut() {
                        restart(i, now);
                    }
                    list.push((sid.clone(), wid.clone()));
                }
            }
            list
        };
        for (s, w) in list {
            self.start_processes_for(&s, &w);
        }
    }

    fn start_processes_for(&self, stack_id: &str, workload_id: &str) {
        if self.config.run_containers
            && let Some(me) = self.self_arc()
        {
            processes::schedule(me, stack_id.to_string(), workload_id.to_string());
        }
    }

    fn self_arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }
}

/// Begin a new generation: back to SCHEDULING, restart count + 1.
fn restart(i: &mut InstanceRec, now: DateTime<Utc>) {
    i.generation += 1;
    i.generation_started = now;
    i.restart_count += 1;
    i.runs.clear();
    i.init_runs.clear();
    i.failure = None;
}

fn set_server_fields(
    body: &mut Value,
    stack_id: &str,
    id: &str,
    created: DateTime<Utc>,
    updated: Option<DateTime<Utc>>,
    version: u64,
) {
    let Some(o) = body.as_object_mut() else {
        return;
    };
    o.insert("id".into(), json!(id));
    o.insert("stackId".into(), json!(stack_id));
    o.insert("status".into(), json!("ACTIVE"));
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(m) = meta.as_object_mut() {
        m.insert("createdAt".into(), json!(ts(created)));
        m.insert("updatedAt".into(), json!(ts(updated.unwrap_or(created))));
        m.insert("version".into(), json!(version.to_string()));
        m.remove("deleteRequestedAt");
        for k in ["labels", "annotations"] {
            if !m.get(k).is_some_and(Value::is_object) {
                m.insert(k.into(), json!({}));
            }
        }
    }
    if let Some(vcts) = o
        .get_mut("spec")
        .and_then(|s| s.get_mut("volumeClaimTemplates"))
        .and_then(Value::as_array_mut)
    {
        for t in vcts {
            if let Some(t) = t.as_object_mut() {
                t.insert("phase".into(), json!("BOUND"));
                t.insert("stackId".into(), json!(stack_id));
                if !t.get("id").is_some_and(|v| v.is_string()) {
                    t.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
                }
                if !t.get("name").is_some_and(|v| v.is_string()) {
                    let slug = t.get("slug").cloned().unwrap_or(json!(""));
                    t.insert("name".into(), slug);
                }
            }
        }
    }
}

fn merge_json(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_json(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub(crate) fn workload_not_found(stack_id: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("workload {id:?} not found in stack {stack_id:?}"))
}

pub(crate) fn instance_not_found(id: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("instance {name:?} not found in workload {id:?}"))
}
