//! `KubeStore`: the run's status kept in the Sequence's `.status`, written through the status
//! subresource by one field manager, with the last seen resourceVersion as precondition, so that
//! status is never written from a stale read (a conflict ends the reconcile; the next one starts
//! from what is stored).

use jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, PostParams, ResourceExt};
use serde_json::Value;

use super::{Error, FIELD_MANAGER};
use crate::conditions::{self, conditions};
use crate::plan::Plan;
use crate::runner::StatusStore;
use crate::sequence::{PinnedSpec, Sequence, SequenceStatus};
use crate::status::{RunStatus, StepPhase};

pub struct KubeStore {
    api: Api<Sequence>,
    object: Sequence,
    /// The steps and their origin, written with the first status of the run.
    pub plan: Option<Value>,
    pub pinned: Option<PinnedSpec>,
    pub spec_changed: Option<String>,
}

impl KubeStore {
    pub fn new(api: Api<Sequence>, seq: &Sequence) -> Self {
        KubeStore {
            api,
            object: seq.clone(),
            plan: None,
            pinned: None,
            spec_changed: None,
        }
    }

    /// The object as last read or written.
    pub fn object(&self) -> &Sequence {
        &self.object
    }

    async fn write(&mut self, status: SequenceStatus) -> Result<(), Error> {
        let mut object = self.object.clone();
        object.status = Some(status);
        object.metadata.managed_fields = None;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // A replace carries the resourceVersion last read: a stale write fails with 409.
        match self
            .api
            .replace_status(&object.name_any(), &params, &object)
            .await
        {
            Ok(stored) => {
                self.object = stored;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict),
            Err(e) => Err(Error::Kube(e)),
        }
    }

    /// Reports why the Sequence cannot run (condition Failed with `reason`); launches nothing.
    pub async fn refuse(&mut self, reason: &str, message: &str) -> Result<(), Error> {
        let previous = self.object.status.clone().unwrap_or_default();
        let run = RunStatus::new(self.object.uid().unwrap_or_default(), &Plan::new(vec![]));
        let ctx = conditions::Context {
            refused: Some((reason, message)),
            generation: self.object.meta().generation,
            suspended: self.object.spec.suspend,
            spec_changed: None,
        };
        let status = SequenceStatus {
            phase: Some("Failed".into()),
            observed_generation: self.object.meta().generation,
            conditions: conditions(&previous.conditions, &run, &ctx, Timestamp::now()),
            ..Default::default()
        };
        if self.object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write(status).await
    }

    /// The status a run maps to, conditions included.
    fn status_for(&self, run: &RunStatus) -> SequenceStatus {
        let previous = self.object.status.clone().unwrap_or_default();
        let done = run.steps.iter().filter(|s| s.phase.is_terminal()).count();
        let current_step_name = run
            .current_step
            .and_then(|i| run.steps.get(i))
            .filter(|s| s.phase == StepPhase::Running)
            .map(|s| s.name.clone());
        let spec_changed = self.spec_changed.as_deref().filter(|_| !run.is_finished());
        let ctx = conditions::Context {
            generation: self.object.meta().generation,
            suspended: self.object.spec.suspend,
            refused: None,
            spec_changed,
        };
        SequenceStatus {
            phase: Some(format!("{:?}", run.phase)),
            progress: Some(format!("{done}/{}", run.total_steps)),
            current_step_name,
            observed_generation: self.object.meta().generation,
            run: serde_json::to_value(run).ok(),
            plan: self.plan.clone().or(previous.plan),
            pinned: self.pinned.clone().or(previous.pinned),
            conditions: conditions(&previous.conditions, run, &ctx, Timestamp::now()),
        }
    }

    /// Brings the conditions and observedGeneration up to date when the run itself did not change
    /// (e.g. the spec was edited): nothing is written if nothing differs.
    pub async fn refresh(&mut self, run: &RunStatus) -> Result<(), Error> {
        let status = self.status_for(run);
        if self.object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write(status).await
    }
}

impl StatusStore for KubeStore {
    type Error = Error;

    async fn save(&mut self, run: &RunStatus) -> Result<(), Error> {
        let status = self.status_for(run);
        self.write(status).await
    }
}
