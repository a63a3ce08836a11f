//! Client configuration: where the API is (`SP_API_HOST` semantics), which CAs to trust
//! beyond the system's (`SP_CA_FILE`), credentials, timeouts, retries and the rate limit.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use crate::error::{Error, Result};
use crate::observer::CallObserver;
use crate::ratelimit::RateLimit;
use crate::retry::RetryPolicy;
use crate::secret::Secret;

/// The API host when `SP_API_HOST` is unset, as in the Go provider.
pub const DEFAULT_API_HOST: &str = "gateway.stackpath.com";

/// The OAuth2 scope the Go provider asked for.
pub const DEFAULT_SCOPE: &str = "workloads";

/// Everything the client needs. Build with [`Config::new`], then adjust the public fields.
#[derive(Clone)]
pub struct Config {
    /// The API's base URL (scheme, host, port, optional path prefix); see [`parse_api_host`].
    pub base_url: Url,
    pub stack_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// OAuth2 scope sent with the token request; `None` sends none.
    pub scope: Option<String>,
    /// A PEM file of extra CAs to trust, added to the system roots (never replacing them).
    pub ca_file: Option<PathBuf>,
    /// Time allowed to open a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for one HTTP attempt, token requests included: connecting, sending, and
    /// the whole response body (for log streams, until the response headers; their body has
    /// `log_idle_timeout`). Each retry gets its own.
    pub request_timeout: Duration,
    /// A log stream that delivers no byte for this long ends with an error; `None` waits
    /// forever (a quiet `logs -f` is legitimate, so keep this generous).
    pub log_idle_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// The largest response body accepted, but for metrics; a larger one fails the call with
    /// [`Error::TooLarge`]. A page of 1,000 workloads is about 5 MiB.
    pub max_response_bytes: usize,
    /// The largest metrics response accepted. An hour of 1-minute CPU and memory samples for
    /// 10,000 instances, asked for the whole stack at once, is about 60 MiB.
    pub max_metrics_response_bytes: usize,
    /// Client-side request rate limit, shared by all clones of the client; `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// The version in the user agent `vk-stackpath/<version>`.
    pub user_agent_version: String,
    /// Called once per HTTP attempt, for metrics.
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl Config {
    /// A configuration with defaults: `api_host` as `SP_API_HOST` (empty means
    /// [`DEFAULT_API_HOST`]); 5 s connect and 30 s request timeouts; 5 retries; 20 requests/s
    /// with bursts of 40; responses up to 32 MiB (metrics 256 MiB).
    pub fn new(
        api_host: &str,
        stack_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self> {
        let stack_id = stack_id.into();
        let client_id = client_id.into();
        let client_secret = client_secret.into();
        if stack_id.trim().is_empty() {
            return Err(Error::config("the stack id is empty; set SP_STACK_ID"));
        }
        if client_id.trim().is_empty() || client_secret.is_empty() {
            return Err(Error::config(
                "the API client id or secret is empty; set SP_CLIENT_ID and SP_CLIENT_SECRET",
            ));
        }
        Ok(Self {
            base_url: parse_api_host(api_host)?,
            stack_id,
            client_id,
            client_secret,
            scope: Some(DEFAULT_SCOPE.to_owned()),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            log_idle_timeout: Some(Duration::from_secs(30 * 60)),
            retry: RetryPolicy::default(),
            max_response_bytes: 32 << 20,
            max_metrics_response_bytes: 256 << 20,
            rate_limit: Some(RateLimit::default()),
            user_agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            observer: None,
        })
    }

    /// The `User-Agent` header value.
    pub fn user_agent(&self) -> String {
        format!("vk-stackpath/{}", self.user_agent_version)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url.as_str())
            .field("stack_id", &self.stack_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("log_idle_timeout", &self.log_idle_timeout)
            .field("retry", &self.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .field(
                "max_metrics_response_bytes",
                &self.max_metrics_response_bytes,
            )
            .field("rate_limit", &self.rate_limit)
            .field("user_agent_version", &self.user_agent_version)
            .field("observer", &self.observer.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Reads `SP_API_HOST` the way the Go provider did, and a little more:
/// - empty → `https://gateway.stackpath.com`;
/// - `host` or `host:port` (IPv6 in brackets) → `https://host[:port]`;
/// - a full `https://…` URL, optionally with a path prefix;
/// - `http://…` only to a loopback address (127.0.0.0/8, ::1, `localhost`), since the
///   bearer token and client secret must not cross a network in clear text.
pub fn parse_api_host(input: &str) -> Result<Url> {
    let input = input.trim();
    let input = if input.is_empty() {
        DEFAULT_API_HOST
    } else {
        input
    };
    let candidate = if input.contains("://") {
        input.to_owned()
    } else {
        format!("https://{input}")
    };
    let mut url = Url::parse(&candidate).map_err(|e| {
        Error::config(format!(
            "SP_API_HOST {input:?} is not a host, host:port or URL ({e}); \
             expected e.g. gateway.stackpath.com or https://127.0.0.1:8443"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "SP_API_HOST must not carry credentials in the URL; use SP_CLIENT_ID and \
             SP_CLIENT_SECRET (got a URL for host {:?})",
            url.host_str().unwrap_or_default()
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!(
            "SP_API_HOST {input:?} must not have a query or fragment"
        )));
    }
    let host = url
        .host()
        .ok_or_else(|| Error::config(format!("SP_API_HOST {input:?} has no host name")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&host) {
                return Err(Error::config(format!(
                    "SP_API_HOST {input:?} uses plain http to a non-loopback host; plain http \
                     is allowed only to 127.0.0.0/8, ::1 or localhost. Use https (add the \
                     server's CA with SP_CA_FILE if it is private)"
                )));
            }
        }
        other => {
            return Err(Error::config(format!(
                "SP_API_HOST {input:?} has scheme {other:?}; use https (or http to loopback)"
            )));
        }
    }
    // A trailing slash would make joined paths ambiguous; the base keeps none.
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_api_host(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn host_forms() {
        assert_eq!(ok(""), "https://gateway.stackpath.com/");
        assert_eq!(
            ok("gateway.stackpath.com"),
            "https://gateway.stackpath.com/"
        );
        assert_eq!(ok("api.example.com:8443"), "https://api.example.com:8443/");
        assert_eq!(ok("[::1]:8443"), "https://[::1]:8443/");
        assert_eq!(
            ok("https://api.example.com/prefix/"),
            "https://api.example.com/prefix"
        );
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok("http://127.1.2.3:8080"), "http://127.1.2.3:8080/");
        assert_eq!(ok("http://localhost:8080"), "http://localhost:8080/");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080/");
    }

    #[test]
    fn refuses_plain_http_off_loopback() {
        for s in [
            "http://gateway.stackpath.com",
            "http://10.0.0.1:80",
            "http://[2001:db8::1]",
        ] {
            let err = parse_api_host(s).unwrap_err().to_string();
            assert!(err.contains("plain http"), "{s}: {err}");
        }
    }

    #[test]
    fn refuses_odd_urls() {
        assert!(parse_api_host("ftp://x").is_err());
        assert!(parse_api_host("https://user:pw@x").is_err());
        assert!(
            !parse_api_host("https://user:pw@x")
                .unwrap_err()
                .to_string()
                .contains("pw")
        );
        assert!(parse_api_host("https://x/?a=b").is_err());
        assert!(parse_api_host("https://").is_err());
    }

    #[test]
    fn config_debug_hides_secret() {
        let c = Config::new("", "stack", "id", "very-secret-value").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret-value"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn config_requires_credentials() {
        assert!(Config::new("", "", "id", "s").is_err());
        assert!(Config::new("", "stack", "", "s").is_err());
        assert!(Config::new("", "stack", "id", "").is_err());
    }
}
