//! A schedule's runs, as the scheduling rule sees them: each owned Sequence's occurrence, creation
//! time and state.

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use sequencer_core::schedule::{Run, RunState};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::conditions::{FAILED, POLICY_DENIED, SOURCE_ERROR};
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

/// Where a run stands. A run the Sequence controller refused for a reason it reads again by itself
/// (its source cannot be read, a policy does not allow it) has not started, and starts once the
/// source or the policy is fixed: it counts as active, so that `Forbid` starts no other run
/// meanwhile and `Replace` replaces it, and two refused runs never both start when the fix lands.
/// A refusal that waits for an edit of the run (an invalid spec) or an unreadable run is final.
fn state_of(run: &GuardedSequence) -> RunState {
    let Ok(seq) = &run.0 else {
        return RunState::Failed; // refused as unreadable: it will never run
    };
    let Some(status) = seq.status.as_ref() else {
        return RunState::Active;
    };
    match status.phase.as_deref() {
        Some("Succeeded") => RunState::Succeeded,
        Some("Failed") if status.plan.is_none() && refused_until_fixed(&status.conditions) => {
            RunState::Active
        }
        Some("Failed") => RunState::Failed,
        _ => RunState::Active,
    }
}

/// Whether the `Failed` condition says the run was refused for a reason the Sequence controller
/// reads again by itself.
fn refused_until_fixed(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| {
        c.type_ == FAILED
            && c.status == "True"
            && (c.reason == SOURCE_ERROR || c.reason == POLICY_DENIED)
    })
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
    let state = if run.meta().deletion_timestamp.is_some() {
        RunState::Deleting
    } else {
        state_of(run)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(status: serde_json::Value) -> GuardedSequence {
        GuardedSequence::from_json(
            &json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                    "metadata": {"name": "nightly-1", "namespace": "etl"},
                    "spec": {"steps": []}, "status": status})
            .to_string(),
        )
    }

    fn refused(reason: &str) -> serde_json::Value {
        json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True",
               "reason": reason, "message": "m", "lastTransitionTime": "2026-12-04T00:00:00Z"}]})
    }

    #[test]
    fn a_run_refused_until_its_source_or_policy_is_fixed_counts_as_active() {
        assert_eq!(run_of(&run(refused(SOURCE_ERROR))).state, RunState::Active);
        assert_eq!(run_of(&run(refused(POLICY_DENIED))).state, RunState::Active);
        assert_eq!(run_of(&run(refused("InvalidSpec"))).state, RunState::Failed);
        let mut started = refused(SOURCE_ERROR);
        started["plan"] = json!([]);
        assert_eq!(run_of(&run(started)).state, RunState::Failed);
        assert_eq!(
            run_of(&run(json!({"phase": "Failed"}))).state,
            RunState::Failed
        );
        assert_eq!(
            run_of(&run(json!({"phase": "Succeeded"}))).state,
            RunState::Succeeded
        );
        assert_eq!(
            run_of(&run(json!({"phase": "Running"}))).state,
            RunState::Active
        );
        assert_eq!(run_of(&run(json!(null))).state, RunState::Active);
    }
}
