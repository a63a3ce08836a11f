//! The client's error type: what went wrong, on which call, with StackPath's own message.

use std::fmt;
use std::time::Duration;

use crate::model::{ApiStatus, ApiStatusDetail};
use crate::redact::{MAX_FIELD_CHARS, cap};

/// Which API call an error belongs to: the HTTP method and the spec's route template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation {
    pub method: &'static str,
    pub route: &'static str,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.route)
    }
}

/// Errors of the StackPath client. Each names the call that failed and carries the API's
/// message; none ever contains a secret of the request (client secret, token, `Secret` values
/// of the body), and each text from the server is capped at 1 KiB. The `Display` text is
/// complete on its own (callers often keep only it); `source()` gives the typed cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("StackPath API {op}: not found: {message}")]
    NotFound { op: Operation, message: String },

    #[error("StackPath API {op}: conflict (already exists or changed meanwhile): {message}")]
    Conflict { op: Operation, message: String },

    #[error(
        "StackPath API {op}: unauthorized: {message} (check the API client id and secret, \
         SP_CLIENT_ID / SP_CLIENT_SECRET)"
    )]
    Unauthorized { op: Operation, message: String },

    #[error(
        "StackPath API {op}: forbidden: {message} (check that the API client may use this stack, \
         SP_STACK_ID)"
    )]
    Forbidden { op: Operation, message: String },

    #[error("StackPath API {op}: rate limited{}: {message}", fmt_retry_after(*.retry_after))]
    RateLimited {
        op: Operation,
        retry_after: Option<Duration>,
        message: String,
    },

    #[error("StackPath API {op}: invalid request: {message}{}", fmt_details(.details))]
    Invalid {
        op: Operation,
        message: String,
        details: Vec<ApiStatusDetail>,
    },

    #[error("StackPath API {op}: server error (HTTP {status}): {message}")]
    Server {
        op: Operation,
        status: u16,
        message: String,
    },

    /// The call did not complete: connection refused or lost, TLS failure, timeout.
    /// `request_sent` tells whether the server may have received (and acted on) the request.
    #[error("StackPath API {op}: {message}")]
    Transport {
        op: Operation,
        message: String,
        request_sent: bool,
        #[source]
        source: Option<reqwest::Error>,
    },

    /// The server answered 2xx with a body this client cannot read.
    #[error("StackPath API {op}: unreadable response: {message}")]
    Decode { op: Operation, message: String },

    /// The server answered 2xx with a body larger than the client accepts (read up to the
    /// limit, or announced so by its `Content-Length`).
    #[error(
        "StackPath API {op}: the response is larger than {limit} bytes{}; ask for less (a \
         smaller page or time range) or raise the limit (Config::max_response_bytes, \
         max_metrics_response_bytes for metrics)",
        fmt_announced(*.announced)
    )]
    TooLarge {
        op: Operation,
        limit: usize,
        /// The size the server announced, when it did.
        announced: Option<u64>,
    },

    /// The request could not be serialized (a bug in the caller's data, e.g. a map with
    /// non-string keys).
    #[error("StackPath API {op}: cannot serialize the request: {source}")]
    Encode {
        op: Operation,
        #[source]
        source: serde_json::Error,
    },

    #[error("StackPath client configuration: {message}{}", fmt_cause(.source))]
    Config {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The cause, in the text too: callers often keep only `to_string()`, and it must still say
/// what went wrong (the typed source stays available to callers that inspect it).
fn fmt_cause(source: &Option<Box<dyn std::error::Error + Send + Sync>>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

fn fmt_announced(n: Option<u64>) -> String {
    n.map(|n| format!(" (it announced {n})"))
        .unwrap_or_default()
}

fn fmt_retry_after(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (retry after {}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

/// Details shown in an error's text; the rest are counted.
const MAX_SHOWN_DETAILS: usize = 8;

fn fmt_details(details: &[ApiStatusDetail]) -> String {
    if details.is_empty() {
        return String::new();
    }
    let mut parts: Vec<String> = details
        .iter()
        .take(MAX_SHOWN_DETAILS)
        .map(|d| {
            let mut text = d.to_string();
            cap(&mut text, MAX_FIELD_CHARS);
            text
        })
        .collect();
    if details.len() > MAX_SHOWN_DETAILS {
        parts.push(format!("{} more", details.len() - MAX_SHOWN_DETAILS));
    }
    format!(" [{}]", parts.join("; "))
}

/// gRPC status codes the API puts in `code`.
mod grpc {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const ABORTED: i32 = 10;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const UNAUTHENTICATED: i32 = 16;
}

impl Error {
    /// Builds the error for a non-2xx answer. The gRPC `code` in the body wins over the HTTP
    /// status when it names a kind (the gateway maps them, but not always the same way);
    /// otherwise the status decides.
    pub(crate) fn from_response(
        op: Operation,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        let parsed: Option<ApiStatus> = serde_json::from_slice(body).ok();
        let code = parsed.as_ref().and_then(|s| s.code);
        let message = parsed
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| body_excerpt(status, body));
        let details = parsed.map(|s| s.details).unwrap_or_default();
        match (code, status) {
            (Some(grpc::NOT_FOUND), _) | (None | Some(0), 404) => Error::NotFound { op, message },
            (Some(grpc::ALREADY_EXISTS | grpc::ABORTED), _) | (None | Some(0), 409) => {
                Error::Conflict { op, message }
            }
            (Some(grpc::UNAUTHENTICATED), _) | (None | Some(0), 401) => {
                Error::Unauthorized { op, message }
            }
            (Some(grpc::PERMISSION_DENIED), _) | (None | Some(0), 403) => {
                Error::Forbidden { op, message }
            }
            (Some(grpc::RESOURCE_EXHAUSTED), _) | (_, 429) => Error::RateLimited {
                op,
                retry_after,
                message,
            },
            (Some(grpc::INVALID_ARGUMENT | grpc::FAILED_PRECONDITION | grpc::OUT_OF_RANGE), _)
            | (None | Some(0), 400 | 422) => Error::Invalid {
                op,
                message,
                details,
            },
            (_, s) if s >= 500 => Error::Server {
                op,
                status,
                message,
            },
            (_, 404) => Error::NotFound { op, message },
            (_, 409) => Error::Conflict { op, message },
            (_, 401) => Error::Unauthorized { op, message },
            (_, 403) => Error::Forbidden { op, message },
            _ => Error::Invalid {
                op,
                message,
                details,
            },
        }
    }

    /// The call this error belongs to (none for configuration errors).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::NotFound { op, .. }
            | Error::Conflict { op, .. }
            | Error::Unauthorized { op, .. }
            | Error::Forbidden { op, .. }
            | Error::RateLimited { op, .. }
            | Error::Invalid { op, .. }
            | Error::Server { op, .. }
            | Error::Transport { op, .. }
            | Error::Decode { op, .. }
            | Error::TooLarge { op, .. }
            | Error::Encode { op, .. } => Some(*op),
            Error::Config { .. } => None,
        }
    }

    /// A short, fixed label per variant for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::RateLimited { .. } => "rate_limited",
            Error::Invalid { .. } => "invalid",
            Error::Server { .. } => "server",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::TooLarge { .. } => "too_large",
            Error::Encode { .. } => "encode",
            Error::Config { .. } => "config",
        }
    }

    /// Whether the error is "the object does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether trying again later may succeed (rate limits, server errors, transport
    /// failures); a controller uses this to requeue instead of failing the pod.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Server { .. } | Error::Transport { .. }
        )
    }

    /// Whether the server may have acted on the request although no answer came back:
    /// a 5xx, or a transport failure after the request was sent.
    pub(crate) fn outcome_unknown(&self) -> bool {
        match self {
            Error::Server { .. } => true,
            Error::Transport { request_sent, .. } => *request_sent,
            _ => false,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source` (shown by callers that print the chain).
    pub(crate) fn config_caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Config {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The error's own text (StackPath's message, or what went wrong), if it has one.
    fn message_mut(&mut self) -> Option<&mut String> {
        match self {
            Error::NotFound { message, .. }
            | Error::Conflict { message, .. }
            | Error::Unauthorized { message, .. }
            | Error::Forbidden { message, .. }
            | Error::RateLimited { message, .. }
            | Error::Invalid { message, .. }
            | Error::Server { message, .. }
            | Error::Transport { message, .. }
            | Error::Decode { message, .. }
            | Error::Config { message, .. } => Some(message),
            Error::TooLarge { .. } | Error::Encode { .. } => None,
        }
    }

    /// Applies `f` to every text of the error that came from outside (the message and each
    /// string of `details`), in place: how secrets are masked and long texts capped.
    pub(crate) fn map_text(mut self, mut f: impl FnMut(&mut String)) -> Self {
        if let Some(message) = self.message_mut() {
            f(message);
        }
        if let Error::Invalid { details, .. } = &mut self {
            for detail in details {
                detail.map_strings(&mut f);
            }
        }
        self
    }
}

/// The start of a non-JSON error body, for the message (bodies can be HTML from a proxy).
fn body_excerpt(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        let mut excerpt: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
            excerpt.push('…');
        }
        format!("HTTP {status}: {excerpt}")
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    const OP: Operation = Operation {
        method: "GET",
        route: "/x",
    };

    fn classify(status: u16, body: &str) -> Error {
        Error::from_response(OP, status, body.as_bytes(), None)
    }

    #[test]
    fn grpc_code_classifies() {
        assert!(matches!(
            classify(404, r#"{"code":5,"message":"nope"}"#),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            classify(409, r#"{"code":6,"message":"dup"}"#),
            Error::Conflict { .. }
        ));
        assert!(matches!(
            classify(400, r#"{"code":3,"message":"bad"}"#),
            Error::Invalid { .. }
        ));
        assert!(matches!(
            classify(401, r#"{"code":16}"#),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(403, r#"{"code":7}"#),
            Error::Forbidden { .. }
        ));
        assert!(matches!(
            classify(429, r#"{"code":8}"#),
            Error::RateLimited { .. }
        ));
        // The code wins when the gateway picked an odd status.
        assert!(matches!(
            classify(500, r#"{"code":5,"message":"x"}"#),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            classify(400, r#"{"code":6}"#),
            Error::Conflict { .. }
        ));
    }

    #[test]
    fn status_classifies_without_code() {
        assert!(matches!(classify(404, ""), Error::NotFound { .. }));
        assert!(matches!(classify(409, "conflict"), Error::Conflict { .. }));
        assert!(matches!(
            classify(503, "<html>busy</html>"),
            Error::Server { status: 503, .. }
        ));
        assert!(matches!(classify(418, "teapot"), Error::Invalid { .. }));
    }

    #[test]
    fn message_and_details_carried() {
        let body = r#"{"code":3,"message":"workload is invalid","details":[{"@type":"stackpath.rpc.BadRequest","fieldViolations":[{"field":"workload.slug","description":"too long"}]}]}"#;
        let err = classify(400, body);
        let text = err.to_string();
        assert!(text.contains("workload is invalid"), "{text}");
        assert!(text.contains("workload.slug: too long"), "{text}");
        match err {
            Error::Invalid { details, .. } => {
                assert_eq!(details[0].field_violations()[0].field, "workload.slug")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn map_text_reaches_message_and_every_detail_string() {
        let body = r#"{"code":3,"message":"m-X","details":[{"@type":"t-X","k-X":["a-X",{"n-X":"b-X"}],"num":1}]}"#;
        let err = classify(400, body).map_text(|t| *t = t.replace('X', "Y"));
        let Error::Invalid {
            message, details, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(message, "m-Y");
        let json = serde_json::to_string(&details[0]).unwrap();
        assert_eq!(
            json,
            r#"{"@type":"t-Y","k-Y":["a-Y",{"n-Y":"b-Y"}],"num":1}"#
        );
        assert!(!format!("{err:?}").contains('X'));
    }

    #[test]
    fn many_details_are_counted_not_all_shown() {
        let details: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"@type":"t","n":{i},"s":"{}"}}"#, "z".repeat(3000)))
            .collect();
        let body = format!(
            r#"{{"code":3,"message":"m","details":[{}]}}"#,
            details.join(",")
        );
        let text = classify(400, &body).to_string();
        assert!(text.contains("42 more"), "{}", &text[text.len() - 50..]);
        assert!(text.len() < 9 * 1100, "{}", text.len());
    }

    #[test]
    fn config_error_says_its_cause_and_keeps_it_typed() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Error::config_caused("cannot read the CA file /x (SP_CA_FILE)", io);
        assert_eq!(
            err.to_string(),
            "StackPath client configuration: cannot read the CA file /x (SP_CA_FILE): no such file"
        );
        let source = std::error::Error::source(&err).expect("source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }

    proptest::proptest! {
        #[test]
        fn any_error_answer_classifies_and_redacts_within_bounds(
            status in 100u16..1000,
            body in proptest::prop_oneof![
                proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
                "\\PC{0,3000}".prop_map(String::into_bytes),
                ("[0-9-]{1,12}", "\\PC{0,2000}", "\\PC{0,2000}").prop_map(|(code, m, d)| {
                    serde_json::json!({"code": code.parse::<i64>().unwrap_or(0), "message": m,
                        "details": [{"@type": d.clone(), "f": [d]}]})
                    .to_string()
                    .into_bytes()
                }),
            ],
            secret in "[ -~]{1,20}",
            retry_after in proptest::option::of(proptest::num::u64::ANY),
        ) {
            // A secret of only `*` cannot be told from the mask (see `Redactor::new`).
            proptest::prop_assume!(secret.chars().any(|c| c != '*'));
            let retry_after = retry_after.map(std::time::Duration::from_secs);
            let err = Error::from_response(OP, status, &body, retry_after);
            let err = crate::redact::Redactor::new([secret.as_str()]).apply(err);
            let text = err.to_string();
            proptest::prop_assert!(text.chars().count() < 12_000, "{}", text.len());
            let debug = format!("{err:?}");
            proptest::prop_assert!(debug.len() < 200_000, "{}", debug.len());
            let mut texts = Vec::new();
            err.map_text(|t| texts.push(t.clone()));
            for t in texts {
                proptest::prop_assert!(!t.contains(&secret), "{:?} in {:?}", secret, t);
                proptest::prop_assert!(t.chars().count() <= crate::redact::MAX_FIELD_CHARS + 1);
            }
        }
    }

    #[test]
    fn non_json_body_is_quoted_briefly() {
        let long = "x".repeat(1000);
        let text = classify(502, &long).to_string();
        assert!(text.contains("HTTP 502"), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }
}
