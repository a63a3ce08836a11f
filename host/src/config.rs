//! The daemon's StackPath settings, read the way the Go provider read them so operators can
//! switch in place: `SP_*` environment variables, or a YAML file named by `SP_CONFIG_LOCATION`
//! with the same keys in lower case (`stack_id`, `client_id`, `client_secret`, `city_code`,
//! `base_url` or `api_host`). Unlike the Go provider, the environment overrides the file key by
//! key, and every problem is reported at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use stackpath_client::{DEFAULT_API_HOST, Secret};

use crate::materialize::ConfigVolumes;

/// Where settings come from: the process environment, or a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// StackPath credentials and placement, validated.
#[derive(Debug, Clone)]
pub struct StackPathSettings {
    pub stack_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Upper case, as StackPath's location API spells it (`DFW`): the first of `city_codes`.
    pub city_code: String,
    /// Every city the daemon serves, upper case, in the order given (`SP_CITY_CODE=DFW,LAX`);
    /// at least one, none twice.
    pub city_codes: Vec<String>,
    pub api_host: String,
    pub ca_file: Option<PathBuf>,
}

/// Every problem found in the settings, one per line.
#[derive(Debug, thiserror::Error)]
#[error("the daemon cannot start; fix these settings:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct SettingsError(pub Vec<String>);

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    account_id: Option<String>,
    stack_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    city_code: Option<String>,
    /// The Go provider's name for the API host.
    base_url: Option<String>,
    api_host: Option<String>,
    ca_file: Option<PathBuf>,
}

impl StackPathSettings {
    /// Reads `SP_CONFIG_LOCATION` (if set) and the `SP_*` variables; the variables win.
    pub fn load(env: &dyn Environment) -> Result<Self, SettingsError> {
        let mut problems = Vec::new();
        let file = match env.var("SP_CONFIG_LOCATION") {
            Some(path) => match read_file(Path::new(&path)) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(e);
                    FileSettings::default()
                }
            },
            None => FileSettings::default(),
        };
        let _ = &file.account_id; // accepted for compatibility; StackPath's API does not need it
        let pick = |var: &str, from_file: &Option<String>| {
            env.var(var)
                .or_else(|| from_file.clone().filter(|v| !v.trim().is_empty()))
                .map(|v| v.trim().to_owned())
        };
        let stack_id = pick("SP_STACK_ID", &file.stack_id);
        let client_id = pick("SP_CLIENT_ID", &file.client_id);
        let client_secret = env
            .var("SP_CLIENT_SECRET")
            .or(file.client_secret.clone().filter(|v| !v.is_empty()));
        let city_code = pick("SP_CITY_CODE", &file.city_code);
        let api_host = pick(
            "SP_API_HOST",
            &file.api_host.clone().or(file.base_url.clone()),
        )
        .unwrap_or_else(|| DEFAULT_API_HOST.to_owned());
        let ca_file = env.var("SP_CA_FILE").map(PathBuf::from).or(file.ca_file);

        let missing = |what: &str, var: &str, key: &str| {
            format!(
                "{what} is not set: set the environment variable {var} (or `{key}` in the file \
                 named by SP_CONFIG_LOCATION)"
            )
        };
        if stack_id.is_none() {
            problems.push(missing("the StackPath stack id", "SP_STACK_ID", "stack_id"));
        }
        if client_id.is_none() {
            problems.push(missing("the API client id", "SP_CLIENT_ID", "client_id"));
        }
        if client_secret.is_none() {
            problems.push(missing(
                "the API client secret",
                "SP_CLIENT_SECRET",
                "client_secret",
            ));
        }
        let city_codes = match &city_code {
            None => {
                problems.push(missing("the city code", "SP_CITY_CODE", "city_code"));
                Vec::new()
            }
            Some(list) => match city_list(list) {
                Ok(cities) => cities,
                Err(e) => {
                    problems.push(e);
                    Vec::new()
                }
            },
        };
        if let Err(e) = stackpath_client::parse_api_host(&api_host) {
            problems.push(format!("SP_API_HOST `{api_host}`: {e}"));
        }
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            problems.push(format!(
                "SP_CA_FILE `{}` is not a readable file",
                ca.display()
            ));
        }
        if !problems.is_empty() {
            return Err(SettingsError(problems));
        }
        Ok(Self {
            stack_id: stack_id.unwrap_or_default(),
            client_id: client_id.unwrap_or_default(),
            client_secret: Secret::new(client_secret.unwrap_or_default()),
            city_code: city_codes[0].clone(),
            city_codes,
            api_host,
            ca_file,
        })
    }

    /// The StackPath client configuration for these settings.
    pub fn client_config(&self) -> Result<stackpath_client::Config, stackpath_client::Error> {
        let mut config = stackpath_client::Config::new(
            &self.api_host,
            self.stack_id.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
        )?;
        config.ca_file = self.ca_file.clone();
        config.user_agent_version = crate::VERSION.to_owned();
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "SP_CONFIG_LOCATION names `{}`, which cannot be read: {e}",
            path.display()
        )
    })?;
    serde_yaml::from_str(&text).map_err(|e| {
        format!(
            "SP_CONFIG_LOCATION file `{}` is not valid: {e} (expected keys: stack_id, \
             client_id, client_secret, city_code, base_url, ca_file)",
            path.display()
        )
    })
}

fn valid_city_code(c: &str) -> bool {
    (2..=8).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphabetic())
}

/// `SP_CITY_CODE`: one city code or several, comma-separated; upper-cased, order kept.
pub fn city_list(value: &str) -> Result<Vec<String>, String> {
    let mut cities: Vec<String> = Vec::new();
    for c in value.split(',').map(str::trim) {
        if !valid_city_code(c) {
            return Err(format!(
                "SP_CITY_CODE `{value}`: `{c}` is not a city code; use StackPath's codes of \
                 locations, letters only, comma-separated, e.g. DFW or DFW,LAX"
            ));
        }
        let c = c.to_uppercase();
        if cities.contains(&c) {
            return Err(format!(
                "SP_CITY_CODE `{value}` names {c} twice; name each city once"
            ));
        }
        cities.push(c);
    }
    Ok(cities)
}

/// The environment with some variables replaced (flags that override `SP_*` variables).
pub struct Overridden<'a> {
    pub base: &'a dyn Environment,
    pub vars: BTreeMap<String, String>,
}

impl Environment for Overridden<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .cloned()
            .filter(|v| !v.is_empty())
            .or_else(|| self.base.var(name))
    }
}

/// A city's node name from `--nodename`, read as a template: `{city}` is replaced by the
/// lower-case city code. A name without `{city}` gets `-<city>` appended, as the Go provider
/// did (`edge` → `edge-dfw`), unless it already ends so (vk-stackpath 0.1 used the flag as
/// is, and its manifests pass `stackpath-edge-provider-dfw`). Default: the Go provider's
/// `stackpath-edge-provider-<city>`.
pub fn node_name(flag: Option<&str>, city_code: &str) -> String {
    let city = city_code.to_lowercase();
    match flag {
        None => format!("stackpath-edge-provider-{city}"),
        Some(t) if t.contains("{city}") => t.replace("{city}", &city),
        Some(n) if n.ends_with(&format!("-{city}")) => n.to_owned(),
        Some(n) => format!("{n}-{city}"),
    }
}

/// Why `name` cannot be a node's name (a DNS subdomain that is also its
/// `kubernetes.io/hostname` label value, so at most 63 characters), if it cannot.
pub fn check_node_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = name.len() <= 63
        && name.split('.').all(|part| {
            part.starts_with(alnum)
                && part.ends_with(alnum)
                && part.chars().all(|c| alnum(c) || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name `{name}` is not a DNS name of at most 63 characters (lower-case letters, \
             digits, `-` and `.`, each part starting and ending with a letter or digit): change \
             --nodename"
        ))
    }
}

/// `VKUBELET_POD_IP` parsed, with a message naming the variable.
pub fn parse_pod_ip(value: Option<&str>) -> Result<Option<IpAddr>, String> {
    value
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("VKUBELET_POD_IP `{v}` is not an IP address (e.g. 10.0.0.12)"))
        })
        .transpose()
}

/// `--config-volumes` and `--config-volume-image`, checked.
pub fn config_volumes(mode: &str, image: &str) -> Result<ConfigVolumes, String> {
    match mode {
        "skip" => Ok(ConfigVolumes::Skip),
        "materialize" => {
            let image = image.trim();
            if image.is_empty() || image.chars().any(char::is_whitespace) {
                return Err(format!(
                    "--config-volume-image `{image}` is not an image reference (e.g. {})",
                    crate::materialize::DEFAULT_IMAGE
                ));
            }
            Ok(ConfigVolumes::Materialize {
                image: image.to_owned(),
            })
        }
        other => Err(format!(
            "--config-volumes `{other}` is not `materialize` or `skip`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_volume_settings_are_checked() {
        assert_eq!(config_volumes("skip", ""), Ok(ConfigVolumes::Skip));
        assert_eq!(
            config_volumes("materialize", " busybox:1.37 "),
            Ok(ConfigVolumes::Materialize {
                image: "busybox:1.37".into()
            })
        );
        assert!(
            config_volumes("materialize", "bad image")
                .unwrap_err()
                .contains("--config-volume-image")
        );
        assert!(
            config_volumes("maybe", "x")
                .unwrap_err()
                .contains("--config-volumes")
        );
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_problem_at_once() {
        let err = StackPathSettings::load(&env(&[("SP_CITY_CODE", "d-fw")])).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        for needle in ["SP_STACK_ID", "SP_CLIENT_ID", "SP_CLIENT_SECRET", "`d-fw`"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn env_overrides_file_and_secret_stays_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sp.yaml");
        std::fs::write(
            &file,
            "stack_id: from-file\nclient_id: id\nclient_secret: s3cr3t-value\ncity_code: lax\nbase_url: api.example.com\n",
        )
        .unwrap();
        let s = StackPathSettings::load(&env(&[
            ("SP_CONFIG_LOCATION", file.to_str().unwrap()),
            ("SP_STACK_ID", "from-env"),
        ]))
        .unwrap();
        assert_eq!(s.stack_id, "from-env");
        assert_eq!(s.city_code, "LAX");
        assert_eq!(s.api_host, "api.example.com");
        assert!(!format!("{s:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn unreadable_file_and_unknown_key_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sp.yaml");
        std::fs::write(&file, "stack_idd: x\n").unwrap();
        let err = StackPathSettings::load(&env(&[("SP_CONFIG_LOCATION", file.to_str().unwrap())]))
            .unwrap_err();
        assert!(err.0[0].contains("stack_idd"), "{err}");
    }

    #[test]
    fn node_name_default_matches_go_provider() {
        assert_eq!(node_name(None, "DFW"), "stackpath-edge-provider-dfw");
        // The Go provider appended the city to whatever --nodename it was given.
        assert_eq!(node_name(Some("edge"), "DFW"), "edge-dfw");
        // Names vk-stackpath 0.1 deployments pass keep working.
        assert_eq!(
            node_name(Some("stackpath-edge-provider-dfw"), "DFW"),
            "stackpath-edge-provider-dfw"
        );
        assert_eq!(node_name(Some("vk-{city}-edge"), "LAX"), "vk-lax-edge");
        assert!(check_node_name("edge-dfw").is_ok());
        assert!(check_node_name("edge.example-dfw").is_ok());
        for bad in [
            "Edge-dfw",
            "-dfw",
            &"x".repeat(64),
            "a_b",
            "a..b",
            "",
            "a.-b",
        ] {
            assert!(
                check_node_name(bad).unwrap_err().contains("--nodename"),
                "{bad}"
            );
        }
    }

    #[test]
    fn several_cities() {
        let base = env(&[
            ("SP_STACK_ID", "s"),
            ("SP_CLIENT_ID", "i"),
            ("SP_CLIENT_SECRET", "x"),
            ("SP_CITY_CODE", "dfw, lax,AMS"),
        ]);
        let s = StackPathSettings::load(&base).unwrap();
        assert_eq!(s.city_codes, ["DFW", "LAX", "AMS"]);
        assert_eq!(s.city_code, "DFW");
        // A flag replaces the variable.
        let flagged = Overridden {
            base: &base,
            vars: BTreeMap::from([("SP_CITY_CODE".into(), "SEA".into())]),
        };
        assert_eq!(
            StackPathSettings::load(&flagged).unwrap().city_codes,
            ["SEA"]
        );
        for (bad, needle) in [
            ("DFW,DFW", "twice"),
            ("DFW,,LAX", "``"),
            ("DFW;LAX", "DFW;LAX"),
        ] {
            let mut e = base.clone();
            e.insert("SP_CITY_CODE".into(), bad.into());
            let err = StackPathSettings::load(&e).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
