//! Test controls: an RBAC switch and fault injection.
//!
//! Both are checked before a request reaches the store, in the order the real stack would
//! fail: an injected fault stands for the server (or a proxy) failing, so it wins over
//! authorization; authorization wins over everything the store could answer.

use std::sync::Mutex;

use crate::error::{ApiError, Reason};

/// Kubernetes verbs, as used in RBAC rules.
pub const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// One denied (verb, resource) pair, optionally narrowed to a namespace and/or object
/// name, like a Role's `resourceNames`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// A verb from [`VERBS`], or `*`.
    pub verb: String,
    /// Resource plural (`pods`), `plural/subresource` (`pods/status`), or `*`.
    pub resource: String,
    /// Only in this namespace.
    pub namespace: Option<String>,
    /// Only this object.
    pub name: Option<String>,
}

impl DenyRule {
    /// Denies `verb` on `resource` everywhere.
    pub fn new(verb: impl Into<String>, resource: impl Into<String>) -> Self {
        DenyRule {
            verb: verb.into(),
            resource: resource.into(),
            namespace: None,
            name: None,
        }
    }

    /// Narrows the rule to one namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Narrows the rule to one object name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn matches(&self, req: &Access<'_>) -> bool {
        let resource = match req.subresource {
            Some(sub) => format!("{}/{sub}", req.resource),
            None => req.resource.to_string(),
        };
        (self.verb == "*" || self.verb == req.verb)
            && (self.resource == "*" || self.resource == resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == req.namespace)
            && self.name.as_deref().is_none_or(|n| Some(n) == req.name)
    }
}

/// What a request wants to do, for the authorizer.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// RBAC verb.
    pub verb: &'a str,
    /// Resource plural.
    pub resource: &'a str,
    /// API group (`""` for core).
    pub group: &'a str,
    /// Subresource (`status`), if any.
    pub subresource: Option<&'a str>,
    /// Namespace (`""` when cluster-wide).
    pub namespace: &'a str,
    /// Object name, when the request names one.
    pub name: Option<&'a str>,
}

/// A fault to inject: the next `times` requests matching `method` and `path_prefix` get
/// `status` with a `Status` body instead of being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP method to match (`None` = any), compared case-insensitively.
    pub method: Option<String>,
    /// Prefix of the URL path (query excluded) to match; `""` matches everything.
    pub path_prefix: String,
    /// Status code to answer.
    pub status: u16,
    /// How many matching requests still fail.
    pub times: u32,
    /// Optional `Retry-After` header value in seconds (Patroni retries on it).
    pub retry_after: Option<u32>,
}

impl Fault {
    /// Fails the next matching request with `status` (defaults: any method, any path, once).
    pub fn new(status: u16) -> Self {
        Fault {
            method: None,
            path_prefix: String::new(),
            status,
            times: 1,
            retry_after: None,
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Only requests whose path starts with this prefix.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = prefix.into();
        self
    }

    /// Fail this many matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// Send a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// An injected failure picked for one request.
#[derive(Debug, Clone)]
pub struct InjectedFault {
    /// The error to answer with.
    pub error: ApiError,
    /// `Retry-After` seconds.
    pub retry_after: Option<u32>,
}

/// The mutable switches, shared between the handle and the server.
#[derive(Debug, Default)]
pub struct Controls {
    deny_all: Mutex<bool>,
    rules: Mutex<Vec<DenyRule>>,
    faults: Mutex<Vec<Fault>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain data that is always valid, so poisoning is harmless.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controls {
    /// Denies every resource request (discovery and `/version` stay open, as the real
    /// `system:discovery` role grants them to everyone).
    pub fn set_deny_all(&self, deny: bool) {
        *lock(&self.deny_all) = deny;
    }

    /// Adds a deny rule.
    pub fn deny(&self, rule: DenyRule) {
        lock(&self.rules).push(rule);
    }

    /// Removes all deny rules and the deny-all switch.
    pub fn allow_all(&self) {
        *lock(&self.deny_all) = false;
        lock(&self.rules).clear();
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Takes one use of the first fault matching the request, if any.
    pub fn take_fault(&self, method: &str, path: &str) -> Option<InjectedFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| {
            f.times > 0
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&f.path_prefix)
        })?;
        let fault = &mut faults[index];
        fault.times -= 1;
        let injected = InjectedFault {
            error: ApiError::new(
                fault.status,
                Reason::for_code(fault.status),
                format!("injected fault: {method} {path} answered {}", fault.status),
            ),
            retry_after: fault.retry_after,
        };
        if fault.times == 0 {
            faults.remove(index);
        }
        Some(injected)
    }

    /// Authorizes a resource request; the error is the real server's 403 wording.
    pub fn authorize(&self, access: &Access<'_>) -> Result<(), ApiError> {
        let denied = *lock(&self.deny_all) || lock(&self.rules).iter().any(|r| r.matches(access));
        if !denied {
            return Ok(());
        }
        let resource = match access.subresource {
            Some(sub) => format!("{}/{sub}", access.resource),
            None => access.resource.to_string(),
        };
        let qualified = if access.group.is_empty() {
            access.resource.to_string()
        } else {
            format!("{}.{}", access.resource, access.group)
        };
        let subject = match access.name {
            Some(name) => format!("{qualified} \"{name}\" is forbidden"),
            None => format!("{qualified} is forbidden"),
        };
        let scope = if access.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", access.namespace)
        };
        let message = format!(
            "{subject}: User \"system:anonymous\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            access.verb, access.group
        );
        Err(ApiError::new(403, Reason::Forbidden, message).with_details(
            access.name,
            access.resource,
            access.group,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access<'a>(verb: &'a str, ns: &'a str, name: Option<&'a str>) -> Access<'a> {
        Access {
            verb,
            resource: "endpoints",
            group: "",
            subresource: None,
            namespace: ns,
            name,
        }
    }

    #[test]
    fn rules_narrow_by_namespace_and_name() {
        let c = Controls::default();
        c.deny(
            DenyRule::new("get", "endpoints")
                .in_namespace("default")
                .named("kubernetes"),
        );
        assert!(
            c.authorize(&access("get", "default", Some("kubernetes")))
                .is_err()
        );
        assert!(
            c.authorize(&access("get", "demo", Some("kubernetes")))
                .is_ok()
        );
        assert!(c.authorize(&access("list", "default", None)).is_ok());
        let err = c
            .authorize(&access("get", "default", Some("kubernetes")))
            .unwrap_err();
        assert_eq!(err.reason, Reason::Forbidden);
        assert!(
            err.message
                .starts_with("endpoints \"kubernetes\" is forbidden: User"),
            "{}",
            err.message
        );
        c.allow_all();
        c.set_deny_all(true);
        assert!(c.authorize(&access("list", "x", None)).is_err());
    }

    #[test]
    fn faults_count_down() {
        let c = Controls::default();
        c.inject(
            Fault::new(500)
                .method("patch")
                .path_prefix("/api/v1/namespaces/demo")
                .times(2),
        );
        assert!(
            c.take_fault("GET", "/api/v1/namespaces/demo/pods")
                .is_none()
        );
        assert_eq!(
            c.take_fault("PATCH", "/api/v1/namespaces/demo/pods/x")
                .unwrap()
                .error
                .code,
            500
        );
        assert!(c.take_fault("PATCH", "/api/v1/namespaces/other").is_none());
        assert!(
            c.take_fault("PATCH", "/api/v1/namespaces/demo/pods/x")
                .is_some()
        );
        assert!(
            c.take_fault("PATCH", "/api/v1/namespaces/demo/pods/x")
                .is_none()
        );
    }
}
