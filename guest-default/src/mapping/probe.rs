//! Probes and lifecycle hooks: the handler shapes they share, named ports, defaults.

use crate::prelude::*;

use alloc::collections::BTreeMap;

use serde_json::Value;

use super::{Findings, Path};
use crate::input::{self, ContainerPort};
use crate::output::{Exec, Handler, HttpGet, Probe, TcpSocket};

/// Kubernetes' probe defaults, applied so that raw and defaulted pods give the same workload.
const TIMEOUT_SECONDS: i32 = 1;
const PERIOD_SECONDS: i32 = 10;
const SUCCESS_THRESHOLD: i32 = 1;
const FAILURE_THRESHOLD: i32 = 3;

pub(crate) fn map_probe<'a>(
    probe: Option<&input::Probe<'a>>,
    path: Path<'_>,
    ports: &[ContainerPort<'a>],
    f: &mut Findings,
) -> Option<Probe<'a>> {
    let p = probe?;
    if p.grpc.is_some() {
        f.warn(
            format!("{path}.grpc"),
            "gRPC probes are not supported by StackPath; the probe is left out (use httpGet, \
             tcpSocket or exec)",
        );
        return None;
    }
    let handler = map_handler(p.handler(), path, ports, f)?;
    Some(Probe {
        handler,
        initial_delay_seconds: p.initial_delay_seconds.unwrap_or(0),
        timeout_seconds: p.timeout_seconds.unwrap_or(TIMEOUT_SECONDS),
        period_seconds: p.period_seconds.unwrap_or(PERIOD_SECONDS),
        success_threshold: p.success_threshold.unwrap_or(SUCCESS_THRESHOLD),
        failure_threshold: p.failure_threshold.unwrap_or(FAILURE_THRESHOLD),
    })
}

/// Maps one handler; `None` (with a finding) when it has no usable action.
pub(crate) fn map_handler<'a>(
    h: input::HandlerRef<'_, 'a>,
    path: Path<'_>,
    ports: &[ContainerPort<'a>],
    f: &mut Findings,
) -> Option<Handler<'a>> {
    let set = [
        h.http_get.is_some(),
        h.tcp_socket.is_some(),
        h.exec.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set == 0 {
        if h.sleep {
            f.warn(
                format!("{path}.sleep"),
                "sleep actions are not supported by StackPath; left out",
            );
        } else {
            f.violate(
                path,
                "no action: set exactly one of httpGet, tcpSocket or exec",
            );
        }
        return None;
    }
    if set > 1 {
        f.violate(
            path,
            "more than one action: set exactly one of httpGet, tcpSocket or exec",
        );
        return None;
    }
    let mut out = Handler::default();
    if let Some(g) = h.http_get {
        if g.host.as_deref().is_some_and(|h| !h.is_empty()) {
            f.warn(
                format!("{path}.httpGet.host"),
                "StackPath probes always target the instance itself; host is left out",
            );
        }
        let port = resolve_port(&g.port, path, ".httpGet.port", ports, f)?;
        out.http_get = Some(HttpGet {
            path: g
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
            port,
            scheme: g
                .scheme
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "HTTP".into()),
            http_headers: g
                .http_headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
    }
    if let Some(t) = h.tcp_socket {
        let port = resolve_port(&t.port, path, ".tcpSocket.port", ports, f)?;
        out.tcp_socket = Some(TcpSocket { port });
    }
    if let Some(e) = h.exec {
        if e.command.is_empty() {
            f.violate(format!("{path}.exec.command"), "exec needs a command");
            return None;
        }
        out.exec = Some(Exec {
            command: e.command.clone(),
        });
    }
    Some(out)
}

/// A port is a number, or the name of one of the container's ports.
fn resolve_port(
    port: &Value,
    base: Path<'_>,
    field: &str,
    ports: &[ContainerPort],
    f: &mut Findings,
) -> Option<i64> {
    let path = || format!("{base}{field}");
    match port {
        Value::Number(n) => match n.as_i64() {
            Some(p) if (1..=65535).contains(&p) => Some(p),
            _ => {
                f.violate(path(), format!("port {n} is not between 1 and 65535"));
                None
            }
        },
        Value::String(name) => {
            let found = ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.container_port);
            if found.is_none() {
                let known: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                f.violate(
                    path(),
                    format!(
                        "named port `{name}` is not one of the container's ports ({}); name it \
                         in ports[] or use the number",
                        if known.is_empty() {
                            "it has no named ports".to_string()
                        } else {
                            format!("known: {}", known.join(", "))
                        }
                    ),
                );
            }
            found
        }
        Value::Null => {
            f.violate(path(), "port is required");
            None
        }
        other => {
            f.violate(
                path(),
                format!("port must be a number or a port name, got {other}"),
            );
            None
        }
    }
}
