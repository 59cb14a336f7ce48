//! The drive loop: how any runner (the CLI, the controller) feeds the engine. It keeps the
//! protocol's one rule for runners: the status a decision returns is stored before any of the
//! decision's actions is carried out. Where the status is stored (`StatusStore`) and where the
//! events go (`EventSink`) is the runner's choice.

use jiff::Timestamp;

use crate::ecs::Executor;
use sequencer_core::engine::advance;
use sequencer_core::event::RunEvent;
use sequencer_core::observation::Observation;
use sequencer_core::plan::Plan;
use sequencer_core::status::RunStatus;

/// Where a run's status is kept between decisions. `save` must not return before the status is
/// durable: the runner carries out a decision's actions only after it returns.
pub trait StatusStore {
    type Error: std::error::Error;
    fn save(
        &mut self,
        status: &RunStatus,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// Where the engine's events go: progress lines for the CLI, Kubernetes Events for the controller.
pub trait EventSink {
    fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]);
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
