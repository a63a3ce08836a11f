//! `vk-stackpath run`: the parts joined. Start-up checks (settings, credentials, city, policy)
//! fail with one clear message; then, while this process leads (always, without
//! `--leader-elect`), the node, the pod controller, the kubelet API, the orphan sweeps and the
//! gauges run until a shutdown signal, after which the node is marked NotReady and the
//! workloads are left running.
//!
//! Shutdown is one root [`CancellationToken`]: the signal cancels it; each leadership term runs
//! under a child token that losing the lease cancels too; every task of a term is in the term's
//! [`TaskTracker`] and stops when its token is cancelled.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use stackpath_client::RateLimit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::active_policy::ActivePolicy;
use crate::config::StackPathSettings;
use crate::health::{self, Readiness, Role};
use crate::leader::Election;
use crate::metrics::Metrics;
use crate::node::{self, NodeSettings};
use crate::pods::{self, Context, Timing};
use crate::policy::Limits;
use crate::translation::Placement;

/// One city the daemon serves: its node and that node's kubelet API.
pub struct CityNode {
    pub node: NodeSettings,
    /// The kubelet API (logs, exec, stats) of this node, on a port of its own.
    pub kubelet: vk_kubelet::KubeletConfig,
}

/// Everything `run` needs, already validated by the CLI.
pub struct DaemonConfig {
    pub stackpath: StackPathSettings,
    /// One per city, in the order given (SP_CITY_CODE); at least one.
    pub cities: Vec<CityNode>,
    pub policy_path: Option<PathBuf>,
    pub limits: Limits,
    pub workers: u16,
    pub timing: Timing,
    pub metrics_addr: Option<SocketAddr>,
    pub election: Option<Election>,
    pub rate_limit: RateLimit,
    /// Whether DaemonSet pods run at StackPath.
    pub daemonset_pods: pods::decide::DaemonSetPods,
    /// Whether this node provisions volumes for claims ([`crate::provisioner`]).
    pub provision_volumes: bool,
    /// How often the policy file is checked for changes.
    pub policy_reload: Duration,
    /// How config volumes (configMap, secret, …) reach the containers.
    pub config_volumes: crate::materialize::ConfigVolumes,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "StackPath refused the API credentials (SP_CLIENT_ID `{client_id}` / SP_CLIENT_SECRET): \
         check both in the StackPath portal under API management"
    )]
    Credentials {
        client_id: String,
        #[source]
        source: stackpath_client::Error,
    },
    #[error(
        "StackPath at `{api_host}` cannot be reached to check the credentials: {source} (check \
         SP_API_HOST and the network)"
    )]
    Unreachable {
        api_host: String,
        #[source]
        source: stackpath_client::Error,
    },
    #[error("SP_CITY_CODE {city} not a StackPath location; known city codes: {known}")]
    UnknownCity {
        /// The cities, quoted, with their verb: "`XYZ` is" or "`XYZ`, `ABC` are".
        city: String,
        known: String,
    },
    #[error(
        "SP_STACK_ID `{stack}` is not a stack these credentials may use: check the stack id (its \
         slug or UUID) in the StackPath portal"
    )]
    Stack {
        stack: String,
        #[source]
        source: stackpath_client::Error,
    },
    #[error("StackPath refused listing the stack's workloads: {0}")]
    ListWorkloads(#[source] stackpath_client::Error),
    #[error("the StackPath client cannot be set up: {0}")]
    Client(#[source] stackpath_client::Error),
    #[error("cannot list this node's existing workloads at start: {0}")]
    Adoption(#[source] stackpath_client::Error),
    #[error("the policy cannot be loaded: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("the metrics endpoint cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Checks the credentials, the stack and the cities against StackPath, naming what is wrong;
/// gives each city's StackPath region code (where the location names one).
pub async fn check_stackpath(
    client: &stackpath_client::Client,
    settings: &StackPathSettings,
) -> Result<BTreeMap<String, String>, DaemonError> {
    use stackpath_client::Error as E;
    let locations = client.list_all_locations().await.map_err(|e| match e {
        E::Unauthorized { .. } => DaemonError::Credentials {
            client_id: settings.client_id.clone(),
            source: e,
        },
        other => DaemonError::Unreachable {
            api_host: settings.api_host.clone(),
            source: other,
        },
    })?;
    let known: Vec<String> = locations
        .iter()
        .filter_map(|l| l.city_code.clone())
        .collect();
    let unknown: Vec<&str> = settings
        .city_codes
        .iter()
        .filter(|city| !known.iter().any(|c| c.eq_ignore_ascii_case(city)))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(DaemonError::UnknownCity {
            city: format!(
                "`{}` {}",
                unknown.join("`, `"),
                if unknown.len() == 1 { "is" } else { "are" }
            ),
            known: known.join(", "),
        });
    }
    let regions = locations
        .iter()
        .filter_map(|l| {
            let city = l.city_code.as_ref()?.to_uppercase();
            let region = l.region_code.as_ref().or(l.region.as_ref())?;
            Some((city, label_value(region)?))
        })
        .collect();
    let page = stackpath_client::model::PageRequest {
        first: Some(1),
        ..Default::default()
    };
    client.list_workloads(&page).await.map_err(|e| match e {
        E::Forbidden { .. } | E::NotFound { .. } => DaemonError::Stack {
            stack: settings.stack_id.clone(),
            source: e,
        },
        other => DaemonError::ListWorkloads(other),
    })?;
    Ok(regions)
}

/// `value` as a label value (`North America` → `North-America`), if it can be one.
fn label_value(value: &str) -> Option<String> {
    let v: String = value
        .trim()
        .chars()
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then_some(v)
}

/// Builds the StackPath client the daemon uses (metrics observer, rate limit).
pub fn stackpath_client(
    settings: &StackPathSettings,
    metrics: Arc<Metrics>,
    rate_limit: RateLimit,
) -> Result<stackpath_client::Client, DaemonError> {
    let mut config = settings.client_config().map_err(DaemonError::Client)?;
    config.observer = Some(metrics);
    config.rate_limit = Some(rate_limit);
    stackpath_client::Client::new(config).map_err(DaemonError::Client)
}

/// Checks the console's host key once at start (a TCP connect and the SSH key exchange, no
/// login), so a missing or wrong pinned key is reported before the first `kubectl exec`.
async fn probe_console(console: &vk_kubelet::ConsoleConfig) {
    use vk_kubelet::console::{ProbeOutcome, probe};
    match probe(console).await {
        Ok(o @ ProbeOutcome::Verified { .. }) => tracing::info!("{o}"),
        Ok(o) => tracing::warn!("{o}"),
        Err(e) if e.is_host_key() => tracing::error!("kubectl exec will fail: {e}"),
        Err(e) => tracing::warn!(
            "the StackPath console cannot be reached at start (kubectl exec may fail): {e}"
        ),
    }
}

/// How long a clean shutdown waits for the pod path and the servers to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    mut config: DaemonConfig,
    kube: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let root = CancellationToken::new();
    tokio::spawn({
        let root = root.clone();
        async move {
            shutdown.await;
            root.cancel();
        }
    });
    let metrics = Arc::new(Metrics::new());
    let nodes: Vec<String> = config.cities.iter().map(|c| c.node.name.clone()).collect();
    let readiness = Readiness::new(metrics.clone(), &nodes);
    let servers = TaskTracker::new();
    if let Some(addr) = config.metrics_addr {
        let local = health::serve(addr, readiness.clone(), &servers, root.clone()).await?;
        tracing::info!(addr = %local, "metrics, /healthz and /readyz listening");
    }
    servers.spawn(
        root.clone()
            .run_until_cancelled_owned(readiness.clone().follow_kubelet()),
    );
    let client = stackpath_client(&config.stackpath, metrics.clone(), config.rate_limit)?;
    let regions = check_stackpath(&client, &config.stackpath).await?;
    for city in &mut config.cities {
        city.node.region = regions.get(&city.node.city_code).cloned();
    }
    announce_cities(&config);
    if let Some(first) = config.cities.first() {
        // One console for every city: the settings are the daemon's.
        probe_console(&first.kubelet.console).await;
    }
    metrics.stackpath_ok();
    let policy = Arc::new(ActivePolicy::load(
        config.policy_path.clone(),
        config.limits.clone(),
    )?);
    servers.spawn(
        root.clone()
            .run_until_cancelled_owned(policy.clone().watch(config.policy_reload)),
    );

    let result = lead(
        &config, &kube, &client, &policy, &metrics, &readiness, &root,
    )
    .await;
    root.cancel();
    servers.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, servers.wait())
        .await
        .is_err()
    {
        tracing::warn!("the metrics server or the policy watch did not stop in time");
    }
    result
}

/// Says at start which cities this daemon serves, and what happens to one left out.
fn announce_cities(config: &DaemonConfig) {
    for city in &config.cities {
        tracing::info!(
            city = city.node.city_code,
            node = city.node.name,
            region = city.node.region.as_deref().unwrap_or("-"),
            kubelet = %city.kubelet.listen,
            "serving city"
        );
    }
    let cities: Vec<&str> = config
        .cities
        .iter()
        .map(|c| c.node.city_code.as_str())
        .collect();
    tracing::info!(
        cities = cities.join(","),
        "a city left out of SP_CITY_CODE/--city-code is not drained: its Node stays (NotReady \
         once its lease runs out) and its pods and StackPath workloads stay until you delete \
         them; naming the city again resumes it, its workloads adopted"
    );
}

/// Leadership terms, one after another, until shutdown: without `--leader-elect` one term
/// for the life of the process; with it, each time the lease is won, until it is lost.
async fn lead(
    config: &DaemonConfig,
    kube: &kube::Client,
    client: &stackpath_client::Client,
    policy: &Arc<ActivePolicy>,
    metrics: &Arc<Metrics>,
    readiness: &Readiness,
    root: &CancellationToken,
) -> Result<(), DaemonError> {
    let mut elector = config.election.as_ref().map(|e| e.elector(kube.clone()));
    loop {
        if let Some(elector) = elector.as_mut() {
            readiness.set_role(Role::Standby);
            if root.run_until_cancelled(elector.acquire()).await.is_none() {
                return Ok(());
            }
        }
        readiness.set_role(Role::Leader);
        let term = root.child_token();
        let lost = {
            let acting = act(
                config,
                kube,
                client,
                policy,
                metrics,
                readiness,
                term.clone(),
            );
            tokio::pin!(acting);
            match elector.as_mut() {
                Some(elector) => tokio::select! {
                    r = &mut acting => { r?; None }
                    lost = elector.hold() => Some(lost),
                },
                None => {
                    acting.await?;
                    None
                }
            }
            // A term that lost the lease is dropped here, mid-pass: the next leader adopts
            // whatever it was creating.
        };
        term.cancel();
        readiness.reset_acting();
        match lost {
            Some(lost) => tracing::warn!("stopped acting for the nodes ({lost}); standing by"),
            None => {
                if let Some(elector) = elector.as_mut() {
                    elector.release().await;
                }
                return Ok(());
            }
        }
    }
}

/// One leadership term: every city's node, until `term` is cancelled (shutdown). The cities
/// share the StackPath client (token, rate limit: each city a lane of its own), the policy and
/// the lease; a city's fatal error (its workloads cannot be listed) ends the term for all, as
/// it would end a daemon of that one city.
async fn act(
    config: &DaemonConfig,
    kube: &kube::Client,
    client: &stackpath_client::Client,
    policy: &Arc<ActivePolicy>,
    metrics: &Arc<Metrics>,
    readiness: &Readiness,
    term: CancellationToken,
) -> Result<(), DaemonError> {
    let gauged = Gauged::default();
    let gauges = tokio::spawn(gauges(gauged.clone(), metrics.clone()));
    let cities = config.cities.iter().map(|city| {
        let term = term.clone();
        let client = client.for_lane(&city.node.city_code);
        let gauged = gauged.clone();
        async move {
            let acted = act_city(
                config, city, kube, &client, policy, metrics, readiness, &term, &gauged,
            )
            .await;
            if acted.is_err() {
                term.cancel();
            }
            acted
        }
    });
    let acted = futures::future::join_all(cities).await;
    gauges.abort();
    acted.into_iter().collect()
}

/// One city's node for the term: the node, adoption, the pod controller, the kubelet API and
/// the background loops, until `term` is cancelled; then the node is marked NotReady.
#[allow(clippy::too_many_arguments)]
async fn act_city(
    config: &DaemonConfig,
    city: &CityNode,
    kube: &kube::Client,
    client: &stackpath_client::Client,
    policy: &Arc<ActivePolicy>,
    metrics: &Arc<Metrics>,
    readiness: &Readiness,
    term: &CancellationToken,
    gauged: &Gauged,
) -> Result<(), DaemonError> {
    let term = term.clone();
    let node = node::register(kube.clone(), city.node.clone(), metrics.clone()).await?;
    let ctx = Arc::new(Context {
        kube: kube.clone(),
        stackpath: client.clone(),
        policy: policy.clone(),
        placement: Placement {
            node_name: city.node.name.clone(),
            city_code: city.node.city_code.clone(),
            stack_id: config.stackpath.stack_id.clone(),
            host_ip: city.node.internal_ip.clone(),
            config_volumes: config.config_volumes.clone(),
        },
        host_ip: city.node.internal_ip.clone(),
        events: pods::events::Events::new(kube.clone(), &city.node.name),
        tracker: pods::tracker::Tracker::default(),
        timing: config.timing,
        metrics: metrics.clone(),
        daemonset_pods: config.daemonset_pods,
    });
    // Without the list, a pod could get a second workload: nothing is reconciled before it.
    // StackPath being busy or briefly failing is waited out; a refusal ends the daemon.
    let mut wait = Duration::from_secs(1);
    loop {
        match pods::adopt::adopt(&ctx).await {
            Ok(n) => {
                tracing::info!(
                    node = city.node.name,
                    workloads = n,
                    "existing workloads of this node matched to their pods"
                );
                break;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    node = city.node.name,
                    error = %e,
                    retry_in = ?wait,
                    "cannot list this node's existing workloads yet; no pod is acted on until then"
                );
                if term
                    .run_until_cancelled(tokio::time::sleep(wait))
                    .await
                    .is_none()
                {
                    node.stop().await;
                    return Ok(());
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                node.stop().await;
                return Err(DaemonError::Adoption(e));
            }
        }
    }
    let controller = pods::controller::controller(kube.clone(), &city.node.name);
    let store = controller.store();
    let tasks = TaskTracker::new();
    let locator = Arc::new(pods::locator::Locator {
        store: store.clone(),
        ctx: ctx.clone(),
    });
    // Serves in the background: a bootstrapped certificate waits for CSR approval, which
    // must not hold up the pods.
    tasks.spawn({
        let (kubelet, sp, kube, term) = (
            city.kubelet.clone(),
            client.clone(),
            kube.clone(),
            term.clone(),
        );
        let health = readiness.kubelet(&city.node.name);
        let node = city.node.name.clone();
        async move {
            // An error is a setting that cannot work (the health says so in /readyz too);
            // everything else is retried inside until the term ends.
            let stopped = term.cancelled_owned();
            if let Err(e) = vk_kubelet::serve(kubelet, locator, sp, kube, health, stopped).await {
                tracing::error!(node, error = %e, "the kubelet API stopped: kubectl logs and exec will not work");
            }
        }
    });
    if config.provision_volumes {
        tasks.spawn(crate::provisioner::run(
            kube.clone(),
            city.node.name.clone(),
            term.clone().cancelled_owned(),
        ));
    }
    let background = [
        tokio::spawn(pods::orphans::run(ctx.clone())),
        tokio::spawn(pods::orphans::run_vanished(
            ctx.clone(),
            store.clone(),
            Duration::from_secs(2),
        )),
    ];
    gauged
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((ctx.clone(), store));
    for task in background {
        let term = term.clone();
        tasks.spawn(async move {
            term.cancelled().await;
            task.abort();
        });
    }
    readiness.set_acting(true);
    tracing::info!(
        node = city.node.name,
        workers = config.workers,
        "watching pods"
    );
    pods::run(
        controller,
        ctx,
        config.workers,
        term.clone().cancelled_owned(),
    )
    .await;
    readiness.set_acting(false);
    // However the pod controller ended, the term ends with it, for every city.
    term.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            node = city.node.name,
            "the kubelet API did not stop in time"
        );
    }
    node.stop().await;
    Ok(())
}

/// Each city's pod context and pod cache, for the gauges.
type Gauged = Arc<std::sync::Mutex<Vec<(Arc<Context>, Store<Pod>)>>>;

/// Pods by phase and tracked pods of all cities, every 10 s.
async fn gauges(gauged: Gauged, metrics: Arc<Metrics>) {
    loop {
        let mut by_phase: BTreeMap<String, i64> = Default::default();
        let mut tracked = 0;
        for (ctx, store) in gauged.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for p in store.state() {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                *by_phase.entry(phase).or_default() += 1;
            }
            tracked += ctx.tracker.len();
        }
        let v: Vec<_> = by_phase.into_iter().collect();
        metrics.set_pods(&v, tracked);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
