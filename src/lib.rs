//! sequencer: a declared batch of AWS ECS tasks, run strictly step by step, each step launched
//! exactly once, as a command line or as a Kubernetes controller.
//!
//! Every sequencing rule lives in the pure core, the `sequencer-core` crate (`core/`). This crate
//! holds the adapters around it; each folder owns one concern and names what it may import:
//!
//! | module | owns | may use |
//! |---|---|---|
//! | [`batch`] | the batch file format: YAML with positions, schema-driven validation, ECS limits | core |
//! | [`source`] | where a batch comes from: a file or S3 | ecs (its clients) |
//! | [`ecs`] | the ECS adapter: AWS clients, the SDK mapping, error classes | core |
//! | [`drive`] | the loop every runner uses: advance, persist, act | core, ecs |
//! | [`shutdown`] | SIGINT and SIGTERM | — |
//! | [`api`] | the custom resources' types, conditions, labels: what users write and read | — |
//! | [`controller`] | the controller of those resources, one folder per room | everything above but cli |
//! | [`cli`] | the `sequencer` command, state file, progress output | everything above, controller (to start it) |
//!
//! `tests/architecture.rs` checks the core's purity and these directions.

pub mod api;
pub mod batch;
pub mod cli;
pub mod controller;
pub mod drive;
pub mod ecs;
pub mod shutdown;
pub mod source;
