//! Test fixtures for the pod path, in the manner of kube-rs's controller-rs (`fixtures.rs`): a
//! scripted Kubernetes API behind a real `kube::Client`, and the in-process StackPath emulator
//! behind the real StackPath client, so that reconcile passes are tested one by one, in
//! milliseconds, without the Go-built control plane.
//!
//! The scripted API answers only what the pod path asks for (a pod, its status, its deletion,
//! ConfigMaps, Secrets, Events), keeps the pods it was given, applies status merge patches to
//! them, and records every request, so a test asserts both the outcome and the calls made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use stackpath_client::model::Workload;
use stackpath_emulator::{EmulatorConfig, InstanceDelays, RunningEmulator};

use super::context::{Context, Timing};
use super::events::Events;
use super::reconcile;
use super::tracker::Tracker;
use crate::active_policy::ActivePolicy;
use crate::metrics::Metrics;
use crate::policy::Limits;
use crate::translation::Placement;

pub const NODE: &str = "vk-test";
pub const CITY: &str = "DFW";
pub const STACK: &str = "demo-stack";

/// One request the scripted API received: method, path and what was sent.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct ApiState {
    /// Pods by `namespace/name`, as JSON (what a GET returns).
    pods: BTreeMap<String, Value>,
    /// ConfigMaps and Secrets by `kind/namespace/name`.
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    /// Answer every request with 503 (the API server is down).
    down: bool,
}

/// The scripted Kubernetes API.
#[derive(Clone, Default)]
pub struct ScriptedApi {
    state: Arc<Mutex<ApiState>>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<kube::client::Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("response")
}

fn ok(body: &Value) -> Response<kube::client::Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("response")
}

/// RFC 7386 JSON merge patch, as the API server applies `Patch::Merge`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl ScriptedApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A `kube::Client` whose requests this API answers.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Ok::<_, Infallible>(api.answer(parts.method, parts.uri.path(), body))
            }
        });
        kube::Client::new(service, "default")
    }

    fn answer(&self, method: Method, path: &str, body: Value) -> Response<kube::client::Body> {
        let mut s = self.lock();
        s.calls.push(Call {
            method: method.clone(),
            path: path.to_owned(),
            body: body.clone(),
        });
        if s.down {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the API server is down (scripted)".into(),
            );
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (m, ["api", "v1", "namespaces", ns, "pods", name, rest @ ..]) => {
                let key = format!("{ns}/{name}");
                let not_found = || {
                    status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("pods \"{name}\" not found"),
                    )
                };
                match (m, rest) {
                    (Method::GET, []) => s.pods.get(&key).map(ok).unwrap_or_else(not_found),
                    (Method::PATCH, ["status"]) => match s.pods.get_mut(&key) {
                        Some(pod) => {
                            merge(pod, &body);
                            ok(pod)
                        }
                        None => not_found(),
                    },
                    (Method::DELETE, []) => s
                        .pods
                        .remove(&key)
                        .map(|p| ok(&p))
                        .unwrap_or_else(not_found),
                    _ => status(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        path.into(),
                    ),
                }
            }
            (
                Method::GET,
                [
                    "api",
                    "v1",
                    "namespaces",
                    ns,
                    kind @ ("configmaps" | "secrets"),
                    name,
                ],
            ) => s
                .objects
                .get(&format!("{kind}/{ns}/{name}"))
                .map(ok)
                .unwrap_or_else(|| {
                    status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("{kind} \"{name}\" not found"),
                    )
                }),
            (
                Method::POST | Method::PATCH,
                ["apis", "events.k8s.io", "v1", "namespaces", _, "events", ..],
            ) => ok(&body),
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("not scripted: {path}"),
            ),
        }
    }

    /// Stores (or replaces) a pod, as if a user created it and the scheduler bound it.
    pub fn put_pod(&self, pod: Value) {
        let key = format!(
            "{}/{}",
            pod["metadata"]["namespace"].as_str().unwrap_or("default"),
            pod["metadata"]["name"].as_str().unwrap_or_default()
        );
        self.lock().pods.insert(key, pod);
    }

    /// Stores a ConfigMap or Secret (`kind` `configmaps` or `secrets`).
    pub fn put_object(&self, kind: &str, object: Value) {
        let key = format!(
            "{kind}/{}/{}",
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        self.lock().objects.insert(key, object);
    }

    /// The pod as the API holds it now (`None` once deleted).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let s = self.lock();
        let v = s.pods.get(&format!("{namespace}/{name}"))?;
        Some(serde_json::from_value(v.clone()).expect("stored pod"))
    }

    /// Changes a stored pod in place.
    pub fn edit_pod(&self, namespace: &str, name: &str, patch: Value) {
        let mut s = self.lock();
        let pod = s
            .pods
            .get_mut(&format!("{namespace}/{name}"))
            .expect("pod to edit");
        merge(pod, &patch);
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Every request so far, then forgotten.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// `(reason, note)` of every Event created so far.
    pub fn events(&self) -> Vec<(String, String)> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == Method::POST && c.path.ends_with("/events"))
            .map(|c| {
                (
                    c.body["reason"].as_str().unwrap_or_default().to_owned(),
                    c.body["note"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// The built-in policy, compiled once per test binary (a second or two).
fn policy() -> Arc<ActivePolicy> {
    static POLICY: OnceLock<Arc<ActivePolicy>> = OnceLock::new();
    POLICY
        .get_or_init(|| Arc::new(ActivePolicy::load(None, Limits::default()).expect("policy")))
        .clone()
}

/// The pod path's context against the scripted API and a fresh emulator.
pub struct Fixture {
    pub api: ScriptedApi,
    pub emulator: RunningEmulator,
    pub ctx: Arc<Context>,
}

/// Timings short enough that a test never waits: polls are due after a millisecond.
pub const TIMING: Timing = Timing {
    fast: Duration::from_millis(1),
    settled: Duration::from_millis(50),
    orphan_grace: Duration::from_millis(50),
    sweep_interval: Duration::from_millis(50),
    completion: Duration::from_millis(5),
};

impl Fixture {
    pub async fn new() -> Self {
        Self::with_emulator(|_| {}).await
    }

    /// A fixture whose emulator is configured further by `tune` (e.g. to run containers).
    pub async fn with_emulator(tune: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let mut config = EmulatorConfig {
            stack_ids: vec![STACK.into()],
            city_codes: vec![CITY.into()],
            delays: InstanceDelays {
                scheduling: Duration::ZERO,
                starting: Duration::ZERO,
                deleting: Duration::ZERO,
            },
            ..EmulatorConfig::default()
        };
        tune(&mut config);
        let emulator =
            stackpath_emulator::start(config, "127.0.0.1:0".parse().expect("addr"), None)
                .await
                .expect("emulator");
        let defaults = EmulatorConfig::default();
        let mut config = stackpath_client::Config::new(
            &emulator.base_url,
            STACK,
            defaults.client_id.clone(),
            defaults.client_secret.clone(),
        )
        .expect("client config");
        // One attempt: a test of an unavailable StackPath must not wait through retries.
        config.retry.max_attempts = 1;
        config.rate_limit = None;
        let stackpath = stackpath_client::Client::new(config).expect("client");
        let api = ScriptedApi::default();
        let kube = api.client();
        let ctx = Arc::new(Context {
            kube: kube.clone(),
            stackpath,
            policy: policy(),
            placement: Placement {
                node_name: NODE.into(),
                city_code: CITY.into(),
                stack_id: STACK.into(),
                host_ip: "192.0.2.1".into(),
                config_volumes: Default::default(),
            },
            host_ip: "192.0.2.1".into(),
            events: Events::new(kube, NODE),
            tracker: Tracker::default(),
            timing: TIMING,
            metrics: Arc::new(Metrics::new()),
            daemonset_pods: Default::default(),
        });
        Self { api, emulator, ctx }
    }

    /// One reconcile pass over the pod as the API holds it (as the watch would deliver it).
    pub async fn pass(&self, namespace: &str, name: &str) -> Action {
        let pod = self.api.pod(namespace, name).expect("pod to reconcile");
        self.pass_with(pod).await
    }

    /// One pass over the given copy of a pod (e.g. one the API no longer holds).
    pub async fn pass_with(&self, pod: Pod) -> Action {
        // Polls are due a millisecond after they are scheduled.
        tokio::time::sleep(Duration::from_millis(2)).await;
        reconcile::reconcile(Arc::new(pod), self.ctx.clone())
            .await
            .expect("reconcile pass")
    }

    /// Every workload of the stack, as StackPath lists them.
    pub async fn workloads(&self) -> Vec<Workload> {
        self.ctx
            .stackpath
            .list_all_workloads(None)
            .await
            .expect("list workloads")
    }
}

/// A pod bound to the test node, as the API server stores it.
pub fn pod(name: &str, uid: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": "1"},
        "spec": {
            "nodeName": NODE,
            "containers": [{
                "name": "app",
                "image": image,
                "command": ["/bin/sh", "-c", "sleep 3600"],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            }],
        },
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]},
    })
}
