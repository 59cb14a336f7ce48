//! What the controller keeps of each watched object in memory: only what it reads. At 10,000
//! Sequences the managed fields and kubectl's last-applied copy were most of the cache.

/// Drops from a cached Sequence what the controller never reads and the API server keeps anyway:
/// the managed fields and kubectl's copy of the last applied object (as large as the spec again).
/// Status writes go through the status subresource, which ignores metadata, so nothing dropped
/// here is ever written back.
pub fn slim<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sequence::Sequence;

    #[test]
    fn a_slim_sequence_keeps_all_but_managed_fields_and_the_last_applied_copy() {
        let mut seq: Sequence = serde_json::from_value(serde_json::json!({
            "apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
            "metadata": {"name": "n", "namespace": "d", "resourceVersion": "7",
                "finalizers": ["sequencer.dev/stop-tasks"], "labels": {"team": "a"},
                "annotations": {LAST_APPLIED: "{\"a huge\": \"copy\"}", "note": "kept"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"steps": []}
        }))
        .unwrap();
        let before = seq.clone();
        slim(&mut seq);
        assert_eq!(seq.metadata.managed_fields, None);
        let annotations = seq.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
        assert_eq!(seq.metadata.finalizers, before.metadata.finalizers);
        assert_eq!(seq.metadata.labels, before.metadata.labels);
        assert_eq!(
            seq.metadata.resource_version,
            before.metadata.resource_version
        );
        assert_eq!(seq.spec, before.spec);

        let mut only_last_applied = before;
        only_last_applied
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("note");
        slim(&mut only_last_applied);
        assert_eq!(only_last_applied.metadata.annotations, None);
    }
}
