//! Pod Events (events.k8s.io/v1), and those of the claims [`crate::provisioner`] serves. A
//! repeat of the same Event (same pod, type, reason, action
//! and note) within six minutes is folded into the first one's `series` instead of creating a
//! new object, as client-go's recorder does. An Event that cannot be written is logged and
//! otherwise ignored: Events are advisory, and a pod must not stall because the events API is
//! slow.
//!
//! Not kube-runtime's `Recorder`: it keeps a full copy of every Event for six minutes and scans
//! all of them on every publish, which at thousands of new pods (three or four Events each)
//! was tens of megabytes and quadratic work. Here a repeat costs a 64-bit key and the Event's
//! name, pruned in insertion order.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::time::Instant;

/// The largest note the events API accepts is 1 KiB.
const MAX_NOTE: usize = 1000;

/// How long a repeat joins the earlier Event's series (client-go uses the same window).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Bound on remembered series, whatever the Event rate (oldest forgotten first).
const MAX_SERIES: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    series: Mutex<SeriesCache>,
}

impl Events {
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Self {
            client,
            controller: "vk-stackpath".into(),
            instance: node_name.to_owned(),
            series: Mutex::new(SeriesCache::new(SERIES_WINDOW, MAX_SERIES)),
        }
    }

    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        pod: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(pod, Kind::Normal, reason, action, note).await;
    }

    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        pod: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(pod, Kind::Warning, reason, action, note).await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        pod: &K,
        kind: Kind,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let note = truncate(note);
        let namespace = pod.meta().namespace.as_deref().unwrap_or("default");
        let pod_name = pod.meta().name.as_deref().unwrap_or("");
        let key = self.series_key(pod, kind, reason, action, &note);
        let now = Instant::now();
        let repeat = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .repeat(key, now);
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let result = match repeat {
            Some((name, count)) => {
                let patch = serde_json::json!({
                    "series": EventSeries {
                        count,
                        last_observed_time: MicroTime(Timestamp::now()),
                    }
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(None),
                    // Expired server-side (the API server's event TTL): start a new one.
                    Err(kube::Error::Api(s)) if s.code == 404 => self
                        .create(&api, pod, kind, reason, action, note)
                        .await
                        .map(Some),
                    Err(e) => Err(e),
                }
            }
            None => self
                .create(&api, pod, kind, reason, action, note)
                .await
                .map(Some),
        };
        match result {
            Ok(Some(name)) => self
                .series
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .started(key, name, now),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                pod = %format!("{namespace}/{pod_name}"),
                reason,
                error = %e,
                "could not write an Event"
            ),
        }
    }

    /// Creates the Event; returns its name.
    async fn create<K: Resource<DynamicType = ()>>(
        &self,
        api: &Api<Event>,
        pod: &K,
        kind: Kind,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<String, kube::Error> {
        let now = Timestamp::now();
        let regarding = pod.object_ref(&());
        // The naming client-go uses: the object's name and a nanosecond timestamp.
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(kind.as_str().to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(name)
    }

    fn series_key<K: Resource<DynamicType = ()>>(
        &self,
        pod: &K,
        kind: Kind,
        reason: &str,
        action: &str,
        note: &str,
    ) -> u64 {
        let m = pod.meta();
        let parts: [&str; 7] = [
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or(""),
            kind.as_str(),
            reason,
            action,
            note,
        ];
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hash(&parts)
    }
}

/// Recent Events by key, for folding repeats into a series. A 64-bit keyed hash stands for
/// the key: a collision (about one in 10^10 at the bound) would only count a repeat on the
/// wrong Event.
struct SeriesCache {
    hasher: RandomState,
    window: Duration,
    max: usize,
    by_key: HashMap<u64, Series>,
    /// (last seen, key) in the order they were seen; stale entries are skipped when pruning.
    order: VecDeque<(Instant, u64)>,
}

struct Series {
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl SeriesCache {
    fn new(window: Duration, max: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            window,
            max,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        self.hasher
            .hash_one(parts.iter().map(|p| (p.len(), *p)).collect::<Vec<_>>())
    }

    /// If `key` was seen within the window: its Event's name and the series count to write.
    fn repeat(&mut self, key: u64, now: Instant) -> Option<(String, i32)> {
        self.prune(now);
        let s = self.by_key.get_mut(&key)?;
        s.count = s.count.saturating_add(1);
        s.last = now;
        self.order.push_back((now, key));
        Some((s.name.to_string(), s.count))
    }

    /// A new Event was created for `key`.
    fn started(&mut self, key: u64, name: String, now: Instant) {
        self.by_key.insert(
            key,
            Series {
                name: name.into_boxed_str(),
                count: 1,
                last: now,
            },
        );
        self.order.push_back((now, key));
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(seen, key)) = self.order.front() {
            let expired = now.duration_since(seen) >= self.window;
            if !expired && self.by_key.len() <= self.max && self.order.len() <= 2 * self.max {
                break;
            }
            self.order.pop_front();
            // Only the newest sighting of a key removes it.
            if self.by_key.get(&key).is_some_and(|s| s.last <= seen) {
                self.by_key.remove(&key);
            }
        }
        if self.by_key.is_empty() {
            self.order.shrink_to(64);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_join_the_series_within_the_window_only() {
        let t0 = Instant::now();
        let mut c = SeriesCache::new(Duration::from_secs(360), 100);
        let k = c.hash(&[
            "ns",
            "p",
            "uid",
            "Warning",
            "PolicyWarning",
            "Translate",
            "x",
        ]);
        assert_eq!(c.repeat(k, t0), None);
        c.started(k, "p.1".into(), t0);
        assert_eq!(
            c.repeat(k, t0 + Duration::from_secs(60)),
            Some(("p.1".into(), 2))
        );
        // Measured from the last sighting, not the first.
        assert_eq!(
            c.repeat(k, t0 + Duration::from_secs(400)),
            Some(("p.1".into(), 3))
        );
        assert_eq!(c.repeat(k, t0 + Duration::from_secs(800)), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn different_notes_are_different_events() {
        let c = SeriesCache::new(Duration::from_secs(360), 100);
        let a = c.hash(&["ns", "p", "u", "Warning", "PolicyWarning", "T", "a"]);
        let b = c.hash(&["ns", "p", "u", "Warning", "PolicyWarning", "T", "b"]);
        let split = c.hash(&["ns", "p", "u", "Warning", "PolicyWarning", "Ta", ""]);
        let split2 = c.hash(&["ns", "p", "u", "Warning", "PolicyWarning", "T", "a"]);
        assert_ne!(a, b);
        assert_ne!(split, a);
        assert_eq!(a, split2);
    }

    #[test]
    fn bounded_whatever_the_rate() {
        let t0 = Instant::now();
        let mut c = SeriesCache::new(Duration::from_secs(360), 1000);
        for i in 0..10_000u64 {
            c.started(i, format!("e.{i}"), t0);
        }
        assert!(c.len() <= 1000, "{}", c.len());
        assert!(c.order.len() <= 2000);
        // The newest are kept.
        assert!(c.repeat(9_999, t0).is_some());
        assert!(c.repeat(0, t0).is_none());
    }

    #[test]
    fn long_notes_are_cut_at_a_char_boundary() {
        let s = truncate("é".repeat(800));
        assert!(s.len() <= MAX_NOTE);
        assert!(s.ends_with("..."));
    }
}
