//! Workloads that exist when the daemon starts: created by an earlier run (perhaps killed
//! mid-creation) or by the Go provider, which labelled its workloads the same way. Each is
//! matched to its pod by the `vk-*` labels before any pod is reconciled, so no pod ever gets
//! a second workload.

use stackpath_client::model::Workload;

use super::controller::Context;
use super::tracker;
use crate::workload::{LABEL_NODE_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// This node's workloads, by the `vk-node-name` label (server-side filter when StackPath
/// accepts it, else filtered here).
pub async fn node_workloads(ctx: &Context) -> Result<Vec<Workload>, stackpath_client::Error> {
    let node = &ctx.placement.node_name;
    let filter = format!("metadata.labels.{LABEL_NODE_NAME} = \"{node}\"");
    let all = match ctx.stackpath.list_all_workloads(Some(&filter)).await {
        Ok(list) => list,
        Err(stackpath_client::Error::Invalid { .. }) => {
            ctx.stackpath.list_all_workloads(None).await?
        }
        Err(e) => return Err(e),
    };
    Ok(all
        .into_iter()
        .filter(|w| label(w, LABEL_NODE_NAME) == Some(node.as_str()))
        .collect())
}

pub fn label<'a>(w: &'a Workload, key: &str) -> Option<&'a str> {
    w.metadata
        .as_ref()
        .and_then(|m| m.labels.get(key))
        .map(String::as_str)
}

/// `namespace/name` of the pod a workload runs, from its labels.
pub fn pod_key(w: &Workload) -> Option<String> {
    Some(tracker::key(
        label(w, LABEL_POD_NAMESPACE)?,
        label(w, LABEL_POD_NAME)?,
    ))
}

/// Records every existing workload of this node in the tracker; returns how many.
pub async fn adopt(ctx: &Context) -> Result<usize, stackpath_client::Error> {
    let workloads = node_workloads(ctx).await?;
    let mut n = 0;
    for w in workloads {
        let (Some(key), Some(id)) = (pod_key(&w), w.id.clone()) else {
            continue;
        };
        let images = w
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter())
                    .map(|(name, c)| (name.clone(), c.image.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        tracing::info!(pod = key, workload = id, "adopting existing workload");
        ctx.tracker.adopt(&key, ctx.timing.fast, id, images);
        n += 1;
    }
    Ok(n)
}
