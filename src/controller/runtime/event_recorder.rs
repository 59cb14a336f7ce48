//! Publishes Kubernetes Events (`events.k8s.io/v1`) and folds an Event that repeats within
//! [`SERIES_WINDOW`] into a series on the first one (`series.count`, `series.lastObservedTime`),
//! as the Events API intends, so a Sequence that keeps failing the same way does not flood the
//! API server with copies.
//!
//! Why not kube's `Recorder`: it remembers every Event it published for six minutes as a whole
//! `Event` object, and sweeps that whole memory, under one lock shared by all reconciles, on every
//! publish. At 10,000 Sequences that is tens of thousands of objects held and scanned per Event.
//! It also folds Events whose notes differ. Here an Event is remembered as a 64-bit digest of what
//! makes it the same (the object, type, reason, action and note) plus the name to patch, the
//! memory is bounded by [`MAX_REMEMBERED`], and it is swept at most every [`SWEEP_EVERY`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;

use crate::controller::runtime::metrics::{Metrics, OutcomeLabel};

/// How long a repeat is folded into the earlier Event (client-go and kube use the same).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// At most this many Events are remembered; beyond it a new Event is published but not
/// remembered, so its repeats become Events of their own until the memory is swept.
pub const MAX_REMEMBERED: usize = 20_000;
/// Expired memories are dropped at most this often (a sweep visits every remembered Event).
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// What became of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new Event was created.
    Created,
    /// The Event repeated one published within the window: its series count went up.
    Repeated,
}

/// An Event published earlier, by the name to patch when it repeats.
struct Remembered {
    namespace: String,
    name: String,
    count: i32,
    last_observed: Timestamp,
}

struct Memory {
    events: HashMap<u64, Remembered>,
    swept_at: Timestamp,
}

/// Publishes Events for every object of the controller; cheap to clone (one shared memory).
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Arc<Reporter>,
    hasher: RandomState,
    memory: Arc<Mutex<Memory>>,
    metrics: Arc<Metrics>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        EventRecorder {
            client,
            reporter: Arc::new(reporter),
            hasher: RandomState::new(),
            memory: Arc::new(Mutex::new(Memory {
                events: HashMap::new(),
                swept_at: Timestamp::now(),
            })),
            metrics,
        }
    }

    /// Publishes `event` about `regarding`: creates it, or counts it in the series of the same
    /// Event published within the window.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<Published, kube::Error> {
        let published = self.publish_uncounted(event, regarding).await;
        let outcome = match &published {
            Ok(Published::Created) => "created",
            Ok(Published::Repeated) => "repeated",
            Err(_) => "failed",
        };
        let label = OutcomeLabel {
            outcome: outcome.into(),
        };
        self.metrics.events.get_or_create(&label).inc();
        published
    }

    async fn publish_uncounted(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<Published, kube::Error> {
        let now = Timestamp::now();
        let key = self.key(event, regarding);
        let earlier = self.recall(key, now);
        if let Some((namespace, name, count)) = earlier {
            let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let series = json!({ "series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(Published::Repeated),
                // Deleted meanwhile (by its TTL or by hand): publish it anew.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = self.new_event(event, regarding, now);
        let namespace = created.metadata.namespace.clone().unwrap_or_default();
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &created).await?;
        self.remember(
            key,
            namespace,
            created.metadata.name.unwrap_or_default(),
            now,
        );
        Ok(Published::Created)
    }

    /// How many Events are remembered for folding repeats.
    pub fn remembered(&self) -> usize {
        self.lock().events.len()
    }

    /// The digest of what makes two Events the same one.
    fn key(&self, event: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = self.hasher.build_hasher();
        (
            &regarding.uid,
            &regarding.namespace,
            &regarding.name,
            &regarding.kind,
        )
            .hash(&mut h);
        (event.type_ == EventType::Warning).hash(&mut h);
        (&event.reason, &event.action, &event.note).hash(&mut h);
        h.finish()
    }

    /// The earlier Event this one repeats, with its next count, counted at once so that two
    /// repeats racing each other do not both write the same count.
    fn recall(&self, key: u64, now: Timestamp) -> Option<(String, String, i32)> {
        let mut memory = self.lock();
        if memory.events.get(&key)?.last_observed + SERIES_WINDOW <= now {
            memory.events.remove(&key);
            return None;
        }
        let earlier = memory.events.get_mut(&key)?;
        // A first Event counts as one occurrence; its first repeat makes a series of two.
        earlier.count = earlier.count.saturating_add(1);
        earlier.last_observed = now;
        Some((
            earlier.namespace.clone(),
            earlier.name.clone(),
            earlier.count,
        ))
    }

    fn remember(&self, key: u64, namespace: String, name: String, now: Timestamp) {
        let mut memory = self.lock();
        if memory.swept_at + SWEEP_EVERY <= now || memory.events.len() >= MAX_REMEMBERED {
            memory
                .events
                .retain(|_, e| e.last_observed + SERIES_WINDOW > now);
            memory.swept_at = now;
        }
        if memory.events.len() < MAX_REMEMBERED {
            memory.events.insert(
                key,
                Remembered {
                    namespace,
                    name,
                    count: 1,
                    last_observed: now,
                },
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory is only a hint for folding: a panic elsewhere leaves it usable.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        let object = regarding.name.as_deref().unwrap_or(controller);
        K8sEvent {
            metadata: ObjectMeta {
                // Events of cluster-scoped objects live in "default", as kubectl looks for them.
                namespace: Some(regarding.namespace.clone().unwrap_or("default".into())),
                // client-go's naming: the object's name and the time in hex nanoseconds.
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            reason: Some(event.reason.clone()),
            action: Some(event.action.clone()),
            note: event.note.clone(),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }
}

/// The Events API keeps at most this many bytes of a note.
pub const NOTE_MAX_BYTES: usize = 1024;

/// Publishes one Event about an object as a whole; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &EventRecorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_as(recorder, reference, type_, reason, "Reconcile", note).await;
}

/// Publishes one Event, its action named (a Sequence's step and attempt, say).
pub async fn publish_as(
    recorder: &EventRecorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(within_bytes(note, NOTE_MAX_BYTES)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not publish an event");
    }
}

/// `text` cut to at most `max` bytes, on a character boundary (the API server counts bytes).
fn within_bytes(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    fn recorder() -> EventRecorder {
        let (service, _) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = Reporter {
            controller: "sequencer-controller".into(),
            instance: None,
        };
        EventRecorder::new(Client::new(service, "default"), reporter, Arc::default())
    }

    fn at(minutes: i64, seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH
            + SignedDuration::from_mins(minutes)
            + SignedDuration::from_secs(seconds)
    }

    #[tokio::test]
    async fn a_repeat_extends_the_window_and_one_after_it_starts_afresh() {
        let r = recorder();
        r.remember(7, "etl".into(), "nightly.1".into(), at(0, 0));
        assert_eq!(
            r.recall(7, at(5, 0)),
            Some(("etl".into(), "nightly.1".into(), 2))
        );
        // Six minutes after the last repeat, not after the first Event.
        assert_eq!(
            r.recall(7, at(10, 59)),
            Some(("etl".into(), "nightly.1".into(), 3))
        );
        assert_eq!(r.recall(7, at(16, 59)), None);
        assert_eq!(r.remembered(), 0, "the expired memory is dropped");
        assert_eq!(r.recall(8, at(0, 0)), None, "never published");
    }

    #[tokio::test]
    async fn the_memory_is_bounded_and_swept() {
        let r = recorder();
        for key in 0..=MAX_REMEMBERED as u64 {
            r.remember(key, "etl".into(), format!("e.{key}"), at(0, 1));
        }
        assert_eq!(r.remembered(), MAX_REMEMBERED);
        assert_eq!(
            r.recall(MAX_REMEMBERED as u64, at(0, 2)),
            None,
            "published beyond the bound, not remembered"
        );
        // Once the window has passed, the next Event sweeps every expired one.
        r.remember(u64::MAX, "etl".into(), "late".into(), at(7, 0));
        assert_eq!(r.remembered(), 1);
    }

    #[test]
    fn notes_are_cut_by_bytes_on_a_character_boundary() {
        let text = "é".repeat(600); // 1,200 bytes
        let cut = within_bytes(&text, NOTE_MAX_BYTES);
        assert_eq!(cut.len(), 1024);
        assert_eq!(within_bytes("abc", 2), "ab");
        assert_eq!(within_bytes(&"é".repeat(3), 5), "éé");
    }
}
