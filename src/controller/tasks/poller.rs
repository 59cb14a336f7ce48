//! The controller's shared ECS poller: one DescribeTasks per ≤ 100 running task ARNs per
//! interval, per (region, cluster), across all Sequences, instead of one call per Sequence.
//!
//! A Sequence's reconcile asks for its running tasks as usual (`Action::Describe`); `PolledEcs`
//! answers from what the poller last saw and registers the ARNs. Each round (every second) the
//! poller describes the ARNs that are due, batched by cluster, and wakes only the Sequences whose
//! tasks changed. A newly registered ARN is due at once; afterwards it is due every
//! `pollIntervalSeconds` of its Sequence, on a grid shared by all ARNs of that interval so that
//! they fill the same calls. Nothing here decides anything about a run: the engine judges what
//! the answers mean, exactly as in the CLI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sequencer_core::engine::DESCRIBE_BATCH;
use sequencer_core::observation::{DescribeResponse, MissingTask};

use crate::controller::runtime::metrics::Metrics;
use crate::controller::tasks::cluster_backoff::ClusterBackoff;
use crate::controller::tasks::describer::Describer;
use crate::controller::tasks::hint::{Hint, TaskChange};
use crate::controller::tasks::owner::{ClusterKey, Owner};
use crate::controller::tasks::wake_queue::WakeQueue;
use crate::controller::tasks::watched::{Known, Watched};

/// The Sequences the poller wakes because their tasks changed.
pub type Woken = Arc<WakeQueue>;

type Clusters = HashMap<ClusterKey, HashMap<String, Watched>>;

pub struct Poller {
    clusters: Mutex<Clusters>,
    /// Clusters whose last DescribeTasks failed, resting.
    backoff: ClusterBackoff,
    wake: Arc<WakeQueue>,
    metrics: Arc<Metrics>,
    started: Instant,
    /// With push updates, running tasks are described at least this many seconds apart (the
    /// safety net for events late or lost); 1 without.
    interval_floor: u64,
    /// A pushed event made a task due: the next round starts at once instead of at the tick.
    hinted: tokio::sync::Notify,
}

impl Poller {
    /// The poller, and the stream of Sequences to reconcile because their tasks changed.
    pub fn new(metrics: Arc<Metrics>) -> (Arc<Poller>, Woken) {
        Self::with_interval_floor(metrics, 1)
    }

    /// A poller fed by push updates: tasks no event hints at are described only every
    /// `floor` seconds (or their Sequence's longer interval).
    pub fn with_interval_floor(metrics: Arc<Metrics>, floor: u64) -> (Arc<Poller>, Woken) {
        let woken = WakeQueue::new();
        let poller = Poller {
            clusters: Mutex::new(HashMap::new()),
            backoff: ClusterBackoff::default(),
            wake: woken.clone(),
            metrics,
            started: Instant::now(),
            interval_floor: floor.max(1),
            hinted: tokio::sync::Notify::new(),
        };
        (Arc::new(poller), woken)
    }

    /// A pushed task change: a watched task is described in the next round, which starts at
    /// once. Repeats, older versions and tasks known to have stopped are skipped.
    pub fn hint(&self, change: &TaskChange) -> Hint {
        let now = self.round_now();
        let mut clusters = self.lock();
        let Some(entry) = clusters
            .values_mut()
            .find_map(|watched| watched.get_mut(&change.task_arn))
        else {
            return Hint::Unwatched;
        };
        let hint = entry.hint(change, now);
        drop(clusters);
        if hint == Hint::Described {
            self.hinted.notify_one();
        }
        hint
    }

    fn round_now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clusters> {
        self.clusters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `owner`'s interest in `arns` and answers with what was last seen of them. ARNs
    /// not seen yet are left out of the answer (the engine waits); the owner is woken when the
    /// poller first sees them.
    pub fn answer(
        &self,
        owner: &Owner,
        key: &ClusterKey,
        interval: u64,
        arns: &[String],
    ) -> DescribeResponse {
        let now = self.round_now();
        let mut clusters = self.lock();
        let watched = clusters.entry(key.clone()).or_default();
        let mut response = DescribeResponse::default();
        for arn in arns {
            let entry = watched
                .entry(arn.clone())
                .or_insert_with(|| Watched::new(now));
            match entry.register(owner, interval) {
                Some(Known::Task(task)) => response.tasks.push(task.as_ref().clone()),
                Some(Known::Missing(at)) => response.missing.push(MissingTask {
                    task_arn: arn.clone(),
                    answered_at: Some(*at),
                }),
                None => {}
            }
        }
        response
    }

    /// Forgets everything `owner` watched (its run ended, or it was deleted).
    pub fn release(&self, owner: &Owner) {
        let mut clusters = self.lock();
        for watched in clusters.values_mut() {
            watched.retain(|_, w| !w.release(owner));
        }
        clusters.retain(|_, w| !w.is_empty());
    }

    /// One round: describe every due ARN (≤ 100 per call, per cluster), record what changed and
    /// wake the Sequences concerned.
    pub async fn round<D: Describer>(&self, describer: &D) {
        self.describe_urgent(describer).await;
        let now = self.round_now();
        let resting = self.backoff.resting(now);
        let due: Vec<(ClusterKey, Vec<String>)> = {
            let mut clusters = self.lock();
            for watched in clusters.values_mut() {
                watched.retain(|_, w| !w.done());
            }
            clusters.retain(|_, w| !w.is_empty());
            clusters
                .iter()
                .map(|(key, watched)| {
                    let mut arns: Vec<String> = watched
                        .iter()
                        .filter(|(_, w)| w.next_due <= now)
                        .map(|(arn, _)| arn.clone())
                        .collect();
                    arns.sort();
                    (key.clone(), arns)
                })
                .filter(|(key, arns)| !arns.is_empty() && !resting.contains(key))
                .collect()
        };
        for (key, arns) in due {
            for chunk in arns.chunks(DESCRIBE_BATCH) {
                // A round of thousands of tasks takes seconds at ECS's pace: a task an event
                // named meanwhile is described before the next chunk, not after the round.
                self.describe_urgent(describer).await;
                if !self.describe_chunk(describer, &key, chunk, now).await {
                    break;
                }
            }
        }
        let running = self
            .lock()
            .values()
            .flat_map(|w| w.values())
            .filter(|w| !w.stopped())
            .count();
        self.metrics.running_tasks.set(running as i64);
    }

    /// Describes `chunk`; false when the call failed (the cluster is then backed off).
    async fn describe_chunk<D: Describer>(
        &self,
        describer: &D,
        key: &ClusterKey,
        chunk: &[String],
        now: u64,
    ) -> bool {
        let result = describer.describe(key, chunk).await;
        self.metrics.ecs_call("DescribeTasks", &result);
        match result {
            Ok(response) => {
                self.backoff.succeeded(key);
                self.record(key, chunk, response, now);
                true
            }
            Err(e) => {
                let rest = self.backoff.failed(key, now);
                tracing::warn!(region = %key.region, cluster = ?key.cluster, error = %e, retry_in_seconds = rest, "shared poll failed; backing off");
                self.postpone(key, chunk, now);
                false
            }
        }
    }

    /// Describes the tasks pushed events named since they were last described (in clusters not
    /// resting after a failure).
    async fn describe_urgent<D: Describer>(&self, describer: &D) {
        let now = self.round_now();
        let resting = self.backoff.resting(now);
        let urgent: Vec<(ClusterKey, Vec<String>)> = {
            let mut clusters = self.lock();
            clusters
                .iter_mut()
                .filter(|(key, _)| !resting.contains(key))
                .map(|(key, watched)| {
                    let mut arns = Vec::new();
                    for (arn, w) in watched.iter_mut().filter(|(_, w)| w.urgent) {
                        w.urgent = false;
                        arns.push(arn.clone());
                    }
                    (key.clone(), arns)
                })
                .filter(|(_, arns)| !arns.is_empty())
                .collect()
        };
        for (key, arns) in urgent {
            for chunk in arns.chunks(DESCRIBE_BATCH) {
                if !self.describe_chunk(describer, &key, chunk, now).await {
                    break;
                }
            }
        }
    }

    /// Hands each asked task its part of `response`, and wakes the Sequences whose tasks changed.
    fn record(&self, key: &ClusterKey, asked: &[String], response: DescribeResponse, now: u64) {
        let mut seen: HashMap<String, Known> = response
            .tasks
            .into_iter()
            .map(|t| (t.task_arn.clone(), Known::Task(Box::new(t))))
            .collect();
        let answered_at = Timestamp::now();
        for missing in response.missing {
            seen.insert(missing.task_arn, Known::Missing(answered_at));
        }
        let mut wake = Vec::new();
        {
            let mut clusters = self.lock();
            let Some(watched) = clusters.get_mut(key) else {
                return;
            };
            for arn in asked {
                // None: released while the call was in flight.
                if let Some(entry) = watched.get_mut(arn) {
                    wake.extend(entry.record(seen.remove(arn), now, self.interval_floor));
                }
            }
        }
        wake.sort_by_key(|o| (o.namespace.clone(), o.name.clone()));
        wake.dedup();
        for owner in wake {
            self.wake.push(owner);
        }
    }

    /// `asked` were not described (the call failed): each is due again at its next interval.
    fn postpone(&self, key: &ClusterKey, asked: &[String], now: u64) {
        let mut clusters = self.lock();
        if let Some(watched) = clusters.get_mut(key) {
            for arn in asked {
                if let Some(entry) = watched.get_mut(arn) {
                    entry.postpone(now, self.interval_floor);
                }
            }
        }
    }

    /// Polls until `shutdown` resolves.
    pub async fn run<D: Describer>(
        self: Arc<Self>,
        describer: Arc<D>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => self.round(describer.as_ref()).await,
                _ = self.hinted.notified() => self.round(describer.as_ref()).await,
            }
        }
    }
}

#[path = "poller_tests.rs"]
#[cfg(test)]
mod tests;
