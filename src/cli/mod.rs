//! The `sequencer` command line.
//!
//! `sequencer [run] <file|s3://bucket/key>` runs a batch; with no argument the batch comes from
//! `SEQUENCER_YAML_S3_PATH`, as the seed's container image did. `sequencer validate` checks a batch
//! without touching ECS. Exit codes are part of the interface (see `Exit`).

mod args;
mod logs;
pub mod progress;
mod run;
pub mod state_file;
mod validate;

use std::process::ExitCode;

use clap::Parser;
use sequencer_core::plan::Plan;

pub use args::Cli;
use args::{Command, ControllerArgs, LogFormat};
pub use run::{CliStore, run_to_end};

use crate::batch::file;
use crate::ecs::clients::{AwsClients, aws_config, check_credentials, s3_client};
use crate::source::{self, BatchSource, LoadedBatch};

/// The process's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every step succeeded (failures under `ignore_failure` included).
    Success = 0,
    /// A step failed.
    StepFailed = 1,
    /// The batch file, the arguments or the state file are not valid; nothing was launched.
    InvalidInput = 2,
    /// AWS could not be reached or used (credentials, region, S3 object, state file not writable).
    AwsOrConfig = 3,
    /// Interrupted (Ctrl-C or SIGTERM); the running tasks were stopped.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Controller(args)) => init_logging(args.log_format, "sequencer=info,warn"),
        _ => init_logging(LogFormat::Plain, "warn"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sequencer: cannot start: {e}");
            return Exit::AwsOrConfig.into();
        }
    };
    let exit = runtime.block_on(async {
        match cli.command {
            Some(Command::Validate(args)) => validate::validate(args).await,
            Some(Command::Controller(args)) => controller(args).await,
            Some(Command::Crd(args)) => {
                print!(
                    "{}",
                    match args.kind {
                        args::CrdKind::Sequence => crate::api::sequence::crd_yaml(),
                        args::CrdKind::Scheduledsequence =>
                            crate::api::scheduled_sequence::crd_yaml(),
                        args::CrdKind::Sequencepolicy => crate::api::sequence_policy::crd_yaml(),
                    }
                );
                Exit::Success
            }
            Some(Command::Trigger(args)) => trigger(args).await,
            Some(Command::Run(args)) => run::run(args).await,
            Some(Command::Logs(args)) => logs::logs(args).await,
            None => run::run(cli.run).await,
        }
    });
    // Tasks still running (watches, the HTTP server) get a moment, not a say over exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    exit.into()
}

/// Logs go to stderr; `SEQUENCER_LOG_DEBUG` (any value, as in the seed) or `RUST_LOG` turn on more.
fn init_logging(format: LogFormat, default: &str) {
    let default = if std::env::var_os("SEQUENCER_LOG_DEBUG").is_some() {
        "sequencer=debug,info"
    } else {
        default
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    eprintln!("sequencer: {message}");
    exit
}

/// Reads and validates the batch. Errors are printed; the exit code says which kind.
async fn load_plan(
    batch: Option<String>,
    region: Option<String>,
) -> Result<(BatchSource, LoadedBatch, Plan), Exit> {
    let Some(batch) = batch else {
        return Err(fail(
            Exit::InvalidInput,
            "no batch given: pass a file, s3://bucket/key or git+URL//PATH?ref=REF, or set SEQUENCER_YAML_S3_PATH",
        ));
    };
    let source = BatchSource::parse(&batch).map_err(|e| fail(Exit::InvalidInput, e))?;
    let loaded = match &source {
        BatchSource::File(path) => source::load_file(path).await,
        BatchSource::S3(location) => {
            source::load_s3(&s3_client(&aws_config(region).await), location).await
        }
        // The user's git configuration applies (a credential helper for a private repository).
        BatchSource::Git(location) => {
            source::load_git(location, &source::git::GitOptions::default()).await
        }
    };
    let loaded = loaded.map_err(|e| match e {
        source::SourceError::File { .. } | source::SourceError::NotText { .. } => {
            fail(Exit::InvalidInput, e)
        }
        source::SourceError::S3 { .. } | source::SourceError::Git(_) => fail(Exit::AwsOrConfig, e),
    })?;
    let steps = file::parse(&loaded.label, &loaded.text).map_err(|e| {
        eprint!("{e}");
        Exit::InvalidInput
    })?;
    Ok((source, loaded, Plan::new(steps)))
}

/// `sequencer trigger NAME`: sets the ScheduledSequence's `sequencer.dev/run-now` annotation to
/// this instant; the controller starts one run for it.
async fn trigger(args: args::TriggerArgs) -> Exit {
    use crate::api::labels::RUN_NOW;
    use crate::api::scheduled_sequence::ScheduledSequence;
    use crate::controller::schedule::new_run::manual_name;
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => return fail(Exit::AwsOrConfig, format!("cannot reach Kubernetes: {e}")),
    };
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: kube::Api<ScheduledSequence> = kube::Api::namespaced(client, &namespace);
    let request = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {RUN_NOW: request}}});
    match api
        .patch(
            &args.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            println!(
                "asked for a run of {namespace}/{}: the controller starts Sequence {}",
                args.name,
                manual_name(&args.name, &request)
            );
            Exit::Success
        }
        Err(kube::Error::Api(e)) if e.code == 404 => fail(
            Exit::InvalidInput,
            format!(
                "no ScheduledSequence {} in namespace {namespace}",
                args.name
            ),
        ),
        Err(e) => fail(
            Exit::AwsOrConfig,
            format!("cannot annotate {}: {e}", args.name),
        ),
    }
}

async fn controller(args: ControllerArgs) -> Exit {
    let shard = match crate::controller::runtime::shard::Shard::new(
        args.shard.clone(),
        args.shards.clone(),
    ) {
        Ok(shard) => shard,
        Err(e) => return fail(Exit::InvalidInput, e),
    };
    let (client, lease_client) = match crate::controller::runtime::kube_client::clients(
        args.kube_qps,
        args.kube_burst,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return fail(Exit::AwsOrConfig, format!("cannot reach Kubernetes: {e}")),
    };
    let config = aws_config(args.region).await;
    if let Err(e) = check_credentials(&config).await {
        return fail(Exit::AwsOrConfig, e);
    }
    let leader_election = args.leader_election.then(|| {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sequencer".into());
            format!("{host}-{}", std::process::id())
        });
        crate::controller::runtime::leader::LeaseConfig::new(
            args.lease_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            shard.lease_name(&args.lease_name),
            identity,
        )
    });
    let settings = crate::controller::Settings {
        namespace: args.namespace,
        shard,
        instance: args.identity.clone(),
        http_address: args.http_address,
        leader_election,
        default_poll_interval_seconds: args.poll_interval,
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        unselected_namespaces: match args.unselected_namespaces {
            crate::cli::args::UnselectedNamespaces::Allow => {
                crate::controller::tenancy::policies::Unselected::Allow
            }
            crate::cli::args::UnselectedNamespaces::Deny => {
                crate::controller::tenancy::policies::Unselected::Deny
            }
        },
        task_events: args.task_events_queue_url.map(|queue_url| {
            crate::controller::TaskEventSettings {
                queue_url,
                poll_interval_seconds: args.task_events_poll_interval,
            }
        }),
    };
    let ecs_limits = crate::ecs::limits::CallLimitSettings {
        per_second: f64::from(args.ecs_calls_per_second),
        burst: args.ecs_burst,
        max_in_flight: args.ecs_max_in_flight as usize,
    };
    let aws = AwsClients::new(config, ecs_limits);
    match crate::controller::run(client, lease_client, aws, settings).await {
        Ok(()) => Exit::Success,
        Err(
            e @ (crate::controller::RunError::CrdMissing
            | crate::controller::RunError::CannotListSequences(_)
            | crate::controller::RunError::Tenancy(_)
            | crate::controller::RunError::Bind { .. }),
        ) => fail(Exit::AwsOrConfig, e),
        Err(e) => fail(Exit::StepFailed, e),
    }
}
