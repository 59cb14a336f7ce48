//! How the tasks room names a Sequence and a cluster.

use kube::runtime::reflector::ObjectRef;

use crate::api::guarded_sequence::GuardedSequence;
use crate::ecs::sessions::AssumedRole;

/// A Sequence, named as the controller's reconcile queue names it.
pub type Owner = ObjectRef<GuardedSequence>;

/// Where tasks live: ECS task ARNs are only meaningful with their region and cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ClusterKey {
    pub region: String,
    /// `None` is the account's default cluster.
    pub cluster: Option<String>,
    /// The role the tasks were launched as (`None`: the controller's own identity); another
    /// role is usually another account, whose tasks only it can describe.
    pub role: Option<AssumedRole>,
}
