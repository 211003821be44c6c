//! The one error type of this crate, and the coarse [`ErrorKind`] callers branch on.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::Change;

/// A boxed error from the transport (hyper, the websocket library, the multipart parser).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The coarse class of an [`Error`], for callers that branch on what went wrong rather than
/// on where. Mirrors the host's `error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing asked about does not exist (HTTP 404, file error kind `not-found`).
    NotFound,
    /// Pebble refused: HTTP 401/403 or file error kind `permission-denied`.
    Forbidden,
    /// The thing already exists (HTTP 409, "layer ... already exists", "file exists").
    Conflict,
    /// Nothing answered on the socket: it is missing or the connection was refused.
    Unreachable,
    /// A deadline passed: the client's request timeout, a change wait, or an exec timeout.
    Timeout,
    /// The request was rejected as malformed, by this client before sending or by Pebble (400).
    Invalid,
    /// Anything else, including Pebble speaking something other than its protocol.
    Other,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Other => "other",
        })
    }
}

/// Everything that can go wrong talking to Pebble.
///
/// `operation` fields read like `GET /v1/plan` so a message says where it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not connect to the socket at all.
    #[error("cannot connect to pebble socket {}: {source}", socket.display())]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Pebble answered with an error response; `message` is Pebble's own.
    #[error("{operation}: pebble returned {status}{}: {message}", kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Api {
        operation: String,
        /// HTTP status code.
        status: u16,
        /// Pebble's `result.kind`, e.g. `not-found`, `permission-denied`, `login-required`.
        kind: Option<String>,
        message: String,
        /// Pebble's `result.value`, when it sends one.
        value: Option<serde_json::Value>,
    },

    /// A per-path error from a file operation (push, pull, make-dirs, remove).
    #[error("{operation} {path}: {message}")]
    File {
        operation: &'static str,
        path: String,
        /// Pebble's kind: `not-found`, `permission-denied` or `generic-file-error`.
        kind: Option<String>,
        message: String,
    },

    /// A change (start, stop, replan, exec, ...) finished with an error.
    #[error("pebble change {} ({}) failed: {}", change.id, change.kind, change.err.as_deref().unwrap_or("unknown error"))]
    Change { change: Box<Change> },

    /// A deadline passed.
    #[error("{operation}: timed out after {after:?}")]
    Timeout { operation: String, after: Duration },

    /// Pebble's reply did not follow the protocol: wrong content type, undecodable body,
    /// missing fields.
    #[error("{operation}: invalid response from pebble: {detail}")]
    Protocol { operation: String, detail: String },

    /// The connection failed after it was made: closed mid-response, truncated body, a broken
    /// websocket.
    #[error("{operation}: connection to pebble failed: {detail}")]
    Connection {
        operation: String,
        /// The whole cause chain, as text.
        detail: String,
        #[source]
        source: BoxError,
    },

    /// The caller's input was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An exec'd command exited non-zero (only from [`crate::ExecOutput::check`]).
    #[error("command {command:?} exited with code {exit_code}: {stderr}")]
    ExecFailed {
        command: Vec<String>,
        exit_code: i32,
        /// Standard error, lossily decoded and trimmed.
        stderr: String,
    },
}

impl Error {
    /// The coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unreachable { .. } => ErrorKind::Unreachable,
            Error::Api {
                status,
                kind,
                message,
                ..
            } => api_kind(*status, kind.as_deref(), message),
            Error::File { kind, message, .. } => match kind.as_deref() {
                Some("not-found") => ErrorKind::NotFound,
                Some("permission-denied") => ErrorKind::Forbidden,
                // Pebble reports EEXIST (mkdir without make-parents on an existing path) as a
                // generic-file-error; the OS message is the only signal.
                _ if message.contains("file exists") => ErrorKind::Conflict,
                _ => ErrorKind::Other,
            },
            Error::Change { .. } => ErrorKind::Other,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Protocol { .. } | Error::Connection { .. } => ErrorKind::Other,
            Error::InvalidArgument(_) => ErrorKind::Invalid,
            Error::ExecFailed { .. } => ErrorKind::Other,
        }
    }

    /// Pebble's own message for API, file and change errors.
    pub fn pebble_message(&self) -> Option<&str> {
        match self {
            Error::Api { message, .. } | Error::File { message, .. } => Some(message),
            Error::Change { change } => change.err.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn api_kind(status: u16, kind: Option<&str>, message: &str) -> ErrorKind {
    match kind {
        Some("not-found") => return ErrorKind::NotFound,
        Some("permission-denied") | Some("login-required") => return ErrorKind::Forbidden,
        _ => {}
    }
    match status {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Forbidden,
        409 => ErrorKind::Conflict,
        408 | 504 => ErrorKind::Timeout,
        // Pebble answers a duplicate layer label (and similar) with a plain 400.
        400 if message.contains("already exists") => ErrorKind::Conflict,
        400 | 405 | 413 | 415 | 422 => ErrorKind::Invalid,
        _ => ErrorKind::Other,
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: Option<&str>, message: &str) -> Error {
        Error::Api {
            operation: "GET /v1/x".into(),
            status,
            kind: kind.map(str::to_owned),
            message: message.into(),
            value: None,
        }
    }

    #[test]
    fn api_errors_map_to_kinds() {
        assert_eq!(api(404, None, "x").kind(), ErrorKind::NotFound);
        assert_eq!(api(400, Some("not-found"), "x").kind(), ErrorKind::NotFound);
        assert_eq!(api(403, None, "x").kind(), ErrorKind::Forbidden);
        assert_eq!(
            api(401, Some("login-required"), "x").kind(),
            ErrorKind::Forbidden
        );
        assert_eq!(api(409, None, "x").kind(), ErrorKind::Conflict);
        assert_eq!(
            api(400, None, "layer \"a\" already exists").kind(),
            ErrorKind::Conflict
        );
        assert_eq!(api(400, None, "bad").kind(), ErrorKind::Invalid);
        assert_eq!(api(504, None, "slow").kind(), ErrorKind::Timeout);
        assert_eq!(api(500, None, "boom").kind(), ErrorKind::Other);
    }

    #[test]
    fn api_error_message_keeps_pebble_text_and_place() {
        let e = api(404, Some("not-found"), "cannot find change with id \"9\"");
        let text = e.to_string();
        assert!(text.contains("GET /v1/x"), "{text}");
        assert!(text.contains("404"), "{text}");
        assert!(text.contains("cannot find change with id \"9\""), "{text}");
        assert_eq!(e.pebble_message(), Some("cannot find change with id \"9\""));
    }

    #[test]
    fn file_errors_map_to_kinds() {
        let f = |kind: &str, msg: &str| Error::File {
            operation: "pull",
            path: "/x".into(),
            kind: Some(kind.into()),
            message: msg.into(),
        };
        assert_eq!(f("not-found", "nope").kind(), ErrorKind::NotFound);
        assert_eq!(f("permission-denied", "no").kind(), ErrorKind::Forbidden);
        assert_eq!(
            f("generic-file-error", "mkdir /x: file exists").kind(),
            ErrorKind::Conflict
        );
        assert_eq!(f("generic-file-error", "other").kind(), ErrorKind::Other);
    }
}
