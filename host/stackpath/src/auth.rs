//! OAuth2 client credentials: the token request and a cache that refreshes ahead of expiry,
//! one refresh at a time for all callers.
//!
//! Hand-written instead of the `oauth2` crate: the request is one form POST, and it must go
//! through the same rate limit, timeouts, retries, observer and error classification as
//! every other call, which the `oauth2` crate's own HTTP plumbing would bypass.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::secret::Secret;

/// Route of the token endpoint (not part of the workload spec; the gateway serves it).
pub(crate) const TOKEN_ROUTE: &str = "/identity/v1/oauth2/token";

/// Lifetime assumed when the token response does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The longest lifetime believed: StackPath's tokens last an hour, and a server that claims
/// centuries must neither overflow the clock arithmetic nor pin a token forever. Refreshing
/// early is harmless.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An access token and when to stop using it.
#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub(crate) value: Secret,
    /// Refresh from this instant on (before expiry, so no call goes out with a token that
    /// expires in flight).
    refresh_at: Instant,
    expires_at: Instant,
}

impl AccessToken {
    /// A token valid for `lifetime` (at most [`MAX_LIFETIME`]) from `now`, refreshed
    /// `min(60 s, 10 %)` before it expires.
    pub(crate) fn new(value: Secret, lifetime: Duration, now: Instant) -> Self {
        let lifetime = lifetime.min(MAX_LIFETIME);
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        Self {
            value,
            refresh_at: now + (lifetime - margin),
            expires_at: now + lifetime,
        }
    }

    fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    fn usable(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// The token endpoint's JSON answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: Secret,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub(crate) expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn into_token(self, now: Instant) -> AccessToken {
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        AccessToken::new(self.access_token, lifetime, now)
    }
}

/// `expires_in` is a number per RFC 6749, but some servers send a string; anything else
/// unreadable (negative, an object) reads as absent, so the token is still usable.
fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(u64),
        Float(f64),
        Str(String),
        #[allow(dead_code)] // Matched only to be ignored.
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::Int(n)) => Some(n),
        Some(N::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(N::Str(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// The form body of the token request: client credentials in the body, not basic auth, as
/// the Go provider sent them (`AuthStyleInParams`).
pub(crate) fn token_form(
    client_id: &str,
    secret: &Secret,
    scope: Option<&str>,
) -> Vec<(String, String)> {
    let mut form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        ("client_id".to_owned(), client_id.to_owned()),
        ("client_secret".to_owned(), secret.expose().to_owned()),
    ];
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        form.push(("scope".to_owned(), scope.to_owned()));
    }
    form
}

/// The cached token. Reads are a mutex-guarded clone; a refresh holds an async lock so only
/// one runs at a time, and callers that waited for it reuse its result.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<AccessToken>>,
    refresh: tokio::sync::Mutex<()>,
}

impl TokenCache {
    /// The token in use, if any (to mask it from errors).
    pub(crate) fn current(&self) -> Option<AccessToken> {
        self.cached()
    }

    fn cached(&self) -> Option<AccessToken> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh token, fetching one with `fetch` if needed.
    pub(crate) async fn get<F, Fut, E>(&self, fetch: F) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, E>>,
    {
        let now = Instant::now();
        let cached = self.cached();
        if let Some(t) = &cached
            && t.fresh(now)
        {
            return Ok(t.clone());
        }
        // Inside the refresh margin the old token still works: if someone else is already
        // refreshing, use it instead of queueing behind them.
        let _guard = match (&cached, self.refresh.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(t), Err(_)) if t.usable(now) => return Ok(t.clone()),
            (_, Err(_)) => self.refresh.lock().await,
        };
        // Whoever held the lock before may have refreshed already.
        if let Some(t) = self.cached()
            && t.fresh(Instant::now())
        {
            return Ok(t);
        }
        let token = fetch().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(token)
    }

    /// Drops `used` after the server rejected it (401), unless another caller has replaced it
    /// already, so a burst of 401s causes one refresh, not one each.
    pub(crate) fn invalidate(&self, used: &AccessToken) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|t| t.value == used.value) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn token(n: usize, lifetime: Duration) -> AccessToken {
        AccessToken::new(Secret::new(format!("t{n}")), lifetime, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn single_flight_refresh() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        let n = fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(token(n, Duration::from_secs(100)))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().value.expose(), "t0");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry() {
        let cache = TokenCache::default();
        let n = AtomicUsize::new(0);
        let fetch = || async {
            Ok::<_, ()>(token(
                n.fetch_add(1, Ordering::SeqCst),
                Duration::from_secs(100),
            ))
        };
        assert_eq!(cache.get(fetch).await.unwrap().value.expose(), "t0");
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(cache.get(fetch).await.unwrap().value.expose(), "t0");
        // 10 % margin: from 90 s on, a new token.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(fetch).await.unwrap().value.expose(), "t1");
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_only_the_rejected_token() {
        let cache = TokenCache::default();
        let n = AtomicUsize::new(0);
        let fetch = || async {
            Ok::<_, ()>(token(
                n.fetch_add(1, Ordering::SeqCst),
                Duration::from_secs(100),
            ))
        };
        let t0 = cache.get(fetch).await.unwrap();
        cache.invalidate(&t0);
        let t1 = cache.get(fetch).await.unwrap();
        assert_eq!(t1.value.expose(), "t1");
        cache.invalidate(&t0); // stale: must not drop t1
        assert_eq!(cache.get(fetch).await.unwrap().value.expose(), "t1");
    }

    #[test]
    fn token_response_forms() {
        let now = Instant::now();
        for body in [
            r#"{"access_token":"a","token_type":"bearer","expires_in":3600}"#,
            r#"{"access_token":"a","expires_in":"3600"}"#,
        ] {
            let r: TokenResponse = serde_json::from_str(body).unwrap();
            let t = r.into_token(now);
            assert_eq!(t.expires_at - now, Duration::from_secs(3600));
            assert_eq!(t.refresh_at - now, Duration::from_secs(3540));
        }
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(r.into_token(now).expires_at - now, DEFAULT_LIFETIME);
    }

    #[test]
    fn absurd_lifetimes_are_clamped() {
        let now = Instant::now();
        for body in [
            r#"{"access_token":"a","expires_in":18446744073709551615}"#,
            r#"{"access_token":"a","expires_in":1e300}"#,
            r#"{"access_token":"a","expires_in":"18446744073709551615"}"#,
        ] {
            let r: TokenResponse = serde_json::from_str(body).unwrap();
            let t = r.into_token(now);
            assert_eq!(t.expires_at - now, MAX_LIFETIME, "{body}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_expires_in_gives_a_sane_token(
            expires_in in proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(serde_json::Value::from),
                proptest::num::i64::ANY.prop_map(serde_json::Value::from),
                proptest::num::f64::ANY.prop_map(serde_json::Value::from),
                "\\PC{0,30}".prop_map(serde_json::Value::from),
                proptest::num::u64::ANY.prop_map(|n| serde_json::Value::from(n.to_string())),
                proptest::strategy::Just(serde_json::json!({"a": [1, 2]})),
            ],
        ) {
            let body = serde_json::json!({"access_token": "a", "expires_in": expires_in});
            let now = Instant::now();
            // A value it cannot read is refused or ignored, never a panic.
            if let Ok(r) = serde_json::from_value::<TokenResponse>(body) {
                let t = r.into_token(now);
                proptest::prop_assert!(t.expires_at > now);
                proptest::prop_assert!(t.expires_at - now <= MAX_LIFETIME);
                proptest::prop_assert!(t.refresh_at > now && t.refresh_at < t.expires_at);
            }
        }
    }

    #[test]
    fn form_has_credentials_and_scope() {
        let form = token_form("id", &Secret::new("s"), Some("workloads"));
        let keys: Vec<_> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            [
                "grant_type=client_credentials",
                "client_id=id",
                "client_secret=s",
                "scope=workloads"
            ]
        );
    }
}
