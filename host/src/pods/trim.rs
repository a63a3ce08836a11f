//! What the daemon drops from pods before keeping or translating them.

use k8s_openapi::api::core::v1::Pod;

/// What no part of the daemon reads, nor should a policy see: managedFields and kubectl's
/// last-applied copy of the manifest (often the largest parts of a pod).
pub fn for_policy(p: &mut Pod) {
    p.metadata.managed_fields = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The cache holds every pod of the node for as long as it runs (~12 KB each as k8s-openapi
/// types, mostly volumes), but after translation the daemon reads only identity, container
/// names and images, scalar spec fields and status. So the cached copy drops what only
/// translation needs (volumes, env, mounts, commands, probes, hooks, pull secrets, affinity):
/// translation reads the pod fresh from the API server (`reconcile::prepare`), and nothing
/// else may read these fields from the cache.
pub fn for_cache(p: &mut Pod) {
    for_policy(p);
    let Some(spec) = p.spec.as_mut() else {
        return;
    };
    spec.volumes = None;
    spec.image_pull_secrets = None;
    spec.affinity = None;
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        c.env = None;
        c.env_from = None;
        c.volume_mounts = None;
        c.volume_devices = None;
        c.command = None;
        c.args = None;
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
        c.lifecycle = None;
        c.security_context = None;
        c.resources = None;
        c.resize_policy = None;
    }
}
