//! The container console: an SSH server like StackPath's (`container-console…:9600`).
//!
//! User `<stack id>.<instance name>.<container>.<client id>`, password = the client secret.
//! An exec request's command arrives as one string (SSH has no argv) and is run as
//! `sh -c '<string>'` in the container's directory with its env — the same as
//! `kubectl exec` through a kubelet that joins argv with shell quoting. A shell request runs
//! `sh` (interactive with a PTY). With a PTY the process gets a real terminal
//! (`pty-process`), window-change resizes it; without one it gets pipes, stdout on the data
//! stream and stderr on extended data. Stdin and its EOF are forwarded, signals go to the
//! process group, the exit status is sent before the channel closes.
//!
//! Commands run locally with or without `run_containers` (same trust model, see the crate
//! docs): a console is useless for development otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::ssh_key::{self, LineEnding, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Server as _, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::mounts::Plan;
use crate::processes::{container_dir, container_env, exit_code};
use crate::state::Shared;

pub(crate) struct Console {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
    pub public_key_openssh: String,
    pub fingerprint: String,
}

fn host_key(path: Option<&Path>) -> Result<PrivateKey, Error> {
    let generate = || {
        let seed: [u8; 32] = rand::random();
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed))
    };
    let Some(path) = path else {
        return Ok(generate());
    };
    let herr = |message: String| Error::HostKey {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| herr(format!("not an unencrypted OpenSSH private key: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate();
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| herr(format!("cannot encode the new key: {e}")))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| herr(format!("cannot create its directory: {e}")))?;
            }
            write_private(path, text.as_bytes())
                .map_err(|e| herr(format!("cannot write it: {e}")))?;
            Ok(key)
        }
        Err(e) => Err(herr(format!("cannot read it: {e}"))),
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

pub(crate) async fn start(
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<Console, Error> {
    let key = host_key(shared.config.ssh_host_key.as_deref())?;
    let public = key.public_key();
    let public_key_openssh = public
        .to_openssh()
        .map_err(|e| Error::Ssh(format!("cannot encode the host key: {e}")))?;
    let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        methods: MethodSet::from(&[MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            what: "SSH console",
            addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        what: "SSH console",
        addr,
        source,
    })?;
    let mut server = ConsoleServer { shared };
    let task = tokio::spawn(async move {
        let running = server.run_on_socket(config, &listener);
        let handle = running.handle();
        tokio::select! {
            r = running => if let Err(e) = r { tracing::warn!(error = %e, "SSH console stopped") },
            _ = cancel.cancelled() => handle.shutdown("emulator shutting down".into()),
        }
    });
    Ok(Console {
        addr: bound,
        task,
        public_key_openssh,
        fingerprint,
    })
}

#[derive(Clone)]
struct ConsoleServer {
    shared: Arc<Shared>,
}

impl russh::server::Server for ConsoleServer {
    type Handler = Conn;
    fn new_client(&mut self, _peer: Option<SocketAddr>) -> Conn {
        Conn {
            shared: self.shared.clone(),
            target: None,
            channels: HashMap::new(),
        }
    }
}

/// The container a session is logged in to.
#[derive(Clone)]
struct Target {
    instance: String,
    instance_id: String,
    container: String,
    spec: Value,
    /// The instance as the API renders it (for `instanceFieldRef` env values).
    rendered: Value,
}

enum Input {
    Data(Bytes),
    Eof,
    Resize(u16, u16),
}

#[derive(Default)]
struct Chan {
    pty: Option<(u16, u16, String)>,
    input: Option<mpsc::UnboundedSender<Input>>,
    pgid: Option<i32>,
    /// Key of its process group in the registry (removed when the process exits).
    owner: Option<String>,
    started: bool,
}

struct Conn {
    shared: Arc<Shared>,
    target: Option<Target>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    /// Parse `<stack>.<instance>.<container>.<client id>` and find the container.
    fn resolve(&self, user: &str) -> Option<Target> {
        let cfg = &self.shared.config;
        let (stack, rest) = cfg.stack_ids.iter().find_map(|s| {
            user.strip_prefix(s.as_str())?
                .strip_prefix('.')
                .map(|r| (s, r))
        })?;
        let (rest, client) = rest.rsplit_once('.')?;
        if client != cfg.client_id {
            return None;
        }
        let (instance, container) = rest.split_once('.')?;
        let store = self.shared.lock();
        let st = store.stacks.get(stack)?;
        for w in st.workloads.values() {
            if w.delete_requested_at.is_some() {
                continue;
            }
            let Some(i) = w.instances.iter().find(|i| i.name == instance) else {
                continue;
            };
            let spec = w
                .body
                .pointer(&format!("/spec/containers/{container}"))
                .cloned()?;
            let cx = self.shared.render_ctx(stack, chrono::Utc::now());
            return Some(Target {
                instance: instance.to_string(),
                instance_id: i.id.clone(),
                container: container.to_string(),
                spec,
                rendered: crate::model::render_instance(
                    w,
                    i,
                    &cx,
                    crate::locations::location(&i.city),
                ),
            });
        }
        None
    }

    fn spawn(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        handle: Handle,
    ) -> Result<(), String> {
        let Some(t) = self.target.clone() else {
            return Err("not authenticated".into());
        };
        let chan = self.channels.entry(channel).or_default();
        if chan.started {
            return Err("a command already runs on this channel".into());
        }
        chan.started = true;
        let dir = container_dir(&self.shared, &t.instance, &t.container)
            .map_err(|e| format!("cannot create the container directory: {e}"))?;
        let (mut env, _) = container_env(&t.spec, &t.rendered, &dir);
        // A container with volumes runs in its own mount namespace: the exec joins it, so it
        // sees what the container sees at the mount paths.
        // `_ns` stays open until the spawn below: the child joins it by descriptor.
        let (_ns, mut join) = match self.shared.processes.view(&t.instance_id, &t.container) {
            Some(view) => {
                let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", view.pid)).map_err(|e| {
                    format!(
                        "container {} of instance {} is not running (its mount namespace is gone: {e})",
                        t.container, t.instance
                    )
                })?;
                let plan = Plan::join(ns.as_raw_fd(), &view, &dir)
                    .map_err(|e| format!("cannot enter the container's mounts: {e}"))?;
                (Some(ns), Some(plan))
            }
            None => (None, None),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        chan.input = Some(tx);
        let owner = format!("exec:{}", uuid::Uuid::new_v4());
        let shared = self.shared.clone();
        let pgid = match chan.pty.clone() {
            Some((cols, rows, term)) => {
                env.push((
                    "TERM".into(),
                    if term.is_empty() {
                        "xterm".into()
                    } else {
                        term
                    },
                ));
                let (pty, pts) =
                    pty_process::open().map_err(|e| format!("cannot open a pty: {e}"))?;
                let _ = pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                let mut cmd = pty_process::Command::new("sh");
                cmd = match &command {
                    Some(c) => cmd.arg("-c").arg(c),
                    None => cmd.arg("-i"),
                };
                if let Some(plan) = join.take() {
                    // SAFETY: `apply` only makes system calls on strings built before the fork.
                    cmd = unsafe { cmd.pre_exec(move || plan.apply()) };
                }
                let child = cmd
                    .env_clear()
                    .envs(env)
                    .current_dir(&dir)
                    .spawn(pts)
                    .map_err(|e| format!("cannot start sh: {e}"))?;
                let pid = child.id().map(|p| p as i32);
                if let Some(p) = pid {
                    shared.processes.register(&owner, p);
                }
                chan.owner = Some(owner.clone());
                let (r, w) = pty.into_split();
                tokio::spawn(run_pty(shared, owner, child, r, w, rx, handle, channel));
                pid
            }
            None => {
                let mut cmd = tokio::process::Command::new("sh");
                match &command {
                    Some(c) => cmd.arg("-c").arg(c),
                    None => cmd.arg("-s"),
                };
                if let Some(plan) = join.take() {
                    // SAFETY: `apply` only makes system calls on strings built before the fork.
                    unsafe {
                        cmd.pre_exec(move || plan.apply());
                    }
                }
                cmd.env_clear()
                    .envs(env)
                    .current_dir(&dir)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0);
                let child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
                let pid = child.id().map(|p| p as i32);
                if let Some(p) = pid {
                    shared.processes.register(&owner, p);
                }
                chan.owner = Some(owner.clone());
                tokio::spawn(run_pipes(shared, owner, child, rx, handle, channel));
                pid
            }
        };
        if let Some(p) = pgid {
            self.shared
                .processes
                .register(&format!("channel:{channel:?}:{p}"), p);
        }
        chan.pgid = pgid;
        Ok(())
    }
}

fn sig_number(s: &Sig) -> i32 {
    match s {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(n) => match n.as_str() {
            "USR2" => libc::SIGUSR2,
            "WINCH" => libc::SIGWINCH,
            _ => libc::SIGTERM,
        },
    }
}

async fn forward_output(
    mut r: impl AsyncRead + Unpin,
    handle: Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let sent = match ext {
                    Some(code) => handle.extended_data(channel, code, data).await.is_ok(),
                    None => handle.data(channel, data).await.is_ok(),
                };
                if !sent {
                    return;
                }
            }
        }
    }
}

async fn finish(handle: &Handle, channel: ChannelId, code: i32) {
    let _ = handle.exit_status_request(channel, code as u32).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

#[allow(clippy::too_many_arguments)]
async fn run_pty(
    shared: Arc<Shared>,
    owner: String,
    mut child: tokio::process::Child,
    r: pty_process::OwnedReadPty,
    mut w: pty_process::OwnedWritePty,
    mut rx: mpsc::UnboundedReceiver<Input>,
    handle: Handle,
    channel: ChannelId,
) {
    let out = tokio::spawn(forward_output(r, handle.clone(), channel, None));
    let input = async {
        while let Some(i) = rx.recv().await {
            match i {
                Input::Data(d) => {
                    if w.write_all(&d).await.is_err() {
                        break;
                    }
                }
                // On a terminal, EOF is the VEOF character at the start of a line.
                Input::Eof => {
                    let _ = w.write_all(&[4]).await;
                }
                Input::Resize(cols, rows) => {
                    let _ = w.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                }
            }
        }
        std::future::pending::<()>().await
    };
    let status = tokio::select! {
        s = child.wait() => s,
        _ = input => unreachable!("input never completes"),
        _ = shared.cancel.cancelled() => { let _ = child.start_kill(); child.wait().await },
    };
    shared.processes.forget(&owner);
    // Output still in the pty arrives after the exit; grandchildren may hold it open forever.
    let _ = tokio::time::timeout(Duration::from_secs(1), out).await;
    let code = status.map(exit_code).unwrap_or(255);
    finish(&handle, channel, code).await;
}

async fn run_pipes(
    shared: Arc<Shared>,
    owner: String,
    mut child: tokio::process::Child,
    mut rx: mpsc::UnboundedReceiver<Input>,
    handle: Handle,
    channel: ChannelId,
) {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut stdin = child.stdin.take();
    let out = tokio::spawn({
        let h = handle.clone();
        async move {
            if let Some(o) = stdout {
                forward_output(o, h, channel, None).await;
            }
        }
    });
    let err = tokio::spawn({
        let h = handle.clone();
        async move {
            if let Some(e) = stderr {
                forward_output(e, h, channel, Some(1)).await;
            }
        }
    });
    let input = async {
        while let Some(i) = rx.recv().await {
            match i {
                Input::Data(d) => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(&d).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::Eof => {
                    if let Some(mut s) = stdin.take() {
                        let _ = s.shutdown().await;
                    }
                }
                Input::Resize(..) => {}
            }
        }
        std::future::pending::<()>().await
    };
    let status = tokio::select! {
        s = child.wait() => s,
        _ = input => unreachable!("input never completes"),
        _ = shared.cancel.cancelled() => { let _ = child.start_kill(); child.wait().await },
    };
    shared.processes.forget(&owner);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    let code = status.map(exit_code).unwrap_or(255);
    finish(&handle, channel, code).await;
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if password != self.shared.config.client_secret {
            return Ok(Auth::reject());
        }
        match self.resolve(user) {
            Some(t) => {
                self.target = Some(t);
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), Chan::default());
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let c = self.channels.entry(channel).or_default();
        c.pty = Some((
            col_width.min(u16::MAX as u32) as u16,
            row_height.min(u16::MAX as u32) as u16,
            term.to_string(),
        ));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The container's env is fixed by its spec, as on StackPath.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        match self.spawn(channel, Some(command), session.handle()) {
            Ok(()) => session.channel_success(channel)?,
            Err(e) => {
                tracing::debug!(error = %e, "console exec failed");
                session.extended_data(channel, 1, Bytes::from(format!("emulator: {e}\r\n")))?;
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.spawn(channel, None, session.handle()) {
            Ok(()) => session.channel_success(channel)?,
            Err(_) => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            let (cols, rows) = (
                col_width.min(u16::MAX as u32) as u16,
                row_height.min(u16::MAX as u32) as u16,
            );
            if let Some(p) = c.pty.as_mut() {
                p.0 = cols;
                p.1 = rows;
            }
            if let Some(tx) = &c.input {
                let _ = tx.send(Input::Resize(cols, rows));
            }
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.as_ref()) {
            let _ = tx.send(Input::Data(Bytes::copy_from_slice(data)));
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.as_ref()) {
            let _ = tx.send(Input::Eof);
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(p) = self.channels.get(&channel).and_then(|c| c.pgid) {
            // SAFETY: kill(2) on our own child's process group.
            unsafe {
                libc::kill(-p, sig_number(&signal));
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.remove(&channel)
            && let Some(p) = c.pgid
        {
            // The client went away: do not leave its command running.
            self.shared
                .processes
                .kill_instance(&format!("channel:{channel:?}:{p}"));
        }
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for (channel, c) in self.channels.drain() {
            if let Some(p) = c.pgid {
                self.shared
                    .processes
                    .kill_instance(&format!("channel:{channel:?}:{p}"));
            }
        }
    }
}
