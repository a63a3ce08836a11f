//! `GET /workload/v1/stacks/{stack_id}/metrics`: plausible per-instance series in the
//! `prometheusMetrics` shape. Values are a deterministic function of instance and time, so
//! repeated calls agree.
//!
//! type=INSTANCE gives `cpu` (cores) and `memory` (bytes) matrices, one result per instance
//! and metric, labelled `{"__name__", "workload_id", "instance_name"}`. type=BANDWIDTH (the
//! spec's default) gives `receive_bytes` and `transmit_bytes` the same way.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) struct Query {
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step_secs: i64,
}

pub(crate) fn step_for(granularity: &str) -> Result<i64, String> {
    Ok(match granularity {
        "" | "DEFAULT" | "PT5M" => 300,
        "PT1M" => 60,
        "PT1H" => 3600,
        "P1D" => 86400,
        other => {
            return Err(format!(
                "unknown granularity {other:?}; use DEFAULT, PT1M, PT5M, PT1H or P1D"
            ));
        }
    })
}

fn hash(s: &str, t: i64, salt: u64) -> f64 {
    // FNV-1a over name, time and salt: cheap and stable.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in s.bytes().chain(t.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h % 10_000) as f64 / 10_000.0
}

pub(crate) fn render(q: &Query, instances: &[(String, String, f64)]) -> Value {
    // instances: (workload id, instance name, memory limit in bytes)
    let names: &[&str] = if q.kind == "INSTANCE" {
        &["cpu", "memory"]
    } else {
        &["receive_bytes", "transmit_bytes"]
    };
    let mut results = Vec::new();
    let first = q.start.timestamp() - q.start.timestamp().rem_euclid(q.step_secs);
    let last = q.end.timestamp();
    let points = ((last - first) / q.step_secs).clamp(0, 2000);
    for (wid, iname, mem_limit) in instances {
        for (k, metric) in names.iter().enumerate() {
            let values: Vec<Value> = (0..=points)
                .map(|n| {
                    let t = first + n * q.step_secs;
                    let r = hash(iname, t, k as u64);
                    let v = match *metric {
                        "cpu" => format!("{:.4}", 0.02 + 0.3 * r),
                        "memory" => format!("{:.0}", mem_limit * (0.15 + 0.2 * r)),
                        _ => format!("{:.0}", 1_000.0 + 500_000.0 * r),
                    };
                    json!({"unixTime": t.to_string(), "value": v})
                })
                .collect();
            results.push(json!({
                "metric": {"__name__": metric, "workload_id": wid, "instance_name": iname},
                "values": values,
            }));
        }
    }
    json!({"status": "SUCCESS", "data": {"matrix": {"results": results}}})
}

/// Bytes in a memory quantity like `2Gi` (instance sizes only use Gi).
pub(crate) fn memory_bytes(q: &str) -> f64 {
    let (num, mult) = if let Some(n) = q.strip_suffix("Gi") {
        (n, 1024.0 * 1024.0 * 1024.0)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1024.0 * 1024.0)
    } else {
        (q, 1.0)
    };
    num.parse::<f64>().unwrap_or(2.0) * mult
}
