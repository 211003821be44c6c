//! The simulated world's state: one serde tree, human-writable in YAML (docs/STATE.md).
//!
//! Everything a capability can observe lives here, so a run is a pure function of this state,
//! the seed, the event and the plugins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Bag = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldState {
    pub model: ModelInfo,
    /// The application name.
    pub app: String,
    /// The leader unit, e.g. `postgresql-k8s/0`.
    pub leader: Option<String>,
    /// Units not dying (goal-state). Defaults to the number of units.
    pub planned_units: Option<u32>,
    /// Config values set by the operator; the charm's defaults fill the rest.
    pub config: BTreeMap<String, ConfigValue>,
    pub app_status: StatusState,
    pub units: BTreeMap<String, UnitState>,
    pub relations: Vec<RelationState>,
    pub secrets: Vec<SecretState>,
    pub kubernetes: KubeState,
    pub patroni: PatroniState,
    pub postgresql: PgState,
    /// Virtual time, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Seed of the world's random source.
    pub seed: u64,
    /// Injected faults.
    pub faults: Vec<crate::world::faults::Fault>,
    /// The running action, if the event is one.
    pub action: Option<ActionState>,
}

impl Default for WorldState {
    fn default() -> Self {
        WorldState {
            model: ModelInfo::default(),
            app: "postgresql-k8s".into(),
            leader: None,
            planned_units: None,
            config: BTreeMap::new(),
            app_status: StatusState::default(),
            units: BTreeMap::new(),
            relations: Vec::new(),
            secrets: Vec::new(),
            kubernetes: KubeState::default(),
            patroni: PatroniState::default(),
            postgresql: PgState::default(),
            now_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            seed: 0,
            faults: Vec::new(),
            action: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelInfo {
    pub name: String,
    pub uuid: String,
    pub juju_version: String,
}

impl Default for ModelInfo {
    fn default() -> Self {
        ModelInfo {
            name: "dev".into(),
            uuid: "00000000-0000-4000-8000-000000000000".into(),
            juju_version: "3.6.11".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    Active,
    Blocked,
    Maintenance,
    Waiting,
    #[default]
    Unknown,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatusState {
    pub kind: StatusKind,
    pub message: String,
}

impl std::fmt::Display for StatusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        if self.message.is_empty() {
            write!(f, "{k}")
        } else {
            write!(f, "{k}: {}", self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UnitState {
    pub status: StatusState,
    /// Every status set, oldest first (virtual time, status).
    pub status_history: Vec<(u64, StatusState)>,
    pub workload_version: String,
    /// Controller-side state (`state-get`/`state-set`); the deferral queue lives here.
    pub state: Bag,
    pub ports: Vec<PortState>,
    pub pebble: PebbleState,
    /// The unit is leaving (scale-down): not counted in planned units.
    pub dying: bool,
}

impl UnitState {
    /// The statuses set after the first `n` of the history, oldest first.
    pub fn statuses_since(&self, n: usize) -> Vec<StatusState> {
        self.status_history
            .iter()
            .skip(n)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortState {
    pub protocol: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RelationState {
    pub id: u32,
    /// This charm's endpoint, e.g. `database-peers`.
    pub endpoint: String,
    /// The remote application; for a peer relation, this application.
    pub remote_app: String,
    /// Units in the relation. For a peer relation: this application's units that joined;
    /// otherwise the remote application's units.
    pub units: Vec<String>,
    /// Application databags by application name.
    pub app_data: BTreeMap<String, Bag>,
    /// Unit databags by unit name.
    pub unit_data: BTreeMap<String, Bag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecretOwnerKind {
    #[default]
    Application,
    Unit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretState {
    pub id: String,
    pub label: String,
    pub owner: SecretOwnerKind,
    /// The owning application or unit name.
    pub owner_name: String,
    pub revision: u32,
    pub content: Bag,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ActionState {
    pub name: String,
    pub params: BTreeMap<String, ConfigValue>,
    pub results: Bag,
    pub failed: Option<String>,
    pub logs: Vec<String>,
}

// ---------------------------------------------------------------- Kubernetes

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeState {
    /// Without trust, the operations that need it answer 403 (`juju trust`).
    pub trusted: bool,
    pub pods: BTreeMap<String, PodState>,
    pub services: BTreeMap<String, ServiceState>,
    pub endpoints: BTreeMap<String, EndpointsState>,
    pub nodes: BTreeMap<String, NodeState>,
    pub statefulsets: BTreeMap<String, StatefulSetState>,
    /// The resource-version counter.
    pub resource_version: u64,
}

impl Default for KubeState {
    fn default() -> Self {
        KubeState {
            trusted: true,
            pods: BTreeMap::new(),
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            nodes: BTreeMap::new(),
            statefulsets: BTreeMap::new(),
            resource_version: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
    pub block_owner_deletion: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PodState {
    pub labels: Bag,
    pub annotations: Bag,
    pub owner_references: Vec<OwnerRef>,
    pub node_name: Option<String>,
    pub ip: Option<String>,
    /// Container name -> resource limits (cpu, memory).
    pub limits: BTreeMap<String, Bag>,
    pub resource_version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceState {
    pub labels: Bag,
    pub selector: Bag,
    pub ports: Vec<ServicePortState>,
    pub service_type: String,
    pub owner_references: Vec<OwnerRef>,
    pub field_manager: Option<String>,
    pub resource_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServicePortState {
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointsState {
    pub labels: Bag,
    pub annotations: Bag,
    pub owner_references: Vec<OwnerRef>,
    pub resource_version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeState {
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatefulSetState {
    pub replicas: u32,
    pub partition: u32,
    pub uid: String,
}

// ---------------------------------------------------------------- Pebble

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PebbleState {
    /// Whether the Pebble socket answers.
    pub reachable: bool,
    /// Layers in order, by label.
    pub layers: Vec<LayerState>,
    /// Running state by service name.
    pub running: BTreeMap<String, ServiceRun>,
    /// The definition each running service was started with (replan restarts on change).
    pub started_with: BTreeMap<String, ServiceDef>,
    pub files: BTreeMap<String, FileState>,
    /// Exec commands run, in order (argv joined by spaces).
    pub exec_log: Vec<String>,
    /// Signals sent: (signal, service).
    pub signals: Vec<(String, String)>,
}

impl Default for PebbleState {
    fn default() -> Self {
        PebbleState {
            reachable: true,
            layers: Vec::new(),
            running: BTreeMap::new(),
            started_with: BTreeMap::new(),
            files: BTreeMap::new(),
            exec_log: Vec::new(),
            signals: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LayerState {
    pub label: String,
    pub services: BTreeMap<String, ServiceDef>,
    pub checks: BTreeMap<String, CheckDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceDef {
    #[serde(rename = "override")]
    pub override_: String,
    pub summary: Option<String>,
    pub command: Option<String>,
    pub startup: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub environment: BTreeMap<String, String>,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub requires: Vec<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CheckDef {
    #[serde(rename = "override")]
    pub override_: String,
    pub level: String,
    pub period: Option<String>,
    pub timeout: Option<String>,
    pub threshold: Option<u32>,
    pub http: Option<String>,
    pub tcp: Option<u16>,
    pub exec: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceRun {
    Active,
    #[default]
    Inactive,
    Backoff,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileState {
    pub directory: bool,
    pub content: String,
    pub permissions: u32,
    pub user: String,
    pub group: String,
}

// ---------------------------------------------------------------- Patroni

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatroniState {
    /// Members by pod name.
    pub members: BTreeMap<String, MemberState>,
    /// The dynamic configuration (what PATCH /config edits), as JSON.
    pub dynamic_config: serde_json::Value,
    /// Leader lock TTL in virtual milliseconds (a failed primary is replaced after it).
    pub ttl_ms: u64,
    /// Time a starting member needs to run, in virtual milliseconds.
    pub start_ms: u64,
    /// Whether the cluster was bootstrapped (`initialize` key in the DCS).
    pub initialized: bool,
    /// When the last leader stopped being one; a new leader is elected a TTL later.
    pub leader_lost_ms: Option<u64>,
}

impl Default for PatroniState {
    fn default() -> Self {
        PatroniState {
            members: BTreeMap::new(),
            dynamic_config: serde_json::json!({}),
            ttl_ms: 30_000,
            start_ms: 5_000,
            initialized: false,
            leader_lost_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MemberState {
    /// `leader`, `sync_standby`, `replica`.
    pub role: String,
    /// `starting`, `running`, `streaming`, `stopped`, `crashed`.
    pub state: String,
    /// Virtual time the member started starting.
    pub since_ms: u64,
    pub timeline: u32,
    pub lag: i64,
    pub pending_restart: bool,
}

// ---------------------------------------------------------------- PostgreSQL

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PgState {
    pub users: BTreeMap<String, PgRole>,
    pub databases: BTreeMap<String, PgDatabase>,
    /// Whether `set_up_database` ran (role `admin` exists and PUBLIC was revoked).
    pub database_set_up: bool,
    pub ssl: bool,
    pub pending_restart: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PgRole {
    pub login: bool,
    pub superuser: bool,
    pub password: Option<String>,
    pub roles: Vec<String>,
    pub can_create_database: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PgDatabase {
    pub extensions: Vec<String>,
}
