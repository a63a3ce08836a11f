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

#[cfg(test)]
mod tests {
    //! Against a scripted Lease API (one lease, resourceVersion conflicts as the API server
    //! gives them), with short real timings.
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use http::{Method, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;

    const NS: &str = "vk-stackpath";
    const NAME: &str = "vk-stackpath-node";

    #[derive(Default)]
    struct Store {
        lease: Option<Value>,
        version: u64,
    }

    /// One lease shared by every client; `hung` makes one client's requests never answered
    /// (a proxy that stopped forwarding), as seen by that replica only.
    #[derive(Clone, Default)]
    struct LeaseApi {
        store: Arc<Mutex<Store>>,
    }

    impl LeaseApi {
        fn client(&self, hung: Arc<AtomicBool>) -> kube::Client {
            let api = self.clone();
            let service = tower::service_fn(move |req: Request<kube::client::Body>| {
                let (api, hung) = (api.clone(), hung.clone());
                async move {
                    if hung.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let (parts, body) = req.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    Ok::<_, Infallible>(api.answer(&parts.method, body))
                }
            });
            kube::Client::new(service, NS)
        }

        fn answer(&self, method: &Method, mut body: Value) -> Response<kube::client::Body> {
            let mut s = self.store.lock().unwrap();
            let status = |code: StatusCode, v: Value| {
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap()
            };
            let failure = |code: u16, reason: &str| {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "code": code, "reason": reason, "message": reason})
            };
            match *method {
                Method::GET => match &s.lease {
                    Some(l) => status(StatusCode::OK, l.clone()),
                    None => status(StatusCode::NOT_FOUND, failure(404, "NotFound")),
                },
                Method::POST | Method::PUT => {
                    let exists = s.lease.is_some();
                    if *method == Method::POST && exists {
                        return status(StatusCode::CONFLICT, failure(409, "AlreadyExists"));
                    }
                    let sent = body["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    let current = s.version.to_string();
                    if *method == Method::PUT && sent.as_deref() != Some(current.as_str()) {
                        return status(StatusCode::CONFLICT, failure(409, "Conflict"));
                    }
                    s.version += 1;
                    body["metadata"]["resourceVersion"] = json!(s.version.to_string());
                    s.lease = Some(body.clone());
                    status(StatusCode::OK, body)
                }
                _ => status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    failure(405, "MethodNotAllowed"),
                ),
            }
        }

        fn holder(&self) -> Option<String> {
            let s = self.store.lock().unwrap();
            s.lease.as_ref()?["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_owned)
        }

        /// Writes the lease as another replica whose clock is far off would.
        fn write_as(&self, holder: &str, renew_time: &str) {
            let mut s = self.store.lock().unwrap();
            s.version += 1;
            s.lease = Some(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": NAME, "namespace": NS,
                             "resourceVersion": s.version.to_string()},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1,
                         "renewTime": renew_time, "acquireTime": renew_time}
            }));
        }
    }

    fn election(identity: &str) -> Election {
        Election {
            namespace: NS.into(),
            name: NAME.into(),
            identity: identity.into(),
            lease_duration: Duration::from_millis(600),
            renew_deadline: Duration::from_millis(400),
            retry_period: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn a_holder_with_a_skewed_clock_is_judged_by_the_local_clock() {
        let api = LeaseApi::default();
        // The holder's renewTime is an hour old by our clock: comparing it with the local time
        // would take over at once.
        api.write_as("other", "2026-01-01T00:00:00.000000Z");
        let mut me = election("me").elector(api.client(Default::default()));
        let started = Instant::now();
        me.acquire().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(600),
            "took over after {waited:?}, before a lease duration without change"
        );
        assert_eq!(api.holder().as_deref(), Some("me"));

        // A holder that keeps renewing (its record changes) is never overtaken, whatever its
        // renewTime says (here a year ahead).
        api.write_as("other", "2027-06-01T00:00:00.000000Z");
        let renewer = {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    api.write_as("other", &format!("2027-06-01T00:00:{i:02}.000000Z"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut again = election("me").elector(api.client(Default::default()));
        let took = tokio::time::timeout(Duration::from_millis(1500), again.acquire()).await;
        assert!(took.is_err(), "took over a lease that was being renewed");
        renewer.abort();
    }

    #[tokio::test]
    async fn a_leader_cut_off_from_the_api_stops_before_anyone_takes_over() {
        let api = LeaseApi::default();
        let a_hung = Arc::new(AtomicBool::new(false));
        let mut a = election("a").elector(api.client(a_hung.clone()));
        a.acquire().await;
        // A renews a few times, then its requests hang (never answered, never failing).
        let hung_after = Duration::from_millis(300);
        let cut = {
            let a_hung = a_hung.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hung_after).await;
                a_hung.store(true, Ordering::SeqCst);
                Instant::now()
            })
        };
        let b = tokio::spawn({
            let api = api.clone();
            async move {
                let mut b = election("b").elector(api.client(Default::default()));
                b.acquire().await;
                Instant::now()
            }
        });
        let lost = a.hold().await;
        let a_stopped = Instant::now();
        assert!(matches!(lost, Lost::Deadline { .. }), "{lost:?}");
        let cut_at = cut.await.unwrap();
        // A stopped within its renew deadline of the cut (the last renewal was before it).
        assert!(
            a_stopped.duration_since(cut_at) <= Duration::from_millis(400 + 300),
            "a kept acting {:?} after it was cut off",
            a_stopped.duration_since(cut_at)
        );
        let b_leads = tokio::time::timeout(Duration::from_secs(10), b)
            .await
            .expect("b takes over")
            .unwrap();
        assert!(b_leads > a_stopped, "two leaders: b led before a stopped");
        assert_eq!(api.holder().as_deref(), Some("b"));
    }
}
