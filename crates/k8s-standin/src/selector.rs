//! Label and field selectors, parsed from the `labelSelector` / `fieldSelector` query
//! parameters with the grammar of `k8s.io/apimachinery/pkg/labels`.

use serde_json::Value;

use crate::error::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the label is absent, as in Kubernetes).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also true when the label is absent).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Parses `application=patroni,cluster-name in (a,b),!legacy`.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.0.iter().all(|r| r.matches(labels))
    }
}

/// Splits on commas that are not inside `( … )` value sets.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn invalid_selector(part: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why}: \"{part}\""))
}

fn check_key(key: &str, part: &str) -> Result<String, ApiError> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(invalid_selector(part, "invalid label key"))
    }
}

fn parse_set(rest: &str, part: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| invalid_selector(part, "expected a parenthesised value set"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, ApiError> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(check_key(key.trim(), part)?));
    }
    // Operators made of symbols: try the two-character ones first so `==` is not read as `=`.
    for (op, ctor) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((k, v)) = part.split_once(op) {
            return Ok(ctor(check_key(k.trim(), part)?, v.trim().to_string()));
        }
    }
    // Word operators are whitespace separated: `key in (a,b)` / `key notin (a,b)`.
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    match words.next().map(str::trim_start) {
        None => Ok(Requirement::Exists(check_key(key, part)?)),
        Some(rest) => {
            if let Some(set) = rest.strip_prefix("notin") {
                Ok(Requirement::NotIn(
                    check_key(key, part)?,
                    parse_set(set, part)?,
                ))
            } else if let Some(set) = rest.strip_prefix("in") {
                Ok(Requirement::In(
                    check_key(key, part)?,
                    parse_set(set, part)?,
                ))
            } else {
                Err(invalid_selector(part, "unknown operator"))
            }
        }
    }
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
///
/// The real server allows only a per-type list of fields; the stand-in accepts any dotted
/// path into the object, which is a superset and keeps it simple.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` parameter.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: \"{part}\""
                )));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the object satisfies every term; a missing field compares as `""`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&pointer) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}})
    }

    #[test]
    fn all_operators() {
        let p = pod(json!({"application": "patroni", "cluster-name": "pgk8s", "role": "primary"}));
        let yes = [
            "",
            "application=patroni,cluster-name=pgk8s",
            "application==patroni",
            "role!=replica",
            "missing!=x",
            "role in (primary, replica)",
            "role notin (replica)",
            "missing notin (a)",
            "role",
            "!missing",
            " application = patroni , !missing ",
        ];
        for s in yes {
            assert!(
                LabelSelector::parse(s).unwrap().matches(&p),
                "{s} should match"
            );
        }
        let no = [
            "application=other",
            "role!=primary",
            "role in (replica)",
            "role notin (primary,x)",
            "missing",
            "!role",
        ];
        for s in no {
            assert!(
                !LabelSelector::parse(s).unwrap().matches(&p),
                "{s} should not match"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a foo (b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert_eq!(LabelSelector::parse("a in b").unwrap_err().code, 400);
    }

    #[test]
    fn field_selector() {
        let p =
            json!({"metadata": {"name": "p", "namespace": "demo"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("metadata.name=p").unwrap().matches(&p));
        assert!(
            FieldSelector::parse("metadata.name==p,metadata.namespace=demo")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=p")
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("status.phase!=Pending")
                .unwrap()
                .matches(&p)
        );
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&p));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
