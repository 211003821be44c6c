//! Rendered `patroni.yml` (spec 10.2): parse it back and check keys and values.

use charm_core::config::{CharmConfig, Value};
use charm_core::params::{self, Parameters};
use charm_core::patroni_yml::{PatroniYmlInput, RestoreKeys, render};
use serde_yaml::Value as Yaml;

const HOST: &str = "postgresql-k8s-0.postgresql-k8s-endpoints";

fn base_input() -> PatroniYmlInput {
    let config = CharmConfig::defaults();
    PatroniYmlInput {
        namespace: "dev".into(),
        host: HOST.into(),
        endpoints: vec![
            HOST.into(),
            "postgresql-k8s-1.postgresql-k8s-endpoints".into(),
        ],
        superuser_password: Some("SuperPw123456789".into()),
        replication_password: Some("ReplPw1234567890".into()),
        rewind_password: Some("RewindPw12345678".into()),
        patroni_password: Some("PatroniPw1234567".into()),
        enable_tls: false,
        connectivity: true,
        enable_ldap: false,
        ldap_parameters: String::new(),
        is_creating_backup: false,
        is_no_sync_member: false,
        stanza: None,
        disable_pgbackrest_archiving: false,
        restore: RestoreKeys::default(),
        parameters: params::build_parameters(&config, 2, 4 << 30)
            .unwrap()
            .into(),
        user_databases: vec![
            ("operator".into(), "all".into()),
            ("relation_id_7".into(), "app_db".into()),
        ],
        pg_major_version: "14".into(),
        synchronous_node_count: 1,
        maximum_lag_on_failover: Some(1048576),
        primary_cluster_endpoint: None,
        extra_replication_endpoints: vec![],
    }
}

fn parse(text: &str) -> Yaml {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

fn at<'a>(doc: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(doc, |v, k| {
        v.get(*k)
            .unwrap_or_else(|| panic!("missing {path:?} at {k}"))
    })
}

fn strs(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .expect("sequence")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

#[test]
fn default_render_structure_and_values() {
    let text = render(&base_input());
    let doc = parse(&text);

    let dcs = at(&doc, &["bootstrap", "dcs"]);
    assert_eq!(dcs["failsafe_mode"], Yaml::Bool(true));
    assert_eq!(dcs["maximum_lag_on_failover"].as_i64(), Some(1048576));
    assert_eq!(dcs["synchronous_mode"], Yaml::Bool(true));
    assert_eq!(dcs["synchronous_mode_strict"], Yaml::Bool(false));
    assert_eq!(dcs["synchronous_node_count"].as_i64(), Some(1));
    assert_eq!(dcs["max_timelines_history"].as_i64(), Some(50));
    assert!(dcs.get("standby_cluster").is_none());
    let dcs_pg = &dcs["postgresql"];
    assert_eq!(dcs_pg["use_pg_rewind"], Yaml::Bool(true));
    assert_eq!(
        dcs_pg["remove_data_directory_on_rewind_failure"],
        Yaml::Bool(false)
    );
    assert_eq!(
        dcs_pg["remove_data_directory_on_diverged_timelines"],
        Yaml::Bool(false)
    );
    assert_eq!(
        dcs_pg["bin_dir"].as_str(),
        Some("/usr/lib/postgresql/14/bin")
    );
    let bp = &dcs_pg["parameters"];
    assert_eq!(bp["synchronous_standby_names"].as_str(), Some("*"));
    assert_eq!(bp["archive_command"].as_str(), Some("/bin/true"));
    assert_eq!(bp["wal_level"].as_str(), Some("logical"));
    assert_eq!(
        bp["shared_preload_libraries"].as_str(),
        Some("timescaledb,pgaudit,pg_stat_statements")
    );
    assert_eq!(bp["log_directory"].as_str(), Some("/var/log/postgresql"));
    assert_eq!(bp["log_filename"].as_str(), Some("postgresql-%w_%H%M.log"));
    assert_eq!(bp["logging_collector"].as_str(), Some("on"));
    assert_eq!(bp["log_error_verbosity"].as_str(), Some("verbose"));
    assert_eq!(bp["log_statement"].as_str(), Some("ddl"));
    assert_eq!(
        bp["log_line_prefix"].as_str(),
        Some("%t [%p]: user=%u,db=%d,app=%a,client=%h,line=%l ")
    );

    let initdb = strs_or_maps(at(&doc, &["bootstrap", "initdb"]));
    assert_eq!(
        initdb,
        [
            "auth-host=md5",
            "auth-local=trust",
            "encoding=UTF8",
            "data-checksums"
        ]
    );
    assert!(at(&doc, &["bootstrap"]).get("method").is_none());
    assert_eq!(
        strs(at(&doc, &["bootstrap", "pg_hba"])),
        [
            "host all all 0.0.0.0/0 md5",
            "host replication replication 127.0.0.1/32 md5"
        ]
    );

    assert_eq!(doc["bypass_api_service"], Yaml::Bool(true));
    assert_eq!(doc["use_endpoints"], Yaml::Bool(true));
    assert_eq!(doc["use_unix_socket"], Yaml::Bool(true));
    assert_eq!(doc["pod_ip"].as_str(), Some(HOST));
    assert!(doc.get("tags").is_none());
    assert!(doc.get("ctl").is_none());

    let log = &doc["log"];
    assert_eq!(log["dir"].as_str(), Some("/var/log/postgresql"));
    assert_eq!(log["file_num"].as_i64(), Some(10080));
    assert_eq!(log["file_size"].as_i64(), Some(600));

    let api = &doc["restapi"];
    assert_eq!(
        api["connect_address"].as_str(),
        Some(format!("{HOST}:8008").as_str())
    );
    assert_eq!(api["listen"].as_str(), Some("0.0.0.0:8008"));
    assert_eq!(api["authentication"]["username"].as_str(), Some("patroni"));
    assert_eq!(
        api["authentication"]["password"].as_str(),
        Some("PatroniPw1234567")
    );
    assert!(api.get("cafile").is_none());

    let pg = &doc["postgresql"];
    assert_eq!(
        pg["connect_address"].as_str(),
        Some(format!("{HOST}:5432").as_str())
    );
    assert_eq!(
        pg["data_dir"].as_str(),
        Some("/var/lib/postgresql/data/pgdata")
    );
    assert_eq!(pg["bin_dir"].as_str(), Some("/usr/lib/postgresql/14/bin"));
    assert_eq!(pg["listen"].as_str(), Some("0.0.0.0:5432"));
    assert_eq!(pg["pgpass"].as_str(), Some("/tmp/pgpass"));
    let p = &pg["parameters"];
    assert_eq!(
        p["shared_preload_libraries"].as_str(),
        Some("timescaledb,pgaudit,pg_stat_statements")
    );
    assert_eq!(p["archive_command"].as_str(), Some("/bin/true"));
    assert_eq!(p["pg_stat_statements.max"].as_i64(), Some(10000));
    assert!(p.get("ssl").is_none());
    // Computed parameters, rendered with Python's str().
    assert_eq!(p["shared_buffers"].as_i64(), Some(137438));
    assert_eq!(p["effective_cache_size"].as_i64(), Some(412288));
    assert_eq!(p["DateStyle"].as_str(), Some("ISO, MDY"));
    assert_eq!(
        p["default_transaction_isolation"].as_str(),
        Some("read committed")
    );
    assert_eq!(p["cpu_index_tuple_cost"].as_f64(), Some(0.005));
    assert_eq!(p["max_worker_processes"].as_i64(), Some(4));
    assert_eq!(p["pg_stat_statements.track"].as_str(), Some("top"));
    assert_eq!(p["wal_compression"].as_str(), Some("on"));
    // Python booleans render as True/False.
    assert!(text.contains("\n    log_connections: True\n"));
    assert!(text.contains("\n    geqo_seed: 0.0\n"));
    assert!(text.contains("\n    vacuum_cost_delay: 0.0\n"));

    assert_eq!(
        strs(&pg["pg_hba"]),
        [
            "local all backup peer map=operator",
            "local all monitoring password",
            "host all +internal_access 0.0.0.0/0 md5",
            "host all operator 0.0.0.0/0 md5",
            "host app_db relation_id_7 0.0.0.0/0 md5",
            "host replication replication 127.0.0.1/32 md5",
            "host replication replication 127.0.0.6/32 md5",
            "host replication replication postgresql-k8s-0.postgresql-k8s-endpoints.dev.svc.cluster.local md5",
            "host replication replication postgresql-k8s-1.postgresql-k8s-endpoints.dev.svc.cluster.local md5",
        ]
    );
    assert_eq!(strs(&pg["pg_ident"]), ["operator postgres backup"]);
    let auth = &pg["authentication"];
    assert_eq!(
        auth["replication"]["password"].as_str(),
        Some("ReplPw1234567890")
    );
    assert_eq!(auth["rewind"]["username"].as_str(), Some("rewind"));
    assert_eq!(
        auth["rewind"]["password"].as_str(),
        Some("RewindPw12345678")
    );
    assert_eq!(
        auth["superuser"]["password"].as_str(),
        Some("SuperPw123456789")
    );

    // Deterministic.
    assert_eq!(text, render(&base_input()));
}

/// initdb entries as `k=v` or bare strings.
fn strs_or_maps(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|e| match e {
            Yaml::String(s) => s.clone(),
            Yaml::Mapping(m) => {
                let (k, v) = m.iter().next().unwrap();
                format!("{}={}", k.as_str().unwrap(), v.as_str().unwrap())
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn tls_stanza_tags_and_extra_ips() {
    let mut input = base_input();
    input.enable_tls = true;
    input.stanza = Some("dev.postgresql-k8s".into());
    input.is_creating_backup = true;
    input.extra_replication_endpoints = vec!["10.1.2.3".into()];
    let text = render(&input);
    let doc = parse(&text);
    let archive = "pgbackrest --stanza=dev.postgresql-k8s archive-push %p";
    assert_eq!(
        at(
            &doc,
            &[
                "bootstrap",
                "dcs",
                "postgresql",
                "parameters",
                "archive_command"
            ]
        )
        .as_str(),
        Some(archive)
    );
    let p = at(&doc, &["postgresql", "parameters"]);
    assert_eq!(p["archive_command"].as_str(), Some(archive));
    assert_eq!(p["ssl"].as_str(), Some("on"));
    assert_eq!(
        p["ssl_ca_file"].as_str(),
        Some("/var/lib/postgresql/data/ca.pem")
    );
    assert_eq!(
        p["ssl_cert_file"].as_str(),
        Some("/var/lib/postgresql/data/cert.pem")
    );
    assert_eq!(
        p["ssl_key_file"].as_str(),
        Some("/var/lib/postgresql/data/key.pem")
    );
    assert_eq!(
        doc["restapi"]["cafile"].as_str(),
        Some("/var/lib/postgresql/data/ca.pem")
    );
    assert_eq!(
        doc["restapi"]["keyfile"].as_str(),
        Some("/var/lib/postgresql/data/key.pem")
    );
    assert_eq!(
        doc["ctl"]["cacert"].as_str(),
        Some("/var/lib/postgresql/data/ca.pem")
    );
    assert_eq!(
        doc["ctl"]["certfile"].as_str(),
        Some("/var/lib/postgresql/data/cert.pem")
    );
    assert_eq!(doc["tags"]["nosync"], Yaml::Bool(false));
    assert_eq!(doc["tags"]["is_creating_backup"], Yaml::Bool(true));
    assert!(text.ends_with("tags:\n  nosync: False\n  is_creating_backup: True\n"));
    assert_eq!(
        strs(at(&doc, &["bootstrap", "pg_hba"])),
        [
            "hostssl all all 0.0.0.0/0 md5",
            "hostssl replication replication 127.0.0.1/32 md5",
            "hostssl replication replication 10.1.2.3/32 md5",
        ]
    );
    let hba = strs(at(&doc, &["postgresql", "pg_hba"]));
    assert_eq!(hba[2], "hostssl all +internal_access 0.0.0.0/0 md5");
    assert_eq!(hba[7], "hostssl replication replication 10.1.2.3/32 md5");

    // Archiving can be forced off even with a stanza.
    input.disable_pgbackrest_archiving = true;
    let doc = parse(&render(&input));
    assert_eq!(
        at(&doc, &["postgresql", "parameters", "archive_command"]).as_str(),
        Some("/bin/true")
    );
}

#[test]
fn connectivity_off_and_ldap_pg_hba() {
    let mut input = base_input();
    input.connectivity = false;
    input.enable_ldap = true; // connectivity off takes precedence
    let hba = strs(at(&parse(&render(&input)), &["postgresql", "pg_hba"]));
    assert_eq!(
        &hba[2..5],
        [
            "host all all postgresql-k8s-0.postgresql-k8s-endpoints.dev.svc.cluster.local md5",
            "host all all 0.0.0.0/0 reject",
            "host replication replication 127.0.0.1/32 md5",
        ]
    );

    input.connectivity = true;
    input.ldap_parameters = "ldapurl=\"ldap://ldap:389\" ldaptls=0".into();
    let hba = strs(at(&parse(&render(&input)), &["postgresql", "pg_hba"]));
    assert_eq!(
        &hba[2..6],
        [
            "host all +identity_access 0.0.0.0/0 ldap ldapurl=\"ldap://ldap:389\" ldaptls=0",
            "host all +internal_access 0.0.0.0/0 md5",
            "host all operator 0.0.0.0/0 md5",
            "host app_db relation_id_7 0.0.0.0/0 md5",
        ]
    );
}

#[test]
fn restore_bootstrap_commands() {
    let restore = |backup: Option<&str>, time: Option<&str>, timeline: Option<&str>| {
        let mut input = base_input();
        input.restore = RestoreKeys {
            backup_id: backup.map(Into::into),
            restore_to_time: time.map(Into::into),
            restore_timeline: timeline.map(Into::into),
            restore_stanza: Some("dev.pg".into()),
        };
        let text = render(&input);
        let doc = parse(&text);
        let boot = &doc["bootstrap"];
        assert_eq!(boot["method"].as_str(), Some("pgbackrest"));
        assert!(boot.get("initdb").is_none());
        assert_eq!(boot["pgbackrest"]["no_params"], Yaml::Bool(true));
        assert_eq!(
            boot["pgbackrest"]["keep_existing_recovery_conf"],
            Yaml::Bool(true)
        );
        boot["pgbackrest"]["command"].as_str().unwrap().to_owned()
    };
    let base = "pgbackrest --stanza=dev.pg --pg1-path=/var/lib/postgresql/data/pgdata";
    assert_eq!(
        restore(Some("2024-01-01T00:00:00Z"), None, None),
        format!(
            "{base} --set=2024-01-01T00:00:00Z --target-action=promote --type=immediate restore\n"
        )
    );
    assert_eq!(
        restore(None, Some("2024-01-02 03:04:05"), Some("2")),
        format!(
            "{base} --target-timeline=\"0x2\"  --target-action=promote --target=\"2024-01-02 03:04:05\" --type=time restore\n"
        )
    );
    // `latest`: no target action; the template leaves a double space after the timeline.
    assert_eq!(
        restore(Some("b1"), Some("latest"), Some("3")),
        format!("{base} --set=b1 --target-timeline=\"0x3\"  --type=default restore\n")
    );
}

#[test]
fn standby_cluster_replaces_initdb() {
    let mut input = base_input();
    input.primary_cluster_endpoint = Some("10.0.0.9".into());
    let doc = parse(&render(&input));
    let standby = at(&doc, &["bootstrap", "dcs", "standby_cluster"]);
    assert_eq!(standby["host"].as_str(), Some("10.0.0.9"));
    assert_eq!(standby["port"].as_i64(), Some(5432));
    assert_eq!(strs(&standby["create_replica_methods"]), ["basebackup"]);
    assert!(doc["bootstrap"].get("initdb").is_none());
}

#[test]
fn hostile_values_stay_valid_yaml_and_missing_passwords_render_none() {
    let mut input = base_input();
    input.superuser_password = Some("a: b #c".into());
    input.replication_password = None;
    input.patroni_password = None;
    let mut parameters = Parameters::new();
    parameters.insert("TimeZone", Value::Str("Europe/Paris".into()));
    parameters.insert(
        "default_text_search_config",
        Value::Str("weird: value".into()),
    );
    input.parameters = parameters.into();
    let doc = parse(&render(&input));
    let auth = at(&doc, &["postgresql", "authentication"]);
    assert_eq!(auth["superuser"]["password"].as_str(), Some("a: b #c"));
    // Jinja renders Python None as the text "None" (upstream quirk).
    assert_eq!(auth["replication"]["password"].as_str(), Some("None"));
    assert!(doc["restapi"].get("authentication").is_none());
    let p = at(&doc, &["postgresql", "parameters"]);
    assert_eq!(
        p["default_text_search_config"].as_str(),
        Some("weird: value")
    );
    assert_eq!(p["TimeZone"].as_str(), Some("Europe/Paris"));
}

/// The parameter lines are rendered once per parameter set and shared by later renders (two
/// per pebble-ready): a changed parameter must still show, and the parameters it was cloned
/// from (after their first render) must not change.
#[test]
fn parameter_lines_follow_changes_after_a_render() {
    let mut input = base_input();
    let first = render(&input);
    assert_eq!(render(&input), first, "a second render of the same input");
    let wal_compression =
        |text: &str| at(&parse(text), &["postgresql", "parameters"])["wal_compression"].clone();
    assert_eq!(wal_compression(&first), Yaml::from("on"));

    let mut changed: Parameters = (*input.parameters).clone();
    changed.insert("wal_compression", Value::Str("zstd".into()));
    let original = input.parameters.clone();
    input.parameters = changed.into();
    let second = render(&input);
    assert_eq!(wal_compression(&second), Yaml::from("zstd"));
    assert_eq!(
        second.replace("wal_compression: zstd", "wal_compression: on"),
        first
    );

    input.parameters = original;
    assert_eq!(
        render(&input),
        first,
        "the original parameters are unchanged"
    );
}
