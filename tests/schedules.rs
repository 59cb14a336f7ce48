//! ScheduledSequences on the test kube-apiserver with the emulator: missed occurrences, suspend,
//! Forbid and Replace, history limits, refusals, and one run per occurrence across SIGKILLs. Most
//! cases avoid waiting for the wall clock by recording an old `lastScheduleTime` (as a controller
//! that was down would find it); the policy cases wait for one real minute together.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, ResourceExt};
use sequencer::api::scheduled_sequence::ScheduledSequence;
use sequencer::api::sequence::Sequence;
use serde_json::{Value, json};
use support::world::{World, step, stop};

const SCHEDULED_BY: &str = "sequencer.dev/scheduled-sequence";

async fn install_schedules(world: &World) {
    support::apiserver::install_crd(&world.client, &sequencer::api::scheduled_sequence::crd())
        .await;
}

fn schedules(world: &World) -> Api<ScheduledSequence> {
    Api::namespaced(world.client.clone(), "default")
}

/// Creates a ScheduledSequence (suspended, so that nothing races the test's own setup).
async fn create(world: &World, name: &str, schedule: &str, extra: Value, steps: Value) {
    let mut spec = json!({"schedule": schedule, "suspend": true,
                          "template": {"metadata": {"labels": {"team": "data"}},
                                       "spec": {"steps": steps, "pollIntervalSeconds": 1}}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "ScheduledSequence",
                        "metadata": {"name": name}, "spec": spec});
    schedules(world)
        .create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .expect("create the ScheduledSequence");
}

/// Records `last` as the last occurrence started, then lifts the suspension.
async fn resume_from(world: &World, name: &str, last: Timestamp) {
    schedules(world)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": last.to_string()}})),
        )
        .await
        .expect("record lastScheduleTime");
    schedules(world)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("unsuspend");
}

/// The runs of `parent`, by name.
async fn runs(world: &World, parent: &str) -> Vec<Sequence> {
    world
        .sequences()
        .list(&ListParams::default().labels(&format!("{SCHEDULED_BY}={parent}")))
        .await
        .expect("list runs")
        .items
}

async fn wait_runs(world: &World, parent: &str, count: usize, limit: Duration) -> Vec<Sequence> {
    let start = Instant::now();
    loop {
        let found = runs(world, parent).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            start.elapsed() < limit,
            "{parent}: {} runs, waited for {count}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn minutes_ago(n: i64) -> Timestamp {
    Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(n))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_suspension_only_the_latest_missed_occurrence_runs_once() {
    let world = World::start().await;
    install_schedules(&world).await;
    let (controller, log) = world.controller_with(&[]);
    create(
        &world,
        "hourly",
        "0 * * * *",
        json!({"timeZone": "Europe/Berlin"}),
        json!([step("extract", "quick")]),
    )
    .await;
    create(
        &world,
        "minutely",
        "* * * * *",
        json!({}),
        json!([step("extract", "quick")]),
    )
    .await;
    resume_from(&world, "hourly", minutes_ago(6 * 60)).await;
    resume_from(&world, "minutely", minutes_ago(3 * 60)).await;

    for parent in ["hourly", "minutely"] {
        let found = wait_runs(&world, parent, 1, Duration::from_secs(60)).await;
        let run = &found[0];
        // The run is the template, owned and labelled, named after its occurrence.
        assert_eq!(run.labels().get("team").map(String::as_str), Some("data"));
        assert_eq!(run.owner_references()[0].name, parent);
        let scheduled = run
            .annotations()
            .get("sequencer.dev/scheduled-at")
            .cloned()
            .unwrap();
        let occurrence: Timestamp = scheduled.parse().expect("RFC 3339 with an offset");
        assert_eq!(
            run.name_any(),
            format!("{parent}-{}", occurrence.as_second() / 60)
        );
        if parent == "hourly" {
            // In the ScheduledSequence's zone: Berlin's offset, on the hour.
            let berlin = occurrence.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
            assert_eq!(berlin.minute(), 0);
            assert!(
                scheduled.ends_with(&berlin.strftime("%:z").to_string()),
                "{scheduled}"
            );
        }
        let done = world
            .wait_condition(&run.name_any(), "Complete", Duration::from_secs(60))
            .await;
        assert_eq!(done.status.unwrap().phase.as_deref(), Some("Succeeded"));
    }
    // 180 missed minutes: a warning, and still only the latest ran.
    let events = world
        .wait_events(&["TooManyMissedTimes", "RunStarted"])
        .await;
    assert!(events["RunStarted"] >= 2, "{events:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        runs(&world, "hourly").await.len(),
        1,
        "a backlog of missed hours ran"
    );
    // The finished run wakes its ScheduledSequence, which records it.
    let start = Instant::now();
    let status = loop {
        let status = schedules(&world)
            .get("hourly")
            .await
            .unwrap()
            .status
            .unwrap();
        if status.last_run.is_some() || start.elapsed() > Duration::from_secs(30) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.last_schedule_time.is_some() && status.next_schedule_time.is_some(),
        "{status:?}"
    );
    assert!(status.last_successful_time.is_some(), "{status:?}");
    assert_eq!(status.active_count, 0, "{status:?}");
    assert_eq!(
        status.last_run.as_ref().map(|r| r.phase.as_str()),
        Some("Succeeded")
    );
    // Argo CD's view of the real object (deploy/argocd/scheduled-health.lua).
    let object = serde_json::to_value(schedules(&world).get("hourly").await.unwrap()).unwrap();
    let (health, _) = support::argocd::health_by("deploy/argocd/scheduled-health.lua", &object);
    assert_eq!(health, "Healthy");
    let metrics = support::world::http_get(&support::world::http_address(&log), "/metrics").1;
    assert!(
        support::world::metric(
            &metrics,
            r#"sequencer_scheduled_runs_total{outcome="started"}"#
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        support::world::metric(
            &metrics,
            r#"sequencer_scheduled_runs_total{outcome="many_missed"}"#
        ) >= 1.0,
        "{metrics}"
    );
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_schedule_or_zone_is_refused_with_the_field_named_and_nothing_runs() {
    let world = World::start().await;
    install_schedules(&world).await;
    let controller = world.controller();
    create(
        &world,
        "sixfields",
        "0 30 2 * * *",
        json!({}),
        json!([step("x", "quick")]),
    )
    .await;
    create(
        &world,
        "nozone",
        "30 2 * * *",
        json!({"timeZone": "Mars/Olympus"}),
        json!([step("x", "quick")]),
    )
    .await;
    let mut typo = step("x", "quick");
    typo["timeoutSecond"] = json!(60);
    create(&world, "typo", "30 2 * * *", json!({}), json!([typo])).await;
    for (name, says) in [
        (
            "sixfields",
            "spec.schedule: 6 fields given; expected five fields",
        ),
        ("nozone", "spec.timeZone: `Mars/Olympus` is not a time zone"),
        (
            "typo",
            "spec.template.steps[0] (x): unknown field `timeoutSecond`",
        ),
    ] {
        resume_from(&world, name, minutes_ago(60 * 24)).await;
        let start = Instant::now();
        loop {
            let object = schedules(&world).get(name).await.unwrap();
            let ready = object
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
            if let Some(c) = ready.filter(|c| c.status == "False") {
                assert_eq!(c.reason, "InvalidSpec");
                assert!(c.message.contains(says), "{}", c.message);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} was never refused"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    world.wait_events(&["InvalidSpec"]).await;
    for name in ["sixfields", "nozone", "typo"] {
        assert!(runs(&world, name).await.is_empty(), "{name} created a run");
    }
    // What the schema can say, the API server says at apply time.
    let empty = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "ScheduledSequence",
                       "metadata": {"name": "empty"}, "spec": {"schedule": "", "template": {"spec": {"steps": [step("x", "quick")]}}}});
    let refused = schedules(&world)
        .create(
            &PostParams::default(),
            &serde_json::from_value(empty).unwrap(),
        )
        .await
        .expect_err("an empty schedule");
    assert!(refused.to_string().contains("spec.schedule"), "{refused}");
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_limits_delete_the_oldest_finished_runs() {
    let world = World::start().await;
    install_schedules(&world).await;
    let controller = world.controller();
    create(
        &world,
        "kept",
        "0 0 1 1 *",
        json!({"successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 1}),
        json!([step("x", "quick")]),
    )
    .await;
    let parent = schedules(&world).get("kept").await.unwrap();
    // Five earlier runs (three succeed, two fail), as a controller made them in past years.
    for (year, family) in [
        (2021, "quick"),
        (2022, "bad"),
        (2023, "quick"),
        (2024, "bad"),
        (2025, "quick"),
    ] {
        let at = format!("{year}-01-01T00:00:00+00:00");
        let minutes = at.parse::<Timestamp>().unwrap().as_second() / 60;
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
            "metadata": {"name": format!("kept-{minutes}"), "labels": {SCHEDULED_BY: "kept"},
                         "annotations": {"sequencer.dev/scheduled-at": at},
                         "ownerReferences": [{"apiVersion": "sequencer.dev/v1alpha1", "kind": "ScheduledSequence",
                                              "name": "kept", "uid": parent.uid().unwrap(), "controller": true}]},
            "spec": {"steps": [step("x", family)], "pollIntervalSeconds": 1}});
        world
            .sequences()
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap();
    }
    // Once all five have finished, the schedule's reconcile keeps the newest 2 + 1.
    let start = Instant::now();
    loop {
        let names: BTreeSet<String> = runs(&world, "kept")
            .await
            .iter()
            .map(|r| r.name_any())
            .collect();
        let expected: BTreeSet<String> = [2023, 2024, 2025]
            .iter()
            .map(|y| {
                format!(
                    "kept-{}",
                    format!("{y}-01-01T00:00:00+00:00")
                        .parse::<Timestamp>()
                        .unwrap()
                        .as_second()
                        / 60
                )
            })
            .collect();
        if names == expected {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "runs left: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop(controller);
}

/// One real minute: at the next occurrence, Forbid skips (the slow run is active) and Replace
/// stops the active run's task before its new run launches.
#[tokio::test(flavor = "multi_thread")]
async fn forbid_skips_and_replace_stops_the_active_run_first() {
    let world = World::start().await;
    install_schedules(&world).await;
    let controller = world.controller();
    create(
        &world,
        "forbid",
        "* * * * *",
        json!({"concurrencyPolicy": "Forbid"}),
        json!([step("long", "slow")]),
    )
    .await;
    create(
        &world,
        "replace",
        "* * * * *",
        json!({"concurrencyPolicy": "Replace"}),
        json!([step("long", "slow")]),
    )
    .await;
    resume_from(&world, "forbid", minutes_ago(5)).await;
    resume_from(&world, "replace", minutes_ago(5)).await;
    let first_forbid = wait_runs(&world, "forbid", 1, Duration::from_secs(30)).await[0].name_any();
    let first_replace =
        wait_runs(&world, "replace", 1, Duration::from_secs(30)).await[0].name_any();
    // Both first runs have launched their (slow) task.
    world
        .emu
        .wait_for(Duration::from_secs(30), "two slow tasks", |e| {
            (e.calls_of("RunTask").len() >= 2).then_some(())
        });

    // The next minute: Replace makes a second run once the first is gone.
    let start = Instant::now();
    let second_replace = loop {
        let names: Vec<String> = runs(&world, "replace")
            .await
            .iter()
            .map(|r| r.name_any())
            .collect();
        if let Some(n) = names.iter().find(|n| **n != first_replace) {
            // The replaced run stays (being deleted) until its task has stopped: the new one
            // must not exist before then.
            assert!(
                !names.contains(&first_replace),
                "{n} was created while {first_replace} was still being stopped"
            );
            break n.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(100),
            "no replacement: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    world
        .wait_condition(&second_replace, "Running", Duration::from_secs(30))
        .await;
    world
        .emu
        .wait_for(Duration::from_secs(30), "the replacement's task", |e| {
            (e.calls_of("RunTask").len() >= 3).then_some(())
        });
    // The first run's task was stopped before the replacement's task was launched.
    let calls = world.emu.calls();
    let stops: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c["operation"] == "StopTask")
        .map(|(i, _)| i)
        .collect();
    let launches: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c["operation"] == "RunTask")
        .map(|(i, _)| i)
        .collect();
    assert!(
        !stops.is_empty(),
        "the replaced run's task was never stopped"
    );
    assert!(
        stops[0] < launches[2],
        "launched before the old task was stopped: {calls:?}"
    );

    // Forbid: still the one run, and the skipped occurrence was reported.
    let counts = world.wait_events(&["RunSkipped", "RunReplaced"]).await;
    assert!(counts["RunSkipped"] >= 1);
    let forbid_runs: Vec<String> = runs(&world, "forbid")
        .await
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert_eq!(forbid_runs, vec![first_forbid]);
    stop(controller);
}

/// One run per occurrence of an every-minute schedule while the controller is SIGKILLed again
/// and again around the creations, across three occurrences.
#[tokio::test(flavor = "multi_thread")]
async fn one_run_per_occurrence_across_sigkills() {
    let world = World::start().await;
    install_schedules(&world).await;
    create(
        &world,
        "killed",
        "* * * * *",
        json!({"concurrencyPolicy": "Allow", "successfulRunsHistoryLimit": 10}),
        json!([step("x", "quick")]),
    )
    .await;
    resume_from(&world, "killed", minutes_ago(1)).await;
    let started = Timestamp::now();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        let mut controller = world.controller();
        // Around each minute's boundary the controller lives for less than a second at a time.
        let second = Timestamp::now().as_second().rem_euclid(60);
        let life = if second >= 58 || second <= 3 {
            300 + (kills * 137) % 700
        } else {
            2500
        };
        tokio::time::sleep(Duration::from_millis(life as u64)).await;
        let _ = controller.kill();
        let _ = controller.wait();
        kills += 1;
    }
    let controller = world.controller();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ended = Timestamp::now();
    let names: BTreeSet<String> = runs(&world, "killed")
        .await
        .iter()
        .map(|r| r.name_any())
        .collect();
    // Every minute boundary passed while the test ran has exactly its run (names are per minute,
    // so two runs of one occurrence cannot exist; a missing one would be a lost occurrence).
    let mut expected = BTreeSet::new();
    let mut minute = started.as_second() / 60;
    while (minute + 1) * 60 <= ended.as_second() - 2 {
        minute += 1;
        expected.insert(format!("killed-{minute}"));
    }
    assert!(
        expected.len() >= 2,
        "the test spans {} minutes",
        expected.len()
    );
    assert!(
        expected.is_subset(&names),
        "lost occurrences: expected {expected:?}, found {names:?} after {kills} kills"
    );
    let at_edges =
        [started.as_second() / 60, ended.as_second() / 60].map(|m| format!("killed-{m}"));
    let unexpected: Vec<&String> = names
        .iter()
        .filter(|n| !expected.contains(*n) && !at_edges.contains(n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "runs for no occurrence: {unexpected:?}"
    );
    // And each run launched its task exactly once.
    let per_owner = world.tasks_by_started_by().await;
    assert!(per_owner.values().all(|n| *n == 1), "{per_owner:?}");
    stop(controller);
}

fn trigger(world: &World, name: &str) -> support::Run {
    support::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sequencer"))
            .args(["trigger", name, "-n", "default"])
            .env("KUBECONFIG", &world.server.kubeconfig),
    )
}

/// `sequencer trigger` starts one run now, named after the request, even while suspended; a
/// second reconcile of the same request starts nothing more; a new request starts another.
#[tokio::test(flavor = "multi_thread")]
async fn a_manual_trigger_starts_exactly_one_run_per_request() {
    let world = World::start().await;
    install_schedules(&world).await;
    let controller = world.controller();
    create(
        &world,
        "byhand",
        "0 0 1 1 *",
        json!({}),
        json!([step("x", "quick")]),
    )
    .await;
    let first = trigger(&world, "byhand");
    assert_eq!(first.code, 0, "{first:?}");
    let run_name = first.stdout.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(run_name.starts_with("byhand-manual-"), "{first:?}");
    let made = wait_runs(&world, "byhand", 1, Duration::from_secs(30)).await;
    assert_eq!(made[0].name_any(), run_name);
    let done = world
        .wait_condition(&run_name, "Complete", Duration::from_secs(60))
        .await;
    assert!(done.annotations().contains_key("sequencer.dev/manual"));
    // Another reconcile of the same request (a label change wakes it): nothing more.
    schedules(&world)
        .patch(
            "byhand",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs(&world, "byhand").await.len(), 1);
    let status = schedules(&world)
        .get("byhand")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(status.last_manual_run.is_some(), "{status:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = trigger(&world, "byhand");
    assert_eq!(second.code, 0, "{second:?}");
    wait_runs(&world, "byhand", 2, Duration::from_secs(30)).await;

    let missing = trigger(&world, "nosuch");
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("no ScheduledSequence nosuch in namespace default"),
        "{missing:?}"
    );
    stop(controller);
}

/// A Forbid schedule whose batch file (a ConfigMap) does not exist yet: its first run is refused
/// (SourceError) and counts as active, so the next occurrence is skipped rather than making a
/// second run; when the ConfigMap appears, the one run starts, and only it.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_refused_until_its_source_exists_holds_a_forbid_schedule_and_starts_alone() {
    let world = World::start().await;
    install_schedules(&world).await;
    let controller = world.controller();
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "ScheduledSequence",
        "metadata": {"name": "sourced"},
        "spec": {"schedule": "* * * * *", "suspend": true, "concurrencyPolicy": "Forbid",
                 "template": {"spec": {"source": {"configMap": {"name": "later", "key": "nightly.yml"}},
                                       "pollIntervalSeconds": 1}}}});
    schedules(&world)
        .create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .expect("create the ScheduledSequence");
    resume_from(&world, "sourced", minutes_ago(5)).await;
    let first = wait_runs(&world, "sourced", 1, Duration::from_secs(30)).await[0].name_any();
    let refused = world
        .wait_condition(&first, "Failed", Duration::from_secs(30))
        .await;
    let reason = refused
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Failed"))
        .map(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("SourceError"));

    // The next occurrence comes and goes: skipped, no second run.
    let counts = {
        let start = Instant::now();
        loop {
            let counts = world.event_counts().await;
            if counts.contains_key("RunSkipped") {
                break counts;
            }
            let names: Vec<String> = runs(&world, "sourced")
                .await
                .iter()
                .map(|r| r.name_any())
                .collect();
            assert_eq!(
                names,
                vec![first.clone()],
                "a second run while the first is refused"
            );
            assert!(
                start.elapsed() < Duration::from_secs(100),
                "no occurrence skipped: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert!(counts["RunSkipped"] >= 1);

    // The batch file appears: the one run starts and completes; nothing else is launched.
    let batch = "- one:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}\n";
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(world.client.clone(), "default");
    let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"},
                     "data": {"nightly.yml": batch}});
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(map).unwrap(),
    )
    .await
    .unwrap();
    let done = world
        .wait_condition(&first, "Complete", Duration::from_secs(90))
        .await;
    let uid = done.uid().expect("a uid");
    let run_of = |call: &Value| {
        call["request"]["tags"]
            .as_array()
            .and_then(|tags| tags.iter().find(|t| t["key"] == "sequencer.dev/run"))
            .and_then(|t| t["value"].as_str().map(String::from))
    };
    let launches: Vec<Option<String>> = world.emu.calls_of("RunTask").iter().map(run_of).collect();
    assert_eq!(
        launches
            .iter()
            .filter(|r| r.as_deref() == Some(uid.as_str()))
            .count(),
        1,
        "the refused run launched its one step once: {launches:?}"
    );
    assert_eq!(
        launches.first().cloned().flatten().as_deref(),
        Some(uid.as_str()),
        "no other run launched before it: {launches:?}"
    );
    stop(controller);
}

/// With no history kept, a schedule's finished run is deleted at once; a reconcile from a cached
/// copy older than the controller's own status write (the ScheduledSequences' watch lags, the
/// runs' does not) would then see neither the run nor the recorded occurrence and start it again.
/// The controller reads such a copy fresh: one run for the occurrence. A yearly schedule, so no
/// later occurrence comes during the test.
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_cache_never_starts_an_occurrence_twice() {
    let world = World::start().await;
    install_schedules(&world).await;
    let proxy = support::lagging_proxy::LaggingProxy::start_for(
        world.client.clone(),
        Duration::from_secs(20),
        Some("scheduledsequences"),
    )
    .await;
    let (controller, _log) = world.controller_as(&proxy.kubeconfig, &[]);
    create(
        &world,
        "yearly",
        "0 0 1 1 *",
        json!({"successfulRunsHistoryLimit": 0, "failedRunsHistoryLimit": 0}),
        json!([step("extract", "quick")]),
    )
    .await;
    let year_ago = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * 366))
        .unwrap();
    resume_from(&world, "yearly", year_ago).await;
    world
        .emu
        .wait_for(Duration::from_secs(60), "the occurrence's RunTask", |e| {
            (!e.calls_of("RunTask").is_empty()).then_some(())
        });
    // The run succeeds and is deleted (no history) while the schedule's watch is 20 s behind.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let launches = world.emu.calls_of("RunTask").len();
        assert_eq!(launches, 1, "the occurrence was started again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        runs(&world, "yearly").await.is_empty(),
        "the finished run was deleted (history 0)"
    );
    stop(controller);
}
