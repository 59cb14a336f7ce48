//! The reliability run: the real controller, SIGKILLed at random instants, against the test
//! kube-apiserver and the AWS emulator while both misbehave, with malformed input applied beside
//! the valid Sequences and a fuzz run of the input readers. It prints a table of figures and fails
//! on any duplicate launch, lost step, wrong final state, stuck Sequence, accepted malformed input
//! or panic.
//!
//! Quick by default (it is part of the test command); `tests/reliability.sh` runs the full run
//! (200 kills, 20 Sequences of 10 steps, a 10-minute ECS outage, 10 minutes of fuzzing).
//! Settings: SEQUENCER_RELIABILITY=full, and _SEED, _KILLS, _OUTAGE_SECONDS, _FUZZ_SECONDS.

mod support;

#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/fuzz.rs"]
mod fuzz;
#[path = "reliability/ledger.rs"]
mod ledger;
#[path = "reliability/malformed.rs"]
mod malformed;

use std::time::{Duration, Instant};

use kube::api::ListParams;
use serde_json::json;
use support::world::*;

pub struct Settings {
    pub full: bool,
    pub seed: u64,
    pub sequences: usize,
    pub steps: usize,
    pub kills: usize,
    pub outage_seconds: u64,
    pub fuzz: Duration,
    /// How long each emulated task runs.
    pub task_seconds: u64,
    /// The pause before each kill, in milliseconds (uniform in this range).
    pub kill_after_ms: (u64, u64),
}

fn setting(name: &str) -> Option<u64> {
    std::env::var(format!("SEQUENCER_RELIABILITY_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
}

fn settings() -> Settings {
    let full = std::env::var("SEQUENCER_RELIABILITY").is_ok_and(|v| v == "full");
    let seed = setting("SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    Settings {
        full,
        seed,
        sequences: if full { 20 } else { 5 },
        steps: if full { 10 } else { 4 },
        kills: setting("KILLS").unwrap_or(if full { 200 } else { 10 }) as usize,
        outage_seconds: setting("OUTAGE_SECONDS").unwrap_or(if full { 600 } else { 5 }),
        fuzz: Duration::from_secs(setting("FUZZ_SECONDS").unwrap_or(if full { 600 } else { 5 })),
        // Long enough that the Sequences are still running when the last kill comes.
        task_seconds: if full { 45 } else { 1 },
        kill_after_ms: if full { (200, 2500) } else { (200, 1500) },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reliability_run() {
    let settings = settings();
    println!(
        "reliability run: {} mode, seed {} (repeat with SEQUENCER_RELIABILITY_SEED={})",
        if settings.full { "full" } else { "quick" },
        settings.seed,
        settings.seed
    );
    let started = Instant::now();
    let world = World::start().await;
    ledger::task_definitions(&world, settings.task_seconds).await;

    let fuzzing = {
        let (batches, sequences) = fuzz_corpus();
        let (duration, seed) = (settings.fuzz, settings.seed);
        // The stack of a tokio worker, where the controller reads what it is given.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || fuzz::run(duration, seed, batches, sequences))
            .expect("fuzz thread")
    };

    let designs: Vec<ledger::Design> = (0..settings.sequences)
        .map(|i| ledger::design(i, settings.steps))
        .collect();
    for design in &designs {
        world
            .create(&design.name, serde_json::Value::Array(design.steps.clone()))
            .await;
    }
    world
        .emu
        .consistency(json!({"listLagSeconds": 4, "listLimit": 2, "earlyMissingSeconds": 3}));
    world.emu.http(
        "POST",
        "/_ext/chaos",
        &json!({"throttle": 0.3, "serverError": 0.1, "seed": settings.seed}),
    );

    let writer = faults::ConflictingWriter::start(world.client.clone(), &designs);
    let malformed_sequences = tokio::spawn(faults::apply_malformed_sequences(world.client.clone()));
    let malformed_batches = {
        let command = world.emu.sequencer();
        let program = command.get_program().to_owned();
        let envs: Vec<_> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        std::thread::spawn(move || faults::run_malformed_batches(&program, &envs))
    };

    let mut random = fuzz::Random(settings.seed | 1);
    let mut api_faults = faults::ApiServerFaults::default();
    let mut kills = 0;
    let mut outage_started = None;
    let mut controller = world.controller();
    while kills < settings.kills && !ledger::all_final(&world, &designs).await {
        // During the outage nothing can progress: kill now and then only, so that most kills
        // fall while Sequences are making progress.
        let in_outage = settings.outage_seconds >= 60
            && outage_started.is_some_and(|at: Instant| {
                at.elapsed() < Duration::from_secs(settings.outage_seconds)
            });
        let (low, high) = if in_outage {
            (10_000, 30_000)
        } else {
            settings.kill_after_ms
        };
        tokio::time::sleep(Duration::from_millis(random.range(low, high))).await;
        controller.kill().expect("SIGKILL");
        let _ = controller.wait();
        kills += 1;
        if kills == settings.kills / 5 {
            world.emu.http(
                "POST",
                "/_ext/chaos",
                &json!({"throttle": 0.3, "serverError": 0.1, "seed": settings.seed,
                        "outageSeconds": settings.outage_seconds}),
            );
            outage_started = Some(Instant::now());
        }
        if kills == settings.kills / 2 {
            api_faults.compact_and_restart(&world).await;
        }
        controller = world.controller();
    }
    // The kills are over: one controller finishes what is left, or the Sequence is stuck.
    let deadline = Duration::from_secs(if settings.full { 1200 } else { 240 })
        + outage_started.map_or(Duration::ZERO, |at| {
            Duration::from_secs(settings.outage_seconds).saturating_sub(at.elapsed())
        });
    let waited = Instant::now();
    while !ledger::all_final(&world, &designs).await && waited.elapsed() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let malformed_sequences = malformed_sequences.await.expect("malformed Sequences task");
    stop(controller);
    let conflicting_writes = writer.stop().await;
    let chaos = world.emu.http("POST", "/_ext/chaos", &json!({}))["counts"].clone();
    world.emu.consistency(json!({}));
    let malformed_batches = malformed_batches.join().expect("malformed batch files");
    let fuzz = fuzzing.join().expect("fuzz thread");

    let verdict = ledger::judge(&world, &designs).await;
    let logs = faults::scan_logs(world.logs.path());
    let malformed_launches = ledger::malformed_launches(&world);
    let sequences = world
        .sequences()
        .list_metadata(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();

    let calls = world.emu.calls();
    let count = |op: &str| calls.iter().filter(|c| c["operation"] == op).count();
    let rows: Vec<(String, String)> = vec![
        ("mode, seed".into(), format!("{}, {}", if settings.full { "full" } else { "quick" }, settings.seed)),
        ("duration".into(), format!("{} s", started.elapsed().as_secs())),
        ("valid Sequences × steps".into(), format!("{} × {} ({} step attempts expected)", designs.len(), settings.steps, verdict.expected_attempts)),
        ("SIGKILLs of the controller".into(), format!("{kills}")),
        ("ECS calls".into(), format!("{} (RunTask {}, DescribeTasks {}, ListTasks {}, StopTask {})", calls.len(), count("RunTask"), count("DescribeTasks"), count("ListTasks"), count("StopTask"))),
        ("ECS faults served".into(), format!("throttled {}, 5xx {}, lost answers {}, outage answers {} ({} s outage)", chaos["throttle"], chaos["server-error"], chaos["lost-answer"], chaos["outage"], settings.outage_seconds)),
        ("ECS consistency".into(), "ListTasks lags 4 s and lists at most 2 tasks; DescribeTasks MISSING for 3 s after launch".into()),
        ("API server".into(), format!("{} restart(s); etcd compacted to revision {}; a watch from before it answered {}", api_faults.restarts, api_faults.compacted_to, api_faults.old_watch_answer)),
        ("409s".into(), format!("{conflicting_writes} concurrent metadata writes; {} status writes conflicted", logs.conflicts)),
        ("duplicate launches".into(), format!("{}", verdict.duplicates.len())),
        ("lost steps".into(), format!("{}", verdict.lost.len())),
        ("wrong final state".into(), format!("{}", verdict.wrong_state.len())),
        ("stuck Sequences".into(), format!("{}", verdict.stuck.len())),
        ("controller panics".into(), format!("{}", logs.panics)),
        ("malformed inputs".into(), format!("{} batch files + {} Sequences ({} refused by the API server, {} by the controller); refused with the place named: {}; launched: {malformed_launches}",
            malformed_batches.total, malformed_sequences.total, malformed_sequences.by_api_server, malformed_sequences.by_controller,
            malformed_batches.refused_with_place + malformed_sequences.refused_with_place)),
        ("fuzz".into(), format!("{} cases in {} s ({} batch files, {} Sequences; {} accepted), slowest {} ms, panics {}",
            fuzz.cases, settings.fuzz.as_secs(), fuzz.batch_cases, fuzz.sequence_cases, fuzz.accepted, fuzz.slowest.as_millis(), fuzz.panics.len())),
        ("Sequences in the cluster".into(), format!("{sequences}")),
    ];
    println!("\n| figure | value |\n|---|---|");
    for (figure, value) in &rows {
        println!("| {figure} | {value} |");
    }
    println!();
    println!("slowest fuzz case: {}", fuzz.slowest_input);

    assert!(
        verdict.duplicates.is_empty(),
        "duplicate launches: {:?}",
        verdict.duplicates
    );
    assert!(verdict.lost.is_empty(), "lost steps: {:?}", verdict.lost);
    assert!(
        verdict.wrong_state.is_empty(),
        "wrong final state: {:?}",
        verdict.wrong_state
    );
    assert!(verdict.stuck.is_empty(), "stuck: {:?}", verdict.stuck);
    assert_eq!(
        logs.panics, 0,
        "the controller panicked: {:?}",
        logs.panic_lines
    );
    for failures in [&malformed_batches.failures, &malformed_sequences.failures] {
        assert!(
            failures.is_empty(),
            "malformed input not refused with its place: {failures:#?}"
        );
    }
    assert_eq!(
        malformed_launches,
        0,
        "a malformed step was launched: {:?}",
        ledger::malformed_launched_steps(&world)
    );
    assert!(malformed_batches.total + malformed_sequences.total >= 100);
    assert!(
        fuzz.panics.is_empty(),
        "fuzz inputs that panicked: {:?}",
        fuzz.panics
    );
    assert_eq!(kills, settings.kills, "the run ended before every kill");
}

/// Real inputs to mutate: batch files from the repository, and Sequences built from them.
fn fuzz_corpus() -> (Vec<String>, Vec<String>) {
    let root = support::repo_root();
    let mut batches = Vec::new();
    for dir in [
        "tests/fixtures/seed",
        "tests/fixtures/invalid",
        "tests/fixtures",
        "examples",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yml" || e == "yaml")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                batches.push(text);
            }
        }
    }
    let mut sequences = Vec::new();
    for case in malformed::cases(false).into_iter().take(8) {
        let mut body = case.body;
        body["name"] = json!("fuzzed");
        sequences.push(
            json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                   "metadata": {"name": "fuzzed", "namespace": "default", "resourceVersion": "1"},
                   "spec": {"steps": [body, step("second", "quick")]},
                   "status": {"phase": "Running", "conditions": []}})
            .to_string(),
        );
    }
    (batches, sequences)
}
