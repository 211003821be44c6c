//! `k8s-standin`: runs the Kubernetes API stand-in as a process.
//!
//! ```text
//! k8s-standin --listen 127.0.0.1:6443 --kubeconfig /tmp/kubeconfig --namespace demo --seed-file objects.yaml
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_standin::{DenyRule, ServerOptions, StandIn, Store};

fn parse_deny(spec: &str) -> Result<DenyRule, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (verb, resource) = match parts.as_slice() {
        [verb, resource, ..] if parts.len() <= 4 => (*verb, *resource),
        _ => {
            return Err(format!(
                "expected VERB:RESOURCE[:NAMESPACE[:NAME]], got {spec:?}"
            ));
        }
    };
    if verb != "*" && !k8s_standin::VERBS.contains(&verb) {
        return Err(format!(
            "unknown verb {verb:?}; one of {:?} or *",
            k8s_standin::VERBS
        ));
    }
    let mut rule = DenyRule::new(verb, resource);
    if let Some(ns) = parts.get(2).filter(|s| !s.is_empty() && **s != "*") {
        rule = rule.in_namespace(*ns);
    }
    if let Some(name) = parts.get(3).filter(|s| !s.is_empty() && **s != "*") {
        rule = rule.named(*name);
    }
    Ok(rule)
}

/// A Kubernetes API server stand-in speaking the real REST/JSON protocol over plain HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this path.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Default namespace of the written kubeconfig's context.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// YAML file of objects to load before serving (`---`-separated, or `kind: List`).
    #[arg(long)]
    seed_file: Option<PathBuf>,
    /// Deny requests with 403, as RBAC would: `VERB:RESOURCE[:NAMESPACE[:NAME]]`, `*` wildcards
    /// allowed (e.g. `get:endpoints:default:kubernetes`). Repeatable.
    #[arg(long = "deny", value_parser = parse_deny)]
    deny: Vec<DenyRule>,
    /// Seconds between BOOKMARK events on watches that allow them.
    #[arg(long, default_value_t = 10)]
    bookmark_interval: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "k8s_standin=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let store = Arc::new(Store::new());
    if let Some(seed) = &args.seed_file {
        let n = k8s_standin::seed_from_file(&store, seed)?;
        tracing::info!(objects = n, file = %seed.display(), "seeded");
    }
    let options = ServerOptions {
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        ..Default::default()
    };
    let handle = StandIn::start_with(args.listen, store, options)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    for rule in args.deny {
        handle.controls().deny(rule);
    }
    if let Some(path) = &args.kubeconfig {
        handle
            .write_kubeconfig(path, &args.namespace)
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    // One machine-readable line so scripts using port 0 can find the server.
    println!("listening on {}", handle.url());
    // Stop on Ctrl-C or SIGTERM (what test harnesses and service managers send).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}
