//! The serving certificate from files (`--tls-cert-file`, `--tls-private-key-file`): checked
//! at start, where any problem is an error naming the file, and read again every
//! [`CertFiles::check_every`]. A change of content is loaded; one that does not load leaves
//! the current certificate in place and is logged once.
//!
//! Content, not modification times: a mounted Secret is replaced by swapping the `..data`
//! symlink its files point through (and cert-manager renews in place), which leaves the
//! times of the configured paths themselves alone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::CertFiles;
use crate::error::KubeletError;
use crate::health::Status;
use crate::tls::{CertStore, certified_key_from_pem, read, validity};

const CERT: &str = "the serving certificate (--tls-cert-file)";
const KEY: &str = "the serving key (--tls-private-key-file)";

/// A certificate loaded from the files.
pub(crate) struct Loaded {
    pub key: CertifiedKey,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of both files' content, to notice a change.
    pub digest: [u8; 32],
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// What an operator should do when the certificate is expired or missing.
pub(crate) fn renew_hint(files: &CertFiles) -> String {
    format!(
        "replace {} and {} with a current certificate and key (cert-manager renews them in place; they are read again every {:?})",
        files.cert.display(),
        files.key.display(),
        files.check_every
    )
}

/// Reads and checks both files.
pub(crate) fn load(files: &CertFiles, now: DateTime<Utc>) -> Result<Loaded, KubeletError> {
    let cert = read(CERT, &files.cert)?;
    let key = read(KEY, &files.key)?;
    from_pem(files, &cert, &key, now)
}

fn from_pem(
    files: &CertFiles,
    cert: &[u8],
    key: &[u8],
    now: DateTime<Utc>,
) -> Result<Loaded, KubeletError> {
    let bad_cert = |problem: String| KubeletError::CertFile {
        what: CERT,
        path: files.cert.clone(),
        problem,
    };
    let ck = certified_key_from_pem(cert, key).map_err(|p| {
        if p.is_key() {
            KubeletError::CertFile {
                what: KEY,
                path: files.key.clone(),
                problem: format!("{p} (certificate {})", files.cert.display()),
            }
        } else {
            bad_cert(p.to_string())
        }
    })?;
    let (nb, na) = ck
        .cert
        .first()
        .and_then(|leaf| validity(leaf))
        .ok_or_else(|| bad_cert("its first certificate is not valid X.509".into()))?;
    let at = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| t.to_string())
    };
    if na <= now.timestamp() {
        return Err(bad_cert(format!(
            "it expired at {}; {}",
            at(na),
            renew_hint(files)
        )));
    }
    if nb > now.timestamp() {
        return Err(bad_cert(format!(
            "it is not valid before {} (is this machine's clock right?)",
            at(nb)
        )));
    }
    Ok(Loaded {
        key: ck,
        not_after: DateTime::from_timestamp(na, 0).unwrap_or(now),
        digest: digest(cert, key),
    })
}

/// Reads the files every `check_every` until `shutdown`; loads a changed pair.
pub(crate) async fn watch(
    files: CertFiles,
    mut current: [u8; 32],
    store: Arc<CertStore>,
    status: Arc<Status>,
    shutdown: CancellationToken,
) {
    let hint = renew_hint(&files);
    // The content last refused, so that a bad replacement is logged once, not every check.
    let mut refused: Option<[u8; 32]> = None;
    let mut unreadable: Option<String> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(files.check_every) => {}
        }
        status.refresh();
        let (cert, key) = match (read(CERT, &files.cert), read(KEY, &files.key)) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                let m = e.to_string();
                if unreadable.as_deref() != Some(m.as_str()) {
                    tracing::warn!(error = %m, "serving certificate files cannot be read; keeping the current certificate");
                    unreadable = Some(m);
                }
                continue;
            }
        };
        unreadable = None;
        let d = digest(&cert, &key);
        if d == current || Some(d) == refused {
            continue;
        }
        match from_pem(&files, &cert, &key, Utc::now()) {
            Ok(loaded) => {
                store.swap(loaded.key);
                status.cert_valid(loaded.not_after, &hint);
                current = d;
                refused = None;
                tracing::info!(
                    cert = %files.cert.display(),
                    not_after = %loaded.not_after,
                    "serving certificate reloaded"
                );
            }
            Err(e) => {
                refused = Some(d);
                tracing::warn!(error = %e, "the serving certificate files changed but cannot be used; keeping the current certificate");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn pair(not_after: DateTime<Utc>) -> (String, String) {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let start = not_after.min(Utc::now()).timestamp() - 7200;
        p.not_before = time::OffsetDateTime::from_unix_timestamp(start).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after.timestamp()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &std::path::Path) -> CertFiles {
        CertFiles::new(dir.join("tls.crt"), dir.join("tls.key"))
    }

    fn write(f: &CertFiles, (c, k): &(String, String)) {
        std::fs::write(&f.cert, c).unwrap();
        std::fs::write(&f.key, k).unwrap();
    }

    #[test]
    fn each_bad_input_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let now = Utc::now();
        let err = |f: &CertFiles| load(f, now).err().expect("refused").to_string();

        let e = err(&f);
        assert!(
            e.contains("--tls-cert-file") && e.contains("tls.crt"),
            "{e}"
        );

        let good = pair(now + chrono::Duration::days(30));
        std::fs::write(&f.cert, &good.0).unwrap();
        let e = err(&f);
        assert!(
            e.contains("--tls-private-key-file") && e.contains("tls.key"),
            "{e}"
        );

        std::fs::write(&f.key, "not a key").unwrap();
        let e = err(&f);
        assert!(e.contains("tls.key") && e.contains("no private key"), "{e}");

        let other = pair(now + chrono::Duration::days(30));
        std::fs::write(&f.key, &other.1).unwrap();
        let e = err(&f);
        assert!(
            e.contains("tls.key") && e.contains("not the key of the certificate"),
            "{e}"
        );

        write(&f, &pair(now - chrono::Duration::hours(1)));
        let e = err(&f);
        assert!(e.contains("tls.crt") && e.contains("expired at"), "{e}");

        std::fs::write(&f.cert, "garbage").unwrap();
        let e = err(&f);
        assert!(e.contains("tls.crt") && e.contains("no CERTIFICATE"), "{e}");

        write(&f, &good);
        let l = load(&f, now).expect("a good pair loads");
        assert_eq!(
            l.not_after.timestamp(),
            (now + chrono::Duration::days(30)).timestamp()
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        // A directory cannot be read as a file, whoever runs the test.
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        write(&f, &pair(Utc::now() + chrono::Duration::days(1)));
        std::fs::remove_file(&f.key).unwrap();
        std::fs::create_dir(&f.key).unwrap();
        let e = load(&f, Utc::now()).err().unwrap().to_string();
        assert!(e.contains("cannot read") && e.contains("tls.key"), "{e}");
    }
}
