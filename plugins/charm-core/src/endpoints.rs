//! `PD.app["endpoints"]` bookkeeping (spec 2.3.2): a JSON list of member `<host>` names.
//!
//! The functions are pure list transformations; writing the databag (leader only) is the
//! caller's job. Rendering uses Python's `json.dumps` format so that Python and Rust units
//! write identical strings.

use crate::json::{self, Json, JsonError};
use crate::names;
use core::fmt;

/// Why an endpoints operation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointsError {
    /// The databag value is not JSON.
    Json(JsonError),
    /// The JSON is not a list of strings.
    NotAStringList,
    /// Removing an entry that is not in the list. Upstream's `list.remove` raises
    /// `ValueError` here and the hook fails; callers normally only remove stored entries.
    NotPresent(String),
}

impl fmt::Display for EndpointsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointsError::Json(e) => write!(f, "endpoints is not valid JSON: {e}"),
            EndpointsError::NotAStringList => write!(f, "endpoints is not a JSON list of strings"),
            EndpointsError::NotPresent(e) => write!(f, "cannot remove {e:?}: not in endpoints"),
        }
    }
}

impl std::error::Error for EndpointsError {}

/// Parse the databag value; an absent key means `"[]"` (upstream `get("endpoints", "[]")`).
pub fn parse(value: Option<&str>) -> Result<Vec<String>, EndpointsError> {
    let text = value.unwrap_or("[]");
    match Json::parse(text).map_err(EndpointsError::Json)? {
        Json::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Json::Str(s) => Ok(s),
                _ => Err(EndpointsError::NotAStringList),
            })
            .collect(),
        _ => Err(EndpointsError::NotAStringList),
    }
}

/// Render like Python's `json.dumps(list)`: `["a", "b"]`.
pub fn render<S: AsRef<str>>(endpoints: &[S]) -> String {
    json::dumps_str_list(endpoints)
}

/// `_add_to_endpoints`: append with **no** duplicate check (spec 2.3.2 quirk; callers
/// usually check first, `add_cluster_member` does not).
pub fn add(endpoints: &mut Vec<String>, host: &str) {
    endpoints.push(host.to_owned());
}

/// `_remove_from_endpoints`: remove the first occurrence of each entry of `to_remove`, in
/// order. A missing entry is an error, as upstream's `list.remove` raises (the list is left
/// with the removals done so far).
pub fn remove(endpoints: &mut Vec<String>, to_remove: &[String]) -> Result<(), EndpointsError> {
    for entry in to_remove {
        match endpoints.iter().position(|e| e == entry) {
            Some(i) => {
                endpoints.remove(i);
            }
            None => return Err(EndpointsError::NotPresent(entry.clone())),
        }
    }
    Ok(())
}

/// Membership test of spec 2.3.2 (`<host> ∈ endpoints`).
pub fn contains(endpoints: &[String], host: &str) -> bool {
    endpoints.iter().any(|e| e == host)
}

/// `_get_endpoints_to_remove`: stored endpoints whose host matches none of the current pods.
///
/// Upstream computes a Python set difference, whose iteration order is arbitrary; here the
/// result is deduplicated and in stored order, so removal is deterministic. As upstream, a
/// host stored twice is listed once, so one duplicate survives a removal pass.
pub fn endpoints_to_remove<S: AsRef<str>>(app: &str, stored: &[String], pods: &[S]) -> Vec<String> {
    let current: Vec<String> = pods
        .iter()
        .map(|p| names::host_from_pod(app, p.as_ref()))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for e in stored {
        if !current.contains(e) && !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_and_render_like_python() {
        assert_eq!(parse(None).unwrap(), Vec::<String>::new());
        let eps = parse(Some(r#"["pg-0.pg-endpoints", "pg-1.pg-endpoints"]"#)).unwrap();
        assert_eq!(eps, list(&["pg-0.pg-endpoints", "pg-1.pg-endpoints"]));
        // json.dumps default separators: ", " between items.
        assert_eq!(
            render(&eps),
            r#"["pg-0.pg-endpoints", "pg-1.pg-endpoints"]"#
        );
        assert_eq!(render::<String>(&[]), "[]");
        // Compact input (e.g. written by another tool) is accepted.
        assert_eq!(parse(Some(r#"["a","b"]"#)).unwrap(), list(&["a", "b"]));
        assert_eq!(parse(Some("{}")), Err(EndpointsError::NotAStringList));
        assert_eq!(parse(Some("[1]")), Err(EndpointsError::NotAStringList));
        assert!(matches!(parse(Some("[")), Err(EndpointsError::Json(_))));
    }

    #[test]
    fn add_allows_duplicates_and_remove_takes_one_each() {
        let mut eps = list(&["a"]);
        add(&mut eps, "b");
        add(&mut eps, "b");
        assert_eq!(eps, list(&["a", "b", "b"]));
        remove(&mut eps, &list(&["b"])).unwrap();
        assert_eq!(eps, list(&["a", "b"]));
        remove(&mut eps, &list(&["b", "a"])).unwrap();
        assert!(eps.is_empty());
        let mut eps = list(&["a"]);
        assert_eq!(
            remove(&mut eps, &list(&["z"])),
            Err(EndpointsError::NotPresent("z".into()))
        );
        assert!(contains(&list(&["a"]), "a"));
        assert!(!contains(&list(&["a"]), "b"));
    }

    #[test]
    fn endpoints_to_remove_is_stored_minus_current_pods() {
        let stored = list(&[
            "pg-0.pg-endpoints",
            "pg-1.pg-endpoints",
            "pg-2.pg-endpoints",
            "pg-2.pg-endpoints",
        ]);
        let pods = ["pg-0", "pg-1"];
        assert_eq!(
            endpoints_to_remove("pg", &stored, &pods),
            list(&["pg-2.pg-endpoints"])
        );
        assert!(endpoints_to_remove("pg", &list(&["pg-0.pg-endpoints"]), &["pg-0"]).is_empty());
        // Removing the result leaves one of the duplicated entries, as upstream does.
        let mut eps = stored.clone();
        remove(&mut eps, &endpoints_to_remove("pg", &stored, &pods)).unwrap();
        assert_eq!(
            eps,
            list(&[
                "pg-0.pg-endpoints",
                "pg-1.pg-endpoints",
                "pg-2.pg-endpoints"
            ])
        );
    }
}
