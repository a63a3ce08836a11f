//! What swapping policies would do to the pods of a node, before the swap: each pod is
//! translated by the current and by the new policy on the same path the daemon takes
//! ([`crate::translation::translate`]), and the two workloads are compared as text.
//! `vk-stackpath policy diff` fetches the pods and prints the [`Report`].
//!
//! Secret values never reach the report: every workload is redacted before it becomes text.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::policy::{PolicyEngine, PolicyError};
use crate::resolve::Objects;
use crate::translation::{self, Placement, PreparedWorkload, TranslateError};

/// Stands in for every Secret value in printed workloads.
pub const REDACTED: &str = "***";

/// What one policy made of one pod, as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod would run: its workload as pretty JSON (Secret values redacted), then one
    /// `warning: …` line per policy warning (warnings become the pod's Events).
    Runs(String),
    /// The pod would not run: why, and the field-level reasons.
    Refused { why: String, details: Vec<String> },
}

impl Outcome {
    /// The outcome of one translation.
    pub fn of(result: &Result<PreparedWorkload, TranslateError>) -> Outcome {
        match result {
            Ok(t) => {
                let mut value = serde_json::to_value(&t.workload).unwrap_or_else(|e| {
                    Value::String(format!("(the workload cannot be shown: {e})"))
                });
                redact_secrets(&mut value);
                let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
                text.push('\n');
                for w in &t.warnings {
                    text.push_str(&format!("warning: {w}\n"));
                }
                Outcome::Runs(text)
            }
            Err(e) => {
                let why = match e {
                    TranslateError::Pod(_) => "the pod cannot run on StackPath".to_owned(),
                    TranslateError::Policy(PolicyError::Rejected { .. }) => {
                        "rejected by the policy".to_owned()
                    }
                    // A failure (timeout, crash, invalid output) says it all in its message.
                    TranslateError::Policy(p) if p.violations().is_empty() => p.to_string(),
                    TranslateError::Policy(p) => p
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                Outcome::Refused {
                    why,
                    details: e.violations().iter().map(ToString::to_string).collect(),
                }
            }
        }
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, Outcome::Refused { .. })
    }
}

/// One pod under both policies.
#[derive(Debug, Clone)]
pub struct PodDiff {
    /// `namespace/name`.
    pub pod: String,
    pub current: Outcome,
    pub new: Outcome,
}

/// How a pod fares under the new policy compared with the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The new policy refuses the pod (whatever the current one did).
    Rejected,
    /// The new policy runs the pod differently (or runs it where the current one refused).
    Changed,
    Unchanged,
}

impl PodDiff {
    pub fn change(&self) -> Change {
        if self.new.is_refused() {
            Change::Rejected
        } else if self.current != self.new {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }
}

/// Translates `pod` with both policies, as the daemon would on `placement`.
pub fn compare(
    current: &PolicyEngine,
    new: &PolicyEngine,
    pod: &Pod,
    objects: &Objects,
    placement: &Placement,
) -> PodDiff {
    // The daemon hands the policy the pod exactly as the API server returned it.
    let json = serde_json::to_string(pod).unwrap_or_default();
    let run = |engine| {
        Outcome::of(&translation::translate(
            engine, pod, &json, objects, placement,
        ))
    };
    PodDiff {
        pod: format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("<unnamed>")
        ),
        current: run(current),
        new: run(new),
    }
}

/// The comparison over a node's pods.
#[derive(Debug, Clone)]
pub struct Report {
    pub node: String,
    pub placement: String,
    /// How the current and the new policy are called in the report.
    pub current_label: String,
    pub new_label: String,
    pub pods: Vec<PodDiff>,
    /// Pods bound to the node that the daemon will not translate again (finished, or being
    /// deleted).
    pub skipped: usize,
    /// Lines of context around each change.
    pub context: usize,
}

impl Report {
    fn count(&self, change: Change) -> usize {
        self.pods.iter().filter(|p| p.change() == change).count()
    }

    /// 0: no pod changes; 1: some pods change; 2: the new policy refuses some pod.
    pub fn exit_code(&self) -> u8 {
        if self.count(Change::Rejected) > 0 {
            2
        } else if self.count(Change::Changed) > 0 {
            1
        } else {
            0
        }
    }

    /// The report as text: refusals first, then diffs, then the count of unchanged pods.
    pub fn render(&self) -> String {
        let mut pods: Vec<&PodDiff> = self.pods.iter().collect();
        pods.sort_by(|a, b| (a.change(), &a.pod).cmp(&(b.change(), &b.pod)));
        let mut out = format!(
            "policy diff for node {} ({}): {} pod(s)\n  current: {}\n  new:     {}\n",
            self.node,
            self.placement,
            self.pods.len() + self.skipped,
            self.current_label,
            self.new_label
        );
        let rejected = self.count(Change::Rejected);
        if rejected > 0 {
            out.push_str(&format!(
                "\nREJECTED by the new policy: {rejected} pod(s)\n"
            ));
            for p in pods.iter().filter(|p| p.change() == Change::Rejected) {
                let Outcome::Refused { why, details } = &p.new else {
                    continue;
                };
                let before = match &p.current {
                    Outcome::Runs(_) => "the current policy runs it".to_owned(),
                    Outcome::Refused { why, .. } => {
                        format!("the current policy refuses it too: {why}")
                    }
                };
                out.push_str(&format!("\n{}: {why} ({before})\n", p.pod));
                for d in details {
                    out.push_str(&format!("  - {d}\n"));
                }
            }
        }
        let changed = self.count(Change::Changed);
        if changed > 0 {
            out.push_str(&format!("\nCHANGED: {changed} pod(s)\n"));
            for p in pods.iter().filter(|p| p.change() == Change::Changed) {
                out.push('\n');
                let current = match &p.current {
                    Outcome::Runs(text) => text.as_str(),
                    Outcome::Refused { why, details } => {
                        out.push_str(&format!(
                            "{}: the current policy refuses it ({why}{}); the new policy runs it:\n",
                            p.pod,
                            details
                                .iter()
                                .map(|d| format!("; {d}"))
                                .collect::<String>()
                        ));
                        ""
                    }
                };
                let new = match &p.new {
                    Outcome::Runs(text) => text.as_str(),
                    Outcome::Refused { .. } => "",
                };
                out.push_str(&unified_diff(
                    current,
                    new,
                    &format!("{} (current policy)", p.pod),
                    &format!("{} (new policy)", p.pod),
                    self.context,
                ));
            }
        }
        out.push_str(&format!(
            "\nunchanged: {} pod(s)\n",
            self.count(Change::Unchanged)
        ));
        if self.skipped > 0 {
            out.push_str(&format!(
                "skipped: {} pod(s) finished or being deleted (the daemon does not translate them again)\n",
                self.skipped
            ));
        }
        out.push_str(
            "\nnote: the daemon applies its policy when it creates a pod's workload (and when a \
             pod's images change); running workloads keep their spec until then.\n",
        );
        out
    }
}

/// A unified diff of two texts, line by line.
pub fn unified_diff(
    old: &str,
    new: &str,
    old_name: &str,
    new_name: &str,
    context: usize,
) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(context)
        .header(old_name, new_name)
        .missing_newline_hint(false)
        .to_string()
}

/// Replaces the values that came from Secrets (env `secretValue`, registry passwords) with
/// [`REDACTED`] in a workload's JSON, so the output can be shared.
pub fn redact_secrets(workload: &mut Value) {
    let Some(spec) = workload.get_mut("spec") else {
        return;
    };
    for group in ["containers", "initContainers"] {
        for c in spec
            .get_mut(group)
            .and_then(|g| g.as_object_mut())
            .into_iter()
            .flat_map(|g| g.values_mut())
        {
            for var in c
                .get_mut("env")
                .and_then(|e| e.as_object_mut())
                .into_iter()
                .flat_map(|e| e.values_mut())
            {
                if let Some(v) = var.get_mut("secretValue") {
                    *v = REDACTED.into();
                }
            }
        }
    }
    for cred in spec
        .get_mut("imagePullCredentials")
        .and_then(|c| c.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(p) = cred.pointer_mut("/dockerRegistry/password") {
            *p = REDACTED.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Outcome {
        Outcome::Runs(text.into())
    }

    fn refused(why: &str) -> Outcome {
        Outcome::Refused {
            why: why.into(),
            details: vec!["metadata.annotations[x]: add it".into()],
        }
    }

    fn report(pods: Vec<PodDiff>) -> Report {
        Report {
            node: "edge-1".into(),
            placement: "city DFW, stack s".into(),
            current_label: "built-in default".into(),
            new_label: "strict.wasm".into(),
            pods,
            skipped: 1,
            context: 1,
        }
    }

    fn pod(name: &str, current: Outcome, new: Outcome) -> PodDiff {
        PodDiff {
            pod: name.into(),
            current,
            new,
        }
    }

    #[test]
    fn rejections_come_first_then_diffs_then_the_count() {
        let r = report(vec![
            pod(
                "a/same",
                runs("{\n  \"x\": 1\n}\n"),
                runs("{\n  \"x\": 1\n}\n"),
            ),
            pod(
                "a/web",
                runs("{\n  \"cpu\": \"1\",\n  \"memory\": \"2Gi\"\n}\n"),
                runs("{\n  \"cpu\": \"2\",\n  \"memory\": \"2Gi\"\n}\n"),
            ),
            pod("ops/tool", runs("{}\n"), refused("rejected by the policy")),
        ]);
        let text = r.render();
        let rejected = text.find("REJECTED by the new policy: 1 pod(s)").unwrap();
        let tool = text.find("ops/tool: rejected by the policy (the current policy runs it)");
        let changed = text.find("CHANGED: 1 pod(s)").unwrap();
        let unchanged = text.find("unchanged: 1 pod(s)").unwrap();
        assert!(rejected < tool.unwrap() && tool.unwrap() < changed && changed < unchanged);
        assert!(
            text.contains("  - metadata.annotations[x]: add it\n"),
            "{text}"
        );
        assert!(text.contains("--- a/web (current policy)\n+++ a/web (new policy)\n"));
        assert!(
            text.contains("-  \"cpu\": \"1\",\n+  \"cpu\": \"2\",\n"),
            "{text}"
        );
        assert!(text.contains("skipped: 1 pod(s)"));
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn exit_code_says_what_happened() {
        let same = || pod("a/p", runs("x\n"), runs("x\n"));
        assert_eq!(report(vec![same()]).exit_code(), 0);
        assert_eq!(report(vec![]).exit_code(), 0);
        assert_eq!(
            report(vec![same(), pod("a/q", runs("x\n"), runs("y\n"))]).exit_code(),
            1
        );
        // Runs now where it was refused: a change, not a rejection.
        let freed = pod("a/r", refused("rejected by the policy"), runs("y\n"));
        assert_eq!(freed.change(), Change::Changed);
        assert_eq!(report(vec![freed]).exit_code(), 1);
        let both = pod("a/s", refused("old"), refused("new"));
        assert_eq!(both.change(), Change::Rejected);
        let text = report(vec![both]).render();
        assert!(
            text.contains("the current policy refuses it too: old"),
            "{text}"
        );
    }

    #[test]
    fn secret_values_are_redacted() {
        let mut w = serde_json::json!({"spec": {
            "containers": {"app": {"env": {
                "TOKEN": {"secretValue": "hunter2"},
                "PLAIN": {"value": "visible"}}}},
            "initContainers": {"init": {"env": {"K": {"secretValue": "s3cret"}}}},
            "imagePullCredentials": [{"dockerRegistry": {"server": "r.io", "username": "u", "password": "pw-123"}}]
        }});
        redact_secrets(&mut w);
        let text = w.to_string();
        for secret in ["hunter2", "s3cret", "pw-123"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("visible") && text.contains("r.io"));
        assert_eq!(
            w.pointer("/spec/containers/app/env/TOKEN/secretValue"),
            Some(&"***".into())
        );
    }

    /// The whole path on the built-in policy: same policy twice means no change, and the
    /// printed workload carries no Secret value.
    #[test]
    fn same_policy_changes_nothing_and_hides_secrets() {
        let engine = PolicyEngine::builtin(crate::policy::Limits::default()).unwrap();
        let pod = crate::manifest::read_pod(
            "pod",
            "metadata: {name: web, namespace: shop}\nspec:\n  nodeName: edge-1\n  containers:\n  \
             - name: app\n    image: nginx\n    env:\n    - name: TOKEN\n      valueFrom:\n        \
             secretKeyRef: {name: creds, key: token}\n",
        )
        .unwrap();
        let objects = crate::manifest::read_objects(
            "objects",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: shop}\nstringData: {token: hunter2}\n",
        )
        .unwrap();
        let placement = Placement {
            node_name: "edge-1".into(),
            city_code: "DFW".into(),
            stack_id: "s".into(),
            host_ip: "192.0.2.10".into(),
            config_volumes: Default::default(),
        };
        let d = compare(&engine, &engine, &pod.pod, &objects, &placement);
        assert_eq!(d.change(), Change::Unchanged);
        let Outcome::Runs(text) = &d.new else {
            panic!("refused: {:?}", d.new)
        };
        assert!(
            !text.contains("hunter2") && text.contains("\"secretValue\": \"***\""),
            "{text}"
        );
    }
}
