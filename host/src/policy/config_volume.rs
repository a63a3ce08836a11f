//! What contract 0.2.0 adds to the context: where a resolved variable was declared, and the
//! pod's volumes the host can write into its containers (their files' paths and modes, never
//! their content).

/// Where a resolved variable was declared in its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvOrigin {
    /// `env[i].valueFrom`.
    Env(u32),
    /// `envFrom[i]`.
    EnvFrom(u32),
}

impl Default for EnvOrigin {
    fn default() -> Self {
        EnvOrigin::Env(0)
    }
}

/// The kind of a volume the host can provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigVolumeKind {
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    EmptyDir,
}

impl ConfigVolumeKind {
    /// The pod's name for the kind (`configMap`, `downwardAPI`, …), for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigVolumeKind::ConfigMap => "configMap",
            ConfigVolumeKind::Secret => "secret",
            ConfigVolumeKind::DownwardApi => "downwardAPI",
            ConfigVolumeKind::Projected => "projected",
            ConfigVolumeKind::EmptyDir => "emptyDir",
        }
    }
}

/// A file of a config volume, as the policy learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Relative to the volume's root, `/`-separated.
    pub path: String,
    /// Permission bits (0o644 …).
    pub mode: u32,
}

/// A volume the host can write into the pod's containers, as the policy learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVolume {
    pub name: String,
    pub kind: ConfigVolumeKind,
    pub files: Vec<ConfigFile>,
    /// Bytes of content, all files together.
    pub bytes: u64,
}
