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

use super::wake_queue::WakeQueue;
use kube::runtime::reflector::ObjectRef;

use crate::controller::metrics::Metrics;
use crate::controller::task_events::{Hint, TaskChange};
use crate::controller::undecodable::GuardedSequence;
use crate::ecs::Executor;
use crate::ecs::clients::{AwsClients, RegionClients};
use crate::ecs::sessions::AssumedRole;
use jiff::Timestamp;
use sequencer_core::action::Action;
use sequencer_core::engine::DESCRIBE_BATCH;
use sequencer_core::observation::{ApiError, DescribeResponse, MissingTask, Observation};
use sequencer_core::status::TaskRecord;

/// How often, and how many seconds apart, a task an event said stopped is described again while
/// DescribeTasks does not say so yet.
const STOP_RECHECKS: u8 = 5;
const STOP_RECHECK_SECONDS: u64 = 2;

/// A Sequence, named as the controller's reconcile queue names it.
pub type Owner = ObjectRef<GuardedSequence>;

/// Where tasks live: ECS task ARNs are only meaningful with their region and cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ClusterKey {
    pub region: String,
    /// `None` is the account's default cluster.
    pub cluster: Option<String>,
    /// The role the tasks were launched as (`None`: the controller's own identity); another
    /// role is usually another account, whose tasks only it can describe.
    pub role: Option<AssumedRole>,
}

#[derive(Clone, Debug, PartialEq)]
enum Known {
    Task(Box<TaskRecord>),
    /// ECS answered MISSING, at this time (last asked). The time travels with the answer so that
    /// an early MISSING served late, after a run of failed polls, is never taken for a lost task.
    Missing(Timestamp),
}

struct Watched {
    /// Per Sequence: its poll interval in seconds, and whether it has been answered since the
    /// task last changed.
    owners: HashMap<Owner, Interest>,
    known: Option<Known>,
    /// The poller round (seconds since it started) at which the ARN is next described.
    next_due: u64,
    /// The latest `detail.version` a pushed task event announced (see `task_events`).
    hinted_version: Option<i64>,
    /// A pushed event said the task stopped but DescribeTasks does not say so yet (ECS is
    /// eventually consistent): it is described again this many more times, 2 s apart.
    stop_rechecks: u8,
    /// Named by a pushed event and not described since: goes before the rest of a round.
    urgent: bool,
}

struct Interest {
    interval: u64,
    delivered: bool,
}

impl Watched {
    /// Seconds between two descriptions: the shortest its Sequences ask for, but with push
    /// updates at least the safety-net interval.
    fn interval(&self, floor: u64) -> u64 {
        self.owners
            .values()
            .map(|i| i.interval)
            .min()
            .unwrap_or(1)
            .max(floor)
            .max(1)
    }

    /// A stopped task never changes again; once every Sequence watching it has seen that, the
    /// poller can forget it (a Sequence that asks again simply registers it anew).
    fn done(&self) -> bool {
        matches!(&self.known, Some(Known::Task(t)) if t.is_finished())
            && self.owners.values().all(|i| i.delivered)
    }
}

/// How the poller describes tasks: ECS in the controller, a fake in unit tests.
pub trait Describer: Send + Sync {
    fn describe(
        &self,
        key: &ClusterKey,
        arns: &[String],
    ) -> impl std::future::Future<Output = Result<DescribeResponse, ApiError>> + Send;
}

impl Describer for AwsClients {
    async fn describe(
        &self,
        key: &ClusterKey,
        arns: &[String],
    ) -> Result<DescribeResponse, ApiError> {
        let clients = self.acting_as(Some(&key.region), key.role.as_ref());
        clients.ecs.describe(key.cluster.as_deref(), arns).await
    }
}

/// The Sequences the poller wakes because their tasks changed.
pub type Woken = Arc<WakeQueue>;

pub struct Poller {
    clusters: Mutex<HashMap<ClusterKey, HashMap<String, Watched>>>,
    /// Clusters whose last DescribeTasks failed: how many times in a row, and the round before
    /// which they are left alone (exponential backoff with jitter; a failure never fails a step).
    backoff: Mutex<HashMap<ClusterKey, (u32, u64)>>,
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
            backoff: Mutex::new(HashMap::new()),
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
        let stopped = matches!(&entry.known, Some(Known::Task(t)) if t.is_finished());
        let seen = match (change.version, entry.hinted_version) {
            (Some(version), Some(latest)) => version <= latest,
            _ => false,
        };
        if stopped || seen {
            return Hint::Duplicate;
        }
        if change.version.is_some() {
            entry.hinted_version = change.version;
        }
        if change.last_status.as_deref() == Some("STOPPED") {
            entry.stop_rechecks = STOP_RECHECKS;
        }
        entry.next_due = now;
        entry.urgent = true;
        drop(clusters);
        self.hinted.notify_one();
        Hint::Described
    }

    fn round_now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterKey, HashMap<String, Watched>>> {
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
            let entry = watched.entry(arn.clone()).or_insert_with(|| Watched {
                owners: HashMap::new(),
                known: None,
                next_due: now,
                hinted_version: None,
                stop_rechecks: 0,
                urgent: false,
            });
            let interest = entry.owners.entry(owner.clone()).or_insert(Interest {
                interval: interval.max(1),
                delivered: false,
            });
            interest.interval = interval.max(1);
            match &entry.known {
                Some(Known::Task(task)) => {
                    interest.delivered = true;
                    response.tasks.push(task.as_ref().clone());
                }
                Some(Known::Missing(at)) => {
                    interest.delivered = true;
                    response.missing.push(MissingTask {
                        task_arn: arn.clone(),
                        answered_at: Some(*at),
                    });
                }
                None => {}
            }
        }
        response
    }

    /// Forgets everything `owner` watched (its run ended, or it was deleted).
    pub fn release(&self, owner: &Owner) {
        let mut clusters = self.lock();
        for watched in clusters.values_mut() {
            watched.retain(|_, w| {
                w.owners.remove(owner);
                !w.owners.is_empty()
            });
        }
        clusters.retain(|_, w| !w.is_empty());
    }

    /// One round: describe every due ARN (≤ 100 per call, per cluster), record what changed and
    /// wake the Sequences concerned.
    pub async fn round<D: Describer>(&self, describer: &D) {
        self.describe_urgent(describer).await;
        let now = self.round_now();
        let resting = self.resting(now);
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
            .filter(|w| !matches!(&w.known, Some(Known::Task(t)) if t.is_finished()))
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
                self.backoff
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(key);
                self.record(key, chunk, response, now);
                true
            }
            Err(e) => {
                let rest = self.back_off(key, now);
                tracing::warn!(region = %key.region, cluster = ?key.cluster, error = %e, retry_in_seconds = rest, "shared poll failed; backing off");
                self.postpone(key, chunk, now);
                false
            }
        }
    }

    /// Clusters left alone after a failed call, until their rest is over.
    fn resting(&self, now: u64) -> Vec<ClusterKey> {
        self.backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, (_, not_before))| *not_before > now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Describes the tasks pushed events named since they were last described (in clusters not
    /// resting after a failure).
    async fn describe_urgent<D: Describer>(&self, describer: &D) {
        let now = self.round_now();
        let resting = self.resting(now);
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
                let Some(entry) = watched.get_mut(arn) else {
                    continue; // released while the call was in flight
                };
                let interval = entry.interval(self.interval_floor);
                entry.next_due = (now / interval + 1) * interval;
                entry.urgent = false;
                let stopped = seen
                    .get(arn)
                    .is_some_and(|k| matches!(k, Known::Task(t) if t.is_finished()));
                if stopped {
                    entry.stop_rechecks = 0;
                } else if entry.stop_rechecks > 0 {
                    entry.stop_rechecks -= 1;
                    entry.next_due = entry.next_due.min(now + STOP_RECHECK_SECONDS);
                }
                let Some(known) = seen.remove(arn) else {
                    continue;
                };
                // Another MISSING only refreshes its time: the Sequence's grace timer looks again.
                if let (Some(Known::Missing(_)), Known::Missing(_)) = (&entry.known, &known) {
                    entry.known = Some(known);
                    continue;
                }
                if entry.known.as_ref() != Some(&known) {
                    entry.known = Some(known);
                    for (owner, interest) in &mut entry.owners {
                        interest.delivered = false;
                        wake.push(owner.clone());
                    }
                }
            }
        }
        wake.sort_by_key(|o| (o.namespace.clone(), o.name.clone()));
        wake.dedup();
        for owner in wake {
            self.wake.push(owner);
        }
    }

    /// Records a failed call for `key`; returns the seconds it now rests (1 s doubling to 60 s,
    /// jittered into its upper half so that many controllers do not retry in step).
    fn back_off(&self, key: &ClusterKey, now: u64) -> u64 {
        let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = backoff.entry(key.clone()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let seed = format!("{}/{:?}/{}/{now}", key.region, key.cluster, entry.0);
        let rest = sequencer_core::backoff::api_error_delay(entry.0, &seed)
            .as_secs_f64()
            .ceil() as u64;
        entry.1 = now + rest.max(1);
        rest.max(1)
    }

    fn postpone(&self, key: &ClusterKey, asked: &[String], now: u64) {
        let mut clusters = self.lock();
        if let Some(watched) = clusters.get_mut(key) {
            for arn in asked {
                if let Some(entry) = watched.get_mut(arn) {
                    let interval = entry.interval(self.interval_floor);
                    entry.next_due = (now / interval + 1) * interval;
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

/// The executor a Sequence's reconcile uses: DescribeTasks comes from the shared poller, every
/// other call goes to ECS in the Sequence's region.
pub struct PolledEcs<'a> {
    pub clients: RegionClients,
    pub poller: &'a Poller,
    pub owner: Owner,
    pub poll_interval_seconds: u64,
    pub metrics: &'a Metrics,
}

impl Executor for PolledEcs<'_> {
    async fn execute(&self, action: &Action) -> Observation {
        if let Action::Describe { cluster, task_arns } = action {
            let key = ClusterKey {
                region: self.clients.region.clone(),
                cluster: cluster.clone(),
                role: self.clients.role.clone(),
            };
            let response =
                self.poller
                    .answer(&self.owner, &key, self.poll_interval_seconds, task_arns);
            return Observation::Described {
                outcome: Ok(response),
            };
        }
        let observation = self.clients.ecs.execute(action).await;
        let (operation, failed) = match &observation {
            Observation::Launched { outcome, .. } => ("RunTask", outcome.as_ref().err()),
            Observation::LookedUp { outcome, .. } => ("ListTasks", outcome.as_ref().err()),
            Observation::StopAnswered { outcome, .. } => ("StopTask", outcome.as_ref().err()),
            Observation::TaskDefinitionDescribed { outcome, .. } => {
                ("DescribeTaskDefinition", outcome.as_ref().err())
            }
            Observation::LogsFetched { tails, .. } => {
                self.metrics.logs_read(tails);
                return observation;
            }
            _ => return observation,
        };
        let result: Result<(), ApiError> = failed.map_or(Ok(()), |e| Err(e.clone()));
        self.metrics.ecs_call(operation, &result);
        observation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers DescribeTasks from a table, and counts the calls and their sizes.
    #[derive(Default)]
    struct FakeEcs {
        tasks: Mutex<HashMap<String, TaskRecord>>,
        calls: Mutex<Vec<(ClusterKey, usize)>>,
    }

    impl FakeEcs {
        fn set(&self, arn: &str, last_status: &str) {
            self.tasks.lock().unwrap().insert(
                arn.into(),
                TaskRecord {
                    task_arn: arn.into(),
                    last_status: Some(last_status.into()),
                    ..Default::default()
                },
            );
        }
    }

    impl Describer for FakeEcs {
        async fn describe(
            &self,
            key: &ClusterKey,
            arns: &[String],
        ) -> Result<DescribeResponse, ApiError> {
            self.calls.lock().unwrap().push((key.clone(), arns.len()));
            let tasks = self.tasks.lock().unwrap();
            let mut response = DescribeResponse::default();
            for arn in arns {
                match tasks.get(arn) {
                    Some(t) => response.tasks.push(t.clone()),
                    None => response.missing.push(MissingTask::fresh(arn.clone())),
                }
            }
            Ok(response)
        }
    }

    fn key() -> ClusterKey {
        ClusterKey {
            region: "us-east-1".into(),
            cluster: Some("batch".into()),
            role: None,
        }
    }

    fn owner(name: &str) -> Owner {
        ObjectRef::new(name).within("default")
    }

    fn drain(queue: &Woken) -> Vec<String> {
        let mut woken = Vec::new();
        while let Some(o) = queue.try_pop() {
            woken.push(o.name);
        }
        woken.sort();
        woken
    }

    #[tokio::test]
    async fn one_call_per_hundred_tasks_across_sequences_and_only_changed_ones_woken() {
        let (poller, woken) = Poller::new(Arc::new(Metrics::new()));
        let ecs = FakeEcs::default();
        // 150 Sequences with one running task each, all in one cluster.
        for i in 0..150 {
            let arn = format!("arn:task/{i}");
            ecs.set(&arn, "RUNNING");
            let first = poller.answer(&owner(&format!("s{i}")), &key(), 5, &[arn]);
            assert!(
                first.tasks.is_empty(),
                "nothing is known before the first round"
            );
        }
        poller.round(&ecs).await;
        let calls = ecs.calls.lock().unwrap().clone();
        assert_eq!(
            calls.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![100, 50],
            "150 ARNs are described in two calls"
        );
        assert_eq!(drain(&woken).len(), 150, "everyone learns its task's state");
        for i in 0..150 {
            let seen = poller.answer(
                &owner(&format!("s{i}")),
                &key(),
                5,
                &[format!("arn:task/{i}")],
            );
            assert_eq!(seen.tasks[0].last_status.as_deref(), Some("RUNNING"));
        }

        // Not due again within the interval: no call.
        poller.round(&ecs).await;
        assert_eq!(ecs.calls.lock().unwrap().len(), 2);

        // One task stops; once the interval has passed, only its Sequence is woken.
        ecs.set("arn:task/7", "STOPPED");
        let mut rounds = 0;
        while ecs.calls.lock().unwrap().len() == 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            poller.round(&ecs).await;
            rounds += 1;
            assert!(rounds < 50, "the poller never came back to the tasks");
        }
        assert_eq!(drain(&woken), vec!["s7".to_owned()]);
        let seen = poller.answer(&owner("s7"), &key(), 5, &["arn:task/7".into()]);
        assert_eq!(seen.tasks[0].last_status.as_deref(), Some("STOPPED"));

        // Delivered and stopped: forgotten at the next round; released owners are forgotten too.
        poller.release(&owner("s8"));
        poller.round(&ecs).await;
        let clusters = poller.lock();
        let watched = clusters.get(&key()).unwrap();
        assert!(!watched.contains_key("arn:task/7"));
        assert!(!watched.contains_key("arn:task/8"));
        assert_eq!(watched.len(), 148);
    }

    fn change(arn: &str, status: &str, version: Option<i64>) -> TaskChange {
        TaskChange {
            task_arn: arn.into(),
            last_status: Some(status.into()),
            version,
        }
    }

    #[tokio::test]
    async fn a_pushed_change_makes_its_task_due_at_once_and_repeats_are_skipped() {
        // Push mode: nothing is due again for 600 s unless an event names it.
        let (poller, woken) = Poller::with_interval_floor(Arc::new(Metrics::new()), 600);
        let ecs = FakeEcs::default();
        for arn in ["arn:task/a", "arn:task/b"] {
            ecs.set(arn, "RUNNING");
            poller.answer(&owner(arn), &key(), 1, &[arn.into()]);
        }
        poller.round(&ecs).await;
        assert_eq!(drain(&woken).len(), 2);
        ecs.set("arn:task/a", "STOPPED");
        ecs.set("arn:task/b", "STOPPED");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        poller.round(&ecs).await;
        assert_eq!(
            ecs.calls.lock().unwrap().len(),
            1,
            "the floor holds the poll back"
        );

        assert_eq!(
            poller.hint(&change("arn:task/unknown", "STOPPED", Some(3))),
            Hint::Unwatched
        );
        assert_eq!(
            poller.hint(&change("arn:task/a", "STOPPED", Some(3))),
            Hint::Described
        );
        assert_eq!(
            poller.hint(&change("arn:task/a", "STOPPED", Some(3))),
            Hint::Duplicate,
            "the same version again"
        );
        assert_eq!(
            poller.hint(&change("arn:task/a", "RUNNING", Some(2))),
            Hint::Duplicate,
            "an older version arriving late"
        );
        poller.round(&ecs).await;
        let calls = ecs.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1, 1, "only the hinted task is described");
        assert_eq!(drain(&woken), vec!["arn:task/a".to_owned()]);
        assert_eq!(
            poller.hint(&change("arn:task/a", "STOPPED", Some(4))),
            Hint::Duplicate,
            "a task known to have stopped never changes again"
        );
    }

    /// Hints at a task the first time it is asked to describe anything.
    struct HintingEcs {
        inner: FakeEcs,
        poller: Arc<Poller>,
    }

    impl Describer for HintingEcs {
        async fn describe(
            &self,
            key: &ClusterKey,
            arns: &[String],
        ) -> Result<DescribeResponse, ApiError> {
            let first = self.inner.calls.lock().unwrap().is_empty();
            let answer = self.inner.describe(key, arns).await;
            if first {
                self.inner.set("arn:task/z", "STOPPED");
                self.poller.hint(&change("arn:task/z", "STOPPED", Some(3)));
            }
            answer
        }
    }

    #[tokio::test]
    async fn a_task_an_event_names_mid_round_goes_before_the_rest_of_the_round() {
        let (poller, woken) = Poller::new(Arc::new(Metrics::new()));
        let ecs = HintingEcs {
            inner: FakeEcs::default(),
            poller: poller.clone(),
        };
        // 349 tasks, "arn:task/z" sorting last: a round of four calls.
        let mut arns: Vec<String> = (0..348).map(|i| format!("arn:task/{i:03}")).collect();
        arns.push("arn:task/z".into());
        for arn in &arns {
            ecs.inner.set(arn, "RUNNING");
            poller.answer(&owner(arn), &key(), 5, std::slice::from_ref(arn));
        }
        poller.round(&ecs).await;
        let sizes: Vec<usize> = ecs
            .inner
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            sizes,
            vec![100, 1, 100, 100, 49],
            "the hinted task is described right after the call in flight"
        );
        let woken = drain(&woken);
        assert!(woken.contains(&"arn:task/z".to_owned()));
        let seen = poller.answer(&owner("arn:task/z"), &key(), 5, &["arn:task/z".into()]);
        assert_eq!(
            seen.tasks[0].last_status.as_deref(),
            Some("STOPPED"),
            "the round's later, older answer did not undo the stop"
        );
    }

    #[tokio::test]
    async fn a_stop_describe_tasks_does_not_show_yet_is_described_again_soon() {
        let (poller, woken) = Poller::with_interval_floor(Arc::new(Metrics::new()), 600);
        let ecs = FakeEcs::default();
        ecs.set("arn:task/a", "RUNNING");
        poller.answer(&owner("a"), &key(), 1, &["arn:task/a".into()]);
        poller.round(&ecs).await;
        drain(&woken);
        // The event arrives before DescribeTasks says STOPPED (eventual consistency).
        assert_eq!(
            poller.hint(&change("arn:task/a", "STOPPED", Some(3))),
            Hint::Described
        );
        poller.round(&ecs).await;
        assert_eq!(ecs.calls.lock().unwrap().len(), 2);
        assert!(drain(&woken).is_empty());
        ecs.set("arn:task/a", "STOPPED");
        let mut rounds = 0;
        while ecs.calls.lock().unwrap().len() == 2 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            poller.round(&ecs).await;
            rounds += 1;
            assert!(rounds < 20, "not described again within 5 s");
        }
        assert_eq!(drain(&woken), vec!["a".to_owned()]);
    }

    /// Fails every call while `failing` is set.
    struct Flaky {
        inner: FakeEcs,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Describer for Flaky {
        async fn describe(
            &self,
            key: &ClusterKey,
            arns: &[String],
        ) -> Result<DescribeResponse, ApiError> {
            if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
                self.inner
                    .calls
                    .lock()
                    .unwrap()
                    .push((key.clone(), arns.len()));
                return Err(ApiError {
                    transient: true,
                    code: "ThrottlingException".into(),
                    message: "Rate exceeded".into(),
                });
            }
            self.inner.describe(key, arns).await
        }
    }

    #[tokio::test]
    async fn a_failing_cluster_is_backed_off_and_nobody_is_woken_by_the_failure() {
        let metrics = Arc::new(Metrics::new());
        let (poller, woken) = Poller::new(metrics.clone());
        let ecs = Flaky {
            inner: FakeEcs::default(),
            failing: true.into(),
        };
        ecs.inner.set("arn:x", "RUNNING");
        poller.answer(&owner("x"), &key(), 1, &["arn:x".into()]);
        poller.round(&ecs).await;
        assert_eq!(ecs.inner.calls.lock().unwrap().len(), 1);
        assert!(drain(&woken).is_empty());
        let (failures, not_before) = *poller.backoff.lock().unwrap().get(&key()).unwrap();
        assert_eq!(failures, 1);
        assert!(not_before > poller.round_now());
        // While the cluster rests, even a newly registered (so at once due) task is not asked for.
        let now = poller.round_now();
        poller.backoff.lock().unwrap().insert(key(), (1, now + 100));
        poller.answer(&owner("y"), &key(), 1, &["arn:y".into()]);
        poller.round(&ecs).await;
        assert_eq!(
            ecs.inner.calls.lock().unwrap().len(),
            1,
            "no call while resting"
        );
        // Once the rest is over, a successful call clears the backoff and wakes the Sequences.
        poller.backoff.lock().unwrap().insert(key(), (1, now));
        ecs.failing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut seen = Vec::new();
        for _ in 0..20 {
            poller.round(&ecs).await;
            seen.extend(drain(&woken));
            if seen.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        seen.sort();
        assert_eq!(seen, vec!["x".to_owned(), "y".to_owned()]);
        assert!(poller.backoff.lock().unwrap().get(&key()).is_none());
        assert!(
            metrics
                .encode()
                .contains("sequencer_ecs_throttles_total{operation=\"DescribeTasks\"} 1")
        );
    }

    #[test]
    fn rests_grow_from_one_second_to_a_minute() {
        let (poller, _woken) = Poller::new(Arc::new(Metrics::new()));
        let rests: Vec<u64> = (0..10).map(|_| poller.back_off(&key(), 0)).collect();
        for (n, rest) in rests.iter().enumerate() {
            let full = (1u64 << n.min(6)).min(60);
            assert!(
                *rest >= (full / 2).max(1) && *rest <= full,
                "failure {}: {rest} s",
                n + 1
            );
        }
        assert!(rests[9] >= 30);
    }

    #[tokio::test]
    async fn clusters_and_regions_are_polled_apart_and_missing_is_answered() {
        let (poller, woken) = Poller::new(Arc::new(Metrics::new()));
        let ecs = FakeEcs::default();
        let other = ClusterKey {
            region: "eu-west-1".into(),
            cluster: Some("batch".into()),
            role: None,
        };
        ecs.set("arn:a", "PENDING");
        poller.answer(&owner("a"), &key(), 10, &["arn:a".into()]);
        poller.answer(&owner("b"), &other, 10, &["arn:gone".into()]);
        poller.round(&ecs).await;
        let calls = ecs.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().any(|(k, _)| k == &other));
        assert_eq!(drain(&woken), vec!["a".to_owned(), "b".to_owned()]);
        let b = poller.answer(&owner("b"), &other, 10, &["arn:gone".into()]);
        assert_eq!(b.missing.len(), 1);
        assert_eq!(b.missing[0].task_arn, "arn:gone");
        assert!(
            b.missing[0].answered_at.is_some(),
            "a served MISSING carries when ECS gave it"
        );
        assert!(b.tasks.is_empty());
    }
}
