//! What every reconcile of a Sequence is handed: the clients, the shared poller, the policies,
//! and what the controller remembers of its own writes.

use std::sync::Arc;

use kube::Client;

use crate::controller::runtime::event_recorder::EventRecorder;
use crate::controller::runtime::freshness::Freshness;
use crate::controller::runtime::metrics::Metrics;
use crate::controller::tasks::poller::Poller;
use crate::controller::tenancy::policies::Tenancy;
use crate::ecs::clients::AwsClients;

pub struct Context {
    pub client: Client,
    pub aws: Arc<AwsClients>,
    pub recorder: EventRecorder,
    pub poller: Arc<Poller>,
    pub metrics: Arc<Metrics>,
    /// For Sequences without `spec.pollIntervalSeconds`.
    pub default_poll_interval_seconds: u64,
    /// The version of each Sequence this controller last wrote, to not act on an older copy.
    pub freshness: Arc<Freshness>,
    /// The SequencePolicies, and which namespaces they govern.
    pub tenancy: Tenancy,
}
