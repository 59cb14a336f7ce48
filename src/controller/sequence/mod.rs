//! Running one Sequence: the same engine and drive loop as the CLI, with the run kept in
//! `.status` instead of a state file.
//!
//! Per reconcile: read the Sequence; resolve its plan (pinned in `.status` when the run starts: a
//! later spec edit does not change a running plan and is reported in the `SpecChanged` condition);
//! drive the engine until it asks for nothing more, writing `.status` before every action with the
//! object's resourceVersion as precondition (a stale read fails with a conflict and the next
//! reconcile starts from the stored status); then requeue at the engine's next timer. Running
//! tasks are watched by the shared poller (`tasks`), which wakes a Sequence when its tasks change.
//! Deleting a Sequence stops its tasks first (finalizer).
//!
//! | file | holds |
//! |---|---|
//! | [`context`] | what every reconcile is handed |
//! | [`reconcile`] | one reconcile through the finalizer, and `error_policy` |
//! | [`apply`] | the run driven as far as it goes now, and when to look again |
//! | [`cleanup`] | a deleted Sequence: stop its tasks, then let go |
//! | [`plan_source`] | where the plan comes from: pinned, inline, ConfigMap, S3, git |
//! | [`git_source`] | a git source's location and credentials |
//! | [`refusal`] | why a run cannot start |
//! | [`status_store`] | `.status` writes, guarded by the resourceVersion |
//! | [`conditions`] | the conditions, derived from the run |
//! | [`undecodable`] | Sequences that cannot be decoded, refused on the object |
//! | [`events`] | the engine's reports as Events, log lines and metrics |
//!
//! May use: the core, `drive`, `ecs`, `source`, `batch`, `api`, `runtime`, `tasks`, `tenancy`,
//! the controller's `error`.

pub mod apply;
pub mod cleanup;
pub mod conditions;
pub mod context;
pub mod events;
pub mod git_source;
pub mod plan_source;
pub mod reconcile;
pub mod refusal;
pub mod status_store;
pub mod undecodable;
