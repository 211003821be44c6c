//! Running commands: `POST /v1/exec`, then the task's websockets for I/O.
//!
//! Protocol (Pebble's `cmdstate`): the exec call returns a change and a task id. The client
//! opens `control`, `stdio` and (with split stderr) `stderr` websockets on
//! `/v1/tasks/{task}/websocket/{name}`; Pebble starts the process once the I/O sockets are
//! connected. Binary frames carry data; a text frame `{"command":"end"}` ends a stream, in
//! either direction. The exit code is the task's `exit-code` once the change is ready.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::client::{Call, Client, RawResponse, check_id, connection_error, decode_envelope};
use crate::error::{Error, Result};
use crate::types::{ExecOutput, ExecRequest, GoDuration};

type Ws = WebSocketStream<UnixStream>;

/// The end-of-stream barrier.
const END: &str = r#"{"command":"end"}"#;
/// Stdin frame size; Pebble reads frames whole, so keep them modest.
const STDIN_CHUNK: usize = 64 * 1024;
/// Extra time, past the command's own timeout, for Pebble to kill it and report.
const EXEC_WAIT_GRACE: Duration = Duration::from_secs(5);
/// Pebble flushes all output before the change is ready; this bounds the wait for it to
/// arrive once the change is.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(5);

impl Client {
    /// Runs a command to completion, feeding it `request.stdin` and collecting stdout and
    /// stderr separately.
    ///
    /// A non-zero exit is `Ok` (see [`ExecOutput::check`]); a command killed by
    /// `request.timeout` is an error of kind `Timeout`. Dropping the future closes the
    /// control websocket abnormally, which makes Pebble kill the command.
    pub async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        if request.command.first().is_none_or(String::is_empty) {
            return Err(Error::InvalidArgument(
                "exec needs a non-empty command".into(),
            ));
        }
        let op = format!("exec {:?}", request.command);
        let (change_id, result) = self
            .async_call(Call::post_json("/v1/exec", &exec_body(request)))
            .await?;
        let task_id = result
            .get("task-id")
            .and_then(Value::as_str)
            .filter(|id| check_id("task id", id).is_ok())
            .ok_or_else(|| Error::Protocol {
                operation: op.clone(),
                detail: format!("exec result has no usable task-id: {result}"),
            })?
            .to_owned();

        // Held until the end: closing it early (without a close frame) makes Pebble SIGKILL
        // the command.
        let control = self.websocket(&task_id, "control").await?;
        let stdio = self.websocket(&task_id, "stdio").await?;
        let stderr = self.websocket(&task_id, "stderr").await?;
        let (stdin_tx, stdout_rx) = stdio.split();

        let stdin = request.stdin.clone().unwrap_or_default();
        // Feeding stdin is best effort: a command that exits without reading it must not
        // stall the call, so only the output streams are waited for.
        let feed = async move {
            if let Err(e) = feed_stdin(stdin_tx, &stdin).await {
                tracing::debug!(error = %e, "exec stdin not fully delivered");
            }
            std::future::pending::<()>().await
        };
        let outputs = async {
            let (out, err) = tokio::join!(
                read_output(stdout_rx, &op, "stdout"),
                read_output(stderr, &op, "stderr")
            );
            Ok::<_, Error>((out?, err?))
        };
        let io = async {
            tokio::select! {
                outputs = outputs => outputs,
                _ = feed => unreachable!("feed never completes"),
            }
        };

        let deadline = request.timeout.map(|t| {
            let total = t + EXEC_WAIT_GRACE;
            (Instant::now() + total, total)
        });
        let wait = self.wait_change_until(&change_id, deadline);
        tokio::pin!(io, wait);
        let (output, change) = tokio::select! {
            output = &mut io => (output, (&mut wait).await),
            change = &mut wait => {
                let output = match tokio::time::timeout(OUTPUT_DRAIN_GRACE, &mut io).await {
                    Ok(output) => output,
                    Err(_) => Err(Error::Protocol {
                        operation: op.clone(),
                        detail: "output streams did not end after the command finished".into(),
                    }),
                };
                (output, change)
            }
        };
        drop(control);
        let change = change?;

        if let Some(err) = &change.err {
            if let Some(t) = request.timeout
                && err.contains("timed out")
            {
                return Err(Error::Timeout {
                    operation: op.clone(),
                    after: t,
                });
            }
            return Err(Error::Change {
                change: Box::new(change),
            });
        }
        let (stdout, stderr) = output?;
        let exit_code = change
            .tasks
            .first()
            .and_then(|t| t.data.get("exit-code"))
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .ok_or_else(|| Error::Protocol {
                operation: op.clone(),
                detail: format!("exec change {} has no exit-code", change.id),
            })?;
        Ok(ExecOutput {
            command: request.command.clone(),
            exit_code,
            stdout,
            stderr,
        })
    }

    /// Opens one of a task's websockets.
    async fn websocket(&self, task_id: &str, name: &str) -> Result<Ws> {
        let path = format!("/v1/tasks/{task_id}/websocket/{name}");
        let op = format!("GET {path}");
        let stream = self.connect().await?;
        let handshake = client_async(format!("ws://localhost{path}"), stream);
        match tokio::time::timeout(self.request_timeout(), handshake).await {
            Err(_) => Err(Error::Timeout {
                operation: op,
                after: self.request_timeout(),
            }),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) => {
                // Pebble explains a refused upgrade in its usual JSON envelope.
                let raw = RawResponse {
                    status: response.status(),
                    content_type: response
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: response.body().clone().unwrap_or_default().into(),
                };
                decode_envelope(&op, &raw)?;
                Err(Error::Protocol {
                    operation: op,
                    detail: format!("websocket upgrade refused with HTTP {}", raw.status),
                })
            }
            Ok(Err(e)) => Err(connection_error(&op, e)),
        }
    }
}

fn exec_body(request: &ExecRequest) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("command".into(), request.command.clone().into());
    body.insert(
        "environment".into(),
        serde_json::to_value(&request.environment).unwrap_or_default(),
    );
    // Always split: callers get stdout and stderr apart.
    body.insert("split-stderr".into(), true.into());
    let mut opt = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            body.insert(key.into(), v);
        }
    };
    opt(
        "service-context",
        request.service_context.clone().map(Into::into),
    );
    opt("working-dir", request.working_dir.clone().map(Into::into));
    opt(
        "timeout",
        request.timeout.map(|t| GoDuration(t).to_string().into()),
    );
    opt("user", request.user.clone().map(Into::into));
    opt("user-id", request.user_id.map(Into::into));
    opt("group", request.group.clone().map(Into::into));
    opt("group-id", request.group_id.map(Into::into));
    Value::Object(body)
}

async fn feed_stdin(
    mut tx: futures_util::stream::SplitSink<Ws, Message>,
    data: &[u8],
) -> std::result::Result<(), tungstenite::Error> {
    for chunk in data.chunks(STDIN_CHUNK) {
        tx.send(Message::Binary(bytes::Bytes::copy_from_slice(chunk)))
            .await?;
    }
    // Always sent, even with no input, so the command sees end-of-file on stdin.
    tx.send(Message::Text(END.into())).await
}

/// Collects binary frames until the end barrier (or the socket closes, which Pebble's own
/// reader also treats as the end).
async fn read_output<S>(mut rx: S, op: &str, stream: &str) -> Result<Vec<u8>>
where
    S: Stream<Item = std::result::Result<Message, tungstenite::Error>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(message) = rx.next().await {
        match message {
            Ok(Message::Binary(data)) => out.extend_from_slice(&data),
            Ok(Message::Text(text)) => {
                let command = serde_json::from_str::<Value>(text.as_str())
                    .ok()
                    .and_then(|v| v.get("command").and_then(Value::as_str).map(str::to_owned));
                if command.as_deref() == Some("end") {
                    return Ok(out);
                }
                tracing::debug!(stream, text = text.as_str(), "ignoring unknown I/O command");
            }
            Ok(Message::Close(_)) => return Ok(out),
            Ok(_) => {}
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            ) => return Ok(out),
            Err(e) => return Err(connection_error(&format!("{op} ({stream})"), e)),
        }
    }
    Ok(out)
}
