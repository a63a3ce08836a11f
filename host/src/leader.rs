//! Leader election on a coordination.k8s.io Lease, so two replicas never act at once.
//!
//! kube-runtime 5 offers no leader election; this is client-go's algorithm
//! (`tools/leaderelection`) in small, with its safety argument:
//! - a candidate judges the lease expired by **its own clock**: when it has seen no change of
//!   the lease record for `lease_duration` since it last saw one (never by comparing the
//!   holder's `renewTime` with the local time, which clock skew would break);
//! - the leader renews every `retry_period`, each attempt bounded in time, and stops acting
//!   when no renewal has succeeded for `renew_deadline` (< `lease_duration`).
//!
//! A candidate sees a change no earlier than the leader made it, so it takes over no earlier
//! than `lease_duration` after the leader's last successful renewal, by which time the leader
//! has stopped (`renew_deadline` after that renewal), whatever either clock says. A leader
//! that loses the API server stops acting and stands by again; it resumes when it can renew.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a candidate waits after the lease record last changed before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a candidate retries.
    pub retry_period: Duration,
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the lease.
    Taken { holder: String },
    /// No renewal succeeded within the renew deadline (the API server is unreachable or slow).
    Deadline { last_error: String },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Taken { holder } => write!(f, "the lease is held by `{holder}`"),
            Lost::Deadline { last_error } => {
                write!(
                    f,
                    "no renewal succeeded within the renew deadline ({last_error})"
                )
            }
        }
    }
}

/// What of the lease record a candidate watches for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    transitions: Option<i32>,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            transitions: spec.lease_transitions,
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// One attempt's result.
enum Attempt {
    /// This process holds the lease now.
    Held,
    /// Another replica holds it, and has renewed it within the lease duration as observed here.
    HeldBy(String),
}

/// A replica's view of the election: the lease record as last seen, and when (local clock).
pub struct Elector {
    election: Election,
    api: Api<Lease>,
    observed: Option<(Record, Instant)>,
}

impl Election {
    pub fn elector(&self, client: kube::Client) -> Elector {
        Elector {
            election: self.clone(),
            api: Api::namespaced(client, &self.namespace),
            observed: None,
        }
    }

    /// Checks the timings (the ones client-go insists on).
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-elect-renew-deadline ({:?}) must be shorter than \
                 --leader-elect-lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--leader-elect-retry-period ({:?}) must be above 0 and shorter than \
                 --leader-elect-renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    fn lease(&self, base: Option<&Lease>, transitions: i32, acquired: Option<Timestamp>) -> Lease {
        let now = Timestamp::now();
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: base.and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
                acquire_time: Some(MicroTime(acquired.unwrap_or(now))),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

impl Elector {
    /// Bound on one attempt (a GET and a write), so a hung API server cannot hold the leader
    /// past its renew deadline.
    fn attempt_timeout(&self) -> Duration {
        (self.election.renew_deadline / 2).max(Duration::from_millis(500))
    }

    async fn attempt(&mut self) -> Result<Attempt, String> {
        match tokio::time::timeout(self.attempt_timeout(), self.try_acquire_or_renew()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the API server did not answer within {:?}",
                self.attempt_timeout()
            )),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let e = &self.election;
        let Some(current) = self.api.get_opt(&e.name).await? else {
            return match self
                .api
                .create(&PostParams::default(), &e.lease(None, 0, None))
                .await
            {
                Ok(l) => {
                    self.observed = Some((Record::of(&l), Instant::now()));
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldBy("?".into())),
                Err(err) => Err(err),
            };
        };
        let record = Record::of(&current);
        let now = Instant::now();
        let observed_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => now,
        };
        self.observed = Some((record.clone(), observed_at));
        let ours = record.holder.as_deref() == Some(e.identity.as_str());
        if let Some(holder) = record.holder.as_ref().filter(|_| !ours)
            && now.duration_since(observed_at) < e.lease_duration
        {
            return Ok(Attempt::HeldBy(holder.clone()));
        }
        let transitions = record.transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { record.acquire_time } else { None };
        let next = e.lease(Some(&current), transitions, acquired);
        match self
            .api
            .replace(&e.name, &PostParams::default(), &next)
            .await
        {
            Ok(l) => {
                self.observed = Some((Record::of(&l), Instant::now()));
                Ok(Attempt::Held)
            }
            // Someone else wrote first: theirs is the newest record.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Ok(Attempt::HeldBy(record.holder.unwrap_or_default()))
            }
            Err(err) => Err(err),
        }
    }

    /// Waits until this process is the leader.
    pub async fn acquire(&mut self) {
        let mut announced: Option<String> = None;
        loop {
            match self.attempt().await {
                Ok(Attempt::Held) => {
                    tracing::info!(
                        lease = self.election.name,
                        identity = self.election.identity,
                        "became the leader"
                    );
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if announced.as_ref() != Some(&holder) {
                        tracing::info!(
                            lease = self.election.name,
                            leader = holder,
                            "another replica leads; standing by"
                        );
                        announced = Some(holder);
                    }
                }
                Err(error) => {
                    tracing::warn!(lease = self.election.name, %error, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.election.retry_period).await;
        }
    }

    /// Renews until leadership is lost; returns why. The caller must stop acting at once.
    pub async fn hold(&mut self) -> Lost {
        let mut last_ok = Instant::now();
        let mut last_error = String::new();
        loop {
            let next = Instant::now() + self.election.retry_period;
            let deadline = last_ok + self.election.renew_deadline;
            match tokio::time::timeout_at(deadline, self.attempt()).await {
                Ok(Ok(Attempt::Held)) => last_ok = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::error!(
                        lease = self.election.name,
                        leader = holder,
                        "leadership lost to another replica"
                    );
                    return Lost::Taken { holder };
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = self.election.name, %error, "could not renew leadership");
                    last_error = error;
                }
                Err(_) => {}
            }
            if Instant::now() >= last_ok + self.election.renew_deadline {
                let lost = Lost::Deadline {
                    last_error: if last_error.is_empty() {
                        "renewals timed out".into()
                    } else {
                        last_error
                    },
                };
                tracing::error!(lease = self.election.name, "leadership lost: {lost}");
                return lost;
            }
            tokio::time::sleep_until(next.min(last_ok + self.election.renew_deadline)).await;
        }
    }

    /// Gives the lease up on a clean shutdown, so a standby takes over at once (client-go's
    /// `ReleaseOnCancel`): the holder is cleared and the duration set to one second.
    pub async fn release(&mut self) {
        let e = &self.election;
        let release = async {
            let current = self.api.get_opt(&e.name).await?;
            let Some(current) =
                current.filter(|l| Record::of(l).holder.as_deref() == Some(e.identity.as_str()))
            else {
                return Ok::<_, kube::Error>(());
            };
            let mut lease = current.clone();
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
            }
            self.api
                .replace(&e.name, &PostParams::default(), &lease)
                .await?;
            Ok(())
        };
        match tokio::time::timeout(self.attempt_timeout(), release).await {
            Ok(Ok(())) => tracing::info!(lease = e.name, "leadership released"),
            Ok(Err(error)) => {
                tracing::info!(lease = e.name, %error, "could not release leadership")
            }
            Err(_) => tracing::info!(lease = e.name, "could not release leadership in time"),
        }
    }
}
