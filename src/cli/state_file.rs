//! The CLI's state file: the run's status, written atomically after every change, so that the
//! same command resumes where a killed run stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::S3Object;
use sequencer_core::status::RunStatus;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    pub format_version: u32,
    /// The batch the run belongs to, as given on the command line.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_object: Option<serde_json::Value>,
    pub status: RunStatus,
}

impl StateFile {
    pub fn new(source: String, s3: Option<&S3Object>, status: RunStatus) -> Self {
        StateFile {
            format_version: FORMAT_VERSION,
            source,
            s3_object: s3.and_then(|o| serde_json::to_value(o).ok()),
            status,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {message}")]
    Read { path: String, message: String },
    #[error(
        "the state file {path} is not a sequencer state file ({message}); move it away to start a new run"
    )]
    Corrupt { path: String, message: String },
    #[error("cannot write the state file {path}: {message}")]
    Write { path: String, message: String },
}

/// `None` when there is no state file yet (a new run).
pub fn load(path: &Path) -> Result<Option<StateFile>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StateError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    let state: StateFile = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if state.format_version != FORMAT_VERSION {
        return Err(StateError::Corrupt {
            path: path.display().to_string(),
            message: format!(
                "format version {} (this sequencer writes {FORMAT_VERSION})",
                state.format_version
            ),
        });
    }
    Ok(Some(state))
}

/// Writes to a temporary file beside the target, syncs it, renames it over the target and syncs the
/// directory: a crash leaves either the old state or the new one, never a torn file.
pub fn save(path: &Path, state: &StateFile) -> Result<(), StateError> {
    let fail = |e: std::io::Error| StateError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let text = serde_json::to_vec_pretty(state).map_err(|e| fail(std::io::Error::other(e)))?;
    {
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&text).map_err(fail)?;
        file.write_all(b"\n").map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        // Some filesystems cannot sync a directory; the rename itself is still atomic.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequencer_core::plan::Plan;

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.state.json");
        assert!(load(&path).unwrap().is_none());
        let state = StateFile::new(
            "b.yml".into(),
            None,
            RunStatus::new("r".into(), &Plan::new(vec![])),
        );
        save(&path, &state).unwrap();
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }

    #[test]
    fn a_foreign_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("not a sequencer state file"), "{err}");
    }
}
