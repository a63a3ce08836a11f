//! Container logs: captured process output (with `run_containers`) or generated lines, served
//! by `GET …/instances/{instance_name}/logs` as chunked `text/plain` like kubelet serves them
//! (follow, tail_lines, since_seconds, since_time, timestamps, limit_bytes, previous,
//! container_name). A follow stream is cut after `log_follow_cut`, as StackPath's gateway does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::SinkExt;
use futures::channel::mpsc;
use tokio::sync::watch;

use crate::api_error::{ApiError, Code};
use crate::model::{self, InstanceRec, container_names};
use crate::state::{AppState, instance_not_found, workload_not_found};

const MAX_LINES: usize = 50_000;

#[derive(Clone)]
pub(crate) struct LogLine {
    pub at: DateTime<Utc>,
    pub text: Bytes,
}

/// One container generation's output.
pub(crate) struct LogBuf {
    inner: Mutex<(VecDeque<LogLine>, u64)>, // lines, absolute index of the first line
    /// (lines ever pushed, closed)
    tick: watch::Sender<(u64, bool)>,
}

impl LogBuf {
    fn new() -> Self {
        Self {
            inner: Mutex::new((VecDeque::new(), 0)),
            tick: watch::Sender::new((0, false)),
        }
    }

    pub(crate) fn push(&self, text: impl Into<Bytes>) {
        let mut text: Bytes = text.into();
        if !text.ends_with(b"\n") {
            let mut v = text.to_vec();
            v.push(b'\n');
            text = v.into();
        }
        let total = {
            let Ok(mut g) = self.inner.lock() else { return };
            g.0.push_back(LogLine {
                at: Utc::now(),
                text,
            });
            if g.0.len() > MAX_LINES {
                g.0.pop_front();
                g.1 += 1;
            }
            g.1 + g.0.len() as u64
        };
        self.tick.send_modify(|t| t.0 = total);
    }

    pub(crate) fn close(&self) {
        self.tick.send_modify(|t| t.1 = true);
    }

    /// Lines from absolute index `from` on, and the index after them.
    fn read_from(&self, from: u64) -> (Vec<LogLine>, u64) {
        let Ok(g) = self.inner.lock() else {
            return (Vec::new(), from);
        };
        let start = from.max(g.1);
        let skip = (start - g.1) as usize;
        let lines: Vec<LogLine> = g.0.iter().skip(skip).cloned().collect();
        (lines, g.1 + g.0.len() as u64)
    }
}

#[derive(Default)]
struct Slots {
    previous: Option<Arc<LogBuf>>,
    current: Option<Arc<LogBuf>>,
}

/// instance id → container → its current and previous generation's logs.
#[derive(Default)]
pub(crate) struct LogRegistry {
    map: Mutex<HashMap<String, HashMap<String, Slots>>>,
}

impl LogRegistry {
    /// A fresh buffer for a new container generation; the old one becomes "previous".
    pub(crate) fn new_generation(&self, instance_id: &str, container: &str) -> Arc<LogBuf> {
        let buf = Arc::new(LogBuf::new());
        if let Ok(mut m) = self.map.lock() {
            let slot = m
                .entry(instance_id.to_string())
                .or_default()
                .entry(container.to_string())
                .or_default();
            slot.previous = slot.current.take();
            slot.current = Some(buf.clone());
        }
        buf
    }

    fn get(&self, instance_id: &str, container: &str, previous: bool) -> Option<Arc<LogBuf>> {
        let m = self.map.lock().ok()?;
        let slot = m.get(instance_id)?.get(container)?;
        if previous {
            slot.previous.clone()
        } else {
            slot.current.clone()
        }
    }

    pub(crate) fn forget(&self, instance_id: &str) {
        if let Ok(mut m) = self.map.lock()
            && let Some(slots) = m.remove(instance_id)
        {
            for s in slots.into_values() {
                for b in [s.previous, s.current].into_iter().flatten() {
                    b.close();
                }
            }
        }
    }
}

struct Opts {
    follow: bool,
    previous: bool,
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    tail: Option<usize>,
    limit: Option<usize>,
}

fn flag(q: &HashMap<String, String>, k: &str) -> Result<bool, ApiError> {
    match q.get(k).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::invalid_field(k, "must be true or false")),
    }
}

fn number(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, ApiError> {
    match q.get(k).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid_field(k, "must be a whole number")),
    }
}

fn parse_opts(q: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Opts, ApiError> {
    let since_seconds = number(q, "since_seconds")?;
    let since_time = match q.get("since_time").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| ApiError::invalid_field("since_time", "must be an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    if since_seconds.is_some() && since_time.is_some() {
        return Err(ApiError::invalid_field(
            "since_seconds",
            "only one of since_seconds or since_time may be specified",
        ));
    }
    let since = match since_seconds {
        Some(s) if s <= 0 => {
            return Err(ApiError::invalid_field("since_seconds", "must be positive"));
        }
        Some(s) => Some(now - chrono::Duration::seconds(s)),
        None => since_time,
    };
    let tail = match number(q, "tail_lines")? {
        Some(n) if n < 0 => {
            return Err(ApiError::invalid_field(
                "tail_lines",
                "must not be negative",
            ));
        }
        n => n.map(|n| n as usize),
    };
    let limit = match number(q, "limit_bytes")? {
        Some(n) if n <= 0 => {
            return Err(ApiError::invalid_field("limit_bytes", "must be positive"));
        }
        n => n.map(|n| n as usize),
    };
    Ok(Opts {
        follow: flag(q, "follow")?,
        previous: flag(q, "previous")?,
        since,
        timestamps: flag(q, "timestamps")?,
        tail,
        limit,
    })
}

fn format_line(l: &LogLine, timestamps: bool) -> Bytes {
    if !timestamps {
        return l.text.clone();
    }
    let mut v =
        l.at.to_rfc3339_opts(SecondsFormat::Nanos, true)
            .into_bytes();
    v.push(b' ');
    v.extend_from_slice(&l.text);
    v.into()
}

/// Where a generated (simulated) log line `k` falls in time.
fn sim_line(
    i: &InstanceRec,
    container: &str,
    start: DateTime<Utc>,
    k: i64,
    every: chrono::Duration,
) -> LogLine {
    let at = start + every * (k as i32);
    LogLine {
        at,
        text: Bytes::from(format!(
            "{} INFO {container}: emulated log line {k} from instance {} (generation {})\n",
            at.to_rfc3339_opts(SecondsFormat::Millis, true),
            i.name,
            i.generation
        )),
    }
}

enum Source {
    Buffer(Arc<LogBuf>),
    Simulated {
        inst: Box<InstanceRec>,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    },
    Fixed(Vec<LogLine>),
}

pub(crate) async fn handler(
    State(app): State<AppState>,
    Path((stack_id, id, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.check_stack(&stack_id)?;
    let now = Utc::now();
    let opts = parse_opts(&q, now)?;
    let want = q.get("container_name").filter(|s| !s.is_empty()).cloned();

    let (inst, container, phase, deleted) = {
        let store = app.lock();
        let w = store
            .stacks
            .get(&stack_id)
            .and_then(|s| s.get(&id))
            .ok_or_else(|| workload_not_found(&stack_id, &id))?;
        let i = w
            .instances
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| instance_not_found(&id, &name))?;
        let names = container_names(&w.body, "containers");
        let mut all = names.clone();
        all.extend(container_names(&w.body, "initContainers"));
        let container = match want {
            Some(c) if all.contains(&c) => c,
            Some(c) => {
                return Err(ApiError::invalid_field(
                    "container_name",
                    format!(
                        "container {c:?} is not in instance {name:?}; it has: {}",
                        all.join(", ")
                    ),
                ));
            }
            None => names.first().cloned().ok_or_else(|| {
                ApiError::invalid_field("container_name", "the instance has no containers")
            })?,
        };
        let cx = app.render_ctx(&stack_id, now);
        let phase = model::instance_phase(w, i, &cx);
        (i.clone(), container, phase, w.delete_requested_at)
    };

    let every = chrono::Duration::from_std(app.config.log_line_interval)
        .unwrap_or(chrono::Duration::milliseconds(500));
    let source = if app.config.run_containers {
        match app.logs.get(&inst.id, &container, opts.previous) {
            Some(b) => Source::Buffer(b),
            None if opts.previous => {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    format!(
                        "previous terminated container {container:?} in instance {name:?} not found"
                    ),
                ));
            }
            None => {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    format!(
                        "container {container:?} in instance {name:?} is waiting to start: ContainerCreating"
                    ),
                ));
            }
        }
    } else if opts.previous {
        if inst.restart_count == 0 {
            return Err(ApiError::new(
                Code::InvalidArgument,
                format!(
                    "previous terminated container {container:?} in instance {name:?} not found"
                ),
            ));
        }
        let start = inst.created_at;
        Source::Fixed(
            (0..3)
                .map(|k| sim_line(&inst, &container, start, k, every))
                .collect(),
        )
    } else {
        if phase == "SCHEDULING" || phase == "STARTING" {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "container {container:?} in instance {name:?} is waiting to start: ContainerCreating"
                ),
            ));
        }
        let start = model::running_at(&inst, &app.config.delays);
        let end = inst.failure.as_ref().map(|f| f.at).or(deleted);
        Source::Simulated {
            inst: Box::new(inst),
            start,
            end,
        }
    };

    let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let cut = app.config.log_follow_cut;
    let cancel = app.cancel.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + cut;
        let mut budget = opts.limit.unwrap_or(usize::MAX);
        // Sends one line within the byte budget; false when the stream should end.
        macro_rules! emit {
            ($line:expr) => {{
                let mut b = format_line($line, opts.timestamps);
                let mut last = false;
                if b.len() >= budget {
                    b.truncate(budget);
                    last = true;
                }
                budget -= b.len();
                if tx.send(Ok(b)).await.is_err() || last {
                    false
                } else {
                    true
                }
            }};
        }
        let keep = |l: &LogLine| opts.since.is_none_or(|s| l.at >= s);
        match source {
            Source::Fixed(lines) => {
                let lines: Vec<_> = lines.into_iter().filter(keep).collect();
                let skip = opts
                    .tail
                    .map(|t| lines.len().saturating_sub(t))
                    .unwrap_or(0);
                for l in &lines[skip..] {
                    if !emit!(l) {
                        return;
                    }
                }
            }
            Source::Buffer(buf) => {
                let mut rx = buf.tick.subscribe();
                let (lines, mut next) = buf.read_from(0);
                let lines: Vec<_> = lines.into_iter().filter(keep).collect();
                let skip = opts
                    .tail
                    .map(|t| lines.len().saturating_sub(t))
                    .unwrap_or(0);
                for l in &lines[skip..] {
                    if !emit!(l) {
                        return;
                    }
                }
                if !opts.follow {
                    return;
                }
                loop {
                    let closed = rx.borrow_and_update().1;
                    let (lines, n) = buf.read_from(next);
                    next = n;
                    for l in &lines {
                        if !emit!(l) {
                            return;
                        }
                    }
                    if closed {
                        return;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = cancel.cancelled() => return,
                    }
                }
            }
            Source::Simulated { inst, start, end } => {
                let now = Utc::now();
                let upto = end.unwrap_or(now).min(now);
                let count = if upto < start {
                    0
                } else {
                    ((upto - start).num_milliseconds() / every.num_milliseconds().max(1)) + 1
                };
                let mut first = 0i64;
                if let Some(s) = opts.since
                    && s > start
                {
                    let d = (s - start).num_milliseconds();
                    let e = every.num_milliseconds().max(1);
                    first = (d + e - 1) / e;
                }
                if let Some(t) = opts.tail {
                    first = first.max(count - t as i64);
                }
                let mut k = first.max(0);
                while k < count {
                    if !emit!(&sim_line(&inst, &container, start, k, every)) {
                        return;
                    }
                    k += 1;
                }
                if !opts.follow || end.is_some() {
                    return;
                }
                loop {
                    let at = sim_line(&inst, &container, start, k, every).at;
                    let wait = (at - Utc::now()).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = cancel.cancelled() => return,
                    }
                    if !emit!(&sim_line(&inst, &container, start, k, every)) {
                        return;
                    }
                    k += 1;
                }
            }
        }
    });
    let mut resp = Body::from_stream(rx).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
