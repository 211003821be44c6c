//! A stand-in for the Juju unit agent's hook-tool server, answering from a simulated world.
//!
//! No Juju controller can be installed where this project is built and tested, yet the
//! production Juju capability ([`crate::backends::juju::HookToolsJuju`]) must be exercised
//! through real processes. This is the agent half of Juju's design: the multi-call client
//! (`crates/hook-tools`, one symlink per tool) connects to the unix socket named by
//! `JUJU_AGENT_SOCKET_ADDRESS` and sends the tool name, its arguments, its stdin and the
//! contents of the files it names, under `JUJU_CONTEXT_ID`. Each context id gets one
//! [`UnitSession`] of the world, so writes stay pending exactly as in Juju until the hook's
//! context is committed (the hook exited 0) or aborted (it failed). Output, error text and
//! exit codes follow Juju's tools (`ERROR <message>` on stderr, exit 1; usage errors exit 2).
//!
//! ```no_run
//! # async fn demo(world: charm_host::world::World) -> anyhow::Result<()> {
//! let agent = charm_host::juju_standin::serve(world, "postgresql-k8s/0", "/tmp/agent.socket").await?;
//! // run a hook with agent.env("ctx-1") and the tool symlinks on PATH, then:
//! agent.commit("ctx-1").await?;
//! # Ok(()) }
//! ```

mod tools;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hook_tools::{Message, Response, ToolRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::capability::Juju;
use crate::world::{BagChange, UnitSession, World};

/// One tool call as the stand-in received it (tests assert on argv: secret content must
/// never be in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub context_id: String,
    pub command: String,
    pub args: Vec<String>,
    pub stdin: Option<String>,
    /// Paths of the files the arguments named (their content is not recorded).
    pub files: Vec<String>,
    pub code: i32,
}

type CommitHook = Box<dyn Fn(&World) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) world: World,
    pub(crate) unit: String,
    sessions: Mutex<HashMap<String, Arc<UnitSession>>>,
    finished: Mutex<HashSet<String>>,
    calls: Mutex<Vec<RecordedCall>>,
    on_commit: Option<CommitHook>,
}

/// A running stand-in agent. Dropping it stops serving.
pub struct JujuStandIn {
    inner: Arc<Inner>,
    socket: PathBuf,
    task: JoinHandle<()>,
}

/// Serve the hook tools of `unit` in `world` on the unix socket `socket` (created; a stale
/// socket file there is replaced). Must be called inside a tokio runtime.
pub async fn serve(
    world: World,
    unit: &str,
    socket: impl AsRef<Path>,
) -> anyhow::Result<JujuStandIn> {
    serve_with(world, unit, socket, None).await
}

/// Like [`serve`], calling `on_commit` with the world after every committed context (the
/// CLI writes the world file there).
pub async fn serve_with(
    world: World,
    unit: &str,
    socket: impl AsRef<Path>,
    on_commit: Option<CommitHook>,
) -> anyhow::Result<JujuStandIn> {
    if !world.state().units.contains_key(unit) {
        anyhow::bail!(
            "unit {unit} is not in the world (units: {:?})",
            world.state().units.keys().collect::<Vec<_>>()
        );
    }
    let socket = socket.as_ref().to_path_buf();
    if let Ok(meta) = std::fs::symlink_metadata(&socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                socket.display()
            );
        }
        std::fs::remove_file(&socket)?;
    }
    let listener = UnixListener::bind(&socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    let inner = Arc::new(Inner {
        world,
        unit: unit.to_string(),
        sessions: Mutex::new(HashMap::new()),
        finished: Mutex::new(HashSet::new()),
        calls: Mutex::new(Vec::new()),
        on_commit,
    });
    let task = tokio::spawn(accept_loop(listener, inner.clone()));
    Ok(JujuStandIn {
        inner,
        socket,
        task,
    })
}

async fn accept_loop(listener: UnixListener, inner: Arc<Inner>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, inner).await {
                        tracing::debug!("hook-tool connection ended with an error: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accepting a hook-tool connection failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(mut stream: UnixStream, inner: Arc<Inner>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    let response = if len > hook_tools::MAX_FRAME {
        Response::error(format!(
            "request of {len} bytes exceeds the {}-byte limit",
            hook_tools::MAX_FRAME
        ))
    } else {
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        match hook_tools::decode::<Message>(&body) {
            Ok(message) => inner.handle(message).await,
            Err(e) => Response::error(format!("malformed hook-tool request: {e}")),
        }
    };
    stream.write_all(&hook_tools::encode(&response)?).await?;
    stream.shutdown().await
}

impl Inner {
    async fn handle(&self, message: Message) -> Response {
        match message {
            Message::Tool(req) => {
                let response = match self.session(&req.context_id) {
                    Ok(session) => tools::run(self, &session, &req).await,
                    Err(r) => r,
                };
                self.record(&req, response.code);
                response
            }
            Message::Commit { context_id } => match self.commit(&context_id).await {
                Ok(_) => Response::ok(""),
                Err(e) => Response::error(format!("committing context {context_id}: {e:#}")),
            },
            Message::Abort { context_id } => {
                self.abort(&context_id);
                Response::ok("")
            }
        }
    }

    /// The context's session, opened on its first call. A finished context is refused, as
    /// Juju refuses tool calls once the hook's context is gone.
    fn session(&self, context_id: &str) -> Result<Arc<UnitSession>, Response> {
        if context_id.is_empty() {
            return Err(Response::error("JUJU_CONTEXT_ID is empty"));
        }
        if self.finished.lock().unwrap().contains(context_id) {
            return Err(Response::error(format!(
                "bad request: context {context_id:?} is finished (its hook has exited)"
            )));
        }
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .entry(context_id.to_string())
            .or_insert_with(|| self.world.session(&self.unit))
            .clone())
    }

    fn record(&self, req: &ToolRequest, code: i32) {
        self.calls.lock().unwrap().push(RecordedCall {
            context_id: req.context_id.clone(),
            command: req.command.clone(),
            args: req.args.clone(),
            stdin: req.stdin.clone(),
            files: req.files.keys().cloned().collect(),
            code,
        });
    }

    async fn commit(&self, context_id: &str) -> anyhow::Result<Vec<BagChange>> {
        self.finished.lock().unwrap().insert(context_id.to_string());
        let Some(session) = self.sessions.lock().unwrap().remove(context_id) else {
            return Ok(Vec::new());
        };
        session.commit().await?;
        if let Some(hook) = &self.on_commit {
            hook(&self.world);
        }
        Ok(session.committed_changes())
    }

    fn abort(&self, context_id: &str) {
        self.finished.lock().unwrap().insert(context_id.to_string());
        self.sessions.lock().unwrap().remove(context_id);
    }
}

impl JujuStandIn {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn world(&self) -> &World {
        &self.inner.world
    }

    /// The environment a hook needs to reach this agent under `context_id`.
    pub fn env(&self, context_id: &str) -> Vec<(String, String)> {
        vec![
            (
                hook_tools::SOCKET_ENV.to_string(),
                self.socket.display().to_string(),
            ),
            (hook_tools::NETWORK_ENV.to_string(), "unix".to_string()),
            (hook_tools::CONTEXT_ENV.to_string(), context_id.to_string()),
        ]
    }

    /// The hook of `context_id` succeeded: apply its writes to the world. Returns the
    /// databags that changed (what would fan out `relation-changed` to the other units).
    pub async fn commit(&self, context_id: &str) -> anyhow::Result<Vec<BagChange>> {
        self.inner.commit(context_id).await
    }

    /// The hook of `context_id` failed: drop its writes.
    pub fn abort(&self, context_id: &str) {
        self.inner.abort(context_id)
    }

    /// Every tool call received so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.calls.lock().unwrap().clone()
    }

    pub fn clear_calls(&self) {
        self.inner.calls.lock().unwrap().clear();
    }

    /// Stop serving and remove the socket file.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for JujuStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Make `dir` a Juju tools directory: one symlink per tool name to the multi-call
/// `hook_tools` binary (what Juju does for each unit's tools directory).
pub fn install_tools(hook_tools: &Path, dir: &Path) -> anyhow::Result<()> {
    let target = std::fs::canonicalize(hook_tools).map_err(|e| {
        anyhow::anyhow!(
            "hook-tools binary {}: {e} (build it with `cargo build -p hook-tools`)",
            hook_tools.display()
        )
    })?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the tools directory {}: {e}", dir.display()))?;
    for tool in hook_tools::TOOLS {
        let link = dir.join(tool);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link)?;
        }
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            anyhow::anyhow!(
                "cannot link {} -> {}: {e}",
                link.display(),
                target.display()
            )
        })?;
    }
    Ok(())
}

/// The line the stand-in prints after a hook it ran: how many hook-tool calls, and of which.
pub fn call_tally_line(calls: &[RecordedCall]) -> String {
    let mut by_tool: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in calls {
        *by_tool.entry(c.command.as_str()).or_default() += 1;
    }
    let by_tool: Vec<String> = by_tool
        .iter()
        .map(|(tool, n)| format!("{tool} x{n}"))
        .collect();
    format!(
        "charm-host juju-standin: {} hook-tool call(s): {}",
        calls.len(),
        by_tool.join(", ")
    )
}

/// The number of calls in a [`call_tally_line`] found in `output`.
pub fn parse_call_tally(output: &str) -> Option<usize> {
    output.lines().find_map(|l| {
        l.split("charm-host juju-standin: ")
            .nth(1)?
            .split(" hook-tool call(s)")
            .next()?
            .parse()
            .ok()
    })
}
