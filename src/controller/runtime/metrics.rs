//! The controller's Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Names and labels are part of the operator's interface (dashboards, alerts): change them only
//! with a note in the README.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sequencer_core::log_record::{LogTail, LogsUnavailable};
use sequencer_core::observation::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EcsCallLabels {
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<KindLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub steps: Family<OutcomeLabel, Counter>,
    pub step_duration: Family<OutcomeLabel, Histogram>,
    pub runs_finished: Family<PhaseLabel, Counter>,
    pub scheduled_runs: Family<OutcomeLabel, Counter>,
    pub ecs_calls: Family<EcsCallLabels, Counter>,
    pub ecs_throttles: Family<OperationLabel, Counter>,
    pub log_reads: Family<OutcomeLabel, Counter>,
    pub running_tasks: Gauge,
    pub foreign_tasks_ignored: Counter,
    pub stale_cache_reads: Counter,
    pub events: Family<OutcomeLabel, Counter>,
    pub task_events: Family<OutcomeLabel, Counter>,
    pub leader: Gauge,
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sequencer");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles of Sequences", reconciles.clone());
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind of error",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let steps = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "steps",
            "Steps that ended, by outcome (succeeded, failed, failed_ignored, skipped)",
            steps.clone(),
        );
        let step_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            // 1 s to about 36 h.
            Histogram::new(exponential_buckets(1.0, 2.0, 18))
        });
        registry.register(
            "step_duration_seconds",
            "Time from a step's start to its end, by outcome",
            step_duration.clone(),
        );
        let runs_finished = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "runs_finished",
            "Sequences whose run ended, by phase (Succeeded, Failed)",
            runs_finished.clone(),
        );
        let scheduled_runs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "scheduled_runs",
            "ScheduledSequence occurrences, by outcome (started, manual, skipped_active, missed_deadline, many_missed, replaced)",
            scheduled_runs.clone(),
        );
        let ecs_calls = Family::<EcsCallLabels, Counter>::default();
        registry.register(
            "ecs_calls",
            "ECS API calls, by operation and outcome (ok, throttled, transient, error)",
            ecs_calls.clone(),
        );
        let ecs_throttles = Family::<OperationLabel, Counter>::default();
        registry.register(
            "ecs_throttles",
            "ECS API calls refused by throttling, by operation",
            ecs_throttles.clone(),
        );
        let log_reads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "log_reads",
            "Containers whose last log lines were read after their task stopped, by outcome (lines, no_lines, no_stream, not_awslogs, access_denied, failed)",
            log_reads.clone(),
        );
        let foreign_tasks_ignored = Counter::default();
        registry.register(
            "foreign_tasks_ignored",
            "Tasks a lookup by startedBy found that another run launched (left alone, never adopted)",
            foreign_tasks_ignored.clone(),
        );
        let running_tasks = Gauge::default();
        registry.register(
            "running_tasks",
            "ECS tasks the shared poller is watching that have not stopped",
            running_tasks.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        let stale_cache_reads = Counter::default();
        registry.register(
            "stale_cache_reads",
            "Sequences and ScheduledSequences read fresh from the API server because the watch cache had not caught up with this controller's own write",
            stale_cache_reads.clone(),
        );
        let task_events = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "task_events",
            "Pushed ECS task state changes (SQS messages), by outcome: described, duplicate, unwatched, malformed, receive_failed",
            task_events.clone(),
        );
        let events = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events published, by outcome: created, repeated (counted in the series of the same Event published within 6 minutes), failed",
            events.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            steps,
            step_duration,
            runs_finished,
            scheduled_runs,
            ecs_calls,
            ecs_throttles,
            log_reads,
            running_tasks,
            foreign_tasks_ignored,
            stale_cache_reads,
            events,
            task_events,
            leader,
            encode_lock: Mutex::new(()),
        }
    }

    /// Counts one ScheduledSequence occurrence by what became of it.
    pub fn scheduled(&self, outcome: &str) {
        self.scheduled_runs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts one ECS call by its outcome.
    pub fn ecs_call<T>(&self, operation: &str, result: &Result<T, ApiError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) if is_throttling(e) => {
                self.ecs_throttles
                    .get_or_create(&OperationLabel {
                        operation: operation.into(),
                    })
                    .inc();
                "throttled"
            }
            Err(e) if e.transient => "transient",
            Err(_) => "error",
        };
        self.ecs_calls
            .get_or_create(&EcsCallLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts the containers one log read covered, by what it found.
    pub fn logs_read(&self, tails: &[LogTail]) {
        for tail in tails {
            let outcome = match tail.unavailable {
                None => "lines",
                Some(LogsUnavailable::NoLines) => "no_lines",
                Some(LogsUnavailable::NoStream) => "no_stream",
                Some(LogsUnavailable::AccessDenied) => "access_denied",
                Some(LogsUnavailable::ReadFailed) => "failed",
                Some(
                    LogsUnavailable::NoTaskDefinition
                    | LogsUnavailable::NoLogConfiguration
                    | LogsUnavailable::UnsupportedDriver
                    | LogsUnavailable::NoStreamPrefix,
                ) => "not_awslogs",
            };
            self.log_reads
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.into(),
                })
                .inc();
        }
    }

    pub fn step_ended(&self, outcome: &str, duration: Option<Duration>) {
        let label = OutcomeLabel {
            outcome: outcome.into(),
        };
        self.steps.get_or_create(&label).inc();
        if let Some(d) = duration {
            self.step_duration
                .get_or_create(&label)
                .observe(d.as_secs_f64());
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let _guard = self.encode_lock.lock();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// ECS answers throttling with these codes (ThrottlingException for most calls).
pub fn is_throttling(error: &ApiError) -> bool {
    let code = error.code.as_str();
    code.contains("Throttl") || code == "TooManyRequestsException" || code == "RequestLimitExceeded"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_calls_are_counted_twice_as_call_and_throttle() {
        let metrics = Metrics::new();
        let throttled: Result<(), ApiError> = Err(ApiError {
            transient: true,
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
        });
        metrics.ecs_call("DescribeTasks", &throttled);
        metrics.ecs_call("DescribeTasks", &Ok::<(), ApiError>(()));
        metrics.step_ended("succeeded", Some(Duration::from_secs(3)));
        let text = metrics.encode();
        assert!(
            text.contains(
                "sequencer_ecs_calls_total{operation=\"DescribeTasks\",outcome=\"throttled\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sequencer_ecs_calls_total{operation=\"DescribeTasks\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sequencer_ecs_throttles_total{operation=\"DescribeTasks\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sequencer_steps_total{outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sequencer_step_duration_seconds_count{outcome=\"succeeded\"} 1"),
            "{text}"
        );
    }
}
