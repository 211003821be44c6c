//! The Juju event of this dispatch, from `JUJU_DISPATCH_PATH` and the `JUJU_*` variables
//! (spec 9.1, 9.2).

use crate::bindings::types::{ActionEvent, RelationEvent, SecretEvent, StorageEvent};
use crate::bindings::{Event, EventKind};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error(
        "JUJU_DISPATCH_PATH is not set: `charm-host dispatch` runs under Juju (or give --event)"
    )]
    NoDispatchPath,
    #[error("JUJU_DISPATCH_PATH={0:?} is neither hooks/<name> nor actions/<name>")]
    BadDispatchPath(String),
    #[error("{var} is missing, and the {event} event needs it")]
    Missing { var: &'static str, event: String },
    #[error("{var}={value:?} is malformed: {why}")]
    Malformed {
        var: &'static str,
        value: String,
        why: &'static str,
    },
}

const SIMPLE_HOOKS: &[(&str, EventKind)] = &[
    ("install", EventKind::Install),
    ("start", EventKind::Start),
    ("stop", EventKind::Stop),
    ("remove", EventKind::Remove),
    ("upgrade-charm", EventKind::UpgradeCharm),
    ("config-changed", EventKind::ConfigChanged),
    ("update-status", EventKind::UpdateStatus),
    ("leader-elected", EventKind::LeaderElected),
    ("leader-settings-changed", EventKind::LeaderSettingsChanged),
    ("collect-metrics", EventKind::CollectMetrics),
    ("secret-changed", EventKind::SecretChanged),
    ("secret-expired", EventKind::SecretExpired),
    ("secret-remove", EventKind::SecretRemove),
    ("secret-rotate", EventKind::SecretRotate),
];

const RELATION_SUFFIXES: &[(&str, EventKind)] = &[
    ("-relation-created", EventKind::RelationCreated),
    ("-relation-joined", EventKind::RelationJoined),
    ("-relation-changed", EventKind::RelationChanged),
    ("-relation-departed", EventKind::RelationDeparted),
    ("-relation-broken", EventKind::RelationBroken),
];

const WORKLOAD_SUFFIXES: &[(&str, EventKind)] = &[
    ("-pebble-ready", EventKind::PebbleReady),
    ("-pebble-custom-notice", EventKind::PebbleCustomNotice),
    ("-pebble-check-failed", EventKind::PebbleCheckFailed),
    ("-pebble-check-recovered", EventKind::PebbleCheckRecovered),
];

const STORAGE_SUFFIXES: &[(&str, EventKind)] = &[
    ("-storage-attached", EventKind::StorageAttached),
    ("-storage-detaching", EventKind::StorageDetaching),
];

/// The kind of a hook, from its name alone.
pub fn kind_of_hook(name: &str) -> EventKind {
    if let Some((_, k)) = SIMPLE_HOOKS.iter().find(|(n, _)| *n == name) {
        return *k;
    }
    for table in [RELATION_SUFFIXES, WORKLOAD_SUFFIXES, STORAGE_SUFFIXES] {
        if let Some((_, k)) = table
            .iter()
            .find(|(s, _)| name.len() > s.len() && name.ends_with(s))
        {
            return *k;
        }
    }
    EventKind::Custom
}

fn prefix<'a>(name: &'a str, table: &[(&str, EventKind)]) -> Option<&'a str> {
    table.iter().find_map(|(s, _)| name.strip_suffix(s))
}

/// Build the event from the environment (`get` answers one variable).
pub fn event_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Event, EventError> {
    let path = get("JUJU_DISPATCH_PATH")
        .filter(|p| !p.is_empty())
        .ok_or(EventError::NoDispatchPath)?;
    let (dir, name) = path
        .rsplit_once('/')
        .ok_or_else(|| EventError::BadDispatchPath(path.clone()))?;
    let dir = dir.rsplit('/').next().unwrap_or(dir);
    if name.is_empty() {
        return Err(EventError::BadDispatchPath(path));
    }
    let need = |var: &'static str| {
        get(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| EventError::Missing {
                var,
                event: name.to_string(),
            })
    };
    match dir {
        "actions" => {
            let mut e = Event::bare(name, EventKind::Action);
            e.action = Some(ActionEvent {
                name: get("JUJU_ACTION_NAME").unwrap_or_else(|| name.to_string()),
                uuid: get("JUJU_ACTION_UUID").unwrap_or_default(),
                params: Vec::new(),
            });
            Ok(e)
        }
        "hooks" => {
            let kind = kind_of_hook(name);
            let mut e = Event::bare(name, kind);
            if prefix(name, RELATION_SUFFIXES).is_some() {
                let raw = need("JUJU_RELATION_ID")?;
                let id_part = raw.rsplit(':').next().unwrap_or(&raw);
                let id = id_part.parse().map_err(|_| EventError::Malformed {
                    var: "JUJU_RELATION_ID",
                    value: raw.clone(),
                    why: "expected <endpoint>:<number>",
                })?;
                e.relation = Some(RelationEvent {
                    name: get("JUJU_RELATION")
                        .unwrap_or_else(|| prefix(name, RELATION_SUFFIXES).unwrap().to_string()),
                    id,
                    remote_app: get("JUJU_REMOTE_APP").filter(|v| !v.is_empty()),
                    remote_unit: get("JUJU_REMOTE_UNIT").filter(|v| !v.is_empty()),
                    departing_unit: get("JUJU_DEPARTING_UNIT").filter(|v| !v.is_empty()),
                });
            } else if let Some(workload) = prefix(name, WORKLOAD_SUFFIXES) {
                e.workload = Some(
                    get("JUJU_WORKLOAD_NAME")
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| workload.to_string()),
                );
            } else if let Some(storage) = prefix(name, STORAGE_SUFFIXES) {
                let raw = get("JUJU_STORAGE_ID").unwrap_or_else(|| format!("{storage}/0"));
                let (sname, idx) = raw.split_once('/').ok_or_else(|| EventError::Malformed {
                    var: "JUJU_STORAGE_ID",
                    value: raw.clone(),
                    why: "expected <name>/<index>",
                })?;
                let index = idx.parse().map_err(|_| EventError::Malformed {
                    var: "JUJU_STORAGE_ID",
                    value: raw.clone(),
                    why: "expected <name>/<index>",
                })?;
                e.storage = Some(StorageEvent {
                    name: sname.to_string(),
                    index,
                    location: None,
                });
            } else if name.starts_with("secret-") {
                let revision = match get("JUJU_SECRET_REVISION").filter(|v| !v.is_empty()) {
                    Some(r) => Some(r.parse().map_err(|_| EventError::Malformed {
                        var: "JUJU_SECRET_REVISION",
                        value: r.clone(),
                        why: "expected a number",
                    })?),
                    None => None,
                };
                e.secret = Some(SecretEvent {
                    id: need("JUJU_SECRET_ID")?,
                    label: get("JUJU_SECRET_LABEL").filter(|v| !v.is_empty()),
                    revision,
                });
            }
            Ok(e)
        }
        _ => Err(EventError::BadDispatchPath(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn relation_event_takes_the_id_after_the_colon() {
        let e = event_from_env(env(&[
            (
                "JUJU_DISPATCH_PATH",
                "hooks/database-peers-relation-departed",
            ),
            ("JUJU_RELATION", "database-peers"),
            ("JUJU_RELATION_ID", "database-peers:7"),
            ("JUJU_REMOTE_UNIT", "pg/2"),
            ("JUJU_REMOTE_APP", "pg"),
            ("JUJU_DEPARTING_UNIT", "pg/2"),
        ]))
        .unwrap();
        assert_eq!(e.kind, EventKind::RelationDeparted);
        let r = e.relation.unwrap();
        assert_eq!((r.name.as_str(), r.id), ("database-peers", 7));
        assert_eq!(r.departing_unit.as_deref(), Some("pg/2"));
    }

    #[test]
    fn pebble_ready_names_its_workload() {
        let e = event_from_env(env(&[(
            "JUJU_DISPATCH_PATH",
            "hooks/postgresql-pebble-ready",
        )]))
        .unwrap();
        assert_eq!(e.kind, EventKind::PebbleReady);
        assert_eq!(e.workload.as_deref(), Some("postgresql"));
    }

    #[test]
    fn actions_and_custom_events() {
        let e = event_from_env(env(&[
            ("JUJU_DISPATCH_PATH", "actions/get-password"),
            ("JUJU_ACTION_UUID", "u1"),
        ]))
        .unwrap();
        assert_eq!(e.kind, EventKind::Action);
        assert_eq!(e.action.unwrap().uuid, "u1");
        let e = event_from_env(env(&[("JUJU_DISPATCH_PATH", "hooks/databases_change")])).unwrap();
        assert_eq!(e.kind, EventKind::Custom);
    }

    #[test]
    fn bad_environments_are_named() {
        assert_eq!(event_from_env(env(&[])), Err(EventError::NoDispatchPath));
        assert!(matches!(
            event_from_env(env(&[("JUJU_DISPATCH_PATH", "elsewhere/x")])),
            Err(EventError::BadDispatchPath(_))
        ));
        let err = event_from_env(env(&[("JUJU_DISPATCH_PATH", "hooks/db-relation-changed")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "JUJU_RELATION_ID is missing, and the db-relation-changed event needs it"
        );
        let err = event_from_env(env(&[
            ("JUJU_DISPATCH_PATH", "hooks/db-relation-changed"),
            ("JUJU_RELATION_ID", "db:x"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("JUJU_RELATION_ID=\"db:x\" is malformed")
        );
    }
}
