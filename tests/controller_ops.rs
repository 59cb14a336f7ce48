//! The controller under stress, on a real kube-apiserver + etcd with the AWS emulator: SIGKILLed at
//! random instants across several Sequences, two replicas under leader election, status writes
//! that conflict, a spec edited mid-run; and what operators see (shared polling, /metrics,
//! /healthz, /readyz, JSON logs).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::world::*;

/// A small deterministic generator, so that a failing run can be repeated from its printed seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        low + (self.0 >> 33) % (high - low)
    }
}

fn is_true(world_seq: &sequencer::api::sequence::Sequence, type_: &str) -> bool {
    world_seq.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// Every step that started has exactly one task, and every RunTask for one startedBy carried the
/// same clientToken: no step was launched twice.
async fn assert_launched_once(world: &World) -> BTreeMap<String, usize> {
    let mut tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for call in world.emu.calls_of("RunTask") {
        tokens
            .entry(call["startedBy"].as_str().unwrap().to_owned())
            .or_default()
            .insert(call["clientToken"].as_str().unwrap().to_owned());
    }
    assert!(
        tokens.values().all(|t| t.len() == 1),
        "one clientToken per startedBy: {tokens:?}"
    );
    let tasks = world.tasks_by_started_by().await;
    assert!(
        tasks.values().all(|n| *n == 1),
        "exactly one task per step attempt: {tasks:?}"
    );
    assert_eq!(
        tasks.keys().collect::<Vec<_>>(),
        tokens.keys().collect::<Vec<_>>()
    );
    tasks
}

/// The task ARNs a Sequence's status records, over all steps and attempts.
fn recorded_arns(seq: &sequencer::api::sequence::Sequence) -> Vec<String> {
    let run = seq
        .status
        .as_ref()
        .and_then(|s| s.run.as_ref())
        .map(|r| r.to_value())
        .unwrap_or_default();
    let mut arns = Vec::new();
    for step in run["steps"].as_array().cloned().unwrap_or_default() {
        for attempt in step["attempts"].as_array().cloned().unwrap_or_default() {
            for task in attempt["tasks"].as_array().cloned().unwrap_or_default() {
                arns.extend(task["taskArn"].as_str().map(str::to_owned));
            }
        }
    }
    arns
}

/// Which Sequence recorded each task ARN; fails if two did.
async fn arn_owners(world: &World) -> BTreeMap<String, String> {
    let mut owners = BTreeMap::new();
    for seq in world
        .sequences()
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        for arn in recorded_arns(&seq) {
            let name = seq.metadata.name.clone().unwrap_or_default();
            if let Some(other) = owners.insert(arn.clone(), name.clone()) {
                panic!("{arn} is recorded by both {other} and {name}");
            }
        }
    }
    owners
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_at_random_instants_every_step_of_every_sequence_is_launched_once() {
    let world = World::start().await;
    world
        .emu
        .task_definition("six", &["app"], &[("SEQ_EMU_SECONDS", "6")])
        .await;
    let sequences: [(&str, Vec<Value>); 4] = [
        (
            "alpha",
            (1..=5).map(|i| step(&format!("a{i}"), "six")).collect(),
        ),
        (
            "bravo",
            (1..=4).map(|i| step(&format!("b{i}"), "six")).collect(),
        ),
        (
            "charlie",
            vec![
                step("c1", "six"),
                step("c2", "six"),
                step("c3", "bad"),
                step("c4", "six"),
            ],
        ),
        (
            "delta",
            (1..=4).map(|i| step(&format!("d{i}"), "six")).collect(),
        ),
    ];
    for (name, steps) in &sequences {
        world.create(name, Value::Array(steps.clone())).await;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    println!("kill schedule seed {seed}");
    let mut random = Lcg(seed);
    let done = |seq: &sequencer::api::sequence::Sequence| {
        is_true(seq, "Complete") || is_true(seq, "Failed")
    };
    let mut kills = 0;
    let start = Instant::now();
    loop {
        let mut controller = world.controller();
        let all = world
            .sequences()
            .list(&ListParams::default())
            .await
            .unwrap();
        if all.items.iter().all(done) {
            stop(controller);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not finished after {kills} kills"
        );
        // Anywhere from before the controller has read anything to well into a step.
        std::thread::sleep(Duration::from_millis(random.next(100, 1800)));
        if kills < 24 {
            controller.kill().unwrap();
            let _ = controller.wait();
            kills += 1;
        } else {
            for (name, _) in &sequences {
                let want = if *name == "charlie" {
                    "Failed"
                } else {
                    "Complete"
                };
                world
                    .wait_condition(name, want, Duration::from_secs(120))
                    .await;
            }
            stop(controller);
            break;
        }
    }
    let tasks = assert_launched_once(&world).await;
    let owners = arn_owners(&world).await;
    assert_eq!(
        owners.keys().collect::<BTreeSet<_>>(),
        world.task_owners().await.keys().collect::<BTreeSet<_>>(),
        "every task ECS ran is recorded in exactly one Sequence's status"
    );
    let mut per_sequence: BTreeMap<String, usize> = BTreeMap::new();
    for name in owners.values() {
        *per_sequence.entry(name.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        per_sequence,
        BTreeMap::from([
            ("alpha".to_owned(), 5),
            ("bravo".to_owned(), 4),
            ("charlie".to_owned(), 3),
            ("delta".to_owned(), 4),
        ]),
        "every step once; charlie's fourth step never, after its third failed"
    );
    for (name, _) in &sequences {
        let seq = world.sequences().get(name).await.unwrap();
        let want = if *name == "charlie" {
            "Failed"
        } else {
            "Complete"
        };
        assert!(
            is_true(&seq, want),
            "{name} is not {want}: {:?}",
            seq.status
        );
    }
    println!(
        "SIGKILL test: {kills} kills across 4 Sequences of 17 steps; {} tasks launched (one per step; charlie's fourth never), {} RunTask calls; 3 Complete, 1 Failed as its step failed",
        tasks.len(),
        world.emu.calls_of("RunTask").len()
    );
    assert!(kills >= 20, "only {kills} kills");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shared_poll_serves_many_sequences_and_operators_see_it() {
    let world = World::start().await;
    world.emu.task_definition("held", &["app"], &[]).await;
    let (controller, log) = world.controller_with(&[]);
    let address = http_address(&log);
    assert_eq!(http_get(&address, "/healthz").0, 200);
    let start = Instant::now();
    while http_get(&address, "/readyz").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..6 {
        world
            .create(&format!("p{i}"), json!([step("only", "held")]))
            .await;
    }
    // All six running at once: the poller's gauge sees six tasks.
    let start = Instant::now();
    loop {
        let text = http_get(&address, "/metrics").1;
        if metric(&text, "sequencer_running_tasks") == 6.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never six running tasks: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ECS throttles DescribeTasks (three answers: all the SDK's tries of one call): the poller
    // counts it, backs off, and nothing fails.
    world.emu.inject("DescribeTasks", "throttle", 3, None);
    let start = Instant::now();
    while metric(
        &http_get(&address, "/metrics").1,
        "sequencer_ecs_throttles_total{operation=\"DescribeTasks\"}",
    ) < 1.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the throttled poll was never counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The tasks run until told to stop: all six are surely running together above.
    for arn in world.task_owners().await.keys() {
        world
            .emu
            .finish_task(arn, Some(0), "EssentialContainerExited", "done");
    }
    for i in 0..6 {
        world
            .wait_condition(&format!("p{i}"), "Complete", Duration::from_secs(90))
            .await;
    }

    // DescribeTasks calls carry the tasks of several Sequences together, never more than 100.
    let owner = arn_owners(&world).await;
    assert_eq!(owner.len(), 6, "{owner:?}");
    let describes = world.emu.calls_of("DescribeTasks");
    let widest = describes
        .iter()
        .map(|c| {
            let arns = c["request"]["tasks"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(arns.len() <= 100);
            arns.iter()
                .filter_map(|a| owner.get(a.as_str()?))
                .collect::<BTreeSet<_>>()
                .len()
        })
        .max()
        .unwrap_or(0);
    assert!(
        widest >= 2,
        "no DescribeTasks served two Sequences at once: {describes:?}"
    );
    let text = http_get(&address, "/metrics").1;
    assert_eq!(
        metric(&text, "sequencer_steps_total{outcome=\"succeeded\"}"),
        6.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sequencer_runs_finished_total{phase=\"Succeeded\"}"),
        6.0
    );
    assert_eq!(
        metric(
            &text,
            "sequencer_ecs_calls_total{operation=\"RunTask\",outcome=\"ok\"}"
        ),
        6.0
    );
    assert!(
        metric(
            &text,
            "sequencer_ecs_calls_total{operation=\"DescribeTasks\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &text,
            "sequencer_step_duration_seconds_count{outcome=\"succeeded\"}"
        ),
        6.0
    );
    assert!(metric(&text, "sequencer_reconciles_total") >= 6.0);
    assert_eq!(metric(&text, "sequencer_leader"), 1.0);
    assert_eq!(metric(&text, "sequencer_running_tasks"), 0.0);

    // JSON logs name the Sequence, the step and the task.
    let lines = log_lines(&log);
    let launched = lines
        .iter()
        .find(|l| l["message"] == "task launched")
        .expect("a task launched line");
    assert_eq!(launched["span"]["namespace"], "default", "{launched}");
    assert!(
        launched["span"]["sequence"]
            .as_str()
            .is_some_and(|s| s.starts_with('p')),
        "{launched}"
    );
    assert_eq!(launched["step"], "only");
    assert!(
        launched["task_arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:ecs:")),
        "{launched}"
    );

    // SIGTERM: a clean stop.
    let mut controller = controller;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &controller.id().to_string()])
        .status();
    let status = controller.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(log_lines(&log).iter().any(|l| l["message"] == "stopped"));
}

async fn holder(world: &World) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), "default");
    leases
        .get_opt("sequencer-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_under_leader_election_never_both_launch() {
    let world = World::start().await;
    let flags = |id: &'static str| {
        [
            "--leader-election",
            "--lease-namespace",
            "default",
            "--identity",
            id,
        ]
    };
    let (one, one_log) = world.controller_with(&flags("one"));
    let start = Instant::now();
    while holder(&world).await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "nobody leads");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (two, two_log) = world.controller_with(&flags("two"));
    assert_eq!(holder(&world).await.as_deref(), Some("one"));
    let standby_address = http_address(&two_log);
    let start = Instant::now();
    while http_get(&standby_address, "/readyz").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a standby is ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(
            &http_get(&standby_address, "/metrics").1,
            "sequencer_leader"
        ),
        0.0
    );

    for name in ["x", "y"] {
        world
            .create(
                name,
                json!([
                    step("s1", "steady"),
                    step("s2", "steady"),
                    step("s3", "steady")
                ]),
            )
            .await;
    }
    world
        .wait_condition("x", "Running", Duration::from_secs(60))
        .await;
    assert!(
        !log_lines(&two_log)
            .iter()
            .any(|l| l["span"]["name"] == "reconcile"),
        "the standby reconciled while the leader was alive"
    );

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    let mut one = one;
    one.kill().unwrap();
    let _ = one.wait();
    let start = Instant::now();
    while holder(&world).await.as_deref() != Some("two") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in ["x", "y"] {
        world
            .wait_condition(name, "Complete", Duration::from_secs(120))
            .await;
    }
    let tasks = assert_launched_once(&world).await;
    assert_eq!(tasks.len(), 6, "{tasks:?}");
    assert!(
        log_lines(&one_log)
            .iter()
            .any(|l| l["message"] == "became the leader")
    );

    // A clean stop gives the Lease up at once.
    stop(two);
    assert_eq!(holder(&world).await, None, "the Lease was released");
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_writes_and_a_spec_edit_mid_run_change_nothing_that_was_decided() {
    let world = World::start().await;
    let (controller, log) = world.controller_with(&[]);
    let address = http_address(&log);
    world
        .create(
            "busy",
            json!([
                step("s1", "steady"),
                step("s2", "steady"),
                step("s3", "steady")
            ]),
        )
        .await;
    world
        .wait_condition("busy", "Running", Duration::from_secs(60))
        .await;

    // Someone else keeps changing the object: every status write the controller makes from an
    // older read is refused with 409.
    let api = world.sequences();
    let writer = tokio::spawn({
        let api = api.clone();
        async move {
            for i in 0..400 {
                let patch = json!({"metadata": {"labels": {"touched": i.to_string()}}});
                if api
                    .patch("busy", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    // And the spec changes mid-run: a fourth step is added.
    let mut steps: Vec<Value> = (1..=3).map(|i| step(&format!("s{i}"), "steady")).collect();
    steps.push(step("s4", "quick"));
    api.patch(
        "busy",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"steps": steps}})),
    )
    .await
    .unwrap();
    let changed = world
        .wait_condition("busy", "SpecChanged", Duration::from_secs(60))
        .await;
    let condition = condition_of(changed.status.as_ref().unwrap(), "SpecChanged");
    assert_eq!(condition.reason, "PinnedPlanKept");
    assert!(
        condition
            .message
            .contains("after the run started from generation 1"),
        "{condition:?}"
    );
    let done = world
        .wait_condition("busy", "Complete", Duration::from_secs(120))
        .await;
    writer.abort();
    let status = done.status.unwrap();
    assert_eq!(
        status.progress.as_deref(),
        Some("3/3"),
        "the pinned plan ran"
    );
    let pinned = status.pinned.expect("pinned origin");
    assert_eq!(pinned.generation, Some(1));
    assert_eq!(pinned.region, "us-east-1");
    assert_eq!(pinned.source, "spec.steps");
    let tasks = assert_launched_once(&world).await;
    assert_eq!(tasks.len(), 3, "s4 was never launched: {tasks:?}");

    let text = http_get(&address, "/metrics").1;
    assert!(
        metric(&text, "sequencer_reconcile_errors_total{kind=\"conflict\"}") >= 1.0,
        "the writes really conflicted: {text}"
    );
    let counts = world.wait_events(&["SpecChangedDuringRun"]).await;
    assert_eq!(
        counts["SpecChangedDuringRun"], 1,
        "reported once: {counts:?}"
    );
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_shutdown_leaves_the_running_task_alone_and_the_next_controller_finishes() {
    let world = World::start().await;
    let (mut controller, log) = world.controller_with(&[]);
    world
        .create(
            "steady",
            json!([step("s1", "steady"), step("s2", "steady")]),
        )
        .await;
    world
        .wait_condition("steady", "Running", Duration::from_secs(60))
        .await;
    // Running, and its task's ARN recorded (the launch confirmed).
    let start = Instant::now();
    let arns = loop {
        let seq = world.sequences().get("steady").await.unwrap();
        let arns = recorded_arns(&seq);
        if !arns.is_empty() {
            break arns;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            seq.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(arns.len(), 1);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &controller.id().to_string()])
        .status();
    let exit = controller.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(log_lines(&log).iter().any(|l| l["message"] == "stopped"));
    assert!(
        world.emu.calls_of("StopTask").is_empty(),
        "a shutdown does not stop ECS tasks"
    );
    let after = world.sequences().get("steady").await.unwrap();
    assert_eq!(
        recorded_arns(&after),
        arns,
        "the status still holds the running task"
    );

    let next = world.controller();
    world
        .wait_condition("steady", "Complete", Duration::from_secs(90))
        .await;
    stop(next);
    assert_eq!(assert_launched_once(&world).await.len(), 2);
}
