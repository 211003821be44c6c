//! Extensions from the `plugin_*_enable` options (spec 3.3.9).
//!
//! The SQL itself runs through the host; this module decides which extensions to create or
//! drop, in which order, and whether a dependency is missing.

use crate::config::CharmConfig;
use core::fmt;

/// The plugin names, in upstream's model field order (`CharmConfig.plugin_keys()`), which is
/// the order extensions are collected and dependencies checked in.
pub const PLUGINS: [&str; 53] = [
    "address_standardizer_data_us",
    "address_standardizer",
    "audit",
    "bloom",
    "bool_plperl",
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "debversion",
    "dict_int",
    "dict_xsyn",
    "earthdistance",
    "fuzzystrmatch",
    "hll",
    "hstore",
    "hypopg",
    "icu_ext",
    "intarray",
    "ip4r",
    "isn",
    "jsonb_plperl",
    "lo",
    "ltree",
    "old_snapshot",
    "orafce",
    "pg_freespacemap",
    "pg_similarity",
    "pg_trgm",
    "pg_visibility",
    "pgrowlocks",
    "pgstattuple",
    "pg_stat_statements",
    "plperl",
    "plpython3u",
    "pltcl",
    "postgis",
    "postgis_raster",
    "postgis_tiger_geocoder",
    "postgis_topology",
    "prefix",
    "rdkit",
    "seg",
    "spi",
    "tablefunc",
    "tcn",
    "tds_fdw",
    "timescaledb",
    "tsm_system_rows",
    "tsm_system_time",
    "unaccent",
    "uuid_ossp",
    "vector",
];

/// The extensions the `spi` plugin stands for.
pub const SPI_MODULES: [&str; 4] = ["refint", "autoinc", "insert_username", "moddatetime"];

/// Extensions that need other plugins enabled (upstream `REQUIRED_PLUGINS`).
pub const REQUIRED_PLUGINS: [(&str, &[&str]); 6] = [
    ("address_standardizer", &["postgis"]),
    ("address_standardizer_data_us", &["postgis"]),
    ("jsonb_plperl", &["plperl"]),
    ("postgis_raster", &["postgis"]),
    ("postgis_tiger_geocoder", &["postgis", "fuzzystrmatch"]),
    ("postgis_topology", &["postgis"]),
];

/// The plugins something depends on, applied before everything else. Upstream keeps them
/// in a Python `set`, whose order varies between processes; here it is fixed (order of first
/// appearance in [`REQUIRED_PLUGINS`]). None of them depends on another, so any order works.
pub const DEPENDENCY_PLUGINS: [&str; 3] = ["postgis", "plperl", "fuzzystrmatch"];

/// Unit status message when a dependency is missing (Blocked).
pub const EXTENSIONS_DEPENDENCY_MESSAGE: &str =
    "Unsatisfied plugin dependencies. Please check the logs";

/// Unit status message when disabling fails because objects depend on the extension (Blocked).
pub const EXTENSION_OBJECT_MESSAGE: &str =
    "Cannot disable plugins: Existing objects depend on it. See logs";

/// An enabled extension whose required plugins are not enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingDependency {
    pub extension: String,
    /// Every required plugin that is disabled (upstream logs one line per missing plugin).
    pub missing: Vec<&'static str>,
}

impl fmt::Display for MissingDependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot enable {}, extension required {} to be enabled before",
            self.extension,
            self.missing.join(", ")
        )
    }
}

impl std::error::Error for MissingDependency {}

/// The extension name of a plugin (`audit` → `pgaudit`, `uuid_ossp` → `"uuid-ossp"` quoted
/// as an SQL identifier). `spi` stands for several extensions: see [`SPI_MODULES`].
pub fn extension_name(plugin: &str) -> &str {
    match plugin {
        "audit" => "pgaudit",
        "uuid_ossp" => "\"uuid-ossp\"",
        other => other,
    }
}

/// Upstream `enable_disable_extensions` collection: `{extension: enabled}` in plugin order,
/// `spi` expanded, with the dependency check. The first enabled extension lacking a
/// dependency stops the collection, as upstream sets Blocked
/// [`EXTENSIONS_DEPENDENCY_MESSAGE`] and returns.
pub fn extensions_from_config(
    config: &CharmConfig,
) -> Result<Vec<(String, bool)>, MissingDependency> {
    let mut extensions: Vec<(String, bool)> = Vec::new();
    let set = |extensions: &mut Vec<(String, bool)>, name: &str, enable: bool| match extensions
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some(entry) => entry.1 = enable,
        None => extensions.push((name.to_owned(), enable)),
    };
    for plugin in PLUGINS {
        let enable = config.plugin_enabled(plugin);
        if plugin == "spi" {
            for module in SPI_MODULES {
                set(&mut extensions, module, enable);
            }
            continue;
        }
        let extension = extension_name(plugin);
        if enable
            && let Some((_, required)) = REQUIRED_PLUGINS.iter().find(|(e, _)| *e == extension)
        {
            let missing: Vec<&'static str> = required
                .iter()
                .copied()
                .filter(|dep| !config.plugin_enabled(dep))
                .collect();
            if !missing.is_empty() {
                return Err(MissingDependency {
                    extension: extension.to_owned(),
                    missing,
                });
            }
        }
        set(&mut extensions, extension, enable);
    }
    Ok(extensions)
}

/// The order the SQL runs in (upstream `ordered_extensions`): the [`DEPENDENCY_PLUGINS`]
/// first (disabled when absent from `extensions`), then every extension in its order; an
/// extension already placed keeps its place.
pub fn apply_order(extensions: &[(String, bool)]) -> Vec<(String, bool)> {
    let lookup = |name: &str| extensions.iter().find(|(n, _)| n == name).map(|(_, e)| *e);
    let mut ordered: Vec<(String, bool)> = DEPENDENCY_PLUGINS
        .iter()
        .map(|d| (d.to_string(), lookup(d).unwrap_or(false)))
        .collect();
    for (name, enable) in extensions {
        match ordered.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = *enable,
            None => ordered.push((name.clone(), *enable)),
        }
    }
    ordered
}

/// The statement run in every non-template database for one extension.
pub fn statement(extension: &str, enable: bool) -> String {
    if enable {
        format!("CREATE EXTENSION IF NOT EXISTS {extension};")
    } else {
        format!("DROP EXTENSION IF EXISTS {extension};")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OPTIONS, Value};

    fn config(enabled: &[&str]) -> CharmConfig {
        let pairs: Vec<_> = enabled
            .iter()
            .map(|p| (format!("plugin_{p}_enable"), Value::Bool(true)))
            .collect();
        CharmConfig::from_pairs(&pairs).unwrap()
    }

    fn enabled(exts: &[(String, bool)]) -> Vec<&str> {
        exts.iter()
            .filter(|(_, e)| *e)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    #[test]
    fn plugins_match_the_option_table() {
        let mut from_table: Vec<&str> = OPTIONS
            .iter()
            .filter_map(|o| {
                o.name
                    .strip_prefix("plugin_")
                    .and_then(|n| n.strip_suffix("_enable"))
            })
            .collect();
        let mut ours = PLUGINS.to_vec();
        from_table.sort();
        ours.sort();
        assert_eq!(ours, from_table);
    }

    #[test]
    fn defaults_enable_only_pgaudit_with_renames_and_spi_expanded() {
        let exts = extensions_from_config(&CharmConfig::defaults()).unwrap();
        assert_eq!(enabled(&exts), ["pgaudit"]);
        // 53 plugins, spi counted as four extensions.
        assert_eq!(exts.len(), 56);
        let names: Vec<&str> = exts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..3],
            [
                "address_standardizer_data_us",
                "address_standardizer",
                "pgaudit"
            ]
        );
        assert!(names.contains(&"\"uuid-ossp\""));
        let spi_at = names.iter().position(|n| *n == "refint").unwrap();
        assert_eq!(&names[spi_at..spi_at + 4], SPI_MODULES);
        assert!(
            !names.contains(&"spi") && !names.contains(&"audit") && !names.contains(&"uuid_ossp")
        );
    }

    #[test]
    fn dependency_check_names_missing_plugins() {
        let err = extensions_from_config(&config(&["postgis_tiger_geocoder"])).unwrap_err();
        assert_eq!(
            err,
            MissingDependency {
                extension: "postgis_tiger_geocoder".into(),
                missing: vec!["postgis", "fuzzystrmatch"]
            }
        );
        let err =
            extensions_from_config(&config(&["postgis_tiger_geocoder", "postgis"])).unwrap_err();
        assert_eq!(err.missing, ["fuzzystrmatch"]);
        assert_eq!(
            err.to_string(),
            "cannot enable postgis_tiger_geocoder, extension required fuzzystrmatch to be enabled before"
        );
        let err = extensions_from_config(&config(&["jsonb_plperl"])).unwrap_err();
        assert_eq!(
            (err.extension.as_str(), err.missing.as_slice()),
            ("jsonb_plperl", &["plperl"][..])
        );
        // The first offender in plugin order is reported.
        let err = extensions_from_config(&config(&["postgis_raster", "address_standardizer"]))
            .unwrap_err();
        assert_eq!(err.extension, "address_standardizer");
        // Satisfied dependencies pass; a disabled dependent needs nothing.
        let exts =
            extensions_from_config(&config(&["postgis_topology", "postgis", "spi"])).unwrap();
        assert_eq!(
            enabled(&exts),
            [
                "pgaudit",
                "postgis",
                "postgis_topology",
                "refint",
                "autoinc",
                "insert_username",
                "moddatetime"
            ]
        );
    }

    #[test]
    fn apply_order_puts_dependencies_first() {
        let exts =
            extensions_from_config(&config(&["postgis_raster", "postgis", "vector"])).unwrap();
        let ordered = apply_order(&exts);
        assert_eq!(ordered.len(), exts.len());
        let head: Vec<(&str, bool)> = ordered[..4].iter().map(|(n, e)| (n.as_str(), *e)).collect();
        assert_eq!(
            head,
            [
                ("postgis", true),
                ("plperl", false),
                ("fuzzystrmatch", false),
                ("address_standardizer_data_us", false)
            ]
        );
        let pos = |n: &str| ordered.iter().position(|(x, _)| x == n).unwrap();
        assert!(pos("postgis") < pos("postgis_raster"));
        // Dependencies absent from the input are disabled.
        let only = apply_order(&[("vector".to_owned(), true)]);
        let names: Vec<(&str, bool)> = only.iter().map(|(n, e)| (n.as_str(), *e)).collect();
        assert_eq!(
            names,
            [
                ("postgis", false),
                ("plperl", false),
                ("fuzzystrmatch", false),
                ("vector", true)
            ]
        );
    }

    #[test]
    fn statements() {
        assert_eq!(
            statement("\"uuid-ossp\"", true),
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";"
        );
        assert_eq!(
            statement("pgaudit", false),
            "DROP EXTENSION IF EXISTS pgaudit;"
        );
    }
}
