//! Which SequencePolicies govern a namespace, kept current by watches of the policies and of
//! Namespace labels, and what a namespace that no policy selects may do. The allow-list rule
//! itself is `sequencer_core::policy`; the check happens in `plan_source` (a run about to start)
//! and `reconcile` (a started run before its next launch).
//!
//! Nothing is judged before both watches have listed everything once: a controller that has not
//! seen the policies yet would otherwise let everything through.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PartialObjectMeta, ResourceExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::api::conditions::POLICY_DENIED;
use crate::api::guarded_sequence::GuardedSequence;
use crate::api::sequence_policy::SequencePolicy;

/// The SequencePolicies governing a Sequence's namespace (none: anything goes), or why it may run
/// nothing at all.
pub type Governing = Result<Vec<Arc<SequencePolicy>>, String>;

/// What happens in a namespace that no SequencePolicy selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unselected {
    /// Anything may run (single-tenant installs).
    #[default]
    Allow,
    /// Nothing may run: every namespace must be given a policy.
    Deny,
}

/// The policies and namespaces seen, and whether both have been listed once.
#[derive(Clone)]
pub struct Tenancy {
    /// `None` when the SequencePolicy CRD is not installed: no policy exists.
    policies: Option<Store<SequencePolicy>>,
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    unselected: Unselected,
    /// `None`: nothing to wait for.
    synced: Option<watch::Receiver<bool>>,
    changed: watch::Receiver<u64>,
}

/// Why the controller cannot judge policies at all.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(
        "cannot list SequencePolicies (is the controller allowed to? it needs get, list and watch on sequencepolicies.sequencer.dev cluster-wide): {0}"
    )]
    CannotListPolicies(#[source] kube::Error),
    #[error(
        "cannot list Namespaces (is the controller allowed to? it needs get, list and watch on namespaces to match SequencePolicy selectors): {0}"
    )]
    CannotListNamespaces(#[source] kube::Error),
}

impl Tenancy {
    /// Starts the watches. Without the SequencePolicy CRD no policy exists (an install from before
    /// it): namespaces are then treated as unselected.
    pub async fn start(
        client: &kube::Client,
        namespace: Option<&str>,
        unselected: Unselected,
    ) -> Result<Self, TenancyError> {
        let policies_api: Api<SequencePolicy> = Api::all(client.clone());
        let installed = match policies_api
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(e) => return Err(TenancyError::CannotListPolicies(e)),
        };
        let namespaces_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        // In single-namespace mode only that namespace's labels matter.
        let namespaces_config = match namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let mut probe = ListParams::default().limit(1);
        probe.field_selector = namespaces_config.field_selector.clone();
        namespaces_api
            .list(&probe)
            .await
            .map_err(TenancyError::CannotListNamespaces)?;

        let (changed_tx, changed) = watch::channel(0u64);
        let changed_tx = Arc::new(changed_tx);
        let (synced_tx, synced) = watch::channel(false);
        let (namespaces_synced_tx, namespaces_synced) = watch::channel(false);
        let (ns_reader, ns_writer) = reflector::store();
        let ns_stream = watcher(namespaces_api, namespaces_config)
            .default_backoff()
            .reflect(ns_writer);
        tokio::spawn(follow(ns_stream, namespaces_synced_tx, changed_tx.clone()));
        let policies = if installed {
            let (reader, writer) = reflector::store();
            let stream = watcher(policies_api, watcher::Config::default())
                .default_backoff()
                .reflect(writer);
            let (policies_synced_tx, policies_synced) = watch::channel(false);
            tokio::spawn(follow(stream, policies_synced_tx, changed_tx.clone()));
            tokio::spawn(both_synced(policies_synced, namespaces_synced, synced_tx));
            Some(reader)
        } else {
            tracing::warn!(
                "the SequencePolicy CRD is not installed: no namespace is governed by a policy (install crds/ to use them)"
            );
            tokio::spawn(both_synced(
                namespaces_synced.clone(),
                namespaces_synced,
                synced_tx,
            ));
            None
        };
        Ok(Tenancy {
            policies,
            namespaces: Some(ns_reader),
            unselected,
            synced: Some(synced),
            changed,
        })
    }

    /// No policies and no watches: everything is allowed (tests and tools without a cluster).
    pub fn allow_all() -> Self {
        let (_, changed) = watch::channel(0);
        Tenancy {
            policies: None,
            namespaces: None,
            unselected: Unselected::Allow,
            synced: None,
            changed,
        }
    }

    /// Waits until the policies and namespaces have been listed once.
    pub async fn synced(&self) {
        let Some(mut synced) = self.synced.clone() else {
            return;
        };
        if synced.wait_for(|s| *s).await.is_err() {
            // The watches ended without listing everything: judging now could let through what a
            // policy forbids, so nothing is judged (the process is shutting down anyway).
            std::future::pending::<()>().await;
        }
    }

    /// A receiver that changes whenever a policy or a namespace does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Whether the namespace watch has seen `namespace`. A Sequence's namespace exists, so a miss
    /// means the watch has not caught up (a Namespace and its Sequences applied together, as
    /// GitOps does): judged now, its labels would read as none, and a policy selecting it by label
    /// would not govern it, letting a run start under the open default and the wrong identity.
    pub fn knows(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|store| store.find(|n| n.name_any() == namespace).is_some())
    }

    /// The policies governing `namespace`, by name; `Err` with the reason when none does and
    /// unselected namespaces are denied.
    pub fn governing(&self, namespace: &str) -> Governing {
        let labels = self
            .namespaces
            .as_ref()
            .and_then(|store| store.find(|n| n.name_any() == namespace))
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let mut governing: Vec<Arc<SequencePolicy>> = self
            .policies
            .as_ref()
            .map(|store| store.state())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.spec.selects(namespace, &labels))
            .collect();
        governing.sort_by_key(|p| p.name_any());
        if governing.is_empty() && self.unselected == Unselected::Deny {
            return Err(format!(
                "namespace {namespace} is not selected by any SequencePolicy, and this controller denies such namespaces (--unselected-namespaces=deny): ask an admin for a policy"
            ));
        }
        Ok(governing)
    }
}

/// Whether a SequencePolicy refused the Sequence or holds its run.
pub fn refused_by_policy(guarded: &GuardedSequence) -> bool {
    let conditions = guarded
        .0
        .as_ref()
        .ok()
        .and_then(|seq| seq.status.as_ref())
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    conditions
        .iter()
        .any(|c| c.status == "True" && c.reason == POLICY_DENIED)
}

/// Drives one watch, says when it has listed everything once, and counts every change after.
async fn follow<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    synced: watch::Sender<bool>,
    changed: Arc<watch::Sender<u64>>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                synced.send_replace(true);
                changed.send_modify(|n| *n += 1);
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                changed.send_modify(|n| *n += 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the watch of SequencePolicies or Namespaces failed; retrying")
            }
        }
    }
}

async fn both_synced(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
    both: watch::Sender<bool>,
) {
    if a.wait_for(|s| *s).await.is_ok() && b.wait_for(|s| *s).await.is_ok() {
        both.send_replace(true);
        // Kept alive so that `synced()` waiters never see a closed channel as "not yet".
        both.closed().await;
    }
}

/// After each change of the policies or namespaces (gathered for a second), the objects in `store`
/// that `refused` says a policy refused or held: they are judged again at once.
pub fn wakes<K>(
    changes: watch::Receiver<u64>,
    store: Store<K>,
    refused: impl Fn(&K) -> bool + Send + 'static,
) -> impl futures::Stream<Item = reflector::ObjectRef<K>> + Send
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    futures::stream::unfold(
        (changes, store, refused),
        |(mut changes, store, refused)| async move {
            changes.changed().await.ok()?;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            changes.mark_unchanged();
            let woken: Vec<reflector::ObjectRef<K>> = store
                .state()
                .iter()
                .filter(|o| refused(o))
                .map(|o| reflector::ObjectRef::from_obj(o.as_ref()))
                .collect();
            if !woken.is_empty() {
                tracing::info!(
                    count = woken.len(),
                    "SequencePolicies or namespaces changed: judging refused and held Sequences again"
                );
            }
            Some((futures::stream::iter(woken), (changes, store, refused)))
        },
    )
    .flatten()
}
