//! Push updates: ECS "Task State Change" events, delivered by an EventBridge rule to an SQS
//! queue, make the shared poller describe a task at once instead of at its next poll.
//!
//! A message is only a hint. ECS sends these events at least once and out of order, EventBridge
//! may drop one after its retries, and an event carries no more than DescribeTasks tells: so the
//! poller describes the task as usual (its answer is what the engine judges), duplicates and
//! older versions (`detail.version`) are skipped, and a slow poll of every running task stays
//! as the safety net. A message is deleted once handed over; one lost between the two comes
//! back after the queue's visibility timeout, as a harmless repeat.

use std::sync::Arc;

use serde::Deserialize;

use crate::controller::runtime::metrics::{Metrics, OutcomeLabel};
use crate::controller::tasks::hint::{Hint, TaskChange};
use crate::controller::tasks::poller::Poller;

#[derive(Deserialize)]
struct Envelope {
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    detail: Option<Detail>,
}

/// Only the fields used; ECS adds fields over time and they are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    task_arn: Option<String>,
    last_status: Option<String>,
    version: Option<i64>,
}

/// The task change in an SQS message body (the EventBridge event as JSON).
pub fn parse(body: &str) -> Result<TaskChange, String> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
    if envelope.source.as_deref() != Some("aws.ecs")
        || envelope.detail_type.as_deref() != Some("ECS Task State Change")
    {
        return Err(format!(
            "not an ECS Task State Change event (source {:?}, detail-type {:?})",
            envelope.source, envelope.detail_type
        ));
    }
    let detail = envelope.detail.ok_or("the event has no detail")?;
    let task_arn = detail
        .task_arn
        .filter(|a| !a.is_empty())
        .ok_or("the event's detail has no taskArn")?;
    Ok(TaskChange {
        task_arn,
        last_status: detail.last_status,
        version: detail.version,
    })
}

/// The queue the EventBridge rule delivers to.
pub struct TaskEventQueue {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// Messages asked for per ReceiveMessage (SQS's maximum).
const BATCH: i32 = 10;
/// Long polling: an empty queue answers after this many seconds (SQS's maximum), a message at once.
const WAIT_SECONDS: i32 = 20;

impl TaskEventQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String) -> Self {
        TaskEventQueue { sqs, queue_url }
    }

    /// Receives and hands over messages until `shutdown` resolves. A failing queue is retried
    /// with backoff and never stops the controller: the poll goes on without the hints.
    pub async fn listen(
        self,
        poller: Arc<Poller>,
        metrics: Arc<Metrics>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        tracing::info!(queue_url = %self.queue_url, "listening for ECS task state changes");
        loop {
            let received = tokio::select! {
                _ = &mut shutdown => return,
                received = self.receive() => received,
            };
            let messages = match received {
                Ok(messages) => {
                    failures = 0;
                    messages
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    count(&metrics, "receive_failed");
                    let delay = sequencer_core::backoff::api_error_delay(
                        failures,
                        &format!("{}/{failures}", self.queue_url),
                    );
                    tracing::warn!(queue_url = %self.queue_url, %error, retry_in_seconds = delay.as_secs(),
                        "cannot receive ECS task state changes; tasks are still polled");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let mut handles = Vec::with_capacity(messages.len());
            for message in messages {
                let hint = match parse(message.body().unwrap_or_default()) {
                    Ok(change) => poller.hint(&change),
                    Err(why) => {
                        tracing::debug!(message_id = ?message.message_id(), why, "ignoring a message");
                        Hint::Malformed
                    }
                };
                count(&metrics, hint.label());
                if let Some(handle) = message.receipt_handle() {
                    handles.push(handle.to_owned());
                }
            }
            self.delete(handles).await;
        }
    }

    async fn receive(&self) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(WAIT_SECONDS)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| crate::ecs::errors::error_chain(&e))
    }

    /// Deletes handled messages; one not deleted comes back later as a harmless repeat.
    async fn delete(&self, handles: Vec<String>) {
        if handles.is_empty() {
            return;
        }
        let entries: Vec<_> = handles
            .into_iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let deleted = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match deleted {
            Ok(out) if !out.failed.is_empty() => {
                tracing::warn!(
                    failed = out.failed.len(),
                    "some handled messages were not deleted; they will come back as repeats"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::ecs::errors::error_chain(&e), "handled messages were not deleted; they will come back as repeats");
            }
        }
    }
}

fn count(metrics: &Metrics, outcome: &str) {
    let label = OutcomeLabel {
        outcome: outcome.into(),
    };
    metrics.task_events.get_or_create(&label).inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(detail: serde_json::Value) -> String {
        json!({
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "region": "us-east-1",
            "resources": ["arn:aws:ecs:us-east-1:123456789012:task/etl/abc"],
            "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn an_ecs_task_state_change_names_the_task_its_status_and_version() {
        let body = event(json!({
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/etl/abc",
            "lastStatus": "STOPPED",
            "stopCode": "EssentialContainerExited",
            "containers": [{"name": "app", "exitCode": 1}],
            "version": 5,
            "aFieldAddedLater": {"x": 1},
        }));
        assert_eq!(
            parse(&body),
            Ok(TaskChange {
                task_arn: "arn:aws:ecs:us-east-1:123456789012:task/etl/abc".into(),
                last_status: Some("STOPPED".into()),
                version: Some(5),
            })
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (body, why) in [
            ("not json".to_string(), "not an EventBridge event"),
            (
                json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}).to_string(),
                "not an ECS Task State Change event",
            ),
            (
                json!({"source": "aws.ecs", "detail-type": "ECS Task State Change"}).to_string(),
                "the event has no detail",
            ),
            (event(json!({"lastStatus": "STOPPED"})), "no taskArn"),
        ] {
            let refused = parse(&body).unwrap_err();
            assert!(refused.contains(why), "{body}: {refused}");
        }
    }
}
