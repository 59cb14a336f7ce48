//! One reconcile of one Sequence: resolve its plan, drive the engine from `.status`, write
//! `.status` before every action, publish what happened, and say when to look again. Deleting a
//! Sequence stops its tasks first (finalizer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ResourceExt};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use sequencer_core::observation::Observation;
use tracing::Instrument;

use crate::api::guarded_sequence::GuardedSequence;
use crate::api::labels::FINALIZER;
use crate::api::sequence::Sequence;
use crate::controller::error::Error;
use crate::controller::runtime::cache::slim;
use crate::controller::runtime::metrics::KindLabel;
use crate::controller::sequence::apply::apply;
use crate::controller::sequence::cleanup::cleanup;
use crate::controller::sequence::context::Context;
use crate::controller::sequence::undecodable::refuse_undecodable;

pub fn error_policy(_: Arc<GuardedSequence>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel {
            kind: error.metric_label().into(),
        })
        .inc();
    // Conflicts resolve on the next read; stops are acknowledged within seconds; other errors
    // are usually transient API trouble.
    match error.innermost() {
        Error::Conflict => {
            tracing::debug!("status write conflicted; reconciling again from the stored status");
            Action::requeue(Duration::from_millis(200))
        }
        Error::TasksStopping => Action::requeue(Duration::from_secs(1)),
        // Waits for the status to be repaired; a change of the Sequence wakes it sooner.
        Error::HeldOnDeletion => Action::requeue(Duration::from_secs(60)),
        e => {
            tracing::warn!(error = %e, "reconcile failed; trying again in 5 s");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

pub async fn reconcile(guard: Arc<GuardedSequence>, ctx: Arc<Context>) -> Result<Action, Error> {
    // `sequence`, not `name`: a JSON log line already uses `name` for the span's own name.
    let span = tracing::info_span!(
        "reconcile",
        namespace = guard.namespace().unwrap_or_default(),
        sequence = guard.name_any()
    );
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_guarded(guard, &ctx).instrument(span).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_guarded(guard: Arc<GuardedSequence>, ctx: &Context) -> Result<Action, Error> {
    let Some(guard) = latest(guard, ctx).await? else {
        return Ok(Action::await_change());
    };
    let seq = match &guard.0 {
        Ok(seq) => Arc::new(seq.clone()),
        Err(invalid) => return refuse_undecodable(invalid, ctx).await,
    };
    let api: Api<Sequence> =
        Api::namespaced(ctx.client.clone(), &seq.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, seq, |event| async {
        match event {
            Finalizer::Apply(seq) => apply(&api, &seq, ctx, vec![Observation::Tick]).await,
            Finalizer::Cleanup(seq) => cleanup(&api, &seq, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The cached copy, or the stored object when the cache has not caught up with this controller's
/// last write of it (see `freshness`); `None` when it is gone.
async fn latest(
    cached: Arc<GuardedSequence>,
    ctx: &Context,
) -> Result<Option<Arc<GuardedSequence>>, Error> {
    let uid = cached.uid();
    if ctx
        .freshness
        .is_current(uid.as_deref(), cached.resource_version().as_deref())
    {
        return Ok(Some(cached));
    }
    ctx.metrics.stale_cache_reads.inc();
    let api: Api<GuardedSequence> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    match api.get_opt(&cached.name_any()).await? {
        Some(mut stored) if stored.uid() == uid => {
            slim(&mut stored);
            tracing::debug!(
                cached = cached.resource_version(),
                stored = stored.resource_version(),
                "the cache is behind this controller's last write: using the stored Sequence"
            );
            ctx.freshness
                .saw(uid.as_deref(), stored.resource_version().as_deref());
            Ok(Some(Arc::new(stored)))
        }
        // Deleted (or deleted and created again: the new one arrives through the watch).
        _ => {
            ctx.freshness.forget(uid.as_deref());
            Ok(None)
        }
    }
}
