//! OAuth2 client-credentials token endpoint and bearer-token checking, like StackPath's
//! gateway: form body (JSON accepted too), `{access_token, token_type, expires_in}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::api_error::ApiError;
use crate::state::AppState;

pub(crate) const TOKEN_PATH: &str = "/identity/v1/oauth2/token";

pub(crate) struct Tokens {
    lifetime: Duration,
    live: Mutex<HashMap<String, Instant>>,
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn issue(&self) -> String {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let now = Instant::now();
        if let Ok(mut live) = self.live.lock() {
            if live.len() > 10_000 {
                live.retain(|_, exp| *exp > now);
            }
            live.insert(token.clone(), now + self.lifetime);
        }
        token
    }

    fn check(&self, token: &str) -> Result<(), &'static str> {
        let live = self.live.lock().map_err(|_| "token store unavailable")?;
        match live.get(token) {
            Some(exp) if *exp > Instant::now() => Ok(()),
            Some(_) => Err("the access token has expired; request a new one"),
            None => Err("the access token is not valid"),
        }
    }
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    // Both the OAuth2 error shape (for OAuth libraries) and StackPath's status shape.
    let code = if status == StatusCode::UNAUTHORIZED {
        16
    } else {
        3
    };
    (
        status,
        Json(json!({"error": error, "error_description": description,
                    "code": code, "message": description, "details": []})),
    )
        .into_response()
}

/// `POST /identity/v1/oauth2/token`.
pub(crate) async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed: Result<TokenRequest, String> = if is_json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded_like(&body)
    };
    let mut req = match parsed {
        Ok(r) => r,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("the token request body could not be read: {e}"),
            );
        }
    };
    // HTTP Basic client authentication is accepted as well (RFC 6749 2.3.1).
    if req.client_id.is_none()
        && let Some((id, secret)) = basic_auth(&headers)
    {
        req.client_id = Some(id);
        req.client_secret = Some(secret);
    }
    if req.grant_type.as_deref().unwrap_or("client_credentials") != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let ok = req.client_id.as_deref() == Some(app.config.client_id.as_str())
        && req.client_secret.as_deref() == Some(app.config.client_secret.as_str());
    if !ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client id or wrong client secret",
        );
    }
    let token = app.tokens.issue();
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": app
            .faults
            .token_expires_in()
            .unwrap_or(app.config.token_lifetime.as_secs()),
    }))
    .into_response()
}

fn serde_urlencoded_like(body: &[u8]) -> Result<TokenRequest, String> {
    let mut r = TokenRequest::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "grant_type" => r.grant_type = Some(v.into_owned()),
            "client_id" => r.client_id = Some(v.into_owned()),
            "client_secret" => r.client_secret = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(r)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("x={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// Middleware: every API call needs a live bearer token.
pub(crate) async fn require_bearer(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
    });
    match token {
        None => ApiError::unauthenticated(
            "an Authorization: Bearer <token> header is required; get a token from /identity/v1/oauth2/token",
        )
        .into_response(),
        Some(t) => match app.tokens.check(t) {
            Ok(()) => next.run(req).await,
            Err(why) => ApiError::unauthenticated(why).into_response(),
        },
    }
}
