//! The names sequencer gives each launch, derived so that a restarted runner computes the same ones.
//!
//! - `clientToken`: ECS deduplicates RunTask calls with the same token (per cluster, for hours), so
//!   re-issuing a launch whose answer was lost starts nothing new.
//! - `startedBy`: ListTasks can filter on it, which is how a resumed run finds tasks it launched
//!   but never recorded.
//!
//! Both depend only on (run id, step index, attempt).

use sha2::{Digest, Sha256};

use crate::run_task::LaunchIdentity;

pub const TAG_RUN: &str = "sequencer.dev/run";
pub const TAG_STEP: &str = "sequencer.dev/step";
pub const TAG_ATTEMPT: &str = "sequencer.dev/attempt";

/// 64 hex characters: within ECS's limit of 64 printable ASCII characters.
pub fn client_token(run_id: &str, step_index: usize, attempt: u32) -> String {
    let digest = Sha256::digest(format!("sequencer/v1/{run_id}/{step_index}/{attempt}").as_bytes());
    format!("{digest:x}")
}

/// `<label>-<8 hex of the run>-<step number>-<attempt>`, at most 36 characters of `[A-Za-z0-9-_/]`.
pub fn started_by(label: Option<&str>, run_id: &str, step_index: usize, attempt: u32) -> String {
    let run = format!("{:x}", Sha256::digest(run_id.as_bytes()));
    format!(
        "{}-{}-{}-{}",
        label.unwrap_or("seq"),
        &run[..8],
        step_index + 1,
        attempt
    )
}

pub fn launch_identity(
    label: Option<&str>,
    run_id: &str,
    step_index: usize,
    step_name: &str,
    attempt: u32,
) -> LaunchIdentity {
    let step_value: String = format!("{}:{}", step_index + 1, step_name)
        .chars()
        .take(256)
        .collect();
    LaunchIdentity {
        client_token: client_token(run_id, step_index, attempt),
        started_by: started_by(label, run_id, step_index, attempt),
        tags: vec![
            (TAG_RUN.to_owned(), run_id.chars().take(256).collect()),
            (TAG_STEP.to_owned(), sanitize_tag_value(&step_value)),
            (TAG_ATTEMPT.to_owned(), attempt.to_string()),
        ],
    }
}

/// ECS tag values allow letters, digits, spaces and `_ . : / = + - @`; anything else becomes `_`.
fn sanitize_tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_deterministic_distinct_and_within_limits() {
        let a = client_token("run-1", 0, 1);
        assert_eq!(a, client_token("run-1", 0, 1));
        assert_ne!(a, client_token("run-1", 0, 2));
        assert_ne!(a, client_token("run-1", 1, 1));
        assert_ne!(a, client_token("run-2", 0, 1));
        assert!(a.len() <= 64 && a.chars().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn started_by_is_short_and_uses_allowed_characters() {
        let s = started_by(
            Some("nightly-etl_v2/abcd"),
            "3f2a9c1e-0000-4000-8000-123456789abc",
            99,
            100,
        );
        assert!(s.len() <= 36, "{s} is {} long", s.len());
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
        );
        assert!(started_by(None, "r", 0, 1).starts_with("seq-"));
    }

    #[test]
    fn tag_values_are_sanitized() {
        let id = launch_identity(None, "r", 0, "load (daily)!", 1);
        assert_eq!(id.tags[1].1, "1:load _daily__");
    }
}
