//! The fixed table of resource types the stand-in serves.
//!
//! A real API server learns its types from built-in registries and CRDs; the stand-in only
//! needs the handful the PostgreSQL charm, Patroni and the tests touch, so they are a static
//! table. Everything else (routing, discovery documents, list kinds) is derived from it.

/// One servable resource type (e.g. core/v1 `pods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; `""` is the legacy core group served under `/api/v1`.
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Lower-case plural used in URLs (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`), listed in discovery.
    pub singular: &'static str,
    /// Object kind (`Pod`).
    pub kind: &'static str,
    /// Whether objects live inside a namespace.
    pub namespaced: bool,
    /// Whether the type has a `/status` subresource. For such types writes to the main
    /// resource keep the stored `.status`, and writes to `/status` change only `.status`,
    /// as the real registry strategies do (controllers rely on that split).
    pub has_status: bool,
    /// Whether the type has an `autoscaling/v1 Scale` subresource (`kubectl scale`).
    pub has_scale: bool,
    /// Whether `PUT` on a missing object creates it (true for Endpoints in real Kubernetes;
    /// false for most types, which answer 404).
    pub create_on_update: bool,
    /// kubectl short names, listed in discovery so `kubectl get po` works.
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    /// `apiVersion` field value (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Kind of the list object (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Name used in error messages and `Status.details.group`-less kinds: `pods`, or
    /// `statefulsets.apps` for grouped types, which is how the real server words them.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    create_on_update: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        has_status,
        has_scale: false,
        create_on_update,
        short_names,
    }
}

/// All resource types served, in discovery order.
pub static RESOURCES: &[ResourceType] = &[
    core("pods", "pod", "Pod", true, true, false, &["po"]),
    core(
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        false,
        true,
        &["ep"],
    ),
    core(
        "services",
        "service",
        "Service",
        true,
        true,
        false,
        &["svc"],
    ),
    core(
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        false,
        &["cm"],
    ),
    core("secrets", "secret", "Secret", true, false, false, &[]),
    core(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        true,
        false,
        &["pvc"],
    ),
    core("nodes", "node", "Node", false, true, false, &["no"]),
    core(
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        false,
        &["ns"],
    ),
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        has_status: true,
        has_scale: true,
        create_on_update: false,
        short_names: &["sts"],
    },
];

/// Finds a type by its URL coordinates.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a type by `apiVersion` + `kind`, as written in manifests and seed files.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Finds a type by a human name: plural (`pods`), singular, kind (case-insensitive),
/// short name, or `plural.group` (`statefulsets.apps`). Used by the programmatic API and
/// the RBAC rules so callers need not spell out groups.
pub fn by_name(name: &str) -> Option<&'static ResourceType> {
    let lower = name.to_ascii_lowercase();
    RESOURCES.iter().find(|r| {
        r.plural == lower
            || r.singular == lower
            || r.kind.eq_ignore_ascii_case(&lower)
            || r.short_names.contains(&lower.as_str())
            || r.qualified_name() == lower
    })
}

/// API groups other than core, with their versions, for `/apis` discovery.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree() {
        let sts = by_name("sts").unwrap();
        assert_eq!(sts.api_version(), "apps/v1");
        assert_eq!(by_kind("apps/v1", "StatefulSet"), Some(sts));
        assert_eq!(by_path("apps", "v1", "statefulsets"), Some(sts));
        assert_eq!(by_name("statefulsets.apps"), Some(sts));
        assert_eq!(by_name("Pod").unwrap().plural, "pods");
        assert!(by_kind("apps/v1", "Pod").is_none());
        assert_eq!(groups(), vec![("apps", "v1")]);
    }
}
