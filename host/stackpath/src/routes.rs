//! The calls this client makes, as (method, the spec's route template) pairs. Errors, logs
//! and the [`CallObserver`](crate::CallObserver) name calls by these.

use crate::error::Operation;

const fn op(method: &'static str, route: &'static str) -> Operation {
    Operation { method, route }
}

pub const TOKEN: Operation = op("POST", crate::auth::TOKEN_ROUTE);
pub const LIST_WORKLOADS: Operation = op("GET", "/workload/v1/stacks/{stack_id}/workloads");
pub const CREATE_WORKLOAD: Operation = op("POST", "/workload/v1/stacks/{stack_id}/workloads");
pub const GET_WORKLOAD: Operation = op(
    "GET",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}",
);
pub const PUT_WORKLOAD: Operation = op(
    "PUT",
    "/workload/v1/stacks/{workload.stack_id}/workloads/{workload.id}",
);
pub const DELETE_WORKLOAD: Operation = op(
    "DELETE",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}",
);
pub const LIST_INSTANCES: Operation = op(
    "GET",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances",
);
pub const GET_INSTANCE: Operation = op(
    "GET",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}",
);
pub const RESTART_INSTANCE: Operation = op(
    "POST",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}/power/restart",
);
pub const INSTANCE_LOGS: Operation = op(
    "GET",
    "/workload/v1/stacks/{stack_id}/workloads/{workload_id}/instances/{instance_name}/logs",
);
pub const LIST_LOCATIONS: Operation = op("GET", "/workload/v1/locations");
pub const GET_METRICS: Operation = op("GET", "/workload/v1/stacks/{stack_id}/metrics");
