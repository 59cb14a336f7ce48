//! How the poller describes tasks: ECS in the controller, a fake in unit tests.

use sequencer_core::observation::{ApiError, DescribeResponse};

use crate::controller::tasks::owner::ClusterKey;
use crate::ecs::clients::AwsClients;

pub trait Describer: Send + Sync {
    fn describe(
        &self,
        key: &ClusterKey,
        arns: &[String],
    ) -> impl std::future::Future<Output = Result<DescribeResponse, ApiError>> + Send;
}

impl Describer for AwsClients {
    async fn describe(
        &self,
        key: &ClusterKey,
        arns: &[String],
    ) -> Result<DescribeResponse, ApiError> {
        let clients = self.acting_as(Some(&key.region), key.role.as_ref());
        clients.ecs.describe(key.cluster.as_deref(), arns).await
    }
}
