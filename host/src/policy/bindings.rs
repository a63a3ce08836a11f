//! Host-side bindings of the `stackpath:policy` world, one module per contract version this
//! daemon speaks: 0.2.0 (`wit/policy.wit`) and 0.1.0 (`wit/0.1.0/policy.wit`), so that a policy
//! built against the older contract keeps loading. Everything that depends on the version is
//! here: which version a component targets, its linker, its instantiation, and the conversion of
//! the context and of the result.

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, types::ComponentItem};
use wasmtime::{Engine, Store};

use super::config_volume::{ConfigVolumeKind, EnvOrigin};
use super::context::{CallContext, ResolvedEnv};
use super::error::PolicyError;
use super::sandbox::CallState;

/// `stackpath:policy@0.2.0`, the current contract.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
    });
}

/// `stackpath:policy@0.1.0`, the first contract: env values as `value`/`from-secret` only, no
/// config volumes.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "policy",
    });
}

pub use v0_2::exports::stackpath::policy::translator::{Context, Rejection, Translation};
pub use v0_2::stackpath;
pub use v0_2::stackpath::policy::log::Level;

/// The contract package.
pub const CONTRACT_PACKAGE: &str = "stackpath:policy";
/// The newest contract version this daemon speaks: the package version in `wit/policy.wit`.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A contract version this daemon speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    V0_1,
    V0_2,
}

impl Contract {
    /// Newest first.
    pub const SPOKEN: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => CONTRACT_VERSION,
        }
    }

    /// `stackpath:policy@<version>`.
    pub fn package(self) -> String {
        format!("{CONTRACT_PACKAGE}@{}", self.version())
    }

    fn translator_export(self) -> String {
        format!("{CONTRACT_PACKAGE}/translator@{}", self.version())
    }

    /// The versions spoken, for messages: `stackpath:policy@0.2.0 and stackpath:policy@0.1.0`.
    pub fn spoken() -> String {
        Contract::SPOKEN.map(Contract::package).join(" and ")
    }
}

/// Which contract `component` implements. A component exporting no translator of a spoken
/// version is refused with a message naming what it targets.
pub(crate) fn contract_of(
    engine: &Engine,
    component: &Component,
    label: &str,
) -> Result<Contract, PolicyError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let incompatible = |version: &str| PolicyError::IncompatibleContract {
        policy: label.to_string(),
        found: format!("{CONTRACT_PACKAGE}@{version}"),
        speaks: Contract::spoken(),
    };
    if let Some(contract) = Contract::SPOKEN
        .into_iter()
        .find(|c| exports.contains(&c.translator_export()))
    {
        // Imports of our own package must be the same version (e.g. `log`).
        for (name, item) in ty.imports(engine) {
            if let Some(rest) = name.strip_prefix(&format!("{CONTRACT_PACKAGE}/"))
                && let Some((_, version)) = rest.split_once('@')
                && version != contract.version()
                && matches!(item.ty, ComponentItem::ComponentInstance(_))
            {
                return Err(incompatible(version));
            }
        }
        return Ok(contract);
    }
    let prefix = format!("{CONTRACT_PACKAGE}/translator@");
    if let Some(found) = exports.iter().find_map(|n| n.strip_prefix(&prefix)) {
        return Err(incompatible(found));
    }
    Err(PolicyError::Load {
        policy: label.to_string(),
        reason: format!(
            "it does not export `{}` (it exports: {}); a policy implements the `policy` world \
             of wit/policy.wit",
            Contract::V0_2.translator_export(),
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        ),
    })
}

/// The host functions a policy of `contract` imports (its `log`).
pub(crate) fn add_to_linker(
    linker: &mut Linker<CallState>,
    contract: Contract,
) -> wasmtime::Result<()> {
    match contract {
        Contract::V0_1 => {
            v0_1::Policy::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        }
        Contract::V0_2 => {
            v0_2::Policy::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        }
    }
}

/// A policy pre-instantiated, of either contract.
pub(crate) enum PolicyPre {
    V0_1(v0_1::PolicyPre<CallState>),
    V0_2(v0_2::PolicyPre<CallState>),
}

impl PolicyPre {
    pub fn new(contract: Contract, pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_1 => PolicyPre::V0_1(v0_1::PolicyPre::new(pre)?),
            Contract::V0_2 => PolicyPre::V0_2(v0_2::PolicyPre::new(pre)?),
        })
    }

    pub fn contract(&self) -> Contract {
        match self {
            PolicyPre::V0_1(_) => Contract::V0_1,
            PolicyPre::V0_2(_) => Contract::V0_2,
        }
    }

    pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Policy> {
        Ok(match self {
            PolicyPre::V0_1(pre) => Policy::V0_1(pre.instantiate(store)?),
            PolicyPre::V0_2(pre) => Policy::V0_2(pre.instantiate(store)?),
        })
    }
}

/// One instance of a policy.
pub(crate) enum Policy {
    V0_1(v0_1::Policy),
    V0_2(v0_2::Policy),
}

/// The context as a policy of one contract takes it.
pub(crate) enum WitContext {
    V0_1(v0_1::exports::stackpath::policy::translator::Context),
    V0_2(Context),
}

/// What a policy says about itself, whatever its contract.
pub(crate) type PolicyInfoRecord = stackpath::policy::types::PolicyInfo;

impl Policy {
    pub fn call_info(&self, store: &mut Store<CallState>) -> wasmtime::Result<PolicyInfoRecord> {
        match self {
            Policy::V0_1(p) => {
                p.stackpath_policy_translator()
                    .call_info(store)
                    .map(|i| PolicyInfoRecord {
                        name: i.name,
                        version: i.version,
                        description: i.description,
                    })
            }
            Policy::V0_2(p) => p.stackpath_policy_translator().call_info(store),
        }
    }

    /// `translate`, with the result in the current contract's records (0.1.0's are the same
    /// shape).
    pub fn call_translate(
        &self,
        store: &mut Store<CallState>,
        pod: &str,
        ctx: &WitContext,
    ) -> wasmtime::Result<Result<Translation, Rejection>> {
        match (self, ctx) {
            (Policy::V0_2(p), WitContext::V0_2(ctx)) => p
                .stackpath_policy_translator()
                .call_translate(store, pod, ctx),
            (Policy::V0_1(p), WitContext::V0_1(ctx)) => Ok(p
                .stackpath_policy_translator()
                .call_translate(store, pod, ctx)?
                .map(|t| Translation {
                    spec: t.spec,
                    annotations: t.annotations,
                    warnings: t
                        .warnings
                        .into_iter()
                        .map(|w| stackpath::policy::types::Warning {
                            path: w.path,
                            message: w.message,
                        })
                        .collect(),
                })
                .map_err(|r| Rejection {
                    violations: r
                        .violations
                        .into_iter()
                        .map(|v| stackpath::policy::types::Violation {
                            path: v.path,
                            message: v.message,
                        })
                        .collect(),
                })),
            _ => Err(wasmtime::Error::msg(
                "internal error: a context of another contract version than the policy's",
            )),
        }
    }
}

/// The context for a policy of `contract`. A 0.1.0 policy cannot be told about a value
/// StackPath resolves on the instance nor about `envFrom`: a pod that needs either fails with
/// a message saying how to move the policy to 0.2.0, rather than run without them.
pub(crate) fn wit_context(
    contract: Contract,
    ctx: &CallContext,
    label: &str,
) -> Result<WitContext, PolicyError> {
    Ok(match contract {
        Contract::V0_2 => WitContext::V0_2(context_v0_2(ctx)),
        Contract::V0_1 => WitContext::V0_1(context_v0_1(ctx, label)?),
    })
}

fn context_v0_2(ctx: &CallContext) -> Context {
    use stackpath::policy::types as t;
    Context {
        node_name: ctx.node_name.clone(),
        city_code: ctx.city_code.clone(),
        stack_id: ctx.stack_id.clone(),
        env: ctx
            .env
            .iter()
            .map(|e| t::ResolvedEnv {
                container: e.container.clone(),
                name: e.name.clone(),
                value: env_value(e),
                origin: match e.origin {
                    EnvOrigin::EnvFrom(i) => t::EnvOrigin::EnvFrom(i),
                    EnvOrigin::Env(i) => t::EnvOrigin::Env(i),
                },
            })
            .collect(),
        config_volumes: ctx
            .config_volumes
            .iter()
            .map(|v| t::ConfigVolume {
                name: v.name.clone(),
                kind: match v.kind {
                    ConfigVolumeKind::ConfigMap => t::ConfigVolumeKind::ConfigMap,
                    ConfigVolumeKind::Secret => t::ConfigVolumeKind::Secret,
                    ConfigVolumeKind::DownwardApi => t::ConfigVolumeKind::DownwardApi,
                    ConfigVolumeKind::Projected => t::ConfigVolumeKind::Projected,
                    ConfigVolumeKind::EmptyDir => t::ConfigVolumeKind::EmptyDir,
                },
                files: v
                    .files
                    .iter()
                    .map(|f| t::ConfigFile {
                        path: f.path.clone(),
                        mode: f.mode,
                    })
                    .collect(),
                bytes: v.bytes,
            })
            .collect(),
    }
}

/// What the policy is told about one value. Belt and braces: a Secret's value is never handed
/// over, whatever `value` holds.
fn env_value(e: &ResolvedEnv) -> stackpath::policy::types::EnvValue {
    use stackpath::policy::types::EnvValue;
    if e.from_secret {
        EnvValue::Secret
    } else if let Some(path) = &e.instance_field {
        EnvValue::InstanceField(path.clone())
    } else if e.size_limit {
        EnvValue::SizeLimit
    } else {
        EnvValue::Plain(e.value.clone().unwrap_or_default())
    }
}

fn context_v0_1(
    ctx: &CallContext,
    label: &str,
) -> Result<v0_1::exports::stackpath::policy::translator::Context, PolicyError> {
    let too_old = |needs: String| PolicyError::ContractTooOld {
        policy: label.to_string(),
        contract: Contract::V0_1.package(),
        needs,
        current: Contract::V0_2.package(),
    };
    let mut env = Vec::with_capacity(ctx.env.len());
    for e in &ctx.env {
        if let EnvOrigin::EnvFrom(i) = e.origin {
            return Err(too_old(format!(
                "variables from `envFrom` (container `{}`, envFrom[{i}], variable `{}`)",
                e.container, e.name
            )));
        }
        if let Some(path) = &e.instance_field {
            return Err(too_old(format!(
                "a value StackPath resolves on the instance (container `{}`, env `{}`: \
                 instance field `{path}`)",
                e.container, e.name
            )));
        }
        env.push(v0_1::stackpath::policy::types::ResolvedEnv {
            container: e.container.clone(),
            name: e.name.clone(),
            // A size-dependent figure goes as a plain value the host overwrites.
            value: if e.from_secret {
                None
            } else {
                Some(e.value.clone().unwrap_or_default())
            },
            from_secret: e.from_secret,
        });
    }
    Ok(v0_1::exports::stackpath::policy::translator::Context {
        node_name: ctx.node_name.clone(),
        city_code: ctx.city_code.clone(),
        stack_id: ctx.stack_id.clone(),
        env,
    })
}

// 0.1.0's `types` interface has only records: nothing to implement.
impl v0_1::stackpath::policy::types::Host for CallState {}

/// 0.1.0's `log` is 0.2.0's: the same levels and limits.
impl v0_1::stackpath::policy::log::Host for CallState {
    fn log(&mut self, level: v0_1::stackpath::policy::log::Level, message: String) {
        use v0_1::stackpath::policy::log::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        stackpath::policy::log::Host::log(self, level, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materialize::ConfigVolumes;
    use crate::resolve::{Objects, ResolveSettings, resolve};
    use crate::translation::{Placement, call_context};

    const SECRET: &str = "correct-horse-battery";

    /// A pod that takes a Secret every way a pod can: `secretKeyRef`, `envFrom`, a secret
    /// volume, a projected secret source.
    fn secret_everywhere() -> CallContext {
        let pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "a:1",
                "env": [{"name": "ONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "s"}, "prefix": "ALL_"}]}],
                "volumes": [
                    {"name": "v", "secret": {"secretName": "s"}},
                    {"name": "w", "projected": {"sources": [{"secret": {"name": "s"}}]}}
                ]}
        }))
        .unwrap();
        let mut objects = Objects::default();
        objects.secrets.insert(
            "s".into(),
            serde_json::from_value(serde_json::json!({"metadata": {"name": "s"},
                "stringData": {"k": SECRET}}))
            .unwrap(),
        );
        let settings = ResolveSettings {
            host_ip: "192.0.2.1".into(),
            config_volumes: true,
        };
        let mut resolved = resolve(&pod, &objects, &settings).unwrap();
        let placement = Placement {
            node_name: "n".into(),
            city_code: "DFW".into(),
            stack_id: "s".into(),
            host_ip: settings.host_ip,
            config_volumes: ConfigVolumes::default(),
        };
        let ctx = call_context(&placement, &mut resolved);
        assert_eq!(ctx.env.len(), 2);
        assert_eq!(ctx.config_volumes.len(), 2);
        ctx
    }

    #[test]
    fn secret_content_never_reaches_a_policy() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let ctx = secret_everywhere();
        let shown = format!("{ctx:?}");
        let WitContext::V0_2(wit) = wit_context(Contract::V0_2, &ctx, "p").unwrap() else {
            panic!("a 0.2.0 context")
        };
        let shown = format!("{shown}{wit:?}");
        assert!(
            shown.contains("ALL_k") && shown.contains("Secret"),
            "{shown}"
        );
        assert!(
            !shown.contains(SECRET) && !shown.contains(&encoded),
            "{shown}"
        );
        // Only the `env` entry: 0.1.0 cannot carry `envFrom`.
        let mut old = ctx.clone();
        old.env.retain(|e| e.origin == EnvOrigin::Env(0));
        let WitContext::V0_1(wit) = wit_context(Contract::V0_1, &old, "p").unwrap() else {
            panic!("a 0.1.0 context")
        };
        let shown = format!("{wit:?}");
        assert!(
            shown.contains("from-secret: true") && !shown.contains(SECRET),
            "{shown}"
        );
    }

    #[test]
    fn a_pod_needing_more_than_0_1_0_fails_with_what_to_do() {
        let ctx = secret_everywhere();
        let Err(err) = wit_context(Contract::V0_1, &ctx, "old.wasm") else {
            panic!("0.1.0 cannot carry envFrom")
        };
        let msg = err.to_string();
        assert!(matches!(err, PolicyError::ContractTooOld { .. }), "{msg}");
        assert!(
            msg.contains("policy old.wasm implements stackpath:policy@0.1.0")
                && msg.contains("envFrom[0]")
                && msg.contains("rebuild the policy against wit/policy.wit")
                && msg.contains("stackpath:policy@0.2.0"),
            "{msg}"
        );
        let mut ip = CallContext::default();
        ip.env.push(ResolvedEnv {
            container: "app".into(),
            name: "IP".into(),
            instance_field: Some(".ipAddress".into()),
            ..ResolvedEnv::default()
        });
        let msg = wit_context(Contract::V0_1, &ip, "old.wasm")
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("instance field `.ipAddress`"), "{msg}");
    }
}
