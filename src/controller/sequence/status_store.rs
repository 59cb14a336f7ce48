//! `KubeStore`: the run's status kept in the Sequence's `.status`, written through the status
//! subresource by one field manager, with the last seen resourceVersion as precondition, so that
//! status is never written from a stale read (a conflict ends the reconcile; the next one starts
//! from what is stored).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::api::{Api, PostParams, ResourceExt};

use std::sync::Arc;

use crate::api::conditions::HELD;
use crate::api::json_text::JsonText;
use crate::api::sequence::{PinnedSpec, Sequence, SequenceStatus};
use crate::controller::error::Error;
use crate::controller::runtime::freshness::Freshness;
use crate::controller::runtime::kube_client::FIELD_MANAGER;
use crate::controller::sequence::conditions::{self, conditions, held};
use crate::drive::StatusStore;
use sequencer_core::plan::Plan;
use sequencer_core::status::{RunStatus, StepPhase};

pub struct KubeStore {
    api: Api<Sequence>,
    object: Sequence,
    /// Told each written version and each conflict (see `freshness`).
    freshness: Arc<Freshness>,
    /// The steps and their origin, written with the first status of the run.
    pub plan: Option<JsonText>,
    pub pinned: Option<PinnedSpec>,
    pub spec_changed: Option<String>,
    /// Why no new step or attempt may launch (reason, message): kept as the `Held` condition
    /// beside the run's own, which goes on being recorded.
    pub launch_hold: Option<(&'static str, String)>,
}

impl KubeStore {
    pub fn new(api: Api<Sequence>, seq: &Sequence, freshness: Arc<Freshness>) -> Self {
        KubeStore {
            api,
            object: seq.clone(),
            freshness,
            plan: None,
            pinned: None,
            spec_changed: None,
            launch_hold: None,
        }
    }

    /// The object as last read or written.
    pub fn object(&self) -> &Sequence {
        &self.object
    }

    async fn write(&mut self, status: SequenceStatus) -> Result<(), Error> {
        let mut object = self.object.clone();
        object.status = Some(status);
        let uid = object.meta().uid.clone();
        match replace_status_guarded(&self.api, object).await {
            Ok(stored) => {
                self.freshness
                    .saw(uid.as_deref(), stored.meta().resource_version.as_deref());
                self.object = stored;
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::Conflict) {
                    self.freshness.conflicted(uid.as_deref());
                }
                Err(e)
            }
        }
    }

    /// Reports why the Sequence cannot run (condition Failed with `reason`); launches nothing.
    /// Returns whether the status changed (false when it already said so).
    pub async fn refuse(&mut self, reason: &str, message: &str) -> Result<bool, Error> {
        let previous = self.object.status.clone().unwrap_or_default();
        let status = refused_status(
            &previous.conditions,
            reason,
            message,
            self.object.meta().generation,
            self.object.spec.suspend,
        );
        if self.object.status.as_ref() == Some(&status) {
            return Ok(false);
        }
        self.write(status).await.map(|()| true)
    }

    /// Holds the Sequence: its stored status stays exactly as it is (a run this controller cannot
    /// read is never overwritten or restarted) but for the `Held` condition saying why. Returns
    /// whether the status changed (false when it already said so).
    pub async fn hold(&mut self, reason: &str, message: &str) -> Result<bool, Error> {
        let mut status = self.object.status.clone().unwrap_or_default();
        let generation = self.object.meta().generation;
        status.conditions = held(
            &status.conditions,
            reason,
            message,
            generation,
            Timestamp::now(),
        );
        if self.object.status.as_ref() == Some(&status) {
            return Ok(false);
        }
        self.write(status).await.map(|()| true)
    }

    /// The status a run maps to, conditions included.
    fn status_for(&self, run: &RunStatus) -> SequenceStatus {
        let previous = self.object.status.clone().unwrap_or_default();
        let done = run.steps.iter().filter(|s| s.phase.is_terminal()).count();
        let current_step_name = run
            .current_step
            .and_then(|i| run.steps.get(i))
            .filter(|s| s.phase == StepPhase::Running)
            .map(|s| s.name.clone());
        let spec_changed = self.spec_changed.as_deref();
        let ctx = conditions::Context {
            generation: self.object.meta().generation,
            suspended: self.object.spec.suspend,
            refused: None,
            spec_changed,
        };
        SequenceStatus {
            phase: Some(format!("{:?}", run.phase)),
            progress: Some(format!("{done}/{}", run.total_steps)),
            current_step_name,
            observed_generation: self.object.meta().generation,
            run: JsonText::of(run),
            plan: self.plan.clone().or(previous.plan),
            pinned: self.pinned.clone().or(previous.pinned),
            conditions: {
                let now = Timestamp::now();
                let derived = conditions(&previous.conditions, run, &ctx, now);
                match &self.launch_hold {
                    // The previous Held keeps its transition time (`held` looks it up there).
                    Some((reason, message)) => {
                        let mut with_previous_held = derived;
                        with_previous_held.extend(
                            previous
                                .conditions
                                .iter()
                                .filter(|c| c.type_ == HELD)
                                .cloned(),
                        );
                        let generation = self.object.meta().generation;
                        held(&with_previous_held, reason, message, generation, now)
                    }
                    None => derived,
                }
            },
        }
    }

    /// Brings the conditions and observedGeneration up to date when the run itself did not change
    /// (e.g. the spec was edited): nothing is written if nothing differs.
    pub async fn refresh(&mut self, run: &RunStatus) -> Result<(), Error> {
        let status = self.status_for(run);
        if self.object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write(status).await
    }
}

/// The status of a Sequence that cannot run: phase Failed, condition Failed with `reason` and
/// `message`, no run. Shared by every refusal, decodable Sequence or not.
pub fn refused_status(
    previous: &[Condition],
    reason: &str,
    message: &str,
    generation: Option<i64>,
    suspended: bool,
) -> SequenceStatus {
    let run = RunStatus::new(String::new(), &Plan::new(vec![]));
    let ctx = conditions::Context {
        refused: Some((reason, message)),
        generation,
        suspended,
        spec_changed: None,
    };
    SequenceStatus {
        phase: Some("Failed".into()),
        observed_generation: generation,
        conditions: conditions(previous, &run, &ctx, Timestamp::now()),
        ..Default::default()
    }
}

/// The one way `.status` is written: a replace through the status subresource by the controller's
/// field manager, carrying the resourceVersion `object` was read at, so a write from a stale read
/// fails with a conflict instead of overwriting what another writer stored. Returns the object as
/// stored.
pub async fn replace_status_guarded<K>(api: &Api<K>, mut object: K) -> Result<K, Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    object.meta_mut().managed_fields = None;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .replace_status(&object.name_any(), &params, &object)
        .await
    {
        Ok(stored) => Ok(stored),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict),
        Err(e) => Err(Error::Kube(e)),
    }
}

impl StatusStore for KubeStore {
    type Error = Error;

    async fn save(&mut self, run: &RunStatus) -> Result<(), Error> {
        let status = self.status_for(run);
        // Already stored as it is (the run differs only in what is never kept, such as a task's
        // run tag): a write would change nothing but the resourceVersion.
        if self.object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write(status).await
    }
}

#[cfg(test)]
mod tests {
    //! The exact requests a status write makes (tower-test stands in for the API server).
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    use super::*;
    use crate::api::sequence::SequenceSpec;
    use sequencer_core::plan::Plan;

    fn sequence() -> Sequence {
        let mut seq = Sequence::new(
            "nightly",
            SequenceSpec {
                steps: vec![],
                source: None,
                poll_interval_seconds: None,
                active_deadline_seconds: None,
                suspend: false,
                region: None,
            },
        );
        seq.metadata.namespace = Some("etl".into());
        seq.metadata.resource_version = Some("42".into());
        seq.metadata.generation = Some(3);
        seq.metadata.uid = Some("0b5c8a52-0000-4000-8000-000000000001".into());
        seq
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    /// A store whose API server is the returned handle.
    fn mocked_store() -> (KubeStore, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        (
            KubeStore::new(Api::namespaced(client, "etl"), &sequence(), Arc::default()),
            handle,
        )
    }

    async fn answer(
        handle: &mut Handle,
        code: u16,
        body: serde_json::Value,
    ) -> (Request<Body>, serde_json::Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let (parts, body_in) = request.into_parts();
        let bytes = body_in.collect_bytes().await.expect("body");
        let sent: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON body");
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        (Request::from_parts(parts, Body::empty()), sent)
    }

    #[tokio::test]
    async fn a_status_write_is_a_put_to_the_status_subresource_carrying_the_read_version() {
        let (mut store, mut handle) = mocked_store();
        let run = RunStatus::new("run-1".into(), &Plan::new(vec![]));
        let server = tokio::spawn(async move {
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Conflict", "code": 409,
                "message": "Operation cannot be fulfilled: the object has been modified"});
            answer(&mut handle, 409, conflict).await
        });
        let result = store.save(&run).await;
        let (request, sent) = server.await.unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(
            request.uri().path(),
            "/apis/sequencer.dev/v1alpha1/namespaces/etl/sequences/nightly/status"
        );
        let query: Vec<&str> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .collect();
        assert_eq!(query, vec!["fieldManager=sequencer-controller"]);
        assert_eq!(sent["metadata"]["resourceVersion"], "42", "{sent}");
        assert_eq!(sent["status"]["observedGeneration"], 3);
        assert_eq!(sent["status"]["progress"], "0/0");
        assert!(sent["metadata"].get("managedFields").is_none());
        assert!(
            matches!(result, Err(Error::Conflict)),
            "a 409 is a Conflict: {result:?}"
        );
    }

    #[tokio::test]
    async fn saving_what_is_already_stored_sends_nothing() {
        let (mut store, mut handle) = mocked_store();
        let run = RunStatus::new("run-1".into(), &Plan::new(vec![]));
        let server = tokio::spawn(async move {
            let (request, sent) = {
                let (request, send) = handle.next_request().await.expect("a request");
                let (parts, body) = request.into_parts();
                let sent: serde_json::Value =
                    serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap();
                let mut stored = sent.clone();
                stored["metadata"]["resourceVersion"] = json!("43");
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&stored).unwrap()))
                        .unwrap(),
                );
                (parts, sent)
            };
            let more =
                tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
            (request.method.clone(), sent, more.is_ok())
        });
        store.save(&run).await.expect("the first write");
        store.save(&run).await.expect("nothing to write");
        let (method, sent, more) = server.await.unwrap();
        assert_eq!(method, Method::PUT);
        assert_eq!(sent["status"]["progress"], "0/0");
        assert!(!more, "a second request for the same status");
        // A change is written again.
        let mut changed = run.clone();
        changed.message = Some("changed".into());
        assert_ne!(store.status_for(&changed), store.status_for(&run));
    }

    #[tokio::test]
    async fn after_a_write_the_next_one_carries_the_version_the_server_returned() {
        let (mut store, mut handle) = mocked_store();
        let run = RunStatus::new("run-1".into(), &Plan::new(vec![]));
        let server = tokio::spawn(async move {
            let mut stored = serde_json::to_value(sequence()).unwrap();
            stored["metadata"]["resourceVersion"] = json!("43");
            let (_, first) = answer(&mut handle, 200, stored).await;
            let (_, second) = answer(&mut handle, 200, json!({})).await;
            (first, second)
        });
        store.save(&run).await.expect("first write");
        let _ = store.refuse("InvalidSpec", "spec.steps[0]: bad").await;
        let (first, second) = server.await.unwrap();
        assert_eq!(first["metadata"]["resourceVersion"], "42");
        assert_eq!(second["metadata"]["resourceVersion"], "43");
        assert_eq!(second["status"]["phase"], "Failed");
        let failed = second["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .cloned()
            .unwrap();
        assert_eq!(failed["reason"], "InvalidSpec");
        assert_eq!(failed["message"], "spec.steps[0]: bad");
    }
}
