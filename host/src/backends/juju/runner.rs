//! Running one hook tool: a subprocess with ops' exact argv and stdin, and its failure mapped
//! to the contract's error kinds the way ops maps it to exceptions.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::bindings::Error;

/// One hook-tool call as made (for call counting and tests). Arguments are recorded as
/// passed: secret content never appears in them (it travels in `#file=` temp files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub tool: String,
    pub args: Vec<String>,
    /// Exit code; -1 when the process could not be started or was killed by a signal.
    pub code: i32,
}

/// Where the hook tools are and what environment they get.
///
/// Juju puts its tool symlinks in a directory on the hook's `PATH` and passes
/// `JUJU_AGENT_SOCKET_ADDRESS` and `JUJU_CONTEXT_ID` in the environment, so by default the
/// tools are looked up on `PATH` and inherit this process's environment.
pub struct ToolRunner {
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    count: AtomicUsize,
    log: Mutex<Vec<ToolCall>>,
}

/// A failed tool call: its exit code and stderr (kept whole for the error message).
#[derive(Debug, Clone)]
pub struct ToolFailure {
    pub tool: String,
    pub code: i32,
    pub stderr: String,
    /// The process could not be started at all.
    pub not_started: bool,
}

impl ToolRunner {
    /// Tools found on `PATH`, this process's environment (production).
    pub fn from_path() -> Self {
        ToolRunner {
            dir: None,
            env: Vec::new(),
            count: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Tools in `dir` (one symlink per tool name).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ToolRunner {
            dir: Some(dir.into()),
            ..Self::from_path()
        }
    }

    /// Add an environment variable for the tools (e.g. the agent socket in tests).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Number of tool processes started so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<ToolCall> {
        self.log.lock().unwrap().clone()
    }

    /// Run `tool args...` with `stdin`, returning its stdout on exit 0.
    pub async fn run(
        &self,
        tool: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<String, ToolFailure> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let program = match &self.dir {
            Some(d) => d.join(tool),
            None => PathBuf::from(tool),
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The runtime's per-call timeout drops this future; take the process with it.
            .kill_on_drop(true);
        let record = |code: i32| {
            self.log.lock().unwrap().push(ToolCall {
                tool: tool.to_string(),
                args: args.to_vec(),
                code,
            })
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                record(-1);
                let stderr = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "hook tool {} not found ({e}): is this running inside a Juju hook, with the tools on PATH?",
                        program.display()
                    )
                } else {
                    format!("cannot start hook tool {}: {e}", program.display())
                };
                return Err(ToolFailure {
                    tool: tool.to_string(),
                    code: 127,
                    stderr,
                    not_started: true,
                });
            }
        };
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A tool that exits without reading its input is reported by its exit code.
            let _ = pipe.write_all(input.as_bytes()).await;
            drop(pipe);
        }
        let out = child.wait_with_output().await.map_err(|e| {
            record(-1);
            ToolFailure {
                tool: tool.to_string(),
                code: -1,
                stderr: format!("waiting for hook tool {tool}: {e}"),
                not_started: false,
            }
        })?;
        let code = out.status.code().unwrap_or(-1);
        record(code);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let stderr = if stderr.trim().is_empty() {
                format!("exited with {}", out.status)
            } else {
                stderr
            };
            return Err(ToolFailure {
                tool: tool.to_string(),
                code,
                stderr,
                not_started: false,
            });
        }
        String::from_utf8(out.stdout).map_err(|_| ToolFailure {
            tool: tool.to_string(),
            code,
            stderr: "the tool printed non-UTF-8 output".into(),
            not_started: false,
        })
    }
}

impl ToolFailure {
    /// The contract's error, classified as ops classifies `hookcmds.Error`
    /// (`model._wrap_hookcmd`): "relation not found" → not-found; "permission denied" on a
    /// relation read → forbidden; "not found" from a `secret-*` tool → not-found. Beyond ops,
    /// which has no typed kinds for them: leadership and permission refusals elsewhere →
    /// forbidden, "already exists" (a secret label taken) → conflict, and a missing tool →
    /// unreachable (no agent to talk to). The stderr is kept.
    pub fn to_error(&self) -> Error {
        let stderr = self.stderr.trim();
        let message = format!("{} failed (exit {}): {}", self.tool, self.code, stderr);
        let lower = stderr.to_lowercase();
        if self.not_started {
            return Error::unreachable(message);
        }
        if lower.contains("relation not found") {
            return Error::not_found(message);
        }
        if self.tool.starts_with("relation-") && lower.contains("permission denied") {
            return Error::forbidden(message);
        }
        if self.tool.starts_with("secret-") && lower.contains("not found") {
            return Error::not_found(message);
        }
        if lower.contains("permission denied") || lower.contains("not the leader") {
            return Error::forbidden(message);
        }
        if lower.contains("already exists") {
            return Error::conflict(message);
        }
        Error::other(message)
    }
}
