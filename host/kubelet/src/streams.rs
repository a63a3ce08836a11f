//! How many streaming requests (exec, `logs -f`) run at once: on the whole node and per pod.
//!
//! Not per caller: every proxied request comes as the API server's one identity, so a limit
//! per user name would be one shared limit for everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The counters; cheap to share.
#[derive(Debug)]
pub(crate) struct StreamLimits {
    max_total: usize,
    max_per_pod: usize,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// (namespace, pod) → open streams; entries at zero are removed.
    per_pod: HashMap<(String, String), usize>,
}

/// Why a stream was refused; the message names the flag that sets the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamRefused {
    #[error(
        "too many exec and logs -f streams on this node ({limit} open); close some, or raise --kubelet-max-streams"
    )]
    Node { limit: usize },
    #[error(
        "too many exec and logs -f streams to pod {namespace}/{pod} ({limit} open); close some, or raise --kubelet-max-streams-per-pod"
    )]
    Pod {
        namespace: String,
        pod: String,
        limit: usize,
    },
}

impl StreamLimits {
    pub fn new(max_total: usize, max_per_pod: usize) -> Self {
        Self {
            max_total,
            max_per_pod,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a stream to `namespace/pod`, freed when the guard is dropped.
    pub fn acquire(&self, namespace: &str, pod: &str) -> Result<StreamGuard, StreamRefused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max_total {
            return Err(StreamRefused::Node {
                limit: self.max_total,
            });
        }
        let key = (namespace.to_owned(), pod.to_owned());
        let n = c.per_pod.get(&key).copied().unwrap_or(0);
        if n >= self.max_per_pod {
            return Err(StreamRefused::Pod {
                namespace: namespace.into(),
                pod: pod.into(),
                limit: self.max_per_pod,
            });
        }
        c.total += 1;
        c.per_pod.insert(key.clone(), n + 1);
        Ok(StreamGuard {
            key,
            counts: self.counts.clone(),
        })
    }

    /// Streams open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.counts.lock().unwrap().total
    }
}

/// Frees a stream slot when dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    key: (String, String),
    counts: Arc<Mutex<Counts>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_pod.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_pod.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_pod_and_per_node() {
        let l = StreamLimits::new(3, 2);
        let a1 = l.acquire("ns", "a").unwrap();
        let _a2 = l.acquire("ns", "a").unwrap();
        let e = l.acquire("ns", "a").unwrap_err();
        assert!(e.to_string().contains("pod ns/a (2 open)"), "{e}");
        assert!(e.to_string().contains("--kubelet-max-streams-per-pod"));
        // Another pod still gets one; then the node is full.
        let _b1 = l.acquire("ns", "b").unwrap();
        let e = l.acquire("ns", "c").unwrap_err();
        assert_eq!(e, StreamRefused::Node { limit: 3 });
        drop(a1);
        assert_eq!(l.open(), 2);
        let _c1 = l.acquire("ns", "c").unwrap();
        assert!(l.acquire("ns", "a").is_err(), "node full again");
    }

    #[test]
    fn slots_are_freed_and_forgotten() {
        let l = StreamLimits::new(10, 1);
        for _ in 0..5 {
            let g = l.acquire("ns", "p").unwrap();
            drop(g);
        }
        assert_eq!(l.open(), 0);
        assert!(l.counts.lock().unwrap().per_pod.is_empty());
    }
}
