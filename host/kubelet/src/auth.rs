//! Authentication (client certificate or TokenReview) and authorization (SubjectAccessReview),
//! as the kubelet does them, with the kubelet's cache lifetimes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn from_cert(name: String, groups: Vec<String>) -> Self {
        let mut groups = groups;
        groups.push("system:authenticated".into());
        Self {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
    }
}

/// The attributes of one request, as the kubelet derives them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// Maps a request onto `nodes/<subresource>` and a verb (kubelet: server/auth.go).
pub fn attributes(method: &http::Method, path: &str) -> Attributes {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

/// Authentication or authorization outcome that ends the request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Unauthorized")]
    Unauthenticated,
    #[error(
        "Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource}){}",
        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    )]
    Forbidden {
        user: String,
        verb: String,
        subresource: String,
        reason: Option<String>,
    },
    #[error("authorization check failed: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => http::StatusCode::FORBIDDEN,
            Self::Unavailable(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 4096;

/// Token SHA-256 → (user, when reviewed).
type TokenCache = HashMap<[u8; 32], (Option<UserInfo>, Instant)>;
/// (user, attributes) → (decision, when reviewed).
type DecisionCache = HashMap<(UserInfo, Attributes), (Result<(), AuthError>, Instant)>;

/// Checks callers against the API server, with caches.
pub struct Auth {
    client: kube::Client,
    node_name: String,
    tokens: Mutex<TokenCache>,
    decisions: Mutex<DecisionCache>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(client: kube::Client, node_name: String) -> Self {
        Self {
            client,
            node_name,
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// A bearer token → its user, via TokenReview (cached by the token's SHA-256, never the
    /// token itself).
    pub async fn authenticate_token(&self, token: &str) -> Result<UserInfo, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(cache) = self.tokens.lock()
            && let Some((user, at)) = cache.get(&key)
            && at.elapsed() < TOKEN_TTL
        {
            return user.clone().ok_or(AuthError::Unauthenticated);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let out = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview failed: {e}")))?;
        let user = out
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .and_then(|u| {
                Some(UserInfo {
                    name: u.username?,
                    uid: u.uid.unwrap_or_default(),
                    groups: u.groups.unwrap_or_default(),
                    extra: u.extra.unwrap_or_default().into_iter().collect(),
                })
            });
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (user.clone(), Instant::now()));
        }
        user.ok_or(AuthError::Unauthenticated)
    }

    /// SubjectAccessReview for `nodes/<subresource>` of this node.
    pub async fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), AuthError> {
        let key = (user.clone(), attrs.clone());
        if let Ok(cache) = self.decisions.lock()
            && let Some((decision, at)) = cache.get(&key)
        {
            let ttl = if decision.is_ok() {
                ALLOWED_TTL
            } else {
                DENIED_TTL
            };
            if at.elapsed() < ttl {
                return decision.clone();
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(self.node_name.clone()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let out = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("SubjectAccessReview failed: {e}")))?;
        let status = out.status.unwrap_or_default();
        let decision = if status.allowed {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                user: user.name.clone(),
                verb: attrs.verb.into(),
                subresource: attrs.subresource.into(),
                reason: status.reason.filter(|r| !r.is_empty()),
            })
        };
        if let Ok(mut cache) = self.decisions.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (decision.clone(), Instant::now()));
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_subresources_and_methods_to_verbs() {
        let a = attributes(&http::Method::GET, "/stats/summary");
        assert_eq!((a.verb, a.subresource), ("get", "stats"));
        let a = attributes(&http::Method::GET, "/metrics/resource");
        assert_eq!(a.subresource, "metrics");
        let a = attributes(&http::Method::POST, "/exec/ns/p/c");
        assert_eq!((a.verb, a.subresource), ("create", "proxy"));
        let a = attributes(&http::Method::GET, "/containerLogs/ns/p/c");
        assert_eq!(a.subresource, "proxy");
        let a = attributes(&http::Method::GET, "/statsx");
        assert_eq!(a.subresource, "proxy");
    }

    #[test]
    fn forbidden_message_is_the_kubelets() {
        let e = AuthError::Forbidden {
            user: "system:serviceaccount:a:b".into(),
            verb: "get".into(),
            subresource: "proxy".into(),
            reason: None,
        };
        assert_eq!(
            e.to_string(),
            "Forbidden (user=system:serviceaccount:a:b, verb=get, resource=nodes, subresource=proxy)"
        );
    }
}
