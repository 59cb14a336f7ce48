//! The Sequence controller: runs each Sequence with the same engine and the same drive loop as the
//! CLI, keeping the run in `.status` instead of a state file.
//!
//! Per reconcile: read the Sequence; resolve its plan (pinned in `.status` when the run starts: a
//! later spec edit does not change a running plan and is reported in the `SpecChanged` condition);
//! drive the engine until it asks for nothing more, writing `.status` before every action with the
//! object's resourceVersion as precondition (a stale read fails with a conflict and the next
//! reconcile starts from the stored status); then requeue at the engine's next timer. Running tasks
//! are watched by the shared poller (`poller.rs`), which wakes a Sequence when its tasks change.
//! Deleting a Sequence stops its tasks first (finalizer).
//!
//! Owns: the `Sequence` type and its CRD ([`sequence`]), its [`conditions`], one reconcile
//! (`reconcile.rs`), where its plan comes from (`plan_source.rs`, `git_source.rs`), the `.status` writes
//! (`status_store.rs`), not acting on a cached copy older than its own writes (`freshness.rs`), Sequences it cannot decode (`undecodable.rs`), Events and log lines (`events.rs`), the shared ECS [`poller`], Lease
//! [`leader`] election, which objects this controller owns ([`shard`]), what tenants may run ([`sequence_policy`], [`tenancy`]), the HTTP [`server`] and its [`metrics`], and start-up and shutdown
//! (`run.rs`). May use the core, `drive`, `ecs`, `source`, `batch` and `shutdown`; never `cli`.

pub mod conditions;
mod error;
pub mod event_recorder;
mod events;
mod freshness;
mod git_source;
pub mod json_text;
pub mod kube_client;
pub mod leader;
pub mod metrics;
pub mod plan_source;
pub mod poller;
mod reconcile;
mod run;
pub mod scheduled_sequence;
pub mod schedules;
pub mod sequence;
pub mod sequence_policy;
pub mod server;
pub mod shard;
mod status_store;
pub mod task_events;
pub mod tenancy;
pub mod undecodable;
pub mod wake_queue;

use std::sync::Arc;

use kube::Client;

pub use error::Error;
use reconcile::{error_policy, reconcile};
pub use run::{RunError, Settings, TaskEventSettings, run};

use crate::controller::metrics::Metrics;
use crate::controller::poller::Poller;
use crate::ecs::clients::AwsClients;

pub const FINALIZER: &str = "sequencer.dev/stop-tasks";
pub const FIELD_MANAGER: &str = "sequencer-controller";

pub struct Context {
    pub client: Client,
    pub aws: Arc<AwsClients>,
    pub recorder: event_recorder::EventRecorder,
    pub poller: Arc<Poller>,
    pub metrics: Arc<Metrics>,
    /// For Sequences without `spec.pollIntervalSeconds`.
    pub default_poll_interval_seconds: u64,
    /// The version of each Sequence this controller last wrote, to not act on an older copy.
    pub freshness: Arc<freshness::Freshness>,
    /// The SequencePolicies, and which namespaces they govern.
    pub tenancy: tenancy::Tenancy,
}
