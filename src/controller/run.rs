//! Starting and stopping the controller: the HTTP endpoints, leader election, the shared poller
//! and the watch of Sequences, wired together; SIGTERM and lost leadership end them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter as EventReporter};
use kube::runtime::watcher;
use tokio::sync::watch;

use super::{Context, FIELD_MANAGER, error_policy, reconcile};
use crate::aws_clients::AwsClients;
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::poller::Poller;
use crate::sequence::Sequence;
use crate::server::Health;

/// How the controller runs (from `sequencer controller`'s flags).
pub struct Settings {
    /// Watch only this namespace.
    pub namespace: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_address: SocketAddr,
    /// Lead through this Lease; `None` runs without leader election (one replica).
    pub leader_election: Option<LeaseConfig>,
    /// Seconds between two looks at a task, for Sequences without `spec.pollIntervalSeconds`.
    pub default_poll_interval_seconds: u64,
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
}

/// Runs the controller until SIGTERM or Ctrl-C (a second one exits at once). Shutting down lets
/// in-flight reconciles finish their writes and leaves ECS tasks running: the next controller
/// resumes them from `.status`.
pub async fn run(client: Client, aws: Arc<AwsClients>, settings: Settings) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (listener, address) =
        crate::server::bind(settings.http_address)
            .await
            .map_err(|source| RunError::Bind {
                address: settings.http_address,
                source,
            })?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(crate::server::serve(
        listener,
        health.clone(),
        metrics.clone(),
        stopped(stop.clone()),
    ));
    tokio::spawn(async move {
        let reason = crate::cli::wait_for_signal().await;
        tracing::info!(%reason, "shutting down: finishing in-flight reconciles; ECS tasks keep running");
        let _ = stop_tx.send(true);
        let reason = crate::cli::wait_for_signal().await;
        tracing::warn!(%reason, "second signal: exiting now");
        std::process::exit(130);
    });

    let mut elector = settings
        .leader_election
        .map(|config| LeaderElector::new(client.clone(), config));
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

    let (poller, mut woken) = Poller::new(metrics.clone());
    tokio::spawn(
        poller
            .clone()
            .run(aws.clone(), ending(stop.clone(), lost.clone())),
    );

    // Through DeserializeGuard, a Sequence that cannot be decoded (the API server keeps
    // `success.containers` as written) is handed to reconcile as an error instead of failing the
    // whole watch, which would stall every other Sequence.
    let sequences: Api<DeserializeGuard<Sequence>> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let recorder = Recorder::new(
        client.clone(),
        EventReporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client,
        aws,
        recorder,
        poller,
        metrics: metrics.clone(),
        default_poll_interval_seconds: settings.default_poll_interval_seconds,
    });
    let controller = Controller::new(sequences, watcher::Config::default().any_semantic());
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
    let wakes = futures::stream::poll_fn(move |cx| woken.poll_recv(cx));
    controller
        .reconcile_on(wakes)
        .graceful_shutdown_on(ending(stop, lost.clone()))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        })
        .await;
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
