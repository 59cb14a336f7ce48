//! Where a batch file comes from: a local path or an S3 object (as the seed's image read it).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::ecs::errors::error_chain;

pub mod git;

pub use git::GitLocation;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchSource {
    File(PathBuf),
    S3(S3Location),
    /// `git+URL//PATH[?ref=REF]`.
    Git(GitLocation),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl fmt::Display for BatchSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSource::File(path) => write!(f, "{}", path.display()),
            BatchSource::S3(s3) => write!(f, "{s3}"),
            BatchSource::Git(git) => write!(f, "{git}"),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, "?versionId={v}")?;
        }
        Ok(())
    }
}

impl BatchSource {
    /// `s3://bucket/key[?versionId=V]` or a local path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(url) = text.strip_prefix("git+") {
            return parse_git(text, url).map(BatchSource::Git);
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            return Ok(BatchSource::File(PathBuf::from(text)));
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let Some((bucket, key)) = path
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        else {
            return Err(format!(
                "`{text}` is not an S3 location: expected s3://BUCKET/KEY (optionally ?versionId=VERSION)"
            ));
        };
        let version_id = match query {
            None => None,
            Some(q) => match q.strip_prefix("versionId=") {
                Some(v) if !v.is_empty() && !v.contains('&') => Some(v.to_owned()),
                _ => {
                    return Err(format!(
                        "`{text}`: the only query allowed is ?versionId=VERSION"
                    ));
                }
            },
        };
        Ok(BatchSource::S3(S3Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id,
        }))
    }
}

/// A batch file's text and what is known of where it came from.
/// `git+https://host/repo.git//path/batch.yml?ref=v1`: the repository URL, `//`, the file's path
/// in it, and optionally the branch, tag or commit.
fn parse_git(text: &str, url: &str) -> Result<GitLocation, String> {
    let usage = "expected git+URL//PATH[?ref=REF], e.g. git+https://git.example.com/team/batches.git//nightly/etl.yml?ref=v1";
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let reference = match query {
        None => None,
        Some(q) => match q.strip_prefix("ref=") {
            Some(r) if !r.is_empty() && !r.contains('&') => Some(r.to_owned()),
            _ => return Err(format!("`{text}`: the only query allowed is ?ref=REF")),
        },
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{text}`: {usage}"));
    };
    let Some((repo, path)) = rest
        .split_once("//")
        .filter(|(repo, path)| !repo.is_empty() && !path.is_empty())
    else {
        return Err(format!("`{text}`: no path in the repository: {usage}"));
    };
    Ok(GitLocation {
        url: format!("{scheme}://{repo}"),
        reference,
        path: path.to_owned(),
    })
}

#[derive(Clone, Debug)]
pub struct LoadedBatch {
    pub label: String,
    pub text: String,
    pub s3: Option<S3Object>,
    /// The commit a git source was read at.
    pub git_commit: Option<String>,
}

/// The exact S3 object read: recorded so a run can say which version it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    pub location: S3Location,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("cannot read {location}: {message}")]
    S3 { location: String, message: String },
    #[error("{location} is not UTF-8 text")]
    NotText { location: String },
    #[error("cannot read {0}")]
    Git(#[from] git::GitError),
}

/// Reads a batch file from git: the label names the commit, so that a line:column in an error
/// points at the exact file.
pub async fn load_git(
    location: &GitLocation,
    options: &git::GitOptions,
) -> Result<LoadedBatch, SourceError> {
    let file = git::load(location, options).await?;
    Ok(LoadedBatch {
        label: format!("{location} (commit {})", file.commit),
        text: file.text,
        s3: None,
        git_commit: Some(file.commit),
    })
}

/// Objects larger than this are not batch files.
pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;

pub async fn load_file(path: &std::path::Path) -> Result<LoadedBatch, SourceError> {
    let label = path.display().to_string();
    let bytes = tokio::fs::read(path).await.map_err(|e| SourceError::File {
        path: label.clone(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SourceError::NotText {
        location: label.clone(),
    })?;
    Ok(LoadedBatch {
        label,
        text,
        s3: None,
        git_commit: None,
    })
}

pub async fn load_s3(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<LoadedBatch, SourceError> {
    let label = location.to_string();
    let fail = |message: String| SourceError::S3 {
        location: label.clone(),
        message,
    };
    let out = client
        .get_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .set_version_id(location.version_id.clone())
        .send()
        .await
        .map_err(|e| fail(s3_error_text(&e)))?;
    if out.content_length().unwrap_or(0) as u64 > MAX_BATCH_BYTES {
        return Err(fail(format!(
            "the object is larger than {MAX_BATCH_BYTES} bytes"
        )));
    }
    let object = S3Object {
        location: location.clone(),
        version_id: out.version_id().map(Into::into),
        etag: out.e_tag().map(Into::into),
        last_modified: out.last_modified().map(|t| t.to_string()),
    };
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .into_bytes();
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| SourceError::NotText {
        location: label.clone(),
    })?;
    Ok(LoadedBatch {
        label,
        text,
        s3: Some(object),
        git_commit: None,
    })
}

fn s3_error_text<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or("Error"),
            e.message().unwrap_or("no message")
        ),
        None => error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_locations_and_paths() {
        assert_eq!(
            BatchSource::parse("batch.yml").unwrap(),
            BatchSource::File("batch.yml".into())
        );
        let BatchSource::S3(s3) = BatchSource::parse("s3://b/dir/x.yml?versionId=v1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                s3.bucket.as_str(),
                s3.key.as_str(),
                s3.version_id.as_deref()
            ),
            ("b", "dir/x.yml", Some("v1"))
        );
        for bad in [
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://b/k?v=1",
        ] {
            assert!(BatchSource::parse(bad).is_err(), "{bad}");
        }
    }
}
