//! Engine tests: scenarios, and property tests that crash the runner at random points.
//!
//! `FakeEcs` is an in-process ECS good enough for the engine: RunTask (with or without clientToken
//! idempotency), DescribeTasks, StopTask, ListTasks by startedBy, DescribeTaskDefinition. Each
//! task follows a script: run for some ticks, then stop with an exit code or a stop code.

mod arbitrary;
mod crashes;
mod fake_ecs;
mod logs;
mod scenarios;
mod simulation;

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::action::Action;
use crate::engine::advance;
use crate::event::RunEvent;
use crate::observation::{
    ApiError, DescribeResponse, EcsFailure, LaunchResponse, MissingTask, Observation,
};
use crate::plan::{Plan, PlannedStep};
use crate::run_task::RunTaskParameters;
use crate::status::{
    AttemptPhase, ContainerRecord, FailureClass, RunPhase, RunStatus, StepPhase, TaskRecord,
};
use crate::step::{Backoff, RetryOn, RetryPolicy, StepDefinition};
