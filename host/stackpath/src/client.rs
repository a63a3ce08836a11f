//! The StackPath Workload API client: one method per call. What each call is (route, method,
//! body, whether it may be repeated) is decided here; [`crate::transport`] sends it with
//! timeouts, retries, the shared rate limit, OAuth2 and typed errors.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::Config;
use crate::error::{Error, Operation, Result};
use crate::logs::{LogOptions, LogStream};
use crate::model::{
    Instance, InstanceResponse, Location, Metrics, MetricsQuery, Page, PageRequest, Workload,
    WorkloadRequest, WorkloadResponse,
};
use crate::routes;
use crate::transport::{Answer, Body, Call, Transport, join};

/// Page size used when walking all pages of a list.
pub const PAGE_SIZE: u32 = 100;

/// The most pages one walk reads (a million items at [`PAGE_SIZE`]): a server that keeps
/// handing out new cursors cannot keep a walk going forever.
const MAX_PAGES: usize = 10_000;

/// The longest page cursor accepted; real ones are short opaque tokens, and each goes back
/// into the next URL.
const MAX_CURSOR_BYTES: usize = 4096;

/// A StackPath Workload API client for one stack. Cheap to clone; clones share the
/// connection pool, the token and the rate limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Whose calls these are, for fairness in the shared rate limit ([`Client::for_lane`]).
    lane: Arc<str>,
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
    transport: Transport,
    base: Url,
    stack_id: String,
    log_idle_timeout: Option<Duration>,
}

impl Client {
    /// Builds a client. Reads the CA file, if any, now, so a bad file fails at start-up.
    /// No network traffic happens until the first call.
    pub fn new(config: Config) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(&config)?,
                base: config.base_url,
                stack_id: config.stack_id,
                log_idle_timeout: config.log_idle_timeout,
            }),
            lane: Arc::from(""),
        })
    }

    /// A clone whose calls wait in their own lane of the shared rate limit: once the budget
    /// is spent, lanes take turns, so a burst in one (a city) does not hold up another's
    /// calls. Token, connections and budget stay shared.
    pub fn for_lane(&self, lane: &str) -> Self {
        Self {
            inner: self.inner.clone(),
            lane: Arc::from(lane),
        }
    }

    /// Whether the client-side rate limit is exhausted, i.e. a call made now would wait.
    /// Callers with work that can wait (re-checking a settled pod) use it to step aside for
    /// calls that cannot.
    pub fn is_rate_limited(&self) -> bool {
        self.inner.transport.is_rate_limited()
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
        let call = Call {
            op,
            method: Method::POST,
            url: self.url(&["workloads"], &[]),
            body: Body::json(op, &WorkloadRequest { workload })?,
            auth: true,
            idempotent: false,
            gone_is_done: false,
        };
        let transport = &self.inner.transport;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match transport.json::<WorkloadResponse>(&call, &self.lane).await {
                Ok(resp) => return unwrap_workload(op, resp),
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
                    if !transport.retry.may_retry(attempt) {
                        return Err(err);
                    }
                    tokio::time::sleep(transport.retry.backoff(attempt)).await;
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
            body: Body::json(op, &WorkloadRequest { workload })?,
            auth: true,
            idempotent: true,
            gone_is_done: false,
        };
        let resp: WorkloadResponse = self.inner.transport.json(&call, &self.lane).await?;
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
        self.inner
            .transport
            .execute(&call, false, &self.lane)
            .await
            .map(|_| ())
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
        self.inner
            .transport
            .execute(&call, false, &self.lane)
            .await
            .map(|_| ())
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
        let call = Call::get(
            op,
            self.url(
                &["workloads", workload_id, "instances", instance_name, "logs"],
                &options.to_query(),
            ),
        );
        match self
            .inner
            .transport
            .execute(&call, true, &self.lane)
            .await?
        {
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
    /// and memory, [`MetricsQuery::stack`] for every instance of the stack. A query without
    /// `workload_id` covers the whole stack; the answer is not paged (one call, bounded by
    /// [`Config::max_metrics_response_bytes`]).
    pub async fn metrics(&self, query: &MetricsQuery) -> Result<Metrics> {
        let url = self.url(&["metrics"], &query.to_query());
        self.get_json(routes::GET_METRICS, url).await
    }

    /// CPU and memory of every instance in the stack over `[start, end]`, in one call, one
    /// series per instance (and container, where StackPath reports containers); attribute
    /// them with [`Metrics::latest_by_owner`] or [`crate::model::SeriesOwner::of`].
    pub async fn stack_metrics(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Metrics> {
        self.metrics(&MetricsQuery::stack(start, end)).await
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
        self.inner
            .transport
            .json(&Call::get(op, url), &self.lane)
            .await
    }

    /// Walks every page of a list. Stops with an error if the server repeats a cursor, sends
    /// an absurdly long one or never stops, so a server bug cannot loop forever.
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
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = fetch(PageRequest {
                first: Some(PAGE_SIZE),
                after: after.clone(),
                filter: filter.map(str::to_owned),
                sort_by: None,
            })
            .await?;
            let next = page.next_cursor().map(str::to_owned);
            page.results.into_iter().for_each(&mut each);
            let Some(cursor) = next else {
                return Ok(());
            };
            if cursor.len() > MAX_CURSOR_BYTES {
                return Err(Error::Decode {
                    op,
                    message: format!(
                        "the server sent a page cursor of {} bytes (at most {MAX_CURSOR_BYTES} \
                         accepted)",
                        cursor.len()
                    ),
                });
            }
            if !seen.insert(cursor.clone()) {
                return Err(Error::Decode {
                    op,
                    message: format!("the server repeated page cursor {cursor:?}"),
                });
            }
            after = Some(cursor);
        }
        Err(Error::Decode {
            op,
            message: format!(
                "the list did not end after {MAX_PAGES} pages of {PAGE_SIZE}; the server keeps \
                 sending new page cursors"
            ),
        })
    }
}

fn set_query(url: &mut Url, query: &[(&'static str, String)]) {
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
}

fn unwrap_workload(op: Operation, resp: WorkloadResponse) -> Result<Workload> {
    resp.workload.ok_or_else(|| Error::Decode {
        op,
        message: "the response has no `workload`".into(),
    })
}
