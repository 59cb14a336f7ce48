//! Batch files in git: one file at one commit, fetched in pure Rust (gix) over https, http or
//! git://. A branch or tag is fetched shallow (its commit alone); a full commit SHA needs the
//! branches and tags whose history holds it. The resolved commit is returned with the text, so a
//! run can pin it. ssh is refused: it needs an `ssh` program and keys that the image does not
//! carry.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::MAX_BATCH_BYTES;
use crate::ecs::errors::error_chain;

/// A batch file in a git repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitLocation {
    pub url: String,
    /// A branch, a tag or a full commit SHA; `None`: the remote's default branch.
    pub reference: Option<String>,
    pub path: String,
}

impl std::fmt::Display for GitLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}//{}", self.url, self.path)?;
        if let Some(r) = &self.reference {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// HTTP credentials; never printed.
#[derive(Clone)]
pub struct GitCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitCredentials({}, <redacted>)", self.username)
    }
}

/// How a fetch is made.
#[derive(Clone, Debug, Default)]
pub struct GitOptions {
    /// Credentials for http(s); `None` tries none (and fails if the server asks).
    pub credentials: Option<GitCredentials>,
    /// Ignore the user's and the system's git configuration (the controller); the CLI uses it,
    /// so that a credential helper configured there works.
    pub isolated: bool,
}

/// The file as read, and the commit it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitFile {
    pub text: String,
    pub commit: String,
}

/// Why the file could not be read, with the place named.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct GitError {
    pub location: String,
    pub message: String,
}

/// At most this many fetches at once in one process: each holds a shallow copy on disk.
static FETCHES: Semaphore = Semaphore::const_new(4);

/// A fetch that takes longer is given up (and retried like any source error).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks the URL before anything is fetched: its scheme, and credentials only where they are not
/// sent in the clear.
pub fn check_url(url: &str, with_credentials: bool) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("https") => Ok(()),
        Some("http") if !with_credentials => Ok(()),
        Some("http") => Err("credentials are only sent over https: use an https:// URL".into()),
        Some("git") if !with_credentials => Ok(()),
        Some("git") => Err("git:// has no authentication: use an https:// URL with credentials".into()),
        Some("ssh") | None if url.contains('@') || url.starts_with("ssh") => Err(
            "ssh is not supported (the image has no ssh program): use the repository's https:// URL, with a token as the password"
                .into(),
        ),
        Some("file") | None => Err(
            "only https://, http:// and git:// URLs are fetched (not local paths or file://)".into(),
        ),
        Some(other) => Err(format!(
            "`{other}://` is not supported: use https://, http:// or git://"
        )),
    }
}

/// Whether `reference` names a commit rather than a branch or tag.
pub fn is_commit_sha(reference: &str) -> bool {
    reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// Fetches `location`'s file. Blocking network and disk work runs off the async threads, bounded
/// in number and time.
pub async fn load(location: &GitLocation, options: &GitOptions) -> Result<GitFile, GitError> {
    let fail = |message: String| GitError {
        location: location.to_string(),
        message,
    };
    check_url(&location.url, options.credentials.is_some()).map_err(fail)?;
    let _permit = FETCHES
        .acquire()
        .await
        .map_err(|_| fail("the process is shutting down".into()))?;
    let interrupt = Arc::new(AtomicBool::new(false));
    let work = {
        let (location, options, interrupt) = (location.clone(), options.clone(), interrupt.clone());
        tokio::task::spawn_blocking(move || fetch(&location, &options, &interrupt))
    };
    match tokio::time::timeout(FETCH_TIMEOUT, work).await {
        Ok(Ok(result)) => result.map_err(fail),
        Ok(Err(e)) => Err(fail(format!("the fetch failed: {e}"))),
        Err(_) => {
            interrupt.store(true, Ordering::Relaxed);
            Err(fail(format!(
                "no answer within {} s (is the host reachable?)",
                FETCH_TIMEOUT.as_secs()
            )))
        }
    }
}

fn fetch(
    location: &GitLocation,
    options: &GitOptions,
    interrupt: &AtomicBool,
) -> Result<GitFile, String> {
    let dir = tempfile::Builder::new()
        .prefix("sequencer-git-")
        .tempdir()
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let open = if options.isolated {
        gix::open::Options::isolated()
    } else {
        gix::open::Options::default()
    };
    let commit_sha = location.reference.as_deref().filter(|r| is_commit_sha(r));
    let mut prepare = gix::clone::PrepareFetch::new(
        location.url.as_str(),
        dir.path(),
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        open,
    )
    .map_err(|e| error_chain(&e))?;
    if commit_sha.is_none() {
        // A branch or tag: its commit alone.
        let one = NonZeroU32::MIN;
        prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(one));
        if let Some(name) = &location.reference {
            prepare = prepare
                .with_ref_name(Some(name.as_str()))
                .map_err(|e| format!("ref `{name}`: {}", error_chain(&e)))?;
        }
    }
    let credentials = options.credentials.clone();
    let isolated = options.isolated;
    prepare = prepare.configure_connection(move |connection| {
        if let Some(credentials) = credentials.clone() {
            connection.set_credentials(move |action| Ok(answer(action, &credentials)));
        } else if isolated {
            // No prompt and no helper: a server that asks for credentials is refused at once.
            connection.set_credentials(|_| Ok(None));
        }
        Ok(())
    });
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, interrupt)
        .map_err(|e| with_hint(error_chain(&e), options))?;
    let commit = match commit_sha {
        Some(sha) => {
            let id = gix::ObjectId::from_hex(sha.as_bytes()).map_err(|e| e.to_string())?;
            repo.find_object(id)
                .map_err(|_| format!("commit {sha} is not on any branch or tag of the repository"))?
                .peel_to_commit()
                .map_err(|e| format!("{sha} is not a commit: {e}"))?
        }
        None => repo
            .head_commit()
            .map_err(|e| format!("the fetched ref has no commit: {e}"))?,
    };
    let commit_id = commit.id.to_string();
    let tree = commit.tree().map_err(|e| e.to_string())?;
    let Some(entry) = tree
        .lookup_entry_by_path(location.path.as_str())
        .map_err(|e| e.to_string())?
    else {
        return Err(format!("no file {} at commit {commit_id}", location.path));
    };
    if !entry.mode().is_blob() {
        return Err(format!(
            "{} is not a file at commit {commit_id}",
            location.path
        ));
    }
    let blob = entry.object().map_err(|e| e.to_string())?;
    if blob.data.len() as u64 > MAX_BATCH_BYTES {
        return Err(format!(
            "{} is larger than {MAX_BATCH_BYTES} bytes at commit {commit_id}",
            location.path
        ));
    }
    let text = String::from_utf8(blob.data.clone())
        .map_err(|_| format!("{} is not UTF-8 text at commit {commit_id}", location.path))?;
    Ok(GitFile {
        text,
        commit: commit_id,
    })
}

fn answer(
    action: gix::credentials::helper::Action,
    credentials: &GitCredentials,
) -> Option<gix::credentials::protocol::Outcome> {
    match action {
        gix::credentials::helper::Action::Get(context) => {
            Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: credentials.username.clone(),
                    password: credentials.password.clone(),
                    oauth_refresh_token: None,
                },
                next: context.into(),
            })
        }
        _ => None,
    }
}

/// gix's words for a server that asked for credentials nobody gave, made actionable.
fn with_hint(text: String, options: &GitOptions) -> String {
    let unanswered =
        text.contains("No credentials were returned") || text.contains("Couldn't obtain Username");
    match (unanswered, options.credentials.is_some(), options.isolated) {
        (true, false, true) => format!(
            "the server asks for credentials: name a Secret with username and password in spec.source.git.secretRef ({text})"
        ),
        (true, false, false) => format!(
            "the server asks for credentials: configure a git credential helper for it ({text})"
        ),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fetchable_urls_are_accepted_and_credentials_never_go_in_the_clear() {
        assert!(check_url("https://git.example.com/a.git", true).is_ok());
        assert!(check_url("http://git.example.com/a.git", false).is_ok());
        assert!(check_url("git://git.example.com/a.git", false).is_ok());
        assert!(check_url("https://127.0.0.1:8443/a.git", true).is_ok());
        for (url, credentials, says) in [
            ("http://git.example.com/a.git", true, "only sent over https"),
            ("http://127.0.0.1:8080/a.git", true, "only sent over https"),
            ("git://git.example.com/a.git", true, "no authentication"),
            (
                "ssh://git@git.example.com/a.git",
                false,
                "ssh is not supported",
            ),
            ("git@github.com:org/repo.git", false, "ssh is not supported"),
            ("file:///etc/repo.git", false, "not local paths"),
            ("/srv/repo.git", false, "not local paths"),
            ("ftp://x/a.git", false, "`ftp://` is not supported"),
        ] {
            let error = check_url(url, credentials).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn a_commit_is_forty_hex_digits() {
        assert!(is_commit_sha("c8081a4918fb5037897a63e483f94f26ba2fb8a4"));
        assert!(!is_commit_sha("c8081a4"));
        assert!(!is_commit_sha("main"));
        assert!(!is_commit_sha("g8081a4918fb5037897a63e483f94f26ba2fb8a4"));
    }
}
