//! Fault injection: rules that make a chosen capability call fail.

use serde::{Deserialize, Serialize};

use crate::bindings::{Error, ErrorKind};

/// Make calls matching `call` fail with `error`.
///
/// `call` is `<family>.<wit-function>` (e.g. `kubernetes.patch-pod-labels`), `<family>.*`, or
/// `*`. `times` bounds how often it fires (none: always); `probability` makes it fire with
/// that chance under the world's seed; `unit` restricts it to one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub call: String,
    pub error: FaultKind,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub times: Option<u32>,
    #[serde(default)]
    pub probability: Option<f64>,
}

/// The error a fault produces. The HTTP-ish names are accepted for readability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    #[serde(alias = "404")]
    NotFound,
    #[serde(alias = "403")]
    Forbidden,
    #[serde(alias = "409")]
    Conflict,
    Unreachable,
    Timeout,
    Invalid,
    #[serde(alias = "500")]
    Other,
}

impl FaultKind {
    pub fn error_kind(self) -> ErrorKind {
        match self {
            FaultKind::NotFound => ErrorKind::NotFound,
            FaultKind::Forbidden => ErrorKind::Forbidden,
            FaultKind::Conflict => ErrorKind::Conflict,
            FaultKind::Unreachable => ErrorKind::Unreachable,
            FaultKind::Timeout => ErrorKind::Timeout,
            FaultKind::Invalid => ErrorKind::Invalid,
            FaultKind::Other => ErrorKind::Other,
        }
    }
}

impl Fault {
    pub fn matches(&self, family: &str, call: &str, unit: &str) -> bool {
        if self.unit.as_deref().is_some_and(|u| u != unit) || self.times == Some(0) {
            return false;
        }
        match self.call.split_once('.') {
            _ if self.call == "*" => true,
            Some((f, "*")) => f == family,
            Some((f, c)) => f == family && c == call,
            None => false,
        }
    }

    pub fn error(&self, family: &str, call: &str) -> Error {
        Error::new(
            self.error.error_kind(),
            self.message
                .clone()
                .unwrap_or_else(|| format!("injected fault on {family}.{call}")),
        )
    }
}
