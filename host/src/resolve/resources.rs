//! `resourceFieldRef`: a container's requests and limits, as the kubelet gives them
//! (`k8s.io/kubernetes/pkg/api/v1/resource.ExtractContainerResourceValue`): the value divided
//! by the divisor (default 1) and rounded up, cpu in millicores
//! (`⌈MilliValue(q) / MilliValue(divisor)⌉`), memory and ephemeral storage in bytes
//! (`⌈Value(q) / Value(divisor)⌉`).
//!
//! A request the pod leaves unset is its limit (the API server's defaulting), else 0. A limit
//! it leaves unset is, on a kubelet, the node's allocatable; here the container's allocatable
//! is the StackPath size the policy chooses, known only from the policy's output: such a value
//! is a [`SizeRef`] the host fills in after the policy ran. StackPath does not state an
//! instance's disk, so an unset `limits.ephemeral-storage` is refused.

use guest_default::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// cpu or memory: the figures a StackPath size has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeResource {
    Cpu,
    Memory,
}

/// A limit that is the figure of the StackPath size of `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeRef {
    pub container: String,
    pub resource: SizeResource,
    pub divisor: Quantity,
}

impl SizeRef {
    /// The value, given the size's figure for the resource (`"2"`, `"4Gi"`).
    pub fn value(&self, figure: &str) -> Result<String, String> {
        let q = Quantity::parse(figure).map_err(|e| e.0)?;
        divide(&q, &self.divisor, self.resource == SizeResource::Cpu)
    }
}

/// What a `resourceFieldRef` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceValue {
    Plain(String),
    Size(SizeRef),
}

const CPU_DIVISORS: &[&str] = &["1m", "1"];
const BYTE_DIVISORS: &[&str] = &[
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

/// Resolves `selector` against `container` (the one it names).
pub fn resource(
    container: &Container,
    selector: &ResourceFieldSelector,
) -> Result<ResourceValue, String> {
    let resource = selector.resource.as_str();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| unsupported(resource))?;
    let (cpu, allowed) = match name {
        "cpu" => (true, CPU_DIVISORS),
        "memory" | "ephemeral-storage" => (false, BYTE_DIVISORS),
        n if n.starts_with("hugepages-") => {
            return Err(format!(
                "resource `{resource}`: StackPath has no huge pages; leave it out"
            ));
        }
        _ => return Err(unsupported(resource)),
    };
    if kind != "limits" && kind != "requests" {
        return Err(unsupported(resource));
    }
    let divisor = divisor(selector.divisor.as_ref(), resource, allowed)?;
    let r = container.resources.as_ref();
    let limit = r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(name));
    let request = r
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(name));
    let value = match kind {
        // The API server defaults a missing request to the limit.
        "requests" => request.or(limit),
        _ => limit,
    };
    let q = match value {
        Some(v) => parse(v, &format!("resources.{kind}.{name}"))?,
        None if kind == "requests" => Quantity::units(0),
        None => {
            return match name {
                "cpu" | "memory" => Ok(ResourceValue::Size(SizeRef {
                    container: container.name.clone(),
                    resource: if cpu {
                        SizeResource::Cpu
                    } else {
                        SizeResource::Memory
                    },
                    divisor,
                })),
                _ => Err(format!(
                    "resource `{resource}`: container `{}` sets no such limit, and StackPath \
                     does not state an instance's disk (a kubelet would give the node's); set \
                     resources.limits.{name}",
                    container.name
                )),
            };
        }
    };
    divide(&q, &divisor, cpu).map(ResourceValue::Plain)
}

fn unsupported(resource: &str) -> String {
    format!(
        "resource `{resource}` is not supported (supported: limits.cpu, limits.memory, \
         limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage)"
    )
}

fn parse(q: &K8sQuantity, field: &str) -> Result<Quantity, String> {
    Quantity::parse(&q.0).map_err(|e| format!("{field}: {e}"))
}

/// The divisor, 1 when unset or zero (the API server stores `"0"` for unset), else one of
/// those Kubernetes' validation allows for the resource.
fn divisor(d: Option<&K8sQuantity>, resource: &str, allowed: &[&str]) -> Result<Quantity, String> {
    let Some(d) = d else {
        return Ok(Quantity::units(1));
    };
    let q = parse(d, "divisor")?;
    if q.is_zero() {
        return Ok(Quantity::units(1));
    }
    let ok = allowed
        .iter()
        .any(|a| Quantity::parse(a).is_ok_and(|a| a.cmp_exact(&q).is_eq()));
    if ok {
        Ok(q)
    } else {
        Err(format!(
            "divisor `{}` is not allowed for `{resource}` (allowed: {})",
            d.0,
            allowed.join(", ")
        ))
    }
}

/// `⌈q / divisor⌉` in the resource's unit, as the kubelet computes it.
fn divide(q: &Quantity, divisor: &Quantity, cpu: bool) -> Result<String, String> {
    let exp = if cpu { 3 } else { 0 };
    let too_large = || "the value is too large".to_string();
    let n = q.ceil_scaled(exp).ok_or_else(too_large)?;
    let d = divisor.ceil_scaled(exp).ok_or_else(too_large)?.max(1);
    Ok(n.div_ceil(d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "app", "resources": resources})).unwrap()
    }

    fn get(c: &Container, resource: &str, divisor: Option<&str>) -> Result<ResourceValue, String> {
        super::resource(
            c,
            &ResourceFieldSelector {
                container_name: None,
                resource: resource.into(),
                divisor: divisor.map(|d| K8sQuantity(d.into())),
            },
        )
    }

    fn plain(s: &str) -> Result<ResourceValue, String> {
        Ok(ResourceValue::Plain(s.into()))
    }

    #[test]
    fn cpu_rounds_up_to_the_divisor_unit() {
        let c =
            container(serde_json::json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "250m"}}));
        assert_eq!(get(&c, "limits.cpu", None), plain("1"));
        assert_eq!(get(&c, "limits.cpu", Some("1m")), plain("500"));
        assert_eq!(get(&c, "requests.cpu", Some("1m")), plain("250"));
        assert_eq!(get(&c, "requests.cpu", Some("0")), plain("1"));
        let c = container(serde_json::json!({"limits": {"cpu": "1.0001"}}));
        assert_eq!(get(&c, "limits.cpu", None), plain("2"));
    }

    #[test]
    fn memory_divides_by_binary_and_decimal_units() {
        let c = container(
            serde_json::json!({"limits": {"memory": "1.5Gi"}, "requests": {"memory": "100M"}}),
        );
        assert_eq!(get(&c, "limits.memory", None), plain("1610612736"));
        assert_eq!(get(&c, "limits.memory", Some("1Mi")), plain("1536"));
        assert_eq!(get(&c, "limits.memory", Some("1Gi")), plain("2"));
        assert_eq!(get(&c, "requests.memory", Some("1Mi")), plain("96"));
        assert_eq!(get(&c, "requests.memory", Some("1k")), plain("100000"));
    }

    #[test]
    fn a_missing_request_is_the_limit_else_zero() {
        let c = container(serde_json::json!({"limits": {"memory": "64Mi"}}));
        assert_eq!(get(&c, "requests.memory", Some("1Mi")), plain("64"));
        assert_eq!(get(&c, "requests.cpu", None), plain("0"));
    }

    #[test]
    fn a_missing_limit_is_the_stackpath_size_or_refused_for_disk() {
        let c = container(serde_json::json!({}));
        let Ok(ResourceValue::Size(s)) = get(&c, "limits.memory", Some("1Mi")) else {
            panic!("expected a size reference");
        };
        assert_eq!(s.resource, SizeResource::Memory);
        assert_eq!(s.value("4Gi"), Ok("4096".into()));
        let Ok(ResourceValue::Size(s)) = get(&c, "limits.cpu", Some("1m")) else {
            panic!("expected a size reference");
        };
        assert_eq!(s.value("2"), Ok("2000".into()));
        let err = get(&c, "limits.ephemeral-storage", None).unwrap_err();
        assert!(err.contains("limits.ephemeral-storage"), "{err}");
        let c = container(serde_json::json!({"limits": {"ephemeral-storage": "1Gi"}}));
        assert_eq!(
            get(&c, "limits.ephemeral-storage", Some("1Mi")),
            plain("1024")
        );
    }

    #[test]
    fn divisors_and_resources_kubernetes_refuses_are_refused() {
        let c = container(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        assert!(
            get(&c, "limits.cpu", Some("1Mi"))
                .unwrap_err()
                .contains("not allowed")
        );
        assert!(
            get(&c, "limits.memory", Some("1m"))
                .unwrap_err()
                .contains("not allowed")
        );
        assert_eq!(get(&c, "limits.cpu", Some("1000m")), plain("1"));
        assert!(
            get(&c, "limits.gpu", None)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            get(&c, "requests.hugepages-2Mi", None)
                .unwrap_err()
                .contains("huge pages")
        );
    }
}
