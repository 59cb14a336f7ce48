//! `sequencer run`: a batch from start (or from its `--state` file) to its end, in this process.
//!
//! The status lives in memory, or in the state file, rewritten atomically before every action so
//! that the same command resumes a run that was killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use sequencer_core::identity::launch_identity;
use sequencer_core::observation::Observation;
use sequencer_core::plan::Plan;
use sequencer_core::run_task::request_json;
use sequencer_core::status::{RunPhase, RunStatus};
use tokio::sync::watch;

use super::args::RunArgs;
use super::progress::Reporter;
use super::state_file::{self, StateError, StateFile, save};
use super::{Exit, fail, load_plan};
use crate::drive::{StatusStore, drive};
use crate::ecs::clients::{aws_config, check_credentials};
use crate::ecs::{Ecs, Executor};
use crate::shutdown::wait_for_signal;
use crate::source::LoadedBatch;

/// However soon a decision wants to look again, the loop waits at least this long.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// The CLI's stores: nothing (a run without `--state` cannot be resumed), or the `--state` file.
pub enum CliStore {
    Memory,
    File {
        path: PathBuf,
        template: Box<StateFile>,
    },
}

impl StatusStore for CliStore {
    type Error = StateError;
    async fn save(&mut self, status: &RunStatus) -> Result<(), StateError> {
        match self {
            CliStore::Memory => Ok(()),
            CliStore::File { path, template } => {
                template.status = status.clone();
                save(path, template)
            }
        }
    }
}

pub async fn run(args: RunArgs) -> Exit {
    let (_source, loaded, mut plan) = match load_plan(args.batch, args.region.clone()).await {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    plan.poll_interval_seconds = args.poll_interval;
    if args.dry_run {
        return dry_run(&plan);
    }
    let mut reporter = Reporter::new(args.output, std::io::stdout());
    let (status, mut store) = match &args.state {
        None => (new_run(&plan), CliStore::Memory),
        Some(path) => match open_state(path, &plan, &loaded, &mut reporter).await {
            Ok(opened) => opened,
            Err(exit) => return exit,
        },
    };

    let config = aws_config(args.region).await;
    if let Err(e) = check_credentials(&config).await {
        return fail(Exit::AwsOrConfig, e);
    }
    let ecs = Ecs::from_config(&config);
    reporter.note("runInfo", &origin(&status, &plan, &loaded));

    let cancel = watch_signals();
    match run_to_end(&plan, status, &ecs, &mut store, &mut reporter, cancel).await {
        Ok(status) => {
            reporter.summary(&status);
            exit_for(&status)
        }
        Err(e) => fail(
            Exit::AwsOrConfig,
            format!(
                "{e}. The run stopped without recording its next step; tasks already started keep running. Fix the state file's location and run the same command to resume"
            ),
        ),
    }
}

fn new_run(plan: &Plan) -> RunStatus {
    RunStatus::new(uuid::Uuid::new_v4().to_string(), plan)
}

/// The run kept in the state file at `path`: resumed when the file holds this batch's unfinished
/// run, started (and saved) when there is no file yet. A finished run or another batch's file
/// ends the command with the exit code it deserves.
async fn open_state(
    path: &Path,
    plan: &Plan,
    loaded: &LoadedBatch,
    reporter: &mut Reporter<std::io::Stdout>,
) -> Result<(RunStatus, CliStore), Exit> {
    let Some(state) = state_file::load(path).map_err(|e| fail(Exit::InvalidInput, e))? else {
        let status = new_run(plan);
        let template = StateFile::new(loaded.label.clone(), loaded.s3.as_ref(), status.clone());
        let mut store = CliStore::File {
            path: path.to_owned(),
            template: Box::new(template),
        };
        store
            .save(&status)
            .await
            .map_err(|e| fail(Exit::AwsOrConfig, e))?;
        return Ok((status, store));
    };
    if state.status.plan_digest != plan.digest() {
        return Err(fail(
            Exit::InvalidInput,
            format!(
                "the state file {} belongs to another batch (plan {}; {} is now {}). \
                 Resuming would run a different plan: restore that batch, or move the state file away to start a new run",
                path.display(),
                state.status.plan_digest,
                loaded.label,
                plan.digest()
            ),
        ));
    }
    if let Some(why) = sequencer_core::engine::mismatch(plan, &state.status) {
        return Err(fail(
            Exit::InvalidInput,
            format!(
                "the state file {} does not fit its batch: {why}. It was edited or damaged; nothing was run",
                path.display()
            ),
        ));
    }
    if state.status.is_finished() {
        reporter.note(
            "alreadyFinished",
            &format!(
                "this run ({}) already finished; nothing to do. Move {} away to run the batch again",
                state.status.run_id,
                path.display()
            ),
        );
        reporter.summary(&state.status);
        return Err(exit_for(&state.status));
    }
    let resuming = format!(
        "resuming run {} from {}",
        state.status.run_id,
        path.display()
    );
    reporter.note("resuming", &resuming);
    let status = state.status.clone();
    let store = CliStore::File {
        path: path.to_owned(),
        template: Box::new(state),
    };
    Ok((status, store))
}

/// "run ID: N step(s) from LABEL (S3 version V, ETag E)".
fn origin(status: &RunStatus, plan: &Plan, loaded: &LoadedBatch) -> String {
    let mut origin = format!(
        "run {}: {} step(s) from {}",
        status.run_id,
        plan.steps.len(),
        loaded.label
    );
    if let Some(object) = &loaded.s3 {
        origin.push_str(&format!(
            " (S3 version {}, ETag {})",
            object.version_id.as_deref().unwrap_or("none"),
            object.etag.as_deref().unwrap_or("none")
        ));
    }
    origin
}

/// Drives the run until it is finished, looking again whenever the engine asks to. `cancel`
/// carries a reason once the user asks to stop.
pub async fn run_to_end<E: Executor, S: StatusStore, W: Write>(
    plan: &Plan,
    mut status: RunStatus,
    ecs: &E,
    store: &mut S,
    reporter: &mut Reporter<W>,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<RunStatus, S::Error> {
    // A (re)started runner begins with a tick: it looks at running tasks and at launches that may
    // have happened before a crash.
    let mut observations = vec![Observation::Tick];
    let mut cancel_sent = false;
    loop {
        if !cancel_sent && let Some(reason) = cancel.borrow().clone() {
            observations.push(Observation::CancelRequested { reason });
            cancel_sent = true;
        }
        let observed = std::mem::take(&mut observations);
        let driven = drive(plan, status, observed, ecs, store, reporter).await?;
        status = driven.status;
        if status.is_finished() {
            return Ok(status);
        }
        let now = Timestamp::now();
        let wait = match driven.wake_at {
            Some(at) if at > now => at.duration_since(now).unsigned_abs(),
            Some(_) => Duration::ZERO,
            None => Duration::from_secs(plan.poll_interval_seconds.max(1)),
        }
        // A floor, so that a decision that wants to wake at once can never spin the loop.
        .max(MIN_WAIT);
        tokio::select! {
            _ = tokio::time::sleep(wait) => observations.push(Observation::Tick),
            changed = cancel.changed(), if !cancel_sent => {
                if changed.is_err() {
                    // The signal handler is gone; keep running without it.
                    cancel_sent = true;
                }
            }
        }
    }
}

fn exit_for(status: &RunStatus) -> Exit {
    match status.phase {
        RunPhase::Succeeded => Exit::Success,
        _ if status.cancel.is_some() => Exit::Interrupted,
        _ => Exit::StepFailed,
    }
}

fn dry_run(plan: &Plan) -> Exit {
    // The clientToken and startedBy depend on the run's id, new for every real run; a fixed one
    // shows their shape.
    let run_id = "00000000-0000-0000-0000-000000000000";
    let requests: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let identity = launch_identity(
                s.definition.parameters.started_by.as_deref(),
                run_id,
                i,
                &s.name,
                1,
            );
            serde_json::json!({
                "step": i + 1,
                "name": s.name,
                "active": s.definition.active,
                "runTask": request_json(&s.definition.parameters, &identity),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&requests).unwrap_or_default()
    );
    Exit::Success
}

/// The first Ctrl-C or SIGTERM asks the run to stop its tasks and end; a second one exits at once.
fn watch_signals() -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut reason = wait_for_signal().await;
        let _ = tx.send(Some(reason.clone()));
        eprintln!(
            "sequencer: {reason}: stopping the running tasks (press again to exit at once; tasks may then keep running)"
        );
        reason = wait_for_signal().await;
        eprintln!("sequencer: {reason} again: exiting now");
        std::process::exit(Exit::Interrupted as i32);
    });
    rx
}
