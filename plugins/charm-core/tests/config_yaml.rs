//! `charm/config.yaml` and the Rust option table (spec 12.3) must agree: same names, Juju
//! types and defaults. Juju reads the YAML; the plugins validate against the table.

use charm_core::config::{CharmConfig, Default, OPTIONS, OptionType};
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;

fn load() -> BTreeMap<String, serde_yaml::Mapping> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../charm/config.yaml");
    let text = std::fs::read_to_string(path).expect("charm/config.yaml is readable");
    let doc: Yaml = serde_yaml::from_str(&text).expect("charm/config.yaml is valid YAML");
    let options = doc
        .get("options")
        .and_then(Yaml::as_mapping)
        .expect("top-level `options` mapping");
    options
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().expect("option names are strings").to_owned();
            let body = v
                .as_mapping()
                .unwrap_or_else(|| panic!("{name}: body is a mapping"))
                .clone();
            (name, body)
        })
        .collect()
}

#[test]
fn same_option_names() {
    let yaml = load();
    let yaml_names: Vec<&str> = yaml.keys().map(String::as_str).collect();
    let table_names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
    assert_eq!(yaml_names, table_names);
    assert_eq!(yaml.len(), 186);
}

#[test]
fn same_types_defaults_and_descriptions_present() {
    let yaml = load();
    for spec in OPTIONS {
        let body = &yaml[spec.name];
        let ty = body.get("type").and_then(Yaml::as_str);
        assert_eq!(ty, Some(spec.ty.juju_name()), "{}: type", spec.name);
        let description = body.get("description").and_then(Yaml::as_str).unwrap_or("");
        assert!(!description.trim().is_empty(), "{}: description", spec.name);
        let default = body.get("default");
        match (spec.default, default) {
            (Default::Unset, None) => {}
            (Default::Bool(b), Some(Yaml::Bool(y))) => assert_eq!(b, *y, "{}", spec.name),
            (Default::Int(i), Some(y)) if spec.ty == OptionType::Int => {
                assert_eq!(y.as_i64(), Some(i), "{}", spec.name)
            }
            (Default::Float(f), Some(y)) if spec.ty == OptionType::Float => {
                assert_eq!(y.as_f64(), Some(f), "{}", spec.name)
            }
            (Default::Str(s), Some(Yaml::String(y))) => assert_eq!(s, y, "{}", spec.name),
            (ours, theirs) => panic!("{}: default {ours:?} vs config.yaml {theirs:?}", spec.name),
        }
    }
}

#[test]
fn yaml_defaults_validate() {
    // Feeding every config.yaml default through from_pairs gives the table defaults.
    let yaml = load();
    let mut pairs = Vec::new();
    for (name, body) in &yaml {
        let value = match body.get("default") {
            None => continue,
            Some(Yaml::Bool(b)) => charm_core::config::Value::Bool(*b),
            Some(Yaml::Number(n)) if n.is_i64() => {
                charm_core::config::Value::Int(n.as_i64().unwrap())
            }
            Some(Yaml::Number(n)) => charm_core::config::Value::Float(n.as_f64().unwrap()),
            Some(Yaml::String(s)) => charm_core::config::Value::Str(s.clone()),
            Some(other) => panic!("{name}: unexpected default {other:?}"),
        };
        pairs.push((name.clone(), value));
    }
    assert_eq!(
        CharmConfig::from_pairs(&pairs).unwrap(),
        CharmConfig::defaults()
    );
}
