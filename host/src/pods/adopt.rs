//! Workloads that exist when the daemon starts: created by an earlier run (perhaps killed
//! mid-creation) or by the Go provider, which labelled its workloads the same way. Each is
//! matched to its pod by the `vk-*` labels before any pod is reconciled, so no pod ever gets
//! a second workload.

use stackpath_client::model::Workload;

use super::context::Context;
use super::tracker;
use crate::workload::{LABEL_NODE_NAME, labelled_pod};

/// What the daemon keeps of one of its workloads when listing them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeWorkload {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    /// Container images (init containers too), by container.
    pub images: Vec<(String, String)>,
}

impl NodeWorkload {
    /// `namespace/name` of the pod the workload runs.
    pub fn pod_key(&self) -> String {
        tracker::key(&self.namespace, &self.pod)
    }

    /// `None` for a workload without id or pod labels (not one the daemon can match to a pod).
    fn from_workload(w: Workload) -> Option<Self> {
        let (namespace, pod) = labelled_pod(&w).map(|(ns, p)| (ns.to_owned(), p.to_owned()))?;
        let images = w
            .spec
            .map(|s| {
                s.containers
                    .into_iter()
                    .chain(s.init_containers)
                    .map(|(name, c)| (name, c.image.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            id: w.id?,
            namespace,
            pod,
            images,
        })
    }
}

/// This node's workloads, by the `vk-node-name` label (server-side filter when StackPath
/// accepts it, else filtered here). Page by page, keeping only what adoption and the orphan
/// sweep need: at 10,000 workloads the full objects would be tens of megabytes at once.
pub async fn node_workloads(ctx: &Context) -> Result<Vec<NodeWorkload>, stackpath_client::Error> {
    let node = ctx.placement.node_name.as_str();
    let filter = format!("metadata.labels.{LABEL_NODE_NAME} = \"{node}\"");
    let mut out = Vec::new();
    let keep = |out: &mut Vec<NodeWorkload>, w: Workload| {
        if label(&w, LABEL_NODE_NAME) == Some(node)
            && let Some(nw) = NodeWorkload::from_workload(w)
        {
            out.push(nw);
        }
    };
    match ctx
        .stackpath
        .for_each_workload(Some(&filter), |w| keep(&mut out, w))
        .await
    {
        Ok(()) => {}
        Err(stackpath_client::Error::Invalid { .. }) => {
            out.clear();
            ctx.stackpath
                .for_each_workload(None, |w| keep(&mut out, w))
                .await?
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

pub fn label<'a>(w: &'a Workload, key: &str) -> Option<&'a str> {
    w.metadata
        .as_ref()
        .and_then(|m| m.labels.get(key))
        .map(String::as_str)
}

/// Records every existing workload of this node in the tracker; returns how many.
pub async fn adopt(ctx: &Context) -> Result<usize, stackpath_client::Error> {
    let workloads = node_workloads(ctx).await?;
    let n = workloads.len();
    for w in workloads {
        let key = w.pod_key();
        tracing::info!(pod = key, workload = w.id, "adopting existing workload");
        ctx.tracker.adopt(&key, ctx.timing.fast, w.id, w.images);
    }
    Ok(n)
}
