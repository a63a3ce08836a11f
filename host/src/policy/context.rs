//! What the host hands a policy besides the pod: used by the engine (to call the policy) and
//! by the output validation (to check Secret-sourced variables against it).

use super::bindings;

/// Inputs the host gives a policy besides the pod.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub node_name: String,
    pub city_code: String,
    pub stack_id: String,
    pub env: Vec<ResolvedEnv>,
}

/// An env value resolved by the host. Secret values never reach the policy: only the fact
/// that the value is a Secret's.
#[derive(Debug, Clone)]
pub struct ResolvedEnv {
    pub container: String,
    pub name: String,
    /// `None` when `from_secret`.
    pub value: Option<String>,
    pub from_secret: bool,
}

impl CallContext {
    /// The context as the WIT bindings carry it.
    pub(super) fn to_wit(&self) -> bindings::Context {
        bindings::Context {
            node_name: self.node_name.clone(),
            city_code: self.city_code.clone(),
            stack_id: self.stack_id.clone(),
            env: self
                .env
                .iter()
                .map(|e| bindings::ResolvedEnv {
                    container: e.container.clone(),
                    name: e.name.clone(),
                    // Belt and braces: never hand a Secret's value to a policy.
                    value: if e.from_secret { None } else { e.value.clone() },
                    from_secret: e.from_secret,
                })
                .collect(),
        }
    }
}
