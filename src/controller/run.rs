//! Starting and stopping the controller: the HTTP endpoints, leader election, the shared poller
//! and the watch of Sequences, wired together; SIGTERM and lost leadership end them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter as EventReporter;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

use crate::api::guarded_sequence::GuardedSequence;
use crate::api::labels::SCHEDULED_BY;
use crate::api::scheduled_sequence::ScheduledSequence;
use crate::api::sequence::Sequence;
use crate::controller::runtime::cache::slim;
use crate::controller::runtime::event_recorder::EventRecorder;
use crate::controller::runtime::freshness::Freshness;
use crate::controller::runtime::kube_client::FIELD_MANAGER;
use crate::controller::runtime::leader::{LeaderElector, LeaseConfig};
use crate::controller::runtime::metrics::Metrics;
use crate::controller::runtime::server::Health;
use crate::controller::runtime::shard::Shard;
use crate::controller::schedule;
use crate::controller::schedule::context::ScheduleContext;
use crate::controller::sequence;
use crate::controller::sequence::cleanup::let_go;
use crate::controller::sequence::context::Context;
use crate::controller::tasks::poller::{Poller, Woken};
use crate::controller::tasks::task_events::TaskEventQueue;
use crate::controller::tenancy::policies::{
    Tenancy, TenancyError, Unselected, refused_by_policy, wakes,
};
use crate::ecs::clients::AwsClients;
use crate::shutdown::wait_for_signal;

/// How the controller runs (from `sequencer controller`'s flags).
pub struct Settings {
    /// Watch only this namespace.
    pub namespace: Option<String>,
    /// Own only this shard's Sequences and ScheduledSequences.
    pub shard: Shard,
    /// This replica's name in its Events (the pod's name in a cluster).
    pub instance: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_address: SocketAddr,
    /// Lead through this Lease; `None` runs without leader election (one replica).
    pub leader_election: Option<LeaseConfig>,
    /// Seconds between two looks at a task, for Sequences without `spec.pollIntervalSeconds`.
    pub default_poll_interval_seconds: u64,
    /// Sequences reconciled at the same time, at most.
    pub max_concurrent_reconciles: u16,
    /// Push updates from an SQS queue of ECS task state changes; `None` polls only.
    pub task_events: Option<TaskEventSettings>,
    /// What Sequences may do in a namespace no SequencePolicy selects.
    pub unselected_namespaces: Unselected,
}

/// Where pushed task state changes arrive, and the safety-net poll beside them.
pub struct TaskEventSettings {
    pub queue_url: String,
    pub poll_interval_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot serve health and metrics on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader Lease; exiting so that this replica restarts as a candidate")]
    LeadershipLost,
    #[error(
        "the Sequence CRD (sequences.sequencer.dev) is not installed in this cluster: install it with `kubectl apply -f crds/` (or the Helm chart), then start the controller again"
    )]
    CrdMissing,
    #[error("cannot list Sequences (is the controller allowed to? see its RBAC): {0}")]
    CannotListSequences(#[source] kube::Error),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
}

/// Runs the controller until SIGTERM or Ctrl-C (a second one exits at once). Shutting down lets
/// in-flight reconciles finish their writes and leaves ECS tasks running: the next controller
/// resumes them from `.status`.
/// `client` does the work (paced, see `kube_client`); `lease_client` only keeps the Lease.
pub async fn run(
    client: Client,
    lease_client: Client,
    aws: Arc<AwsClients>,
    settings: Settings,
) -> Result<(), RunError> {
    check_crd_installed(&client, settings.namespace.as_deref()).await?;
    let namespace = settings.namespace.as_deref();
    let tenancy = Tenancy::start(&client, namespace, settings.unselected_namespaces).await?;
    tracing::info!(shard = %settings.shard, "owning the Sequences of this shard");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = serve_until_signalled(settings.http_address, &health, &metrics).await?;

    let mut elector = settings
        .leader_election
        .map(|config| LeaderElector::new(lease_client, config));
    if let Some(elector) = &mut elector {
        // A standby is ready: it serves and will take over when the leader goes.
        health.set_ready(true);
        tracing::info!(identity = %elector.identity(), "waiting to become the leader");
        tokio::select! {
            _ = elector.acquire() => {}
            _ = stopped(stop.clone()) => return Ok(()),
        }
        health.set_ready(false);
    }
    metrics.leader.set(1);

    // Leadership lost ends the controller at once, like a shutdown, but exits with an error.
    let (lost_tx, lost) = watch::channel(false);
    let keeper = elector.map(|mut elector| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = elector.keep() => { let _ = lost_tx.send(true); }
                _ = stopped(stop) => {}
            }
            elector
        })
    });

    let floor = settings
        .task_events
        .as_ref()
        .map_or(1, |t| t.poll_interval_seconds);
    let (poller, woken) = Poller::with_interval_floor(metrics.clone(), floor);
    tokio::spawn(
        poller
            .clone()
            .run(aws.clone(), ending(stop.clone(), lost.clone())),
    );
    if let Some(task_events) = &settings.task_events {
        let queue = TaskEventQueue::new(
            aws.sqs(&task_events.queue_url),
            task_events.queue_url.clone(),
        );
        tokio::spawn(queue.listen(
            poller.clone(),
            metrics.clone(),
            ending(stop.clone(), lost.clone()),
        ));
    }
    let recorder = EventRecorder::new(
        client.clone(),
        EventReporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        },
        metrics.clone(),
    );
    let schedules = reconcile_schedules(
        Arc::new(ScheduleContext {
            client: client.clone(),
            recorder: recorder.clone(),
            metrics: metrics.clone(),
            freshness: Freshness::default(),
        }),
        settings.namespace.clone(),
        settings.shard.clone(),
        ending(stop.clone(), lost.clone()),
    );
    let ctx = Arc::new(Context {
        recorder,
        client,
        aws,
        poller,
        metrics: metrics.clone(),
        default_poll_interval_seconds: settings.default_poll_interval_seconds,
        freshness: Arc::default(),
        tenancy,
    });
    let shutdown = ending(stop, lost.clone());
    let concurrency = settings.max_concurrent_reconciles;
    let sequences = reconcile_sequences(
        ctx,
        concurrency,
        settings.namespace.as_deref(),
        &settings.shard,
        &health,
        woken,
        shutdown,
    );
    tokio::join!(sequences, schedules);

    health.set_ready(false);
    metrics.leader.set(0);
    if *lost.borrow() {
        return Err(RunError::LeadershipLost);
    }
    if let Some(keeper) = keeper
        && let Ok(mut elector) = keeper.await
    {
        elector.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Fails with a clear message when the Sequence CRD is not installed (or the controller may not
/// list Sequences), instead of a watch that fails later and retries forever.
async fn check_crd_installed(client: &Client, namespace: Option<&str>) -> Result<(), RunError> {
    let api: Api<Sequence> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(RunError::CrdMissing),
        Err(source) => Err(RunError::CannotListSequences(source)),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics`, and turns the first SIGTERM or Ctrl-C into the
/// returned stop flag (a second one exits at once).
async fn serve_until_signalled(
    address: SocketAddr,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<watch::Receiver<bool>, RunError> {
    let (listener, bound) = crate::controller::runtime::server::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })?;
    tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(crate::controller::runtime::server::serve(
        listener,
        health.clone(),
        metrics.clone(),
        stopped(stop.clone()),
    ));
    tokio::spawn(async move {
        let reason = wait_for_signal().await;
        tracing::info!(%reason, "shutting down: finishing in-flight reconciles; ECS tasks keep running");
        let _ = stop_tx.send(true);
        let reason = wait_for_signal().await;
        tracing::warn!(%reason, "second signal: exiting now");
        std::process::exit(130);
    });
    Ok(stop)
}

/// Watches Sequences and reconciles them, woken also by the poller, until `shutdown`; in-flight
/// reconciles finish first. Ready once the watch has synced.
async fn reconcile_sequences(
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<&str>,
    shard: &Shard,
    health: &Arc<Health>,
    woken: Woken,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Through GuardedSequence, a Sequence that cannot be decoded (a bad `success.containers`, a
    // value nested past any decoder's limit) is handed to reconcile as an error instead of failing
    // the whole watch, which would stall every other Sequence.
    let sequences: Api<GuardedSequence> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let config = watcher::Config::default().any_semantic();
    let config = match shard.selector() {
        Some(selector) => config.labels(&selector),
        None => config,
    };
    // The cache keeps each Sequence without what the controller never reads (see `slim`).
    let (reader, writer) = reflector::store();
    let gone_ctx = ctx.clone();
    let watch = watcher(sequences, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| {
            // Deleted, or no longer selected (relabelled to another shard): nothing of it is
            // kept here, so that the old shard neither polls its tasks nor holds its session.
            if let Ok(watcher::Event::Delete(gone)) = event {
                let_go(kube::Resource::meta(gone), &gone_ctx);
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(watch, reader);
    let store = controller.store();
    let ready = health.clone();
    tokio::spawn(async move {
        // The controller waits on the same store, and of two concurrent waiters kube-runtime
        // 5.0 wakes only the last to poll: ask again every half second instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    tracing::info!("the watch of Sequences has synced: ready");
                    ready.set_ready(true);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the watch of Sequences ended before it synced");
                    return;
                }
                Err(_) => {}
            }
        }
    });
    // Woken by the poller, and again when a policy change may allow what a policy refused.
    let policy_wakes = wakes(ctx.tenancy.changes(), controller.store(), refused_by_policy);
    let wakes = futures::stream::select(woken.stream(), policy_wakes);
    // Bounded: a restart or a burst of creations queues Sequences instead of holding every one
    // of them in memory mid-reconcile at once (the API and ECS paces bound the work anyway).
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .reconcile_on(wakes)
        .graceful_shutdown_on(shutdown)
        .run(
            sequence::reconcile::reconcile,
            sequence::reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        })
        .await;
}

/// Watches ScheduledSequences and the Sequences they own, and reconciles them until `shutdown`.
/// Without the ScheduledSequence CRD (an install from before it existed) schedules are off and
/// Sequences are served as before.
async fn reconcile_schedules(
    ctx: Arc<ScheduleContext>,
    namespace: Option<String>,
    shard: Shard,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (parents, runs): (Api<ScheduledSequence>, Api<GuardedSequence>) = match &namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    if let Err(kube::Error::Api(status)) =
        parents.list_metadata(&ListParams::default().limit(1)).await
        && status.code == 404
    {
        tracing::warn!(
            "the ScheduledSequence CRD is not installed: schedules are off (install crds/ to turn them on)"
        );
        shutdown.await;
        return;
    }
    // A schedule's runs carry its shard label (see `schedule::new_run::run_for`).
    let runs_config = watcher::Config::default().labels(&shard.selector_and(SCHEDULED_BY));
    let parents_config = watcher::Config::default().any_semantic();
    let parents_config = match shard.selector() {
        Some(selector) => parents_config.labels(&selector),
        None => parents_config,
    };
    Controller::new(parents, parents_config)
        .owns(runs, runs_config)
        .graceful_shutdown_on(shutdown)
        .run(
            schedule::reconcile::reconcile,
            schedule::reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "schedule reconcile ended with an error");
            }
        })
        .await;
}

/// Resolves once `flag` is true; never if its sender goes without setting it.
async fn stopped(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves on shutdown or on lost leadership.
async fn ending(stop: watch::Receiver<bool>, lost: watch::Receiver<bool>) {
    tokio::select! {
        _ = stopped(stop) => {}
        _ = stopped(lost) => {}
    }
}
