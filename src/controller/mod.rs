//! The controller: the `Sequence`, `ScheduledSequence` and `SequencePolicy` resources (their
//! types are the [`api`](crate::api)), run with the same engine and drive loop as the CLI.
//!
//! One folder per room, each opening with what it owns and what it may use:
//!
//! | room | owns | may use (besides the core) |
//! |---|---|---|
//! | [`runtime`] | Kubernetes clients, leader election, shards, HTTP server, metrics, Events, caches | `ecs`, `api` |
//! | [`tasks`] | the shared ECS poller, push updates, the wake queue | `ecs`, `api`, `runtime` |
//! | [`tenancy`] | which policies govern a namespace, and the AWS identity it acts as | `ecs`, `api` |
//! | [`sequence`] | one Sequence's reconcile: plan, status, conditions, deletion | `drive`, `ecs`, `source`, `batch`, `api`, `runtime`, `tasks`, `tenancy`, `error` |
//! | [`schedule`] | ScheduledSequences and the runs they create | `api`, `runtime`, `error` |
//! | [`error`] | the reconcile errors, which drive `error_policy` and label metrics | — |
//! | `run.rs` | start-up and shutdown: the one place that wires every room | all of the above, `shutdown` |
//!
//! `tests/architecture.rs` checks these directions and that no files form a circle.

pub mod error;
mod run;
pub mod runtime;
pub mod schedule;
pub mod sequence;
pub mod tasks;
pub mod tenancy;

pub use run::{RunError, Settings, TaskEventSettings, run};
