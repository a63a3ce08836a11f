//! `--state FILE`: workloads survive restarts. Written (atomically: temp file + rename) shortly
//! after each change, coalescing bursts, and once more at shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::WorkloadRec;
use crate::state::Shared;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    stacks: BTreeMap<String, Vec<WorkloadRec>>,
}

pub(crate) fn load(path: &Path) -> Result<BTreeMap<String, Vec<WorkloadRec>>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::File {
                action: "read the state file",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let f: File = serde_json::from_slice(&text).map_err(|e| Error::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if f.version != 1 {
        return Err(Error::State {
            path: path.to_path_buf(),
            message: format!("unsupported version {}", f.version),
        });
    }
    Ok(f.stacks)
}

pub(crate) fn write_now(shared: &Shared) -> Result<(), Error> {
    let Some(path) = &shared.config.state_file else {
        return Ok(());
    };
    let snapshot = {
        let store = shared.lock();
        let mut stacks = BTreeMap::new();
        for (sid, st) in &store.stacks {
            let mut v: Vec<WorkloadRec> = st.workloads.values().cloned().collect();
            v.sort_by_key(|w| w.seq);
            stacks.insert(sid.clone(), v);
        }
        File { version: 1, stacks }
    };
    let text = serde_json::to_vec_pretty(&snapshot).map_err(|e| Error::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    let io = |action: &'static str, source| Error::File {
        action,
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, text).map_err(|e| io("write the state file", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replace the state file", e))
}

pub(crate) async fn writer(shared: std::sync::Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.persist.notified() => {}
            _ = shared.cancel.cancelled() => return,
        }
        // Coalesce a burst of changes into one write.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || write_now(&s)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "state write failed"),
            Err(e) => tracing::warn!(error = %e, "state writer task failed"),
            Ok(Ok(())) => {}
        }
    }
}
