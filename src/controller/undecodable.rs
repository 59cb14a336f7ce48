//! Sequences the controller cannot decode, whatever is wrong with them, and how they are refused.
//!
//! The watch hands every Sequence over as a [`GuardedSequence`]: the decoded Sequence, or the
//! error and the metadata. One bad object must never fail the list or the watch itself, or every
//! other Sequence would stall with it. kube's own `DeserializeGuard` buffers the whole object
//! into a tree first, so an object nested deeper than serde_json's recursion limit (128) fails the
//! list and blinds the controller; here the object is captured as raw JSON text first (serde_json
//! skips over raw values without recursing), then decoded from that text.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use kube::api::Api;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::conditions::held;
use super::events::publish;
use super::plan_source::step_problems;
use super::sequence::Sequence;
use super::status_store::{refused_status, replace_status_guarded};
use super::{Context, Error};

/// A watched Sequence: decoded, or the reason it could not be and its metadata.
#[derive(Debug, Clone)]
pub struct GuardedSequence(pub Result<Sequence, InvalidObject>);

impl<'de> Deserialize<'de> for GuardedSequence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(GuardedSequence::from_json(raw.get()))
    }
}

impl GuardedSequence {
    pub fn from_json(text: &str) -> GuardedSequence {
        match serde_json::from_str::<Sequence>(text) {
            Ok(seq) => GuardedSequence(Ok(seq)),
            Err(error) => {
                #[derive(Deserialize)]
                struct MetadataOnly {
                    #[serde(default)]
                    metadata: ObjectMeta,
                }
                let metadata = serde_json::from_str::<MetadataOnly>(text)
                    .map(|m| m.metadata)
                    .unwrap_or_default();
                GuardedSequence(Err(InvalidObject {
                    error: describe(&error),
                    metadata,
                }))
            }
        }
    }
}

/// serde_json's message without its position (a column in the API server's serialization of the
/// whole object, which moves with every write and means nothing to the author), with the one case
/// a reader would not guess from it spelled out.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(message, _)| message);
    if text.contains("recursion limit exceeded") {
        "it is nested more than 128 levels deep; no Sequence needs that, remove the deep value"
            .to_owned()
    } else {
        text.to_owned()
    }
}

/// A view of a Sequence is the same Kubernetes resource: kind, group, version and plural are
/// the Sequence's; only where the metadata lives differs.
macro_rules! sequence_resource {
    ($view:ty, |$s:ident| $meta:expr, |$m:ident| $meta_mut:expr) => {
        impl Resource for $view {
            type DynamicType = ();
            type Scope = <Sequence as Resource>::Scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Sequence::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                Sequence::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                Sequence::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Sequence::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                let $s = self;
                $meta
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                let $m = self;
                $meta_mut
            }
        }
    };
}

sequence_resource!(
    GuardedSequence,
    |s| s.0.as_ref().map_or_else(|e| &e.metadata, Sequence::meta),
    |s| s
        .0
        .as_mut()
        .map_or_else(|e| &mut e.metadata, Sequence::meta_mut)
);

/// A Sequence as stored, its spec and status kept as raw JSON text: readable and writable however
/// deep or malformed they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawSequence {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Box<RawValue>>,
}

sequence_resource!(RawSequence, |s| &s.metadata, |s| &mut s.metadata);

/// A Sequence that cannot be decoded: report it on the object itself (condition and Warning Event)
/// and wait for a change. A run already under way is held, its status kept as it is; one that
/// never started is refused. Written the same guarded way as every other status.
pub async fn refuse_undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Ok(Action::await_change());
    };
    let api: Api<RawSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = api.get(&name).await?;
    let spec = current
        .spec
        .as_deref()
        .map(|raw| serde_json::from_str::<Value>(raw.get()));
    // The batch checker on the raw steps names the key path and the closest known key; serde's
    // own message is the fallback.
    let located = match spec {
        Some(Ok(spec)) => located_problems(&spec),
        _ => None,
    };
    let message = format!(
        "the Sequence cannot be read: {}",
        located.unwrap_or_else(|| invalid.error.to_string())
    );
    tracing::warn!(%message, "refusing an undecodable Sequence");
    let reference = ObjectReference {
        api_version: Some(current.api_version.clone()),
        kind: Some(current.kind.clone()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    let status = match current.status.as_deref() {
        None => Some(Value::Null),
        Some(raw) => serde_json::from_str::<Value>(raw.get()).ok(),
    };
    // A status this controller cannot even parse is never overwritten: the Event alone says why.
    let Some(status) = status else {
        warn(ctx, &reference, &message).await;
        return Ok(Action::await_change());
    };
    let Some(status) = status_for(&status, &message, meta.generation)? else {
        return Ok(Action::await_change());
    };
    current.status =
        Some(RawValue::from_string(status.to_string()).map_err(kube::Error::SerdeError)?);
    replace_status_guarded(&api, current).await?;
    warn(ctx, &reference, &message).await;
    Ok(Action::await_change())
}

/// The status to write, or None when the stored one already says so.
fn status_for(
    status: &Value,
    message: &str,
    generation: Option<i64>,
) -> Result<Option<Value>, Error> {
    let reason = "InvalidSpec";
    let previous: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let new = if status.get("run").is_some() {
        let conditions = held(&previous, reason, message, generation, Timestamp::now());
        if conditions == previous {
            return Ok(None);
        }
        let mut status = status.clone();
        status["conditions"] =
            serde_json::to_value(&conditions).map_err(kube::Error::SerdeError)?;
        status
    } else {
        let refused = refused_status(&previous, reason, message, generation, false);
        if refused.conditions == previous {
            return Ok(None);
        }
        serde_json::to_value(&refused).map_err(kube::Error::SerdeError)?
    };
    Ok(Some(new))
}

/// The problems of the raw `spec.steps` as the batch checker sees them (every one, with its key
/// path and what is allowed), if it finds any.
pub fn located_problems(spec: &Value) -> Option<String> {
    let steps = spec.get("steps")?.as_array()?;
    let bodies = steps.iter().map(|step| {
        let mut body = step.clone();
        let name = body.as_object_mut().and_then(|o| o.remove("name"));
        let name = name.and_then(|n| n.as_str().map(String::from));
        (name.unwrap_or_default(), body)
    });
    let problems = step_problems(bodies);
    (!problems.is_empty()).then(|| problems.join("; "))
}

async fn warn(ctx: &Context, reference: &ObjectReference, message: &str) {
    publish(
        &ctx.recorder,
        reference,
        EventType::Warning,
        "InvalidSpec",
        message,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;

    use super::*;

    fn nested(depth: usize) -> String {
        let mut value = String::from("0");
        for _ in 0..depth {
            value = format!("{{\"a\":{value}}}");
        }
        value
    }

    #[test]
    fn a_list_with_one_pathologically_deep_item_still_decodes_the_others() {
        let good = r#"{"apiVersion":"sequencer.dev/v1alpha1","kind":"Sequence","metadata":{"name":"good","namespace":"ns"},"spec":{"steps":[]}}"#;
        let deep = format!(
            r#"{{"apiVersion":"sequencer.dev/v1alpha1","kind":"Sequence","metadata":{{"name":"deep","namespace":"ns"}},"spec":{{"steps":[{{"name":"a","type":"ecs_task","parameters":{{}},"x":{}}}]}}}}"#,
            nested(5000)
        );
        let list = format!(r#"{{"items":[{deep},{good}]}}"#);
        #[derive(Deserialize)]
        struct List {
            items: Vec<GuardedSequence>,
        }
        let list: List = serde_json::from_str(&list).expect("the list decodes");
        let invalid = list.items[0]
            .0
            .as_ref()
            .expect_err("the deep one is invalid");
        assert_eq!(invalid.metadata.name.as_deref(), Some("deep"));
        assert!(
            invalid.error.contains("nested more than 128 levels"),
            "{}",
            invalid.error
        );
        assert_eq!(
            list.items[1].0.as_ref().expect("decoded").name_any(),
            "good"
        );
    }
}
