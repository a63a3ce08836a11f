//! The remote-command protocol: versions, options, and what the error channel carries.

use serde_json::json;

use crate::console::ExitOutcome;

/// Stream protocol versions, newest first (the order we prefer them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `channel.k8s.io`: no error stream semantics beyond text.
    V1,
    V2,
    /// Adds the resize stream.
    V3,
    /// The error stream carries a `metav1.Status` with the exit code.
    V4,
    /// Adds the close signal (WebSocket channel 255) for half-closing stdin.
    V5,
}

pub const SUPPORTED: [Protocol; 5] = [
    Protocol::V5,
    Protocol::V4,
    Protocol::V3,
    Protocol::V2,
    Protocol::V1,
];

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "channel.k8s.io",
            Self::V2 => "v2.channel.k8s.io",
            Self::V3 => "v3.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        SUPPORTED.into_iter().find(|p| p.name() == s.trim())
    }

    pub fn supports_resize(self) -> bool {
        self >= Self::V3
    }
}

/// Picks the first of the client's protocols (in the client's order, as the kubelet does) that
/// we support. `Ok(None)` when the client offered none (legacy: v1).
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Result<Protocol, String> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(Protocol::V1);
    }
    offered
        .iter()
        .find_map(|p| Protocol::from_name(p))
        .ok_or_else(|| {
            format!(
                "unable to upgrade connection: unable to negotiate protocol: client supports {:?}, server accepts {:?}",
                offered,
                SUPPORTED.map(Protocol::name)
            )
        })
}

/// The query of `/exec/...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl ExecOptions {
    /// Parses the query string (`command` repeats; booleans as Go's `strconv.ParseBool`).
    pub fn from_query(query: &str) -> Result<Self, String> {
        Self::parse(query, true)
    }

    /// As [`ExecOptions::from_query`]; `/attach` has no command.
    pub fn parse(query: &str, need_command: bool) -> Result<Self, String> {
        let mut o = Self::default();
        for (k, v) in form_pairs(query) {
            let flag = |v: &str| {
                parse_bool(v)
                    .ok_or_else(|| format!("invalid value {v:?} for {k}: want true or false"))
            };
            match k.as_str() {
                "command" => o.command.push(v),
                "input" | "stdin" => o.stdin = flag(&v)?,
                "output" | "stdout" => o.stdout = flag(&v)?,
                "error" | "stderr" => o.stderr = flag(&v)?,
                "tty" => o.tty = flag(&v)?,
                _ => {}
            }
        }
        if need_command && o.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        if o.tty && o.stderr {
            // kubectl never asks for both; a TTY merges stderr into stdout.
            o.stderr = false;
        }
        Ok(o)
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    url_decode_pairs(query)
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the error stream carries when the command ended (`None`: nothing, stream just closes).
pub fn exit_message(protocol: Protocol, argv: &[String], outcome: &ExitOutcome) -> Option<Vec<u8>> {
    let code = outcome.code();
    if protocol >= Protocol::V4 {
        let body = if code == 0 {
            json!({"metadata": {}, "status": "Success"})
        } else {
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            })
        };
        Some(body.to_string().into_bytes())
    } else if code == 0 {
        None
    } else {
        Some(format!("command terminated with non-zero exit code: exit code {code}").into_bytes())
    }
}

/// What the error stream carries when the exec failed before or while running.
pub fn failure_message(protocol: Protocol, message: &str) -> Vec<u8> {
    if protocol >= Protocol::V4 {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500
        })
        .to_string()
        .into_bytes()
    } else {
        message.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert_eq!(
            negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Ok(Protocol::V4)
        );
        assert_eq!(
            negotiate(["v5.channel.k8s.io,v4.channel.k8s.io"]),
            Ok(Protocol::V5)
        );
        assert_eq!(negotiate([]), Ok(Protocol::V1));
        assert!(negotiate(["v9.channel.k8s.io"]).is_err());
    }

    #[test]
    fn options_parse_like_the_kubelet() {
        let o = ExecOptions::from_query(
            "command=sh&command=-c&command=echo%20a%2Bb&stdout=true&stderr=1",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo a+b"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert!(ExecOptions::from_query("stdout=true").is_err());
        assert!(ExecOptions::from_query("command=ls").is_err());
        assert!(ExecOptions::from_query("command=ls&stdout=maybe").is_err());
    }

    #[test]
    fn v4_status_carries_the_exit_code() {
        let argv = vec!["false".to_string()];
        let m = exit_message(Protocol::V4, &argv, &ExitOutcome::Code(3)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let ok = exit_message(Protocol::V5, &argv, &ExitOutcome::Code(0)).unwrap();
        assert_eq!(ok, br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(
            exit_message(Protocol::V2, &argv, &ExitOutcome::Code(0)),
            None
        );
    }
}
