//! `vk-stackpath run`: the parts joined. Start-up checks (settings, credentials, city, policy)
//! fail with one clear message; then the node, the pod controller, the orphan sweep, policy
//! reloads and the metrics endpoint run until a shutdown signal, after which the node is
//! marked NotReady and the workloads are left running.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use stackpath_client::RateLimit;

use crate::active_policy::ActivePolicy;
use crate::config::StackPathSettings;
use crate::leader::Election;
use crate::metrics::Metrics;
use crate::node::{self, NodeSettings};
use crate::pods::{self, Context, Timing};
use crate::policy::Limits;
use crate::translation::Placement;

/// Everything `run` needs, already validated by the CLI.
pub struct DaemonConfig {
    pub stackpath: StackPathSettings,
    pub node: NodeSettings,
    pub policy_path: Option<PathBuf>,
    pub limits: Limits,
    pub workers: u16,
    pub timing: Timing,
    pub metrics_addr: Option<SocketAddr>,
    pub election: Option<Election>,
    pub rate_limit: RateLimit,
    /// How often the policy file is checked for changes.
    pub policy_reload: Duration,
    /// The kubelet API (logs, exec, stats).
    pub kubelet: vk_kubelet::KubeletConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    StackPath(String),
    #[error("the policy cannot be loaded: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("the metrics endpoint cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost leadership; exiting so that a standby takes over")]
    LeadershipLost,
}

/// Checks the credentials, the stack and the city against StackPath, naming what is wrong.
pub async fn check_stackpath(
    client: &stackpath_client::Client,
    settings: &StackPathSettings,
) -> Result<(), DaemonError> {
    use stackpath_client::Error as E;
    let locations = client.list_all_locations().await.map_err(|e| {
        DaemonError::StackPath(match e {
            E::Unauthorized { .. } => format!(
                "StackPath refused the API credentials (SP_CLIENT_ID `{}` / SP_CLIENT_SECRET): \
                 check both in the StackPath portal under API management",
                settings.client_id
            ),
            other => format!(
                "StackPath at `{}` cannot be reached to check the credentials: {other} \
                 (check SP_API_HOST and the network)",
                settings.api_host
            ),
        })
    })?;
    let known: Vec<String> = locations
        .iter()
        .filter_map(|l| l.city_code.clone())
        .collect();
    if !known
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&settings.city_code))
    {
        return Err(DaemonError::StackPath(format!(
            "SP_CITY_CODE `{}` is not a StackPath location; known city codes: {}",
            settings.city_code,
            known.join(", ")
        )));
    }
    let page = stackpath_client::model::PageRequest {
        first: Some(1),
        ..Default::default()
    };
    client.list_workloads(&page).await.map_err(|e| {
        DaemonError::StackPath(match e {
            E::Forbidden { .. } | E::NotFound { .. } => format!(
                "SP_STACK_ID `{}` is not a stack these credentials may use: check the stack id \
                 (its slug or UUID) in the StackPath portal",
                settings.stack_id
            ),
            other => format!("StackPath refused listing the stack's workloads: {other}"),
        })
    })?;
    Ok(())
}

/// Builds the StackPath client the daemon uses (metrics observer, rate limit).
pub fn stackpath_client(
    settings: &StackPathSettings,
    metrics: Arc<Metrics>,
    rate_limit: RateLimit,
) -> Result<stackpath_client::Client, DaemonError> {
    let mut config = settings
        .client_config()
        .map_err(|e| DaemonError::StackPath(e.to_string()))?;
    config.observer = Some(metrics);
    config.rate_limit = Some(rate_limit);
    stackpath_client::Client::new(config).map_err(|e| DaemonError::StackPath(e.to_string()))
}

#[derive(Clone)]
struct Probe {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn serve_metrics(
    addr: SocketAddr,
    probe: Probe,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(p): State<Probe>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    p.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(p): State<Probe>| async move {
                if p.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                }
            }),
        )
        .with_state(probe);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((local, task))
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: DaemonConfig,
    kube: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    if let Some(addr) = config.metrics_addr {
        let (local, task) = serve_metrics(
            addr,
            Probe {
                metrics: metrics.clone(),
                ready: ready.clone(),
            },
        )
        .await?;
        tracing::info!(addr = %local, "metrics, /healthz and /readyz listening");
        background.push(task);
    }
    let client = stackpath_client(&config.stackpath, metrics.clone(), config.rate_limit)?;
    check_stackpath(&client, &config.stackpath).await?;
    metrics.stackpath_ok();
    let policy = Arc::new(ActivePolicy::load(
        config.policy_path.clone(),
        config.limits.clone(),
    )?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    if let Some(election) = &config.election {
        ready.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = election.acquire(kube.clone()) => {}
            _ = stopped() => return Ok(()),
        }
    }

    let node = node::register(kube.clone(), config.node.clone(), metrics.clone()).await?;
    let ctx = Arc::new(Context {
        kube: kube.clone(),
        stackpath: client.clone(),
        policy: policy.clone(),
        placement: Placement {
            node_name: config.node.name.clone(),
            city_code: config.stackpath.city_code.clone(),
            stack_id: config.stackpath.stack_id.clone(),
        },
        host_ip: config.node.internal_ip.clone(),
        events: pods::events::Events::new(kube.clone(), &config.node.name),
        tracker: pods::tracker::Tracker::default(),
        timing: config.timing,
        metrics: metrics.clone(),
    });
    match pods::adopt::adopt(&ctx).await {
        Ok(n) => tracing::info!(
            workloads = n,
            "existing workloads of this node matched to their pods"
        ),
        // Without the list, a pod could get a second workload: better not start.
        Err(e) => {
            node.stop().await;
            return Err(DaemonError::StackPath(format!(
                "cannot list this node's existing workloads at start: {e}"
            )));
        }
    }
    let controller = pods::controller::controller(kube.clone(), &config.node.name);
    let store = controller.store();
    let locator = Arc::new(pods::locator::Locator {
        store: store.clone(),
        ctx: ctx.clone(),
    });
    {
        // Serves in the background: a bootstrapped certificate waits for CSR approval, which
        // must not hold up the pods.
        let kubelet = config.kubelet.clone();
        let (sp, kube) = (client.clone(), kube.clone());
        let stopped = stopped();
        background.push(tokio::spawn(async move {
            if let Err(e) = vk_kubelet::serve(kubelet, locator, sp, kube, vk_kubelet::Health::new(), stopped).await {
                tracing::error!(error = %e, "the kubelet API stopped: kubectl logs and exec will not work");
            }
        }));
    }
    background.push(tokio::spawn(pods::orphans::run(ctx.clone())));
    background.push(tokio::spawn(pods::orphans::run_vanished(
        ctx.clone(),
        store.clone(),
        Duration::from_secs(2),
    )));
    background.push(tokio::spawn(policy.clone().watch(config.policy_reload)));
    background.push(tokio::spawn(gauge_loop(ctx.clone(), store.clone())));
    ready.store(true, Ordering::Relaxed);

    let lost = Arc::new(AtomicBool::new(false));
    let controller_stop = {
        let election = config.election.clone();
        let kube = kube.clone();
        let lost = lost.clone();
        let stopped = stopped();
        async move {
            match election {
                Some(e) => {
                    tokio::select! {
                        _ = e.hold(kube) => lost.store(true, Ordering::Relaxed),
                        _ = stopped => {}
                    }
                }
                None => stopped.await,
            }
        }
    };
    // The controller wants a Sync shutdown future: relay through a oneshot channel.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    background.push(tokio::spawn(async move {
        controller_stop.await;
        let _ = done_tx.send(());
    }));
    tracing::info!(
        node = config.node.name,
        workers = config.workers,
        "watching pods"
    );
    pods::run(controller, ctx, config.workers, async move {
        let _ = done_rx.await;
    })
    .await;
    for t in background {
        t.abort();
    }
    node.stop().await;
    if lost.load(Ordering::Relaxed) {
        return Err(DaemonError::LeadershipLost);
    }
    Ok(())
}

async fn gauge_loop(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>,
) {
    loop {
        let mut by_phase: std::collections::BTreeMap<String, i64> = Default::default();
        for p in store.state() {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into());
            *by_phase.entry(phase).or_default() += 1;
        }
        let v: Vec<_> = by_phase.into_iter().collect();
        ctx.metrics.set_pods(&v, ctx.tracker.len());
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
