//! Fixed names, labels and small derivations (spec 0, 2.3.1, 2.3.3, 2.3.4).

/// PostgreSQL port.
pub const DATABASE_PORT: u16 = 5432;
/// Patroni REST API port.
pub const PATRONI_API_PORT: u16 = 8008;
/// Storage mount (same path in the charm and workload containers).
pub const STORAGE_PATH: &str = "/var/lib/postgresql/data";
/// PostgreSQL data directory.
pub const PGDATA_PATH: &str = "/var/lib/postgresql/data/pgdata";
/// Workload OS user and group.
pub const WORKLOAD_USER: &str = "postgres";
/// The DB superuser the charm uses.
pub const SUPERUSER: &str = "operator";
pub const REPLICATION_USER: &str = "replication";
pub const REWIND_USER: &str = "rewind";
pub const MONITORING_USER: &str = "monitoring";
pub const BACKUP_USER: &str = "backup";
/// Patroni REST API basic-auth user.
pub const PATRONI_USER: &str = "patroni";
/// The peer relation.
pub const PEER_RELATION: &str = "database-peers";

/// Pod name of a unit: `/` replaced by `-` (`postgresql-k8s/0` → `postgresql-k8s-0`).
pub fn pod_name(unit_name: &str) -> String {
    unit_name.replace('/', "-")
}

/// Unit name of a pod/member name: the last `-` becomes `/` (upstream `rsplit("-", 1)`).
pub fn unit_name_from_pod(pod: &str) -> String {
    match pod.rsplit_once('-') {
        Some((app, n)) => format!("{app}/{n}"),
        None => pod.to_owned(),
    }
}

/// A member's short DNS name from its pod (or member) name: the text after the last `-`
/// is the unit number, giving `<app>-<n>.<app>-endpoints` (upstream `_get_hostname_from_unit`).
pub fn host_from_pod(app: &str, pod: &str) -> String {
    let n = pod.rsplit('-').next().unwrap_or(pod);
    format!("{app}-{n}.{app}-endpoints")
}

/// This unit's `<host>` (upstream `_endpoint`).
pub fn host_for_unit(app: &str, unit_name: &str) -> String {
    host_from_pod(app, &pod_name(unit_name))
}

/// Patroni scope / cluster name: `patroni-<app>`.
pub fn cluster_name(app: &str) -> String {
    format!("patroni-{app}")
}

/// Name of the charm-created Service selecting the primary: `<app>-primary`.
pub fn primary_service_name(app: &str) -> String {
    format!("{app}-primary")
}

/// Name of the charm-created Service selecting the replicas: `<app>-replicas`.
pub fn replicas_service_name(app: &str) -> String {
    format!("{app}-replicas")
}

/// In-cluster FQDN of a Service: `<service>.<ns>.svc.cluster.local`.
pub fn service_fqdn(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.cluster.local")
}

/// `<app>-primary.<ns>.svc.cluster.local`.
pub fn primary_fqdn(app: &str, namespace: &str) -> String {
    service_fqdn(&primary_service_name(app), namespace)
}

/// `<app>-replicas.<ns>.svc.cluster.local`.
pub fn replicas_fqdn(app: &str, namespace: &str) -> String {
    service_fqdn(&replicas_service_name(app), namespace)
}

/// Labels the charm patches onto a pod to make it a Patroni member (spec 2.3.4).
pub fn member_pod_labels(app: &str) -> Vec<(String, String)> {
    vec![
        ("application".to_owned(), "patroni".to_owned()),
        ("cluster-name".to_owned(), cluster_name(app)),
    ]
}

/// Which role a charm-created Service selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRole {
    Primary,
    Replica,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: &'static str,
    pub port: u16,
    pub target_port: u16,
    pub protocol: &'static str,
}

/// A ClusterIP Service the charm server-side-applies (spec 2.3.3), as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDefinition {
    pub name: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub selector: Vec<(String, String)>,
    pub ports: Vec<ServicePort>,
    pub service_type: &'static str,
}

/// The `<app>-primary` or `<app>-replicas` Service (spec 2.3.3). Owner references are copied
/// from pod `<app>-0` by the caller, which has the Kubernetes capability.
pub fn patroni_service(app: &str, namespace: &str, role: ServiceRole) -> ServiceDefinition {
    let (name, role_label) = match role {
        ServiceRole::Primary => (primary_service_name(app), "primary"),
        ServiceRole::Replica => (replicas_service_name(app), "replica"),
    };
    let app_label = ("app.kubernetes.io/name".to_owned(), app.to_owned());
    ServiceDefinition {
        name,
        namespace: namespace.to_owned(),
        labels: vec![app_label.clone()],
        selector: vec![
            app_label,
            ("cluster-name".to_owned(), cluster_name(app)),
            ("role".to_owned(), role_label.to_owned()),
        ],
        ports: vec![
            ServicePort {
                name: "api",
                port: PATRONI_API_PORT,
                target_port: PATRONI_API_PORT,
                protocol: "TCP",
            },
            ServicePort {
                name: "database",
                port: DATABASE_PORT,
                target_port: DATABASE_PORT,
                protocol: "TCP",
            },
        ],
        service_type: "ClusterIP",
    }
}

/// Secret scope: application-owned or unit-owned peer secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope {
    App,
    Unit,
}

/// Label of the peer secret of a scope: `database-peers.<app>.app` / `.unit` (spec 2.3.1).
pub fn secret_label(app: &str, scope: SecretScope) -> String {
    let suffix = match scope {
        SecretScope::App => "app",
        SecretScope::Unit => "unit",
    };
    format!("{PEER_RELATION}.{app}.{suffix}")
}

/// The secret-content key of a field (upstream `_translate_field_to_secret_key`, Juju-secrets
/// path): first the override `ca` → `cauth` (exact key only), then `_` → `-`, then leading and
/// trailing `-` stripped. `monitoring_password` → `monitoring-password`.
pub fn secret_key(field: &str) -> String {
    let field = if field == "ca" { "cauth" } else { field };
    field.replace('_', "-").trim_matches('-').to_owned()
}

/// Password alphabet: Python's `string.ascii_letters + string.digits`, in that order.
pub const PASSWORD_ALPHABET: &[u8; 62] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Generated password length.
pub const PASSWORD_LENGTH: usize = 16;

/// Bytes at or above this are rejected: 248 = 4 × 62, so the accepted bytes map onto the
/// alphabet exactly four times each and `byte % 62` is uniform.
const REJECTION_BOUND: u8 = (256 / PASSWORD_ALPHABET.len() * PASSWORD_ALPHABET.len()) as u8;

/// Build a 16-character password from random bytes by rejection sampling. Returns `None`
/// when the bytes run out first (more than 16 bytes are needed when some are rejected; 32
/// bytes fail with probability below 10⁻²⁰).
pub fn password_from_bytes(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    for &b in bytes {
        if b >= REJECTION_BOUND {
            continue;
        }
        out.push(PASSWORD_ALPHABET[(b % PASSWORD_ALPHABET.len() as u8) as usize] as char);
        if out.len() == PASSWORD_LENGTH {
            return Some(out);
        }
    }
    None
}

/// A 16-character password drawn uniformly from [`PASSWORD_ALPHABET`]. `fill` must fill its
/// buffer from a CSPRNG (the host's `random` capability); it is called again until enough
/// bytes were accepted.
pub fn generate_password(mut fill: impl FnMut(&mut [u8])) -> String {
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    let mut buf = [0u8; 32];
    while out.len() < PASSWORD_LENGTH {
        fill(&mut buf);
        for &b in &buf {
            if b < REJECTION_BOUND && out.len() < PASSWORD_LENGTH {
                out.push(PASSWORD_ALPHABET[(b % PASSWORD_ALPHABET.len() as u8) as usize] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_pod_host_names() {
        assert_eq!(pod_name("postgresql-k8s/0"), "postgresql-k8s-0");
        assert_eq!(unit_name_from_pod("postgresql-k8s-12"), "postgresql-k8s/12");
        assert_eq!(
            host_from_pod("postgresql-k8s", "postgresql-k8s-3"),
            "postgresql-k8s-3.postgresql-k8s-endpoints"
        );
        assert_eq!(host_for_unit("pg", "pg/7"), "pg-7.pg-endpoints");
        assert_eq!(cluster_name("pg"), "patroni-pg");
        assert_eq!(
            primary_fqdn("pg", "dev"),
            "pg-primary.dev.svc.cluster.local"
        );
        assert_eq!(
            replicas_fqdn("pg", "dev"),
            "pg-replicas.dev.svc.cluster.local"
        );
    }

    #[test]
    fn services_and_labels() {
        let primary = patroni_service("pg", "dev", ServiceRole::Primary);
        assert_eq!(primary.name, "pg-primary");
        assert_eq!(
            primary.labels,
            [("app.kubernetes.io/name".to_owned(), "pg".to_owned())]
        );
        let selector: Vec<(&str, &str)> = primary
            .selector
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            selector,
            [
                ("app.kubernetes.io/name", "pg"),
                ("cluster-name", "patroni-pg"),
                ("role", "primary")
            ]
        );
        assert_eq!(
            primary.ports[0],
            ServicePort {
                name: "api",
                port: 8008,
                target_port: 8008,
                protocol: "TCP"
            }
        );
        assert_eq!(primary.ports[1].port, 5432);
        let replicas = patroni_service("pg", "dev", ServiceRole::Replica);
        assert_eq!(replicas.name, "pg-replicas");
        assert_eq!(
            replicas.selector[2],
            ("role".to_owned(), "replica".to_owned())
        );
        let labels = member_pod_labels("pg");
        assert_eq!(labels[0], ("application".to_owned(), "patroni".to_owned()));
        assert_eq!(
            labels[1],
            ("cluster-name".to_owned(), "patroni-pg".to_owned())
        );
    }

    #[test]
    fn secret_labels_and_keys() {
        assert_eq!(
            secret_label("pg", SecretScope::App),
            "database-peers.pg.app"
        );
        assert_eq!(
            secret_label("pg", SecretScope::Unit),
            "database-peers.pg.unit"
        );
        assert_eq!(secret_key("monitoring_password"), "monitoring-password");
        assert_eq!(secret_key("ca"), "cauth");
        assert_eq!(secret_key("_private_"), "private");
        assert_eq!(secret_key("ca-app"), "ca-app");
        // The override applies before `_` replacement, so `_ca` is not renamed.
        assert_eq!(secret_key("_ca"), "ca");
    }

    #[test]
    fn password_rejection_sampling() {
        // 0 -> 'a', 61 -> '9', 62 -> 'a' again, 247 -> 247 % 62 = 61 -> '9'; 248..=255 rejected.
        let mut bytes = vec![248, 255, 0, 61, 62, 247, 25, 26, 51, 52];
        bytes.extend([1u8; 9]);
        // 8 from the list above plus 8 of the nine 1s; the last byte is not needed.
        assert_eq!(
            password_from_bytes(&bytes).as_deref(),
            Some("a9a9zAZ0bbbbbbbb")
        );
        assert_eq!(password_from_bytes(&[0u8; 15]), None);
        assert_eq!(password_from_bytes(&[250u8; 64]), None);
        assert_eq!(REJECTION_BOUND, 248);
    }

    #[test]
    fn generate_password_refills_until_done() {
        // First fill is all rejected, second yields the sequence 0, 1, 2, ...
        let mut calls = 0;
        let pw = generate_password(|buf| {
            calls += 1;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if calls == 1 { 255 } else { i as u8 };
            }
        });
        assert_eq!(calls, 2);
        assert_eq!(pw, "abcdefghijklmnop");
        assert!(pw.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
    }

    #[test]
    fn accepted_bytes_cover_alphabet_uniformly() {
        let mut counts = [0u32; 62];
        for b in 0..REJECTION_BOUND {
            counts[(b % 62) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c == 4));
    }
}
