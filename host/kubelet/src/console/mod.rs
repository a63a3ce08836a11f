//! The console bridge: one exec = one SSH session to StackPath's container console, with the
//! host key checked as configured, a PTY when asked, resizes as window-change, and the exit
//! status or signal mapped back. Every step of the set-up has a deadline, and a running
//! session whose console stops answering keepalives is closed.

mod hostkey;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::client::{self, AuthResult};
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::ConsoleConfig;
use crate::locator::ContainerLocation;
pub use hostkey::{CONSOLE_HOST_KEY_CONFIGMAP, ProbeOutcome, probe};
use hostkey::{address, step};

/// Terminal size, as the resize channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The streams of one exec, transport-neutral. A closed stdin is stdin EOF; a dropped output
/// receiver (client gone) ends the session.
#[derive(Debug)]
pub struct ExecIo {
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// Where the console takes stdin from: a byte stream it reads in place (no task in between);
/// end of stream or an error is EOF.
pub struct Input(pub Box<dyn AsyncRead + Send + Unpin>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

/// The next stdin chunk, `None` at EOF (never resolves without stdin). Cancel-safe: a read
/// that has not completed has consumed nothing.
async fn next_input(input: &mut Option<Input>, buf: &mut [u8]) -> Option<Bytes> {
    match input {
        Some(Input(r)) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
        },
        None => std::future::pending().await,
    }
}

/// A byte stream the console can write into directly; its owner closes it after the exec.
pub type SharedWriter = Arc<tokio::sync::Mutex<dyn AsyncWrite + Send + Unpin>>;

/// Where the console puts a command's output: written in place, without a task in between
/// (each hop between tasks is a wake-up on the keystroke → echo path).
pub struct Output {
    writer: SharedWriter,
    flush: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("flush", &self.flush)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// A writer that passes on what it is given at once (a SPDY stream queues frames for its
    /// session's writer; its flush would wait for them to be written).
    pub fn direct(writer: SharedWriter) -> Self {
        Output {
            writer,
            flush: false,
        }
    }

    /// A writer that holds data until flushed (a WebSocket sink): flushed after every chunk,
    /// as a terminal's output must be.
    pub fn flushed(writer: SharedWriter) -> Self {
        Output {
            writer,
            flush: true,
        }
    }

    /// Delivers `data`; `Err` when the client side is gone.
    async fn send(&self, data: Bytes) -> Result<(), ()> {
        let mut w = self.writer.lock().await;
        w.write_all(&data).await.map_err(|_| ())?;
        if self.flush {
            w.flush().await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// How the remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    Code(u32),
    /// Killed by a signal (name without `SIG`); the shell convention maps it to 128+n.
    Signal(String),
}

impl ExitOutcome {
    /// The exit code as a shell reports it.
    pub fn code(&self) -> u32 {
        match self {
            Self::Code(c) => *c,
            Self::Signal(s) => 128 + signal_number(s),
        }
    }
}

fn signal_number(name: &str) -> u32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

fn sig_name(s: &Sig) -> String {
    match s {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(c) => c.clone(),
    }
}

/// Why an exec could not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot reach the StackPath container console at {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error(
        "the StackPath container console at {addr} did not answer within {after:?} during {stage}; check --console-host and --console-port, and that the console is up"
    )]
    Timeout {
        addr: String,
        stage: &'static str,
        after: Duration,
    },
    #[error(
        "cannot verify the StackPath container console at {addr}: its SSH host key {fingerprint} is not in {looked_in}; pin StackPath's console key with --console-host-key or list it in --console-known-hosts (the shipped deployment takes both from the ConfigMap `{configmap}`), e.g. from `ssh-keyscan -p <port> <console host>` once its fingerprint is confirmed with StackPath",
        configmap = CONSOLE_HOST_KEY_CONFIGMAP
    )]
    HostKeyUnknown {
        addr: String,
        fingerprint: String,
        /// What was looked at (not an error source).
        looked_in: String,
    },
    #[error(
        "refusing the StackPath container console at {addr}: its SSH host key {fingerprint} does not match {expected}; if the console's key really changed, update --console-host-key or --console-known-hosts (the shipped deployment takes both from the ConfigMap `{configmap}`)",
        configmap = CONSOLE_HOST_KEY_CONFIGMAP
    )]
    HostKeyMismatch {
        addr: String,
        fingerprint: String,
        expected: String,
    },
    #[error(
        "the StackPath container console at {addr} rejected the login for {user} (check the stack id, the client id and secret, and that the instance is running)"
    )]
    AuthRejected { addr: String, user: String },
    #[error("SSH error talking to the container console at {addr}: {message}")]
    Ssh { addr: String, message: String },
    #[error("the container console closed the session without an exit status")]
    NoExitStatus,
    #[error(
        "the exec session was idle (no input or output) for {0:?} and was closed (--kubelet-stream-idle-timeout)"
    )]
    Idle(Duration),
}

impl ConsoleError {
    /// Whether the console's host key is the problem (an operator must fix the configuration).
    pub fn is_host_key(&self) -> bool {
        matches!(
            self,
            Self::HostKeyUnknown { .. } | Self::HostKeyMismatch { .. }
        )
    }
}

/// Joins argv into one command line for `sh -c`, quoting what needs it (SSH has no argv).
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let safe = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if safe {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Connects to the console and runs `argv` in the container, pumping `io` until the command
/// ends. `idle` closes a session with no traffic either way.
pub async fn exec(
    cfg: &ConsoleConfig,
    loc: &ContainerLocation,
    argv: &[String],
    tty: bool,
    mut io: ExecIo,
    idle: Duration,
) -> Result<ExitOutcome, ConsoleError> {
    let addr = address(cfg);
    // A console that stops answering is noticed by keepalives (three missed); an idle but
    // live session by `idle` below (SSH's own inactivity timer counts keepalive replies).
    let ssh_cfg = client::Config {
        keepalive_interval: Some(cfg.connect_timeout),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    let (mut session, _) = hostkey::connect(cfg, ssh_cfg).await?;
    let user = cfg.user(&loc.instance_name, &loc.container);
    let login = step(
        cfg,
        "login",
        session.authenticate_password(user.clone(), cfg.client_secret.expose()),
    )
    .await?;
    if let AuthResult::Failure { .. } = login {
        return Err(ConsoleError::AuthRejected { addr, user });
    }
    let channel = step(cfg, "opening a session", session.channel_open_session()).await?;
    if tty {
        // The first resize usually follows at once; start with the classic size.
        step(
            cfg,
            "requesting a terminal",
            channel.request_pty(false, "xterm", 80, 24, 0, 0, &[]),
        )
        .await?;
    }
    step(
        cfg,
        "starting the command",
        channel.exec(true, shell_join(argv).into_bytes()),
    )
    .await?;
    let (mut rd, wr) = channel.split();
    let mut outcome = None;
    // Stdin waits for the console's reply to the exec request: input (and its EOF) sent
    // before the command exists could be lost.
    let mut started = false;
    let mut stdin_open = io.stdin.is_some();
    let mut stdin_buf = vec![0u8; 32 << 10];
    let mut resize_open = io.resize.is_some();
    // The console confirms the command within the set-up deadline; then the session lives
    // while something moves either way.
    let start_by = tokio::time::Instant::now() + cfg.connect_timeout;
    let mut last_traffic = tokio::time::Instant::now();
    loop {
        let deadline = if started {
            last_traffic + idle
        } else {
            start_by
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let _ = session.disconnect(russh::Disconnect::ByApplication, "", "en").await;
                return Err(if started {
                    ConsoleError::Idle(idle)
                } else {
                    ConsoleError::Timeout { addr, stage: "starting the command", after: cfg.connect_timeout }
                });
            }
            msg = rd.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    last_traffic = tokio::time::Instant::now();
                    if let Some(out) = &io.stdout
                        && out.send(data).await.is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    last_traffic = tokio::time::Instant::now();
                    let out = io.stderr.as_ref().or(io.stdout.as_ref());
                    if let Some(out) = out
                        && out.send(data).await.is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    outcome = Some(ExitOutcome::Code(exit_status));
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    outcome = Some(ExitOutcome::Signal(sig_name(&signal_name)));
                }
                Some(ChannelMsg::Success) => {
                    started = true;
                    last_traffic = tokio::time::Instant::now();
                }
                Some(ChannelMsg::Failure) if !started => {
                    return Err(ConsoleError::Ssh {
                        addr,
                        message: "the console refused to run the command".into(),
                    });
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            chunk = next_input(&mut io.stdin, &mut stdin_buf), if stdin_open && started => match chunk {
                Some(data) => {
                    last_traffic = tokio::time::Instant::now();
                    if wr.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                None => {
                    stdin_open = false;
                    let _ = wr.eof().await;
                }
            },
            size = recv_opt(&mut io.resize), if resize_open => match size {
                Some(s) => {
                    last_traffic = tokio::time::Instant::now();
                    let _ = wr.window_change(u32::from(s.width), u32::from(s.height), 0, 0).await;
                }
                None => resize_open = false,
            },
        }
    }
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    outcome.ok_or(ConsoleError::NoExitStatus)
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_for_sh() {
        let a = |v: &[&str]| shell_join(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["ls", "-la", "/tmp"]), "ls -la /tmp");
        assert_eq!(
            a(&["sh", "-c", "echo 'hi' $X"]),
            r"sh -c 'echo '\''hi'\'' $X'"
        );
        assert_eq!(a(&[""]), "''");
    }

    #[test]
    fn signals_map_to_shell_codes() {
        assert_eq!(ExitOutcome::Signal("KILL".into()).code(), 137);
        assert_eq!(ExitOutcome::Code(3).code(), 3);
    }
}
