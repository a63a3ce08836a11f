//! Instance logs: the query options of `GetLogs` and the byte stream that comes back.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use crate::error::{Error, Operation};
use crate::routes;

/// The most bytes [`LogStream::collect_bytes`] gathers.
pub(crate) const MAX_COLLECTED_BYTES: usize = 64 << 20;

/// The options of `GET …/instances/{instance_name}/logs`, mirroring `kubectl logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container_name: Option<String>,
    /// Keep the stream open and send new lines as they come.
    pub follow: bool,
    /// The previous run of the container (after a restart).
    pub previous: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl LogOptions {
    /// The query string pairs, in the spec's names. Booleans go only when set; int64 values
    /// are decimal strings as in the spec.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(c) = &self.container_name {
            q.push(("container_name", c.clone()));
        }
        if self.follow {
            q.push(("follow", "true".to_owned()));
        }
        if self.previous {
            q.push(("previous", "true".to_owned()));
        }
        if let Some(s) = self.since_seconds {
            q.push(("since_seconds", s.to_string()));
        }
        if let Some(t) = &self.since_time {
            q.push((
                "since_time",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ));
        }
        if self.timestamps {
            q.push(("timestamps", "true".to_owned()));
        }
        if let Some(n) = self.tail_lines {
            q.push(("tail_lines", n.to_string()));
        }
        if let Some(n) = self.limit_bytes {
            q.push(("limit_bytes", n.to_string()));
        }
        q
    }
}

/// The log bytes as they arrive. Ends (`None`) when the server closes the stream; yields one
/// `Err` and then ends if the connection breaks or stays silent past the idle timeout.
pub struct LogStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStream")
    }
}

impl LogStream {
    pub(crate) fn new(op: Operation, response: reqwest::Response, idle: Option<Duration>) -> Self {
        struct St<S> {
            body: S,
            done: bool,
        }
        let state = St {
            body: response.bytes_stream().boxed(),
            done: false,
        };
        let inner = futures::stream::unfold(state, move |mut st| async move {
            if st.done {
                return None;
            }
            let next = match idle {
                Some(idle) => match tokio::time::timeout(idle, st.body.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        st.done = true;
                        let err = Error::Transport {
                            op,
                            message: format!(
                                "log stream idle for {}s; closed it (log_idle_timeout)",
                                idle.as_secs_f64()
                            ),
                            request_sent: true,
                            source: None,
                        };
                        return Some((Err(err), st));
                    }
                },
                None => st.body.next().await,
            };
            match next {
                Some(Ok(chunk)) => Some((Ok(chunk), st)),
                Some(Err(e)) => {
                    st.done = true;
                    let err = Error::Transport {
                        op,
                        message: format!("log stream broke: {e}"),
                        request_sent: true,
                        source: Some(e),
                    };
                    Some((Err(err), st))
                }
                None => None,
            }
        });
        Self {
            inner: Box::pin(inner),
        }
    }

    pub(crate) fn from_stream(
        s: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
    ) -> Self {
        Self { inner: Box::pin(s) }
    }

    /// Reads the whole stream into memory (for tests and small, non-follow reads), at most
    /// 64 MiB; a longer log is [`Error::TooLarge`] (ask for less with
    /// `limit_bytes` or `tail_lines`, or read the stream chunk by chunk).
    pub async fn collect_bytes(mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            if chunk.len() > MAX_COLLECTED_BYTES - out.len() {
                return Err(Error::TooLarge {
                    op: routes::INSTANCE_LOGS,
                    limit: MAX_COLLECTED_BYTES,
                    announced: None,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl Stream for LogStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_follow_the_spec() {
        let opts = LogOptions {
            container_name: Some("app".into()),
            follow: true,
            previous: true,
            since_seconds: Some(30),
            since_time: Some(
                DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
                    .unwrap()
                    .into(),
            ),
            timestamps: true,
            tail_lines: Some(10),
            limit_bytes: Some(4096),
        };
        let q: Vec<String> = opts
            .to_query()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            q,
            [
                "container_name=app",
                "follow=true",
                "previous=true",
                "since_seconds=30",
                "since_time=2026-11-25T10:00:00Z",
                "timestamps=true",
                "tail_lines=10",
                "limit_bytes=4096"
            ]
        );
        assert!(LogOptions::default().to_query().is_empty());
    }
}
