//! The CLI's runner: the loop that feeds the engine. It keeps one rule: the status a decision
//! returns is stored before any of the decision's actions is carried out.

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::action::Action;
use crate::ecs::Executor;
use crate::engine::advance;
use crate::observation::Observation;
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::state_file::{StateError, StateFile, save};
use crate::status::RunStatus;

const MIN_WAIT: Duration = Duration::from_millis(50);

/// Where a run's status is kept between decisions.
pub trait StatusStore {
    fn save(&mut self, status: &RunStatus) -> Result<(), StateError>;
}

/// Keeps nothing: a run without `--state` cannot be resumed.
pub struct MemoryStore;

impl StatusStore for MemoryStore {
    fn save(&mut self, _: &RunStatus) -> Result<(), StateError> {
        Ok(())
    }
}

/// The `--state` file.
pub struct FileStore {
    pub path: std::path::PathBuf,
    pub template: StateFile,
}

impl StatusStore for FileStore {
    fn save(&mut self, status: &RunStatus) -> Result<(), StateError> {
        self.template.status = status.clone();
        save(&self.path, &self.template)
    }
}

/// Runs until the run is finished. `cancel` carries a reason once the user asks to stop.
pub async fn run<E: Executor, W: Write>(
    plan: &Plan,
    mut status: RunStatus,
    ecs: &E,
    store: &mut dyn StatusStore,
    reporter: &mut Reporter<W>,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<RunStatus, StateError> {
    // A (re)started runner begins with a tick: it looks at running tasks and at launches that may
    // have happened before a crash.
    let mut observations = vec![Observation::Tick];
    let mut cancel_sent = false;
    loop {
        if !cancel_sent && let Some(reason) = cancel.borrow().clone() {
            observations.push(Observation::CancelRequested { reason });
            cancel_sent = true;
        }
        let decision = advance(plan, &status, &observations, Timestamp::now());
        if decision.status != status {
            store.save(&decision.status)?;
        }
        status = decision.status;
        reporter.events(plan, &status, &decision.events);

        observations = Vec::with_capacity(decision.actions.len());
        for action in &decision.actions {
            tracing::debug!(?action, "carrying out");
            let observation = ecs.execute(action).await;
            if let (
                Action::Launch { .. },
                Observation::Launched {
                    outcome: Err(e), ..
                },
            ) = (action, &observation)
            {
                tracing::warn!(error = %e, "RunTask failed");
            }
            observations.push(observation);
        }
        if !observations.is_empty() {
            continue;
        }
        if status.is_finished() {
            return Ok(status);
        }
        let now = Timestamp::now();
        let wait = match decision.wake_at {
            Some(at) if at > now => at.duration_since(now).unsigned_abs(),
            Some(_) => Duration::ZERO,
            None => Duration::from_secs(plan.poll_interval_seconds.max(1)),
        }
        // A floor, so that a decision that wants to wake at once can never spin the loop.
        .max(MIN_WAIT);
        tokio::select! {
            _ = tokio::time::sleep(wait) => observations.push(Observation::Tick),
            changed = cancel.changed(), if !cancel_sent => {
                if changed.is_err() {
                    // The signal handler is gone; keep running without it.
                    cancel_sent = true;
                }
            }
        }
    }
}
