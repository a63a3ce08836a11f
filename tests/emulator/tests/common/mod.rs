//! Shared test helpers: start an emulator, get tokens, build workloads, check shapes against
//! the spec's definitions.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use stackpath_emulator::{EmulatorConfig, RunningEmulator};

pub const STACK: &str = "demo-stack";

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn fast_config() -> EmulatorConfig {
    let mut c = EmulatorConfig::default();
    c.delays.scheduling = Duration::from_millis(100);
    c.delays.starting = Duration::from_millis(100);
    c.delays.deleting = Duration::from_millis(150);
    c.log_line_interval = Duration::from_millis(100);
    c.log_follow_cut = Duration::from_secs(2);
    c
}

pub async fn start(config: EmulatorConfig) -> RunningEmulator {
    stackpath_emulator::start(config, loopback(), None)
        .await
        .expect("emulator starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub async fn token(base: &str) -> String {
    let r = http()
        .post(format!("{base}/identity/v1/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// A workload as the daemon sends it (docs/mapping.md).
pub fn workload(slug: &str, container: Value) -> Value {
    json!({"workload": {
        "name": slug, "slug": slug,
        "metadata": {"labels": {"vk-pod-name": slug, "vk-pod-namespace": "default", "vk-node-name": "vk-node"},
                     "annotations": {"a": "b"}},
        "spec": {
            "networkInterfaces": [{"network": "default", "ipFamilies": ["IPv4"], "enableOneToOneNat": true}],
            "containers": {"app": container},
            "volumeClaimTemplates": [{"name": "data", "slug": "data",
                "spec": {"resources": {"requests": {"storage": "1Gi"}, "limits": {"storage": "1Gi"}}}}]
        },
        "targets": {"city-code": {"spec": {"deploymentScope": "cityCode", "deployments": {
            "minReplicas": 1, "maxReplicas": 1,
            "selectors": [{"key": "cityCode", "operator": "in", "values": ["DFW"]}]}}}}
    }})
}

pub fn container(command: Option<Vec<&str>>) -> Value {
    let mut c = json!({
        "image": "busybox:1.36",
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "env": {"FOO": {"value": "bar"}, "SECRET": {"secretValue": "s3cret"}},
        "ports": {"default": {"port": 8080, "protocol": "TCP"}}
    });
    if let Some(cmd) = command {
        c["command"] = json!(cmd);
    }
    c
}

pub struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn new(emu: &RunningEmulator) -> Self {
        Self {
            base: emu.base_url.clone(),
            token: token(&emu.base_url).await,
            client: http(),
        }
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}/workload/v1/stacks/{STACK}{path}", self.base)
    }
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &self.url(path), None).await
    }
    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, &self.url("/workloads"), Some(body))
            .await
    }
    pub async fn instance(&self, wid: &str, name: &str) -> Value {
        let (s, v) = self
            .get(&format!("/workloads/{wid}/instances/{name}"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["instance"].clone()
    }
    /// Poll until the instance reaches `phase` (or fail after `secs`).
    pub async fn wait_phase(&self, wid: &str, name: &str, phase: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let i = self.instance(wid, name).await;
            if i["phase"] == phase {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance never reached {phase}: {i}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    pub async fn logs(&self, wid: &str, name: &str, query: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url(&format!("/workloads/{wid}/instances/{name}/logs?{query}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.text().await.unwrap())
    }
}

/// The vendor spec, kept once for the whole repository in docs/stackpath/.
pub fn spec() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/stackpath/workload-api.oas2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Check that every key of `v` exists in definition `def` with a matching JSON type (and enum
/// value), recursively. Returns the problems found.
pub fn check_shape(spec: &Value, def: &str, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let schema = json!({"$ref": format!("#/definitions/{def}")});
    walk(spec, &schema, v, def, &mut out);
    out
}

fn resolve<'a>(spec: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        s = &spec["definitions"][name];
    }
    s
}

fn props(spec: &Value, s: &Value) -> serde_json::Map<String, Value> {
    let s = resolve(spec, s);
    let mut m = s
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for part in all {
            m.extend(props(spec, part));
        }
    }
    m
}

fn walk(spec: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let s = resolve(spec, schema);
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("object");
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} not in enum {e:?}"));
    }
    match (ty, v) {
        (_, Value::Null) => {}
        ("string", Value::String(_)) => {}
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        ("number", Value::Number(_)) => {}
        ("boolean", Value::Bool(_)) => {}
        ("array", Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(spec, &s["items"], item, &format!("{at}[{i}]"), out);
            }
        }
        ("object", Value::Object(o)) => {
            if let Some(ap) = s.get("additionalProperties") {
                for (k, item) in o {
                    walk(spec, ap, item, &format!("{at}.{k}"), out);
                }
                return;
            }
            let p = props(spec, s);
            if p.is_empty() && s.get("discriminator").is_none() {
                return; // free-form object
            }
            for (k, item) in o {
                match p.get(k) {
                    Some(ps) => walk(spec, ps, item, &format!("{at}.{k}"), out),
                    None => {
                        // details entries are subtypes picked by "@type".
                        if at.contains("details") {
                            continue;
                        }
                        out.push(format!("{at}.{k}: not in the spec"));
                    }
                }
            }
        }
        (t, v) => out.push(format!("{at}: expected {t}, got {v}")),
    }
}
