//! How a call reaches StackPath: the HTTP client, OAuth2 tokens, the rate limit, one attempt
//! under a deadline with a bounded body, retries, status classification and the redaction of
//! the call's secrets from its errors. [`crate::Client`] describes calls; this sends them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use crate::auth::{AccessToken, TokenCache, TokenResponse, token_form};
use crate::config::Config;
use crate::error::{Error, Operation, Result};
use crate::observer::CallObserver;
use crate::ratelimit::TokenBucket;
use crate::redact::Redactor;
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::routes;
use crate::secret::{Secret, serialize_collecting};

/// The most bytes of an error body that are read: enough for any real `{code, message,
/// details}`; the rest of a longer one is dropped (the status is what classifies it).
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A request body, kept serialized so that a retry re-sends the same bytes.
pub(crate) enum Body {
    Empty,
    /// JSON, with the `Secret` values serialized into it (to redact from errors).
    Json {
        bytes: Bytes,
        secrets: Vec<Secret>,
    },
    Form(Vec<(String, String)>),
}

impl Body {
    /// `value` as JSON, remembering the secrets it carries.
    pub(crate) fn json<T: serde::Serialize>(op: Operation, value: &T) -> Result<Self> {
        let (bytes, secrets) = serialize_collecting(|| serde_json::to_vec(value));
        let bytes = bytes.map_err(|source| Error::Encode { op, source })?;
        Ok(Body::Json {
            bytes: Bytes::from(bytes),
            secrets,
        })
    }

    fn secrets(&self) -> &[Secret] {
        match self {
            Body::Json { secrets, .. } => secrets,
            Body::Empty | Body::Form(_) => &[],
        }
    }
}

/// One API call, as the retry loop sees it.
pub(crate) struct Call {
    pub(crate) op: Operation,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Body,
    /// Needs a bearer token (all calls but the token request).
    pub(crate) auth: bool,
    /// May be sent again after the server may have acted on it.
    pub(crate) idempotent: bool,
    /// A 404 on a retry means an earlier attempt already did the job (DELETE).
    pub(crate) gone_is_done: bool,
}

impl Call {
    /// An authenticated GET (idempotent).
    pub(crate) fn get(op: Operation, url: Url) -> Self {
        Self {
            op,
            method: Method::GET,
            url,
            body: Body::Empty,
            auth: true,
            idempotent: true,
            gone_is_done: false,
        }
    }
}

/// What a successful call returned.
pub(crate) enum Answer {
    Full(Bytes),
    Stream(reqwest::Response),
}

/// What one HTTP attempt produced.
enum Outcome {
    Done {
        status: u16,
        answer: Answer,
    },
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: Bytes,
        /// The body was longer than [`MAX_ERROR_BODY_BYTES`] and was cut there.
        cut: bool,
    },
    /// The 2xx body was larger than the limit (read up to it, or announced so).
    TooLarge {
        status: u16,
        limit: usize,
        announced: Option<u64>,
    },
    Failed {
        message: String,
        sent: bool,
        source: Option<reqwest::Error>,
    },
}

/// The sending half of the client: shared by all its clones.
pub(crate) struct Transport {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    tokens: TokenCache,
    limiter: Option<Arc<TokenBucket>>,
    pub(crate) retry: RetryPolicy,
    request_timeout: Duration,
    max_response_bytes: usize,
    max_metrics_response_bytes: usize,
    observer: Option<Arc<dyn CallObserver>>,
}

impl Transport {
    /// Builds the HTTP client. Reads the CA file, if any, now, so a bad file fails at start-up.
    pub(crate) fn new(config: &Config) -> Result<Self> {
        let https = config.base_url.scheme() == "https";
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent())
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .use_rustls_tls()
            .tls_built_in_native_certs(true)
            .https_only(https);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config_caused(
                    format!("cannot read the CA file {} (SP_CA_FILE)", path.display()),
                    e,
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config_caused(
                    format!(
                        "the CA file {} (SP_CA_FILE) is not PEM certificates",
                        path.display()
                    ),
                    e,
                )
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "the CA file {} (SP_CA_FILE) holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::config_caused("cannot build the HTTPS client", e))?;
        Ok(Self {
            http,
            token_url: join(&config.base_url, &["identity", "v1", "oauth2", "token"]),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: config.scope.clone(),
            tokens: TokenCache::default(),
            limiter: config
                .rate_limit
                .map(|limit| Arc::new(TokenBucket::new(limit))),
            retry: config.retry,
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
            max_metrics_response_bytes: config.max_metrics_response_bytes,
            observer: config.observer.clone(),
        })
    }

    /// Whether the client-side rate limit is exhausted.
    pub(crate) fn is_rate_limited(&self) -> bool {
        self.limiter.as_ref().is_some_and(|l| l.is_exhausted())
    }

    /// Sends `call` for `lane` (see [`TokenBucket`]) and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: &Call, lane: &str) -> Result<T> {
        let answer = self.execute(call, false, lane).await?;
        let Answer::Full(bytes) = answer else {
            return Err(Error::Decode {
                op: call.op,
                message: "expected a body, got a stream".into(),
            });
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            // serde quotes the offending text, which may echo what was sent: redacted as any
            // error text is.
            let token = self.tokens.current();
            let err = Error::Decode {
                op: call.op,
                message: format!("the response is not the expected JSON: {e}"),
            };
            self.redactor(call, token.as_ref()).apply(err)
        })
    }

    /// The largest 2xx body accepted for `op`: metrics answers for a whole stack are the
    /// largest the API gives.
    fn body_limit(&self, op: Operation) -> usize {
        if op == routes::GET_METRICS {
            self.max_metrics_response_bytes
        } else {
            self.max_response_bytes
        }
    }

    /// Everything `call` carried that must not be shown: the client secret, the bearer token
    /// it went with, the `Secret` values of its body.
    fn redactor(&self, call: &Call, token: Option<&AccessToken>) -> Redactor {
        Redactor::new(
            [self.client_secret.expose()]
                .into_iter()
                .chain(token.map(|t| t.value.expose()))
                .chain(call.body.secrets().iter().map(Secret::expose)),
        )
    }

    /// A valid access token, fetched (once for all callers) when missing or about to expire.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + '_>> {
        // Boxed: fetching a token is itself a call through `execute`, which calls `token`.
        Box::pin(async move { self.tokens.get(|| self.fetch_token()).await })
    }

    async fn fetch_token(&self) -> Result<AccessToken> {
        let op = routes::TOKEN;
        let call = Call {
            op,
            method: Method::POST,
            url: self.token_url.clone(),
            body: Body::Form(token_form(
                &self.client_id,
                &self.client_secret,
                self.scope.as_deref(),
            )),
            auth: false,
            // Asking for a token twice is harmless.
            idempotent: true,
            gone_is_done: false,
        };
        // The token serves every lane: it goes in a lane of its own.
        let resp: TokenResponse = match self.json(&call, "").await {
            Ok(r) => r,
            Err(
                Error::Unauthorized { message, .. }
                | Error::Forbidden { message, .. }
                | Error::Invalid { message, .. },
            ) => {
                return Err(Error::Unauthorized {
                    op,
                    message: format!(
                        "the token endpoint refused API client {:?}: {message}",
                        self.client_id
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        tracing::debug!("StackPath access token obtained");
        Ok(resp.into_token(Instant::now()))
    }

    /// Sends a call, retrying what is safe to retry, refreshing the token once on a 401.
    pub(crate) async fn execute(&self, call: &Call, streaming: bool, lane: &str) -> Result<Answer> {
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            if let Some(limiter) = &self.limiter {
                limiter.acquire(lane).await;
            }
            let token = if call.auth {
                Some(self.token().await?)
            } else {
                None
            };
            let span = tracing::debug_span!(
                "stackpath_call",
                method = call.op.method,
                route = call.op.route,
                attempt
            );
            let outcome = self
                .attempt(call, token.as_ref(), streaming)
                .instrument(span)
                .await;
            let (err, retryable, hint) = match outcome {
                Outcome::Done { answer, .. } => return Ok(answer),
                Outcome::Status { status: 401, .. } if call.auth && !reauthenticated => {
                    // The token was rejected (revoked, or expired early): get a new one once.
                    if let Some(t) = &token {
                        self.tokens.invalidate(t);
                    }
                    reauthenticated = true;
                    attempt -= 1;
                    continue;
                }
                Outcome::Status {
                    status,
                    retry_after,
                    body,
                    cut,
                } => {
                    let redactor = self.redactor(call, token.as_ref());
                    // Masked before anything quotes it: a quote is cut short, and a cut must
                    // not leave half a secret readable.
                    let mut text = String::from_utf8_lossy(&body).into_owned();
                    if cut {
                        redactor.mask_truncated(&mut text);
                    } else {
                        redactor.mask(&mut text);
                    }
                    let err = Error::from_response(call.op, status, text.as_bytes(), retry_after);
                    let err = redactor.apply(err);
                    if call.gone_is_done && attempt > 1 && err.is_not_found() {
                        return Ok(Answer::Full(Bytes::new()));
                    }
                    // A 429 means the server did not act: safe to resend even a POST.
                    let (retryable, hint) = match &err {
                        Error::RateLimited { .. } => (true, retry_after),
                        Error::Server { .. } => (call.idempotent, None),
                        _ => (false, None),
                    };
                    (err, retryable, hint)
                }
                Outcome::TooLarge {
                    limit, announced, ..
                } => {
                    // The same request would get the same answer.
                    let err = Error::TooLarge {
                        op: call.op,
                        limit,
                        announced,
                    };
                    (err, false, None)
                }
                Outcome::Failed {
                    message,
                    sent,
                    source,
                } => {
                    let err = Error::Transport {
                        op: call.op,
                        message,
                        request_sent: sent,
                        source,
                    };
                    let err = self.redactor(call, token.as_ref()).apply(err);
                    // Not sent: nothing happened server-side, any method may go again.
                    (err, !sent || call.idempotent, None)
                }
            };
            if !retryable || !self.retry.may_retry(attempt) {
                return Err(err);
            }
            let Some(delay) = self.retry.delay(attempt, hint) else {
                return Err(err);
            };
            tracing::debug!(
                route = call.op.route,
                error = %err,
                delay_ms = delay.as_millis() as u64,
                "retrying StackPath call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt under the request timeout, observed and logged (never with bodies).
    async fn attempt(&self, call: &Call, token: Option<&AccessToken>, streaming: bool) -> Outcome {
        let mut req = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(
                ACCEPT,
                if streaming {
                    "text/plain, application/json"
                } else {
                    "application/json"
                },
            );
        if let Some(token) = token {
            req = req.bearer_auth(token.value.expose());
        }
        req = match &call.body {
            Body::Empty => req,
            Body::Json { bytes, .. } => req
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Form(form) => req.form(form),
        };
        let timeout = self.request_timeout;
        let limit = self.body_limit(call.op);
        let start = Instant::now();
        // One deadline for the whole attempt: connecting, sending, the headers and (but for a
        // log stream, whose body has its own idle timeout) the whole body.
        let exchange = async {
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => return failed(e, timeout),
            };
            let status = resp.status().as_u16();
            if !resp.status().is_success() {
                return read_status(resp).await;
            }
            if streaming {
                return Outcome::Done {
                    status,
                    answer: Answer::Stream(resp),
                };
            }
            let announced = resp.content_length();
            if announced.is_some_and(|n| n > limit as u64) {
                return Outcome::TooLarge {
                    status,
                    limit,
                    announced,
                };
            }
            match read_capped(resp.bytes_stream(), announced, limit).await {
                Ok(Capped { bytes, cut: false }) => Outcome::Done {
                    status,
                    answer: Answer::Full(bytes),
                },
                Ok(Capped { cut: true, .. }) => Outcome::TooLarge {
                    status,
                    limit,
                    announced,
                },
                Err(e) => failed(e, timeout),
            }
        };
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed {
                message: format!("no complete response within {}s", timeout.as_secs_f64()),
                sent: true,
                source: None,
            },
        };
        let elapsed = start.elapsed();
        let status = match &outcome {
            Outcome::Done { status, .. }
            | Outcome::Status { status, .. }
            | Outcome::TooLarge { status, .. } => Some(*status),
            Outcome::Failed { .. } => None,
        };
        match &outcome {
            Outcome::Failed { message, sent, .. } => tracing::debug!(
                elapsed_ms = elapsed.as_millis() as u64,
                request_sent = sent,
                error = %message,
                "StackPath call failed"
            ),
            _ => tracing::debug!(
                status,
                elapsed_ms = elapsed.as_millis() as u64,
                "StackPath call"
            ),
        }
        if let Some(observer) = &self.observer {
            observer.observe(call.op.route, call.op.method, status, elapsed);
        }
        outcome
    }
}

/// Reads a non-2xx answer: its status, `Retry-After` and at most [`MAX_ERROR_BODY_BYTES`] of
/// its body.
async fn read_status(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
    let announced = resp.content_length();
    match read_capped(resp.bytes_stream(), announced, MAX_ERROR_BODY_BYTES).await {
        Ok(Capped { bytes, cut }) => Outcome::Status {
            status,
            retry_after,
            body: bytes,
            cut,
        },
        // The status is what matters; a body cut short only loses the message.
        Err(_) => Outcome::Status {
            status,
            retry_after,
            body: Bytes::new(),
            cut: false,
        },
    }
}

/// A body read up to a limit.
#[derive(Debug)]
pub(crate) struct Capped {
    /// At most the limit's worth of bytes.
    pub(crate) bytes: Bytes,
    /// The body went on past the limit (the rest was not read).
    pub(crate) cut: bool,
}

/// Reads `body` until it ends or passes `limit` bytes, whichever comes first. Allocates by
/// what arrives (at most `limit` plus one chunk), never by what `announced` (the
/// `Content-Length`) claims.
pub(crate) async fn read_capped<E>(
    body: impl Stream<Item = std::result::Result<Bytes, E>>,
    announced: Option<u64>,
    limit: usize,
) -> std::result::Result<Capped, E> {
    const INITIAL: usize = 64 * 1024;
    let mut body = std::pin::pin!(body);
    let hint = announced.map_or(INITIAL, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut buf = BytesMut::with_capacity(hint.min(limit).min(INITIAL));
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if chunk.len() > limit - buf.len() {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                bytes: buf.freeze(),
                cut: true,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Capped {
        bytes: buf.freeze(),
        cut: false,
    })
}

fn failed(e: reqwest::Error, timeout: Duration) -> Outcome {
    // A connect error (refused, DNS, TLS handshake, connect timeout) happens before the
    // request is written; anything later may have reached the server.
    let sent = !e.is_connect();
    let message = if e.is_timeout() && sent {
        format!("no complete response within {}s", timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("cannot connect: {}", error_chain(&e))
    } else {
        format!("request failed: {}", error_chain(&e))
    };
    Outcome::Failed {
        message,
        sent,
        source: Some(e),
    }
}

/// The error and its causes on one line (reqwest's own Display hides the interesting part,
/// e.g. the certificate problem, in the source chain).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// `base` with `segments` appended, each percent-encoded.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(chunks: Vec<Vec<u8>>, announced: Option<u64>, limit: usize) -> Capped {
        let stream = futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, ()>(Bytes::from(c))));
        futures::executor::block_on(read_capped(stream, announced, limit)).expect("no error")
    }

    #[test]
    fn reads_whole_bodies_and_cuts_long_ones() {
        let whole = read(vec![b"ab".to_vec(), b"cd".to_vec()], Some(4), 4);
        assert_eq!((&whole.bytes[..], whole.cut), (&b"abcd"[..], false));
        let cut = read(vec![b"ab".to_vec(), b"cde".to_vec()], None, 4);
        assert_eq!((&cut.bytes[..], cut.cut), (&b"abcd"[..], true));
        // A lying Content-Length allocates nothing up front.
        let lied = read(vec![b"x".to_vec()], Some(u64::MAX), 1 << 40);
        assert_eq!((&lied.bytes[..], lied.cut), (&b"x"[..], false));
    }

    #[test]
    fn a_failing_body_is_the_error() {
        let stream = futures::stream::iter([Ok(Bytes::from_static(b"a")), Err("broken")]);
        let got = futures::executor::block_on(read_capped(stream, None, 10));
        assert_eq!(got.unwrap_err(), "broken");
    }

    proptest! {
        #[test]
        fn capped_read_is_bounded_and_faithful(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            announced in proptest::option::of(any::<u64>()),
            limit in 0usize..4000,
        ) {
            let all: Vec<u8> = chunks.concat();
            let got = read(chunks, announced, limit);
            prop_assert!(got.bytes.len() <= limit);
            prop_assert_eq!(got.cut, all.len() > limit);
            prop_assert_eq!(&got.bytes[..], &all[..all.len().min(limit)]);
        }
    }
}
