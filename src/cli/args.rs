//! The command line's arguments and flags (clap), for every subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sequencer_core::plan::DEFAULT_POLL_INTERVAL_SECONDS;

use super::progress::OutputFormat;

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
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a batch (the default command).
    Run(RunArgs),
    /// Check a batch file and print what is wrong, without calling ECS.
    Validate(ValidateArgs),
    /// Print a CustomResourceDefinition (what crds/ holds): the Sequence's, or the
    /// ScheduledSequence's.
    Crd(CrdArgs),
    /// Start a run of a ScheduledSequence now (KUBECONFIG), whatever its schedule.
    Trigger(TriggerArgs),
    /// Run the Sequence controller (in-cluster config, or KUBECONFIG).
    Controller(ControllerArgs),
    /// Print the last log lines of a step's containers (CloudWatch Logs), or follow them.
    Logs(LogsArgs),
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The run: a state file written by `sequencer run --state`, or a Sequence's name.
    pub run: String,
    /// The step: its number (1-based) or name. Default: the failed step, else the running one.
    pub step: Option<String>,
    /// The attempt (default: the step's last).
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Only this container (default: every container of the attempt's tasks).
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    /// How many of the last lines to print per container.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub tail: u32,
    /// Keep printing new lines until the attempt's tasks have stopped.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The Sequence's namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// AWS region of the tasks (default: the Sequence's, else the standard AWS chain).
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct TriggerArgs {
    /// The ScheduledSequence.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Which resource.
    #[arg(value_enum, default_value_t = CrdKind::Sequence)]
    pub kind: CrdKind,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CrdKind {
    Sequence,
    Scheduledsequence,
    Sequencepolicy,
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SEQUENCER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Default AWS region for Sequences that name none.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Seconds between two looks at a running task, for Sequences without pollIntervalSeconds.
    #[arg(long, value_name = "SECONDS", env = "SEQUENCER_POLL_INTERVAL", default_value_t = DEFAULT_POLL_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_interval: u64,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "SEQUENCER_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: std::net::SocketAddr,
    /// Lead through a Lease so that only one of several replicas works at a time.
    #[arg(long, env = "SEQUENCER_LEADER_ELECTION")]
    pub leader_election: bool,
    /// The Lease's name (a named shard adds `-<shard>`).
    #[arg(long, default_value = "sequencer-controller")]
    pub lease_name: String,
    /// Own only the Sequences and ScheduledSequences labelled `sequencer.dev/shard=<SHARD>`
    /// (default: the default shard, which owns every object no other shard does).
    #[arg(long, env = "SEQUENCER_SHARD", value_name = "SHARD")]
    pub shard: Option<String>,
    /// Every named shard, comma-separated: the default shard leaves their objects to them.
    #[arg(
        long,
        env = "SEQUENCER_SHARDS",
        value_name = "SHARD,...",
        value_delimiter = ','
    )]
    pub shards: Vec<String>,
    /// The Lease's namespace (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease and in its Events (default: the pod's name, else host
    /// name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// plain: human-readable lines; json: one JSON object per line, with the span fields.
    #[arg(long, value_enum, env = "SEQUENCER_LOG_FORMAT", default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// ECS calls per second, per operation and region, sustained (ECS throttles each account
    /// per region; leave room for its other users).
    #[arg(long, env = "SEQUENCER_ECS_CALLS_PER_SECOND", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ecs_calls_per_second: u32,
    /// ECS calls per operation that may go at once after a quiet spell.
    #[arg(long, env = "SEQUENCER_ECS_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ecs_burst: u32,
    /// Requests per second to the Kubernetes API server, sustained (the Lease has its own client).
    #[arg(long, env = "SEQUENCER_KUBE_QPS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub kube_qps: u32,
    /// Requests to the Kubernetes API server that may go at once after a quiet spell.
    #[arg(long, env = "SEQUENCER_KUBE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub kube_burst: u32,
    /// Sequences reconciled at the same time, at most (the others wait their turn in the queue).
    #[arg(long, env = "SEQUENCER_MAX_CONCURRENT_RECONCILES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub max_concurrent_reconciles: u16,
    /// Push updates: the SQS queue an EventBridge rule sends ECS "Task State Change" events to.
    /// A task an event names is described at once; the rest only every
    /// --task-events-poll-interval seconds, as a safety net for late or lost events.
    #[arg(long, env = "SEQUENCER_TASK_EVENTS_QUEUE_URL", value_name = "URL")]
    pub task_events_queue_url: Option<String>,
    /// With push updates, seconds between two looks at a task no event names.
    #[arg(long, env = "SEQUENCER_TASK_EVENTS_POLL_INTERVAL", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub task_events_poll_interval: u64,
    /// What Sequences may run in a namespace that no SequencePolicy selects: allow (anything:
    /// single-tenant installs) or deny (nothing: every tenant namespace needs a policy).
    #[arg(long, value_enum, env = "SEQUENCER_UNSELECTED_NAMESPACES", default_value_t = UnselectedNamespaces::Allow)]
    pub unselected_namespaces: UnselectedNamespaces,
    /// ECS calls waiting for an answer at one time, per region.
    #[arg(long, env = "SEQUENCER_ECS_MAX_IN_FLIGHT", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ecs_max_in_flight: u32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnselectedNamespaces {
    Allow,
    Deny,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The batch: a file path, s3://bucket/key[?versionId=V] or git+URL//PATH[?ref=REF].
    #[arg(env = "SEQUENCER_YAML_S3_PATH")]
    pub batch: Option<String>,
    /// Print the exact RunTask requests as JSON and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the run's status in this file; running the same command again resumes the run.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds between two looks at running tasks.
    #[arg(long, value_name = "SECONDS", env = "SEQUENCER_SLEEP_BETWEEN_CHECKS", default_value_t = DEFAULT_POLL_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_interval: u64,
    /// human: lines to follow; json: one JSON object per event.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// AWS region (default: the standard AWS chain, else us-east-1 as the seed did).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The batch: a file path, s3://bucket/key[?versionId=V] or git+URL//PATH[?ref=REF].
    #[arg(env = "SEQUENCER_YAML_S3_PATH")]
    pub batch: Option<String>,
    /// human: a short report; json: the steps as sequencer understood them.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
}
