//! A schedule's runs, as the scheduling rule sees them: each owned Sequence's occurrence, creation
//! time and state. A run the Sequence controller refused as unreadable counts as Failed.

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use sequencer_core::schedule::{Run, RunState};

use crate::api::guarded_sequence::GuardedSequence;
use crate::api::labels::{SCHEDULED_AT, SCHEDULED_BY};
use crate::api::scheduled_sequence::ScheduledSequence;

/// The Sequences `parent` owns, listed guarded: one malformed run must not hide the others.
pub async fn owned_runs(
    guarded: &Api<GuardedSequence>,
    parent: &ScheduledSequence,
) -> Result<Vec<GuardedSequence>, kube::Error> {
    let selector = format!("{SCHEDULED_BY}={}", parent.name_any());
    Ok(guarded
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|s| is_owned_by(s, parent))
        .collect())
}

fn is_owned_by(run: &GuardedSequence, parent: &ScheduledSequence) -> bool {
    let uid = parent.uid();
    run.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

fn phase_of(run: &GuardedSequence) -> Option<&str> {
    match &run.0 {
        Ok(seq) => seq.status.as_ref().and_then(|s| s.phase.as_deref()),
        // Refused by the Sequence controller as unreadable: it will never run.
        Err(_) => Some("Failed"),
    }
}

/// A run as the rule sees it.
pub fn run_of(run: &GuardedSequence) -> Run {
    let scheduled = run
        .annotations()
        .get(SCHEDULED_AT)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let created = run
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let phase = phase_of(run);
    let state = if run.meta().deletion_timestamp.is_some() {
        RunState::Deleting
    } else {
        match phase {
            Some("Succeeded") => RunState::Succeeded,
            Some("Failed") => RunState::Failed,
            _ => RunState::Active,
        }
    };
    Run {
        name: run.name_any(),
        scheduled,
        created,
        state,
    }
}

/// The one field of a stored run that schedules look at.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunEnd {
    completion_time: Option<Timestamp>,
}

/// When the newest successful run finished.
pub fn last_success(runs: &[GuardedSequence]) -> Option<Timestamp> {
    runs.iter()
        .filter_map(|r| r.0.as_ref().ok())
        .filter(|r| r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .filter_map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.run.as_ref())
                .and_then(|run| run.parse::<RunEnd>().ok())
                .and_then(|run| run.completion_time)
        })
        .max()
}
