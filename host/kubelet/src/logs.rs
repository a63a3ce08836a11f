//! `GET /containerLogs/{namespace}/{pod}/{container}`: StackPath's instance logs, streamed with
//! back-pressure. A follow stream that StackPath cuts is resumed from the last timestamp seen,
//! skipping what was already sent, until the client leaves or the container stops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use http::StatusCode;
use stackpath_client::model::InstancePhase;
use stackpath_client::{LogOptions, LogStream};
use tokio::sync::mpsc;

use crate::exec::protocol::form_pairs;
use crate::locator::{ContainerLocation, LocateError};
use crate::state::{AppState, text};
use crate::streams::StreamGuard;

/// The query of `/containerLogs/...` (kubelet names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl LogQuery {
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut q = Self::default();
        for (k, v) in form_pairs(query) {
            let bool_of = |v: &str| match v {
                "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(format!("invalid value {v:?} for {k}: want true or false")),
            };
            let int_of = |v: &str| {
                v.parse::<i64>()
                    .map_err(|_| format!("invalid value {v:?} for {k}: want an integer"))
            };
            match k.as_str() {
                "follow" => q.follow = bool_of(&v)?,
                "previous" => q.previous = bool_of(&v)?,
                "timestamps" => q.timestamps = bool_of(&v)?,
                "sinceSeconds" => q.since_seconds = Some(int_of(&v)?),
                "tailLines" => q.tail_lines = Some(int_of(&v)?),
                "limitBytes" => q.limit_bytes = Some(int_of(&v)?),
                "sinceTime" => {
                    q.since_time = Some(
                        DateTime::parse_from_rfc3339(&v)
                            .map_err(|_| format!("invalid sinceTime {v:?}: want an RFC 3339 time"))?
                            .with_timezone(&Utc),
                    )
                }
                _ => {}
            }
        }
        if q.since_seconds.is_some() && q.since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        if q.since_seconds.is_some_and(|s| s < 1) {
            return Err("sinceSeconds must be greater than 0".into());
        }
        if q.tail_lines.is_some_and(|n| n < 0) {
            return Err("tailLines must be greater than or equal to 0".into());
        }
        if q.limit_bytes.is_some_and(|n| n < 1) {
            return Err("limitBytes must be a positive integer or nil".into());
        }
        Ok(q)
    }
}

pub(crate) async fn handler(
    State(state): State<Arc<AppState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = match LogQuery::from_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let loc = match state.locator.locate(&namespace, &pod, &container) {
        Ok(l) => l,
        Err(LocateError::Finished { phase, why, .. }) => {
            return match state.locator.finished_logs(&namespace, &pod, &container) {
                Ok(_) if q.previous => text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container {container:?} in pod {namespace}/{pod} not found: the pod has finished ({phase}) and only its last run's logs were kept; drop --previous to read them"
                    ),
                ),
                Ok(kept) => plain(StatusCode::OK, kept_view(&kept, &q, Utc::now())),
                Err(not_kept) => text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "pod {namespace}/{pod} has finished ({phase}): {why}; the logs of container {container:?} were not kept: {not_kept}"
                    ),
                ),
            };
        }
        Err(e) => return text(e.status(), e.to_string()),
    };
    let guard = if q.follow {
        match state.acquire_stream(&namespace, &pod) {
            Ok(g) => Some(g),
            Err(r) => return r,
        }
    } else {
        None
    };
    let first = LogOptions {
        container_name: Some(loc.container.clone()),
        follow: q.follow,
        previous: q.previous,
        since_seconds: q.since_seconds,
        since_time: q.since_time,
        // Always: the timestamps are how a resumed stream skips what was sent.
        timestamps: true,
        tail_lines: q.tail_lines,
        limit_bytes: None,
    };
    let stream = match state
        .stackpath
        .instance_logs(&loc.workload_id, &loc.instance_name, &first)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let status = if e.is_not_found() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            };
            return text(
                status,
                format!(
                    "cannot get logs of container {container:?} in pod {namespace}/{pod} from StackPath: {e}"
                ),
            );
        }
    };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(pump(state, loc, q, first, stream, tx, guard));
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    plain(StatusCode::OK, Body::from_stream(body))
}

fn plain(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// A finished container's kept output as the query asks for it: `sinceTime`/`sinceSeconds`
/// (against the lines' timestamps), `tailLines`, `timestamps`, `limitBytes`. `follow` ends at
/// once: the container will write nothing more.
pub fn kept_view(kept: &[u8], q: &LogQuery, now: DateTime<Utc>) -> Bytes {
    let since = q
        .since_time
        .or_else(|| q.since_seconds.map(|s| now - chrono::Duration::seconds(s)));
    let mut lines: Vec<(Option<DateTime<Utc>>, &[u8])> = kept
        .split_inclusive(|&b| b == b'\n')
        .map(|l| (split_timestamp(l).0, l))
        .filter(|(ts, _)| match (since, ts) {
            (Some(s), Some(t)) => *t >= s,
            _ => true,
        })
        .collect();
    if let Some(n) = q.tail_lines {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        lines.drain(..lines.len().saturating_sub(n));
    }
    let mut out = BytesMut::new();
    for (_, l) in lines {
        out.extend_from_slice(if q.timestamps {
            l
        } else {
            split_timestamp(l).1
        });
    }
    if let Some(n) = q.limit_bytes {
        out.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    out.freeze()
}

/// How long a piece of the log body waits for more lines: short enough that `logs -f` looks
/// live, long enough to carry a burst in one piece (3x the throughput of a piece per line).
const COALESCE: Duration = Duration::from_millis(5);

/// Removes lines already sent when a stream is resumed from the last timestamp.
#[derive(Debug, Default)]
pub struct Dedup {
    last: Option<DateTime<Utc>>,
    /// Lines sent carrying exactly `last`.
    at_last: usize,
    /// Lines with timestamp `last` still to skip in the resumed stream.
    skip: usize,
}

impl Dedup {
    /// Called when a resumed stream starts at `self.last`.
    pub fn resumed(&mut self) {
        self.skip = self.at_last;
    }

    /// The timestamp to resume from.
    pub fn resume_from(&self) -> Option<DateTime<Utc>> {
        self.last
    }

    /// Whether to pass this line on (and records it).
    pub fn admit(&mut self, ts: Option<DateTime<Utc>>) -> bool {
        let Some(t) = ts else { return true };
        match self.last {
            Some(last) if t < last => false,
            Some(last) if t == last => {
                if self.skip > 0 {
                    self.skip -= 1;
                    false
                } else {
                    self.at_last += 1;
                    true
                }
            }
            _ => {
                self.last = Some(t);
                self.at_last = 1;
                self.skip = 0;
                true
            }
        }
    }
}

/// Splits `<RFC 3339> <text>` into its time and the text.
pub fn split_timestamp(line: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return (None, line);
    };
    let ts = std::str::from_utf8(&line[..sp])
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    match ts {
        Some(t) => (Some(t), &line[sp + 1..]),
        None => (None, line),
    }
}

/// The most of one line held back while it is incomplete (as container runtimes split log
/// lines at 16 KiB). A longer line is passed on in pieces as it arrives, whatever its length:
/// whether to show it is decided from its first piece, which holds its timestamp.
pub const MAX_HELD_LINE: usize = 16 << 10;

/// Cuts StackPath's byte stream into lines for [`Dedup`] and the timestamp option, holding at
/// most [`MAX_HELD_LINE`] bytes.
#[derive(Debug, Default)]
pub struct Lines {
    /// The start of the current line, while it is short enough to wait for its end.
    held: BytesMut,
    /// Inside a long line whose start was already decided: `Some(shown)`.
    passing: Option<bool>,
}

impl Lines {
    /// Feeds a chunk; what is to be shown is appended to `out`.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        dedup: &mut Dedup,
        timestamps: bool,
        out: &mut BytesMut,
    ) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            if let Some(shown) = self.passing {
                let end = newline.map_or(chunk.len(), |i| i + 1);
                if shown {
                    out.extend_from_slice(&chunk[..end]);
                }
                if newline.is_some() {
                    self.passing = None;
                }
                chunk = &chunk[end..];
                continue;
            }
            match newline {
                Some(i) => {
                    let line = &chunk[..=i];
                    if self.held.is_empty() {
                        Self::line(line, dedup, timestamps, out);
                    } else {
                        self.held.extend_from_slice(line);
                        Self::line(&self.held, dedup, timestamps, out);
                        self.held.clear();
                    }
                    chunk = &chunk[i + 1..];
                }
                None if self.held.len() + chunk.len() <= MAX_HELD_LINE => {
                    self.held.extend_from_slice(chunk);
                    chunk = &[];
                }
                None => {
                    let take = MAX_HELD_LINE - self.held.len();
                    self.held.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    self.passing = Some(Self::line(&self.held, dedup, timestamps, out));
                    self.held.clear();
                }
            }
        }
    }

    /// A line (or a long line's start): shown unless already sent; `true` if shown.
    fn line(line: &[u8], dedup: &mut Dedup, timestamps: bool, out: &mut BytesMut) -> bool {
        let (ts, rest) = split_timestamp(line);
        let shown = dedup.admit(ts);
        if shown {
            out.extend_from_slice(if timestamps { line } else { rest });
        }
        shown
    }

    /// The end of the stream: a last line without a newline is shown as it is.
    pub fn finish(&mut self, dedup: &mut Dedup, timestamps: bool, out: &mut BytesMut) {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            Self::line(&held, dedup, timestamps, out);
        }
        self.passing = None;
    }

    /// StackPath cut the stream: the resumed one sends the current line again. A held line
    /// was not shown and will be in full; a long line partly shown is ended here (its repeat
    /// is skipped as already sent).
    pub fn cut(&mut self, out: &mut BytesMut) {
        self.held.clear();
        if self.passing.take() == Some(true) {
            out.extend_from_slice(b"\n");
        }
    }

    /// Bytes held now (never more than [`MAX_HELD_LINE`]).
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

struct Out {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    remaining: Option<u64>,
}

impl Out {
    /// Sends `b` (cut to the byte limit); `false` when the stream must end.
    async fn send(&mut self, mut b: Bytes) -> bool {
        if let Some(r) = &mut self.remaining {
            if (b.len() as u64) >= *r {
                b.truncate(*r as usize);
                *r = 0;
            } else {
                *r -= b.len() as u64;
            }
        }
        if !b.is_empty() && self.tx.send(Ok(b)).await.is_err() {
            return false;
        }
        self.remaining != Some(0)
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    state: Arc<AppState>,
    loc: ContainerLocation,
    q: LogQuery,
    first: LogOptions,
    stream: LogStream,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    _guard: Option<StreamGuard>,
) {
    let mut out = Out {
        tx: tx.clone(),
        remaining: q.limit_bytes.map(|n| n as u64),
    };
    let mut dedup = Dedup::default();
    let mut lines = Lines::default();
    let mut failures = 0u32;
    let mut stream = Some(stream);
    loop {
        while let Some(s) = stream.as_mut() {
            let item = tokio::select! {
                _ = tx.closed() => return,
                _ = state.shutdown.cancelled() => return,
                item = s.next() => item,
            };
            // StackPath's stream comes a line per chunk, and each piece of the body costs a
            // channel send, an HTTP chunk, a TLS record and a write: the lines that arrive
            // within COALESCE of each other (up to 64 KiB) go out as one piece.
            let mut batch = BytesMut::new();
            let mut ended = false;
            let mut next = Some(item);
            while let Some(item) = next.take() {
                match item {
                    Some(Ok(chunk)) => {
                        failures = 0;
                        lines.feed(&chunk, &mut dedup, q.timestamps, &mut batch);
                        if batch.len() < (64 << 10) {
                            next = match s.next().now_or_never() {
                                Some(item) => Some(item),
                                None => tokio::time::timeout(COALESCE, s.next()).await.ok(),
                            };
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "StackPath log stream broke");
                        ended = true;
                    }
                    None => ended = true,
                }
            }
            if !batch.is_empty() && !out.send(batch.freeze()).await {
                return;
            }
            if ended {
                break;
            }
        }
        if !q.follow || q.previous {
            let mut last = BytesMut::new();
            lines.finish(&mut dedup, q.timestamps, &mut last);
            if !last.is_empty() {
                out.send(last.freeze()).await;
            }
            return;
        }
        let mut end = BytesMut::new();
        lines.cut(&mut end);
        if !end.is_empty() && !out.send(end.freeze()).await {
            return;
        }
        if !still_running(&state, &loc).await {
            return;
        }
        let backoff = state.limits.log_resume_backoff * (1 << failures.min(5));
        tokio::select! {
            _ = tx.closed() => return,
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let opts = match dedup.resume_from() {
            Some(t) => LogOptions {
                since_time: Some(t),
                since_seconds: None,
                tail_lines: None,
                ..first.clone()
            },
            None => first.clone(),
        };
        match state
            .stackpath
            .instance_logs(&loc.workload_id, &loc.instance_name, &opts)
            .await
        {
            Ok(s) => {
                stream = Some(s);
                dedup.resumed();
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "cannot resume the StackPath log stream");
                if failures > 20 {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!(
                            "log stream from StackPath could not be resumed: {e}"
                        ))))
                        .await;
                    return;
                }
                stream = None;
            }
        }
    }
}

/// Whether the container may still produce output (then a cut stream is resumed).
async fn still_running(state: &AppState, loc: &ContainerLocation) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(10),
        state
            .stackpath
            .get_instance(&loc.workload_id, &loc.instance_name),
    )
    .await
    {
        Ok(Ok(inst)) => {
            let phase_ok = matches!(
                inst.phase,
                Some(InstancePhase::Running) | Some(InstancePhase::Starting) | None
            );
            let terminated = inst
                .container_statuses
                .iter()
                .any(|c| c.name.as_deref() == Some(&loc.container) && c.terminated.is_some());
            phase_ok && !terminated
        }
        Ok(Err(e)) => !e.is_not_found(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn resumed_streams_skip_what_was_sent() {
        let mut d = Dedup::default();
        assert!(d.admit(t("2026-01-01T00:00:01Z")));
        assert!(d.admit(t("2026-01-01T00:00:02Z")));
        assert!(d.admit(t("2026-01-01T00:00:02Z")));
        d.resumed();
        // The resumed stream starts at :02 and repeats both :02 lines, then a third one.
        assert!(!d.admit(t("2026-01-01T00:00:02Z")));
        assert!(!d.admit(t("2026-01-01T00:00:02Z")));
        assert!(d.admit(t("2026-01-01T00:00:02Z")));
        assert!(d.admit(t("2026-01-01T00:00:03Z")));
        assert!(!d.admit(t("2026-01-01T00:00:01Z")));
        assert!(d.admit(None));
    }

    #[test]
    fn timestamps_split_off() {
        let (ts, rest) = split_timestamp(b"2026-11-26T00:00:00.123456789Z hello world\n");
        assert!(ts.is_some());
        assert_eq!(rest, b"hello world\n");
        let (ts, rest) = split_timestamp(b"no timestamp here\n");
        assert!(ts.is_none());
        assert_eq!(rest, b"no timestamp here\n");
    }

    #[test]
    fn a_line_longer_than_the_bound_passes_through_in_pieces() {
        // 100 MB without a newline, then its end, fed as a socket delivers it.
        let total = 100_000_000usize;
        let chunk = vec![b'a'; 64 << 10];
        let mut lines = Lines::default();
        let mut dedup = Dedup::default();
        let mut shown = 0usize;
        let mut most_held = 0usize;
        let mut fed = 0usize;
        let first = b"2026-01-01T00:00:01Z ";
        let mut out = BytesMut::new();
        lines.feed(first, &mut dedup, false, &mut out);
        while fed < total {
            let n = chunk.len().min(total - fed);
            let mut out = BytesMut::new();
            lines.feed(&chunk[..n], &mut dedup, false, &mut out);
            if fed == 0 {
                assert!(out.starts_with(b"aaaa"), "the timestamp is cut off");
            }
            shown += out.len();
            most_held = most_held.max(lines.held());
            fed += n;
            // Past the bound, what comes in goes out in the same call.
            if fed > MAX_HELD_LINE {
                assert_eq!(lines.held(), 0);
            }
        }
        let mut out = BytesMut::new();
        lines.feed(
            b"\n2026-01-01T00:00:02Z next\n",
            &mut dedup,
            false,
            &mut out,
        );
        assert_eq!(&out[..], b"\nnext\n");
        assert_eq!(shown, total);
        assert!(most_held <= MAX_HELD_LINE, "held {most_held} bytes");
    }

    #[test]
    fn lines_split_anywhere_come_out_whole_and_deduplicated() {
        let text = b"2026-01-01T00:00:01Z a\n2026-01-01T00:00:02Z bb\n2026-01-01T00:00:02Z ccc\n";
        for cut in 0..text.len() {
            let mut lines = Lines::default();
            let mut dedup = Dedup::default();
            let mut out = BytesMut::new();
            lines.feed(&text[..cut], &mut dedup, false, &mut out);
            lines.feed(&text[cut..], &mut dedup, false, &mut out);
            assert_eq!(&out[..], b"a\nbb\nccc\n", "cut at {cut}");
        }
        // A resumed stream repeating from :02 shows only what is new.
        let mut lines = Lines::default();
        let mut dedup = Dedup::default();
        let mut out = BytesMut::new();
        lines.feed(text, &mut dedup, true, &mut out);
        dedup.resumed();
        let mut again = BytesMut::new();
        lines.feed(
            b"2026-01-01T00:00:02Z bb\n2026-01-01T00:00:02Z ccc\n2026-01-01T00:00:03Z d\n",
            &mut dedup,
            false,
            &mut again,
        );
        assert_eq!(&again[..], b"d\n");
    }

    #[test]
    fn a_long_line_cut_by_stackpath_is_ended_and_not_repeated() {
        let mut lines = Lines::default();
        let mut dedup = Dedup::default();
        let mut out = BytesMut::new();
        let mut long = b"2026-01-01T00:00:01Z ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_HELD_LINE * 2));
        lines.feed(&long, &mut dedup, false, &mut out);
        let shown = out.len();
        assert_eq!(shown, MAX_HELD_LINE * 2);
        lines.cut(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        dedup.resumed();
        // The resumed stream sends the whole line again, then the next.
        let mut again = BytesMut::new();
        long.push(b'\n');
        lines.feed(&long, &mut dedup, false, &mut again);
        lines.feed(b"2026-01-01T00:00:02Z y\n", &mut dedup, false, &mut again);
        assert_eq!(&again[..], b"y\n");
    }

    #[test]
    fn kept_logs_answer_the_query_as_a_live_stream_would() {
        let kept =
            b"2026-12-05T10:00:00Z one\n2026-12-05T10:00:05Z two\n2026-12-05T10:00:09Z three\n";
        let q = |s: &str| LogQuery::from_query(s).unwrap();
        let now = t("2026-12-05T10:00:10Z").unwrap();
        let view = |s: &str| String::from_utf8(kept_view(kept, &q(s), now).to_vec()).unwrap();
        assert_eq!(view(""), "one\ntwo\nthree\n");
        assert_eq!(view("follow=true"), "one\ntwo\nthree\n");
        assert_eq!(view("tailLines=2"), "two\nthree\n");
        assert_eq!(view("tailLines=0"), "");
        assert_eq!(view("sinceSeconds=6"), "two\nthree\n");
        assert_eq!(view("sinceTime=2026-12-05T10:00:06Z"), "three\n");
        assert_eq!(
            view("timestamps=true&tailLines=1"),
            "2026-12-05T10:00:09Z three\n"
        );
        assert_eq!(view("limitBytes=6"), "one\ntw");
    }

    #[test]
    fn query_is_validated() {
        let q = LogQuery::from_query("follow=true&tailLines=5&timestamps=1&limitBytes=10").unwrap();
        assert!(q.follow && q.timestamps);
        assert_eq!((q.tail_lines, q.limit_bytes), (Some(5), Some(10)));
        assert!(LogQuery::from_query("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z").is_err());
        assert!(LogQuery::from_query("tailLines=-1").is_err());
        assert!(LogQuery::from_query("sinceTime=yesterday").is_err());
    }
}
