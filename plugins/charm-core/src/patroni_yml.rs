//! Rendering of `/var/lib/postgresql/data/patroni.yml` (spec 10.2; upstream
//! `templates/patroni.yml.j2` rendered by `Patroni.render_patroni_yml_file`).
//!
//! The output follows the template's structure, key order and literal texts. Values are
//! rendered the way Jinja renders Python values (`str()`: `True`, `None`, `2.0`), unquoted as
//! in the template, so Patroni (PyYAML, YAML 1.1) reads the same types as from the Python
//! charm (`on` is a boolean there and Patroni turns it back into `on`). One deliberate
//! difference: a value that would break the YAML structure as a plain scalar (`a: b`, `#x`,
//! a leading `*`, …; only possible through user input such as `set-password`) is
//! single-quoted instead of corrupting the file. Whitespace-only lines that the template's
//! Jinja whitespace control leaves behind are not reproduced.

use std::rc::Rc;

use crate::config::Value;
use crate::names;
use crate::params::Parameters;

/// The `bootstrap.dcs` `shared_preload_libraries` and `postgresql.parameters` value.
pub const SHARED_PRELOAD_LIBRARIES: &str = "timescaledb,pgaudit,pg_stat_statements";

/// PD.app restore keys (spec 3.3.4 step 3), raw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreKeys {
    /// `restoring-backup`: the backup id being restored.
    pub backup_id: Option<String>,
    /// `restore-to-time`: a PITR target or `latest`.
    pub restore_to_time: Option<String>,
    /// `restore-timeline` (hex digits, rendered as `0x<tl>`).
    pub restore_timeline: Option<String>,
    /// `restore-stanza`.
    pub restore_stanza: Option<String>,
}

/// Everything the template reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PatroniYmlInput {
    pub namespace: String,
    /// This member's `<host>` (`<app>-<n>.<app>-endpoints`).
    pub host: String,
    /// `PD.app["endpoints"]` as snapshotted for this dispatch.
    pub endpoints: Vec<String>,
    pub superuser_password: Option<String>,
    pub replication_password: Option<String>,
    pub rewind_password: Option<String>,
    pub patroni_password: Option<String>,
    pub enable_tls: bool,
    /// `PD.unit["connectivity"] != "off"`.
    pub connectivity: bool,
    /// LDAP related and cluster initialised.
    pub enable_ldap: bool,
    /// The pg_hba LDAP options, e.g. from [`ldap_hba_options`].
    pub ldap_parameters: String,
    pub is_creating_backup: bool,
    pub is_no_sync_member: bool,
    /// `PD.app["stanza"]`, else `PD.unit["stanza"]`.
    pub stanza: Option<String>,
    pub disable_pgbackrest_archiving: bool,
    pub restore: RestoreKeys,
    /// The computed parameters (module `params`), rendered in order. Shared: both
    /// `update_config` runs of one hook use the same ones, built once.
    pub parameters: Rc<Parameters>,
    /// pg_hba user → databases (comma-separated), in order (spec 3.3.5).
    pub user_databases: Vec<(String, String)>,
    /// PostgreSQL major version, e.g. `14` (see [`major_version`]).
    pub pg_major_version: String,
    pub synchronous_node_count: i64,
    /// `durability_maximum_lag_on_failover`.
    pub maximum_lag_on_failover: Option<i64>,
    /// Async replication: the primary cluster's endpoint when this is a standby cluster.
    pub primary_cluster_endpoint: Option<String>,
    /// Async replication: extra IPs allowed to replicate (`<ip>/32`).
    pub extra_replication_endpoints: Vec<String>,
}

/// `version.split(".")[0]` of the workload's snap `version` (`14.23` → `14`).
pub fn major_version(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A value of the LDAP options dict (`Patroni._dict_to_hba_string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapValue {
    Str(String),
    Bool(bool),
    Int(i64),
}

/// `_dict_to_hba_string`: `key=value` pairs joined by spaces; booleans become 0/1 and
/// strings are double-quoted. `[("ldapurl", "ldap://x"), ("ldaptls", false)]` →
/// `ldapurl="ldap://x" ldaptls=0`.
pub fn ldap_hba_options(options: &[(String, LdapValue)]) -> String {
    options
        .iter()
        .map(|(k, v)| match v {
            LdapValue::Str(s) => format!("{k}=\"{s}\""),
            LdapValue::Bool(b) => format!("{k}={}", *b as i32),
            LdapValue::Int(i) => format!("{k}={i}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `s` can be written as a YAML plain scalar without changing the document's
/// structure (conservative: may refuse some valid plain scalars).
fn plain_safe(s: &str) -> bool {
    if s.is_ascii() {
        plain_safe_ascii(s.as_bytes())
    } else {
        plain_safe_chars(s)
    }
}

fn plain_safe_chars(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return false;
    }
    if "[]{}#&*!|>'\"%@`,".contains(first) {
        return false;
    }
    if "-?:".contains(first) && s.chars().nth(1).is_none_or(char::is_whitespace) {
        return false;
    }
    !(s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(char::is_control))
}

/// Bytes of [`plain_safe_ascii`]'s fast path: letters, digits and `_ . / + = -`.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'+' | b'=' | b'-');
        c += 1;
    }
    t
};

/// [`plain_safe`] in one pass over ASCII bytes: the same rules, without the substring
/// searches and char decoding that made it a hot spot of every `update_config` (it runs for
/// each of the ~100 PostgreSQL parameters).
fn plain_safe_ascii(b: &[u8]) -> bool {
    let Some(&first) = b.first() else {
        return false;
    };
    // Most parameter names and values are words (`shared_buffers`, `128MB`, `0.1`, `-1`):
    // none of these bytes starts a YAML structure, except a lone `-`.
    if b.iter().all(|&c| WORD[c as usize]) {
        return b != b"-";
    }
    let last = b[b.len() - 1];
    // ASCII `char::is_whitespace`: space, \t, \n, \x0b, \x0c, \r.
    let ws = |c: u8| matches!(c, b' ' | b'\t'..=b'\r');
    if ws(first) || ws(last) || last == b':' {
        return false;
    }
    if b"[]{}#&*!|>'\"%@`,".contains(&first) {
        return false;
    }
    if b"-?:".contains(&first) && b.get(1).is_none_or(|&c| ws(c)) {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        // ASCII `char::is_control`: below 0x20, and DEL.
        if c < 0x20 || c == 0x7f {
            return false;
        }
        let next = b.get(i + 1).copied();
        if (c == b':' && next == Some(b' ')) || (c == b' ' && next == Some(b'#')) {
            return false;
        }
    }
    true
}

/// Render a string as the template would (raw), single-quoting only when raw would break
/// the YAML structure.
fn scalar(s: &str) -> String {
    if plain_safe(s) {
        s.to_owned()
    } else {
        single_quoted(s)
    }
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Jinja's rendering of an optional Python value: `None` when absent.
fn opt_scalar(s: &Option<String>) -> String {
    match s {
        Some(s) => scalar(s),
        None => "None".to_owned(),
    }
}

/// Jinja truthiness of an optional string: present and non-empty.
fn truthy(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

fn render_value(value: &Value) -> String {
    let s = value.python_str();
    if plain_safe(&s) { s } else { single_quoted(&s) }
}

struct Out(String);

impl Out {
    fn indent(&mut self, indent: usize) {
        const SPACES: &str = "                ";
        match SPACES.get(..indent) {
            Some(spaces) => self.0.push_str(spaces),
            None => self.0.extend(std::iter::repeat_n(' ', indent)),
        }
    }

    fn line(&mut self, indent: usize, text: impl AsRef<str>) {
        self.indent(indent);
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }

    /// A formatted line, written into the buffer without a `String` of its own.
    fn line_fmt(&mut self, indent: usize, args: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        self.indent(indent);
        // Writing into a String cannot fail.
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }
}

/// The `postgresql.parameters` lines of the computed parameters, one per parameter in
/// order, indented under `parameters:`. The hottest loop of a render, so each line is written
/// in place; [`render`] takes it through [`Parameters::rendered`], once per parameter set.
fn parameter_lines(parameters: &Parameters) -> String {
    let mut out = Out(String::with_capacity(parameters.len() * 48));
    for (name, value) in parameters.iter() {
        out.indent(4);
        if plain_safe(name) {
            out.0.push_str(name);
        } else {
            out.0.push_str(&single_quoted(name));
        }
        out.0.push_str(": ");
        out.0.push_str(&render_value(value));
        out.0.push('\n');
    }
    out.0
}

/// Render `patroni.yml`.
pub fn render(input: &PatroniYmlInput) -> String {
    let storage = names::STORAGE_PATH;
    let host_kw = if input.enable_tls { "hostssl" } else { "host" };
    let bin_dir = format!("/usr/lib/postgresql/{}/bin", input.pg_major_version);
    let archive_command = match (&input.stanza, input.disable_pgbackrest_archiving) {
        (Some(stanza), false) => {
            single_quoted(&format!("pgbackrest --stanza={stanza} archive-push %p"))
        }
        _ => "/bin/true".to_owned(),
    };
    let r = &input.restore;
    // Template variables: `restoring_backup` tests presence (`is not None`), the others
    // Jinja truthiness (non-empty).
    let restoring_backup = r.backup_id.is_some() || r.restore_to_time.is_some();
    let restore_to_latest = r.restore_to_time.as_deref() == Some("latest");
    let pitr_target = if restore_to_latest {
        None
    } else {
        r.restore_to_time.as_deref()
    };

    let mut out = Out(String::with_capacity(8 << 10));
    out.line(0, "bootstrap:");
    out.line(2, "dcs:");
    out.line(4, "failsafe_mode: true");
    out.line_fmt(
        4,
        format_args!(
            "maximum_lag_on_failover: {}",
            input
                .maximum_lag_on_failover
                .map_or("None".to_owned(), |m| m.to_string())
        ),
    );
    out.line(4, "synchronous_mode: true");
    out.line(4, "synchronous_mode_strict: false");
    out.line_fmt(
        4,
        format_args!("synchronous_node_count: {}", input.synchronous_node_count),
    );
    out.line(4, "max_timelines_history: 50");
    out.line(4, "postgresql:");
    out.line(6, "use_pg_rewind: true");
    out.line(6, "remove_data_directory_on_rewind_failure: false");
    out.line(6, "remove_data_directory_on_diverged_timelines: false");
    out.line_fmt(6, format_args!("bin_dir: {bin_dir}"));
    out.line(6, "parameters:");
    out.line(8, "synchronous_standby_names: \"*\"");
    out.line_fmt(8, format_args!("archive_command: {archive_command}"));
    // Constant lines: written without a String each.
    for line in [
        "archive_mode: on",
        "autovacuum: true",
        "debug_print_plan: 'off'",
        "debug_print_parse: 'off'",
        "debug_print_rewritten: 'off'",
        "fsync: true",
        "full_page_writes: true",
        "lc_messages: 'en_US.UTF8'",
        "log_autovacuum_min_duration: 60000",
        "log_checkpoints: 'on'",
        "log_destination: 'stderr'",
        "log_directory: '/var/log/postgresql'",
        "log_error_verbosity: 'verbose'",
        "log_file_mode: '0600'",
        "log_filename: 'postgresql-%w_%H%M.log'",
        "log_hostname: 'off'",
        "log_line_prefix: '%t [%p]: user=%u,db=%d,app=%a,client=%h,line=%l '",
        "log_min_duration_sample: -1",
        "log_min_error_statement: 'warning'",
        "log_recovery_conflict_waits: 'on'",
        "log_replication_commands: 'on'",
        "log_rotation_age: 1",
        "log_rotation_size: 0",
        "log_statement: ddl",
        "log_statement_sample_rate: 1",
        "log_statement_stats: 'off'",
        "log_temp_files: 1",
        "log_timezone: 'UTC'",
        "log_truncate_on_rotation: 'on'",
        "logging_collector: 'on'",
        "wal_level: logical",
    ] {
        out.line(8, line);
    }
    out.line_fmt(
        8,
        format_args!("shared_preload_libraries: '{SHARED_PRELOAD_LIBRARIES}'"),
    );
    if restoring_backup {
        out.line(2, "method: pgbackrest");
        out.line(2, "pgbackrest:");
        out.line(4, "command: >");
        // The folded lines exactly as the template's whitespace control produces them,
        // including the double space after a timeline before `--type=default`.
        let mut first = format!(
            "pgbackrest --stanza={} --pg1-path={}",
            r.restore_stanza.as_deref().unwrap_or("None"),
            names::PGDATA_PATH
        );
        if let Some(id) = truthy(r.backup_id.as_deref()) {
            first.push_str(&format!(" --set={id}"));
        }
        if let Some(tl) = truthy(r.restore_timeline.as_deref()) {
            first.push_str(&format!(" --target-timeline=\"0x{tl}\" "));
        }
        if restore_to_latest {
            first.push_str(" --type=default");
            out.line(6, first);
        } else {
            out.line(6, first);
            let target = match truthy(pitr_target) {
                Some(t) => format!(" --target=\"{t}\" --type=time"),
                None => " --type=immediate".to_owned(),
            };
            out.line_fmt(6, format_args!("--target-action=promote{target}"));
        }
        out.line(6, "restore");
        out.line(4, "no_params: True");
        out.line(4, "keep_existing_recovery_conf: True");
    } else if let Some(primary) = truthy(input.primary_cluster_endpoint.as_deref()) {
        // Indented under bootstrap.dcs, as in the template.
        out.line(4, "standby_cluster:");
        out.line_fmt(6, format_args!("host: {}", scalar(primary)));
        out.line_fmt(6, format_args!("port: {}", names::DATABASE_PORT));
        out.line(6, "create_replica_methods: [\"basebackup\"]");
    } else {
        out.line(2, "initdb:");
        out.line(2, "- auth-host: md5");
        out.line(2, "- auth-local: trust");
        out.line(2, "- encoding: UTF8");
        out.line(2, "- data-checksums");
    }
    out.line(2, "pg_hba:");
    out.line_fmt(2, format_args!("- {host_kw} all all 0.0.0.0/0 md5"));
    out.line_fmt(
        2,
        format_args!("- {host_kw} replication replication 127.0.0.1/32 md5"),
    );
    for ip in &input.extra_replication_endpoints {
        out.line_fmt(
            2,
            format_args!("- {host_kw} replication replication {ip}/32 md5"),
        );
    }

    out.line(0, "bypass_api_service: true");
    out.line(0, "log:");
    out.line(2, "dir: /var/log/postgresql");
    out.line(2, "dateformat: \"%Y-%m-%d %H:%M:%S %Z\"");
    out.line(
        2,
        "format: \"%(asctime)s [%(process)d]: %(levelname)s: %(message)s \"",
    );
    out.line(2, "file_num: 10080");
    out.line(2, "file_size: 600");

    out.line(0, "restapi:");
    out.line_fmt(
        2,
        format_args!(
            "connect_address: '{}:{}'",
            input.host,
            names::PATRONI_API_PORT
        ),
    );
    out.line_fmt(
        2,
        format_args!("listen: 0.0.0.0:{}", names::PATRONI_API_PORT),
    );
    if let Some(password) = truthy(input.patroni_password.as_deref()) {
        out.line(2, "authentication:");
        out.line_fmt(4, format_args!("username: {}", names::PATRONI_USER));
        out.line_fmt(4, format_args!("password: {}", scalar(password)));
    }
    if input.enable_tls {
        out.line_fmt(2, format_args!("cafile: {storage}/ca.pem"));
        out.line_fmt(2, format_args!("certfile: {storage}/cert.pem"));
        out.line_fmt(2, format_args!("keyfile: {storage}/key.pem"));
        out.line(0, "ctl:");
        out.line_fmt(2, format_args!("cacert: {storage}/ca.pem"));
        out.line_fmt(2, format_args!("certfile: {storage}/cert.pem"));
        out.line_fmt(2, format_args!("keyfile: {storage}/key.pem"));
    }
    out.line_fmt(0, format_args!("pod_ip: '{}'", input.host));

    out.line(0, "postgresql:");
    out.line_fmt(
        2,
        format_args!("connect_address: '{}:{}'", input.host, names::DATABASE_PORT),
    );
    out.line_fmt(2, format_args!("data_dir: {}", names::PGDATA_PATH));
    out.line_fmt(2, format_args!("bin_dir: {bin_dir}"));
    out.line_fmt(2, format_args!("listen: 0.0.0.0:{}", names::DATABASE_PORT));
    out.line(2, "parameters:");
    out.line_fmt(
        4,
        format_args!("shared_preload_libraries: '{SHARED_PRELOAD_LIBRARIES}'"),
    );
    out.line_fmt(4, format_args!("archive_command: {archive_command}"));
    if input.enable_tls {
        out.line(4, "ssl: on");
        out.line_fmt(4, format_args!("ssl_ca_file: {storage}/ca.pem"));
        out.line_fmt(4, format_args!("ssl_cert_file: {storage}/cert.pem"));
        out.line_fmt(4, format_args!("ssl_key_file: {storage}/key.pem"));
    }
    out.line(4, "pg_stat_statements.max: 10000");
    out.0.push_str(input.parameters.rendered(parameter_lines));
    out.line(2, "pgpass: /tmp/pgpass");
    out.line(2, "pg_hba:");
    out.line(2, "- local all backup peer map=operator");
    out.line(2, "- local all monitoring password");
    let user_lines = |out: &mut Out| {
        for (user, databases) in &input.user_databases {
            out.line_fmt(
                2,
                format_args!("- {host_kw} {databases} {user} 0.0.0.0/0 md5"),
            );
        }
    };
    if !input.connectivity {
        out.line_fmt(
            2,
            format_args!(
                "- {host_kw} all all {}.{}.svc.cluster.local md5",
                input.host, input.namespace
            ),
        );
        out.line_fmt(2, format_args!("- {host_kw} all all 0.0.0.0/0 reject"));
    } else if input.enable_ldap {
        out.line_fmt(
            2,
            format_args!(
                "- {host_kw} all +identity_access 0.0.0.0/0 ldap {}",
                input.ldap_parameters
            ),
        );
        out.line_fmt(
            2,
            format_args!("- {host_kw} all +internal_access 0.0.0.0/0 md5"),
        );
        user_lines(&mut out);
    } else {
        out.line_fmt(
            2,
            format_args!("- {host_kw} all +internal_access 0.0.0.0/0 md5"),
        );
        user_lines(&mut out);
    }
    out.line_fmt(
        2,
        format_args!("- {host_kw} replication replication 127.0.0.1/32 md5"),
    );
    out.line_fmt(
        2,
        format_args!("- {host_kw} replication replication 127.0.0.6/32 md5"),
    );
    for ip in &input.extra_replication_endpoints {
        out.line_fmt(
            2,
            format_args!("- {host_kw} replication replication {ip}/32 md5"),
        );
    }
    for endpoint in &input.endpoints {
        out.line_fmt(
            2,
            format_args!(
                "- {host_kw} replication replication {endpoint}.{}.svc.cluster.local md5",
                input.namespace
            ),
        );
    }
    out.line(2, "pg_ident:");
    out.line(2, "- operator postgres backup");
    out.line(2, "authentication:");
    out.line(4, "replication:");
    out.line_fmt(
        6,
        format_args!("password: {}", opt_scalar(&input.replication_password)),
    );
    out.line(4, "rewind:");
    out.line_fmt(6, format_args!("username: {}", names::REWIND_USER));
    out.line_fmt(
        6,
        format_args!("password: {}", opt_scalar(&input.rewind_password)),
    );
    out.line(4, "superuser:");
    out.line_fmt(
        6,
        format_args!("password: {}", opt_scalar(&input.superuser_password)),
    );
    out.line(0, "use_endpoints: true");
    out.line(0, "use_unix_socket: true");
    if input.is_no_sync_member || input.is_creating_backup {
        out.line(0, "tags:");
        out.line_fmt(
            2,
            format_args!(
                "nosync: {}",
                crate::pyfmt::bool_str(input.is_no_sync_member)
            ),
        );
        out.line_fmt(
            2,
            format_args!(
                "is_creating_backup: {}",
                crate::pyfmt::bool_str(input.is_creating_backup)
            ),
        );
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_pass_agrees_with_the_char_rules() {
        let pieces = [
            "", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x01", "\x7f", "a", "-", "?", ":", "#",
            "'", "\"", ",", "[", "*", "x", "1", "%", "@", "`", "|", ">", "!", "&", "{", "}", "]",
            "_", ".", "/", "+", "=", "Z",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let s = format!("{a}{b}{c}");
                    assert_eq!(
                        plain_safe_ascii(s.as_bytes()),
                        plain_safe_chars(&s),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn scalars_stay_raw_unless_structure_breaks() {
        assert_eq!(scalar("ISO, MDY"), "ISO, MDY");
        assert_eq!(scalar("read committed"), "read committed");
        assert_eq!(scalar("pg_catalog.simple"), "pg_catalog.simple");
        assert_eq!(scalar("-1"), "-1");
        assert_eq!(scalar("on"), "on");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("#x"), "'#x'");
        assert_eq!(scalar("x #y"), "'x #y'");
        assert_eq!(scalar("*ref"), "'*ref'");
        assert_eq!(scalar("it's"), "it's");
        assert_eq!(scalar("'q"), "'''q'");
        assert_eq!(scalar(""), "''");
        assert_eq!(scalar("- x"), "'- x'");
        assert_eq!(scalar("a\nb"), "'a\nb'");
    }

    #[test]
    fn ldap_options_like_dict_to_hba_string() {
        let opts = vec![
            (
                "ldapbasedn".to_owned(),
                LdapValue::Str("dc=example,dc=net".into()),
            ),
            ("ldaptls".to_owned(), LdapValue::Bool(false)),
            ("ldapport".to_owned(), LdapValue::Int(389)),
        ];
        assert_eq!(
            ldap_hba_options(&opts),
            "ldapbasedn=\"dc=example,dc=net\" ldaptls=0 ldapport=389"
        );
        assert_eq!(major_version("14.23"), "14");
    }
}
