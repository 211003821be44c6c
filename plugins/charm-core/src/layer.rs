//! The Pebble layer of the workload (spec 3.3.2) and the "have services changed?" test
//! (spec 3.3.3), as plain data mirroring the `pebble` records of `wit/charm.wit`.

use crate::names;

/// Pebble's `override` of a service or check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Override {
    #[default]
    Unset,
    Merge,
    Replace,
}

/// Pebble's `startup` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Startup {
    #[default]
    Unset,
    Enabled,
    Disabled,
}

/// A service definition. `None`, an empty string and an empty list all mean "not set", as
/// in ops' `Service.to_dict()`, which [`services_differ`] follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    pub override_: Override,
    pub summary: Option<String>,
    pub command: Option<String>,
    pub startup: Startup,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Ordered for rendering; compared as a map.
    pub environment: Vec<(String, String)>,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub requires: Vec<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// Pebble's check level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckLevel {
    #[default]
    Unset,
    Alive,
    Ready,
}

/// A check's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http(String),
    Tcp(u16),
    Exec(String),
}

/// A check definition. Unset period/timeout/threshold take Pebble's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub override_: Override,
    pub level: CheckLevel,
    pub period: Option<String>,
    pub timeout: Option<String>,
    pub threshold: Option<u32>,
    pub probe: Probe,
}

/// A Pebble layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layer {
    pub summary: Option<String>,
    pub description: Option<String>,
    pub services: Vec<(String, ServiceSpec)>,
    pub checks: Vec<(String, CheckSpec)>,
}

/// Label the layer is added under.
pub const LAYER_LABEL: &str = "postgresql";
/// Service names.
pub const POSTGRESQL_SERVICE: &str = "postgresql";
pub const PGBACKREST_SERVER_SERVICE: &str = "pgbackrest server";
pub const LDAP_SYNC_SERVICE: &str = "ldap-sync";
pub const METRICS_SERVICE: &str = "metrics_server";
pub const PGBACKREST_METRICS_SERVICE: &str = "pgbackrest_metrics_service";
pub const ROTATE_LOGS_SERVICE: &str = "rotate-logs";
/// Default `on-failure` of the `postgresql` service.
pub const ORIGINAL_PATRONI_ON_FAILURE_CONDITION: &str = "restart";

/// What the layer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInput {
    pub app: String,
    pub namespace: String,
    pub unit_name: String,
    /// `PD.unit["tls"]` is set: the health check uses https.
    pub tls: bool,
    /// `PD.unit["patroni-on-failure-condition-override"]`.
    pub on_failure_override: Option<String>,
    /// The `monitoring-password` app secret.
    pub monitoring_password: Option<String>,
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// The `metrics_server` service (`_generate_metrics_service`): enabled only once the
/// monitoring password exists. Without one the DSN reads `password=None`, as the upstream
/// f-string renders Python's `None`.
pub fn metrics_service(monitoring_password: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        override_: Override::Replace,
        summary: some("postgresql metrics exporter"),
        command: some("/start-exporter.sh"),
        startup: if monitoring_password.is_some() {
            Startup::Enabled
        } else {
            Startup::Disabled
        },
        user: some(names::WORKLOAD_USER),
        group: some(names::WORKLOAD_USER),
        environment: vec![(
            "DATA_SOURCE_NAME".to_owned(),
            metrics_data_source_name(monitoring_password),
        )],
        after: vec![POSTGRESQL_SERVICE.to_owned()],
        ..ServiceSpec::default()
    }
}

/// `DATA_SOURCE_NAME` of the metrics exporter.
pub fn metrics_data_source_name(monitoring_password: Option<&str>) -> String {
    format!(
        "user={} password={} host=/var/run/postgresql port={} database=postgres",
        names::MONITORING_USER,
        monitoring_password.unwrap_or("None"),
        names::DATABASE_PORT
    )
}

/// `_restart_metrics_service`'s test: the planned DSN does not start with
/// `user=monitoring password=<current password> ` (so the password was rotated).
pub fn metrics_password_changed(planned_dsn: &str, monitoring_password: Option<&str>) -> bool {
    let prefix = format!(
        "user={} password={} ",
        names::MONITORING_USER,
        monitoring_password.unwrap_or("None")
    );
    !planned_dsn.starts_with(&prefix)
}

/// `_postgresql_layer` (spec 3.3.2).
pub fn postgresql_layer(input: &LayerInput) -> Layer {
    let scope = names::cluster_name(&input.app);
    let pg_user = || some(names::WORKLOAD_USER);
    let on_failure = match input.on_failure_override.as_deref() {
        // Upstream uses `get(...) or "restart"`, so an empty override also falls back.
        Some(o) if !o.is_empty() => o.to_owned(),
        _ => ORIGINAL_PATRONI_ON_FAILURE_CONDITION.to_owned(),
    };
    let env = |k: &str, v: String| (k.to_owned(), v);
    let postgresql = ServiceSpec {
        override_: Override::Replace,
        summary: some("entrypoint of the postgresql + patroni image"),
        command: Some(format!("patroni {}/patroni.yml", names::STORAGE_PATH)),
        startup: Startup::Enabled,
        user: pg_user(),
        group: pg_user(),
        environment: vec![
            env(
                "PATRONI_KUBERNETES_LABELS",
                format!("{{application: patroni, cluster-name: {scope}}}"),
            ),
            env(
                "PATRONI_KUBERNETES_LEADER_LABEL_VALUE",
                "primary".to_owned(),
            ),
            env("PATRONI_KUBERNETES_NAMESPACE", input.namespace.clone()),
            env("PATRONI_KUBERNETES_USE_ENDPOINTS", "true".to_owned()),
            env("PATRONI_NAME", names::pod_name(&input.unit_name)),
            env("PATRONI_SCOPE", scope.clone()),
            env(
                "PATRONI_REPLICATION_USERNAME",
                names::REPLICATION_USER.to_owned(),
            ),
            env("PATRONI_SUPERUSER_USERNAME", names::SUPERUSER.to_owned()),
        ],
        on_failure: Some(on_failure),
        ..ServiceSpec::default()
    };
    let pgbackrest_server = ServiceSpec {
        override_: Override::Replace,
        summary: some("pgBackRest server"),
        // The service name doubles as the command.
        command: some(PGBACKREST_SERVER_SERVICE),
        startup: Startup::Disabled,
        user: pg_user(),
        group: pg_user(),
        ..ServiceSpec::default()
    };
    let ldap_sync = ServiceSpec {
        override_: Override::Replace,
        summary: some("synchronize LDAP users"),
        command: some("/start-ldap-synchronizer.sh"),
        startup: Startup::Disabled,
        ..ServiceSpec::default()
    };
    let pgbackrest_metrics = ServiceSpec {
        override_: Override::Replace,
        summary: some("pgbackrest metrics exporter"),
        command: some("/usr/bin/pgbackrest_exporter"),
        startup: Startup::Enabled,
        user: pg_user(),
        group: pg_user(),
        after: vec![POSTGRESQL_SERVICE.to_owned()],
        ..ServiceSpec::default()
    };
    let rotate_logs = ServiceSpec {
        override_: Override::Replace,
        summary: some("rotate logs"),
        command: some("python3 /home/postgres/rotate_logs.py"),
        startup: Startup::Disabled,
        ..ServiceSpec::default()
    };
    let host = names::host_for_unit(&input.app, &input.unit_name);
    let scheme = if input.tls { "https" } else { "http" };
    let check = CheckSpec {
        override_: Override::Replace,
        level: CheckLevel::Ready,
        period: None,
        timeout: None,
        threshold: None,
        probe: Probe::Http(format!(
            "{scheme}://{host}:{}/health",
            names::PATRONI_API_PORT
        )),
    };
    Layer {
        summary: some("postgresql + patroni layer"),
        description: some("pebble config layer for postgresql + patroni"),
        services: vec![
            (POSTGRESQL_SERVICE.to_owned(), postgresql),
            (PGBACKREST_SERVER_SERVICE.to_owned(), pgbackrest_server),
            (LDAP_SYNC_SERVICE.to_owned(), ldap_sync),
            (
                METRICS_SERVICE.to_owned(),
                metrics_service(input.monitoring_password.as_deref()),
            ),
            (PGBACKREST_METRICS_SERVICE.to_owned(), pgbackrest_metrics),
            (ROTATE_LOGS_SERVICE.to_owned(), rotate_logs),
        ],
        checks: vec![(POSTGRESQL_SERVICE.to_owned(), check)],
    }
}

fn opt_eq(a: &Option<String>, b: &Option<String>) -> bool {
    a.as_deref().unwrap_or("") == b.as_deref().unwrap_or("")
}

/// A map view of `(key, value)` pairs: later duplicates win, as in a Python dict.
fn as_map(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut map: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        match map.iter_mut().find(|(mk, _)| *mk == k.as_str()) {
            Some(entry) => entry.1 = v,
            None => map.push((k, v)),
        }
    }
    map.sort_unstable();
    map
}

/// ops' `Service.__eq__`: field-by-field equality of `to_dict()`, which drops empty fields.
/// The environment is a dict (order-insensitive); `after`/`before`/`requires` are lists.
pub fn service_eq(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.override_ == b.override_
        && a.startup == b.startup
        && opt_eq(&a.summary, &b.summary)
        && opt_eq(&a.command, &b.command)
        && opt_eq(&a.user, &b.user)
        && opt_eq(&a.group, &b.group)
        && opt_eq(&a.on_success, &b.on_success)
        && opt_eq(&a.on_failure, &b.on_failure)
        && as_map(&a.environment) == as_map(&b.environment)
        && a.after == b.after
        && a.before == b.before
        && a.requires == b.requires
}

/// ops' `Check.__eq__` (same rules as [`service_eq`]).
pub fn check_eq(a: &CheckSpec, b: &CheckSpec) -> bool {
    a.override_ == b.override_
        && a.level == b.level
        && opt_eq(&a.period, &b.period)
        && opt_eq(&a.timeout, &b.timeout)
        && a.threshold.unwrap_or(0) == b.threshold.unwrap_or(0)
        && a.probe == b.probe
}

/// The definition under `name`; a later duplicate wins, as when building a Python dict.
fn lookup<'a, T>(list: &'a [(String, T)], name: &str) -> Option<&'a T> {
    list.iter().rev().find(|(n, _)| n == name).map(|(_, t)| t)
}

fn names_of<T>(list: &[(String, T)]) -> Vec<&str> {
    let mut names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn named_differ<T>(current: &[(String, T)], new: &[(String, T)], eq: fn(&T, &T) -> bool) -> bool {
    // Dict equality: same names (order-insensitive), and equal definitions per name.
    let names = names_of(current);
    if names != names_of(new) {
        return true;
    }
    names
        .iter()
        .any(|n| !eq(lookup(current, n).unwrap(), lookup(new, n).unwrap()))
}

/// Spec 3.3.3: do the plan's services differ from the layer's? Upstream compares
/// `plan.services != layer.services`, two dicts of `Service`. Note that the plan holds every
/// layer's services merged, so after the `ldap-sync` or `metrics_server` layers changed a
/// service, the comparison reports a difference (as upstream, leading to add-layer + replan).
pub fn services_differ(
    current_plan: &[(String, ServiceSpec)],
    layer: &[(String, ServiceSpec)],
) -> bool {
    named_differ(current_plan, layer, service_eq)
}

/// Spec 3.3.3: do the plan's checks differ from the layer's (add the layer without replan)?
pub fn checks_differ(current_plan: &[(String, CheckSpec)], layer: &[(String, CheckSpec)]) -> bool {
    named_differ(current_plan, layer, check_eq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LayerInput {
        LayerInput {
            app: "postgresql-k8s".into(),
            namespace: "dev".into(),
            unit_name: "postgresql-k8s/1".into(),
            tls: false,
            on_failure_override: None,
            monitoring_password: Some("m0n1t0r".into()),
        }
    }

    fn service<'a>(layer: &'a Layer, name: &str) -> &'a ServiceSpec {
        &layer.services.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn postgresql_service_matches_spec() {
        let layer = postgresql_layer(&input());
        let names: Vec<&str> = layer.services.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "postgresql",
                "pgbackrest server",
                "ldap-sync",
                "metrics_server",
                "pgbackrest_metrics_service",
                "rotate-logs"
            ]
        );
        let pg = service(&layer, "postgresql");
        assert_eq!(pg.override_, Override::Replace);
        assert_eq!(
            pg.command.as_deref(),
            Some("patroni /var/lib/postgresql/data/patroni.yml")
        );
        assert_eq!(pg.startup, Startup::Enabled);
        assert_eq!(
            (pg.user.as_deref(), pg.group.as_deref()),
            (Some("postgres"), Some("postgres"))
        );
        assert_eq!(pg.on_failure.as_deref(), Some("restart"));
        let env: Vec<(&str, &str)> = pg
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                (
                    "PATRONI_KUBERNETES_LABELS",
                    "{application: patroni, cluster-name: patroni-postgresql-k8s}"
                ),
                ("PATRONI_KUBERNETES_LEADER_LABEL_VALUE", "primary"),
                ("PATRONI_KUBERNETES_NAMESPACE", "dev"),
                ("PATRONI_KUBERNETES_USE_ENDPOINTS", "true"),
                ("PATRONI_NAME", "postgresql-k8s-1"),
                ("PATRONI_SCOPE", "patroni-postgresql-k8s"),
                ("PATRONI_REPLICATION_USERNAME", "replication"),
                ("PATRONI_SUPERUSER_USERNAME", "operator"),
            ]
        );
        assert_eq!(
            layer.checks,
            [(
                "postgresql".to_owned(),
                CheckSpec {
                    override_: Override::Replace,
                    level: CheckLevel::Ready,
                    period: None,
                    timeout: None,
                    threshold: None,
                    probe: Probe::Http(
                        "http://postgresql-k8s-1.postgresql-k8s-endpoints:8008/health".into()
                    ),
                }
            )]
        );
    }

    #[test]
    fn other_services_match_spec() {
        let layer = postgresql_layer(&input());
        let backrest = service(&layer, "pgbackrest server");
        assert_eq!(backrest.command.as_deref(), Some("pgbackrest server"));
        assert_eq!(backrest.startup, Startup::Disabled);
        let ldap = service(&layer, "ldap-sync");
        assert_eq!(ldap.command.as_deref(), Some("/start-ldap-synchronizer.sh"));
        assert_eq!(
            (ldap.user.as_ref(), ldap.startup),
            (None, Startup::Disabled)
        );
        let metrics = service(&layer, "metrics_server");
        assert_eq!(metrics.startup, Startup::Enabled);
        assert_eq!(metrics.after, ["postgresql"]);
        assert_eq!(
            metrics.environment,
            [(
                "DATA_SOURCE_NAME".to_owned(),
                "user=monitoring password=m0n1t0r host=/var/run/postgresql port=5432 database=postgres".to_owned()
            )]
        );
        let bm = service(&layer, "pgbackrest_metrics_service");
        assert_eq!(
            (bm.command.as_deref(), bm.startup),
            (Some("/usr/bin/pgbackrest_exporter"), Startup::Enabled)
        );
        assert_eq!(bm.after, ["postgresql"]);
        let rotate = service(&layer, "rotate-logs");
        assert_eq!(
            rotate.command.as_deref(),
            Some("python3 /home/postgres/rotate_logs.py")
        );
        assert_eq!(
            (rotate.user.as_ref(), rotate.startup),
            (None, Startup::Disabled)
        );
    }

    #[test]
    fn tls_override_and_missing_password() {
        let mut i = input();
        i.tls = true;
        i.on_failure_override = Some("ignore".into());
        i.monitoring_password = None;
        let layer = postgresql_layer(&i);
        assert_eq!(
            layer.checks[0].1.probe,
            Probe::Http("https://postgresql-k8s-1.postgresql-k8s-endpoints:8008/health".into())
        );
        assert_eq!(
            service(&layer, "postgresql").on_failure.as_deref(),
            Some("ignore")
        );
        let metrics = service(&layer, "metrics_server");
        assert_eq!(metrics.startup, Startup::Disabled);
        assert!(
            metrics.environment[0]
                .1
                .starts_with("user=monitoring password=None host=")
        );
        i.on_failure_override = Some(String::new());
        assert_eq!(
            service(&postgresql_layer(&i), "postgresql")
                .on_failure
                .as_deref(),
            Some("restart")
        );
    }

    #[test]
    fn metrics_password_rotation_detection() {
        let dsn = metrics_data_source_name(Some("old"));
        assert!(!metrics_password_changed(&dsn, Some("old")));
        assert!(metrics_password_changed(&dsn, Some("new")));
        // "ol" is a prefix of "old", but the trailing space in the test prevents a false match.
        assert!(metrics_password_changed(&dsn, Some("ol")));
    }

    #[test]
    fn services_differ_uses_field_equality() {
        let layer = postgresql_layer(&input());
        let mut plan = layer.services.clone();
        assert!(!services_differ(&plan, &layer.services));
        // Order of services and of environment entries does not matter; empty == unset.
        plan.reverse();
        plan[5].1.environment.reverse();
        let rotate = plan.iter_mut().find(|(n, _)| n == "rotate-logs").unwrap();
        rotate.1.user = Some(String::new());
        assert!(!services_differ(&plan, &layer.services));
        // A changed field, an extra service or a missing one is a difference.
        let mut changed = layer.services.clone();
        changed[0].1.on_failure = Some("ignore".into());
        assert!(services_differ(&changed, &layer.services));
        let mut fewer = layer.services.clone();
        fewer.pop();
        assert!(services_differ(&fewer, &layer.services));
        let mut after_order = layer.services.clone();
        after_order[3].1.after = vec!["postgresql".into(), "x".into()];
        assert!(services_differ(&after_order, &layer.services));
        // The ldap-sync layer replaced the service in the plan: upstream sees a difference.
        let mut plan = layer.services.clone();
        plan[2].1.startup = Startup::Enabled;
        plan[2].1.environment = vec![("LDAP_HOST".into(), "ldap".into())];
        assert!(services_differ(&plan, &layer.services));
        assert!(services_differ(&[], &layer.services));
    }

    #[test]
    fn checks_differ_on_scheme_change() {
        let plain = postgresql_layer(&input());
        let mut i = input();
        i.tls = true;
        let tls = postgresql_layer(&i);
        assert!(!checks_differ(&plain.checks, &plain.checks));
        assert!(checks_differ(&plain.checks, &tls.checks));
        // The services are unaffected by the TLS flag.
        assert!(!services_differ(&plain.services, &tls.services));
    }
}
