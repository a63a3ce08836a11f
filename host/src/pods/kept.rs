//! The last output of a finished pod's containers. A run-to-completion pod's workload is
//! deleted when its containers end (so it neither restarts nor bills), and with it StackPath's
//! logs; on a kubelet `kubectl logs` still works until the pod is deleted, so the output is
//! read just before the workload goes and kept in memory with the pod's tracker entry.
//! Bounded: the last [`PER_CONTAINER`] bytes of each container, [`BUDGET`] for the daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use stackpath_client::LogOptions;

/// The most kept of one container's output: its last lines.
pub const PER_CONTAINER: usize = 256 << 10;
/// The most kept for all finished pods together; past it, a pod's logs are not kept.
pub const BUDGET: usize = 64 << 20;
/// How long reading one container's output may take before the workload is deleted anyway.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory held by kept logs, daemon-wide.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(BUDGET)
    }
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of the budget until the returned charge is dropped; `None`: it is full.
    fn charge(&self, n: usize) -> Option<Charge> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .ok()?;
        Some(Charge {
            used: self.used.clone(),
            n,
        })
    }
}

/// Released when the kept logs are dropped (the pod's tracker entry removed).
#[derive(Debug)]
struct Charge {
    used: Arc<AtomicUsize>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// What was kept of each container: its output (timestamped lines), or why there is none.
#[derive(Debug)]
pub struct KeptLogs {
    containers: Vec<(String, Result<Bytes, String>)>,
    _charge: Option<Charge>,
}

impl KeptLogs {
    pub fn of(&self, container: &str) -> Result<Bytes, String> {
        self.containers
            .iter()
            .find(|(name, _)| name == container)
            .map(|(_, kept)| kept.clone())
            .unwrap_or_else(|| Err("the daemon kept nothing for this container".into()))
    }
}

/// Reads the last output of `containers` of the workload's instance (one call each).
/// Never fails: what could not be read is kept as the reason.
pub async fn read(
    stackpath: &stackpath_client::Client,
    budget: &Budget,
    workload_id: &str,
    instance_name: &str,
    containers: &[String],
) -> KeptLogs {
    let mut kept = Vec::with_capacity(containers.len());
    for c in containers {
        let opts = LogOptions {
            container_name: Some(c.clone()),
            timestamps: true,
            ..LogOptions::default()
        };
        let read = async {
            let mut stream = stackpath
                .instance_logs(workload_id, instance_name, &opts)
                .await
                .map_err(|e| format!("StackPath refused them: {e}"))?;
            let mut out = BytesMut::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("StackPath's log stream broke: {e}"))?;
                out.extend_from_slice(&chunk);
                keep_tail(&mut out);
            }
            Ok(out.freeze())
        };
        let got = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "StackPath did not send them within {}s",
                    READ_TIMEOUT.as_secs()
                ))
            });
        kept.push((c.clone(), got));
    }
    let size: usize = kept
        .iter()
        .filter_map(|(_, k)| k.as_ref().ok().map(Bytes::len))
        .sum();
    let charge = budget.charge(size);
    if charge.is_none() {
        let why = format!(
            "the daemon's memory for finished pods' logs ({} MiB) is full; delete finished pods \
             (or set a Job's ttlSecondsAfterFinished) to make room",
            budget.limit >> 20
        );
        for (_, k) in &mut kept {
            *k = Err(why.clone());
        }
    }
    KeptLogs {
        containers: kept,
        _charge: charge,
    }
}

/// Keeps the last [`PER_CONTAINER`] bytes, cut at a line start.
fn keep_tail(out: &mut BytesMut) {
    if out.len() <= PER_CONTAINER {
        return;
    }
    let from = out.len() - PER_CONTAINER;
    let cut = out[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(from, |i| from + i + 1);
    let _ = out.split_to(cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_output_keeps_its_last_whole_lines() {
        let mut out = BytesMut::new();
        for i in 0..100_000 {
            out.extend_from_slice(format!("2026-12-05T10:00:00Z line {i}\n").as_bytes());
            keep_tail(&mut out);
        }
        assert!(out.len() <= PER_CONTAINER);
        assert!(out.starts_with(b"2026-12-05T10:00:00Z line "));
        assert!(out.ends_with(b"line 99999\n"));
    }

    #[test]
    fn the_budget_is_released_when_the_logs_go() {
        let budget = Budget::new(10);
        let a = budget.charge(6).unwrap();
        assert!(budget.charge(6).is_none(), "over the limit");
        drop(a);
        assert_eq!(budget.used(), 0);
        assert!(budget.charge(10).is_some());
    }
}
