//! The PATCH flavours of the Kubernetes API: JSON merge patch (RFC 7386), strategic merge
//! patch, JSON patch (RFC 6902) and — approximated as a strategic merge of the applied
//! configuration — server-side apply.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch type, chosen by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json` (what Patroni and kubectl send).
    StrategicMerge,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Maps a `Content-Type` header (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// How a list field merges under a strategic merge patch.
enum ListStrategy {
    /// Elements are objects identified by this key.
    MergeByKey(&'static str),
    /// A set of primitives (union).
    MergePrimitives,
}

/// The merge keys of the built-in types, keyed by field name only. Field names are
/// unambiguous enough across Pod/Service/StatefulSet for this to match the real
/// `patchMergeKey` tags; lists without an entry (e.g. Endpoints `subsets`, `tolerations`)
/// are atomic and replaced, as in Kubernetes.
fn list_strategy(
    field: &str,
    patch_items: &[Value],
    target_items: &[Value],
) -> Option<ListStrategy> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "finalizers" => return Some(ListStrategy::MergePrimitives),
        // Container ports merge by containerPort, Service ports by port.
        "ports" => {
            let has = |k: &str| {
                patch_items
                    .iter()
                    .chain(target_items)
                    .any(|i| i.get(k).is_some())
            };
            if has("containerPort") {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    };
    Some(ListStrategy::MergeByKey(key))
}

/// Strategic merge patch: a merge patch that merges known lists element-wise and honours
/// the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/…` and `$setElementOrder/…`
/// directives (the latter only stripped: element order is not significant here).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(strip_directives(replaced));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive $patch: {other}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let obj = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) =
                (obj.get_mut(field), value.as_array())
            {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue; // $setElementOrder/…, $retainKeys (handled below), $patch
        }
        if value.is_null() {
            obj.remove(key);
            continue;
        }
        match (obj.get_mut(key), value) {
            (Some(Value::Array(existing)), Value::Array(items)) => {
                match list_strategy(key, items, existing) {
                    Some(ListStrategy::MergeByKey(merge_key)) => {
                        merge_list_by_key(existing, items, merge_key)?
                    }
                    Some(ListStrategy::MergePrimitives) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    None => *existing = items.iter().cloned().map(strip_value).collect(),
                }
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                strategic_merge_patch(existing, value)?
            }
            _ => {
                obj.insert(key.clone(), strip_value(value.clone()));
            }
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        obj.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list_by_key(
    existing: &mut Vec<Value>,
    items: &[Value],
    merge_key: &str,
) -> Result<(), ApiError> {
    // A `{"$patch": "replace"}` element means "the rest of this list replaces the stored one".
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .map(strip_value)
            .collect();
        return Ok(());
    }
    for item in items {
        let Some(key_value) = item.get(merge_key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {merge_key}"
            )));
        };
        let position = existing
            .iter()
            .position(|e| e.get(merge_key) == Some(key_value));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge_patch(&mut existing[i], item)?,
            (None, false) => existing.push(strip_value(item.clone())),
        }
    }
    Ok(())
}

/// Removes `$…` directive keys (and `null`s, which mean "absent" in a patch) from a value
/// that is being inserted wholesale.
fn strip_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directives(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_value).collect()),
        other => other,
    }
}

fn strip_directives(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k, strip_value(v)))
        .collect()
}

/// RFC 6902 JSON patch. Errors are 422 Invalid, as the real server reports a failed
/// `test` or a missing path.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("json patch operation without path: {op}"))
        })?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("json patch operation without value: {op}"))
            })
        };
        let from = || {
            op.get("from").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("json patch operation without from: {op}"))
            })
        };
        match name {
            "add" => pointer_add(target, path, value()?)?,
            "remove" => {
                pointer_remove(target, path)?;
            }
            "replace" => {
                let slot = target.pointer_mut(path).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                *slot = value()?;
            }
            "move" => {
                let moved = pointer_remove(target, from()?)?;
                pointer_add(target, path, moved)?;
            }
            "copy" => {
                let source = from()?;
                let copied = target.pointer(source).cloned().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "copy operation does not apply: doc is missing from path: {source}"
                    ))
                })?;
                pointer_add(target, path, copied)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(ApiError::invalid(format!("testing value {path} failed")));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected json patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(&str, String), ApiError> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..idx], last))
}

fn pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let missing = || {
        ApiError::invalid(format!(
            "add operation does not apply: doc is missing path: {path}"
        ))
    };
    match target.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>().map_err(|_| missing())?
            };
            if index > items.len() {
                return Err(missing());
            }
            items.insert(index, value);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || {
        ApiError::invalid(format!(
            "remove operation does not apply: doc is missing path: {path}"
        ))
    };
    match target.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let index = last.parse::<usize>().map_err(|_| missing())?;
            if index >= items.len() {
                return Err(missing());
            }
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_nulls_and_replaces_lists() {
        let mut doc = json!({"metadata": {"annotations": {"leader": "a", "ttl": "20"}}, "subsets": [{"a": 1}]});
        merge_patch(
            &mut doc,
            &json!({"metadata": {"annotations": {"leader": null, "x": "y"}}, "subsets": []}),
        );
        assert_eq!(
            doc,
            json!({"metadata": {"annotations": {"ttl": "20", "x": "y"}}, "subsets": []})
        );
    }

    #[test]
    fn strategic_merge_merges_containers_and_ports_by_key() {
        let mut doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        strategic_merge_patch(
            &mut doc,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [
                {"name": "a", "ports": [{"containerPort": 443, "name": "https"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ]}}),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_merge_replaces_atomic_lists_and_honours_directives() {
        let mut doc = json!({"subsets": [{"addresses": [{"ip": "1"}]}], "metadata": {"finalizers": ["a"]}, "spec": {"x": 1, "y": 2}});
        strategic_merge_patch(
            &mut doc,
            &json!({"subsets": [{"addresses": [{"ip": "2"}]}], "metadata": {"finalizers": ["b"]},
                    "spec": {"$retainKeys": ["y", "z"], "z": 3}}),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"subsets": [{"addresses": [{"ip": "2"}]}], "metadata": {"finalizers": ["a", "b"]}, "spec": {"y": 2, "z": 3}})
        );
        strategic_merge_patch(&mut doc, &json!({"spec": {"$patch": "replace", "w": 0}})).unwrap();
        assert_eq!(doc["spec"], json!({"w": 0}));
        let err = strategic_merge_patch(
            &mut doc,
            &json!({"spec": {"containers": []}, "x": {"containers": [{"image": "x"}]}}),
        );
        assert!(err.is_ok(), "a new list is inserted as-is");
        let mut doc = json!({"containers": [{"name": "a"}]});
        assert_eq!(
            strategic_merge_patch(&mut doc, &json!({"containers": [{"image": "x"}]}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut doc = json!({"a": {"b": [1, 2]}, "c": "d", "e/f": 1});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/c", "value": "d"},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "add", "path": "/a/b/0", "value": 0},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "replace", "path": "/c", "value": "x"},
                {"op": "copy", "from": "/c", "path": "/g"},
                {"op": "move", "from": "/e~1f", "path": "/h"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"a": {"b": [0, 2, 3]}, "c": "x", "g": "x", "h": 1})
        );
        let err = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/c", "value": "nope"}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/zz"}]))
                .unwrap_err()
                .code,
            422
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
