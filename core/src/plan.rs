//! A plan: the validated, ordered steps of one run, fixed before anything starts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::step::StepDefinition;

/// A named step: the batch file's `- name: {...}`, or one entry of a Sequence's `spec.steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The step's name (names may repeat; steps are identified by position).
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(flatten)]
    pub definition: StepDefinition,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// Seconds between two looks at running tasks.
    pub poll_interval_seconds: u64,
    /// While true, no further step or attempt starts; a running one is left to finish.
    pub suspended: bool,
    /// The whole run fails, its tasks stopped, once it has run this long.
    pub active_deadline_seconds: Option<u64>,
}

impl Plan {
    pub fn new(steps: Vec<PlannedStep>) -> Self {
        Plan {
            steps,
            poll_interval_seconds: DEFAULT_POLL_INTERVAL_SECONDS,
            suspended: false,
            active_deadline_seconds: None,
        }
    }

    /// A digest of the steps (not of the run options), recorded in the run's status: a resumed run
    /// refuses changed steps.
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(&self.steps).unwrap_or_default();
        format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
    }
}

/// The seed's default (`SEQUENCER_SLEEP_BETWEEN_CHECKS`).
pub const DEFAULT_POLL_INTERVAL_SECONDS: u64 = 5;
