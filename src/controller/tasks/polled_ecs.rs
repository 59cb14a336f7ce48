//! The engine's view of ECS inside the controller: DescribeTasks is answered from what the shared
//! poller last saw, every other call goes to ECS in the Sequence's region and role.

use sequencer_core::action::Action;
use sequencer_core::observation::{ApiError, Observation};

use crate::controller::runtime::metrics::Metrics;
use crate::controller::tasks::owner::{ClusterKey, Owner};
use crate::controller::tasks::poller::Poller;
use crate::ecs::Executor;
use crate::ecs::clients::RegionClients;

/// The executor a Sequence's reconcile uses: DescribeTasks comes from the shared poller, every
/// other call goes to ECS in the Sequence's region.
pub struct PolledEcs<'a> {
    pub clients: RegionClients,
    pub poller: &'a Poller,
    pub owner: Owner,
    pub poll_interval_seconds: u64,
    pub metrics: &'a Metrics,
}

impl Executor for PolledEcs<'_> {
    async fn execute(&self, action: &Action) -> Observation {
        if let Action::Describe { cluster, task_arns } = action {
            let key = ClusterKey {
                region: self.clients.region.clone(),
                cluster: cluster.clone(),
                role: self.clients.role.clone(),
            };
            let response =
                self.poller
                    .answer(&self.owner, &key, self.poll_interval_seconds, task_arns);
            return Observation::Described {
                outcome: Ok(response),
            };
        }
        let observation = self.clients.ecs.execute(action).await;
        let (operation, failed) = match &observation {
            Observation::Launched { outcome, .. } => ("RunTask", outcome.as_ref().err()),
            Observation::LookedUp { outcome, .. } => ("ListTasks", outcome.as_ref().err()),
            Observation::StopAnswered { outcome, .. } => ("StopTask", outcome.as_ref().err()),
            Observation::TaskDefinitionDescribed { outcome, .. } => {
                ("DescribeTaskDefinition", outcome.as_ref().err())
            }
            Observation::LogsFetched { tails, .. } => {
                self.metrics.logs_read(tails);
                return observation;
            }
            _ => return observation,
        };
        let result: Result<(), ApiError> = failed.map_or(Ok(()), |e| Err(e.clone()));
        self.metrics.ecs_call(operation, &result);
        observation
    }
}
