//! SIGKILL the CLI at many instants of a multi-step run that keeps its status in `--state`,
//! restart it each time, and check with the emulator that every step was launched exactly once.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_instants_then_resume_launches_every_step_exactly_once() {
    let emu = Emulator::with_jobs(&[(
        "job",
        &[("SEQ_EMU_SECONDS", "4"), ("SEQ_EMU_EXIT_CODE", "0")],
    )])
    .await;
    let steps = 6;
    let text: String = (1..=steps)
        .map(|i| format!("- step{i}:\n    type: ecs_task\n    parameters: {{cluster: etl, task_definition: 'job:1', launch_type: FARGATE}}\n"))
        .collect();
    let b = batch(&text);
    let state = b.dir.path().join("run.state.json");

    // A fixed pseudo-random sequence of kill delays (xorshift), from "at once" to 2 s.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_delay = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(seed % 2000)
    };
    let mut kills = 0;
    let started = Instant::now();
    let final_run = loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the run did not finish"
        );
        let mut child = emu
            .sequencer()
            .args([
                "run",
                path_str(&b.path),
                "--state",
                path_str(&state),
                "--poll-interval",
                "1",
                "--output",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let delay = next_delay();
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if kills < 30 && child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            let killed = finish(child.wait_with_output().expect("reap"));
            assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
            kills += 1;
            continue;
        }
        break finish(child.wait_with_output().expect("wait"));
    };
    assert_eq!(final_run.code, 0, "after {kills} kills: {final_run:?}");
    assert!(
        kills >= 20,
        "the run should have been killed many times, was {kills}"
    );

    // Exactly once: one task per step, and every RunTask of a startedBy carried the same token.
    let tasks = emu.task_arns("etl").await;
    assert_eq!(tasks.len(), steps, "tasks started: {tasks:?}");
    let mut tokens: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in emu.calls_of("RunTask") {
        tokens
            .entry(call["startedBy"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(call["clientToken"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(tokens.len(), steps, "one startedBy per step: {tokens:?}");
    for (started_by, calls) in &tokens {
        assert!(
            calls.iter().all(|t| t == &calls[0]),
            "{started_by} was launched with different tokens: {calls:?}"
        );
    }
    let described = emu
        .ecs()
        .await
        .describe_tasks()
        .cluster("etl")
        .set_tasks(Some(tasks))
        .send()
        .await
        .unwrap();
    let mut by_started_by: BTreeMap<String, usize> = BTreeMap::new();
    for t in described.tasks() {
        *by_started_by
            .entry(t.started_by().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    assert!(by_started_by.values().all(|n| *n == 1), "{by_started_by:?}");

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(state["status"]["phase"], "Succeeded");
    for s in state["status"]["steps"].as_array().unwrap() {
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s}");
    }
    let total_calls = emu.calls_of("RunTask").len();
    println!(
        "crash test: {kills} SIGKILLs, {steps} steps, {} tasks, {total_calls} RunTask calls",
        described.tasks().len()
    );
}

/// `sequencer run BATCH --state STATE` as a restarted runner: polling every second, JSON events.
fn resume(emu: &Emulator, batch: &std::path::Path, state: &std::path::Path) -> Run {
    run(emu.sequencer().args([
        "run",
        path_str(batch),
        "--state",
        path_str(state),
        "--poll-interval",
        "1",
        "--output",
        "json",
    ]))
}

/// The state a runner persists just before RunTask: step 1's attempt recorded as Launching.
fn state_before_runtask(
    batch_path: &std::path::Path,
    state_path: &std::path::Path,
) -> sequencer_core::action::Action {
    use sequencer_core::observation::Observation;
    let text = std::fs::read_to_string(batch_path).unwrap();
    let label = batch_path.display().to_string();
    let plan =
        sequencer_core::plan::Plan::new(sequencer::batch::file::parse(&label, &text).unwrap());
    let status = sequencer_core::status::RunStatus::new(
        "4b9d3c2e-1111-4222-8333-944455556666".into(),
        &plan,
    );
    let decision = sequencer_core::engine::advance(
        &plan,
        &status,
        &[Observation::Tick],
        jiff::Timestamp::now(),
    );
    let launch = decision.actions.into_iter().next().expect("a Launch");
    assert!(matches!(
        launch,
        sequencer_core::action::Action::Launch {
            step: 0,
            attempt: 1,
            ..
        }
    ));
    let state = sequencer::cli::state_file::StateFile::new(label, None, decision.status);
    sequencer::cli::state_file::save(state_path, &state).unwrap();
    launch
}

const TWO_STEPS: &str = "- one:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE}\n\
- two:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE}\n";

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_recording_the_launch_but_before_runtask_relaunches_with_the_same_token() {
    let emu = Emulator::with_jobs(&[("job", &[("SEQ_EMU_SECONDS", "1")])]).await;
    let b = batch(TWO_STEPS);
    let state = b.dir.path().join("state.json");
    let sequencer_core::action::Action::Launch { identity, .. } =
        state_before_runtask(&b.path, &state)
    else {
        unreachable!()
    };

    let run = resume(&emu, &b.path, &state);
    assert_eq!(run.code, 0, "{run:?}");
    let kinds: Vec<String> = events(&run)
        .iter()
        .filter_map(|e| e["event"].as_str().map(String::from))
        .collect();
    assert!(kinds.contains(&"launchReissued".to_owned()), "{kinds:?}");
    let calls = emu.calls_of("RunTask");
    assert_eq!(calls.len(), 2, "one RunTask per step: {calls:?}");
    assert_eq!(
        calls[0]["clientToken"],
        identity.client_token.as_str(),
        "the recorded token was used"
    );
    // The lookup came first.
    let ops: Vec<String> = emu
        .calls()
        .iter()
        .map(|c| c["operation"].as_str().unwrap_or("").to_owned())
        .collect();
    let first_run = ops.iter().position(|o| o == "RunTask").unwrap();
    assert!(ops[..first_run].iter().any(|o| o == "ListTasks"), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_runtask_but_before_recording_its_answer_finds_the_task_instead_of_launching_again()
 {
    let emu = Emulator::with_jobs(&[("job", &[("SEQ_EMU_SECONDS", "1")])]).await;
    let b = batch(TWO_STEPS);
    let state = b.dir.path().join("state.json");
    let launch = state_before_runtask(&b.path, &state);
    // RunTask happens over the wire; its answer is lost with the "crashed" runner.
    let ecs = sequencer::ecs::Ecs::from_config(&emu.sdk_config().await);
    ecs.run_task(&launch).await.expect("RunTask");

    let run = resume(&emu, &b.path, &state);
    assert_eq!(run.code, 0, "{run:?}");
    let found = events(&run)
        .into_iter()
        .find(|e| e["event"] == "tasksFound")
        .expect("the lost task was found");
    assert_eq!(found["step"], 1);
    assert_eq!(
        emu.calls_of("RunTask").len(),
        2,
        "step one was not launched again"
    );
    assert_eq!(emu.task_arns("etl").await.len(), 2);
}

/// The first RunTask of a launch was sent with other parameters than the re-issue sends (by an
/// older version, say) and its answer was lost; ListTasks does not list the task yet. The re-issue
/// with the same clientToken is answered ConflictException naming the first call's task: it is
/// adopted, and no new token is tried, although the step retries launch failures.
#[tokio::test(flavor = "multi_thread")]
async fn a_reissue_answered_conflict_adopts_the_task_its_token_started() {
    let emu = Emulator::with_jobs(&[("job", &[("SEQ_EMU_SECONDS", "1")])]).await;
    let retrying = "- one:\n    type: ecs_task\n    retry: {limit: 2, when: [launch]}\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE}\n\
- two:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE}\n";
    let b = batch(retrying);
    let state = b.dir.path().join("state.json");
    let sequencer_core::action::Action::Launch {
        step,
        attempt,
        mut parameters,
        identity,
    } = state_before_runtask(&b.path, &state)
    else {
        unreachable!()
    };
    parameters.group = Some("sent-by-another-version".into());
    let first = sequencer_core::action::Action::Launch {
        step,
        attempt,
        parameters,
        identity: identity.clone(),
    };
    let ecs = sequencer::ecs::Ecs::from_config(&emu.sdk_config().await);
    ecs.run_task(&first).await.expect("the first RunTask");
    emu.consistency(serde_json::json!({"listLagSeconds": 60}));

    let run = resume(&emu, &b.path, &state);
    assert_eq!(run.code, 0, "{run:?}");
    let calls = emu.calls_of("RunTask");
    assert_eq!(
        calls.len(),
        3,
        "the first call, the re-issue, step two: {calls:?}"
    );
    assert_eq!(calls[1]["clientToken"], identity.client_token.as_str());
    emu.consistency(serde_json::json!({}));
    assert_eq!(
        emu.task_arns("etl").await.len(),
        2,
        "step one ran once: the task its token started was adopted"
    );
    let found = events(&run)
        .into_iter()
        .find(|e| e["event"] == "tasksFound")
        .expect("the token's task was adopted");
    assert_eq!(found["step"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_from_another_batch_is_refused_and_nothing_runs() {
    let emu = Emulator::start();
    let b = batch(TWO_STEPS);
    let state = b.dir.path().join("state.json");
    state_before_runtask(&b.path, &state);
    let other = batch(&TWO_STEPS.replace("job:1", "job:2"));
    let run =
        run(emu
            .sequencer()
            .args(["run", path_str(&other.path), "--state", path_str(&state)]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("belongs to another batch"), "{run:?}");
    assert!(emu.calls().is_empty());
}

/// ListTasks is eventually consistent: after a crash that lost RunTask's answer, a lookup may list
/// only some of a `count: 3` launch's tasks. The attempt must not adopt part of its launch (the
/// untracked task would run on while the next step starts): RunTask is issued again with the
/// same clientToken, which ECS answers with all three.
#[tokio::test(flavor = "multi_thread")]
async fn a_partial_lookup_of_a_counted_launch_is_completed_with_the_same_token_not_adopted() {
    let emu = Emulator::with_jobs(&[("job", &[("SEQ_EMU_SECONDS", "5")])]).await;
    let b = batch(
        "- one:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE, count: 3}\n\
- two:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'job:1', launch_type: FARGATE}\n",
    );
    let state = b.dir.path().join("state.json");
    let launch = state_before_runtask(&b.path, &state);
    let ecs = sequencer::ecs::Ecs::from_config(&emu.sdk_config().await);
    let launched = ecs.run_task(&launch).await.expect("RunTask");
    assert_eq!(launched.tasks.len(), 3);
    // ListTasks lists at most two tasks per answer from now on.
    emu.consistency(serde_json::json!({"listLimit": 2}));

    let run = resume(&emu, &b.path, &state);
    assert_eq!(run.code, 0, "{run:?}");
    let events = events(&run);
    let reissued = events
        .iter()
        .find(|e| e["event"] == "launchReissued")
        .expect("the partial lookup led to a RunTask with the same token");
    assert_eq!(reissued["found"], 2, "{reissued}");
    let calls = emu.calls_of("RunTask");
    assert_eq!(
        calls.len(),
        3,
        "launch, re-issue of step one, step two: {calls:?}"
    );
    assert_eq!(calls[1]["clientToken"], calls[0]["clientToken"]);
    emu.consistency(serde_json::json!({})); // count with a consistent ListTasks again
    assert_eq!(
        emu.task_arns("etl").await.len(),
        4,
        "three tasks for step one, one for step two"
    );
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary");
    let recorded = summary["status"]["steps"][0]["attempts"][0]["tasks"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(
        recorded, 3,
        "every task of the launch is tracked: {summary}"
    );
}

/// A state file edited by hand so that its run no longer fits its batch (a step removed) is
/// refused with the reason; nothing runs and nothing panics.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_that_does_not_fit_its_batch_is_refused_and_nothing_runs() {
    let emu = Emulator::start();
    let b = batch(TWO_STEPS);
    let state = b.dir.path().join("state.json");
    state_before_runtask(&b.path, &state);
    let mut edited: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let steps = edited["status"]["steps"].as_array_mut().expect("steps");
    steps.pop();
    std::fs::write(&state, edited.to_string()).unwrap();
    let run = run(emu
        .sequencer()
        .args(["run", path_str(&b.path), "--state", path_str(&state)]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("does not fit its batch") && run.stderr.contains("records 1 step(s)"),
        "{run:?}"
    );
    assert!(emu.calls().is_empty());
}

/// A startedBy carries only a hash of the run, so another run's task may carry the same one. A
/// resumed lookup that finds such a task (its `sequencer.dev/run` tag names another run) leaves
/// it alone and launches its own with the recorded clientToken.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_of_another_run_with_the_same_started_by_is_never_adopted() {
    let emu = Emulator::with_jobs(&[("job", &[("SEQ_EMU_SECONDS", "3")])]).await;
    let b = batch(TWO_STEPS);
    let state = b.dir.path().join("state.json");
    let sequencer_core::action::Action::Launch { identity, .. } =
        state_before_runtask(&b.path, &state)
    else {
        unreachable!()
    };
    // Another run's task, same startedBy, its own run tag and token.
    let foreign = emu
        .ecs()
        .await
        .run_task()
        .cluster("etl")
        .task_definition("job:1")
        .started_by(&identity.started_by)
        .client_token("another-run-token")
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("sequencer.dev/run")
                .value("another-run")
                .build(),
        )
        .send()
        .await
        .expect("a foreign task");
    let foreign_arn = foreign.tasks()[0].task_arn().unwrap().to_owned();

    let run = resume(&emu, &b.path, &state);
    assert_eq!(run.code, 0, "{run:?}");
    let events = events(&run);
    let ignored = events
        .iter()
        .find(|e| e["event"] == "foreignTasksIgnored")
        .expect("the foreign task was reported");
    assert_eq!(ignored["taskArns"][0], foreign_arn.as_str());
    assert!(events.iter().any(|e| e["event"] == "launchReissued"));
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let own = &summary["status"]["steps"][0]["attempts"][0]["tasks"];
    assert_eq!(own.as_array().map_or(0, Vec::len), 1, "{summary}");
    assert_ne!(own[0]["taskArn"], foreign_arn.as_str());
    let tokens: Vec<String> = emu
        .calls_of("RunTask")
        .iter()
        .filter_map(|c| c["clientToken"].as_str().map(String::from))
        .collect();
    assert_eq!(tokens[1], identity.client_token, "{tokens:?}");
}
