//! API errors and their wire form, the `meta/v1 Status` object.
//!
//! Clients key their behaviour on `code` and `reason` (kube-rs parses them into
//! `kube::Error::Api`, Patroni retries on 500/503/504 and treats 409 as "lost the race"),
//! so every failure the server can produce is one of these, never a bare text body.

use serde_json::{Value, json};

/// Machine-readable reasons, spelled as the real API server spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    UnsupportedMediaType,
    Expired,
    Gone,
    InternalError,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    Unauthorized,
    Unknown,
}

impl Reason {
    /// The string that goes into `Status.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::Forbidden => "Forbidden",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Expired => "Expired",
            Reason::Gone => "Gone",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::Unauthorized => "Unauthorized",
            Reason::Unknown => "",
        }
    }

    /// The reason the real server uses for a bare status code (used for injected faults).
    pub fn for_code(code: u16) -> Reason {
        match code {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            405 => Reason::MethodNotAllowed,
            409 => Reason::Conflict,
            410 => Reason::Gone,
            415 => Reason::UnsupportedMediaType,
            422 => Reason::Invalid,
            429 => Reason::TooManyRequests,
            500 => Reason::InternalError,
            503 => Reason::ServiceUnavailable,
            504 => Reason::Timeout,
            _ => Reason::Unknown,
        }
    }
}

/// A failed API call: HTTP status code, reason, message and the object it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {}: {message}", reason.as_str())]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`.
    pub reason: Reason,
    /// Human-readable `Status.message`.
    pub message: String,
    /// `Status.details.name`, when the error concerns one object.
    pub name: Option<String>,
    /// `Status.details.kind` (the resource plural, as the real server reports it).
    pub kind: Option<String>,
    /// `Status.details.group`.
    pub group: Option<String>,
}

impl ApiError {
    /// An error with no object details.
    pub fn new(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            kind: None,
            group: None,
        }
    }

    /// Attaches `details.{name,kind,group}`.
    pub fn with_details(mut self, name: Option<&str>, plural: &str, group: &str) -> Self {
        self.name = name.map(str::to_string);
        self.kind = Some(plural.to_string());
        self.group = (!group.is_empty()).then(|| group.to_string());
        self
    }

    /// `pods "x" not found`.
    pub fn not_found(qualified: &str, name: &str) -> Self {
        ApiError::new(
            404,
            Reason::NotFound,
            format!("{qualified} \"{name}\" not found"),
        )
    }

    /// `pods "x" already exists`.
    pub fn already_exists(qualified: &str, name: &str) -> Self {
        ApiError::new(
            409,
            Reason::AlreadyExists,
            format!("{qualified} \"{name}\" already exists"),
        )
    }

    /// The optimistic-concurrency failure, worded exactly like the real server so that
    /// clients that grep the message (some do) behave the same.
    pub fn conflict(qualified: &str, name: &str) -> Self {
        ApiError::new(
            409,
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, Reason::BadRequest, message)
    }

    /// 422 Invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(422, Reason::Invalid, message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, Reason::MethodNotAllowed, message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, Reason::InternalError, message)
    }

    /// The `Status` object sent as the response body (or as a watch `ERROR` event object).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if self.name.is_some() || self.kind.is_some() {
            let mut details = serde_json::Map::new();
            if let Some(name) = &self.name {
                details.insert("name".into(), json!(name));
            }
            if let Some(group) = &self.group {
                details.insert("group".into(), json!(group));
            }
            if let Some(kind) = &self.kind {
                details.insert("kind".into(), json!(kind));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shape_matches_the_real_server() {
        let e = ApiError::not_found("pods", "x").with_details(Some("x"), "pods", "");
        assert_eq!(
            e.to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"pods \"x\" not found","reason":"NotFound",
                   "details":{"name":"x","kind":"pods"},"code":404})
        );
    }
}
