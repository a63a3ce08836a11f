//! Child processes of the harness: each in its own process group, killed with its group on
//! drop, and killed by the kernel if the harness dies for any reason (exit, panic, Ctrl-C,
//! SIGKILL), so no etcd or apiserver outlives a test binary.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::logs::tail_file;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Test
/// threads come and go while the shared cluster must live on, so every spawn happens on one
/// thread that lives as long as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("local-cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The channel lives in a static and never closes: park so the thread (and with
                // it the children's parent-death link) stays until the process exits.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the local-cluster spawner thread");
        Mutex::new(tx)
    })
}

fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    // SAFETY: only async-signal-safe calls (getpid/getppid/prctl/kill) between fork and exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    // Own process group: Ctrl-C on the terminal reaches only the harness, which then stops the
    // components in order, and a kill of the group catches any helper a component forks.
    cmd.process_group(0);
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// A running component (etcd, kube-apiserver, ...), stopped with its process group on drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    /// The port it listens on, to turn "address already in use" into a clear error.
    port: Option<u16>,
    /// What started it, to start it again ([`Process::respawn`]).
    program: PathBuf,
    args: Vec<String>,
}

impl Process {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        port: Option<u16>,
    ) -> Result<Self> {
        let out = std::fs::File::create(log).map_err(Error::io("creating log", log))?;
        let child = Self::start(name, program, args, log, out)?;
        Ok(Self {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            log: log.to_path_buf(),
            port,
            program: program.to_path_buf(),
            args: args.to_vec(),
        })
    }

    fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        out: std::fs::File,
    ) -> Result<Child> {
        let err = out.try_clone().map_err(Error::io("opening log", log))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        spawn_tied(cmd).map_err(Error::io(format!("starting {name} from"), program))
    }

    /// Starts a stopped process again with the same program and arguments, its output
    /// appended to the same log (an outage test restarts kube-apiserver this way).
    pub fn respawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(Error::io("opening log", &self.log))?;
        let child = Self::start(&self.name, &self.program, &self.args, &self.log, out)?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }

    /// Ok while the process runs; its exit as an error carrying the log's tail otherwise.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.exited("stopped".into()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(format!("unknown: {e}"))),
        }
    }

    fn exited(&self, status: String) -> Error {
        let tail = self.log_tail(25);
        if let Some(port) = self.port
            && tail.contains("address already in use")
        {
            return Error::PortTaken {
                component: self.name.clone(),
                port,
                log: self.log.clone(),
                tail,
            };
        }
        Error::ComponentExited {
            component: self.name.clone(),
            status,
            log: self.log.clone(),
            tail,
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`; waits for the exit.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = self.pid as libc::pid_t;
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: plain syscalls on a process group we created.
            unsafe { libc::killpg(pgid, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The leader may be gone while a member of its group lingers: kill the group anyway.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
