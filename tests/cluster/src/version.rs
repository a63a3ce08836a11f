//! The Kubernetes minors the harness can run, each pinned by a Go wrapper module.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::paths;

/// A supported Kubernetes minor; the patch is whatever its wrapper module's go.mod pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum K8sVersion {
    #[default]
    V1_34,
    V1_37,
}

impl K8sVersion {
    pub const ALL: [K8sVersion; 2] = [K8sVersion::V1_34, K8sVersion::V1_37];

    pub fn minor(self) -> u32 {
        match self {
            K8sVersion::V1_34 => 34,
            K8sVersion::V1_37 => 37,
        }
    }

    /// `VK_K8S_VERSION` if set (e.g. `1.37`), else the default (1.34).
    pub fn from_env() -> Result<Self> {
        match std::env::var("VK_K8S_VERSION") {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(Self::default()),
        }
    }

    pub fn module_dir(self) -> PathBuf {
        paths::go_dir().join(format!("k8s-v1.{}", self.minor()))
    }

    /// The exact `k8s.io/kubernetes` release pinned by the wrapper module, e.g. `v1.34.4`.
    pub fn pinned_release(self) -> Result<String> {
        required_version(&self.module_dir().join("go.mod"), "k8s.io/kubernetes")
    }
}

impl fmt::Display for K8sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor())
    }
}

impl FromStr for K8sVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().trim_start_matches('v');
        // Accept "1.34" and "1.34.4" alike: only the minor selects the module.
        let minor = t
            .strip_prefix("1.")
            .map(|r| r.split('.').next().unwrap_or(""));
        match minor {
            Some("34") => Ok(K8sVersion::V1_34),
            Some("37") => Ok(K8sVersion::V1_37),
            _ => Err(Error::UnknownVersion(
                s.to_string(),
                K8sVersion::ALL.map(|v| v.to_string()).join(", "),
            )),
        }
    }
}

/// Reads the version of `module` from a `require` line of a go.mod.
pub(crate) fn required_version(go_mod: &std::path::Path, module: &str) -> Result<String> {
    let text = std::fs::read_to_string(go_mod).map_err(Error::io("reading", go_mod))?;
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(module))
                .then(|| parts.next().map(str::to_string))
                .flatten()
        })
        .ok_or_else(|| Error::BadFile {
            path: go_mod.to_path_buf(),
            reason: format!("no `require {module} <version>` line"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minor_spellings() {
        assert_eq!("1.34".parse::<K8sVersion>().unwrap(), K8sVersion::V1_34);
        assert_eq!("v1.37.2".parse::<K8sVersion>().unwrap(), K8sVersion::V1_37);
        assert!("1.35".parse::<K8sVersion>().is_err());
        assert!("".parse::<K8sVersion>().is_err());
    }

    #[test]
    fn pinned_releases_match_their_minor() {
        for v in K8sVersion::ALL {
            let release = v.pinned_release().unwrap();
            assert!(
                release.starts_with(&format!("v1.{}.", v.minor())),
                "{release}"
            );
        }
    }
}
