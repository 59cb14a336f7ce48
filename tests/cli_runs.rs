//! The `sequencer` CLI against the emulator over the real AWS wire protocols.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::batch_step as step;
use support::*;

const FAST: &[(&str, &str)] = &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "0")];

/// RunTask calls by startedBy, in order of first appearance.
fn run_task_calls(emu: &Emulator) -> Vec<(String, String)> {
    emu.calls_of("RunTask")
        .iter()
        .map(|c| {
            (
                c["startedBy"].as_str().unwrap_or("").to_owned(),
                c["clientToken"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn step_number(started_by: &str) -> u32 {
    // label-run8-STEP-ATTEMPT
    started_by
        .rsplit('-')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_steps_run_in_order_and_succeed() {
    let emu = Emulator::start();
    emu.cluster("etl").await;
    for f in ["a", "b", "c"] {
        emu.task_definition(f, &["app"], FAST).await;
    }
    let b = batch(
        &[
            step("extract", "a:1", ""),
            step("transform", "b:1", ""),
            step("load", "c:1", ""),
        ]
        .concat(),
    );
    let run = run(emu.run_batch(&b.path).args(["--output", "json"]));
    assert_eq!(run.code, 0, "{run:?}");
    let calls = run_task_calls(&emu);
    assert_eq!(
        calls
            .iter()
            .map(|(s, _)| step_number(s))
            .collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{calls:?}"
    );
    // Each step started only after the previous one's task was seen STOPPED.
    let events = events(&run);
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "stepStarted" | "stepSucceeded" => {
                Some(format!("{}:{}", e["event"].as_str()?, e["step"]))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "stepStarted:1",
            "stepSucceeded:1",
            "stepStarted:2",
            "stepSucceeded:2",
            "stepStarted:3",
            "stepSucceeded:3"
        ]
    );
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary");
    assert_eq!(summary["status"]["phase"], "Succeeded");
    let task = &summary["status"]["steps"][0]["attempts"][0]["tasks"][0];
    assert_eq!(task["containers"][0]["exitCode"], 0);
    assert_eq!(task["stopCode"], "EssentialContainerExited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_ends_the_run_and_the_next_is_never_launched() {
    let emu = Emulator::with_jobs(&[
        ("ok", FAST),
        (
            "bad",
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "3")],
        ),
    ])
    .await;
    let b = batch(
        &[
            step("one", "ok:1", ""),
            step("two", "bad:1", ""),
            step("three", "ok:1", ""),
        ]
        .concat(),
    );
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run_task_calls(&emu).len(),
        2,
        "step three must never be launched"
    );
    assert!(
        run.stdout
            .contains("[2/3 two] FAILED [EssentialContainerExited]"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("container app exited with 3"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("Not run"),
        "the summary shows step three not run: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ignore_failure_goes_on_and_active_false_skips() {
    let emu = Emulator::with_jobs(&[
        ("ok", FAST),
        (
            "bad",
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "none")],
        ),
    ])
    .await;
    let b = batch(
        &[
            step("one", "bad:1", "    ignore_failure: true\n"),
            step("two", "ok:1", "    active: false\n"),
            step("three", "ok:1", ""),
        ]
        .concat(),
    );
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run_task_calls(&emu)
            .iter()
            .map(|(s, _)| step_number(s))
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(
        run.stdout.contains("has no exit code"),
        "a missing exit code is a failure: {run:?}"
    );
    assert!(
        run.stdout.contains("Failed (ignored)") && run.stdout.contains("Skipped"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_exit_code_fails_the_step() {
    let emu = Emulator::with_jobs(&[(
        "x",
        &[
            ("SEQ_EMU_SECONDS", "0"),
            ("SEQ_EMU_EXIT_CODE", "none"),
            ("SEQ_EMU_STOP_CODE", "EssentialContainerExited"),
        ],
    )])
    .await;
    let b = batch(&step("one", "x:1", ""));
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("container app has no exit code"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn count_three_tracks_and_judges_every_task() {
    // frozen: the test finishes each task itself
    let emu = Emulator::with_jobs(&[("x", &[])]).await;
    let b = batch(&step("fanout", "x:1", "").replace(
        "launch_type: FARGATE\n",
        "launch_type: FARGATE\n      count: 3\n",
    ));
    let mut child = emu
        .run_batch(&b.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let arns = loop {
        let arns = emu.task_arns("etl").await;
        if arns.len() == 3 {
            break arns;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    emu.finish_task(&arns[0], Some(0), "EssentialContainerExited", "done");
    emu.finish_task(&arns[1], Some(0), "EssentialContainerExited", "done");
    // Two of three done: the step must still be waiting.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the step ended before its third task stopped"
    );
    emu.finish_task(&arns[2], Some(5), "EssentialContainerExited", "done");
    let run = finish(child.wait_with_output().unwrap());
    assert_eq!(run.code, 1, "{run:?}");
    let third = arns[2].rsplit('/').next().unwrap();
    assert!(
        run.stdout
            .contains(&format!("task {third}: container app exited with 5")),
        "{run:?}"
    );
    assert_eq!(run_task_calls(&emu).len(), 1, "one RunTask with count 3");
}

#[tokio::test(flavor = "multi_thread")]
async fn runtask_failures_are_a_launch_failure_with_the_ecs_reason() {
    let emu = Emulator::with_jobs(&[("x", FAST)]).await;
    emu.inject("RunTask", "failures", 1, Some("RESOURCE:MEMORY"));
    let b = batch(&[step("one", "x:1", ""), step("two", "x:1", "")].concat());
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "FAILED [RESOURCE:MEMORY]: RunTask could not start 1 task(s): RESOURCE:MEMORY"
        ),
        "{run:?}"
    );
    assert_eq!(run_task_calls(&emu).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_failure_is_retried_when_asked_and_then_succeeds() {
    let emu = Emulator::with_jobs(&[("x", FAST)]).await;
    emu.inject(
        "RunTask",
        "failures",
        1,
        Some("Capacity is unavailable at this time"),
    );
    let retry =
        "    retry: {limit: 2, when: [launch], backoff: {initial_seconds: 1, max_seconds: 2}}\n";
    let b = batch(&step("one", "x:1", retry));
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 0, "{run:?}");
    let calls = run_task_calls(&emu);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_ne!(
        calls[0].1, calls[1].1,
        "a new attempt has a new clientToken"
    );
    assert!(run.stdout.contains("will retry as attempt 2"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infrastructure_failure_is_retried_then_succeeds() {
    let emu = Emulator::with_jobs(&[("x", &[])]).await;
    let retry = "    retry: {limit: 1, when: [infrastructure], backoff: {initial_seconds: 1, max_seconds: 1}}\n";
    let b = batch(&step("one", "x:1", retry));
    let child = emu
        .run_batch(&b.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = loop {
        if let Some(a) = emu.task_arns("etl").await.first().cloned() {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    emu.finish_task(
        &first,
        None,
        "TaskFailedToStart",
        "CannotPullContainerError: pull access denied",
    );
    let second = loop {
        if let Some(a) = emu.task_arns("etl").await.into_iter().find(|a| *a != first) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    emu.finish_task(&second, Some(0), "EssentialContainerExited", "done");
    let run = finish(child.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("attempt 1 failed [TaskFailedToStart]")
            && run.stdout.contains("CannotPullContainerError"),
        "{run:?}"
    );
    assert_eq!(run_task_calls(&emu).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_stops_the_task_and_fails_the_step() {
    let emu = Emulator::with_jobs(&[("slow", &[("SEQ_EMU_SECONDS", "600")])]).await;
    let b = batch(&step("one", "slow:1", "    timeout_seconds: 2\n"));
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    let stops = emu.calls_of("StopTask");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(run.stdout.contains("[DeadlineExceeded]"), "{run:?}");
    let ecs = emu.ecs().await;
    let arn = emu.task_arns("etl").await.remove(0);
    let task = ecs
        .describe_tasks()
        .cluster("etl")
        .tasks(arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(
        task.stopped_reason(),
        Some("sequencer: step timeout exceeded")
    );
    assert_eq!(task.last_status(), Some("STOPPED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_server_errors_are_survived_without_a_duplicate_task() {
    let emu = Emulator::with_jobs(&[("x", &[("SEQ_EMU_SECONDS", "2")])]).await;
    emu.inject("RunTask", "throttle", 4, None);
    emu.inject("RunTask", "server-error", 2, None);
    emu.inject("DescribeTasks", "throttle", 6, None);
    emu.inject("ListTasks", "server-error", 1, None);
    let b = batch(&[step("one", "x:1", ""), step("two", "x:1", "")].concat());
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("RunTask did not get through (ThrottlingException"),
        "the storm was reported: {run:?}"
    );
    let tasks = emu.task_arns("etl").await;
    assert_eq!(tasks.len(), 2, "exactly one task per step: {tasks:?}");
    let tokens: BTreeMap<String, usize> =
        run_task_calls(&emu)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (_, t)| {
                *m.entry(t).or_default() += 1;
                m
            });
    assert_eq!(
        tokens.len(),
        2,
        "every retry of a launch reused its clientToken: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_running_task_and_exits_130() {
    let emu = Emulator::with_jobs(&[("slow", &[("SEQ_EMU_SECONDS", "600")])]).await;
    let b = batch(&[step("one", "slow:1", ""), step("two", "slow:1", "")].concat());
    let child = emu
        .run_batch(&b.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    emu.wait_for(Duration::from_secs(30), "the first RunTask", |e| {
        (!e.calls_of("RunTask").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let run = finish(child.wait_with_output().unwrap());
    assert_eq!(run.code, 130, "{run:?}");
    let stops = emu.calls_of("StopTask");
    assert_eq!(stops.len(), 1, "{stops:?}");
    let arn = emu.task_arns("etl").await.remove(0);
    let task = emu
        .ecs()
        .await
        .describe_tasks()
        .cluster("etl")
        .tasks(arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(task.stopped_reason(), Some("sequencer: run cancelled"));
    assert_eq!(run_task_calls(&emu).len(), 1, "step two never started");
    assert!(run.stdout.contains("CANCELLED"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_readme_example_and_fixture_run_verbatim() {
    let emu = Emulator::start();
    emu.cluster("yourcluster").await;
    emu.cluster("yourcluster2").await;
    emu.task_definition("test-task-def", &["app"], FAST).await;
    emu.task_definition("test-task-def", &["app"], FAST).await; // revision 2
    for fixture in [
        "tests/fixtures/seed/readme-example.yml",
        "tests/fixtures/seed/valid.yml",
    ] {
        let run = run(emu.sequencer().args([fixture, "--poll-interval", "1"]));
        assert_eq!(run.code, 0, "{fixture}: {run:?}");
        assert!(
            run.stdout.contains("[1/2 ")
                && run.stdout.contains("[2/2 ")
                && run.stdout.contains("SUCCEEDED"),
            "{run:?}"
        );
    }
    let clusters: Vec<String> = emu
        .calls_of("RunTask")
        .iter()
        .map(|c| c["cluster"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        clusters,
        ["yourcluster", "yourcluster2", "yourcluster", "yourcluster2"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_from_s3_runs_and_reports_the_version_read() {
    let emu = Emulator::with_jobs(&[("x", FAST)]).await;
    let s3 = emu.s3().await;
    s3.create_bucket().bucket("batches").send().await.unwrap();
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.put_bucket_versioning()
        .bucket("batches")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let good = s3
        .put_object()
        .bucket("batches")
        .key("nightly.yml")
        .body(step("one", "x:1", "").into_bytes().into())
        .send()
        .await
        .unwrap();
    let v1 = good.version_id().unwrap().to_owned();
    s3.put_object()
        .bucket("batches")
        .key("nightly.yml")
        .body(b"- broken: {type: shell}\n".to_vec().into())
        .send()
        .await
        .unwrap();

    // The latest version is broken: nothing runs, exit 2, the place is named.
    let latest = run(emu
        .sequencer()
        .env("SEQUENCER_YAML_S3_PATH", "s3://batches/nightly.yml")
        .args(["--poll-interval", "1"]));
    assert_eq!(latest.code, 2, "{latest:?}");
    assert!(latest.stderr.contains("s3://batches/nightly.yml:1:11: step 1 (broken): this mapping needs the key `parameters`"), "{latest:?}");
    // The pinned good version runs, and the run says which version it read.
    let pinned = run(emu.sequencer().args([
        &format!("s3://batches/nightly.yml?versionId={v1}"),
        "--poll-interval",
        "1",
    ]));
    assert_eq!(pinned.code, 0, "{pinned:?}");
    assert!(
        pinned.stdout.contains(&format!("S3 version {v1}")),
        "{pinned:?}"
    );
    // A missing object is an AWS error, exit 3.
    let missing = run(emu.sequencer().args(["s3://batches/nope.yml"]));
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(missing.stderr.contains("NoSuchKey"), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_exact_requests_and_calls_nothing() {
    let emu = Emulator::start();
    let b = batch(&step("one", "x:1", "").replace("launch_type: FARGATE\n", "launch_type: FARGATE\n      overrides: {container_overrides: [{name: app, command: [echo, hi]}]}\n"));
    let run = run(emu
        .sequencer()
        .args(["run", "--dry-run", path_str(&b.path)]));
    assert_eq!(run.code, 0, "{run:?}");
    let requests: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let request = &requests[0]["runTask"];
    assert_eq!(request["taskDefinition"], "x:1");
    assert_eq!(request["launchType"], "FARGATE");
    assert_eq!(
        request["overrides"]["containerOverrides"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(request["clientToken"].as_str().map(str::len), Some(64));
    assert!(request["startedBy"].as_str().unwrap().starts_with("seq-"));
    assert_eq!(request["tags"].as_array().map(Vec::len), Some(3));
    assert!(emu.calls().is_empty(), "a dry run calls no AWS API");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_runtask_field_reaches_the_wire_exactly_as_dry_run_shows_it() {
    let emu = Emulator::start();
    // Answer the RunTask with failures[] so the emulator need not support every field.
    emu.inject("RunTask", "failures", 1, Some("RESOURCE:CPU"));
    let file = "tests/fixtures/every-runtask-field.yml";
    let dry = run(emu.sequencer().args(["run", "--dry-run", file]));
    assert_eq!(dry.code, 0, "{dry:?}");
    let printed: Value = serde_json::from_str(&dry.stdout).unwrap();
    let mut expected = printed[0]["runTask"].clone();
    let real = run(emu.sequencer().args(["run", file, "--poll-interval", "1"]));
    assert_eq!(real.code, 1, "{real:?}");
    let calls = emu.calls_of("RunTask");
    let mut sent = calls[0]["request"].clone();
    // Token, startedBy and sequencer's tag values depend on the run id; compare their shape.
    for v in [&mut expected, &mut sent] {
        let obj = v.as_object_mut().unwrap();
        assert_eq!(
            obj.remove("clientToken")
                .and_then(|t| t.as_str().map(str::len)),
            Some(64)
        );
        let started_by = obj.remove("startedBy").unwrap();
        assert!(
            started_by.as_str().unwrap().starts_with("nightly-etl-"),
            "{started_by}"
        );
        let tags = obj.remove("tags").unwrap();
        let keys: Vec<&str> = tags
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "team",
                "sequencer.dev/run",
                "sequencer.dev/step",
                "sequencer.dev/attempt"
            ]
        );
    }
    assert_eq!(
        sent, expected,
        "the SDK sent something other than what --dry-run shows"
    );
    // And the snake_case input came out as the API's names.
    assert_eq!(sent["overrides"]["ephemeralStorage"]["sizeInGiB"], 50);
    assert_eq!(
        sent["volumeConfigurations"][0]["managedEBSVolume"]["sizeInGiB"],
        100
    );
    assert_eq!(sent["enableECSManagedTags"], true);
    assert_eq!(sent["overrides"]["memory"], "4096");
}
