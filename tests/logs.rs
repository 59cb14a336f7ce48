//! A failed step's last log lines, and a failure said in words, wherever the user looks: the
//! CLI's lines, summary and JSON, `sequencer logs`, and the controller's status, condition and
//! Events. Through the real binary against the emulator; the emulator's ECS writes no log lines,
//! so each test writes them itself, into the stream the task definition's awslogs options name.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::{Value, json};
use support::world::{World, http_address, http_get, metric, step, stop};
use support::*;

const GROUP: &str = LOG_GROUP;
const PREFIX: &str = LOG_PREFIX;

/// Writes (appends) `lines` into the stream the awslogs driver would use for `container` of `task_arn`.
async fn write_logs(emu: &Emulator, container: &str, task_arn: &str, lines: &[String]) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&emu.sdk_config().await);
    let _ = logs.create_log_group().log_group_name(GROUP).send().await;
    let id = task_arn.rsplit('/').next().unwrap_or_default();
    let stream = format!("{PREFIX}/{container}/{id}");
    // The stream may exist already (lines written later, as a running container does).
    let _ = logs
        .create_log_stream()
        .log_group_name(GROUP)
        .log_stream_name(&stream)
        .send()
        .await;
    let start = jiff::Timestamp::now().as_millisecond();
    let events = lines.iter().enumerate().map(|(i, l)| {
        InputLogEvent::builder()
            .timestamp(start + i as i64)
            .message(l)
            .build()
            .expect("event")
    });
    logs.put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(&stream)
        .set_log_events(Some(events.collect()))
        .send()
        .await
        .expect("put log events");
}

/// "line 00" .. "line 27", then a Python error and a last line.
fn python_failure() -> Vec<String> {
    let mut lines: Vec<String> = (0..28).map(|i| format!("line {i:02}")).collect();
    lines.push("Traceback (most recent call last):".into());
    lines.push("ValueError: bad row 17".into());
    lines.push("exiting".into());
    lines
}

/// Stops a task as ECS would, with exit codes by container.
fn finish(
    emu: &Emulator,
    arn: &str,
    codes: Value,
    stop_code: &str,
    reason: &str,
    why: Option<&str>,
) {
    emu.http(
        "POST",
        "/_ext/ecs/finish-task",
        &json!({"task": arn, "exitCodes": codes, "stopCode": stop_code, "reason": reason, "containerReason": why}),
    );
}

/// Starts `sequencer run` in the background; returns it once its first task exists.
async fn start_run(emu: &Emulator, batch: &TempBatch, extra: &[&str]) -> (Child, String) {
    let before = emu.task_arns("etl").await;
    let child = emu
        .sequencer()
        .arg("run")
        .arg(&batch.path)
        .args(["--poll-interval", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sequencer");
    (child, new_task(emu, &before).await)
}

/// The first task on `etl` not in `before`, once it exists.
async fn new_task(emu: &Emulator, before: &[String]) -> String {
    for _ in 0..600 {
        if let Some(arn) = emu
            .task_arns("etl")
            .await
            .into_iter()
            .find(|a| !before.contains(a))
        {
            return arn;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new task started");
}

/// The process's output once it exits; killed (and the test failed) if it runs past `limit`.
fn ended_within(mut child: Child, limit: Duration) -> Run {
    let start = std::time::Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: {:?}", ended(child));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ended(child)
}

fn ended(child: Child) -> Run {
    support::finish(child.wait_with_output().expect("wait"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_shows_its_last_lines_and_says_why_other_containers_have_none() {
    let emu = Emulator::start();
    emu.cluster("etl").await;
    let containers = [
        ("app", "awslogs"),
        ("quiet", "awslogs"),
        ("noprefix", "noprefix"),
        ("splunk", "splunk"),
        ("bare", "none"),
    ];
    emu.register("extract", &containers, &[]).await;
    emu.task_definition("load", &["app"], &[]).await;
    let file = batch(&format!(
        "{}{}",
        batch_step("extract", "extract", ""),
        batch_step("load", "load", "")
    ));
    let state = file.dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8");
    let (child, arn) = start_run(&emu, &file, &["--state", state_arg]).await;
    let id = arn.rsplit('/').next().unwrap_or_default().to_owned();
    write_logs(&emu, "app", &arn, &python_failure()).await;
    let all_fail = json!({"app": 1, "quiet": 1, "noprefix": 1, "splunk": 1, "bare": 1});
    finish(
        &emu,
        &arn,
        all_fail,
        "EssentialContainerExited",
        "Essential container in task exited",
        None,
    );
    let run = ended(child);
    assert_eq!(run.code, 1, "{run:?}");
    let out = &run.stdout;
    // The last 20 lines, in order, under the failure; nothing older.
    let heading = format!("last 20 log line(s) of container app (task {id}):");
    let at = out
        .find(&heading)
        .unwrap_or_else(|| panic!("no {heading:?} in {run:?}"));
    let block: Vec<&str> = out[at..].lines().skip(1).take(20).map(str::trim).collect();
    assert_eq!(block.first(), Some(&"| line 11"), "{run:?}");
    assert_eq!(block.last(), Some(&"| exiting"), "{run:?}");
    assert!(block.contains(&"| ValueError: bad row 17"), "{run:?}");
    assert!(!out.contains("| line 10"), "{run:?}");
    // Every container without lines, explained in one line.
    for (container, why) in [
        (
            "quiet",
            format!(
                "no log stream {PREFIX}/quiet/{id} in {GROUP}: the container never started, or wrote nothing"
            ),
        ),
        (
            "noprefix",
            format!(
                "awslogs without awslogs-stream-prefix names the stream in {GROUP} after the Docker container id"
            ),
        ),
        ("splunk", "the container logs with the splunk driver".into()),
        (
            "bare",
            "the task definition gives the container no logConfiguration".into(),
        ),
    ] {
        let line = format!("no logs of container {container} (task {id}): {why}");
        assert!(out.contains(&line), "missing {line:?} in {run:?}");
    }
    // The summary's verdict quotes the telling line; the next step never ran.
    let verdict = out
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_default();
    assert!(
        verdict.ends_with("; log: ValueError: bad row 17"),
        "{verdict}"
    );
    assert_eq!(emu.calls_of("RunTask").len(), 1);
    assert_eq!(
        emu.calls_of("GetLogEvents").len(),
        2,
        "only the streams that can exist are read"
    );

    // `sequencer logs` reads the same lines again, for any step, as many as asked.
    let again = run_cmd(emu.sequencer().args(["logs", state_arg]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.starts_with("step 1 (extract), attempt 1:\n"),
        "{again:?}"
    );
    assert!(
        again.stdout.contains("  | ValueError: bad row 17"),
        "{again:?}"
    );
    let three = run_cmd(
        emu.sequencer()
            .args(["logs", state_arg, "extract", "--tail", "3", "-c", "app"]),
    );
    assert_eq!(
        three
            .stdout
            .lines()
            .filter(|l| l.starts_with("  | "))
            .collect::<Vec<_>>(),
        vec![
            "  | Traceback (most recent call last):",
            "  | ValueError: bad row 17",
            "  | exiting"
        ],
        "{three:?}"
    );
    let none = run_cmd(emu.sequencer().args(["logs", state_arg, "load"]));
    assert_eq!(none.code, 2, "{none:?}");
    assert!(
        none.stderr.contains("step 2 (load) has no attempt"),
        "{none:?}"
    );
    let unknown = run_cmd(emu.sequencer().args(["logs", state_arg, "transform"]));
    assert!(
        unknown
            .stderr
            .contains("the run has no step \"transform\"; its steps: 1 extract, 2 load"),
        "{unknown:?}"
    );
}

fn run_cmd(cmd: &mut std::process::Command) -> Run {
    support::run(cmd)
}

/// One failing run per case: how the task ends, and what the user must read.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_failure_is_said_in_words_with_the_lines_in_json() {
    let emu = Emulator::start();
    emu.cluster("etl").await;
    emu.register("job", &[("app", "awslogs")], &[]).await;
    let file = batch(&batch_step("job", "job", ""));
    struct Case {
        stop_code: &'static str,
        reason: &'static str,
        exit: Value,
        container_reason: Option<&'static str>,
        lines: &'static [&'static str],
        failure_reason: &'static str,
        says: &'static str,
    }
    let cases = [
        Case {
            stop_code: "TaskFailedToStart",
            reason: "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref example/etl:latest: not found",
            exit: Value::Null,
            container_reason: None,
            lines: &[],
            failure_reason: "TaskFailedToStart",
            says: "the task failed to start (TaskFailedToStart: CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref example/etl:latest: not found); the image could not be pulled: check the image name and tag",
        },
        Case {
            stop_code: "EssentialContainerExited",
            reason: "Essential container in task exited",
            exit: json!(137),
            container_reason: Some("OutOfMemoryError: Container killed due to memory usage"),
            lines: &["loaded 9000000 rows", "Killed"],
            failure_reason: "OutOfMemory",
            says: "container app exited with 137 (OutOfMemoryError: Container killed due to memory usage): it ran out of memory and was killed (OutOfMemoryError): give the container or the task more memory",
        },
        Case {
            stop_code: "SpotInterruption",
            reason: "Your Spot Task was interrupted.",
            exit: json!(143),
            container_reason: None,
            lines: &["halfway"],
            failure_reason: "SpotInterruption",
            says: "AWS reclaimed the Spot capacity the task ran on (a Spot interruption); `retry: {when: [infrastructure]}` runs the step again (SpotInterruption: Your Spot Task was interrupted.)",
        },
    ];
    for case in cases {
        let (child, arn) = start_run(&emu, &file, &["--output", "json"]).await;
        if !case.lines.is_empty() {
            let lines: Vec<String> = case.lines.iter().map(|l| (*l).to_owned()).collect();
            write_logs(&emu, "app", &arn, &lines).await;
        }
        let exit = if case.exit.is_null() {
            json!({})
        } else {
            json!({"app": case.exit})
        };
        finish(
            &emu,
            &arn,
            exit,
            case.stop_code,
            case.reason,
            case.container_reason,
        );
        let run = ended(child);
        assert_eq!(run.code, 1, "{run:?}");
        let events = events(&run);
        let failed = events
            .iter()
            .find(|e| e["event"] == "stepFailed")
            .unwrap_or_else(|| panic!("no stepFailed in {run:?}"));
        assert_eq!(failed["failure"]["reason"], case.failure_reason, "{failed}");
        let message = failed["failure"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(case.says),
            "{message}\nshould say\n{}",
            case.says
        );
        let tail = &failed["logTail"]["tails"][0];
        if case.lines.is_empty() {
            assert_eq!(tail["unavailable"], "NoStream", "{failed}");
        } else {
            assert_eq!(tail["lines"], json!(case.lines), "{failed}");
            assert_eq!(
                tail["logStream"],
                format!(
                    "{PREFIX}/app/{}",
                    arn.rsplit('/').next().unwrap_or_default()
                )
            );
        }
    }
    // A launch refusal: words and a hint, and no log read (no task ran).
    let reads = emu.calls_of("GetLogEvents").len();
    emu.inject("RunTask", "failures", 1, Some("RESOURCE:MEMORY"));
    let run = run_cmd(&mut emu.run_batch(&file.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("RunTask could not start 1 task(s): RESOURCE:MEMORY. no container instance in the cluster has enough of that resource free"),
        "{run:?}"
    );
    assert_eq!(emu.calls_of("GetLogEvents").len(), reads);
}

/// Reads the controller's log (JSON lines) until it is written, for a failing assertion's message.
fn tail_of(path: &std::path::Path) -> String {
    let file = std::fs::File::open(path).expect("controller log");
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_puts_the_lines_in_status_events_and_condition_and_reports_a_denied_read_once()
 {
    let world = World::start().await;
    let emu = &world.emu;
    emu.register("extract", &[("app", "awslogs")], &[]).await;
    let (controller, log) = world.controller_with(&[]);
    world
        .create("nightly", json!([step("extract", "extract")]))
        .await;
    let arn = new_task(emu, &[]).await;
    write_logs(emu, "app", &arn, &python_failure()).await;
    finish(
        emu,
        &arn,
        json!({"app": 1}),
        "EssentialContainerExited",
        "Essential container in task exited",
        None,
    );
    let seq = world
        .wait_condition("nightly", "Failed", Duration::from_secs(60))
        .await;
    let status = seq.status.clone().unwrap_or_default();
    let run = status.run.as_ref().expect("run").to_value();
    let tail = &run["steps"][0]["attempts"][0]["logTail"]["tails"][0];
    assert_eq!(
        tail["lines"].as_array().map(Vec::len),
        Some(20),
        "{tail}\n{}",
        tail_of(&log)
    );
    assert_eq!(tail["lines"][18], "ValueError: bad row 17");
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed");
    assert!(
        failed.message.ends_with("; log: ValueError: bad row 17"),
        "{}",
        failed.message
    );
    let notes = world.wait_event_notes("StepFailed", 1).await;
    assert!(notes[0].len() <= 1024);
    assert!(
        notes[0].contains("\n  | ValueError: bad row 17\n  | exiting"),
        "{}",
        notes[0]
    );
    assert!(
        notes[0].starts_with("step 1 (extract): FAILED [EssentialContainerExited]: task "),
        "{}",
        notes[0]
    );

    // `sequencer logs` reads a Sequence's step too.
    let printed = run_cmd(
        emu.sequencer()
            .args(["logs", "nightly", "1", "--tail", "2"])
            .env("KUBECONFIG", &world.server.kubeconfig),
    );
    assert_eq!(printed.code, 0, "{printed:?}");
    assert!(
        printed
            .stdout
            .ends_with("  | ValueError: bad row 17\n  | exiting\n"),
        "{printed:?}"
    );

    // Reading logs is denied: each step's record says so, one Warning for the whole controller.
    emu.http(
        "POST",
        "/_ext/inject",
        &json!({"operation": "GetLogEvents", "kind": "error", "code": "AccessDeniedException", "count": 10, "reason": "not authorized to perform logs:GetLogEvents"}),
    );
    for name in ["denied-a", "denied-b"] {
        let before = emu.task_arns("etl").await;
        world
            .create(name, json!([step("extract", "extract")]))
            .await;
        let arn = new_task(emu, &before).await;
        finish(
            emu,
            &arn,
            json!({"app": 2}),
            "EssentialContainerExited",
            "Essential container in task exited",
            None,
        );
        let seq = world
            .wait_condition(name, "Failed", Duration::from_secs(60))
            .await;
        let run = seq.status.and_then(|s| s.run).expect("run").to_value();
        let tail = &run["steps"][0]["attempts"][0]["logTail"]["tails"][0];
        assert_eq!(tail["unavailable"], "AccessDenied", "{tail}");
        assert_eq!(
            tail["note"],
            format!("not allowed to read {GROUP} (logs:GetLogEvents is denied)")
        );
    }
    world.wait_events(&["LogsAccessDenied"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = world.event_counts().await;
    assert_eq!(counts.get("LogsAccessDenied"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("StepFailed"), Some(&3), "{counts:?}");
    let metrics = http_get(&http_address(&log), "/metrics").1;
    let reads = |outcome: &str| {
        let sample = format!("sequencer_log_reads_total{{outcome=\"{outcome}\"}}");
        metric(&metrics, &sample)
    };
    assert_eq!(
        (reads("lines"), reads("access_denied")),
        (1.0, 2.0),
        "{metrics}"
    );
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_prints_a_running_steps_new_lines_until_its_task_stops() {
    let emu = Emulator::start();
    emu.cluster("etl").await;
    emu.register("job", &[("app", "awslogs")], &[]).await;
    let file = batch(&batch_step("job", "job", ""));
    let state = file.dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8").to_owned();
    let (run, arn) = start_run(&emu, &file, &["--state", &state_arg]).await;
    // The state file records the task once RunTask has answered.
    for _ in 0..100 {
        if std::fs::read_to_string(&state).is_ok_and(|t| t.contains(&arn)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write_logs(&emu, "app", &arn, &["first 1".into(), "first 2".into()]).await;
    let follower = emu
        .sequencer()
        .args(["logs", &state_arg, "--follow", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logs --follow");
    tokio::time::sleep(Duration::from_secs(3)).await;
    write_logs(&emu, "app", &arn, &["second 1".into(), "second 2".into()]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    write_logs(&emu, "app", &arn, &["last words".into()]).await;
    finish(
        &emu,
        &arn,
        json!({"app": 0}),
        "EssentialContainerExited",
        "Essential container in task exited",
        None,
    );
    let followed = ended_within(follower, Duration::from_secs(60));
    assert_eq!(followed.code, 0, "{followed:?}");
    assert_eq!(
        followed.stdout.lines().collect::<Vec<_>>(),
        vec![
            "step 1 (job), attempt 1:",
            "first 2",
            "second 1",
            "second 2",
            "last words"
        ],
        "the last line asked for, then every new line once, until the task stopped: {followed:?}"
    );
    let run = ended(run);
    assert_eq!(run.code, 0, "{run:?}");
}

/// The worst moment for the log read: the run is killed after it recorded that it reads the
/// failed container's lines, before the answer. The resumed run reads them again, gives the
/// verdict with them, and launches nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_during_its_log_read_reads_again_when_resumed() {
    let emu = Emulator::start();
    emu.cluster("etl").await;
    emu.register("job", &[("app", "awslogs")], &[]).await;
    let file = batch(&format!(
        "{}{}",
        batch_step("job", "job", ""),
        batch_step("next", "job", "")
    ));
    let state = file.dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8").to_owned();
    emu.http(
        "POST",
        "/_ext/inject",
        &json!({"operation": "GetLogEvents", "kind": "slow", "seconds": 30, "count": 1}),
    );
    let (mut child, arn) = start_run(&emu, &file, &["--state", &state_arg]).await;
    write_logs(&emu, "app", &arn, &python_failure()).await;
    finish(
        &emu,
        &arn,
        json!({"app": 1}),
        "EssentialContainerExited",
        "Essential container in task exited",
        None,
    );
    let pending = |text: &str| {
        serde_json::from_str::<Value>(text).ok().is_some_and(|v| {
            v["status"]["steps"][0]["attempts"][0]["logTail"]["done"] == json!(false)
        })
    };
    let mut recorded = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&state).is_ok_and(|t| pending(&t)) {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded, "the read was never recorded as pending");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    assert_eq!(
        stored["status"]["steps"][0]["phase"], "Running",
        "no verdict before the lines"
    );

    let resumed = run_cmd(emu.sequencer().args([
        "run",
        path_str(&file.path),
        "--state",
        &state_arg,
        "--poll-interval",
        "1",
    ]));
    assert_eq!(resumed.code, 1, "{resumed:?}");
    assert!(
        resumed.stdout.contains("  | ValueError: bad row 17"),
        "{resumed:?}"
    );
    assert!(
        resumed.stdout.contains("; log: ValueError: bad row 17"),
        "{resumed:?}"
    );
    assert_eq!(
        emu.calls_of("RunTask").len(),
        1,
        "the step was launched once, the next never"
    );
    assert_eq!(
        emu.calls_of("GetLogEvents").len(),
        2,
        "the lost read, then one more"
    );
}
