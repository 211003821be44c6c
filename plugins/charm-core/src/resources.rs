//! Kubernetes quantities and the unit's available resources (spec 3.3.4 step 1).
//!
//! Upstream reads the node's `status.allocatable` and the `postgresql` container's
//! `resources.limits` with lightkube and converts them with small helpers that only
//! understand a subset of Kubernetes quantity syntax. The conversions below reproduce those
//! helpers, including their gaps (spec 13.8): a container CPU limit in millicores (`500m`) is
//! an error, and so are decimal or exponent forms (`1.5Gi`, `1e9`) and the suffixes `Pi`,
//! `Ei`, `P` and `E`. Memory units are upper-cased before lookup, so the milli suffix `m`
//! is read as mega (`1000m` → 10⁹ bytes instead of 1 byte); kept as upstream does it.

use crate::pyfmt;
use core::fmt;

/// Which quantity failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityKind {
    /// `status.allocatable.cpu` of the node.
    NodeCpu,
    /// `resources.limits.cpu` of the `postgresql` container.
    LimitCpu,
    /// A memory quantity (node allocatable or container limit).
    Memory,
}

/// A quantity the charm's parsers reject (upstream raises `ValueError`, failing the hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    pub kind: QuantityKind,
    pub value: String,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            QuantityKind::NodeCpu => {
                write!(
                    f,
                    "invalid node CPU quantity {:?}: expected an integer or <N>m",
                    self.value
                )
            }
            QuantityKind::LimitCpu => write!(
                f,
                "invalid container CPU limit {:?}: only whole cores are understood (millicores such as 500m are not)",
                self.value
            ),
            QuantityKind::Memory => write!(
                f,
                "invalid memory definition in {:?}: expected bytes or <N> with Ki/K/Mi/M/Gi/G/Ti/T",
                self.value
            ),
        }
    }
}

impl std::error::Error for QuantityError {}

/// Node CPU (`any_cpu_to_cores`): `"<N>m"` is `N // 1000` whole cores (floor), anything else
/// must be a plain integer. `"3500m"` is 3 cores.
pub fn parse_node_cpu(text: &str) -> Result<i64, QuantityError> {
    let err = || QuantityError {
        kind: QuantityKind::NodeCpu,
        value: text.to_owned(),
    };
    match text.strip_suffix('m') {
        Some(millis) => pyfmt::parse_int(millis)
            .map(|m| m.div_euclid(1000))
            .ok_or_else(err),
        None => pyfmt::parse_int(text).ok_or_else(err),
    }
}

/// Container CPU limit: upstream calls plain `int()` on it, so only whole cores parse.
/// Quirk kept on purpose (spec 13.8): `"500m"` or `"1.5"` is an error that fails `update_config`.
pub fn parse_limit_cpu(text: &str) -> Result<i64, QuantityError> {
    pyfmt::parse_int(text).ok_or_else(|| QuantityError {
        kind: QuantityKind::LimitCpu,
        value: text.to_owned(),
    })
}

/// Memory (`any_memory_to_bytes`): a plain integer is bytes; otherwise `^(\d+)(\w+)$` with
/// the unit, upper-cased, one of `KI K MI M GI G TI T` (binary for the `i` forms). Because of
/// the upper-casing, `m` (milli in Kubernetes) means mega here, as upstream.
pub fn parse_memory(text: &str) -> Result<i64, QuantityError> {
    let err = || QuantityError {
        kind: QuantityKind::Memory,
        value: text.to_owned(),
    };
    if let Some(bytes) = pyfmt::parse_int(text) {
        return Ok(bytes);
    }
    // The regex is applied to the raw string (no trimming): leading digits, then word chars.
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty()
        || unit.is_empty()
        || !unit.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return Err(err());
    }
    let multiplier: i64 = match unit.to_uppercase().as_str() {
        "KI" => 1 << 10,
        "K" => 1_000,
        "MI" => 1 << 20,
        "M" => 1_000_000,
        "GI" => 1 << 30,
        "G" => 1_000_000_000,
        "TI" => 1 << 40,
        "T" => 1_000_000_000_000,
        _ => return Err(err()),
    };
    let number: i64 = number.parse().map_err(|_| err())?;
    number.checked_mul(multiplier).ok_or_else(err)
}

/// What the unit may use: whole CPU cores and memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpu_cores: i64,
    pub memory_bytes: i64,
}

/// `get_available_resources`: the node's allocatable CPU and memory, lowered by the
/// container's limits when those are smaller. Absent limits leave the node values.
pub fn available_resources(
    node_cpu: &str,
    node_memory: &str,
    limit_cpu: Option<&str>,
    limit_memory: Option<&str>,
) -> Result<Resources, QuantityError> {
    let mut cpu_cores = parse_node_cpu(node_cpu)?;
    let mut memory_bytes = parse_memory(node_memory)?;
    if let Some(limit) = limit_cpu {
        cpu_cores = cpu_cores.min(parse_limit_cpu(limit)?);
    }
    if let Some(limit) = limit_memory {
        memory_bytes = memory_bytes.min(parse_memory(limit)?);
    }
    Ok(Resources {
        cpu_cores,
        memory_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cpu_millicores_floor_to_cores() {
        assert_eq!(parse_node_cpu("4"), Ok(4));
        assert_eq!(parse_node_cpu("3500m"), Ok(3));
        assert_eq!(parse_node_cpu("999m"), Ok(0));
        assert_eq!(parse_node_cpu("16000m"), Ok(16));
        assert!(parse_node_cpu("1.5").is_err());
        assert!(parse_node_cpu("m").is_err());
    }

    #[test]
    fn limit_cpu_millicores_are_an_error_upstream_quirk() {
        assert_eq!(parse_limit_cpu("2"), Ok(2));
        let err = parse_limit_cpu("500m").unwrap_err();
        assert_eq!(err.kind, QuantityKind::LimitCpu);
        assert!(err.to_string().contains("\"500m\""));
        assert!(parse_limit_cpu("0.5").is_err());
    }

    #[test]
    fn memory_units_in_either_case() {
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("16318412Ki"), Ok(16_318_412 * 1024));
        assert_eq!(parse_memory("2ki"), Ok(2048));
        assert_eq!(parse_memory("3K"), Ok(3_000));
        assert_eq!(parse_memory("3k"), Ok(3_000));
        assert_eq!(parse_memory("1Mi"), Ok(1_048_576));
        assert_eq!(parse_memory("5M"), Ok(5_000_000));
        assert_eq!(parse_memory("2Gi"), Ok(2_147_483_648));
        assert_eq!(parse_memory("2gi"), Ok(2_147_483_648));
        assert_eq!(parse_memory("8G"), Ok(8_000_000_000));
        assert_eq!(parse_memory("1Ti"), Ok(1_099_511_627_776));
        assert_eq!(parse_memory("1t"), Ok(1_000_000_000_000));
        // Upstream quirk: the unit is upper-cased before lookup, so Kubernetes' milli suffix
        // `m` reads as mega: "128974848000m" (about 129 MB) becomes 1.29e17 bytes.
        assert_eq!(
            parse_memory("128974848000m"),
            Ok(128_974_848_000 * 1_000_000)
        );
        for bad in ["1.5Gi", "1e9", "1Pi", "Gi", "", "1 Gi", "-1Gi"] {
            let err = parse_memory(bad).unwrap_err();
            assert_eq!(err.kind, QuantityKind::Memory, "{bad:?}");
        }
    }

    #[test]
    fn lower_limits_win() {
        // 8 cores / 16 GiB node, container limited to 2 cores and 4 GiB.
        let r = available_resources("8", "16Gi", Some("2"), Some("4Gi")).unwrap();
        assert_eq!(
            r,
            Resources {
                cpu_cores: 2,
                memory_bytes: 4 * (1 << 30)
            }
        );
        // Limits above the node values do not raise them.
        let r = available_resources("4000m", "1000M", Some("16"), Some("2G")).unwrap();
        assert_eq!(
            r,
            Resources {
                cpu_cores: 4,
                memory_bytes: 1_000_000_000
            }
        );
        // No limits at all.
        let r = available_resources("2", "1Gi", None, None).unwrap();
        assert_eq!(
            r,
            Resources {
                cpu_cores: 2,
                memory_bytes: 1 << 30
            }
        );
        // A millicore limit fails the whole computation.
        assert_eq!(
            available_resources("8", "16Gi", Some("500m"), None)
                .unwrap_err()
                .kind,
            QuantityKind::LimitCpu
        );
    }
}
