//! The CLI's runner: the loop that feeds the engine. It keeps one rule: the status a decision
//! returns is stored before any of the decision's actions is carried out.

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::action::RunEvent;
use crate::ecs::Executor;
use crate::engine::advance;
use crate::observation::Observation;
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::state_file::{StateError, StateFile, save};
use crate::status::RunStatus;

const MIN_WAIT: Duration = Duration::from_millis(50);

/// Where a run's status is kept between decisions. `save` must not return before the status is
/// durable: the runner carries out a decision's actions only after it returns.
pub trait StatusStore {
    type Error: std::error::Error;
    fn save(
        &mut self,
        status: &RunStatus,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// The CLI's stores: nothing (a run without `--state` cannot be resumed), or the `--state` file.
pub enum CliStore {
    Memory,
    File {
        path: std::path::PathBuf,
        template: Box<StateFile>,
    },
}

impl StatusStore for CliStore {
    type Error = StateError;
    async fn save(&mut self, status: &RunStatus) -> Result<(), StateError> {
        match self {
            CliStore::Memory => Ok(()),
            CliStore::File { path, template } => {
                template.status = status.clone();
                save(path, template)
            }
        }
    }
}

/// Where the engine's events go: progress lines for the CLI, Kubernetes Events for the controller.
pub trait EventSink {
    fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]);
}

impl<W: Write> EventSink for Reporter<W> {
    fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]) {
        Reporter::events(self, plan, status, events);
    }
}

/// The outcome of `drive`: the status reached, and when the engine wants to look again.
pub struct Driven {
    pub status: RunStatus,
    pub wake_at: Option<Timestamp>,
    /// When the timers alone need a look (see `Decision::timer_at`).
    pub timer_at: Option<Timestamp>,
}

/// Feeds the engine until it asks for nothing more right now: advance, persist the new status,
/// carry out the actions, advance again with their answers. Shared by the CLI and the controller,
/// so that both apply exactly the same protocol.
pub async fn drive<E: Executor, S: StatusStore, R: EventSink>(
    plan: &Plan,
    mut status: RunStatus,
    mut observations: Vec<Observation>,
    ecs: &E,
    store: &mut S,
    reporter: &mut R,
) -> Result<Driven, S::Error> {
    loop {
        let decision = advance(plan, &status, &observations, Timestamp::now());
        if decision.status != status {
            store.save(&decision.status).await?;
        }
        status = decision.status;
        reporter.events(plan, &status, &decision.events);
        if decision.actions.is_empty() {
            return Ok(Driven {
                status,
                wake_at: decision.wake_at,
                timer_at: decision.timer_at,
            });
        }
        observations = Vec::with_capacity(decision.actions.len());
        for action in &decision.actions {
            tracing::debug!(?action, "carrying out");
            observations.push(ecs.execute(action).await);
        }
    }
}

/// Runs until the run is finished. `cancel` carries a reason once the user asks to stop.
pub async fn run<E: Executor, S: StatusStore, W: Write>(
    plan: &Plan,
    mut status: RunStatus,
    ecs: &E,
    store: &mut S,
    reporter: &mut Reporter<W>,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<RunStatus, S::Error> {
    // A (re)started runner begins with a tick: it looks at running tasks and at launches that may
    // have happened before a crash.
    let mut observations = vec![Observation::Tick];
    let mut cancel_sent = false;
    loop {
        if !cancel_sent && let Some(reason) = cancel.borrow().clone() {
            observations.push(Observation::CancelRequested { reason });
            cancel_sent = true;
        }
        let driven = drive(
            plan,
            status,
            std::mem::take(&mut observations),
            ecs,
            store,
            reporter,
        )
        .await?;
        status = driven.status;
        if status.is_finished() {
            return Ok(status);
        }
        let now = Timestamp::now();
        let wait = match driven.wake_at {
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
