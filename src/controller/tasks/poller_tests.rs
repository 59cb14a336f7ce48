//! The shared poller, against a fake DescribeTasks.

use super::*;
use kube::runtime::reflector::ObjectRef;
use sequencer_core::observation::ApiError;
use sequencer_core::status::TaskRecord;

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
    let (failures, not_before) = poller.backoff.state(&key()).unwrap();
    assert_eq!(failures, 1);
    assert!(not_before > poller.round_now());
    // While the cluster rests, even a newly registered (so at once due) task is not asked for.
    let now = poller.round_now();
    poller.backoff.set(&key(), 1, now + 100);
    poller.answer(&owner("y"), &key(), 1, &["arn:y".into()]);
    poller.round(&ecs).await;
    assert_eq!(
        ecs.inner.calls.lock().unwrap().len(),
        1,
        "no call while resting"
    );
    // Once the rest is over, a successful call clears the backoff and wakes the Sequences.
    poller.backoff.set(&key(), 1, now);
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
    assert!(poller.backoff.state(&key()).is_none());
    assert!(
        metrics
            .encode()
            .contains("sequencer_ecs_throttles_total{operation=\"DescribeTasks\"} 1")
    );
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
