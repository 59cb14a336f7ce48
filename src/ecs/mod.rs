//! The ECS adapter: carries out the engine's actions with aws-sdk-ecs and turns the answers into
//! observations. It decides nothing; every rule about what an answer means lives in the engine.
//!
//! Owns: [`clients`] (AWS configuration, per-region clients, credentials), [`request`] (the core's
//! RunTask model mapped onto the SDK), this module (the `Executor` and its error classes). May use
//! the core and the AWS SDK; never the CLI or the controller.

pub mod clients;
pub mod errors;
pub mod limits;
pub mod logs;
pub mod request;
pub mod sessions;

pub use errors::api_error;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::run_task::RunTaskError;
use aws_sdk_ecs::types::{DesiredStatus, Task, TaskField};

use std::collections::HashMap;
use std::sync::Arc;

use crate::ecs::limits::{CallLimitSettings, CallLimits};
use crate::ecs::logs::{LogDestination, LogReader};
use crate::ecs::request::apply_to;
use crate::ecs::sessions::SessionCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use sequencer_core::action::Action;
use sequencer_core::engine::DESCRIBE_BATCH;
use sequencer_core::identity::TAG_RUN;
use sequencer_core::log_record::{LogTail, LogsUnavailable};
use sequencer_core::log_tail::{LogTarget, task_id};
use sequencer_core::observation::{
    ApiError, DescribeResponse, EcsFailure, LaunchResponse, MissingTask, Observation,
};
use sequencer_core::status::{ContainerRecord, TaskRecord};

/// What the runners need from ECS. The real one is `Ecs`; tests may bring their own.
pub trait Executor {
    fn execute(&self, action: &Action) -> impl std::future::Future<Output = Observation> + Send;
}

#[derive(Clone, Debug)]
pub struct Ecs {
    client: Client,
    logs: LogReader,
    /// Every call waits for its turn here (shared by all users of this region's ECS).
    limits: Arc<CallLimits>,
    /// The STS session every call is signed in, when it is not the client's own.
    session: Option<SessionCredentials>,
}

impl Ecs {
    pub fn new(client: Client, logs: LogReader, limits: Arc<CallLimits>) -> Self {
        Ecs {
            client,
            logs,
            limits,
            session: None,
        }
    }

    /// The same executor, signing every call (ECS and CloudWatch Logs) in `session`: the
    /// client, its call limits and the kept task definitions stay shared.
    pub fn acting_in(&self, session: SessionCredentials) -> Ecs {
        Ecs {
            logs: self.logs.acting_in(session.clone()),
            session: Some(session),
            ..self.clone()
        }
    }

    /// The per-call configuration: the session's credentials, if any (the SDK gives such a call
    /// an identity cache of its own, so nothing accumulates in the client's).
    fn signing(&self) -> aws_sdk_ecs::config::Builder {
        let mut config = aws_sdk_ecs::config::Builder::default();
        if let Some(session) = &self.session {
            config.set_credentials_provider(Some(SharedCredentialsProvider::new(session.clone())));
        }
        config
    }

    /// ECS and CloudWatch Logs with one configuration, at the default call limits.
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Ecs::new(
            Client::new(config),
            LogReader::new(config),
            CallLimits::new(CallLimitSettings::ECS),
        )
    }

    /// The region this executor's ECS calls go to.
    pub fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// The last `lines` lines of each target container; never an error (see `logs`).
    pub async fn fetch_logs(&self, targets: &[LogTarget], lines: u32) -> Vec<LogTail> {
        let read = async {
            let mut definitions = HashMap::new();
            for arn in targets
                .iter()
                .filter_map(|t| t.task_definition_arn.as_deref())
            {
                if !definitions.contains_key(arn) {
                    definitions.insert(arn.to_owned(), self.log_destinations(arn).await);
                }
            }
            let region = self.region();
            let reads = targets.iter().map(|target| {
                let found = target
                    .task_definition_arn
                    .as_deref()
                    .and_then(|arn| definitions.get(arn));
                let region = region.clone();
                async move {
                    match found {
                        Some(Err(tail_note)) => unavailable(target, tail_note.clone()),
                        Some(Ok(containers)) => {
                            let destination = containers.get(&target.container);
                            self.logs.tail(target, destination, &region, lines).await
                        }
                        None => self.logs.tail(target, None, &region, lines).await,
                    }
                }
            });
            futures::future::join_all(reads).await
        };
        match tokio::time::timeout(logs::READ_TIMEOUT, read).await {
            Ok(tails) => tails,
            Err(_) => targets
                .iter()
                .map(|t| {
                    let note = format!(
                        "CloudWatch Logs did not answer within {}s",
                        logs::READ_TIMEOUT.as_secs()
                    );
                    unavailable(t, (LogsUnavailable::ReadFailed, note))
                })
                .collect(),
        }
    }

    /// Where `target`'s container logs to, as its task definition says.
    pub async fn destination(&self, target: &LogTarget) -> Result<LogDestination, String> {
        let arn = target
            .task_definition_arn
            .as_deref()
            .ok_or("ECS did not report the task's definition")?;
        let containers = self.log_destinations(arn).await.map_err(|(_, note)| note)?;
        containers
            .get(&target.container)
            .cloned()
            .ok_or_else(|| format!("the task definition has no container {}", target.container))
    }

    /// Whether every one of these tasks has stopped (or is no longer known to ECS); false when
    /// ECS cannot be asked.
    pub async fn all_stopped(&self, cluster: Option<&str>, arns: &[String]) -> bool {
        let mut all = true;
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            match self.describe(cluster, chunk).await {
                Ok(found) => all &= found.tasks.iter().all(TaskRecord::is_finished),
                Err(_) => return false,
            }
        }
        all
    }

    /// Where each container of a task definition logs to (kept: a revision never changes).
    async fn log_destinations(
        &self,
        arn: &str,
    ) -> Result<Arc<HashMap<String, LogDestination>>, (LogsUnavailable, String)> {
        if let Some(found) = self.logs.cached_definition(arn) {
            return Ok(found);
        }
        let _turn = self.limits.permit("DescribeTaskDefinition").await;
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .customize()
            .config_override(self.signing())
            .send()
            .await
            .map_err(|e| {
                let e = api_error(e);
                let why = if e.code == "AccessDeniedException" {
                    LogsUnavailable::AccessDenied
                } else {
                    LogsUnavailable::ReadFailed
                };
                (
                    why,
                    format!("DescribeTaskDefinition failed, so the log stream is not known: {e}"),
                )
            })?;
        let containers: HashMap<String, LogDestination> = out
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| Some((c.name()?.to_owned(), log_destination(c))))
            .collect();
        self.logs.keep_definition(arn, containers);
        self.logs.cached_definition(arn).ok_or_else(|| {
            (
                LogsUnavailable::ReadFailed,
                "the task definition was not kept".into(),
            )
        })
    }

    pub async fn run_task(&self, action: &Action) -> Result<LaunchResponse, ApiError> {
        let Action::Launch {
            parameters,
            identity,
            ..
        } = action
        else {
            return Err(ApiError {
                transient: false,
                code: "Internal".into(),
                message: "not a launch".into(),
            });
        };
        let turn = self.limits.permit("RunTask").await;
        let answer = apply_to(self.client.run_task(), parameters, identity)
            .customize()
            .config_override(self.signing())
            .send()
            .await;
        drop(turn);
        let out = match answer {
            Ok(out) => out,
            Err(e) => {
                let started = e.as_service_error().and_then(|e| match e {
                    RunTaskError::ConflictException(c) => Some(c.resource_ids().to_vec()),
                    _ => None,
                });
                return match started {
                    Some(arns) => {
                        self.token_conflict(parameters.cluster.as_deref(), &arns)
                            .await
                    }
                    None => Err(api_error(e)),
                };
            }
        };
        Ok(LaunchResponse {
            tasks: out.tasks().iter().map(task_record).collect(),
            failures: out
                .failures()
                .iter()
                .map(|f| EcsFailure {
                    arn: f.arn().map(Into::into),
                    reason: f.reason().map(Into::into),
                    detail: f.detail().map(Into::into),
                })
                .collect(),
            token_conflict: false,
        })
    }

    /// The answer to a RunTask refused with `ConflictException`: the tasks its `resourceIds` name
    /// (the ones the token started before), described with their tags so the engine can tell they
    /// are this run's. A describe that fails leaves the launch's outcome unknown (the engine looks
    /// it up by startedBy).
    async fn token_conflict(
        &self,
        cluster: Option<&str>,
        arns: &[String],
    ) -> Result<LaunchResponse, ApiError> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = self.describe_tasks(cluster, chunk).await.map_err(|e| ApiError {
                transient: true,
                code: "ConflictException".into(),
                message: format!(
                    "the clientToken was used before with other parameters, and its tasks could not be described: {e}"
                ),
            })?;
            tasks.extend(out.tasks().iter().map(task_record));
        }
        Ok(LaunchResponse {
            tasks,
            failures: Vec::new(),
            token_conflict: true,
        })
    }

    /// Every task with this startedBy, running or recently stopped, fully described.
    pub async fn lookup(
        &self,
        cluster: Option<&str>,
        started_by: &str,
    ) -> Result<Vec<TaskRecord>, ApiError> {
        let mut arns: Vec<String> = Vec::new();
        // ECS lists RUNNING tasks unless asked for STOPPED ones; ask for both, explicitly.
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut next: Option<String> = None;
            loop {
                let _turn = self.limits.permit("ListTasks").await;
                let page = self
                    .client
                    .list_tasks()
                    .set_cluster(cluster.map(Into::into))
                    .started_by(started_by)
                    .desired_status(desired.clone())
                    .set_next_token(next.take())
                    .customize()
                    .config_override(self.signing())
                    .send()
                    .await
                    .map_err(api_error)?;
                arns.extend(page.task_arns().iter().cloned());
                match page.next_token() {
                    Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                    _ => break,
                }
            }
        }
        arns.sort();
        arns.dedup();
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = self.describe_tasks(cluster, chunk).await?;
            // Only tasks that really carry this startedBy are this attempt's: a wrong one adopted
            // here would be judged as the step's result.
            tasks.extend(
                out.tasks()
                    .iter()
                    .filter(|t| t.started_by() == Some(started_by))
                    .map(task_record),
            );
        }
        Ok(tasks)
    }

    /// One DescribeTasks call, in turn, with the tags (the run tag tells this run's tasks from
    /// another's with the same startedBy).
    async fn describe_tasks(
        &self,
        cluster: Option<&str>,
        arns: &[String],
    ) -> Result<aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput, ApiError> {
        let _turn = self.limits.permit("DescribeTasks").await;
        self.client
            .describe_tasks()
            .set_cluster(cluster.map(Into::into))
            .set_tasks(Some(arns.to_vec()))
            .include(TaskField::Tags)
            .customize()
            .config_override(self.signing())
            .send()
            .await
            .map_err(api_error)
    }

    pub async fn describe(
        &self,
        cluster: Option<&str>,
        arns: &[String],
    ) -> Result<DescribeResponse, ApiError> {
        let out = self.describe_tasks(cluster, arns).await?;
        let missing = out
            .failures()
            .iter()
            .filter(|f| f.reason() == Some("MISSING"))
            .filter_map(|f| f.arn().map(MissingTask::fresh))
            .collect();
        Ok(DescribeResponse {
            tasks: out.tasks().iter().map(task_record).collect(),
            missing,
        })
    }

    pub async fn stop(
        &self,
        cluster: Option<&str>,
        arn: &str,
        reason: &str,
    ) -> Result<(), ApiError> {
        // ECS keeps at most 255 characters of the reason.
        let reason: String = reason.chars().take(255).collect();
        let _turn = self.limits.permit("StopTask").await;
        self.client
            .stop_task()
            .set_cluster(cluster.map(Into::into))
            .task(arn)
            .reason(reason)
            .customize()
            .config_override(self.signing())
            .send()
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    pub async fn essential_containers(
        &self,
        task_definition: &str,
    ) -> Result<Vec<String>, ApiError> {
        let _turn = self.limits.permit("DescribeTaskDefinition").await;
        let out = self
            .client
            .describe_task_definition()
            .task_definition(task_definition)
            .customize()
            .config_override(self.signing())
            .send()
            .await
            .map_err(api_error)?;
        let definitions = out
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default();
        // ECS treats a container without `essential` as essential.
        Ok(definitions
            .iter()
            .filter(|c| c.essential().unwrap_or(true))
            .filter_map(|c| c.name().map(Into::into))
            .collect())
    }
}

impl Executor for Ecs {
    async fn execute(&self, action: &Action) -> Observation {
        match action {
            Action::Launch { step, attempt, .. } => Observation::Launched {
                step: *step,
                attempt: *attempt,
                outcome: self.run_task(action).await,
            },
            Action::Lookup {
                step,
                attempt,
                cluster,
                started_by,
            } => Observation::LookedUp {
                step: *step,
                attempt: *attempt,
                outcome: self.lookup(cluster.as_deref(), started_by).await,
            },
            Action::Describe { cluster, task_arns } => Observation::Described {
                outcome: self.describe(cluster.as_deref(), task_arns).await,
            },
            Action::StopTask {
                cluster,
                task_arn,
                reason,
            } => Observation::StopAnswered {
                task_arn: task_arn.clone(),
                outcome: self.stop(cluster.as_deref(), task_arn, reason).await,
            },
            Action::DescribeTaskDefinition {
                step,
                attempt,
                task_definition,
            } => Observation::TaskDefinitionDescribed {
                step: *step,
                attempt: *attempt,
                outcome: self.essential_containers(task_definition).await,
            },
            Action::FetchLogs {
                step,
                attempt,
                tail_lines,
                targets,
            } => Observation::LogsFetched {
                step: *step,
                attempt: *attempt,
                tails: self.fetch_logs(targets, *tail_lines).await,
            },
        }
    }
}

/// A tail with no lines, saying why.
fn unavailable(target: &LogTarget, (why, note): (LogsUnavailable, String)) -> LogTail {
    LogTail {
        task_id: task_id(&target.task_arn),
        container: target.container.clone(),
        unavailable: Some(why),
        note: Some(note),
        ..Default::default()
    }
}

/// Where a container definition sends its output.
fn log_destination(c: &aws_sdk_ecs::types::ContainerDefinition) -> LogDestination {
    let Some(config) = c.log_configuration() else {
        return LogDestination::Nowhere;
    };
    let driver = config.log_driver().as_str();
    let option = |key: &str| config.options().and_then(|o| o.get(key)).cloned();
    match (driver, option("awslogs-group")) {
        ("awslogs", Some(group)) => LogDestination::Awslogs {
            group,
            region: option("awslogs-region"),
            prefix: option("awslogs-stream-prefix"),
        },
        ("awslogs", None) => LogDestination::Driver("awslogs (without awslogs-group)".into()),
        (other, _) => LogDestination::Driver(other.to_owned()),
    }
}

fn timestamp(t: Option<&aws_smithy_types::DateTime>) -> Option<jiff::Timestamp> {
    t.and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
}

/// The facts of an ECS task that sequencer records.
pub fn task_record(task: &Task) -> TaskRecord {
    TaskRecord {
        task_arn: task.task_arn().unwrap_or_default().to_owned(),
        cluster_arn: task.cluster_arn().map(Into::into),
        task_definition_arn: task.task_definition_arn().map(Into::into),
        last_status: task.last_status().map(Into::into),
        stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
        stopped_reason: task
            .stopped_reason()
            .filter(|r| !r.is_empty())
            .map(Into::into),
        started_at: timestamp(task.started_at()),
        stopped_at: timestamp(task.stopped_at()),
        containers: task
            .containers()
            .iter()
            .map(|c| ContainerRecord {
                name: c.name().unwrap_or_default().to_owned(),
                exit_code: c.exit_code(),
                reason: c.reason().filter(|r| !r.is_empty()).map(Into::into),
                last_status: c.last_status().map(Into::into),
            })
            .collect(),
        missing: false,
        stop_request: None,
        run_tag: task
            .tags()
            .iter()
            .find(|t| t.key() == Some(TAG_RUN))
            .and_then(|t| t.value().map(Into::into)),
    }
}
