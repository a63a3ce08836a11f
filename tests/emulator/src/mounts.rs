//! Volume claims as directories shared by an instance's containers (`run_containers`).
//!
//! Each claim (`spec.volumeClaimTemplates[].slug`) is one directory per instance, under the
//! emulator's temporary directory. A container (init containers too) that mounts it
//! (`volumeMounts: [{slug, mountPath}]`) sees that directory at its `mountPath`, however absolute
//! (`/etc/nginx/conf.d`), without anything being created or changed on this machine outside
//! temporary directories:
//!
//! - the process gets its own mount namespace (`unshare(CLONE_NEWNS)`, every mount made
//!   private, so nothing propagates back);
//! - a tmpfs holds scratch space; the new root is an overlayfs over `/` whose writes land in that
//!   tmpfs, with the machine's other mounts (`/proc`, `/dev`, `/tmp`, …) bound back into it and
//!   a further overlay over any other filesystem a mount path has to be created in;
//! - missing directories of each mount path are created in the overlay (never on the machine),
//!   the claim directory is bound onto the mount path, the emulator's own directory is bound
//!   back so the container's working directory is the real one, and the process `chroot`s into
//!   the new root.
//!
//! Everything after `fork` is raw system calls on strings built beforehand (the parent is
//! multi-threaded; the child may not allocate). This needs root (CAP_SYS_ADMIN); without it,
//! [`probe`] fails once, the emulator says so in its log, and containers get each claim's
//! directory in `STACKPATH_EMULATOR_VOLUME_<SLUG>` instead.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One mount of a claim directory at a container path.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub slug: String,
    pub source: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug)]
enum Op {
    Unshare,
    MakePrivate,
    Tmpfs(CString),
    Mkdir(CString),
    Overlay {
        target: CString,
        options: CString,
    },
    /// `optional`: restoring one of the machine's mounts is best effort.
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
        optional: bool,
    },
    Chroot(CString),
    Chdir(CString),
    /// Join the mount namespace open at this descriptor (exec into a running container).
    SetNs(i32),
}

/// The namespace set-up of one process, built in the parent and replayed after `fork`.
#[derive(Debug)]
pub(crate) struct Plan {
    ops: Vec<Op>,
    /// Human-readable steps, for the error message when a step fails.
    pub description: String,
}

/// Where a container's namespace root is, so that an exec can enter the same view.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub pid: i32,
    pub root: PathBuf,
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", p.display()),
        )
    })
}

/// `/a/./b/` → `/a/b` (mount paths are validated absolute, without `..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// `inner` placed under `root`: `/x` + `/etc/a` → `/x/etc/a`.
fn under(root: &Path, inner: &Path) -> PathBuf {
    let rel = inner.strip_prefix("/").unwrap_or(inner);
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Mount points of this process's namespace (`/proc/self/mountinfo`, octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|raw| {
            let b = raw.as_bytes();
            let mut v = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\'
                    && i + 3 < b.len()
                    && let Ok(n) = u8::from_str_radix(&raw[i + 1..i + 4], 8)
                {
                    v.push(n);
                    i += 4;
                    continue;
                }
                v.push(b[i]);
                i += 1;
            }
            PathBuf::from(std::ffi::OsStr::from_bytes(&v))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Mount points strictly under `dir` that are not under another such mount point.
fn top_mounts_under(points: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let inside: Vec<&PathBuf> = points
        .iter()
        .filter(|m| m.starts_with(dir) && m.as_path() != dir)
        .collect();
    inside
        .iter()
        .filter(|m| !inside.iter().any(|o| o != *m && m.starts_with(o.as_path())))
        .map(|m| (*m).clone())
        .collect()
}

/// The mount point a path lives on (the longest mount point prefix).
fn mount_of<'a>(points: &'a [PathBuf], p: &Path) -> Option<&'a PathBuf> {
    points
        .iter()
        .filter(|m| p.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
}

/// The nearest ancestor of `p` (or `p` itself) that exists on this machine, canonical, and
/// the components below it.
fn existing_ancestor(p: &Path) -> (PathBuf, PathBuf) {
    let mut cur = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&cur) {
            let mut tail = PathBuf::new();
            for r in rest.iter().rev() {
                tail.push(r);
            }
            return (c, tail);
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                cur = parent.to_path_buf();
            }
            _ => return (PathBuf::from("/"), p.strip_prefix("/").unwrap_or(p).into()),
        }
    }
}

impl Plan {
    /// The set-up for a container process: `scratch` is an empty directory of the emulator's
    /// (a tmpfs is mounted on it inside the namespace), `keep` the emulator's directory (bound
    /// back so the working directory `cwd` and the claim directories are the real ones).
    pub(crate) fn container(
        mounts: &[Mount],
        scratch: &Path,
        keep: &Path,
        cwd: &Path,
    ) -> std::io::Result<Plan> {
        let points = mount_points();
        let root = scratch.join("root");
        let mut ops = vec![Op::Unshare, Op::MakePrivate, Op::Tmpfs(cstr(scratch)?)];
        let mut desc = vec![format!(
            "new mount namespace; tmpfs on {}; overlay of / on {}",
            scratch.display(),
            root.display()
        )];
        let mut n = 0;
        let mut overlay = |ops: &mut Vec<Op>, lower: &Path, target: &Path| -> std::io::Result<()> {
            let (u, w) = (scratch.join(format!("u{n}")), scratch.join(format!("w{n}")));
            n += 1;
            let lower_s = lower.as_os_str().as_bytes();
            if lower_s.iter().any(|b| *b == b',' || *b == b':') {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "cannot overlay {}: overlayfs cannot take a path with ',' or ':'",
                        lower.display()
                    ),
                ));
            }
            ops.push(Op::Mkdir(cstr(&u)?));
            ops.push(Op::Mkdir(cstr(&w)?));
            ops.push(Op::Mkdir(cstr(target)?));
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                u.display(),
                w.display()
            );
            ops.push(Op::Overlay {
                target: cstr(target)?,
                options: CString::new(options).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path")
                })?,
            });
            Ok(())
        };
        let restore = |ops: &mut Vec<Op>, m: &Path| -> std::io::Result<()> {
            ops.push(Op::Bind {
                source: cstr(m)?,
                target: cstr(&under(&root, m))?,
                recursive: true,
                optional: true,
            });
            Ok(())
        };
        // The new root: `/` as overlay, the machine's other mounts bound back in.
        overlay(&mut ops, Path::new("/"), &root)?;
        for m in top_mounts_under(&points, Path::new("/")) {
            restore(&mut ops, &m)?;
        }
        // Mount paths to be created on another filesystem (a tmpfs /run, say) get an overlay
        // of their own, so that the directories land in scratch space there too.
        let mut targets: Vec<(PathBuf, &Mount)> =
            mounts.iter().map(|m| (normalize(&m.target), m)).collect();
        targets.sort_by_key(|(t, _)| t.components().count());
        let mut overlaid: Vec<PathBuf> = Vec::new();
        for (t, _) in &targets {
            let (anc, tail) = existing_ancestor(t);
            if tail.as_os_str().is_empty() {
                continue;
            }
            let fs = mount_of(&points, &anc)
                .cloned()
                .unwrap_or_else(|| "/".into());
            if fs.as_path() == Path::new("/") || overlaid.contains(&anc) {
                continue;
            }
            overlay(&mut ops, &anc, &under(&root, &anc))?;
            for m in top_mounts_under(&points, &anc) {
                restore(&mut ops, &m)?;
            }
            desc.push(format!("overlay on {}", anc.display()));
            overlaid.push(anc);
        }
        // The emulator's directory, for real (it may sit under an overlay by now).
        ops.push(Op::Bind {
            source: cstr(keep)?,
            target: cstr(&under(&root, keep))?,
            recursive: true,
            optional: false,
        });
        // Each mount path: its missing directories (in overlays, or in a claim directory bound
        // on a parent path before), then the claim directory on it.
        for (t, m) in &targets {
            let (anc, tail) = existing_ancestor(t);
            let mut p = anc.clone();
            for c in tail.components() {
                p.push(c);
                ops.push(Op::Mkdir(cstr(&under(&root, &p))?));
            }
            let target = if tail.as_os_str().is_empty() { anc } else { p };
            ops.push(Op::Bind {
                source: cstr(&m.source)?,
                target: cstr(&under(&root, &target))?,
                recursive: false,
                optional: false,
            });
            desc.push(format!("volume {} on {}", m.slug, t.display()));
        }
        ops.push(Op::Chroot(cstr(&root)?));
        ops.push(Op::Chdir(cstr(cwd)?));
        Ok(Plan {
            ops,
            description: desc.join("; "),
        })
    }

    /// An exec into a running container: join its mount namespace (open at `ns_fd`) and root.
    pub(crate) fn join(ns_fd: i32, view: &View, cwd: &Path) -> std::io::Result<Plan> {
        Ok(Plan {
            ops: vec![
                Op::SetNs(ns_fd),
                Op::Chroot(cstr(&view.root)?),
                Op::Chdir(cstr(cwd)?),
            ],
            description: format!("join the mount namespace of process {}", view.pid),
        })
    }

    /// Runs the plan. Called after `fork`, before `exec`: system calls only, no allocation.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        use std::ptr::null;
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        for op in &self.ops {
            // SAFETY: every pointer is a NUL-terminated string owned by the plan, alive for the
            // call; these system calls only read them.
            unsafe {
                match op {
                    Op::Unshare => check(libc::unshare(libc::CLONE_NEWNS))?,
                    Op::MakePrivate => check(libc::mount(
                        null(),
                        c"/".as_ptr(),
                        null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        null(),
                    ))?,
                    Op::Tmpfs(t) => check(libc::mount(
                        c"tmpfs".as_ptr(),
                        t.as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        c"mode=0755".as_ptr().cast(),
                    ))?,
                    Op::Mkdir(p) => {
                        if libc::mkdir(p.as_ptr(), 0o755) != 0 {
                            let e = std::io::Error::last_os_error();
                            if e.raw_os_error() != Some(libc::EEXIST) {
                                return Err(e);
                            }
                        }
                    }
                    Op::Overlay { target, options } => check(libc::mount(
                        c"overlay".as_ptr(),
                        target.as_ptr(),
                        c"overlay".as_ptr(),
                        0,
                        options.as_ptr().cast(),
                    ))?,
                    Op::Bind {
                        source,
                        target,
                        recursive,
                        optional,
                    } => {
                        let flags = libc::MS_BIND | if *recursive { libc::MS_REC } else { 0 };
                        let r =
                            libc::mount(source.as_ptr(), target.as_ptr(), null(), flags, null());
                        if r != 0 && !optional {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Op::Chroot(dir) => {
                        check(libc::chdir(dir.as_ptr()))?;
                        check(libc::chroot(c".".as_ptr()))?;
                    }
                    Op::Chdir(dir) => check(libc::chdir(dir.as_ptr()))?,
                    Op::SetNs(fd) => check(libc::setns(*fd, libc::CLONE_NEWNS))?,
                }
            }
        }
        Ok(())
    }
}

/// Whether this process may build mount namespaces: a child tries the first steps of a plan.
pub(crate) fn probe(scratch: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the emulator does not run as root".into());
    }
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let plan = Plan {
        ops: vec![
            Op::Unshare,
            Op::MakePrivate,
            Op::Tmpfs(cstr(scratch).map_err(|e| e.to_string())?),
        ],
        description: String::new(),
    };
    let mut cmd = std::process::Command::new("true");
    // SAFETY: `apply` only makes system calls on strings built before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || plan.apply());
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("the probe exited with {s}")),
        Err(e) => Err(format!("cannot create a mount namespace with a tmpfs: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_mounts_and_ancestors() {
        let points: Vec<PathBuf> = ["/", "/dev", "/dev/pts", "/etc/hosts", "/proc", "/run"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let top = top_mounts_under(&points, Path::new("/"));
        assert_eq!(
            top,
            ["/dev", "/etc/hosts", "/proc", "/run"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            mount_of(&points, Path::new("/dev/pts/3")),
            Some(&PathBuf::from("/dev/pts"))
        );
        let (a, t) = existing_ancestor(Path::new("/etc/no-such-dir-here/conf.d"));
        assert_eq!(a, std::fs::canonicalize("/etc").unwrap());
        assert_eq!(t, PathBuf::from("no-such-dir-here/conf.d"));
        assert_eq!(normalize(Path::new("/a/./b/")), PathBuf::from("/a/b"));
        assert_eq!(
            under(Path::new("/x"), Path::new("/etc/a")),
            PathBuf::from("/x/etc/a")
        );
    }
}
