//! The `sequencer` command line.
//!
//! `sequencer [run] <file|s3://bucket/key>` runs a batch; with no argument the batch comes from
//! `SEQUENCER_YAML_S3_PATH`, as the seed's container image did. `sequencer validate` checks a batch
//! without touching ECS. Exit codes are part of the interface (see `Exit`).

use std::path::PathBuf;
use std::process::ExitCode;

use aws_config::SdkConfig;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use crate::aws_clients::{aws_config, s3_client};
use crate::batch_file;
use crate::ecs::Ecs;
use crate::identity::launch_identity;
use crate::plan::{DEFAULT_POLL_INTERVAL_SECONDS, Plan};
use crate::progress::{OutputFormat, Reporter};
use crate::run_task::request_json;
use crate::runner::{self, CliStore, StatusStore};
use crate::source::{self, BatchSource, LoadedBatch};
use crate::state_file::{self, StateFile};
use crate::status::{RunPhase, RunStatus};

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

#[derive(Parser, Debug)]
#[command(
    name = "sequencer",
    version,
    about = "Run a batch of AWS ECS tasks strictly one after another, each exactly once.",
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 success, 1 a step failed, 2 invalid input, 3 AWS or configuration error, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a batch (the default command).
    Run(RunArgs),
    /// Check a batch file and print what is wrong, without calling ECS.
    Validate(ValidateArgs),
    /// Print the Sequence CustomResourceDefinition (what crds/ holds).
    Crd,
    /// Run the Sequence controller (in-cluster config, or KUBECONFIG).
    Controller(ControllerArgs),
}

#[derive(Args, Debug)]
struct ControllerArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SEQUENCER_NAMESPACE")]
    namespace: Option<String>,
    /// Default AWS region for Sequences that name none.
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Seconds between two looks at a running task, for Sequences without pollIntervalSeconds.
    #[arg(long, value_name = "SECONDS", env = "SEQUENCER_POLL_INTERVAL", default_value_t = DEFAULT_POLL_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_interval: u64,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "SEQUENCER_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: std::net::SocketAddr,
    /// Lead through a Lease so that only one of several replicas works at a time.
    #[arg(long, env = "SEQUENCER_LEADER_ELECTION")]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "sequencer-controller")]
    lease_name: String,
    /// The Lease's namespace (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease (default: the pod's name, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// plain: human-readable lines; json: one JSON object per line, with the span fields.
    #[arg(long, value_enum, env = "SEQUENCER_LOG_FORMAT", default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The batch: a file path or s3://bucket/key[?versionId=V].
    #[arg(env = "SEQUENCER_YAML_S3_PATH")]
    batch: Option<String>,
    /// Print the exact RunTask requests as JSON and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep the run's status in this file; running the same command again resumes the run.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Seconds between two looks at running tasks.
    #[arg(long, value_name = "SECONDS", env = "SEQUENCER_SLEEP_BETWEEN_CHECKS", default_value_t = DEFAULT_POLL_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_interval: u64,
    /// human: lines to follow; json: one JSON object per event.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// AWS region (default: the standard AWS chain, else us-east-1 as the seed did).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    /// The batch: a file path or s3://bucket/key[?versionId=V].
    #[arg(env = "SEQUENCER_YAML_S3_PATH")]
    batch: Option<String>,
    /// human: a short report; json: the steps as sequencer understood them.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
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
            Some(Command::Validate(args)) => validate(args).await,
            Some(Command::Controller(args)) => controller(args).await,
            Some(Command::Crd) => {
                print!("{}", crate::sequence::crd_yaml());
                Exit::Success
            }
            Some(Command::Run(args)) => run(args).await,
            None => run(cli.run).await,
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
            "no batch given: pass a file or s3://bucket/key, or set SEQUENCER_YAML_S3_PATH",
        ));
    };
    let source = BatchSource::parse(&batch).map_err(|e| fail(Exit::InvalidInput, e))?;
    let loaded = match &source {
        BatchSource::File(path) => source::load_file(path).await,
        BatchSource::S3(location) => {
            source::load_s3(&s3_client(&aws_config(region).await), location).await
        }
    };
    let loaded = loaded.map_err(|e| match e {
        source::SourceError::File { .. } | source::SourceError::NotText { .. } => {
            fail(Exit::InvalidInput, e)
        }
        source::SourceError::S3 { .. } => fail(Exit::AwsOrConfig, e),
    })?;
    let steps = batch_file::parse(&loaded.label, &loaded.text).map_err(|e| {
        eprint!("{e}");
        Exit::InvalidInput
    })?;
    Ok((source, loaded, Plan::new(steps)))
}

async fn validate(args: ValidateArgs) -> Exit {
    let (_, loaded, plan) = match load_plan(args.batch, args.region).await {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&batch_file::steps_json(&plan.steps)).unwrap_or_default()
        ),
        OutputFormat::Human => {
            let names: Vec<String> = plan.steps.iter().map(|s| s.name.clone()).collect();
            println!(
                "{}: valid, {} step(s): {}",
                loaded.label,
                plan.steps.len(),
                names.join(", ")
            );
            if let Some(object) = &loaded.s3 {
                println!(
                    "read S3 version {} (ETag {})",
                    object.version_id.as_deref().unwrap_or("none"),
                    object.etag.as_deref().unwrap_or("none")
                );
            }
        }
    }
    Exit::Success
}

async fn run(args: RunArgs) -> Exit {
    let (_source, loaded, mut plan) = match load_plan(args.batch, args.region.clone()).await {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    plan.poll_interval_seconds = args.poll_interval;
    if args.dry_run {
        return dry_run(&plan);
    }

    let mut reporter = Reporter::new(args.output, std::io::stdout());
    // Resume from the state file, or start a new run.
    let (status, mut store) = match &args.state {
        None => (
            RunStatus::new(uuid::Uuid::new_v4().to_string(), &plan),
            CliStore::Memory,
        ),
        Some(path) => match state_file::load(path) {
            Err(e) => return fail(Exit::InvalidInput, e),
            Ok(Some(state)) => {
                if state.status.plan_digest != plan.digest() {
                    return fail(
                        Exit::InvalidInput,
                        format!(
                            "the state file {} belongs to another batch (plan {}; {} is now {}). \
                             Resuming would run a different plan: restore that batch, or move the state file away to start a new run",
                            path.display(),
                            state.status.plan_digest,
                            loaded.label,
                            plan.digest()
                        ),
                    );
                }
                if state.status.is_finished() {
                    reporter.note("alreadyFinished", &format!("this run ({}) already finished; nothing to do. Move {} away to run the batch again", state.status.run_id, path.display()));
                    reporter.summary(&state.status);
                    return exit_for(&state.status);
                }
                reporter.note(
                    "resuming",
                    &format!(
                        "resuming run {} from {}",
                        state.status.run_id,
                        path.display()
                    ),
                );
                let status = state.status.clone();
                (
                    status,
                    CliStore::File {
                        path: path.clone(),
                        template: Box::new(state),
                    },
                )
            }
            Ok(None) => {
                let status = RunStatus::new(uuid::Uuid::new_v4().to_string(), &plan);
                let template =
                    StateFile::new(loaded.label.clone(), loaded.s3.as_ref(), status.clone());
                let mut store = CliStore::File {
                    path: path.clone(),
                    template: Box::new(template),
                };
                if let Err(e) = store.save(&status).await {
                    return fail(Exit::AwsOrConfig, e);
                }
                (status, store)
            }
        },
    };

    let config = aws_config(args.region).await;
    if let Err(e) = check_credentials(&config).await {
        return fail(Exit::AwsOrConfig, e);
    }
    let ecs = Ecs::new(aws_sdk_ecs::Client::new(&config));
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
    reporter.note("runInfo", &origin);

    let cancel = watch_signals();
    match runner::run(&plan, status, &ecs, &mut store, &mut reporter, cancel).await {
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

async fn controller(args: ControllerArgs) -> Exit {
    let client = match kube::Client::try_default().await {
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
        crate::leader::LeaseConfig::new(
            args.lease_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            args.lease_name.clone(),
            identity,
        )
    });
    let settings = crate::controller::Settings {
        namespace: args.namespace,
        http_address: args.http_address,
        leader_election,
        default_poll_interval_seconds: args.poll_interval,
    };
    match crate::controller::run(
        client,
        crate::aws_clients::AwsClients::new(config),
        settings,
    )
    .await
    {
        Ok(()) => Exit::Success,
        Err(e) => fail(Exit::StepFailed, e),
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

async fn check_credentials(config: &SdkConfig) -> Result<(), String> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = config.credentials_provider() else {
        return Err("no AWS credentials provider is configured".into());
    };
    provider.provide_credentials().await.map(|_| ()).map_err(|e| {
        format!(
            "no AWS credentials: {} (looked in the environment, the shared config files, web identity (IRSA), the container and instance roles)",
            crate::ecs::error_chain(&e)
        )
    })
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

pub(crate) async fn wait_for_signal() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted (SIGINT)".to_owned(),
                _ = term.recv() => "terminated (SIGTERM)".to_owned(),
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "interrupted (SIGINT)".to_owned()
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted".to_owned()
    }
}
