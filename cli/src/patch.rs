//! JSON merge patches (RFC 7386) for `mir device update`, and what an edit changed.

use serde_json::{json, Map, Value};

use mir_shared::domain::Twin;

/// What `mir device update` changes; `None`/empty leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUpdate {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub set_labels: std::collections::BTreeMap<String, String>,
    pub remove_labels: Vec<String>,
    pub set_annotations: std::collections::BTreeMap<String, String>,
    pub remove_annotations: Vec<String>,
    pub disabled: Option<bool>,
}

impl DeviceUpdate {
    pub fn is_empty(&self) -> bool {
        self.to_patch() == json!({})
    }

    /// The merge patch: `{"meta": {"labels": {"k": "v", "gone": null}}, "spec": {...}}`.
    pub fn to_patch(&self) -> Value {
        let mut meta = Map::new();
        if let Some(n) = &self.name {
            meta.insert("name".into(), n.clone().into());
        }
        if let Some(ns) = &self.namespace {
            meta.insert("namespace".into(), ns.clone().into());
        }
        let labels = map_patch(&self.set_labels, &self.remove_labels);
        if !labels.is_empty() {
            meta.insert("labels".into(), Value::Object(labels));
        }
        let annotations = map_patch(&self.set_annotations, &self.remove_annotations);
        if !annotations.is_empty() {
            meta.insert("annotations".into(), Value::Object(annotations));
        }
        let mut patch = Map::new();
        if !meta.is_empty() {
            patch.insert("meta".into(), Value::Object(meta));
        }
        if let Some(d) = self.disabled {
            patch.insert("spec".into(), json!({ "disabled": d }));
        }
        Value::Object(patch)
    }
}

fn map_patch(
    set: &std::collections::BTreeMap<String, String>,
    remove: &[String],
) -> Map<String, Value> {
    let mut m = Map::new();
    for k in remove.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        m.insert(k.to_string(), Value::Null);
    }
    for (k, v) in set {
        m.insert(k.clone(), v.clone().into());
    }
    m
}

/// Applies a merge patch (RFC 7386) to `target` (the API's own implementation).
pub use mir_shared::api::merge_patch as merge;

/// Parts of a twin an operator cannot change that differ in `edited` (status, reported
/// properties, the device id): they are ignored by the API.
pub fn read_only_changes(original: &Twin, edited: &Twin) -> Vec<&'static str> {
    let mut out = Vec::new();
    if original.spec.device_id != edited.spec.device_id {
        out.push("spec.deviceId");
    }
    if original.properties.reported != edited.properties.reported {
        out.push("properties.reported");
    }
    if original.status != edited.status {
        out.push("status");
    }
    out
}

/// True when an edit changes something editable (meta, spec.disabled, desired).
pub fn editable_changed(original: &Twin, edited: &Twin) -> bool {
    original.meta != edited.meta
        || original.spec.disabled != edited.spec.disabled
        || original.properties.desired != edited.properties.desired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_flags_become_a_merge_patch() {
        let mut u = DeviceUpdate::default();
        assert!(u.is_empty());
        u.set_labels.insert("floor".into(), "2".into());
        u.remove_labels.push("old".into());
        u.disabled = Some(true);
        u.name = Some("w1".into());
        let p = u.to_patch();
        assert_eq!(
            p,
            json!({"meta": {"name": "w1", "labels": {"floor": "2", "old": null}}, "spec": {"disabled": true}})
        );
        assert!(!u.is_empty());
    }

    #[test]
    fn merge_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge(&mut doc, &json!({"a": {"b": "c"}, "n": {"x": null}}));
        assert_eq!(doc, json!({"a": {"b": "c"}, "n": {}}));
        let mut doc = json!({"meta": {"labels": {"old": "1", "k": "v"}}});
        let mut u = DeviceUpdate::default();
        u.remove_labels.push("old".into());
        u.set_labels.insert("k".into(), "w".into());
        merge(&mut doc, &u.to_patch());
        assert_eq!(doc, json!({"meta": {"labels": {"k": "w"}}}));
    }

    #[test]
    fn edits_of_read_only_parts_are_detected() {
        let original = Twin::default();
        let mut edited = original.clone();
        assert!(!editable_changed(&original, &edited));
        edited.status.online = true;
        edited.meta.labels.insert("a".into(), "b".into());
        assert_eq!(read_only_changes(&original, &edited), ["status"]);
        assert!(editable_changed(&original, &edited));
    }
}
