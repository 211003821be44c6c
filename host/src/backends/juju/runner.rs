//! Running one hook tool: a subprocess with ops' exact argv and stdin, and its failure mapped
//! to the contract's error kinds the way ops maps it to exceptions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    count: Arc<AtomicUsize>,
    log: Mutex<Vec<ToolCall>>,
    /// Reads planned by [`ToolRunner::prefetch`] and not yet asked for, by exact argv.
    ahead: Arc<Mutex<Ahead>>,
}

type Key = (String, Vec<String>);

/// The reads started ahead: a queue in the plan's order, worked by a few threads.
#[derive(Default)]
struct Ahead {
    queue: std::collections::VecDeque<Key>,
    slots: HashMap<Key, Slot>,
}

enum Slot {
    /// Not started yet: whoever asks first makes the call live.
    Queued,
    /// Running on a worker; its output arrives here (an error: it could not be started).
    /// Dropping the slot before the answer kills the process.
    Running(
        tokio::sync::oneshot::Receiver<std::io::Result<std::process::Output>>,
        KillUnlessAnswered,
    ),
}

/// A read started ahead, as its worker and whoever waits for it share it.
#[derive(Default)]
struct Started {
    /// The running process (a pidfd: a signal through it cannot reach a recycled pid).
    pidfd: Option<std::os::fd::OwnedFd>,
    /// Nobody will take the answer: the worker kills the process as soon as it starts.
    abandoned: bool,
}

/// Kills a read's process when it is dropped before the answer was taken: the per-call
/// timeout dropped the waiting call (a hung agent), a write discarded the read as stale, or
/// the runner went away. Without it a hung tool process outlived the call that gave up on it.
struct KillUnlessAnswered {
    started: Arc<Mutex<Started>>,
    armed: bool,
}

impl KillUnlessAnswered {
    fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for KillUnlessAnswered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut s = self.started.lock().unwrap();
        s.abandoned = true;
        if let Some(fd) = s.pidfd.take() {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid pidfd, no siginfo, no flags. After the worker reaps the
            // process the pidfd names no process and the call fails with ESRCH.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
    }
}

/// A pidfd for a child not yet waited for (so the pid cannot have been recycled); `None` on
/// a kernel without `pidfd_open` (before Linux 5.3), where abandoned reads run to their end.
fn pidfd_of(child: &std::process::Child) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// At most this many reads are started ahead of a dispatch: a bound on speculation.
pub const MAX_PREFETCH: usize = 32;

/// Reads started ahead run this many at a time (see [`ToolRunner::prefetch`]). On the
/// project's 2-core VM a whole leader-elected dispatch took the same time with 2, 3, 4 or
/// 32 (all at once) and 3 ms longer with 1; 4 leaves room for more cores.
pub const AHEAD_WORKERS: usize = 4;

/// Whether `tool args` only reads, so that running it early (or not at all) changes nothing
/// Juju keeps: the tools below answer from the hook context without side effects.
/// `secret-get` qualifies only by label, without `--refresh`/`--peek` (those move the
/// tracked revision) and without a secret id (a consumer's first read by id records the
/// consumption, and `--label` with an id sets the label).
pub fn is_read(tool: &str, args: &[String]) -> bool {
    match tool {
        "is-leader" | "config-get" | "relation-ids" | "relation-list" | "relation-get"
        | "state-get" | "goal-state" | "opened-ports" | "action-get" | "status-get"
        | "secret-info-get" => true,
        "secret-get" => {
            let mut it = args.iter();
            let mut labelled = false;
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--format=json" => {}
                    "--label" => labelled = it.next().is_some(),
                    _ => return false,
                }
            }
            labelled
        }
        _ => false,
    }
}

/// The group of Juju state a tool reads or writes: a write discards the prefetched reads of
/// its group, which could now be stale (`secret-add` then `secret-get` of that label).
fn group(tool: &str) -> &str {
    match tool {
        "open-port" | "close-port" | "opened-ports" => "ports",
        _ => tool.split('-').next().unwrap_or(tool),
    }
}

/// Where `tool` is: in `dir`, or looked up on `PATH`.
fn program(dir: Option<&std::path::Path>, tool: &str) -> PathBuf {
    match dir {
        Some(d) => d.join(tool),
        None => PathBuf::from(tool),
    }
}

/// `tool args...` as every call runs it: the runner's environment, output captured, standard
/// input piped only for the tools that read it.
fn tool_command(
    dir: Option<&std::path::Path>,
    env: &[(String, String)],
    tool: &str,
    args: &[String],
    piped_stdin: bool,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(program(dir, tool));
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
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

/// Reads never asked for are not wanted any more: the queued ones are not started and the
/// running ones are killed (their workers hold the queue, so it would outlive the runner).
impl Drop for ToolRunner {
    fn drop(&mut self) {
        let mut a = self.ahead.lock().unwrap();
        a.queue.clear();
        a.slots.clear();
    }
}

impl ToolRunner {
    /// Tools found on `PATH`, this process's environment (production).
    pub fn from_path() -> Self {
        ToolRunner {
            dir: None,
            env: Vec::new(),
            count: Arc::new(AtomicUsize::new(0)),
            log: Mutex::new(Vec::new()),
            ahead: Arc::new(Mutex::new(Ahead::default())),
        }
    }

    /// Tools in `dir` (one symlink per tool name).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let mut runner = Self::from_path();
        runner.dir = Some(dir.into());
        runner
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

    /// Every read in the log that completed (whatever its exit code), oldest first, each
    /// once: what the next dispatch of the same hook is likely to ask again.
    pub fn reads(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for c in self.log.lock().unwrap().iter() {
            if c.code >= 0
                && is_read(&c.tool, &c.args)
                && !out.iter().any(|(t, a)| *t == c.tool && *a == c.args)
            {
                out.push((c.tool.clone(), c.args.clone()));
            }
        }
        out
    }

    /// Start these reads now, so that their process starts and agent round trips overlap each
    /// other and the host's own start instead of queueing behind the plugin's calls. A later
    /// [`ToolRunner::run`] with the same argv takes the started process's answer, which is the
    /// one it would have got: hook-context reads have no side effects and Juju answers them
    /// the same throughout the hook (leadership for its 30 s lease). Only [`is_read`] calls are
    /// started, at most [`MAX_PREFETCH`]. Each counts as a call.
    ///
    /// They run in the given order (the order the last dispatch asked them in), a few at a
    /// time: [`AHEAD_WORKERS`] threads each start one read and wait for it before the next,
    /// so the first read the plugin needs is answered first (started all at once, a dozen
    /// tool processes shared two cores and the first answer came after 5.4 ms instead of
    /// about 1) and speculation is bounded. A read still queued when the plugin asks for it is
    /// made live at once. Threads, not tasks: starting a process blocks its caller until the
    /// child has exec'd (posix_spawn's vfork), about a millisecond on a small VM.
    pub fn prefetch(&self, reads: &[(String, Vec<String>)]) {
        let mut ahead = self.ahead.lock().unwrap();
        for (tool, args) in reads {
            if ahead.slots.len() >= MAX_PREFETCH {
                break;
            }
            let key = (tool.clone(), args.clone());
            if !is_read(tool, args) || ahead.slots.contains_key(&key) {
                continue;
            }
            ahead.queue.push_back(key.clone());
            ahead.slots.insert(key, Slot::Queued);
        }
        let workers = AHEAD_WORKERS.min(ahead.queue.len());
        drop(ahead);
        for _ in 0..workers {
            let (queue, count) = (self.ahead.clone(), self.count.clone());
            let (dir, env) = (self.dir.clone(), self.env.clone());
            // No thread, fewer reads ahead: the live calls make the rest.
            let _ = std::thread::Builder::new()
                .name("hook-tool-read".into())
                .stack_size(64 << 10)
                .spawn(move || Self::work_ahead(&queue, &count, dir.as_deref(), &env));
        }
    }

    /// One worker of [`ToolRunner::prefetch`]: the next queued read, until none is left.
    fn work_ahead(
        ahead: &Mutex<Ahead>,
        count: &AtomicUsize,
        dir: Option<&std::path::Path>,
        env: &[(String, String)],
    ) {
        loop {
            let (key, tx, started) = {
                let mut a = ahead.lock().unwrap();
                let Some(key) = a.queue.pop_front() else {
                    return;
                };
                // Asked for already (made live), or discarded by a write: skip it.
                if !matches!(a.slots.get(&key), Some(Slot::Queued)) {
                    continue;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                let started = Arc::new(Mutex::new(Started::default()));
                let kill = KillUnlessAnswered {
                    started: started.clone(),
                    armed: true,
                };
                a.slots.insert(key.clone(), Slot::Running(rx, kill));
                (key, tx, started)
            };
            let (tool, args) = &key;
            let out = tool_command(dir, env, tool, args, false)
                .spawn()
                .and_then(|mut child| {
                    count.fetch_add(1, Ordering::SeqCst);
                    {
                        let mut s = started.lock().unwrap();
                        if s.abandoned {
                            let _ = child.kill();
                        } else {
                            s.pidfd = pidfd_of(&child);
                        }
                    }
                    child.wait_with_output()
                });
            // Reaped: nothing left to kill.
            started.lock().unwrap().pidfd = None;
            // Nobody waiting (discarded as stale, or given up on): the answer is dropped.
            let _ = tx.send(out);
        }
    }

    fn program(&self, tool: &str) -> PathBuf {
        program(self.dir.as_deref(), tool)
    }

    fn command(&self, tool: &str, args: &[String], piped_stdin: bool) -> tokio::process::Command {
        let mut cmd: tokio::process::Command =
            tool_command(self.dir.as_deref(), &self.env, tool, args, piped_stdin).into();
        // The runtime's per-call timeout drops this future; take the process with it.
        cmd.kill_on_drop(true);
        cmd
    }

    /// Run `tool args...` with `stdin`, returning its stdout on exit 0.
    pub async fn run(
        &self,
        tool: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<String, ToolFailure> {
        let asked = std::time::Instant::now();
        let record = |code: i32| {
            tracing::debug!(
                "hook tool {tool} exited {code} after {:.1} ms",
                asked.elapsed().as_secs_f64() * 1e3
            );
            self.log.lock().unwrap().push(ToolCall {
                tool: tool.to_string(),
                args: args.to_vec(),
                code,
            })
        };
        let early = if stdin.is_none() {
            match self
                .ahead
                .lock()
                .unwrap()
                .slots
                .remove(&(tool.to_string(), args.to_vec()))
            {
                Some(Slot::Running(rx, kill)) => Some((rx, kill)),
                // Still queued: made live now (the workers skip it).
                Some(Slot::Queued) | None => None,
            }
        } else {
            None
        };
        if early.is_none() && !is_read(tool, args) {
            // A read of what this write changes could be stale: not used (one still running
            // finishes unread).
            let g = group(tool);
            self.ahead
                .lock()
                .unwrap()
                .slots
                .retain(|(t, _), _| group(t) != g);
        }
        let answered = match early {
            // If this call is dropped while it waits (the per-call timeout), `kill` goes
            // with it and takes the process.
            Some((rx, kill)) => {
                let out = rx.await;
                kill.answered();
                out.ok().and_then(Result::ok)
            }
            None => None,
        };
        let out = match answered {
            Some(out) => out,
            // Not started ahead, or its process could not start: made live, so that a
            // failure is reported as any call's is.
            None => self.live(tool, args, stdin, &record).await?,
        };
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

    /// Start `tool args...` now, feed it `stdin`, and collect its output.
    async fn live(
        &self,
        tool: &str,
        args: &[String],
        stdin: Option<&str>,
        record: &impl Fn(i32),
    ) -> Result<std::process::Output, ToolFailure> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let spawned = self.command(tool, args, stdin.is_some()).spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                record(-1);
                let stderr = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "hook tool {} not found ({e}): is this running inside a Juju hook, with the tools on PATH?",
                        self.program(tool).display()
                    )
                } else {
                    format!(
                        "cannot start hook tool {}: {e}",
                        self.program(tool).display()
                    )
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
        child.wait_with_output().await.map_err(|e| {
            record(-1);
            ToolFailure {
                tool: tool.to_string(),
                code: -1,
                stderr: format!("waiting for hook tool {tool}: {e}"),
                not_started: false,
            }
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
