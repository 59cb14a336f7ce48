//! Sequences as the watch and the lists hand them over, whatever is wrong with them.
//!
//! A watched Sequence is a [`GuardedSequence`]: the decoded Sequence, or the error and the
//! metadata. One bad object must never fail the list or the watch itself, or every other Sequence
//! would stall with it. kube's own `DeserializeGuard` buffers the whole object into a tree first,
//! so an object nested deeper than serde_json's recursion limit (128) fails the list and blinds
//! the controller; here the object is captured as raw JSON text first (serde_json skips over raw
//! values without recursing), then decoded from that text. How an undecodable Sequence is refused
//! is the controller's (`controller::sequence::undecodable`).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::error_boundary::InvalidObject;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::api::sequence::Sequence;

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
pub struct RawSequence {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<RawValue>>,
}

sequence_resource!(RawSequence, |s| &s.metadata, |s| &mut s.metadata);

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
