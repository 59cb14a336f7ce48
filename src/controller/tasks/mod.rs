//! The ECS tasks of every Sequence, watched together: the shared [`poller`] (one DescribeTasks
//! per 100 running tasks per cluster and interval, across all Sequences), push updates from
//! EventBridge and SQS ([`task_events`]), and the [`wake_queue`] of Sequences whose tasks changed.
//! Nothing here judges a task: the engine does, from the answers handed to it.
//!
//! | file | holds |
//! |---|---|
//! | [`owner`] | how a Sequence and a cluster are named here |
//! | [`watched`] | one watched task: what is known of it, when it is due |
//! | [`poller`] | the rounds: which tasks are due, batched by cluster |
//! | [`cluster_backoff`] | clusters resting after a failed call |
//! | [`describer`] | how the poller calls DescribeTasks |
//! | [`hint`] | what a push message says, and what became of it |
//! | [`polled_ecs`] | the engine's view: answers from what the poller last saw |
//!
//! May use: the core, `ecs`, `api`, `runtime`.

pub mod cluster_backoff;
pub mod describer;
pub mod hint;
pub mod owner;
pub mod polled_ecs;
pub mod poller;
pub mod task_events;
pub mod wake_queue;
pub mod watched;
