//! Image pull credentials: the `kubernetes.io/dockerconfigjson` (or legacy `dockercfg`)
//! Secrets named in `imagePullSecrets`, one credential per registry. Messages never quote the
//! Secrets' content.

use std::collections::BTreeMap;

use base64::Engine as _;
use stackpath_client::Secret;
use stackpath_client::model::{DockerRegistryCredentials, ImagePullCredential};

use super::{Objects, secret_data};

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize, Default)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    email: Option<String>,
}

pub(super) fn pull_credentials(
    namespace: &str,
    name: &str,
    objects: &Objects,
) -> Result<Vec<ImagePullCredential>, String> {
    let Some(secret) = objects.secrets.get(name) else {
        return Err(format!(
            "image pull Secret `{name}` not found in namespace `{namespace}`; create it or \
             remove it from imagePullSecrets"
        ));
    };
    let data = secret_data(secret);
    let kind = secret.type_.as_deref().unwrap_or("");
    let auths = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfig>(json)
            .map(|c| c.auths)
            .map_err(|e| {
                format!(
                    "image pull Secret `{name}`: `.dockerconfigjson` is not valid docker config \
                     JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice::<BTreeMap<String, DockerAuth>>(json).map_err(|e| {
            format!(
                "image pull Secret `{name}`: `.dockercfg` is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        })?
    } else {
        return Err(format!(
            "image pull Secret `{name}` (type `{kind}`) has neither `.dockerconfigjson` nor \
             `.dockercfg`; create it with `kubectl create secret docker-registry`"
        ));
    };
    let mut out = Vec::new();
    for (server, a) in auths {
        let (username, password) = match (a.username, a.password) {
            (Some(u), Some(p)) => (u, p),
            (u, p) => {
                let decoded = a
                    .auth
                    .as_deref()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    });
                match decoded {
                    Some((du, dp)) => (u.unwrap_or(du), p.unwrap_or(dp)),
                    None => {
                        return Err(format!(
                            "image pull Secret `{name}`: the entry for `{server}` has no \
                             username/password and no valid `auth` (base64 of user:password)"
                        ));
                    }
                }
            }
        };
        out.push(ImagePullCredential {
            docker_registry: Some(DockerRegistryCredentials {
                server: Some(server),
                username: Some(username),
                password: Some(Secret::new(password)),
                email: a.email,
            }),
        });
    }
    Ok(out)
}
