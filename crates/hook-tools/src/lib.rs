//! The wire protocol between the hook-tool client binary and the agent that answers it.
//!
//! Juju's design, copied: every hook tool (`is-leader`, `relation-get`, ...) is one binary
//! reached through a symlink per tool name. The client does no work of its own; it forwards
//! the tool name, its arguments, the working directory, standard input when the tool reads
//! it, and the hook's context id to the unit agent over a socket named by
//! `JUJU_AGENT_SOCKET_ADDRESS`, then prints the agent's stdout and stderr and exits with its
//! code. Juju's `jujuc.Request`/`ExecResponse` pair carries the same fields.
//!
//! Framing: each message is a 4-byte big-endian length followed by that many bytes of JSON.
//! One request and one response per connection.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The agent socket path (Juju: `JUJU_AGENT_SOCKET_ADDRESS`).
pub const SOCKET_ENV: &str = "JUJU_AGENT_SOCKET_ADDRESS";
/// The socket network; only `unix` is supported (Juju: `JUJU_AGENT_SOCKET_NETWORK`).
pub const NETWORK_ENV: &str = "JUJU_AGENT_SOCKET_NETWORK";
/// The hook context the call belongs to (Juju: `JUJU_CONTEXT_ID`).
pub const CONTEXT_ENV: &str = "JUJU_CONTEXT_ID";

/// Largest message accepted in either direction.
pub const MAX_FRAME: usize = 64 << 20;

/// Every tool name the client answers to (one symlink each).
pub const TOOLS: &[&str] = &[
    "action-fail",
    "action-get",
    "action-log",
    "action-set",
    "application-version-set",
    "close-port",
    "config-get",
    "goal-state",
    "is-leader",
    "juju-log",
    "open-port",
    "opened-ports",
    "relation-get",
    "relation-ids",
    "relation-list",
    "relation-set",
    "secret-add",
    "secret-get",
    "secret-info-get",
    "secret-remove",
    "secret-set",
    "state-delete",
    "state-get",
    "state-set",
    "status-get",
    "status-set",
];

/// One hook-tool invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRequest {
    pub context_id: String,
    /// The client's working directory (relative paths in arguments are relative to it).
    pub dir: String,
    /// The tool name, e.g. `relation-get`.
    pub command: String,
    /// The arguments after the tool name, exactly as given.
    pub args: Vec<String>,
    /// Standard input, when an argument reads it (`--file -`).
    pub stdin: Option<String>,
    /// Contents of the files the arguments name (`key#file=PATH`, `--file PATH`), keyed by
    /// PATH exactly as written. The agent shares the charm's filesystem in Juju; here it
    /// may not, so the client reads them.
    pub files: BTreeMap<String, String>,
}

/// What a client can ask of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    Tool(ToolRequest),
    /// The hook exited 0: make its writes durable (Juju's uniter does this itself).
    Commit {
        context_id: String,
    },
    /// The hook failed: drop its writes.
    Abort {
        context_id: String,
    },
}

/// The agent's answer: what the tool prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Response {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Response {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// A failed command, printed the way Juju's tools print errors (`ERROR <message>`, exit 1).
    pub fn error(message: impl std::fmt::Display) -> Self {
        Response {
            code: 1,
            stdout: String::new(),
            stderr: format!("ERROR {message}\n"),
        }
    }

    /// Bad usage (unknown flag, missing argument): exit 2, as Juju's command framework does.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Response {
            code: 2,
            stdout: String::new(),
            stderr: format!("ERROR {message}\n"),
        }
    }
}

/// Write one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes exceeds the {MAX_FRAME}-byte limit",
                body.len()
            ),
        ));
    }
    w.write_all(&(body.len() as u32).to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Read one frame.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decode a frame body already read (for async servers that read the bytes themselves).
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Encode a frame (length prefix included).
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The file paths an argument list reads: `key#file=PATH` values and `--file PATH` /
/// `--file=PATH` (except `-`, which is standard input).
pub fn file_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--file" {
            if let Some(p) = it.next()
                && p != "-"
            {
                out.push(p.clone());
            }
        } else if let Some(p) = a.strip_prefix("--file=") {
            if p != "-" {
                out.push(p.to_string());
            }
        } else if !a.starts_with('-')
            && let Some((_, p)) = a.split_once("#file=")
        {
            out.push(p.to_string());
        }
    }
    out
}

/// Whether the arguments read standard input (`--file -`).
pub fn reads_stdin(args: &[String]) -> bool {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => return false,
            "--file=-" => return true,
            "--file" if it.next().map(String::as_str) == Some("-") => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_file_arguments() {
        assert_eq!(
            file_args(&v(&[
                "--owner",
                "unit",
                "a#file=/t/a",
                "b=c",
                "--file",
                "x.yaml"
            ])),
            v(&["/t/a", "x.yaml"])
        );
        assert_eq!(
            file_args(&v(&["--file", "-", "--", "k#file=/nope"])),
            Vec::<String>::new()
        );
        assert!(reads_stdin(&v(&["-r", "db:1", "--file", "-"])));
        assert!(reads_stdin(&v(&["--file=-"])));
        assert!(!reads_stdin(&v(&["--", "--file", "-"])));
    }

    #[test]
    fn frames_round_trip() {
        let m = Message::Commit {
            context_id: "c".into(),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &m).unwrap();
        assert_eq!(buf, encode(&m).unwrap());
        let back: Message = read_frame(&mut &buf[..]).unwrap();
        assert_eq!(back, m);
    }
}
