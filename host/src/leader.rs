//! Leader election on a coordination.k8s.io Lease, so two replicas never act at once.
//!
//! kube-runtime 5 offers no leader election; this is the client-go algorithm in small:
//! acquire when the lease is free or expired (optimistic concurrency on resourceVersion),
//! renew every `renew`, and give up leadership (the process exits, its Deployment restarts it
//! as a standby) when a renewal has not succeeded for `duration`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease stays valid without renewal (a standby takes over after this).
    pub duration: Duration,
    /// How often the leader renews and a standby retries.
    pub renew: Duration,
}

fn expired(spec: &LeaseSpec) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let deadline = renewed.0.as_second() + secs;
    Timestamp::now().as_second() > deadline
}

impl Election {
    fn lease(&self, transitions: i32, resource_version: Option<String>) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// One attempt: Ok(true) when this process holds the lease afterwards.
    async fn try_acquire_or_renew(&self, api: &Api<Lease>) -> Result<bool, kube::Error> {
        let Some(current) = api.get_opt(&self.name).await? else {
            return match api
                .create(&PostParams::default(), &self.lease(0, None))
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(&self.identity);
        if !ours && !expired(&spec) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let mut next = self.lease(transitions, current.metadata.resource_version.clone());
        if ours && let (Some(n), Some(acq)) = (next.spec.as_mut(), spec.acquire_time) {
            n.acquire_time = Some(acq);
        }
        match api.replace(&self.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(true),
            // Someone else wrote first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this process is the leader.
    pub async fn acquire(&self, client: kube::Client) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew(&api).await {
                Ok(true) => {
                    tracing::info!(
                        lease = self.name,
                        identity = self.identity,
                        "became the leader"
                    );
                    return;
                }
                Ok(false) if !announced => {
                    tracing::info!(lease = self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = self.name, error = %e, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Renews until leadership is lost; returns then (the caller stops acting).
    pub async fn hold(&self, client: kube::Client) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew).await;
            match self.try_acquire_or_renew(&api).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = self.name, "leadership lost to another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = self.name, error = %e, "could not renew leadership");
                    if last_ok.elapsed() >= self.duration {
                        tracing::error!(lease = self.name, "leadership expired");
                        return;
                    }
                }
            }
        }
    }
}
