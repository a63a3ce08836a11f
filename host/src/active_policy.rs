//! The policy the daemon translates with, swapped in place when its file changes (a
//! ConfigMap update, say). A new file that fails to load leaves the old policy active; every
//! swap and every refusal is logged with the policy's name and version.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::policy::{Limits, PolicyEngine, PolicyError};

pub struct ActivePolicy {
    engine: RwLock<Arc<PolicyEngine>>,
    path: Option<PathBuf>,
    limits: Limits,
    digest: RwLock<Option<[u8; 32]>>,
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl ActivePolicy {
    /// Loads the policy at `path`, or the built-in default policy.
    pub fn load(path: Option<PathBuf>, limits: Limits) -> Result<Self, PolicyError> {
        let engine = match &path {
            Some(p) => PolicyEngine::from_file(p, limits.clone())?,
            None => PolicyEngine::builtin(limits.clone())?,
        };
        tracing::info!(policy = engine.label(), "policy active");
        Ok(Self {
            engine: RwLock::new(Arc::new(engine)),
            digest: RwLock::new(path.as_deref().and_then(digest)),
            path,
            limits,
        })
    }

    pub fn current(&self) -> Arc<PolicyEngine> {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the file again if its content changed. Returns whether the policy was swapped.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let now = digest(path);
        if now.is_none() || *self.digest.read().unwrap_or_else(|p| p.into_inner()) == now {
            return false;
        }
        *self.digest.write().unwrap_or_else(|p| p.into_inner()) = now;
        match PolicyEngine::from_file(path, self.limits.clone()) {
            Ok(engine) => {
                let old = self.current();
                tracing::info!(
                    policy = engine.label(),
                    previous = old.label(),
                    "policy file changed; new policy active"
                );
                *self.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
                true
            }
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    policy = self.current().label(),
                    "policy file changed but the new policy cannot be loaded; keeping the active one"
                );
                false
            }
        }
    }

    /// Checks the file every `every` (a mounted ConfigMap changes by symlink swap, which
    /// content hashing sees and inotify on the file itself would miss).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        if self.path.is_none() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}
