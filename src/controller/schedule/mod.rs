//! ScheduledSequences: a schedule that creates one Sequence per occurrence. When to start, skip
//! or replace a run is the core's rule (`sequencer_core::schedule::decide`); this room reads a
//! schedule's runs, acts on the decision and records it.
//!
//! | file | holds |
//! |---|---|
//! | [`context`] | what every reconcile is handed |
//! | [`reconcile`] | one reconcile: read, decide, act, record, requeue |
//! | [`settings`] | the schedule, zone and template, or why they are refused |
//! | [`runs`] | a schedule's runs as the rule sees them |
//! | [`new_run`] | the Sequence made for an occurrence or a run-now request |
//! | [`schedule_status`] | `.status` and conditions, and the Events that report a decision |
//!
//! May use: the core, `api`, `runtime`, the controller's `error`. Never the Sequence room: a run
//! is an ordinary Sequence, created through the API server like any other.

pub mod context;
pub mod new_run;
pub mod reconcile;
pub mod runs;
pub mod schedule_status;
pub mod settings;
