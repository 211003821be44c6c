//! PostgreSQL parameters derived from the configuration (spec 3.3.4 steps 2 and 6).
//!
//! The values keep the Python types upstream produces, because those types show in the JSON
//! sent to Patroni: config-derived parameters keep their config type, while the computed
//! ones (`shared_buffers` and `effective_cache_size` of the production profile, the worker
//! settings, `wal_compression`) are strings, as upstream builds them with `str()`/f-strings.
//! Rendered into `patroni.yml` both look the same (see [`Value::python_str`]).
//!
//! Memory arithmetic is done in `f64` exactly where upstream mixes ints and floats
//! (`int(available_memory * 0.4 / 10**6)`), so that truncation matches bit for bit.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::{CharmConfig, Profile, Value, WorkerOption, WorkerSetting};
use crate::json::Json;
use core::fmt;

/// Config-name prefixes that become PostgreSQL parameters (spec 3.3.4 step 2).
pub const PARAMETER_PREFIXES: [&str; 12] = [
    "connection",
    "cpu",
    "durability",
    "instance",
    "logging",
    "memory",
    "optimizer",
    "request",
    "response",
    "session",
    "storage",
    "vacuum",
];

/// An insertion-ordered map of parameter name to value, with Python dict semantics:
/// re-inserting an existing name replaces the value but keeps its position.
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    /// Names are mostly slices of the static option names: borrowed, not allocated twice
    /// (entry and index) for each of ~100 parameters on every build.
    entries: Vec<(Cow<'static, str>, Value)>,
    /// Name → position in `entries`. A linear search made building the ~100 parameters
    /// quadratic in string compares, a visible share of every `update_config`.
    index: HashMap<Cow<'static, str>, usize, BuildHasherDefault<Fnv64>>,
    /// These parameters as `patroni.yml` lines, made at most once ([`Parameters::rendered`]):
    /// pebble-ready renders `patroni.yml` twice with the same (shared) parameters, and their
    /// ~100 lines were most of each render. Cleared by every change.
    rendered: OnceCell<String>,
}

/// Equal when the entries are, in order (the index follows from them).
impl PartialEq for Parameters {
    fn eq(&self, other: &Parameters) -> bool {
        self.entries == other.entries
    }
}

/// FNV-1a, 64-bit: short keys, no DoS concern inside one hook's own parameters.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

impl Parameters {
    pub fn new() -> Parameters {
        Parameters::default()
    }

    pub fn with_capacity(n: usize) -> Parameters {
        Parameters {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity_and_hasher(n, Default::default()),
            rendered: OnceCell::new(),
        }
    }

    /// Insert or replace (keeping the original position, like `dict.__setitem__`).
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        let name = name.into();
        self.rendered.take();
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// `render(self)`, computed on the first call and kept until the parameters change. One
    /// renderer per parameter set (`patroni_yml`'s): a later call gets the first one's text.
    pub fn rendered(&self, render: impl FnOnce(&Parameters) -> String) -> &str {
        self.rendered.get_or_init(|| render(self))
    }

    /// `dict.update`: insert every entry of `other` in its order.
    pub fn update(&mut self, other: &Parameters) {
        for (name, value) in &other.entries {
            self.insert(name.clone(), value.clone());
        }
    }
}

/// Why the parameters cannot be built (each fails the hook upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsError {
    /// `memory_shared_buffers` is above 40 % of the effective memory. Upstream raises a bare
    /// `Exception` with this text (spec 13.8).
    SharedBuffersTooLarge {
        shared_buffers: i64,
        max_pages: i64,
        max_mb: i64,
    },
    /// A numeric `cpu_max_*` value exceeds 10 × vCores (upstream `ValueError`).
    WorkerCapExceeded {
        option: &'static str,
        value: i64,
        cap: i64,
    },
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::SharedBuffersTooLarge { max_mb, .. } => write!(
                f,
                "Shared buffers config option should be at most 40% of the available memory, which is {max_mb}MB"
            ),
            ParamsError::WorkerCapExceeded { option, value, cap } => write!(
                f,
                "{option} value {value} exceeds maximum allowed of {cap} (10 * vCores). Please set a value <= {cap}."
            ),
        }
    }
}

impl std::error::Error for ParamsError {}

/// The parameter name for a config option, or `None` when the option is not a parameter.
///
/// Rule (upstream `build_postgresql_parameters`): options with one of the
/// [`PARAMETER_PREFIXES`] drop everything up to the first `_`; `date_style`/`time_zone`
/// become `DateStyle`/`TimeZone`; `pg_stat_statements_x` becomes `pg_stat_statements.x`;
/// `maximum_lag_on_failover` is a Patroni setting and is skipped.
pub fn parameter_name(option: &'static str) -> Option<Cow<'static, str>> {
    // Upstream tests `option.startswith(prefixes)`. On this charm's options that is the same
    // as comparing the part before the first `_` (a test checks every option), and a length
    // check rejects most prefixes without a string compare: this runs for every option.
    let (group, rest) = option.split_once('_').unwrap_or((option, ""));
    if !PARAMETER_PREFIXES.contains(&group) {
        return None;
    }
    match rest {
        "date_style" => Some("DateStyle".into()),
        "time_zone" => Some("TimeZone".into()),
        "maximum_lag_on_failover" => None,
        _ => match rest.strip_prefix("pg_stat_statements") {
            Some(tail) => Some(
                format!(
                    "pg_stat_statements.{}",
                    tail.strip_prefix('_').unwrap_or(tail)
                )
                .into(),
            ),
            None => Some(rest.into()),
        },
    }
}

/// The memory the parameters are sized for: the available memory, lowered to
/// `profile_limit_memory` × 10⁶ bytes when that option is set (spec 3.3.4 step 2).
pub fn effective_memory(config: &CharmConfig, available_memory: i64) -> i64 {
    match config.profile_limit_memory() {
        // Upstream tests truthiness; 0 cannot pass validation (minimum 128) anyway.
        Some(limit_mb) if limit_mb != 0 => available_memory.min(limit_mb * 1_000_000),
        _ => available_memory,
    }
}

/// Upstream `build_postgresql_parameters`: the config-derived parameters in config-name order,
/// the 40 % `shared_buffers` check, and the production-profile memory defaults.
///
/// Quirk kept (spec 12.3): `logging_track_functions` and `optimizer_track_functions` both
/// map to `track_functions`; the later name (`optimizer_…`) wins, at the earlier one's position.
pub fn config_parameters(
    config: &CharmConfig,
    available_memory: i64,
) -> Result<Parameters, ParamsError> {
    let memory = effective_memory(config, available_memory);
    let mut params = Parameters::with_capacity(crate::config::OPTIONS.len());
    for (option, value) in config.iter() {
        if let Some(name) = parameter_name(option) {
            params.insert(name, value.clone());
        }
    }

    // int(available_memory * 0.4 / 10**6), then int(mb * 10**3 / 8): 8 kB pages per MB.
    let max_mb = (memory as f64 * 0.4 / 1e6) as i64;
    let max_pages = ((max_mb * 1000) as f64 / 8.0) as i64;
    let configured = match params.get("shared_buffers") {
        Some(Value::Int(pages)) => Some(*pages),
        _ => None,
    };
    if let Some(pages) = configured
        && pages > max_pages
    {
        return Err(ParamsError::SharedBuffersTooLarge {
            shared_buffers: pages,
            max_pages,
            max_mb,
        });
    }

    if config.profile() == Profile::Production {
        let shared_buffers_bytes = match configured {
            Some(pages) => pages * 8 * 1000,
            None => {
                // 25 % of memory, expressed in pages as bytes·128/10⁶.
                let bytes = (memory as f64 * 0.25) as i64;
                let pages = ((bytes * 128) as f64 / 1e6) as i64;
                params.insert("shared_buffers", Value::Str(pages.to_string()));
                bytes
            }
        };
        let cache_bytes = memory - shared_buffers_bytes;
        let cache_pages = ((cache_bytes as f64 / 1e6) as i64) * 128;
        params.insert("effective_cache_size", Value::Str(cache_pages.to_string()));
    }
    Ok(params)
}

/// Upstream `_calculate_worker_process_config`: the worker parameters in computation order.
///
/// `max_worker_processes` is the base: `auto` = min(8, 2·cores); a number is kept if it is
/// at most 10·cores. Without it the base is PostgreSQL's default 8. The other four follow:
/// `auto` = the base; a number must be at most 10·cores, and `max_parallel_workers` is also
/// capped at the base. Values are strings, as upstream returns `str(...)`.
pub fn worker_parameters(config: &CharmConfig, cpu_cores: i64) -> Result<Parameters, ParamsError> {
    let cap = 10 * cpu_cores;
    let check = |option: WorkerOption, value: i64| {
        if value > cap {
            Err(ParamsError::WorkerCapExceeded {
                option: option.option_name(),
                value,
                cap,
            })
        } else {
            Ok(value)
        }
    };
    let mut result = Parameters::new();
    let base_option = WorkerOption::MaxWorkerProcesses;
    let base = match config.worker_setting(base_option) {
        Some(WorkerSetting::Auto) => Some(8.min(2 * cpu_cores)),
        Some(WorkerSetting::Count(n)) => Some(check(base_option, n)?),
        None => None,
    };
    if let Some(base) = base {
        result.insert(base_option.parameter_name(), Value::Str(base.to_string()));
    }
    let base = base.unwrap_or(8);
    for option in &WorkerOption::ALL[1..] {
        let value = match config.worker_setting(*option) {
            Some(WorkerSetting::Auto) => base,
            Some(WorkerSetting::Count(n)) => {
                let n = check(*option, n)?;
                if *option == WorkerOption::MaxParallelWorkers {
                    n.min(base)
                } else {
                    n
                }
            }
            None => continue,
        };
        result.insert(option.parameter_name(), Value::Str(value.to_string()));
    }
    Ok(result)
}

/// Upstream `_build_postgresql_parameters`: [`config_parameters`], then the worker settings
/// merged over them (same keys, so positions stay), then `wal_compression` as `on`/`off`
/// (`on` when `cpu_wal_compression` is unset). This is what `patroni.yml` renders.
pub fn build_parameters(
    config: &CharmConfig,
    cpu_cores: i64,
    available_memory: i64,
) -> Result<Parameters, ParamsError> {
    let mut params = config_parameters(config, available_memory)?;
    let workers = worker_parameters(config, cpu_cores)?;
    params.update(&workers);
    let compression = if config.cpu_wal_compression().unwrap_or(true) {
        "on"
    } else {
        "off"
    };
    params.insert("wal_compression", Value::Str(compression.to_owned()));
    Ok(params)
}

/// `max_connections`: `experimental_max_connections` when set and non-zero (upstream tests
/// truthiness), else max(4·cores, 100).
pub fn max_connections(config: &CharmConfig, cpu_cores: i64) -> i64 {
    match config.experimental_max_connections() {
        Some(n) if n != 0 => n,
        _ => (4 * cpu_cores).max(100),
    }
}

/// The body of the bulk `PATCH /config` of `update_config` (spec 3.3.4 step 6, spec 10.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfigUpdate {
    /// `postgresql.parameters`: the restart-requiring parameters Patroni controls.
    pub parameters: Vec<(String, Json)>,
    pub synchronous_node_count: i64,
    pub synchronous_mode_strict: bool,
    pub maximum_lag_on_failover: Option<i64>,
    /// `standby_cluster.host`, only for a standby cluster in async replication.
    pub standby_cluster_host: Option<String>,
}

impl ApiConfigUpdate {
    /// Build the update. `workers` is [`worker_parameters`]' output; `max_worker_processes`
    /// and `max_logical_replication_workers` are sent only when computed there.
    ///
    /// `shared_buffers`, `max_prepared_transactions` and `wal_keep_size` are the *config*
    /// values, not the computed parameters: with `memory_shared_buffers` unset upstream sends
    /// `null`, which makes Patroni drop the key from the dynamic configuration.
    pub fn new(
        config: &CharmConfig,
        cpu_cores: i64,
        workers: &Parameters,
        synchronous_node_count: i64,
        synchronous_mode_strict: bool,
        standby_cluster_host: Option<String>,
    ) -> ApiConfigUpdate {
        let int_or_null = |v: Option<i64>| v.map_or(Json::Null, Json::Int);
        let mut parameters = vec![
            (
                "max_connections".to_owned(),
                Json::Int(max_connections(config, cpu_cores)),
            ),
            (
                "max_prepared_transactions".to_owned(),
                int_or_null(config.memory_max_prepared_transactions()),
            ),
            ("max_replication_slots".to_owned(), Json::Int(25)),
            ("max_wal_senders".to_owned(), Json::Int(25)),
            (
                "shared_buffers".to_owned(),
                int_or_null(config.memory_shared_buffers()),
            ),
            (
                "wal_keep_size".to_owned(),
                int_or_null(config.durability_wal_keep_size()),
            ),
        ];
        for name in ["max_worker_processes", "max_logical_replication_workers"] {
            if let Some(value) = workers.get(name) {
                parameters.push((name.to_owned(), value_to_json(value)));
            }
        }
        ApiConfigUpdate {
            parameters,
            synchronous_node_count,
            synchronous_mode_strict,
            maximum_lag_on_failover: config.durability_maximum_lag_on_failover(),
            standby_cluster_host,
        }
    }

    /// The JSON body, key order as listed in spec 10.1.
    pub fn to_json(&self) -> Json {
        let mut body = vec![
            (
                "postgresql".to_owned(),
                Json::Object(vec![
                    (
                        "remove_data_directory_on_rewind_failure".to_owned(),
                        Json::Bool(false),
                    ),
                    (
                        "remove_data_directory_on_diverged_timelines".to_owned(),
                        Json::Bool(false),
                    ),
                    (
                        "parameters".to_owned(),
                        Json::Object(self.parameters.clone()),
                    ),
                ]),
            ),
            (
                "synchronous_node_count".to_owned(),
                Json::Int(self.synchronous_node_count),
            ),
            (
                "synchronous_mode_strict".to_owned(),
                Json::Bool(self.synchronous_mode_strict),
            ),
            (
                "maximum_lag_on_failover".to_owned(),
                self.maximum_lag_on_failover.map_or(Json::Null, Json::Int),
            ),
        ];
        if let Some(host) = &self.standby_cluster_host {
            body.push((
                "standby_cluster".to_owned(),
                Json::Object(vec![("host".to_owned(), Json::Str(host.clone()))]),
            ));
        }
        Json::Object(body)
    }
}

/// A parameter value as the JSON Python's `json.dumps` would write for it.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(*i),
        Value::Float(f) => Json::Float(*f),
        Value::Str(s) => Json::Str(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_groups_match_the_upstream_prefix_test() {
        for o in crate::config::OPTIONS {
            let upstream = PARAMETER_PREFIXES.iter().any(|p| o.name.starts_with(p));
            let group = o.name.split_once('_').map_or(o.name, |(g, _)| g);
            assert_eq!(upstream, PARAMETER_PREFIXES.contains(&group), "{}", o.name);
        }
    }

    #[test]
    fn parameters_keep_dict_semantics() {
        let mut p = Parameters::new();
        p.insert("work_mem", Value::Int(4));
        p.insert("DateStyle", Value::Str("ISO".into()));
        p.insert("work_mem", Value::Int(8));
        let order: Vec<_> = p.iter().map(|(n, v)| (n.to_owned(), v.clone())).collect();
        assert_eq!(
            order,
            vec![
                ("work_mem".to_owned(), Value::Int(8)),
                ("DateStyle".to_owned(), Value::Str("ISO".into())),
            ],
            "a re-insert replaces the value in place"
        );
        assert_eq!(p.get("DateStyle"), Some(&Value::Str("ISO".into())));
        assert_eq!(p.get("datestyle"), None);
        let mut q = Parameters::new();
        q.insert("DateStyle", Value::Str("ISO".into()));
        q.insert("work_mem", Value::Int(8));
        assert_ne!(p, q, "equality follows the order, like the rendered output");
        q.update(&p);
        assert_eq!(q.len(), 2);
    }

    fn config(items: &[(&str, Value)]) -> CharmConfig {
        let pairs: Vec<_> = items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        CharmConfig::from_pairs(&pairs).unwrap()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    const GIB: i64 = 1 << 30;

    #[test]
    fn parameter_names_follow_the_prefix_rule_and_renames() {
        assert_eq!(
            parameter_name("durability_synchronous_commit").as_deref(),
            Some("synchronous_commit")
        );
        assert_eq!(
            parameter_name("vacuum_vacuum_cost_delay").as_deref(),
            Some("vacuum_cost_delay")
        );
        assert_eq!(
            parameter_name("request_date_style").as_deref(),
            Some("DateStyle")
        );
        assert_eq!(
            parameter_name("request_time_zone").as_deref(),
            Some("TimeZone")
        );
        assert_eq!(
            parameter_name("optimizer_pg_stat_statements_track_utility").as_deref(),
            Some("pg_stat_statements.track_utility")
        );
        assert_eq!(
            parameter_name("optimizer_pg_stat_statements_save").as_deref(),
            Some("pg_stat_statements.save")
        );
        assert_eq!(parameter_name("durability_maximum_lag_on_failover"), None);
        assert_eq!(parameter_name("experimental_max_connections"), None);
        assert_eq!(parameter_name("plugin_audit_enable"), None);
        assert_eq!(parameter_name("profile_limit_memory"), None);
        assert_eq!(parameter_name("synchronous_node_count"), None);
        assert_eq!(parameter_name("ldap_map"), None);
    }

    #[test]
    fn default_config_on_4_gib_production() {
        // 4 GiB = 4294967296 bytes; shared_buffers = int(4294967296 * 0.25) = 1073741824 bytes
        // -> int(1073741824 * 128 / 1e6) = int(137438.953472) = 137438 pages.
        // effective_cache_size = int((4294967296 - 1073741824) / 1e6) * 128 = 3221 * 128 = 412288.
        let params = build_parameters(&CharmConfig::defaults(), 2, 4 * GIB).unwrap();
        assert_eq!(params.get("shared_buffers"), Some(&s("137438")));
        assert_eq!(params.get("effective_cache_size"), Some(&s("412288")));
        assert_eq!(params.get("synchronous_commit"), Some(&s("on")));
        assert_eq!(params.get("DateStyle"), Some(&s("ISO, MDY")));
        assert_eq!(params.get("TimeZone"), Some(&s("UTC")));
        assert_eq!(params.get("pg_stat_statements.track"), Some(&s("top")));
        assert_eq!(
            params.get("cpu_index_tuple_cost"),
            Some(&Value::Float(0.005))
        );
        assert_eq!(params.get("log_connections"), Some(&Value::Bool(true)));
        assert_eq!(params.get("maximum_lag_on_failover"), None);
        // 2 cores: auto base = min(8, 4) = 4, and every dependent worker setting follows it.
        for name in [
            "max_worker_processes",
            "max_parallel_workers",
            "max_parallel_maintenance_workers",
            "max_logical_replication_workers",
            "max_sync_workers_per_subscription",
        ] {
            assert_eq!(params.get(name), Some(&s("4")), "{name}");
        }
        assert_eq!(params.get("wal_compression"), Some(&s("on")));
        // 186 options: 60 lack a parameter prefix (synchronous 2, experimental 1, ldap 2,
        // plugin 53, profile 2), maximum_lag_on_failover is skipped and memory_shared_buffers
        // is unset: 124 set parameter options, 123 names after the track_functions collision,
        // plus the two computed memory parameters.
        let derived = CharmConfig::defaults()
            .iter()
            .filter(|(n, _)| parameter_name(n).is_some())
            .count();
        assert_eq!(derived, 124);
        assert_eq!(params.len(), 123 + 2);
    }

    #[test]
    fn parameters_are_in_config_name_order_with_computed_memory_last() {
        let params = build_parameters(&CharmConfig::defaults(), 2, 4 * GIB).unwrap();
        let names: Vec<&str> = params.iter().map(|(n, _)| n).collect();
        assert_eq!(
            &names[..3],
            [
                "authentication_timeout",
                "statement_timeout",
                "max_logical_replication_workers"
            ]
        );
        assert_eq!(
            &names[names.len() - 2..],
            ["shared_buffers", "effective_cache_size"]
        );
        // wal_compression keeps the position of cpu_wal_compression.
        let pos = names.iter().position(|n| *n == "wal_compression").unwrap();
        assert_eq!(names[pos - 1], "parallel_leader_participation");
    }

    #[test]
    fn track_functions_collision_later_option_wins() {
        let c = config(&[
            ("logging_track_functions", s("pl")),
            ("optimizer_track_functions", s("all")),
        ]);
        let params = config_parameters(&c, 4 * GIB).unwrap();
        assert_eq!(params.get("track_functions"), Some(&s("all")));
        let names: Vec<&str> = params.iter().map(|(n, _)| n).collect();
        // Position is that of logging_track_functions (before the memory_* parameters).
        let tf = names.iter().position(|n| *n == "track_functions").unwrap();
        let mwm = names
            .iter()
            .position(|n| *n == "maintenance_work_mem")
            .unwrap();
        assert!(tf < mwm);
    }

    #[test]
    fn profile_limit_memory_lowers_effective_memory() {
        // 1000 MB limit on a 4 GiB node: memory = 1e9. shared_buffers = 250000000 bytes
        // -> 250000000*128/1e6 = 32000 pages; cache = int(750000000/1e6)*128 = 96000.
        let c = config(&[("profile_limit_memory", Value::Int(1000))]);
        assert_eq!(effective_memory(&c, 4 * GIB), 1_000_000_000);
        let params = config_parameters(&c, 4 * GIB).unwrap();
        assert_eq!(params.get("shared_buffers"), Some(&s("32000")));
        assert_eq!(params.get("effective_cache_size"), Some(&s("96000")));
        // A limit above the available memory changes nothing.
        let c = config(&[("profile_limit_memory", Value::Int(9_999_999))]);
        assert_eq!(effective_memory(&c, 4 * GIB), 4 * GIB);
    }

    #[test]
    fn configured_shared_buffers_is_checked_against_40_percent() {
        // 1e9 bytes: max_mb = int(1e9*0.4/1e6) = 400, max pages = int(400*1000/8) = 50000.
        let ok = config(&[("memory_shared_buffers", Value::Int(50_000))]);
        let params = config_parameters(&ok, 1_000_000_000).unwrap();
        assert_eq!(params.get("shared_buffers"), Some(&Value::Int(50_000)));
        // cache = int((1e9 - 50000*8000)/1e6)*128 = 600*128 = 76800.
        assert_eq!(params.get("effective_cache_size"), Some(&s("76800")));

        let too_big = config(&[("memory_shared_buffers", Value::Int(50_001))]);
        let err = config_parameters(&too_big, 1_000_000_000).unwrap_err();
        assert_eq!(
            err,
            ParamsError::SharedBuffersTooLarge {
                shared_buffers: 50_001,
                max_pages: 50_000,
                max_mb: 400
            }
        );
        assert_eq!(
            err.to_string(),
            "Shared buffers config option should be at most 40% of the available memory, which is 400MB"
        );
    }

    #[test]
    fn testing_profile_adds_no_memory_parameters() {
        let c = config(&[("profile", s("testing"))]);
        let params = config_parameters(&c, 4 * GIB).unwrap();
        assert!(!params.contains("shared_buffers"));
        assert!(!params.contains("effective_cache_size"));
        // The 40 % check still applies in testing.
        let c = config(&[
            ("profile", s("testing")),
            ("memory_shared_buffers", Value::Int(1_000_000)),
        ]);
        assert!(config_parameters(&c, 4 * GIB).is_err());
    }

    #[test]
    fn worker_settings_auto_numeric_caps() {
        // 16 cores: auto base = min(8, 32) = 8.
        let w = worker_parameters(&CharmConfig::defaults(), 16).unwrap();
        assert_eq!(w.get("max_worker_processes"), Some(&s("8")));
        // 1 core: auto base = 2.
        let w = worker_parameters(&CharmConfig::defaults(), 1).unwrap();
        assert_eq!(w.get("max_parallel_workers"), Some(&s("2")));

        // Numeric base 12 on 2 cores (cap 20); parallel workers 16 is capped at the base 12,
        // maintenance workers 16 is not capped by the base.
        let c = config(&[
            ("cpu_max_worker_processes", s("12")),
            ("cpu_max_parallel_workers", s("16")),
            ("cpu_max_parallel_maintenance_workers", s("16")),
        ]);
        let w = worker_parameters(&c, 2).unwrap();
        let names: Vec<&str> = w.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "max_worker_processes",
                "max_parallel_workers",
                "max_parallel_maintenance_workers",
                "max_logical_replication_workers",
                "max_sync_workers_per_subscription"
            ]
        );
        assert_eq!(w.get("max_worker_processes"), Some(&s("12")));
        assert_eq!(w.get("max_parallel_workers"), Some(&s("12")));
        assert_eq!(w.get("max_parallel_maintenance_workers"), Some(&s("16")));
        assert_eq!(w.get("max_logical_replication_workers"), Some(&s("12")));

        let c = config(&[("cpu_max_parallel_workers", s("21"))]);
        let err = worker_parameters(&c, 2).unwrap_err();
        assert_eq!(
            err,
            ParamsError::WorkerCapExceeded {
                option: "cpu_max_parallel_workers",
                value: 21,
                cap: 20
            }
        );
        assert_eq!(
            err.to_string(),
            "cpu_max_parallel_workers value 21 exceeds maximum allowed of 20 (10 * vCores). Please set a value <= 20."
        );
        let c = config(&[("cpu_max_worker_processes", s("20"))]);
        assert_eq!(
            worker_parameters(&c, 2)
                .unwrap()
                .get("max_worker_processes"),
            Some(&s("20"))
        );
    }

    #[test]
    fn wal_compression_off_and_max_connections() {
        let c = config(&[("cpu_wal_compression", Value::Bool(false))]);
        assert_eq!(
            build_parameters(&c, 2, 4 * GIB)
                .unwrap()
                .get("wal_compression"),
            Some(&s("off"))
        );
        assert_eq!(max_connections(&CharmConfig::defaults(), 2), 100);
        assert_eq!(max_connections(&CharmConfig::defaults(), 32), 128);
        assert_eq!(
            max_connections(
                &config(&[("experimental_max_connections", Value::Int(42))]),
                32
            ),
            42
        );
        // 0 is falsy upstream, so the computed value is used.
        assert_eq!(
            max_connections(
                &config(&[("experimental_max_connections", Value::Int(0))]),
                32
            ),
            128
        );
    }

    #[test]
    fn api_config_update_body() {
        let c = config(&[("memory_shared_buffers", Value::Int(1024))]);
        let workers = worker_parameters(&c, 2).unwrap();
        let update = ApiConfigUpdate::new(&c, 2, &workers, 1, true, None);
        assert_eq!(
            update.to_json().dumps(),
            concat!(
                r#"{"postgresql": {"remove_data_directory_on_rewind_failure": false, "#,
                r#""remove_data_directory_on_diverged_timelines": false, "parameters": {"#,
                r#""max_connections": 100, "max_prepared_transactions": 0, "max_replication_slots": 25, "#,
                r#""max_wal_senders": 25, "shared_buffers": 1024, "wal_keep_size": 4096, "#,
                r#""max_worker_processes": "4", "max_logical_replication_workers": "4"}}, "#,
                r#""synchronous_node_count": 1, "synchronous_mode_strict": true, "#,
                r#""maximum_lag_on_failover": 1048576}"#
            )
        );
        let standby = ApiConfigUpdate::new(
            &CharmConfig::defaults(),
            2,
            &Parameters::new(),
            0,
            false,
            Some("10.1.2.3".into()),
        );
        let body = standby.to_json();
        assert_eq!(
            body.get("standby_cluster").unwrap().dumps(),
            r#"{"host": "10.1.2.3"}"#
        );
        let params = body.get("postgresql").unwrap().get("parameters").unwrap();
        assert_eq!(params.get("shared_buffers"), Some(&Json::Null));
        assert_eq!(params.get("max_worker_processes"), None);
    }
}
