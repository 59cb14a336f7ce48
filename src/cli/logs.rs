//! `sequencer logs RUN [STEP]`: the last log lines of a step's tasks, from a CLI state file or a
//! Sequence (KUBECONFIG), read from CloudWatch Logs; `--follow` keeps printing a running step's
//! new lines until its tasks stop.

use std::path::Path;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client as LogsClient;
use sequencer_core::log_tail::{LogTarget, render};
use sequencer_core::status::{Attempt, RunStatus, StepPhase};

use super::args::LogsArgs;
use super::{Exit, fail, state_file};
use crate::ecs::Ecs;
use crate::ecs::clients::aws_config;
use crate::ecs::logs::{LogDestination, stream_name};

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

pub async fn logs(args: LogsArgs) -> Exit {
    let (status, region) = match read_run(&args).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let step = match pick_step(&status, args.step.as_deref()) {
        Ok(i) => i,
        Err(message) => return fail(Exit::InvalidInput, message),
    };
    let s = &status.steps[step];
    let attempt = match args.attempt {
        Some(n) => s.attempts.iter().find(|a| a.attempt == n),
        None => s.attempts.last(),
    };
    let Some(attempt) = attempt else {
        let which = args.attempt.map(|n| format!(" {n}")).unwrap_or_default();
        return fail(
            Exit::InvalidInput,
            format!("step {} ({}) has no attempt{which}", step + 1, s.name),
        );
    };
    let targets = targets(attempt, args.container.as_deref());
    if targets.is_empty() {
        return fail(
            Exit::InvalidInput,
            format!(
                "attempt {} of step {} ({}) has no task{} to read",
                attempt.attempt,
                step + 1,
                s.name,
                args.container
                    .as_deref()
                    .map(|c| format!(" with a container {c}"))
                    .unwrap_or_default()
            ),
        );
    }
    let config = aws_config(args.region.clone().or(region)).await;
    let ecs = Ecs::from_config(&config);
    println!(
        "step {} ({}), attempt {}:",
        step + 1,
        s.name,
        attempt.attempt
    );
    if args.follow {
        return follow(&ecs, &config, attempt, &targets, args.tail).await;
    }
    let tails = ecs.fetch_logs(&targets, args.tail).await;
    for line in render(&tails) {
        println!("{line}");
    }
    Exit::Success
}

/// The run's status and region, from a state file (a path that exists) or a Sequence.
async fn read_run(args: &LogsArgs) -> Result<(RunStatus, Option<String>), Exit> {
    let path = Path::new(&args.run);
    if path.exists() {
        return match state_file::load(path) {
            Ok(Some(state)) => Ok((state.status, None)),
            Ok(None) => Err(fail(
                Exit::InvalidInput,
                format!("no state file {}", args.run),
            )),
            Err(e) => Err(fail(Exit::InvalidInput, e)),
        };
    }
    use crate::api::sequence::Sequence;
    let client = kube::Client::try_default().await.map_err(|e| {
        fail(
            Exit::AwsOrConfig,
            format!("{} is not a file, and Kubernetes cannot be reached to read a Sequence of that name: {e}", args.run),
        )
    })?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: kube::Api<Sequence> = kube::Api::namespaced(client, &namespace);
    let sequence = api.get_opt(&args.run).await.map_err(|e| {
        fail(
            Exit::AwsOrConfig,
            format!("cannot read Sequence {namespace}/{}: {e}", args.run),
        )
    })?;
    let Some(sequence) = sequence else {
        return Err(fail(
            Exit::InvalidInput,
            format!(
                "{} is neither a state file nor a Sequence in namespace {namespace}",
                args.run
            ),
        ));
    };
    let status = sequence.status.unwrap_or_default();
    let region = status.pinned.as_ref().map(|p| p.region.clone());
    let run = status.run.ok_or_else(|| {
        fail(
            Exit::InvalidInput,
            format!("Sequence {namespace}/{} has not started a run", args.run),
        )
    })?;
    let run: RunStatus = run.parse().map_err(|e| {
        fail(
            Exit::InvalidInput,
            format!(
                "Sequence {namespace}/{} has a status.run sequencer cannot read: {e}",
                args.run
            ),
        )
    })?;
    Ok((run, region))
}

/// The step named (a 1-based number or a name), else the failed step, else the current one, else
/// the last that ran.
fn pick_step(status: &RunStatus, wanted: Option<&str>) -> Result<usize, String> {
    let names = || {
        status
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} {}", i + 1, s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = wanted {
        if let Ok(n) = wanted.parse::<usize>() {
            return (1..=status.steps.len())
                .contains(&n)
                .then(|| n - 1)
                .ok_or_else(|| format!("the run has no step {n}; its steps: {}", names()));
        }
        return status
            .steps
            .iter()
            .position(|s| s.name == wanted)
            .ok_or_else(|| format!("the run has no step {wanted:?}; its steps: {}", names()));
    }
    let failed = status
        .steps
        .iter()
        .position(|s| s.phase == StepPhase::Failed);
    failed
        .or(status.current_step.filter(|i| *i < status.steps.len()))
        .or_else(|| status.steps.iter().rposition(|s| !s.attempts.is_empty()))
        .ok_or_else(|| "no step of the run has started yet".to_owned())
}

/// Every container of every task of the attempt (or only `container`).
fn targets(attempt: &Attempt, container: Option<&str>) -> Vec<LogTarget> {
    attempt
        .tasks
        .iter()
        .flat_map(|t| {
            t.containers
                .iter()
                .filter(|c| container.is_none_or(|want| want == c.name))
                .map(|c| LogTarget {
                    task_arn: t.task_arn.clone(),
                    task_definition_arn: t.task_definition_arn.clone(),
                    container: c.name.clone(),
                })
        })
        .collect()
}

/// Prints each container's new lines as they arrive, until every task has stopped and a last
/// read found nothing new.
async fn follow(
    ecs: &Ecs,
    config: &aws_config::SdkConfig,
    attempt: &Attempt,
    targets: &[LogTarget],
    tail: u32,
) -> Exit {
    let mut streams = Vec::new();
    for target in targets {
        match ecs.destination(target).await {
            Ok(LogDestination::Awslogs {
                group,
                region,
                prefix: Some(prefix),
            }) => {
                let stream = stream_name(&prefix, &target.container, &target.task_arn);
                let conf = match region {
                    Some(r) => config
                        .to_builder()
                        .region(aws_config::Region::new(r))
                        .build(),
                    None => config.clone(),
                };
                streams.push((
                    target.clone(),
                    LogsClient::new(&conf),
                    group,
                    stream,
                    None::<String>,
                ));
            }
            Ok(other) => {
                let tails = ecs.fetch_logs(std::slice::from_ref(target), 1).await;
                let why = tails.first().and_then(|t| t.note.clone());
                eprintln!(
                    "container {}: not followed: {}",
                    target.container,
                    why.unwrap_or_else(|| format!("{other:?}"))
                );
            }
            Err(e) => eprintln!("container {}: not followed: {e}", target.container),
        }
    }
    if streams.is_empty() {
        return fail(
            Exit::AwsOrConfig,
            "no container's log stream can be followed",
        );
    }
    let arns: Vec<String> = attempt.tasks.iter().map(|t| t.task_arn.clone()).collect();
    let cluster = attempt.cluster.clone();
    let several = streams.len() > 1;
    loop {
        // Whether the tasks had all stopped before this read: then it is the last.
        let stopped = ecs.all_stopped(cluster.as_deref(), &arns).await;
        for (target, client, group, stream, token) in &mut streams {
            let request = client
                .get_log_events()
                .log_group_name(group.as_str())
                .log_stream_name(stream.as_str());
            // First the last `tail` lines; then onwards from there (a forward token is only
            // honoured with startFromHead=true).
            let request = match token.as_ref() {
                None => request
                    .start_from_head(false)
                    .limit(tail.clamp(1, 10_000) as i32),
                Some(t) => request.start_from_head(true).next_token(t.as_str()),
            };
            let Ok(page) = request.send().await else {
                continue; // not there yet (the container has not started), or a blip
            };
            for event in page.events() {
                let Some(message) = event.message() else {
                    continue;
                };
                for line in message.trim_end_matches(['\n', '\r']).split('\n') {
                    if several {
                        println!("{}: {line}", target.container);
                    } else {
                        println!("{line}");
                    }
                }
            }
            if let Some(next) = page.next_forward_token() {
                *token = Some(next.to_owned());
            }
        }
        if stopped {
            return Exit::Success;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
