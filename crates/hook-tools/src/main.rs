//! The multi-call hook-tool client: `is-leader`, `relation-get`, ... are symlinks to this
//! binary. It forwards the call to the agent named by `JUJU_AGENT_SOCKET_ADDRESS` and
//! reproduces the agent's stdout, stderr and exit code, as Juju's `jujuc` does.
//!
//! Invoked as `hook-tools` itself: `hook-tools <tool> [args...]` runs a tool,
//! `hook-tools commit|abort` ends the context in `JUJU_CONTEXT_ID` (what Juju's uniter does
//! when the hook process exits), and `hook-tools --list` prints the tool names.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use hook_tools::{
    CONTEXT_ENV, Message, NETWORK_ENV, Response, SOCKET_ENV, TOOLS, ToolRequest, file_args,
    read_frame, reads_stdin, write_frame,
};

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let called_as = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (command, args) = if TOOLS.contains(&called_as.as_str()) {
        (called_as, argv.split_off(1))
    } else {
        match argv.get(1).map(String::as_str) {
            Some("--list") => {
                for t in TOOLS {
                    println!("{t}");
                }
                return ExitCode::SUCCESS;
            }
            Some(end @ ("commit" | "abort")) => return end_context(end == "commit"),
            Some(tool) if TOOLS.contains(&tool) => {
                let tool = tool.to_string();
                (tool, argv.split_off(2))
            }
            other => {
                eprintln!(
                    "ERROR {}: unknown hook tool {:?}; run as one of its symlinks ({}) or as `hook-tools <tool> ...`",
                    called_as,
                    other.unwrap_or(""),
                    TOOLS.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    match run(command, args) {
        Ok(resp) => {
            // Print exactly what the agent produced; the exit code carries the outcome.
            let _ = std::io::stdout().write_all(resp.stdout.as_bytes());
            let _ = std::io::stderr().write_all(resp.stderr.as_bytes());
            ExitCode::from(u8::try_from(resp.code).unwrap_or(1))
        }
        Err(message) => {
            eprintln!("ERROR {message}");
            ExitCode::from(1)
        }
    }
}

fn env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "{name} is not set: hook tools only work inside a hook run by the Juju agent (or its stand-in)"
        )),
    }
}

fn connect() -> Result<UnixStream, String> {
    if let Ok(net) = std::env::var(NETWORK_ENV)
        && !net.is_empty()
        && net != "unix"
    {
        return Err(format!(
            "{NETWORK_ENV}={net:?} is not supported (only \"unix\")"
        ));
    }
    let path = env(SOCKET_ENV)?;
    UnixStream::connect(&path).map_err(|e| format!("cannot reach the Juju agent at {path}: {e}"))
}

fn call(message: &Message) -> Result<Response, String> {
    let mut stream = connect()?;
    write_frame(&mut stream, message)
        .map_err(|e| format!("sending the request to the Juju agent: {e}"))?;
    read_frame(&mut stream).map_err(|e| format!("reading the Juju agent's answer: {e}"))
}

fn run(command: String, args: Vec<String>) -> Result<Response, String> {
    let context_id = env(CONTEXT_ENV)?;
    let dir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    // Juju's client first calls without stdin and retries with it when the command asks;
    // only `--file -` reads stdin here, so read it exactly then and never block otherwise.
    let stdin = if reads_stdin(&args) {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading standard input: {e}"))?;
        Some(s)
    } else {
        None
    };
    let mut files = std::collections::BTreeMap::new();
    for path in file_args(&args) {
        let content =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        files.insert(path, content);
    }
    call(&Message::Tool(ToolRequest {
        context_id,
        dir,
        command,
        args,
        stdin,
        files,
    }))
}

fn end_context(commit: bool) -> ExitCode {
    let result = env(CONTEXT_ENV).and_then(|context_id| {
        call(&if commit {
            Message::Commit { context_id }
        } else {
            Message::Abort { context_id }
        })
    });
    match result {
        Ok(resp) => {
            let _ = std::io::stdout().write_all(resp.stdout.as_bytes());
            let _ = std::io::stderr().write_all(resp.stderr.as_bytes());
            ExitCode::from(u8::try_from(resp.code).unwrap_or(1))
        }
        Err(message) => {
            eprintln!("ERROR {message}");
            ExitCode::from(1)
        }
    }
}
