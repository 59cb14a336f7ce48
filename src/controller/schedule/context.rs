//! What every reconcile of a ScheduledSequence is handed.

use std::sync::Arc;

use kube::Client;

use crate::controller::runtime::event_recorder::EventRecorder;
use crate::controller::runtime::freshness::Freshness;
use crate::controller::runtime::metrics::Metrics;

pub struct ScheduleContext {
    pub client: Client,
    pub recorder: EventRecorder,
    pub metrics: Arc<Metrics>,
    /// The version of each ScheduledSequence this controller last wrote, to not act on an older
    /// copy.
    pub freshness: Freshness,
}
