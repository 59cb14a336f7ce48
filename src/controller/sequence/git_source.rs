//! A Sequence's batch file in git (`spec.source.git`): where it is, and the credentials of the
//! Secret it names, read from the Sequence's own namespace only when named, so that a tenant never
//! reaches another's. The fetch itself is `source::git`.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ResourceExt};

use crate::api::conditions::SOURCE_ERROR;
use crate::api::sequence::{GitSource, Sequence};
use crate::controller::sequence::refusal::Refusal;
use crate::source::git::{GitCredentials, GitOptions};
use crate::source::{GitLocation, LoadedBatch};

pub fn git_location(git: &GitSource) -> GitLocation {
    GitLocation {
        url: git.url.clone(),
        reference: git.reference.clone(),
        path: git.path.trim_start_matches('/').to_owned(),
    }
}

/// Reads the batch file from git, with the credentials of the Secret the source names (in the
/// Sequence's own namespace, so a tenant never reaches another's).
pub async fn read_git(
    seq: &Sequence,
    git: &GitSource,
    client: &kube::Client,
) -> Result<LoadedBatch, Refusal> {
    let location = git_location(git);
    let credentials = match &git.secret_ref {
        None => None,
        Some(secret) => Some(git_credentials(seq, &secret.name, client).await?),
    };
    let options = GitOptions {
        credentials,
        isolated: true,
    };
    crate::source::load_git(&location, &options)
        .await
        .map_err(|e| Refusal::new(SOURCE_ERROR, e.to_string()))
}

/// `username` and `password` from the Secret (Flux's keys, and those of `kubernetes.io/basic-auth`).
async fn git_credentials(
    seq: &Sequence,
    name: &str,
    client: &kube::Client,
) -> Result<GitCredentials, Refusal> {
    let namespace = seq.namespace().unwrap_or_default();
    let label = format!("spec.source.git.secretRef: Secret {namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(Refusal::new(
                SOURCE_ERROR,
                format!("{label} does not exist"),
            ));
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(Refusal::new(
                SOURCE_ERROR,
                format!(
                    "{label}: the controller may not read Secrets (install the chart with gitCredentials.enabled=true)"
                ),
            ));
        }
        Err(e) => return Err(Refusal::new(SOURCE_ERROR, format!("{label}: {e}"))),
    };
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
    };
    match (text("username"), text("password")) {
        (Some(username), Some(password)) => Ok(GitCredentials { username, password }),
        _ => {
            let why = if text("identity").is_some() || text("ssh-privatekey").is_some() {
                "holds an ssh key, and ssh is not supported: give username and password (a token as the password) for the https:// URL"
            } else if text("bearerToken").is_some() {
                "holds a bearerToken: give it as password, with any username (e.g. git), which the common hosts accept"
            } else {
                "needs the keys username and password"
            };
            Err(Refusal::new(SOURCE_ERROR, format!("{label} {why}")))
        }
    }
}
