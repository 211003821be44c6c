//! The charm's configuration options (spec 12.3) and their typed validation.
//!
//! Upstream validates `config-get` output with a pydantic v1 model (`src/config.py`) in lax
//! mode. [`CharmConfig::from_pairs`] reproduces that: it fills defaults from [`OPTIONS`],
//! coerces values the way pydantic v1 does where that is sensible (`"16"` for an integer,
//! `"true"` or `1` for a boolean) and applies the enumerations and numeric ranges of
//! `src/config.py`. Every failing option is reported, as pydantic reports every field.
//!
//! [`OPTIONS`] is sorted by name. That order matters: Juju's `config-get --format=json`
//! renders a Go map, whose keys come out sorted, and the charm builds the PostgreSQL
//! parameters by iterating that dict (spec 3.3.4 step 2), so parameter order and the
//! `track_functions` collision (spec 12.3 quirk) both follow name order.

use crate::pyfmt;
use core::fmt;

/// The Juju type of an option, as written in `config.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    Boolean,
    Int,
    Float,
    String,
}

impl OptionType {
    /// The `type:` keyword of Juju's `config.yaml`.
    pub fn juju_name(self) -> &'static str {
        match self {
            OptionType::Boolean => "boolean",
            OptionType::Int => "int",
            OptionType::Float => "float",
            OptionType::String => "string",
        }
    }
}

/// The `default:` of an option; `Unset` means `config.yaml` has no default (spec 12.3 "unset").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    Unset,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
}

/// Validation beyond the Juju type, from `src/config.py` (spec 12.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// No constraint beyond the type.
    Any,
    /// The string must be one of these values.
    OneOf(&'static [&'static str]),
    /// Inclusive integer range.
    IntRange(i64, i64),
    /// Inclusive float range (NaN is rejected, as pydantic's `ge`/`le` reject it).
    FloatRange(f64, f64),
    /// `synchronous_node_count`: `all`, `majority` or a positive integer.
    SyncNodeCount,
    /// `cpu_max_*`: `auto` or an integer of at least 2.
    AutoOrWorkers,
}

/// One row of the option table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionSpec {
    pub name: &'static str,
    pub ty: OptionType,
    pub default: Default,
    pub rule: Rule,
}

/// Upper bound of upstream's `PgHugeFloat` ranges, written `1.80e308` there. That literal
/// overflows a double and is infinity in Python too, so the bound only rejects NaN.
const PG_HUGE_FLOAT: f64 = f64::INFINITY;

const fn opt(name: &'static str, ty: OptionType, default: Default, rule: Rule) -> OptionSpec {
    OptionSpec {
        name,
        ty,
        default,
        rule,
    }
}

/// Every option of `config.yaml` (186, spec 12.3), sorted by name (see the module docs for
/// why the order matters). Ranges are those of upstream `src/config.py`.
#[rustfmt::skip]
pub static OPTIONS: &[OptionSpec] = &[
    opt("connection_authentication_timeout", OptionType::Int, Default::Int(60), Rule::IntRange(1, 600)),
    opt("connection_statement_timeout", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("cpu_max_logical_replication_workers", OptionType::String, Default::Str("auto"), Rule::AutoOrWorkers),
    opt("cpu_max_parallel_maintenance_workers", OptionType::String, Default::Str("auto"), Rule::AutoOrWorkers),
    opt("cpu_max_parallel_workers", OptionType::String, Default::Str("auto"), Rule::AutoOrWorkers),
    opt("cpu_max_sync_workers_per_subscription", OptionType::String, Default::Str("auto"), Rule::AutoOrWorkers),
    opt("cpu_max_worker_processes", OptionType::String, Default::Str("auto"), Rule::AutoOrWorkers),
    opt("cpu_parallel_leader_participation", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("cpu_wal_compression", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("durability_maximum_lag_on_failover", OptionType::Int, Default::Int(1048576), Rule::IntRange(0, i64::MAX)),
    opt("durability_synchronous_commit", OptionType::String, Default::Str("on"), Rule::OneOf(&["on", "remote_apply", "remote_write"])),
    opt("durability_wal_keep_size", OptionType::Int, Default::Int(4096), Rule::IntRange(0, 2147483647)),
    opt("experimental_max_connections", OptionType::Int, Default::Unset, Rule::Any),
    opt("instance_default_text_search_config", OptionType::String, Default::Str("pg_catalog.simple"), Rule::Any),
    opt("instance_max_locks_per_transaction", OptionType::Int, Default::Int(64), Rule::IntRange(64, 2147483647)),
    opt("instance_password_encryption", OptionType::String, Default::Str("scram-sha-256"), Rule::OneOf(&["md5", "scram-sha-256"])),
    opt("instance_synchronize_seqscans", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("ldap_map", OptionType::String, Default::Unset, Rule::Any),
    opt("ldap_search_filter", OptionType::String, Default::Str("(uid=$username)"), Rule::Any),
    opt("logging_client_min_messages", OptionType::String, Default::Str("notice"), Rule::OneOf(&["debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error"])),
    opt("logging_log_connections", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("logging_log_disconnections", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("logging_log_lock_waits", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("logging_log_min_duration_statement", OptionType::Int, Default::Int(-1), Rule::IntRange(-1, 2147483647)),
    opt("logging_track_functions", OptionType::String, Default::Str("none"), Rule::OneOf(&["none", "pl", "all"])),
    opt("memory_maintenance_work_mem", OptionType::Int, Default::Int(65536), Rule::IntRange(1024, 2147483647)),
    opt("memory_max_prepared_transactions", OptionType::Int, Default::Int(0), Rule::IntRange(0, 262143)),
    opt("memory_shared_buffers", OptionType::Int, Default::Unset, Rule::IntRange(16, 1073741823)),
    opt("memory_temp_buffers", OptionType::Int, Default::Int(1024), Rule::IntRange(100, 1073741823)),
    opt("memory_work_mem", OptionType::Int, Default::Int(4096), Rule::IntRange(64, 2147483647)),
    opt("optimizer_constraint_exclusion", OptionType::String, Default::Str("partition"), Rule::OneOf(&["on", "off", "partition"])),
    opt("optimizer_cpu_index_tuple_cost", OptionType::Float, Default::Float(0.005), Rule::FloatRange(0.0, PG_HUGE_FLOAT)),
    opt("optimizer_cpu_operator_cost", OptionType::Float, Default::Float(0.0025), Rule::FloatRange(0.0, PG_HUGE_FLOAT)),
    opt("optimizer_cpu_tuple_cost", OptionType::Float, Default::Float(0.01), Rule::FloatRange(0.0, PG_HUGE_FLOAT)),
    opt("optimizer_cursor_tuple_fraction", OptionType::Float, Default::Float(0.1), Rule::FloatRange(0.0, 1.0)),
    opt("optimizer_default_statistics_target", OptionType::Int, Default::Int(100), Rule::IntRange(1, 10000)),
    opt("optimizer_enable_async_append", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_bitmapscan", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_gathermerge", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_hashagg", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_hashjoin", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_incremental_sort", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_indexonlyscan", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_indexscan", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_material", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_memoize", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_mergejoin", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_nestloop", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_parallel_append", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_parallel_hash", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_partition_pruning", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_partitionwise_aggregate", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("optimizer_enable_partitionwise_join", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("optimizer_enable_seqscan", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_sort", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_enable_tidscan", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_from_collapse_limit", OptionType::Int, Default::Int(8), Rule::IntRange(1, 2147483647)),
    opt("optimizer_geqo", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_geqo_effort", OptionType::Int, Default::Int(5), Rule::IntRange(1, 10)),
    opt("optimizer_geqo_generations", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("optimizer_geqo_pool_size", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("optimizer_geqo_seed", OptionType::Float, Default::Float(0.0), Rule::FloatRange(0.0, 1.0)),
    opt("optimizer_geqo_selection_bias", OptionType::Float, Default::Float(2.0), Rule::FloatRange(1.5, 2.0)),
    opt("optimizer_geqo_threshold", OptionType::Int, Default::Int(12), Rule::IntRange(2, 2147483647)),
    opt("optimizer_jit", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_jit_above_cost", OptionType::Float, Default::Float(100000.0), Rule::FloatRange(-1.0, PG_HUGE_FLOAT)),
    opt("optimizer_jit_inline_above_cost", OptionType::Float, Default::Float(500000.0), Rule::FloatRange(-1.0, PG_HUGE_FLOAT)),
    opt("optimizer_jit_optimize_above_cost", OptionType::Float, Default::Float(500000.0), Rule::FloatRange(-1.0, PG_HUGE_FLOAT)),
    opt("optimizer_join_collapse_limit", OptionType::Int, Default::Int(8), Rule::IntRange(1, 2147483647)),
    opt("optimizer_min_parallel_index_scan_size", OptionType::Int, Default::Int(64), Rule::IntRange(0, 715827882)),
    opt("optimizer_min_parallel_table_scan_size", OptionType::Int, Default::Int(1024), Rule::IntRange(0, 715827882)),
    opt("optimizer_parallel_setup_cost", OptionType::Float, Default::Float(1000.0), Rule::FloatRange(0.0, PG_HUGE_FLOAT)),
    opt("optimizer_parallel_tuple_cost", OptionType::Float, Default::Float(0.1), Rule::FloatRange(0.0, PG_HUGE_FLOAT)),
    opt("optimizer_pg_stat_statements_save", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("optimizer_pg_stat_statements_track", OptionType::String, Default::Str("top"), Rule::OneOf(&["none", "top", "all"])),
    opt("optimizer_pg_stat_statements_track_utility", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("optimizer_track_functions", OptionType::String, Default::Str("none"), Rule::OneOf(&["none", "pl", "all"])),
    opt("optimizer_track_io_timing", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("optimizer_track_wal_io_timing", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_address_standardizer_data_us_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_address_standardizer_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_audit_enable", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("plugin_bloom_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_bool_plperl_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_btree_gin_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_btree_gist_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_citext_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_cube_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_debversion_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_dict_int_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_dict_xsyn_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_earthdistance_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_fuzzystrmatch_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_hll_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_hstore_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_hypopg_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_icu_ext_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_intarray_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_ip4r_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_isn_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_jsonb_plperl_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_lo_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_ltree_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_old_snapshot_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_orafce_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pg_freespacemap_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pg_similarity_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pg_stat_statements_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pg_trgm_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pg_visibility_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pgrowlocks_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pgstattuple_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_plperl_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_plpython3u_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_pltcl_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_postgis_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_postgis_raster_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_postgis_tiger_geocoder_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_postgis_topology_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_prefix_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_rdkit_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_seg_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_spi_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_tablefunc_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_tcn_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_tds_fdw_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_timescaledb_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_tsm_system_rows_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_tsm_system_time_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_unaccent_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_uuid_ossp_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("plugin_vector_enable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("profile", OptionType::String, Default::Str("production"), Rule::OneOf(&["testing", "production"])),
    opt("profile_limit_memory", OptionType::Int, Default::Unset, Rule::IntRange(128, 9999999)),
    opt("request_array_nulls", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("request_backslash_quote", OptionType::String, Default::Str("safe_encoding"), Rule::OneOf(&["safe_encoding", "on", "off"])),
    opt("request_date_style", OptionType::String, Default::Str("ISO, MDY"), Rule::Any),
    opt("request_deadlock_timeout", OptionType::Int, Default::Int(1000), Rule::IntRange(1, 2147483647)),
    opt("request_default_transaction_deferrable", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("request_default_transaction_isolation", OptionType::String, Default::Str("read committed"), Rule::OneOf(&["serializable", "repeatable read", "read committed", "read uncommitted"])),
    opt("request_default_transaction_read_only", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("request_escape_string_warning", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("request_lock_timeout", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("request_standard_conforming_strings", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("request_time_zone", OptionType::String, Default::Str("UTC"), Rule::Any),
    opt("request_track_activity_query_size", OptionType::Int, Default::Int(1024), Rule::IntRange(100, 1048576)),
    opt("request_transform_null_equals", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("request_xmlbinary", OptionType::String, Default::Str("base64"), Rule::OneOf(&["base64", "hex"])),
    opt("request_xmloption", OptionType::String, Default::Str("content"), Rule::OneOf(&["content", "document"])),
    opt("response_bytea_output", OptionType::String, Default::Str("hex"), Rule::OneOf(&["escape", "hex"])),
    opt("response_exit_on_error", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("response_extra_float_digits", OptionType::Int, Default::Int(1), Rule::IntRange(-15, 3)),
    opt("response_gin_fuzzy_search_limit", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("response_lc_monetary", OptionType::String, Default::Str("C"), Rule::Any),
    opt("response_lc_numeric", OptionType::String, Default::Str("C"), Rule::Any),
    opt("response_lc_time", OptionType::String, Default::Str("C"), Rule::Any),
    opt("session_idle_in_transaction_session_timeout", OptionType::Int, Default::Int(0), Rule::IntRange(0, 2147483647)),
    opt("storage_bgwriter_lru_maxpages", OptionType::Int, Default::Int(100), Rule::IntRange(0, 1073741823)),
    opt("storage_bgwriter_lru_multiplier", OptionType::Float, Default::Float(2.0), Rule::FloatRange(0.0, 10.0)),
    opt("storage_default_table_access_method", OptionType::String, Default::Str("heap"), Rule::Any),
    opt("storage_gin_pending_list_limit", OptionType::Int, Default::Int(4096), Rule::IntRange(64, 2147483647)),
    opt("storage_hot_standby_feedback", OptionType::Boolean, Default::Bool(false), Rule::Any),
    opt("storage_old_snapshot_threshold", OptionType::Int, Default::Int(-1), Rule::IntRange(-1, 86400)),
    opt("synchronous_mode_strict", OptionType::Boolean, Default::Bool(true), Rule::Any),
    opt("synchronous_node_count", OptionType::String, Default::Str("all"), Rule::SyncNodeCount),
    opt("vacuum_autovacuum_analyze_scale_factor", OptionType::Float, Default::Float(0.1), Rule::FloatRange(0.0, 100.0)),
    opt("vacuum_autovacuum_analyze_threshold", OptionType::Int, Default::Int(50), Rule::IntRange(0, 2147483647)),
    opt("vacuum_autovacuum_freeze_max_age", OptionType::Int, Default::Int(200000000), Rule::IntRange(100000, 2000000000)),
    opt("vacuum_autovacuum_naptime", OptionType::Int, Default::Int(60), Rule::IntRange(1, 2147483)),
    opt("vacuum_autovacuum_vacuum_cost_delay", OptionType::Float, Default::Float(2.0), Rule::FloatRange(-1.0, 100.0)),
    opt("vacuum_autovacuum_vacuum_cost_limit", OptionType::Int, Default::Int(-1), Rule::IntRange(-1, 10000)),
    opt("vacuum_autovacuum_vacuum_insert_scale_factor", OptionType::Float, Default::Float(0.2), Rule::FloatRange(0.0, 100.0)),
    opt("vacuum_autovacuum_vacuum_insert_threshold", OptionType::Int, Default::Int(1000), Rule::IntRange(-1, 2147483647)),
    opt("vacuum_autovacuum_vacuum_scale_factor", OptionType::Float, Default::Float(0.2), Rule::FloatRange(0.0, 100.0)),
    opt("vacuum_autovacuum_vacuum_threshold", OptionType::Int, Default::Int(50), Rule::IntRange(0, 2147483647)),
    opt("vacuum_vacuum_cost_delay", OptionType::Float, Default::Float(0.0), Rule::FloatRange(0.0, 100.0)),
    opt("vacuum_vacuum_cost_limit", OptionType::Int, Default::Int(200), Rule::IntRange(1, 10000)),
    opt("vacuum_vacuum_cost_page_dirty", OptionType::Int, Default::Int(20), Rule::IntRange(0, 10000)),
    opt("vacuum_vacuum_cost_page_hit", OptionType::Int, Default::Int(1), Rule::IntRange(0, 10000)),
    opt("vacuum_vacuum_cost_page_miss", OptionType::Int, Default::Int(2), Rule::IntRange(0, 10000)),
    opt("vacuum_vacuum_failsafe_age", OptionType::Int, Default::Int(1600000000), Rule::IntRange(0, 2100000000)),
    opt("vacuum_vacuum_freeze_min_age", OptionType::Int, Default::Int(50000000), Rule::IntRange(0, 1000000000)),
    opt("vacuum_vacuum_freeze_table_age", OptionType::Int, Default::Int(150000000), Rule::IntRange(0, 2000000000)),
    opt("vacuum_vacuum_multixact_failsafe_age", OptionType::Int, Default::Int(1600000000), Rule::IntRange(0, 2100000000)),
    opt("vacuum_vacuum_multixact_freeze_min_age", OptionType::Int, Default::Int(5000000), Rule::IntRange(0, 1000000000)),
    opt("vacuum_vacuum_multixact_freeze_table_age", OptionType::Int, Default::Int(150000000), Rule::IntRange(0, 2000000000)),
];

/// An option's index in [`OPTIONS`], by name.
pub fn option_index(name: &str) -> Option<usize> {
    OPTIONS.binary_search_by(|o| o.name.cmp(name)).ok()
}

/// Look up an option's table row by name.
pub fn option_spec(name: &str) -> Option<&'static OptionSpec> {
    option_index(name).map(|i| &OPTIONS[i])
}

/// A typed scalar: a config value, and also a PostgreSQL parameter value (module `params`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Value {
    /// The text Python's `str()` gives for the same Python value (`True`, `2.0`, `on`).
    /// This is how Jinja renders a parameter into `patroni.yml`.
    pub fn python_str(&self) -> String {
        match self {
            Value::Bool(b) => pyfmt::bool_str(*b).to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => pyfmt::float_repr(*f),
            Value::Str(s) => s.clone(),
        }
    }

    /// [`Value::python_str`] written into `out`, without a `String` of its own (except for a
    /// float's digits).
    pub fn write_python_str(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        match self {
            Value::Bool(b) => out.write_str(pyfmt::bool_str(*b)),
            Value::Int(i) => write!(out, "{i}"),
            Value::Float(f) => out.write_str(&pyfmt::float_repr(*f)),
            Value::Str(s) => out.write_str(s),
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("float {}", pyfmt::float_repr(*f)),
            Value::Str(s) => format!("string {s:?}"),
        }
    }
}

impl From<Default> for Option<Value> {
    fn from(default: Default) -> Self {
        match default {
            Default::Unset => None,
            Default::Bool(b) => Some(Value::Bool(b)),
            Default::Int(i) => Some(Value::Int(i)),
            Default::Float(f) => Some(Value::Float(f)),
            Default::Str(s) => Some(Value::Str(s.to_owned())),
        }
    }
}

/// What is wrong with one option's value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionProblem {
    /// The value cannot be read as the option's type.
    WrongType { expected: OptionType, got: String },
    /// The string is not one of the allowed values.
    NotOneOf {
        value: String,
        allowed: &'static [&'static str],
    },
    /// The integer is outside the inclusive range.
    IntOutOfRange { value: i64, min: i64, max: i64 },
    /// The float is outside the inclusive range.
    FloatOutOfRange { value: f64, min: f64, max: f64 },
    /// `synchronous_node_count` is not `all`, `majority` or a positive integer.
    BadSyncNodeCount { value: String },
    /// A `cpu_max_*` option is not `auto` or an integer of at least 2.
    BadWorkerCount { value: String },
}

/// One invalid option: its name and the rule it breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionError {
    pub option: &'static str,
    pub problem: OptionProblem,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.option;
        match &self.problem {
            OptionProblem::WrongType { expected, got } => {
                write!(
                    f,
                    "{name}: expected a {} value, got {got}",
                    expected.juju_name()
                )
            }
            OptionProblem::NotOneOf { value, allowed } => {
                write!(f, "{name}: {value:?} is not one of {}", allowed.join(", "))
            }
            OptionProblem::IntOutOfRange { value, min, max } => {
                if *max == i64::MAX {
                    write!(f, "{name}: {value} is below the minimum {min}")
                } else {
                    write!(f, "{name}: {value} is outside the range {min}..={max}")
                }
            }
            OptionProblem::FloatOutOfRange { value, min, max } => write!(
                f,
                "{name}: {} is outside the range {}..={}",
                pyfmt::float_repr(*value),
                pyfmt::float_repr(*min),
                pyfmt::float_repr(*max)
            ),
            OptionProblem::BadSyncNodeCount { value } => {
                write!(
                    f,
                    "{name}: {value:?} must be `all`, `majority` or a positive integer"
                )
            }
            OptionProblem::BadWorkerCount { value } => {
                write!(
                    f,
                    "{name}: {value:?} must be `auto` or an integer of at least 2"
                )
            }
        }
    }
}

/// Every invalid option of one validation run (pydantic reports them all at once).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub errors: Vec<OptionError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `synchronous_node_count` after validation (spec 10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNodeCount {
    All,
    Majority,
    /// A positive integer.
    Count(u32),
}

/// A `cpu_max_*` option after validation (spec 3.3.4 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSetting {
    Auto,
    /// An integer of at least 2.
    Count(i64),
}

/// The `profile` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Production,
    Testing,
}

/// The five `cpu_max_*` options, in the order the charm computes them (spec 3.3.4 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerOption {
    MaxWorkerProcesses,
    MaxParallelWorkers,
    MaxParallelMaintenanceWorkers,
    MaxLogicalReplicationWorkers,
    MaxSyncWorkersPerSubscription,
}

impl WorkerOption {
    /// Computation order: the base (`max_worker_processes`) first.
    pub const ALL: [WorkerOption; 5] = [
        WorkerOption::MaxWorkerProcesses,
        WorkerOption::MaxParallelWorkers,
        WorkerOption::MaxParallelMaintenanceWorkers,
        WorkerOption::MaxLogicalReplicationWorkers,
        WorkerOption::MaxSyncWorkersPerSubscription,
    ];

    /// The config option name (`cpu_max_…`).
    pub fn option_name(self) -> &'static str {
        match self {
            WorkerOption::MaxWorkerProcesses => "cpu_max_worker_processes",
            WorkerOption::MaxParallelWorkers => "cpu_max_parallel_workers",
            WorkerOption::MaxParallelMaintenanceWorkers => "cpu_max_parallel_maintenance_workers",
            WorkerOption::MaxLogicalReplicationWorkers => "cpu_max_logical_replication_workers",
            WorkerOption::MaxSyncWorkersPerSubscription => "cpu_max_sync_workers_per_subscription",
        }
    }

    /// The PostgreSQL parameter name (the option name without `cpu_`).
    pub fn parameter_name(self) -> &'static str {
        &self.option_name()["cpu_".len()..]
    }
}

/// The validated configuration: one optional value per row of [`OPTIONS`].
#[derive(Debug, Clone, PartialEq)]
pub struct CharmConfig {
    values: Vec<Option<Value>>,
}

impl CharmConfig {
    /// The configuration with every option at its `config.yaml` default.
    pub fn defaults() -> CharmConfig {
        CharmConfig {
            values: OPTIONS.iter().map(|o| o.default.into()).collect(),
        }
    }

    /// Apply `pairs` (as `config-get` reports them) over the defaults and validate.
    ///
    /// Names that are not options are ignored, as the pydantic model ignores extra fields.
    /// A later pair for the same name wins.
    pub fn from_pairs(pairs: &[(String, Value)]) -> Result<CharmConfig, ConfigError> {
        CharmConfig::from_indexed(
            pairs
                .iter()
                .filter_map(|(name, value)| Some((option_index(name)?, value.clone()))),
        )
    }

    /// [`CharmConfig::from_pairs`] with each option given by its index in [`OPTIONS`], which
    /// is how the host names it (the WIT `config-option` cases are in the same order).
    /// Indices past the table are ignored, as unknown names are.
    pub fn from_indexed(
        entries: impl IntoIterator<Item = (usize, Value)>,
    ) -> Result<CharmConfig, ConfigError> {
        let mut raw: Vec<Option<Value>> = vec![None; OPTIONS.len()];
        let mut given = vec![false; OPTIONS.len()];
        for (i, value) in entries {
            if let Some(slot) = raw.get_mut(i) {
                *slot = Some(value);
                given[i] = true;
            }
        }
        // Defaults only where no value was given: most string defaults are never built.
        for ((slot, given), spec) in raw.iter_mut().zip(given).zip(OPTIONS) {
            if !given {
                *slot = spec.default.into();
            }
        }
        let mut errors = Vec::new();
        let mut values = Vec::with_capacity(OPTIONS.len());
        for (spec, value) in OPTIONS.iter().zip(raw) {
            match value {
                // Unset options stay None; pydantic skips validators for None.
                None => values.push(None),
                Some(v) => match validate(spec, v) {
                    Ok(v) => values.push(Some(v)),
                    Err(problem) => {
                        errors.push(OptionError {
                            option: spec.name,
                            problem,
                        });
                        values.push(None);
                    }
                },
            }
        }
        if errors.is_empty() {
            Ok(CharmConfig { values })
        } else {
            Err(ConfigError { errors })
        }
    }

    /// The value of `name`, `None` when unset or not an option.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = option_index(name)?;
        self.values[i].as_ref()
    }

    /// The options that have a value, in name order (the order of `config-get` output).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> + '_ {
        OPTIONS
            .iter()
            .zip(&self.values)
            .filter_map(|(o, v)| v.as_ref().map(|v| (o.name, v)))
    }

    fn bool_opt(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn int_opt(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn str_opt(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// `synchronous_node_count` (default `all`).
    pub fn synchronous_node_count(&self) -> SyncNodeCount {
        match self.get("synchronous_node_count") {
            Some(Value::Str(s)) if s == "majority" => SyncNodeCount::Majority,
            Some(Value::Int(k)) => SyncNodeCount::Count(*k as u32),
            _ => SyncNodeCount::All,
        }
    }

    /// `synchronous_mode_strict` (default true).
    pub fn synchronous_mode_strict(&self) -> bool {
        self.bool_opt("synchronous_mode_strict").unwrap_or(true)
    }

    /// A `cpu_max_*` option; `None` only if it was explicitly unset.
    pub fn worker_setting(&self, option: WorkerOption) -> Option<WorkerSetting> {
        match self.get(option.option_name())? {
            Value::Int(n) => Some(WorkerSetting::Count(*n)),
            _ => Some(WorkerSetting::Auto),
        }
    }

    /// `cpu_wal_compression`.
    pub fn cpu_wal_compression(&self) -> Option<bool> {
        self.bool_opt("cpu_wal_compression")
    }

    /// `profile` (default production).
    pub fn profile(&self) -> Profile {
        match self.str_opt("profile") {
            Some("testing") => Profile::Testing,
            _ => Profile::Production,
        }
    }

    /// `profile_limit_memory` in MB.
    pub fn profile_limit_memory(&self) -> Option<i64> {
        self.int_opt("profile_limit_memory")
    }

    /// `memory_shared_buffers` in 8 kB pages.
    pub fn memory_shared_buffers(&self) -> Option<i64> {
        self.int_opt("memory_shared_buffers")
    }

    /// `memory_max_prepared_transactions`.
    pub fn memory_max_prepared_transactions(&self) -> Option<i64> {
        self.int_opt("memory_max_prepared_transactions")
    }

    /// `durability_wal_keep_size` in MB.
    pub fn durability_wal_keep_size(&self) -> Option<i64> {
        self.int_opt("durability_wal_keep_size")
    }

    /// `durability_maximum_lag_on_failover` in bytes.
    pub fn durability_maximum_lag_on_failover(&self) -> Option<i64> {
        self.int_opt("durability_maximum_lag_on_failover")
    }

    /// `experimental_max_connections`.
    pub fn experimental_max_connections(&self) -> Option<i64> {
        self.int_opt("experimental_max_connections")
    }

    /// `instance_password_encryption` (default `scram-sha-256`).
    pub fn instance_password_encryption(&self) -> &str {
        self.str_opt("instance_password_encryption")
            .unwrap_or("scram-sha-256")
    }

    /// `ldap_map`.
    pub fn ldap_map(&self) -> Option<&str> {
        self.str_opt("ldap_map")
    }

    /// `ldap_search_filter`.
    pub fn ldap_search_filter(&self) -> Option<&str> {
        self.str_opt("ldap_search_filter")
    }

    /// `plugin_<plugin>_enable`; false for an unknown plugin.
    pub fn plugin_enabled(&self, plugin: &str) -> bool {
        self.bool_opt(&format!("plugin_{plugin}_enable"))
            .unwrap_or(false)
    }
}

/// Coerce `value` to the option's type (pydantic v1 lax rules) and check its rule.
fn validate(spec: &OptionSpec, value: Value) -> Result<Value, OptionProblem> {
    let wrong_type = |v: &Value| OptionProblem::WrongType {
        expected: spec.ty,
        got: v.describe(),
    };
    match spec.rule {
        Rule::SyncNodeCount => {
            // Union order of the model: Literal["all", "majority"] first, then PositiveInt.
            if let Value::Str(s) = &value
                && (s == "all" || s == "majority")
            {
                return Ok(value);
            }
            return match coerce_int(&value) {
                Some(k) if k > 0 && k <= u32::MAX as i64 => Ok(Value::Int(k)),
                _ => Err(OptionProblem::BadSyncNodeCount {
                    value: value.python_str(),
                }),
            };
        }
        Rule::AutoOrWorkers => {
            if matches!(&value, Value::Str(s) if s == "auto") {
                return Ok(value);
            }
            return match coerce_int(&value) {
                Some(n) if n >= 2 => Ok(Value::Int(n)),
                _ => Err(OptionProblem::BadWorkerCount {
                    value: value.python_str(),
                }),
            };
        }
        _ => {}
    }
    let typed = match spec.ty {
        OptionType::Boolean => Value::Bool(coerce_bool(&value).ok_or_else(|| wrong_type(&value))?),
        OptionType::Int => Value::Int(coerce_int(&value).ok_or_else(|| wrong_type(&value))?),
        OptionType::Float => Value::Float(coerce_float(&value).ok_or_else(|| wrong_type(&value))?),
        // pydantic v1's str validator turns numbers into their str(); so do we.
        OptionType::String => match value {
            Value::Str(s) => Value::Str(s),
            other => Value::Str(other.python_str()),
        },
    };
    match (spec.rule, &typed) {
        (Rule::OneOf(allowed), Value::Str(s)) if !allowed.contains(&s.as_str()) => {
            Err(OptionProblem::NotOneOf {
                value: s.clone(),
                allowed,
            })
        }
        (Rule::IntRange(min, max), Value::Int(i)) if *i < min || *i > max => {
            Err(OptionProblem::IntOutOfRange {
                value: *i,
                min,
                max,
            })
        }
        (Rule::FloatRange(min, max), Value::Float(f)) if !(*f >= min && *f <= max) => {
            Err(OptionProblem::FloatOutOfRange {
                value: *f,
                min,
                max,
            })
        }
        _ => Ok(typed),
    }
}

/// pydantic v1 `bool`: real booleans, 0/1, and the strings it accepts (case-insensitive).
fn coerce_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Int(0) => Some(false),
        Value::Int(1) => Some(true),
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Integers: ints, integral floats and Python-`int()`-parsable strings. pydantic v1 would
/// also truncate `3.7` to 3 and read `True` as 1; both are rejected here as nonsensical.
fn coerce_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::Str(s) => pyfmt::parse_int(s),
        _ => None,
    }
}

/// Floats: floats, ints and Python-`float()`-parsable strings.
fn coerce_float(value: &Value) -> Option<f64> {
    match value {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Str(s) => pyfmt::parse_float(s),
        Value::Bool(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, Value)]) -> Vec<(String, Value)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    fn only_error(items: &[(&str, Value)]) -> OptionError {
        let err = CharmConfig::from_pairs(&pairs(items)).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        err.errors[0].clone()
    }

    /// The host names options by the WIT enum's cases, and the guest takes a case's
    /// discriminant as its index here: the cases must be this table's names, in this order.
    #[test]
    fn wit_config_option_cases_are_the_table_in_order() {
        let wit = include_str!("../../../wit/charm.wit");
        let body = wit
            .split("enum config-option {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("wit/charm.wit declares enum config-option");
        let cases: Vec<String> = body
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.replace('-', "_"))
            .collect();
        let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        assert_eq!(cases, names);
        use crate::bindings::charm::host::juju::ConfigOption;
        assert_eq!(ConfigOption::ConnectionAuthenticationTimeout as usize, 0);
        assert_eq!(
            ConfigOption::VacuumVacuumMultixactFreezeTableAge as usize,
            OPTIONS.len() - 1
        );
        assert_eq!(OPTIONS[ConfigOption::Profile as usize].name, "profile");
    }

    #[test]
    fn from_indexed_is_from_pairs_by_position() {
        let i = OPTIONS.iter().position(|o| o.name == "profile").unwrap();
        let by_index =
            CharmConfig::from_indexed([(i, s("testing")), (OPTIONS.len(), s("ignored"))]).unwrap();
        let by_name = CharmConfig::from_pairs(&pairs(&[("profile", s("testing"))])).unwrap();
        assert_eq!(
            by_index.iter().collect::<Vec<_>>(),
            by_name.iter().collect::<Vec<_>>()
        );
        assert_eq!(by_index.get("profile"), Some(&s("testing")));
    }

    #[test]
    fn table_has_every_option_sorted_and_unique() {
        assert_eq!(OPTIONS.len(), 186);
        for pair in OPTIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} !< {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert_eq!(
            OPTIONS
                .iter()
                .filter(|o| o.name.starts_with("plugin_"))
                .count(),
            53
        );
    }

    #[test]
    fn defaults_follow_spec() {
        let c = CharmConfig::defaults();
        assert_eq!(c.synchronous_node_count(), SyncNodeCount::All);
        assert!(c.synchronous_mode_strict());
        assert_eq!(
            c.get("connection_authentication_timeout"),
            Some(&Value::Int(60))
        );
        assert_eq!(
            c.get("optimizer_cpu_operator_cost"),
            Some(&Value::Float(0.0025))
        );
        assert_eq!(c.get("request_date_style"), Some(&s("ISO, MDY")));
        assert_eq!(c.get("memory_shared_buffers"), None);
        assert_eq!(c.get("experimental_max_connections"), None);
        assert!(c.plugin_enabled("audit"));
        assert!(!c.plugin_enabled("postgis"));
        assert_eq!(c.profile(), Profile::Production);
        assert_eq!(
            c.worker_setting(WorkerOption::MaxWorkerProcesses),
            Some(WorkerSetting::Auto)
        );
        assert_eq!(c.durability_maximum_lag_on_failover(), Some(1048576));
        // The unset options are exactly these four.
        let unset: Vec<_> = OPTIONS
            .iter()
            .filter(|o| o.default == Default::Unset)
            .map(|o| o.name)
            .collect();
        assert_eq!(
            unset,
            [
                "experimental_max_connections",
                "ldap_map",
                "memory_shared_buffers",
                "profile_limit_memory"
            ]
        );
        assert_eq!(CharmConfig::from_pairs(&[]).unwrap(), c);
    }

    #[test]
    fn sync_node_count_accepts_all_majority_and_positive_ints() {
        let c = CharmConfig::from_pairs(&pairs(&[("synchronous_node_count", s("majority"))]));
        assert_eq!(c.unwrap().synchronous_node_count(), SyncNodeCount::Majority);
        let c = CharmConfig::from_pairs(&pairs(&[("synchronous_node_count", s("3"))]));
        assert_eq!(c.unwrap().synchronous_node_count(), SyncNodeCount::Count(3));
        for bad in [s("0"), s("-1"), s("some"), Value::Int(0)] {
            let e = only_error(&[("synchronous_node_count", bad)]);
            assert_eq!(e.option, "synchronous_node_count");
            assert!(matches!(e.problem, OptionProblem::BadSyncNodeCount { .. }));
        }
    }

    #[test]
    fn worker_options_accept_auto_or_at_least_two() {
        let c = CharmConfig::from_pairs(&pairs(&[("cpu_max_parallel_workers", s("16"))])).unwrap();
        assert_eq!(
            c.worker_setting(WorkerOption::MaxParallelWorkers),
            Some(WorkerSetting::Count(16))
        );
        for bad in ["1", "-1", "invalid", ""] {
            let e = only_error(&[("cpu_max_worker_processes", s(bad))]);
            assert_eq!(e.option, "cpu_max_worker_processes");
            assert_eq!(
                e.to_string(),
                format!(
                    "cpu_max_worker_processes: {bad:?} must be `auto` or an integer of at least 2"
                )
            );
        }
    }

    #[test]
    fn ranges_are_inclusive_and_named_in_errors() {
        for (name, ok, bad) in [
            ("profile_limit_memory", [128, 9999999], [127, 10000000]),
            ("memory_shared_buffers", [16, 1073741823], [15, 1073741824]),
            ("connection_authentication_timeout", [1, 600], [0, 601]),
            ("response_extra_float_digits", [-15, 3], [-16, 4]),
        ] {
            for v in ok {
                assert!(CharmConfig::from_pairs(&pairs(&[(name, Value::Int(v))])).is_ok());
            }
            for v in bad {
                let e = only_error(&[(name, Value::Int(v))]);
                assert_eq!(e.option, name);
                assert!(
                    matches!(e.problem, OptionProblem::IntOutOfRange { value, .. } if value == v)
                );
            }
        }
        let e = only_error(&[("connection_authentication_timeout", Value::Int(601))]);
        assert_eq!(
            e.to_string(),
            "connection_authentication_timeout: 601 is outside the range 1..=600"
        );
        let e = only_error(&[("durability_maximum_lag_on_failover", Value::Int(-1))]);
        assert_eq!(
            e.to_string(),
            "durability_maximum_lag_on_failover: -1 is below the minimum 0"
        );
        let e = only_error(&[("optimizer_geqo_selection_bias", Value::Float(1.4))]);
        assert_eq!(
            e.to_string(),
            "optimizer_geqo_selection_bias: 1.4 is outside the range 1.5..=2.0"
        );
        assert!(
            CharmConfig::from_pairs(&pairs(&[(
                "optimizer_cpu_tuple_cost",
                Value::Float(f64::NAN)
            )]))
            .is_err()
        );
    }

    #[test]
    fn enumerations_are_enforced() {
        let e = only_error(&[("durability_synchronous_commit", s("off"))]);
        assert_eq!(
            e.to_string(),
            "durability_synchronous_commit: \"off\" is not one of on, remote_apply, remote_write"
        );
        for (name, good) in [
            ("instance_password_encryption", "md5"),
            ("optimizer_constraint_exclusion", "off"),
            ("profile", "testing"),
            ("request_backslash_quote", "on"),
            ("response_bytea_output", "escape"),
            ("logging_client_min_messages", "debug3"),
            ("request_default_transaction_isolation", "repeatable read"),
            ("logging_track_functions", "pl"),
            ("optimizer_track_functions", "all"),
            ("optimizer_pg_stat_statements_track", "none"),
            ("request_xmlbinary", "hex"),
            ("request_xmloption", "document"),
        ] {
            assert!(
                CharmConfig::from_pairs(&pairs(&[(name, s(good))])).is_ok(),
                "{name}={good}"
            );
            let e = only_error(&[(name, s("bogus"))]);
            assert_eq!(e.option, name);
        }
    }

    #[test]
    fn lax_coercion_like_pydantic_v1() {
        let c = CharmConfig::from_pairs(&pairs(&[
            ("logging_log_lock_waits", s("Yes")),
            ("cpu_wal_compression", Value::Int(0)),
            ("memory_work_mem", s(" 8192 ")),
            ("vacuum_vacuum_cost_delay", Value::Int(5)),
            ("storage_bgwriter_lru_multiplier", s("2.5")),
            ("request_time_zone", Value::Int(0)),
            ("memory_temp_buffers", Value::Float(2048.0)),
        ]))
        .unwrap();
        assert_eq!(c.get("logging_log_lock_waits"), Some(&Value::Bool(true)));
        assert_eq!(c.cpu_wal_compression(), Some(false));
        assert_eq!(c.get("memory_work_mem"), Some(&Value::Int(8192)));
        assert_eq!(c.get("vacuum_vacuum_cost_delay"), Some(&Value::Float(5.0)));
        assert_eq!(
            c.get("storage_bgwriter_lru_multiplier"),
            Some(&Value::Float(2.5))
        );
        assert_eq!(c.get("request_time_zone"), Some(&s("0")));
        assert_eq!(c.get("memory_temp_buffers"), Some(&Value::Int(2048)));
    }

    #[test]
    fn wrong_types_and_all_errors_are_reported() {
        let err = CharmConfig::from_pairs(&pairs(&[
            ("memory_work_mem", s("lots")),
            ("logging_log_connections", s("maybe")),
            ("memory_temp_buffers", Value::Float(1.5)),
            ("not_an_option", Value::Int(1)),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.errors.iter().map(|e| e.option).collect();
        // Reported in table (name) order; the unknown name is ignored.
        assert_eq!(
            names,
            [
                "logging_log_connections",
                "memory_temp_buffers",
                "memory_work_mem"
            ]
        );
        assert_eq!(
            err.errors[2].to_string(),
            "memory_work_mem: expected a int value, got string \"lots\""
        );
    }

    #[test]
    fn iter_yields_set_options_in_name_order() {
        let c =
            CharmConfig::from_pairs(&pairs(&[("memory_shared_buffers", Value::Int(128))])).unwrap();
        let names: Vec<_> = c.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 186 - 3);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(names.contains(&"memory_shared_buffers"));
        assert!(!names.contains(&"ldap_map"));
    }
}
