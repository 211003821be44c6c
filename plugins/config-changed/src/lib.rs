//! The `config-changed` hook: `_on_config_changed` (spec 6.1).
//!
//! Gaps: the SQL validations that need catalog queries (`pg_ts_config`,
//! `SET DateStyle`, `pg_timezone_names`, `pg_am`, LDAP map groups) are skipped, as the
//! `postgresql` capability has no such operations; the `response_lc_*` locales are checked
//! against `locale -a` in the workload. Legacy `db`/`db-admin` relation re-setup is not
//! implemented.

charm_core::hook_plugin!(charm_core::charm::hooks::config_changed);
