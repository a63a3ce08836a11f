//! Builds the control-plane binaries from the pinned Go wrapper modules into a cache outside the
//! source tree, once per go.mod/go.sum content, or takes them ready-made from KUBEBUILDER_ASSETS.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::logs::tail_file;
use crate::paths;
use crate::version::{K8sVersion, required_version};

/// Bump when the build recipe (flags, layout) changes, so cached binaries are rebuilt.
const RECIPE_REV: u32 = 1;

/// Ready-to-run binaries for one cluster.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    /// Present when asked for (`--with-metrics-server`).
    pub metrics_server: Option<PathBuf>,
    /// The pinned `k8s.io/kubernetes` release (e.g. `v1.34.4`), or `KUBEBUILDER_ASSETS`.
    pub release: String,
}

/// How a build reports progress; the CLI prints to stderr, tests stay quiet unless they fail.
pub trait Progress {
    fn step(&mut self, message: &str);
}

/// Prints progress lines on stderr.
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn step(&mut self, message: &str) {
        eprintln!("local-cluster: {message}");
    }
}

/// Returns the binaries for `version`, building whatever is missing or stale.
pub fn ensure_binaries(
    version: K8sVersion,
    with_metrics_server: bool,
    progress: &mut dyn Progress,
) -> Result<Binaries> {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|d| !d.is_empty()) {
        return from_assets(Path::new(&dir), with_metrics_server);
    }
    let k8s = k8s_set(version)?;
    let k8s_dir = build_set(&k8s, progress)?;
    let etcd = etcd_set()?;
    let etcd_dir = build_set(&etcd, progress)?;
    let metrics_server = if with_metrics_server {
        let ms = metrics_server_set()?;
        Some(build_set(&ms, progress)?.join("metrics-server"))
    } else {
        None
    };
    Ok(Binaries {
        etcd: etcd_dir.join("etcd"),
        kube_apiserver: k8s_dir.join("kube-apiserver"),
        kube_controller_manager: k8s_dir.join("kube-controller-manager"),
        kube_scheduler: k8s_dir.join("kube-scheduler"),
        metrics_server,
        release: k8s.version,
    })
}

fn from_assets(dir: &Path, with_metrics_server: bool) -> Result<Binaries> {
    let find = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::AssetMissing {
                dir: dir.to_path_buf(),
                binary: name.to_string(),
            })
        }
    };
    Ok(Binaries {
        etcd: find("etcd")?,
        kube_apiserver: find("kube-apiserver")?,
        kube_controller_manager: find("kube-controller-manager")?,
        kube_scheduler: find("kube-scheduler")?,
        metrics_server: if with_metrics_server {
            Some(find("metrics-server")?)
        } else {
            None
        },
        release: "KUBEBUILDER_ASSETS".to_string(),
    })
}

/// One Go wrapper module and the commands built from it into one cache directory.
struct BuildSet {
    module_dir: PathBuf,
    version: String,
    out_dir: PathBuf,
    /// (binary name, Go package)
    commands: Vec<(&'static str, String)>,
    ldflags: String,
}

fn k8s_set(version: K8sVersion) -> Result<BuildSet> {
    let module_dir = version.module_dir();
    let release = version.pinned_release()?;
    let build_date = module_time(&release).unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string());
    // What hack/lib/version.sh stamps, so `kubectl version` and /version report the release.
    let mut ldflags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (k, v) in [
            ("gitVersion", release.as_str()),
            ("gitMajor", "1"),
            ("gitMinor", &version.minor().to_string()),
            ("gitCommit", "0000000000000000000000000000000000000000"),
            ("gitTreeState", "clean"),
            ("buildDate", &build_date),
        ] {
            ldflags.push_str(&format!(" -X {pkg}.{k}={v}"));
        }
    }
    Ok(BuildSet {
        out_dir: paths::cache_dir().join("k8s").join(&release),
        commands: [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .into_iter()
        .map(|c| (c, format!("k8s.io/kubernetes/cmd/{c}")))
        .collect(),
        module_dir,
        version: release,
        ldflags,
    })
}

fn etcd_set() -> Result<BuildSet> {
    let module_dir = paths::go_dir().join("etcd");
    let version = required_version(&module_dir.join("go.mod"), "go.etcd.io/etcd/server/v3")?;
    Ok(BuildSet {
        out_dir: paths::cache_dir()
            .join("k8s")
            .join(format!("etcd-{version}")),
        commands: vec![("etcd", "go.etcd.io/etcd/server/v3".to_string())],
        ldflags: format!("-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={version}"),
        module_dir,
        version,
    })
}

fn metrics_server_set() -> Result<BuildSet> {
    let module_dir = paths::go_dir().join("metrics-server");
    let version = required_version(&module_dir.join("go.mod"), "sigs.k8s.io/metrics-server")?;
    Ok(BuildSet {
        out_dir: paths::cache_dir()
            .join("k8s")
            .join(format!("metrics-server-{version}")),
        commands: vec![(
            "metrics-server",
            "sigs.k8s.io/metrics-server/cmd/metrics-server".to_string(),
        )],
        ldflags: format!("-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion={version}"),
        module_dir,
        version,
    })
}

/// The release time the module proxy recorded, used as the stamped build date.
fn module_time(release: &str) -> Option<String> {
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()?;
    let cache = String::from_utf8(out.stdout).ok()?;
    let info = Path::new(cache.trim())
        .join("cache/download/k8s.io/kubernetes/@v")
        .join(format!("{release}.info"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(info).ok()?).ok()?;
    v.get("Time")?.as_str().map(str::to_string)
}

fn stamp_of(set: &BuildSet) -> Result<String> {
    let mut h = DefaultHasher::new();
    RECIPE_REV.hash(&mut h);
    set.ldflags.hash(&mut h);
    for f in ["go.mod", "go.sum"] {
        let p = set.module_dir.join(f);
        std::fs::read(&p)
            .map_err(Error::io("reading", &p))?
            .hash(&mut h);
    }
    Ok(format!("{:016x}\n", h.finish()))
}

/// Builds every command of `set` unless the stamp says the cache is current; returns its dir.
fn build_set(set: &BuildSet, progress: &mut dyn Progress) -> Result<PathBuf> {
    let stamp_path = set.out_dir.join(".stamp");
    let stamp = stamp_of(set)?;
    let current = std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && set
            .commands
            .iter()
            .all(|(b, _)| set.out_dir.join(b).is_file());
    if current {
        return Ok(set.out_dir.clone());
    }
    std::fs::create_dir_all(&set.out_dir).map_err(Error::io("creating", &set.out_dir))?;
    // A stale stamp must not survive a half-finished rebuild.
    let _ = std::fs::remove_file(&stamp_path);
    for (binary, package) in &set.commands {
        build_one(set, binary, package, progress)?;
    }
    std::fs::write(&stamp_path, stamp).map_err(Error::io("writing", &stamp_path))?;
    Ok(set.out_dir.clone())
}

fn build_one(
    set: &BuildSet,
    binary: &str,
    package: &str,
    progress: &mut dyn Progress,
) -> Result<()> {
    let log_path = set.out_dir.join(format!("build-{binary}.log"));
    let log = std::fs::File::create(&log_path).map_err(Error::io("creating", &log_path))?;
    let log_err = log.try_clone().map_err(Error::io("opening", &log_path))?;
    let partial = set.out_dir.join(format!(".{binary}.partial"));
    progress.step(&format!(
        "building {binary} {} with go (cold builds take minutes; log {})",
        set.version,
        log_path.display()
    ));
    let started = Instant::now();
    let mut child = Command::new("go")
        .current_dir(&set.module_dir)
        .args(["build", "-trimpath", "-ldflags", &set.ldflags, "-o"])
        .arg(&partial)
        .arg(package)
        .env("CGO_ENABLED", "0")
        // Never fetch another Go toolchain: the installed one builds these modules.
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::GoMissing(e)
            } else {
                Error::io("running go build in", &set.module_dir)(e)
            }
        })?;
    let tty = std::io::stderr().is_terminal();
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(Error::io("waiting for go build in", &set.module_dir))?
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
        if tty {
            eprint!("\r  {binary}: {}s elapsed ", started.elapsed().as_secs());
            let _ = std::io::stderr().flush();
        } else if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            progress.step(&format!(
                "  still building {binary} ({}s)",
                started.elapsed().as_secs()
            ));
        }
    };
    if tty {
        eprintln!();
    }
    if !status.success() {
        return Err(Error::BuildFailed {
            binary: format!("{binary} {}", set.version),
            log: log_path.clone(),
            tail: tail_file(&log_path, 30),
        });
    }
    let target = set.out_dir.join(binary);
    std::fs::rename(&partial, &target).map_err(Error::io("moving the built binary to", &target))?;
    progress.step(&format!("built {binary} in {:.0?}", started.elapsed()));
    Ok(())
}
