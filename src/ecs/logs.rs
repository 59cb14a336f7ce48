//! CloudWatch Logs: the last lines of stopped containers, found where the task definition's
//! `awslogs` configuration puts them (`<awslogs-stream-prefix>/<container>/<task id>` in
//! `awslogs-group`, in `awslogs-region`). A read never fails: whatever goes wrong becomes the
//! tail's one-line note, and the whole read is bounded by [`READ_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::Client as LogsClient;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use sequencer_core::log_record::{LogTail, LogsUnavailable};
use sequencer_core::log_tail::{LogTarget, task_id};

use super::limits::{CallLimitSettings, CallLimits};
use super::sessions::SessionCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;

/// The whole read of one attempt's containers (DescribeTaskDefinition and GetLogEvents) ends
/// within this time, answered or not.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Task definitions kept (a revision's containers never change, so they can be kept as long as
/// wanted; the bound keeps memory flat).
const DEFINITIONS_KEPT: usize = 256;

/// Where one container's output goes, as its task definition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDestination {
    Awslogs {
        group: String,
        region: Option<String>,
        prefix: Option<String>,
    },
    /// No `logConfiguration`.
    Nowhere,
    /// Another driver.
    Driver(String),
}

/// The stream the `awslogs` driver writes a container of a task to.
pub fn stream_name(prefix: &str, container: &str, task_arn: &str) -> String {
    format!("{prefix}/{container}/{}", task_id(task_arn))
}

/// Reads log tails; one per process, shared by every region's executor.
#[derive(Clone, Debug)]
pub struct LogReader {
    inner: Arc<Inner>,
    /// The STS session the reads are signed in, when it is not the clients' own.
    session: Option<SessionCredentials>,
}

#[derive(Debug)]
struct Inner {
    base: SdkConfig,
    /// GetLogEvents waits its turn here (CloudWatch Logs' default quota is 10 a second).
    limits: Arc<CallLimits>,
    clients: Mutex<HashMap<String, LogsClient>>,
    definitions: Mutex<HashMap<String, Arc<HashMap<String, LogDestination>>>>,
}

impl LogReader {
    pub fn new(base: &SdkConfig) -> Self {
        LogReader::sharing(base, CallLimits::new(CallLimitSettings::LOGS))
    }

    /// A reader whose calls take turns in `limits` (shared with the other readers of the same
    /// account, whose quota they share).
    pub fn sharing(base: &SdkConfig, limits: Arc<CallLimits>) -> Self {
        LogReader {
            inner: Arc::new(Inner {
                base: base.clone(),
                limits,
                clients: Mutex::new(HashMap::new()),
                definitions: Mutex::new(HashMap::new()),
            }),
            session: None,
        }
    }

    /// The same reader, signing its reads in `session`.
    pub fn acting_in(&self, session: SessionCredentials) -> LogReader {
        LogReader {
            inner: self.inner.clone(),
            session: Some(session),
        }
    }

    /// The CloudWatch Logs client of `region`: few retries and a short timeout, since a log read
    /// is worth a second or two, never a minute.
    fn client(&self, region: &str) -> LogsClient {
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = self
                    .inner
                    .base
                    .to_builder()
                    .region(aws_config::Region::new(region.to_owned()))
                    .retry_config(RetryConfig::standard().with_max_attempts(2))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(4))
                            .operation_timeout(Duration::from_secs(9))
                            .build(),
                    )
                    .build();
                LogsClient::new(&config)
            })
            .clone()
    }

    fn signing(&self) -> aws_sdk_cloudwatchlogs::config::Builder {
        let mut config = aws_sdk_cloudwatchlogs::config::Builder::default();
        if let Some(session) = &self.session {
            config.set_credentials_provider(Some(SharedCredentialsProvider::new(session.clone())));
        }
        config
    }

    pub(super) fn cached_definition(
        &self,
        arn: &str,
    ) -> Option<Arc<HashMap<String, LogDestination>>> {
        let map = self
            .inner
            .definitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(arn).cloned()
    }

    pub(super) fn keep_definition(&self, arn: &str, containers: HashMap<String, LogDestination>) {
        let mut map = self
            .inner
            .definitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= DEFINITIONS_KEPT {
            map.clear();
        }
        map.insert(arn.to_owned(), Arc::new(containers));
    }

    /// The last `lines` lines of `target`, written where `destination` says; `region` is the
    /// task's (the default of `awslogs-region`).
    pub async fn tail(
        &self,
        target: &LogTarget,
        destination: Option<&LogDestination>,
        region: &str,
        lines: u32,
    ) -> LogTail {
        let mut tail = LogTail {
            task_id: task_id(&target.task_arn),
            container: target.container.clone(),
            ..Default::default()
        };
        let unavailable = |mut tail: LogTail, why: LogsUnavailable, note: String| {
            tail.unavailable = Some(why);
            tail.note = Some(note);
            tail
        };
        let (group, stream_region, prefix) = match destination {
            None => {
                let note = "the container is not in the task definition ECS reported".into();
                return unavailable(tail, LogsUnavailable::NoTaskDefinition, note);
            }
            Some(LogDestination::Nowhere) => {
                let note = "the task definition gives the container no logConfiguration, so its output is not kept".into();
                return unavailable(tail, LogsUnavailable::NoLogConfiguration, note);
            }
            Some(LogDestination::Driver(driver)) => {
                let note = format!(
                    "the container logs with the {driver} driver; sequencer reads only awslogs (CloudWatch Logs), so look where {driver} sends them"
                );
                return unavailable(tail, LogsUnavailable::UnsupportedDriver, note);
            }
            Some(LogDestination::Awslogs {
                group,
                region,
                prefix,
            }) => (group, region.as_deref().filter(|r| !r.is_empty()), prefix),
        };
        tail.log_group = Some(group.clone());
        let Some(prefix) = prefix.as_deref().filter(|p| !p.is_empty()) else {
            let note = format!(
                "awslogs without awslogs-stream-prefix names the stream in {group} after the Docker container id, which ECS does not report; set a prefix to see the lines here"
            );
            return unavailable(tail, LogsUnavailable::NoStreamPrefix, note);
        };
        let stream_region = stream_region.unwrap_or(region);
        let stream = stream_name(prefix, &target.container, &target.task_arn);
        tail.log_stream = Some(stream.clone());
        let _turn = self.inner.limits.permit("GetLogEvents").await;
        let answer = self
            .client(stream_region)
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(&stream)
            .start_from_head(false)
            .limit(lines.clamp(1, 10_000) as i32)
            .customize()
            .config_override(self.signing())
            .send()
            .await;
        match answer {
            Ok(out) => {
                let mut all: Vec<String> = out
                    .events()
                    .iter()
                    .filter_map(|e| e.message())
                    .flat_map(|m| m.trim_end_matches(['\n', '\r']).split('\n'))
                    .map(|l| l.trim_end_matches('\r').to_owned())
                    .collect();
                let drop = all.len().saturating_sub(lines as usize);
                all.drain(..drop);
                if all.is_empty() {
                    let note = format!("the log stream {stream} in {group} holds no line");
                    return unavailable(tail, LogsUnavailable::NoLines, note);
                }
                tail.lines = all;
                tail
            }
            Err(e) => {
                let (why, note) = read_error(&e, group, &stream);
                unavailable(tail, why, note)
            }
        }
    }
}

/// Why a GetLogEvents failed, in one line.
fn read_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_sdk_cloudwatchlogs::config::http::HttpResponse>,
    group: &str,
    stream: &str,
) -> (LogsUnavailable, String) {
    let code = err.code().unwrap_or_default();
    match code {
        "ResourceNotFoundException" => (
            LogsUnavailable::NoStream,
            format!(
                "no log stream {stream} in {group}: the container never started, or wrote nothing"
            ),
        ),
        "AccessDeniedException" => (
            LogsUnavailable::AccessDenied,
            format!("not allowed to read {group} (logs:GetLogEvents is denied)"),
        ),
        _ => {
            let detail = err
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| crate::ecs::errors::error_chain(err));
            let code = if code.is_empty() { "error" } else { code };
            (
                LogsUnavailable::ReadFailed,
                format!("could not read {stream} in {group}: {code}: {detail}"),
            )
        }
    }
}
