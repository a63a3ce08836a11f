//! The StackPath Workload API client: one method per call, each with timeouts, retries, the
//! shared rate limit, OAuth2 and typed errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use crate::auth::{AccessToken, TokenCache, TokenResponse, token_form};
use crate::config::Config;
use crate::error::{Error, Operation, Result};
use crate::logs::{LogOptions, LogStream};
use crate::model::{
    Instance, InstanceResponse, Location, Metrics, MetricsQuery, Page, PageRequest, Workload,
    WorkloadRequest, WorkloadResponse,
};
use crate::observer::CallObserver;
use crate::ratelimit::TokenBucket;
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::routes;
use crate::secret::Secret;

/// Page size used when walking all pages of a list.
pub const PAGE_SIZE: u32 = 100;

/// A StackPath Workload API client for one stack. Cheap to clone; clones share the
/// connection pool, the token and the rate limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("stack_id", &self.inner.stack_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token_url: Url,
    stack_id: String,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    tokens: TokenCache,
    limiter: Option<TokenBucket>,
    retry: RetryPolicy,
    request_timeout: Duration,
    log_idle_timeout: Option<Duration>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// A request body, kept serialized so that a retry re-sends the same bytes.
enum Body {
    Empty,
    Json(Bytes),
    Form(Vec<(String, String)>),
}

/// One API call, as the retry loop sees it.
struct Call {
    op: Operation,
    method: Method,
    url: Url,
    body: Body,
    /// Needs a bearer token (all calls but the token request).
    auth: bool,
    /// May be sent again after the server may have acted on it.
    idempotent: bool,
    /// A 404 on a retry means an earlier attempt already did the job (DELETE).
    gone_is_done: bool,
}

enum Answer {
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
    },
    Failed {
        message: String,
        sent: bool,
        source: Option<reqwest::Error>,
    },
}

impl Client {
    /// Builds a client. Reads the CA file, if any, now, so a bad file fails at start-up.
    /// No network traffic happens until the first call.
    pub fn new(config: Config) -> Result<Self> {
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
                Error::config(format!(
                    "cannot read the CA file {} (SP_CA_FILE): {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!(
                    "the CA file {} (SP_CA_FILE) is not PEM certificates: {e}",
                    path.display()
                ))
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
            .map_err(|e| Error::config(format!("cannot build the HTTPS client: {e}")))?;
        let token_url = join(&config.base_url, &["identity", "v1", "oauth2", "token"]);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                token_url,
                base: config.base_url,
                stack_id: config.stack_id,
                client_id: config.client_id,
                client_secret: config.client_secret,
                scope: config.scope,
                tokens: TokenCache::default(),
                limiter: config.rate_limit.map(TokenBucket::new),
                retry: config.retry,
                request_timeout: config.request_timeout,
                log_idle_timeout: config.log_idle_timeout,
                observer: config.observer,
            }),
        })
    }

    /// Whether the client-side rate limit is exhausted, i.e. a call made now would wait.
    /// Callers with work that can wait (re-checking a settled pod) use it to step aside for
    /// calls that cannot.
    pub fn is_rate_limited(&self) -> bool {
        self.inner
            .limiter
            .as_ref()
            .is_some_and(TokenBucket::is_exhausted)
    }

    /// The stack this client works in.
    pub fn stack_id(&self) -> &str {
        &self.inner.stack_id
    }

    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    // ----- workloads -----

    /// One page of the stack's workloads.
    pub async fn list_workloads(&self, page: &PageRequest) -> Result<Page<Workload>> {
        let url = self.url(&["workloads"], &page.to_query());
        self.get_json(routes::LIST_WORKLOADS, url).await
    }

    /// All workloads matching `filter` (the API's `page_request.filter`), walking every page.
    pub async fn list_all_workloads(&self, filter: Option<&str>) -> Result<Vec<Workload>> {
        self.walk(routes::LIST_WORKLOADS, filter, |page| async move {
            self.list_workloads(&page).await
        })
        .await
    }

    /// Every workload matching `filter`, handed to `each` page by page (for callers that keep
    /// only a little of each: a stack with thousands of workloads is never decoded at once).
    pub async fn for_each_workload(
        &self,
        filter: Option<&str>,
        each: impl FnMut(Workload),
    ) -> Result<()> {
        self.walk_each(
            routes::LIST_WORKLOADS,
            filter,
            |page| async move { self.list_workloads(&page).await },
            each,
        )
        .await
    }

    /// A workload by id.
    pub async fn get_workload(&self, workload_id: &str) -> Result<Workload> {
        let url = self.url(&["workloads", workload_id], &[]);
        let resp: WorkloadResponse = self.get_json(routes::GET_WORKLOAD, url).await?;
        unwrap_workload(routes::GET_WORKLOAD, resp)
    }

    /// The workload with this slug, if any. Asks the server to filter by slug and checks the
    /// answer; if the server refuses the filter, walks all workloads instead.
    pub async fn find_workload_by_slug(&self, slug: &str) -> Result<Option<Workload>> {
        let filter = format!(
            "slug=\"{}\"",
            slug.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let found = match self.list_all_workloads(Some(&filter)).await {
            Ok(list) => list,
            Err(Error::Invalid { .. }) => self.list_all_workloads(None).await?,
            Err(e) => return Err(e),
        };
        Ok(found.into_iter().find(|w| w.slug.as_deref() == Some(slug)))
    }

    /// Creates a workload and returns it as StackPath stored it.
    ///
    /// Never creates a duplicate: a POST whose outcome is unknown (timeout, connection lost
    /// after sending, 5xx) is followed by a lookup by slug, and only re-sent if no workload
    /// with that slug exists. A 409 also resolves by slug. In both cases the workload
    /// returned is the one that exists under that slug: callers that care whether it is
    /// theirs check its labels.
    pub async fn create_workload(&self, workload: &Workload) -> Result<Workload> {
        let op = routes::CREATE_WORKLOAD;
        let slug = match workload.slug.as_deref() {
            Some(s) if !s.is_empty() => s,
            _ => {
                return Err(Error::Invalid {
                    op,
                    message: "the workload has no slug; a slug is required (it identifies the \
                              workload when a create must be recovered)"
                        .to_owned(),
                    details: Vec::new(),
                });
            }
        };
        let body = json_body(op, &WorkloadRequest { workload })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = Call {
                op,
                method: Method::POST,
                url: self.url(&["workloads"], &[]),
                body: Body::Json(body.clone()),
                auth: true,
                idempotent: false,
                gone_is_done: false,
            };
            let err = match self.execute(&call, false).await {
                Ok(answer) => {
                    let resp: WorkloadResponse = decode(op, answer)?;
                    return unwrap_workload(op, resp);
                }
                Err(err) => err,
            };
            match &err {
                Error::Conflict { .. } => {
                    tracing::debug!(slug, "create answered conflict; looking the slug up");
                    return match self.find_workload_by_slug(slug).await? {
                        Some(existing) => Ok(existing),
                        None => Err(err),
                    };
                }
                e if e.outcome_unknown() => {
                    tracing::info!(slug, error = %e, "create outcome unknown; looking the slug up");
                    if let Some(existing) = self.find_workload_by_slug(slug).await? {
                        tracing::info!(slug, "the workload exists: the lost create succeeded");
                        return Ok(existing);
                    }
                    if !self.inner.retry.may_retry(attempt) {
                        return Err(err);
                    }
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                }
                _ => return Err(err),
            }
        }
    }

    /// Replaces a workload (PUT); StackPath restarts its instances with the new spec.
    pub async fn update_workload(
        &self,
        workload_id: &str,
        workload: &Workload,
    ) -> Result<Workload> {
        let op = routes::PUT_WORKLOAD;
        let call = Call {
            op,
            method: Method::PUT,
            url: self.url(&["workloads", workload_id], &[]),
            body: Body::Json(json_body(op, &WorkloadRequest { workload })?),
            auth: true,
            idempotent: true,
            gone_is_done: false,
        };
        let resp: WorkloadResponse = decode(op, self.execute(&call, false).await?)?;
        unwrap_workload(op, resp)
    }

    /// Deletes a workload. A 404 on the first attempt is [`Error::NotFound`]; on a retry it
    /// means an earlier attempt succeeded, and is success.
    pub async fn delete_workload(&self, workload_id: &str) -> Result<()> {
        let call = Call {
            op: routes::DELETE_WORKLOAD,
            method: Method::DELETE,
            url: self.url(&["workloads", workload_id], &[]),
            body: Body::Empty,
            auth: true,
            idempotent: true,
            gone_is_done: true,
        };
        self.execute(&call, false).await.map(|_| ())
    }

    // ----- instances -----

    /// One page of a workload's instances.
    pub async fn list_instances(
        &self,
        workload_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let url = self.url(&["workloads", workload_id, "instances"], &page.to_query());
        self.get_json(routes::LIST_INSTANCES, url).await
    }

    /// All instances of a workload.
    pub async fn list_all_instances(&self, workload_id: &str) -> Result<Vec<Instance>> {
        self.walk(routes::LIST_INSTANCES, None, |page| async move {
            self.list_instances(workload_id, &page).await
        })
        .await
    }

    /// One instance of a workload, by name (`<slug>-city-code-<city>-0` for the daemon's).
    pub async fn get_instance(&self, workload_id: &str, instance_name: &str) -> Result<Instance> {
        let op = routes::GET_INSTANCE;
        let url = self.url(&["workloads", workload_id, "instances", instance_name], &[]);
        let resp: InstanceResponse = self.get_json(op, url).await?;
        resp.instance.ok_or_else(|| Error::Decode {
            op,
            message: "the response has no `instance`".into(),
        })
    }

    /// Restarts an instance. A POST: retried only when the server surely did not act on it
    /// (connection refused, 429), never after a 5xx or a lost response.
    pub async fn restart_instance(&self, workload_id: &str, instance_name: &str) -> Result<()> {
        let call = Call {
            op: routes::RESTART_INSTANCE,
            method: Method::POST,
            url: self.url(
                &[
                    "workloads",
                    workload_id,
                    "instances",
                    instance_name,
                    "power",
                    "restart",
                ],
                &[],
            ),
            body: Body::Empty,
            auth: true,
            idempotent: false,
            gone_is_done: false,
        };
        self.execute(&call, false).await.map(|_| ())
    }

    /// An instance's logs as a byte stream. The call itself is bounded by the request
    /// timeout until the headers arrive; the stream then has no total limit, only the idle
    /// timeout of the configuration.
    pub async fn instance_logs(
        &self,
        workload_id: &str,
        instance_name: &str,
        options: &LogOptions,
    ) -> Result<LogStream> {
        let op = routes::INSTANCE_LOGS;
        let call = Call {
            op,
            method: Method::GET,
            url: self.url(
                &["workloads", workload_id, "instances", instance_name, "logs"],
                &options.to_query(),
            ),
            body: Body::Empty,
            auth: true,
            idempotent: true,
            gone_is_done: false,
        };
        match self.execute(&call, true).await? {
            Answer::Stream(resp) => Ok(LogStream::new(op, resp, self.inner.log_idle_timeout)),
            Answer::Full(bytes) => {
                // Not reached (streaming was asked for); kept total rather than panicking.
                let stream = futures::stream::iter([Ok::<_, Error>(bytes)]);
                Ok(LogStream::from_stream(stream))
            }
        }
    }

    // ----- locations and metrics -----

    /// One page of the locations workloads may target.
    pub async fn list_locations(&self, page: &PageRequest) -> Result<Page<Location>> {
        let mut url = join(&self.inner.base, &["workload", "v1", "locations"]);
        set_query(&mut url, &page.to_query());
        self.get_json(routes::LIST_LOCATIONS, url).await
    }

    /// All locations; the daemon checks its city code against their `cityCode`.
    pub async fn list_all_locations(&self) -> Result<Vec<Location>> {
        self.walk(routes::LIST_LOCATIONS, None, |page| async move {
            self.list_locations(&page).await
        })
        .await
    }

    /// Usage metrics (`GET …/metrics`); [`MetricsQuery::instance`] asks for one instance's CPU
    /// and memory.
    pub async fn metrics(&self, query: &MetricsQuery) -> Result<Metrics> {
        let url = self.url(&["metrics"], &query.to_query());
        self.get_json(routes::GET_METRICS, url).await
    }

    // ----- plumbing -----

    /// `<base>/workload/v1/stacks/<stack>/<segments…>?<query>`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&'static str, String)]) -> Url {
        let mut all = vec!["workload", "v1", "stacks", self.inner.stack_id.as_str()];
        all.extend_from_slice(segments);
        let mut url = join(&self.inner.base, &all);
        set_query(&mut url, query);
        url
    }

    async fn get_json<T: DeserializeOwned>(&self, op: Operation, url: Url) -> Result<T> {
        let call = Call {
            op,
            method: Method::GET,
            url,
            body: Body::Empty,
            auth: true,
            idempotent: true,
            gone_is_done: false,
        };
        decode(op, self.execute(&call, false).await?)
    }

    /// Walks every page of a list. Stops with an error if the server repeats a cursor, so a
    /// server bug cannot loop forever.
    async fn walk<T, F, Fut>(&self, op: Operation, filter: Option<&str>, fetch: F) -> Result<Vec<T>>
    where
        F: FnMut(PageRequest) -> Fut,
        Fut: Future<Output = Result<Page<T>>>,
    {
        let mut out = Vec::new();
        self.walk_each(op, filter, fetch, |item| out.push(item))
            .await?;
        Ok(out)
    }

    /// As `walk`, handing each item to `each` as its page arrives, so a caller that keeps a
    /// little of each item never holds every page at once.
    async fn walk_each<T, F, Fut>(
        &self,
        op: Operation,
        filter: Option<&str>,
        mut fetch: F,
        mut each: impl FnMut(T),
    ) -> Result<()>
    where
        F: FnMut(PageRequest) -> Fut,
        Fut: Future<Output = Result<Page<T>>>,
    {
        let mut after: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = fetch(PageRequest {
                first: Some(PAGE_SIZE),
                after: after.clone(),
                filter: filter.map(str::to_owned),
                sort_by: None,
            })
            .await?;
            let next = page.next_cursor().map(str::to_owned);
            page.results.into_iter().for_each(&mut each);
            match next {
                Some(cursor) => {
                    if !seen.insert(cursor.clone()) {
                        return Err(Error::Decode {
                            op,
                            message: format!("the server repeated page cursor {cursor:?}"),
                        });
                    }
                    after = Some(cursor);
                }
                None => return Ok(()),
            }
        }
    }

    /// A valid access token, fetched (once for all callers) when missing or about to expire.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + '_>> {
        // Boxed: fetching a token is itself a call through `execute`, which calls `token`.
        Box::pin(async move { self.inner.tokens.get(|| self.fetch_token()).await })
    }

    async fn fetch_token(&self) -> Result<AccessToken> {
        let op = routes::TOKEN;
        let inner = &self.inner;
        let call = Call {
            op,
            method: Method::POST,
            url: inner.token_url.clone(),
            body: Body::Form(token_form(
                &inner.client_id,
                &inner.client_secret,
                inner.scope.as_deref(),
            )),
            auth: false,
            // Asking for a token twice is harmless.
            idempotent: true,
            gone_is_done: false,
        };
        let answer = match self.execute(&call, false).await {
            Ok(a) => a,
            Err(
                Error::Unauthorized { message, .. }
                | Error::Forbidden { message, .. }
                | Error::Invalid { message, .. },
            ) => {
                return Err(Error::Unauthorized {
                    op,
                    message: format!(
                        "the token endpoint refused API client {:?}: {message}",
                        inner.client_id
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let resp: TokenResponse = decode(op, answer)?;
        tracing::debug!("StackPath access token obtained");
        Ok(resp.into_token(Instant::now()))
    }

    /// Sends a call, retrying what is safe to retry, refreshing the token once on a 401.
    async fn execute(&self, call: &Call, streaming: bool) -> Result<Answer> {
        let inner = &self.inner;
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            if let Some(limiter) = &inner.limiter {
                limiter.acquire().await;
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
            match outcome {
                Outcome::Done { answer, .. } => return Ok(answer),
                Outcome::Status { status: 401, .. } if call.auth && !reauthenticated => {
                    // The token was rejected (revoked, or expired early): get a new one once.
                    if let Some(t) = &token {
                        inner.tokens.invalidate(t);
                    }
                    reauthenticated = true;
                    attempt -= 1;
                }
                Outcome::Status {
                    status,
                    retry_after,
                    body,
                } => {
                    let err = Error::from_response(call.op, status, &body, retry_after);
                    let err = self.redact(err);
                    if call.gone_is_done && attempt > 1 && err.is_not_found() {
                        return Ok(Answer::Full(Bytes::new()));
                    }
                    // A 429 means the server did not act: safe to resend even a POST.
                    let retryable = match &err {
                        Error::RateLimited { .. } => true,
                        Error::Server { .. } => call.idempotent,
                        _ => false,
                    };
                    if !retryable || !inner.retry.may_retry(attempt) {
                        return Err(err);
                    }
                    let hint = if matches!(err, Error::RateLimited { .. }) {
                        retry_after
                    } else {
                        None
                    };
                    match inner.retry.delay(attempt, hint) {
                        Some(delay) => {
                            tracing::debug!(
                                route = call.op.route,
                                status,
                                delay_ms = delay.as_millis() as u64,
                                "retrying StackPath call"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        None => return Err(err),
                    }
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
                    // Not sent: nothing happened server-side, any method may go again.
                    if (sent && !call.idempotent) || !inner.retry.may_retry(attempt) {
                        return Err(err);
                    }
                    let delay = inner.retry.backoff(attempt);
                    tracing::debug!(
                        route = call.op.route,
                        error = %err,
                        delay_ms = delay.as_millis() as u64,
                        "retrying StackPath call"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One HTTP attempt, timed, observed and logged (never with bodies).
    async fn attempt(&self, call: &Call, token: Option<&AccessToken>, streaming: bool) -> Outcome {
        let inner = &self.inner;
        let mut req = inner
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
            Body::Json(bytes) => req
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Form(form) => req.form(form),
        };
        let timeout = inner.request_timeout;
        let start = Instant::now();
        let outcome = if streaming {
            match tokio::time::timeout(timeout, req.send()).await {
                Err(_) => Outcome::Failed {
                    message: format!("no response within {}s", timeout.as_secs_f64()),
                    sent: true,
                    source: None,
                },
                Ok(Err(e)) => failed(e, timeout),
                Ok(Ok(resp)) if resp.status().is_success() => Outcome::Done {
                    status: resp.status().as_u16(),
                    answer: Answer::Stream(resp),
                },
                Ok(Ok(resp)) => match tokio::time::timeout(timeout, read_status(resp)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Failed {
                        message: format!("error body not read within {}s", timeout.as_secs_f64()),
                        sent: true,
                        source: None,
                    },
                },
            }
        } else {
            match req.timeout(timeout).send().await {
                Err(e) => failed(e, timeout),
                Ok(resp) if resp.status().is_success() => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(body) => Outcome::Done {
                            status,
                            answer: Answer::Full(body),
                        },
                        Err(e) => failed(e, timeout),
                    }
                }
                Ok(resp) => read_status(resp).await,
            }
        };
        let elapsed = start.elapsed();
        let status = match &outcome {
            Outcome::Done { status, .. } | Outcome::Status { status, .. } => Some(*status),
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
        if let Some(observer) = &inner.observer {
            observer.observe(call.op.route, call.op.method, status, elapsed);
        }
        outcome
    }

    /// Removes the client secret from a message, in case a server echoes the request.
    fn redact(&self, err: Error) -> Error {
        let secret = self.inner.client_secret.expose();
        if secret.is_empty() {
            return err;
        }
        let clean = |m: String| {
            if m.contains(secret) {
                m.replace(secret, "***")
            } else {
                m
            }
        };
        match err {
            Error::NotFound { op, message } => Error::NotFound {
                op,
                message: clean(message),
            },
            Error::Conflict { op, message } => Error::Conflict {
                op,
                message: clean(message),
            },
            Error::Unauthorized { op, message } => Error::Unauthorized {
                op,
                message: clean(message),
            },
            Error::Forbidden { op, message } => Error::Forbidden {
                op,
                message: clean(message),
            },
            Error::RateLimited {
                op,
                retry_after,
                message,
            } => Error::RateLimited {
                op,
                retry_after,
                message: clean(message),
            },
            Error::Invalid {
                op,
                message,
                details,
            } => Error::Invalid {
                op,
                message: clean(message),
                details,
            },
            Error::Server {
                op,
                status,
                message,
            } => Error::Server {
                op,
                status,
                message: clean(message),
            },
            other => other,
        }
    }
}

async fn read_status(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
    match resp.bytes().await {
        Ok(body) => Outcome::Status {
            status,
            retry_after,
            body,
        },
        // The status is what matters; a body cut short only loses the message.
        Err(_) => Outcome::Status {
            status,
            retry_after,
            body: Bytes::new(),
        },
    }
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

fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn set_query(url: &mut Url, query: &[(&'static str, String)]) {
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
}

fn json_body<T: serde::Serialize>(op: Operation, value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Decode {
            op,
            message: format!("cannot serialize the request: {e}"),
        })
}

fn decode<T: DeserializeOwned>(op: Operation, answer: Answer) -> Result<T> {
    let Answer::Full(bytes) = answer else {
        return Err(Error::Decode {
            op,
            message: "expected a body, got a stream".into(),
        });
    };
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        op,
        message: format!("the response is not the expected JSON: {e}"),
    })
}

fn unwrap_workload(op: Operation, resp: WorkloadResponse) -> Result<Workload> {
    resp.workload.ok_or_else(|| Error::Decode {
        op,
        message: "the response has no `workload`".into(),
    })
}
