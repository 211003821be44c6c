//! The object store: the stand-in's etcd.
//!
//! Objects are `serde_json::Value`s keyed by (resource, namespace, name). Every write takes
//! the next value of one global revision counter, as etcd does, so `resourceVersion`s are
//! comparable across types (Patroni compares them numerically) and a watch can resume from
//! any revision still in the bounded event history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, Reason};
use crate::patch::{PatchType, json_patch, merge_patch, strategic_merge_patch};
use crate::resource::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// Default number of past events kept so that watches can resume from an older revision.
/// Older revisions get `410 Gone`, and the client relists.
pub const DEFAULT_HISTORY: usize = 10_000;

/// Capacity of the live event fan-out. A watcher that falls further behind refills from
/// the history instead of losing events.
const BROADCAST_CAPACITY: usize = 1024;

/// Kind of change, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The type of the object.
    pub resource: &'static ResourceType,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// The object after the change (for `DELETED`, its last state with the deletion's
    /// revision, as the real server sends it).
    pub object: Value,
    /// The object before the change, so that selector-filtered watches can turn "stopped
    /// matching" into `DELETED` and "started matching" into `ADDED`, as Kubernetes does.
    pub previous: Option<Value>,
    /// The revision of this change.
    pub revision: u64,
}

/// Replayed history plus the live receiver that continues it.
pub type WatchStart = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Preconditions of a write, from the URL/body (`DeleteOptions.preconditions`).
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// Required current `metadata.uid`.
    pub uid: Option<String>,
    /// Required current `metadata.resourceVersion`.
    pub resource_version: Option<String>,
}

/// A list request's filters and paging.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = unlimited).
    pub limit: usize,
    /// Start after this `namespace/name` key (decoded from a `continue` token).
    pub start_after: Option<(String, String)>,
}

/// Result of a list: the page, the revision it was read at, and paging info.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// Matching objects, ordered by namespace then name.
    pub items: Vec<Value>,
    /// The store revision at the time of the read.
    pub revision: u64,
    /// Key of the last item when more items remain (becomes the `continue` token).
    pub next: Option<(String, String)>,
    /// How many matching items follow this page.
    pub remaining: usize,
}

/// (group + plural, namespace, name); BTreeMap order is the list order.
type Key = ((&'static str, &'static str), String, String);

struct Inner {
    revision: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Smallest revision `r` such that every event after `r` is still in `history`.
    oldest_resumable: u64,
}

/// The shared object store. Cheap to clone handles are obtained through [`Arc`].
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    uid_counter: AtomicU64,
    history_len: usize,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store at revision 1 (the real server never hands out revision 0, which
    /// means "any" in list/watch requests).
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// An empty store that keeps only the last `events` changes for resuming watches
    /// (small values make `410 Gone` testable).
    pub fn with_history(events: usize) -> Self {
        let history_len = events.max(1);
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            inner: Mutex::new(Inner {
                revision: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest_resumable: 1,
            }),
            events,
            uid_counter: AtomicU64::new(0),
            history_len,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an object half-written (every write
        // replaces whole values), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current revision (what a list would report as `metadata.resourceVersion`).
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// How many live event receivers exist (open watches plus [`Store::subscribe`] receivers).
    /// Lets tests check that watches end when their clients go away.
    pub fn live_receivers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Receives every future change, of every type. For simulators (e.g. a StatefulSet
    /// controller creating pods) that want to react to API writes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    // ----- convenience API keyed by resource names, for tests and simulators -----

    /// Creates an object; its type comes from `apiVersion`/`kind`, its namespace from
    /// `metadata.namespace` (default `default`).
    pub fn create(&self, object: Value) -> Result<Value, ApiError> {
        let rt = resource_of(&object)?;
        let ns = namespace_of(rt, &object);
        self.create_in(rt, &ns, object)
    }

    /// Creates or unconditionally replaces an object (ignores `resourceVersion`). Writes the
    /// whole object, `status` included, which is what a simulated controller needs.
    pub fn upsert(&self, mut object: Value) -> Result<Value, ApiError> {
        let rt = resource_of(&object)?;
        let ns = namespace_of(rt, &object);
        let name = name_of(&object)?;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let mut inner = self.lock();
        let key: Key = (rt.plural_key(), ns.clone(), name.clone());
        match inner.objects.get(&key).cloned() {
            None => self.insert_new(&mut inner, rt, &ns, object),
            Some(old) => {
                self.commit_update(&mut inner, rt, key, old, object, WriteScope::Everything)
            }
        }
    }

    /// Gets an object by resource name (`pods`, `statefulsets`, `sts`, …). The namespace is
    /// ignored for cluster-scoped types.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource::by_name(resource)?;
        self.get_in(rt, namespace, name).ok()
    }

    /// Lists objects of a type, optionally in one namespace, filtered by a label selector
    /// (`""` for all).
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let rt = lookup(resource)?;
        let opts = ListOptions {
            labels: LabelSelector::parse(label_selector)?,
            ..Default::default()
        };
        Ok(self.list_in(rt, namespace.unwrap_or(""), &opts).items)
    }

    /// Applies a JSON merge patch to an object (and to its status too: no subresource split).
    pub fn merge_patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let rt = lookup(resource)?;
        self.patch_in(
            rt,
            namespace,
            name,
            PatchType::Merge,
            patch,
            WriteScope::Everything,
        )
    }

    /// Deletes an object (immediately, unless it has finalizers).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let rt = lookup(resource)?;
        self.delete_in(rt, namespace, name, &Preconditions::default())
    }

    // ----- the API semantics, used by the HTTP layer -----

    /// `POST`: creates a new object.
    pub fn create_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        self.insert_new(&mut inner, rt, namespace, object)
    }

    /// `GET` of one object.
    pub fn get_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = key(rt, namespace, name);
        self.lock()
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))
    }

    /// `GET` of a collection (`namespace == ""` lists all namespaces).
    pub fn list_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        opts: &ListOptions,
    ) -> ListPage {
        let inner = self.lock();
        let mut matching = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == rt.plural_key() && (namespace.is_empty() || !rt.namespaced || ns == namespace)
            })
            .filter(|((_, ns, name), _)| match &opts.start_after {
                Some((sns, sname)) => (ns, name) > (sns, sname),
                None => true,
            })
            .filter(|(_, obj)| opts.labels.matches(obj) && opts.fields.matches(obj));
        let mut items = Vec::new();
        let mut last = None;
        for ((_, ns, name), obj) in matching.by_ref() {
            if opts.limit > 0 && items.len() == opts.limit {
                // Put the peeked item back into the count below.
                return ListPage {
                    remaining: 1 + matching.count(),
                    items,
                    revision: inner.revision,
                    next: last,
                };
            }
            items.push(obj.clone());
            last = Some((ns.clone(), name.clone()));
        }
        ListPage {
            items,
            revision: inner.revision,
            next: None,
            remaining: 0,
        }
    }

    /// `PUT`: replaces an object; 409 when the body's `resourceVersion` is stale.
    pub fn update_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        scope: WriteScope,
    ) -> Result<Value, ApiError> {
        check_body_name(rt, name, &object)?;
        let mut inner = self.lock();
        let key = key(rt, namespace, name);
        match inner.objects.get(&key).cloned() {
            Some(old) => self.commit_update(&mut inner, rt, key, old, object, scope),
            None if rt.create_on_update && scope != WriteScope::Status => {
                let mut object = object;
                set_meta(&mut object, "name", json!(name));
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                self.insert_new(&mut inner, rt, namespace, object)
            }
            None => Err(not_found(rt, name)),
        }
    }

    /// `PATCH` (all flavours). A `metadata.resourceVersion` in the patch is a precondition:
    /// Patroni's leader lock is a compare-and-swap built on exactly that.
    pub fn patch_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        scope: WriteScope,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = key(rt, namespace, name);
        let Some(old) = inner.objects.get(&key).cloned() else {
            if patch_type == PatchType::Apply && scope != WriteScope::Status {
                // Server-side apply creates missing objects from the applied configuration.
                check_body_name(rt, name, patch)?;
                let mut object = patch.clone();
                set_meta(&mut object, "name", json!(name));
                return self.insert_new(&mut inner, rt, namespace, object);
            }
            return Err(not_found(rt, name));
        };
        let mut new = old.clone();
        match patch_type {
            PatchType::Merge => merge_patch(&mut new, patch),
            PatchType::StrategicMerge | PatchType::Apply => strategic_merge_patch(&mut new, patch)?,
            PatchType::Json => json_patch(&mut new, patch)?,
        }
        check_body_name(rt, name, &new)?;
        self.commit_update(&mut inner, rt, key, old, new, scope)
    }

    /// `DELETE` of one object. Objects with finalizers only get a `deletionTimestamp` and
    /// disappear when an update empties `metadata.finalizers`, as in Kubernetes.
    pub fn delete_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = key(rt, namespace, name);
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        if let Some(uid) = &pre.uid
            && old.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
        {
            return Err(ApiError::new(
                409,
                Reason::Conflict,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            )
            .with_details(Some(name), rt.plural, rt.group));
        }
        if let Some(rv) = &pre.resource_version
            && !rv.is_empty()
            && resource_version_of(&old) != Some(rv.as_str())
        {
            return Err(conflict(rt, name));
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut marked = old.clone();
            set_meta(&mut marked, "deletionTimestamp", json!(now_rfc3339()));
            set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
            return Ok(self.commit(&mut inner, rt, key, Some(old), marked, EventType::Modified));
        }
        Ok(self.remove(&mut inner, rt, key, old))
    }

    /// `DELETE` of a collection: deletes every matching object, returns them.
    pub fn delete_collection_in(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        opts: &ListOptions,
    ) -> Vec<Value> {
        let page = self.list_in(
            rt,
            namespace,
            &ListOptions {
                limit: 0,
                start_after: None,
                ..opts.clone()
            },
        );
        page.items
            .iter()
            .filter_map(|obj| {
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = obj.pointer("/metadata/name").and_then(Value::as_str)?;
                self.delete_in(rt, ns, name, &Preconditions::default()).ok()
            })
            .collect()
    }

    /// Starts a watch: returns the events after `since` that are still in history and a
    /// receiver for live events (registered under the same lock, so nothing falls between
    /// the two). `None` means "now". 410 Gone when `since` is older than the history.
    pub fn watch_from(&self, since: Option<u64>) -> Result<WatchStart, ApiError> {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let backlog = match since {
            None => Vec::new(),
            Some(since) => backlog_after(&inner, since)?,
        };
        Ok((backlog, rx))
    }

    /// Events after `since`, for a watcher that fell behind the live channel.
    pub fn events_after(&self, since: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        backlog_after(&self.lock(), since)
    }

    /// Current objects of a type as synthetic `ADDED` events plus a live receiver, for
    /// watches started without a resourceVersion (or with "0"), which Kubernetes begins
    /// with the current state.
    pub fn snapshot_and_watch(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let items = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == rt.plural_key() && (namespace.is_empty() || !rt.namespaced || ns == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.revision, rx)
    }

    // ----- internals -----

    fn next_uid(&self) -> String {
        // Unique within the process is all clients need; formatted like a v4 UUID because
        // some clients parse it. Mix time and a counter through splitmix64 so uids look random.
        let n = self.uid_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let a = splitmix64(nanos ^ n.rotate_left(32));
        let b = splitmix64(a ^ n);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            ((b >> 48) as u16 & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn insert_new(
        &self,
        inner: &mut Inner,
        rt: &'static ResourceType,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        check_type(rt, &object)?;
        strip_nulls(&mut object);
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let meta = object["metadata"].as_object_mut().expect("ensured above");
        let namespace = if rt.namespaced {
            let body_ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if namespace.is_empty() {
                return Err(ApiError::bad_request(
                    "a namespace is required for namespaced resources",
                ));
            }
            meta.insert("namespace".into(), json!(namespace));
            namespace.to_string()
        } else {
            meta.remove("namespace");
            String::new()
        };
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => match meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(prefix) => {
                    let suffix: String = self
                        .next_uid()
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .take(5)
                        .collect();
                    format!("{prefix}{suffix}")
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        rt.kind
                    ))
                    .with_details(None, rt.plural, rt.group));
                }
            },
        };
        validate_name(rt, &name)?;
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(self.next_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        let key: Key = (rt.plural_key(), namespace, name.clone());
        if inner.objects.contains_key(&key) {
            return Err(
                ApiError::already_exists(&rt.qualified_name(), &name).with_details(
                    Some(&name),
                    rt.plural,
                    rt.group,
                ),
            );
        }
        Ok(self.commit(inner, rt, key, None, object, EventType::Added))
    }

    fn commit_update(
        &self,
        inner: &mut Inner,
        rt: &'static ResourceType,
        key: Key,
        old: Value,
        mut new: Value,
        scope: WriteScope,
    ) -> Result<Value, ApiError> {
        check_type(rt, &new)?;
        strip_nulls(&mut new);
        let name = key.2.clone();
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        // Optimistic concurrency: a resourceVersion in the written object must be current.
        if let Some(rv) = resource_version_of(&new)
            && !rv.is_empty()
            && Some(rv) != resource_version_of(&old)
        {
            return Err(conflict(rt, &name));
        }
        // The subresource split: writes to the object keep its status, writes to /status
        // keep everything but the status.
        let mut new = match scope {
            WriteScope::Everything => new,
            WriteScope::Main if rt.has_status => {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                new
            }
            WriteScope::Main => new,
            WriteScope::Status => {
                let mut merged = old.clone();
                match new.get("status") {
                    Some(status) => merged["status"] = status.clone(),
                    None => {
                        merged.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                merged
            }
        };
        // Server-owned metadata cannot be changed by clients.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => set_meta(&mut new, field, v.clone()),
                None => {
                    new["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        set_meta(&mut new, "name", json!(name));
        new["metadata"]
            .as_object_mut()
            .map(|m| m.remove("managedFields"));
        set_type(rt, &mut new);
        set_meta(
            &mut new,
            "resourceVersion",
            old["metadata"]["resourceVersion"].clone(),
        );
        if new == old {
            // A no-op write keeps the revision and notifies nobody, as in Kubernetes.
            return Ok(old);
        }
        if spec_changed(&old, &new) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            set_meta(&mut new, "generation", json!(generation));
        }
        let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        if finalized {
            return Ok(self.remove(inner, rt, key, new));
        }
        Ok(self.commit(inner, rt, key, Some(old), new, EventType::Modified))
    }

    /// Stamps the next revision, stores the object and publishes the event.
    fn commit(
        &self,
        inner: &mut Inner,
        rt: &'static ResourceType,
        key: Key,
        previous: Option<Value>,
        mut object: Value,
        event_type: EventType,
    ) -> Value {
        inner.revision += 1;
        let revision = inner.revision;
        set_type(rt, &mut object);
        set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
        let namespace = key.1.clone();
        inner.objects.insert(key, object.clone());
        self.publish(
            inner,
            WatchEvent {
                event_type,
                resource: rt,
                namespace,
                object: object.clone(),
                previous,
                revision,
            },
        );
        object
    }

    fn remove(&self, inner: &mut Inner, rt: &'static ResourceType, key: Key, last: Value) -> Value {
        inner.revision += 1;
        let revision = inner.revision;
        let previous = inner.objects.remove(&key);
        let mut object = last;
        set_type(rt, &mut object);
        set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
        self.publish(
            inner,
            WatchEvent {
                event_type: EventType::Deleted,
                resource: rt,
                namespace: key.1,
                object: object.clone(),
                previous,
                revision,
            },
        );
        object
    }

    fn publish(&self, inner: &mut Inner, event: WatchEvent) {
        let event = Arc::new(event);
        if inner.history.len() >= self.history_len
            && let Some(dropped) = inner.history.pop_front()
        {
            inner.oldest_resumable = dropped.revision;
        }
        inner.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// The main resource: `.status` is kept from the stored object (for types with a
    /// status subresource).
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// Everything (programmatic writes by tests and simulators).
    Everything,
}

fn backlog_after(inner: &Inner, since: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
    if since < inner.oldest_resumable {
        return Err(ApiError::new(
            410,
            Reason::Expired,
            format!(
                "too old resource version: {since} ({})",
                inner.oldest_resumable
            ),
        ));
    }
    Ok(inner
        .history
        .iter()
        .filter(|e| e.revision > since)
        .cloned()
        .collect())
}

impl ResourceType {
    /// Store key component: (group, plural) is unique across the table.
    fn plural_key(&self) -> (&'static str, &'static str) {
        (self.group, self.plural)
    }
}

fn key(rt: &'static ResourceType, namespace: &str, name: &str) -> Key {
    let ns = if rt.namespaced {
        namespace.to_string()
    } else {
        String::new()
    };
    (rt.plural_key(), ns, name.to_string())
}

fn lookup(resource: &str) -> Result<&'static ResourceType, ApiError> {
    resource::by_name(resource).ok_or_else(|| {
        ApiError::new(
            404,
            Reason::NotFound,
            format!("the server could not find the requested resource ({resource})"),
        )
    })
}

fn resource_of(object: &Value) -> Result<&'static ResourceType, ApiError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    resource::by_kind(api_version, kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no resource served for apiVersion {api_version:?} kind {kind:?}"
        ))
    })
}

fn namespace_of(rt: &ResourceType, object: &Value) -> String {
    if !rt.namespaced {
        return String::new();
    }
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

fn name_of(object: &Value) -> Result<String, ApiError> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid("metadata.name: Required value"))
}

fn resource_version_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::not_found(&rt.qualified_name(), name).with_details(Some(name), rt.plural, rt.group)
}

fn conflict(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(&rt.qualified_name(), name).with_details(Some(name), rt.plural, rt.group)
}

/// A body may omit `kind`/`apiVersion` (Patroni does), but must not name another type.
fn check_type(rt: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if (!kind.is_empty() && kind != rt.kind)
        || (!api_version.is_empty() && api_version != rt.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind ({kind}) does not match {}",
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

fn check_body_name(rt: &ResourceType, name: &str, object: &Value) -> Result<(), ApiError> {
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(body) if !body.is_empty() && body != name => Err(ApiError::bad_request(format!(
            "the name of the object ({body}) does not match the name on the URL ({name})"
        ))
        .with_details(Some(name), rt.plural, rt.group)),
        _ => Ok(()),
    }
}

/// DNS-1123 subdomain, the rule for most object names; catching bad names here keeps
/// tests honest about what a real cluster would accept.
fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of \
             lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            rt.kind
        ))
        .with_details(Some(name), rt.plural, rt.group))
    }
}

/// Drops `null` fields. The real server decodes into typed structs, where `null` means
/// "unset" and is never stored or echoed back; Patroni, for one, sends `"hostname": null`.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"][field] = value;
}

fn set_type(rt: &ResourceType, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("kind".into(), json!(rt.kind));
        map.insert("apiVersion".into(), json!(rt.api_version()));
    }
}

/// Whether anything besides `metadata` and `status` changed: that bumps `generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The current UTC time as RFC 3339 with second precision (`2024-05-01T12:00:00Z`), the
/// format of `metadata.creationTimestamp`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_rfc3339(secs)
}

fn format_rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date-time dependency.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "demo", "labels": {"app": "x"}},
               "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}})
    }

    #[test]
    fn nulls_are_not_stored() {
        let store = Store::new();
        let mut p = pod("a");
        p["spec"]["hostname"] = Value::Null;
        p["spec"]["containers"][0]["command"] = Value::Null;
        let created = store.create(p).unwrap();
        assert!(created["spec"].get("hostname").is_none());
        assert!(created["spec"]["containers"][0].get("command").is_none());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn server_metadata_and_revisions() {
        let store = Store::new();
        let a = store.create(pod("a")).unwrap();
        let b = store.create(pod("b")).unwrap();
        let rv = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&b) > rv(&a));
        assert_eq!(a["metadata"]["generation"], 1);
        assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
        assert_eq!(
            store.create(pod("a")).unwrap_err().reason,
            Reason::AlreadyExists
        );
        // A no-op patch keeps the revision; a spec change bumps generation.
        let same = store
            .merge_patch(
                "pods",
                "demo",
                "a",
                &json!({"metadata": {"labels": {"app": "x"}}}),
            )
            .unwrap();
        assert_eq!(rv(&same), rv(&a));
        let changed = store
            .merge_patch("pods", "demo", "a", &json!({"spec": {"hostname": "h"}}))
            .unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(store.revision(), rv(&changed));
    }

    #[test]
    fn stale_resource_version_conflicts() {
        let store = Store::new();
        let rt = resource::by_name("endpoints").unwrap();
        let ep = store.create(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": "demo"}})).unwrap();
        let rv = ep["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let patch = json!({"metadata": {"resourceVersion": rv, "annotations": {"leader": "a"}}});
        store
            .patch_in(
                rt,
                "demo",
                "e",
                PatchType::StrategicMerge,
                &patch,
                WriteScope::Main,
            )
            .unwrap();
        let err = store
            .patch_in(
                rt,
                "demo",
                "e",
                PatchType::StrategicMerge,
                &patch,
                WriteScope::Main,
            )
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, Reason::Conflict));
    }

    #[test]
    fn status_subresource_split() {
        let store = Store::new();
        let rt = resource::by_name("pods").unwrap();
        store.create(pod("a")).unwrap();
        let p = store
            .patch_in(
                rt,
                "demo",
                "a",
                PatchType::Merge,
                &json!({"status": {"phase": "Failed"}, "spec": {"hostname": "x"}}),
                WriteScope::Main,
            )
            .unwrap();
        assert_eq!(
            (
                p["status"]["phase"].as_str(),
                p["spec"]["hostname"].as_str()
            ),
            (Some("Running"), Some("x"))
        );
        let p = store
            .patch_in(
                rt,
                "demo",
                "a",
                PatchType::Merge,
                &json!({"status": {"phase": "Failed"}, "spec": {"hostname": "y"}}),
                WriteScope::Status,
            )
            .unwrap();
        assert_eq!(
            (
                p["status"]["phase"].as_str(),
                p["spec"]["hostname"].as_str()
            ),
            (Some("Failed"), Some("x"))
        );
    }

    #[test]
    fn finalizers_delay_deletion() {
        let store = Store::new();
        let mut p = pod("a");
        p["metadata"]["finalizers"] = json!(["x/y"]);
        store.create(p).unwrap();
        let marked = store.delete("pods", "demo", "a").unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(store.get("pods", "demo", "a").is_some());
        store
            .merge_patch(
                "pods",
                "demo",
                "a",
                &json!({"metadata": {"finalizers": null}}),
            )
            .unwrap();
        assert!(store.get("pods", "demo", "a").is_none());
    }

    #[test]
    fn paging_and_watch_history() {
        let store = Store::new();
        let start = store.revision();
        for i in 0..5 {
            store.create(pod(&format!("p{i}"))).unwrap();
        }
        let rt = resource::by_name("pods").unwrap();
        let page = store.list_in(
            rt,
            "demo",
            &ListOptions {
                limit: 2,
                ..Default::default()
            },
        );
        assert_eq!((page.items.len(), page.remaining), (2, 3));
        let next = store.list_in(
            rt,
            "demo",
            &ListOptions {
                limit: 2,
                start_after: page.next,
                ..Default::default()
            },
        );
        assert_eq!(next.items[0]["metadata"]["name"], "p2");
        let (backlog, _rx) = store.watch_from(Some(start)).unwrap();
        assert_eq!(backlog.len(), 5);
        assert!(backlog.iter().all(|e| e.event_type == EventType::Added));
    }
}
