//! The controller's Event recorder against a real kube-apiserver: a repeat of the same Event (same
//! object, reason, action and note) within the window becomes a series on the first Event; an
//! Event that differs in anything, note included, is an Event of its own; an Event deleted
//! meanwhile is published anew.

mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use sequencer::controller::runtime::event_recorder::{EventRecorder, Published};
use sequencer::controller::runtime::metrics::{Metrics, OutcomeLabel};
use serde_json::json;
use support::apiserver::KubeServer;

fn event(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Step1Attempt1".into(),
        secondary: None,
    }
}

async fn regarding(client: &kube::Client, name: &str) -> ObjectReference {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    maps.create(&PostParams::default(), &map)
        .await
        .unwrap()
        .object_ref(&())
}

/// The Events about `object`, oldest first, as (reason, note, series count).
async fn events_about(client: &kube::Client, object: &str) -> Vec<(String, String, Option<i32>)> {
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let mut list: Vec<K8sEvent> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map(|s| s.count),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn repeats_become_a_series_and_different_events_stay_apart() {
    let server = KubeServer::start();
    let client = server.client().await;
    let metrics = Arc::new(Metrics::new());
    let recorder = EventRecorder::new(
        client.clone(),
        Reporter {
            controller: "sequencer-controller".into(),
            instance: Some("test-replica".into()),
        },
        metrics.clone(),
    );
    let nightly = regarding(&client, "nightly").await;
    let other = regarding(&client, "other").await;

    let throttled = event("LaunchRetried", "RunTask was throttled; retrying");
    for expected in [Published::Created, Published::Repeated, Published::Repeated] {
        assert_eq!(
            recorder.publish(&throttled, &nightly).await.unwrap(),
            expected
        );
    }
    // Same reason and action, another note: not folded into the first (kube's Recorder would).
    let capacity = event("LaunchRetried", "no capacity in us-east-1a; retrying");
    assert_eq!(
        recorder.publish(&capacity, &nightly).await.unwrap(),
        Published::Created
    );
    // The same Event about another object is that object's own.
    assert_eq!(
        recorder.publish(&throttled, &other).await.unwrap(),
        Published::Created
    );

    assert_eq!(
        events_about(&client, "nightly").await,
        vec![
            (
                "LaunchRetried".into(),
                "RunTask was throttled; retrying".into(),
                Some(3)
            ),
            (
                "LaunchRetried".into(),
                "no capacity in us-east-1a; retrying".into(),
                None
            ),
        ]
    );
    assert_eq!(
        events_about(&client, "other").await,
        vec![(
            "LaunchRetried".into(),
            "RunTask was throttled; retrying".into(),
            None
        )]
    );
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let all = events.list(&ListParams::default()).await.unwrap().items;
    assert!(all.iter().all(|e| {
        e.reporting_controller.as_deref() == Some("sequencer-controller")
            && e.reporting_instance.as_deref() == Some("test-replica")
            && e.type_.as_deref() == Some("Warning")
            && e.action.as_deref() == Some("Step1Attempt1")
    }));

    // Deleted meanwhile (by hand, or by the API server's Event TTL): the repeat is published
    // anew instead of failing on the missing Event.
    let first = all
        .iter()
        .find(|e| e.series.is_some())
        .and_then(|e| e.metadata.name.clone())
        .unwrap();
    events
        .delete(&first, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        recorder.publish(&throttled, &nightly).await.unwrap(),
        Published::Created
    );
    assert_eq!(
        events_about(&client, "nightly").await,
        vec![
            (
                "LaunchRetried".into(),
                "no capacity in us-east-1a; retrying".into(),
                None
            ),
            (
                "LaunchRetried".into(),
                "RunTask was throttled; retrying".into(),
                None
            ),
        ]
    );

    let count = |outcome: &str| {
        metrics
            .events
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .get()
    };
    assert_eq!((count("created"), count("repeated")), (4, 2));
    assert_eq!(count("failed"), 0);
    assert_eq!(recorder.remembered(), 3);
}
