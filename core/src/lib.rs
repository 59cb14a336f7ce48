//! sequencer's core: every sequencing rule, as pure code.
//!
//! `engine::advance(plan, status, observations, now)` decides what happens next; everything else
//! here is the data it works on: the validated [`plan`] of steps and their options ([`step`],
//! [`run_task`]), the run's persisted [`status`], what the engine is told ([`observation`]), what it
//! asks for ([`action`]) and reports ([`event`]), and the rules it applies: [`judge`] (did a task
//! succeed?), [`identity`] (clientToken, startedBy, tags) and [`backoff`] (retry delays).
//! [`schedule`] decides when a `ScheduledSequence` starts a run.
//!
//! What this crate may use: data (serde, serde_json, schemars), hashing (sha2) and time and
//! calendar arithmetic (jiff, croner). Never the AWS SDK, kube, tokio, a clock or randomness: the adapters around it (the batch
//! file reader, the ECS adapter, the CLI, the controller) do the I/O and hand the results in.
//! `tests/architecture.rs` at the workspace root checks this mechanically.

pub mod action;
pub mod backoff;
pub mod engine;
pub mod event;
pub mod explain;
pub mod identity;
pub mod judge;
pub mod log_record;
pub mod log_tail;
pub mod observation;
pub mod plan;
pub mod policy;
pub mod run_task;
pub mod schedule;
pub mod status;
pub mod step;
