//! `charm-host`: the binary Juju runs for every hook. A thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use charm_host::backends::juju::{HookToolsJuju, ReadPlan};
use charm_host::bindings::{Event, EventKind};
use charm_host::dispatch::{Dispatcher, event_from_env};
use charm_host::runtime::{Limits, Runtime, RuntimeConfig};
use charm_host::world::World;

/// See the `mimalloc` dependency in Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "charm-host",
    version,
    about = "Runs the PostgreSQL K8s charm's hooks as sandboxed wasm plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax); also RUST_LOG. Default: info (fuzz: warn, and
    /// the plugins' own lines, target `plugin`, off).
    #[arg(long, global = true, env = "CHARM_HOST_LOG")]
    log: Option<String>,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Directory holding `<hook-or-action>.wasm` (default: $JUJU_CHARM_DIR/plugins, else target/plugins).
    #[arg(long, env = "CHARM_HOST_PLUGINS")]
    plugins: Option<PathBuf>,
    /// Compiled-code cache (default: $JUJU_CHARM_DIR/.cache/charm-host, else ~/.cache/charm-host).
    #[arg(long, env = "CHARM_HOST_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Linear memory cap per plugin, MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// Deadline on wasm execution per event, seconds (time in capability calls not counted).
    #[arg(long, default_value_t = 30.0)]
    wasm_deadline: f64,
    /// Bound on the whole event, seconds.
    #[arg(long, default_value_t = 900.0)]
    event_timeout: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Dispatch one Juju event (Juju's contract: JUJU_DISPATCH_PATH and JUJU_* variables).
    Dispatch {
        #[command(flatten)]
        common: Common,
        /// The simulated world to run against (a state file, updated in place or at --out).
        #[arg(long)]
        world: Option<PathBuf>,
        /// Where to write the world after the dispatch (default: the --world file).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The unit to dispatch on (default: $JUJU_UNIT_NAME, else the world's leader).
        #[arg(long)]
        unit: Option<String>,
        /// The hook or action name, instead of JUJU_DISPATCH_PATH (e.g. `leader-elected`, `actions/get-password`).
        #[arg(long)]
        event: Option<String>,
        /// Print each run's capability calls.
        #[arg(long)]
        trace: bool,
        /// Where the Juju capability comes from: the --world file, or Juju's hook tools on
        /// PATH (identity from JUJU_UNIT_NAME etc.; the other families still come from --world).
        #[arg(long, value_enum, default_value_t = JujuSource::World)]
        juju: JujuSource,
    },
    /// Serve Juju's hook tools for one unit from a simulated world (a stand-in for the unit
    /// agent). With a COMMAND, run it as a hook under a fresh context and commit the
    /// context's writes if it exits 0 (as Juju's uniter does); otherwise serve until
    /// interrupted, contexts ending through `hook-tools commit|abort`.
    JujuStandin {
        /// The world state file; updated after every committed context.
        #[arg(long)]
        world: PathBuf,
        /// Where to write the world instead of --world.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The unit whose tools to serve (default: the world's leader).
        #[arg(long)]
        unit: Option<String>,
        /// The agent socket to create (JUJU_AGENT_SOCKET_ADDRESS).
        #[arg(long)]
        socket: PathBuf,
        /// Create one symlink per hook tool here (and put it first on the COMMAND's PATH).
        #[arg(long)]
        tools_dir: Option<PathBuf>,
        /// The multi-call hook-tools binary (default: `hook-tools` beside this executable).
        #[arg(long)]
        hook_tools: Option<PathBuf>,
        /// Context id for COMMAND (default: `<unit>-<pid>-<time>`).
        #[arg(long)]
        context_id: Option<String>,
        /// The hook to run, e.g. `charm-host dispatch --juju hook-tools ...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run one event on one unit against a state file; print the trace, statuses and diff.
    Scenario {
        #[command(flatten)]
        common: Common,
        /// The input state (YAML, docs/STATE.md).
        #[arg(long)]
        state: PathBuf,
        /// The hook name, or `actions/<name>`.
        #[arg(long)]
        event: String,
        /// Where to write the output state.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The unit (default: the leader).
        #[arg(long)]
        unit: Option<String>,
        /// Relation id of a relation event (default: the first relation of that endpoint).
        #[arg(long)]
        relation_id: Option<u32>,
        #[arg(long)]
        remote_unit: Option<String>,
        #[arg(long)]
        departing_unit: Option<String>,
        #[arg(long)]
        secret_label: Option<String>,
        /// Print the result as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a whole deployment in the simulated world and print its timeline.
    Simulate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 3)]
        units: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run every seed of a range (`1..200`, inclusive) and print one verdict line each.
        #[arg(long, conflicts_with = "seed")]
        seeds: Option<String>,
        #[arg(long, value_enum, default_value = "deploy")]
        story: charm_host::simulate::Story,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Only the final table and verdict, not the timeline.
        #[arg(long)]
        quiet: bool,
        /// Faults (a YAML list, docs/STATE.md) active for the first --fault-window seconds.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Seconds of virtual time the faults stay active.
        #[arg(long, default_value_t = 900)]
        fault_window: u64,
    },
    /// Fuzz one plugin in isolation against generated worlds and injected faults.
    Fuzz {
        #[command(flatten)]
        common: Common,
        /// The hook plugin, e.g. leader-elected (not with --model).
        #[arg(long, required_unless_present = "model")]
        plugin: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, conflicts_with = "duration")]
        iterations: Option<u64>,
        /// How long to run, seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Where minimised reproductions are written.
        #[arg(long, default_value = "target/fuzz-failures")]
        out: PathBuf,
        /// Fuzz whole multi-unit stories with random fault schedules instead of one plugin.
        #[arg(long)]
        model: bool,
    },
    /// Measure the figures of docs/BENCHMARKS.md (use a release or PGO build).
    Bench {
        #[command(flatten)]
        common: Common,
        /// Plugins to measure (default: leader-elected and postgresql-pebble-ready).
        #[arg(long = "plugin", id = "plugin")]
        plugin_names: Vec<String>,
        /// Directory of `<plugin>.yaml` states to run them in.
        #[arg(long, default_value = "tests/data/bench")]
        states: PathBuf,
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
        /// Unit counts for the simulate figure.
        #[arg(long = "sim-units", default_values_t = vec![3, 10, 50])]
        sim_units: Vec<u32>,
        /// The binary whose whole-process `dispatch` is timed (default: this one). Give the
        /// packed charm's static host (`cargo xtask pack` builds it at
        /// target/<host triple>/release/charm-host) to time what Juju runs.
        #[arg(long)]
        dispatch_exe: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Compile every plugin into the cache ahead of the first hook.
    Precompile {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum JujuSource {
    World,
    HookTools,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Fuzzing runs thousands of executions a second: the plugins' own log lines are kept in
    // each execution's output (and a failure's reproduction replays them), and printing them
    // all cost more than the checks, and buried the progress lines.
    let default_log = match cli.command {
        Command::Fuzz { .. } => "warn,plugin=off",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(cli.log.as_deref().unwrap_or(default_log))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // One dispatch is one event on one thread: no worker threads to start (their stacks count
    // in the resident set). The long-running commands keep two workers.
    let one_shot = matches!(cli.command, Command::Dispatch { .. });
    let built = if one_shot {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("charm-host: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("charm-host: {e:#}");
            ExitCode::from(2)
        }
    };
    if one_shot {
        // No worker threads to join, nothing left to run: see `leave_for_exit`.
        leave_for_exit(rt);
    }
    code
}

fn charm_dir() -> Option<PathBuf> {
    std::env::var_os("JUJU_CHARM_DIR")
        .or_else(|| std::env::var_os("CHARM_DIR"))
        .map(PathBuf::from)
}

impl Common {
    fn plugins_dir(&self) -> PathBuf {
        self.plugins.clone().unwrap_or_else(|| match charm_dir() {
            Some(d) => d.join("plugins"),
            None => PathBuf::from("target/plugins"),
        })
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(|| match charm_dir() {
            Some(d) => Some(d.join(".cache/charm-host")),
            None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/charm-host")),
        })
    }

    fn runtime(&self, pooling: Pooling) -> anyhow::Result<Runtime> {
        let cache_dir = self.cache_dir();
        let limits = Limits {
            memory_bytes: self.memory_mib << 20,
            wasm_deadline: std::time::Duration::from_secs_f64(self.wasm_deadline),
            event_timeout: std::time::Duration::from_secs_f64(self.event_timeout),
            ..Limits::default()
        };
        Runtime::new(RuntimeConfig {
            limits,
            cache_dir,
            instance_pool: pooling == Pooling::Pooled,
        })
    }
}

/// Whether a command runs many events in one process (the pooling allocator pays off) or one
/// (`dispatch`, and `precompile`, which must configure the engine as `dispatch` does).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Pooled,
    OneEvent,
}

/// `leader-elected`, `hooks/leader-elected` or `actions/get-password` -> an event, reading the
/// event-specific JUJU_* variables as Juju would set them.
fn event_from_arg(arg: &str) -> anyhow::Result<Event> {
    let path = if arg.contains('/') {
        arg.to_string()
    } else {
        format!("hooks/{arg}")
    };
    let event = event_from_env(|k| {
        if k == "JUJU_DISPATCH_PATH" {
            Some(path.clone())
        } else {
            std::env::var(k).ok()
        }
    })?;
    Ok(event)
}

fn read_world(path: &Path) -> anyhow::Result<World> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read world state {}: {e}", path.display()))?;
    World::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("world state {} is invalid: {e}", path.display()))
}

/// Write atomically: a killed process leaves the old state or the new one, never half of one.
fn write_world(path: &Path, world: &World) -> anyhow::Result<()> {
    charm_host::crash::point("before-persist");
    let text = world.read(serde_yaml::to_string)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    charm_host::crash::point("mid-persist");
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Fuzz {
            common,
            plugin,
            seed,
            iterations,
            duration,
            out,
            model,
        } => {
            let runtime = common.runtime(Pooling::Pooled)?;
            let iterations = if iterations.is_none() && duration.is_none() {
                Some(1000)
            } else {
                iterations
            };
            let cfg = charm_host::fuzz::FuzzConfig {
                plugin: plugin.unwrap_or_default(),
                seed,
                iterations,
                duration: duration.map(std::time::Duration::from_secs_f64),
                plugins_dir: common.plugins_dir(),
                out_dir: out,
                progress: Some(std::time::Duration::from_secs(1)),
            };
            let cpu0 = charm_host::bench::cpu_time();
            let summary = if model {
                charm_host::fuzz::run_model(&runtime, &cfg).await?
            } else {
                charm_host::fuzz::run(&runtime, &cfg).await?
            };
            let cpu = charm_host::bench::cpu_time() - cpu0;
            // The per-core rate (docs/BENCHMARKS.md): CPU time, whatever else the machine runs.
            eprintln!(
                "fuzz: {:.2} s of CPU time, {:.0} {} per second per core",
                cpu.as_secs_f64(),
                summary.executions as f64 / cpu.as_secs_f64().max(1e-9),
                if model { "stories" } else { "executions" }
            );
            println!("{}", summary.line());
            Ok(if summary.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            common,
            plugin_names: plugins,
            states,
            iterations,
            sim_units,
            dispatch_exe,
            json,
        } => {
            let plugins = if plugins.is_empty() {
                vec![
                    "leader-elected".to_string(),
                    "postgresql-pebble-ready".to_string(),
                ]
            } else {
                plugins
            };
            let cfg = charm_host::bench::BenchConfig {
                plugins_dir: common.plugins_dir(),
                states_dir: states,
                plugins,
                iterations,
                exe: std::env::current_exe()?,
                dispatch_exe,
                sim_units,
            };
            let figures = charm_host::bench::run(&cfg).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                print!("{}", charm_host::bench::render(&figures));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            common,
            units,
            seed,
            seeds,
            story,
            json,
            quiet,
            faults,
            fault_window,
        } => {
            let runtime = common.runtime(Pooling::Pooled)?;
            if let Some(range) = seeds {
                let (a, b) = range
                    .split_once("..")
                    .and_then(|(a, b)| {
                        Some((
                            a.parse::<u64>().ok()?,
                            b.trim_start_matches('=').parse::<u64>().ok()?,
                        ))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("--seeds {range:?}: expected A..B, e.g. 1..200")
                    })?;
                let mut failed = Vec::new();
                for seed in a..=b {
                    let cfg = charm_host::simulate::SimConfig {
                        units,
                        seed,
                        story,
                        ..Default::default()
                    };
                    let r =
                        charm_host::simulate::Simulator::new(&runtime, common.plugins_dir(), cfg)
                            .run()
                            .await;
                    let verdict = r
                        .render()
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("story "))
                        .unwrap_or_default()
                        .to_string();
                    println!("{verdict}");
                    if !r.converged {
                        for w in r.not_converged.iter().chain(&r.violations) {
                            println!("    {w}");
                        }
                        failed.push(seed);
                    }
                }
                println!(
                    "{story:?}, {units} units, seeds {a}..={b}: {} converged, {} did not {failed:?}",
                    (b - a + 1) as usize - failed.len(),
                    failed.len()
                );
                return Ok(if failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let faults: Vec<charm_host::world::Fault> = match &faults {
                Some(f) => serde_yaml::from_str(
                    &std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("cannot read faults {}: {e}", f.display()))?,
                )
                .map_err(|e| anyhow::anyhow!("faults {} are invalid: {e}", f.display()))?,
                None => Vec::new(),
            };
            let cfg = charm_host::simulate::SimConfig {
                units,
                seed,
                story,
                faults,
                fault_window_ms: fault_window * 1000,
                ..Default::default()
            };
            let report = charm_host::simulate::Simulator::new(&runtime, common.plugins_dir(), cfg)
                .run()
                .await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if quiet {
                let text = report.render();
                let table = text
                    .split("\n\nunit")
                    .nth(1)
                    .map(|t| format!("unit{t}"))
                    .unwrap_or(text);
                print!("{table}");
            } else {
                print!("{}", report.render());
            }
            Ok(if report.converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Scenario {
            common,
            state,
            event,
            out,
            unit,
            relation_id,
            remote_unit,
            departing_unit,
            secret_label,
            json,
        } => {
            let text = std::fs::read_to_string(&state)
                .map_err(|e| anyhow::anyhow!("cannot read state {}: {e}", state.display()))?;
            let input: charm_host::world::WorldState = serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("state {} is invalid: {e}", state.display()))?;
            let unit_name = unit
                .clone()
                .or_else(|| input.leader.clone())
                .or_else(|| input.units.keys().next().cloned())
                .unwrap_or_default();
            let args = charm_host::scenario::EventArgs {
                relation_id,
                remote_unit,
                departing_unit,
                secret_label,
                secret_id: None,
            };
            let ev = charm_host::scenario::event_for(&input, &unit_name, &event, &args)?;
            let runtime = common.runtime(Pooling::Pooled)?;
            let result = charm_host::scenario::run(
                &runtime,
                &common.plugins_dir(),
                input,
                unit.as_deref(),
                ev,
                true,
            )
            .await?;
            if let Some(out) = &out {
                std::fs::write(out, serde_yaml::to_string(&result.output)?)?;
            }
            if json {
                let v = serde_json::json!({
                    "unit": result.unit,
                    "event": result.event.name,
                    "outcome": result.outcome(),
                    "status": result.status().to_string(),
                    "statuses": result.statuses.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    "trace": result.trace(),
                    "logs": result.logs,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} on {}: {}",
                    result.event.name,
                    result.unit,
                    result.outcome()
                );
                println!("trace:");
                for t in result.trace() {
                    println!("  {}.{}{} -> {}", t.family, t.call, t.args, t.result);
                }
                println!(
                    "statuses: {}",
                    result
                        .statuses
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                );
                for l in &result.logs {
                    println!("log {}: {}", l.level, l.message);
                }
                println!("state diff:\n{}", result.diff());
            }
            Ok(if result.result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Precompile { common } => {
            let runtime = common.runtime(Pooling::OneEvent)?;
            let dir = common.plugins_dir();
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).map_err(|e| {
                anyhow::anyhow!("cannot read plugins directory {}: {e}", dir.display())
            })? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                    continue;
                }
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let outcome = runtime
                    .precompile(&dir, &name)
                    .map_err(|f| anyhow::anyhow!("{name}: {f}"))?;
                println!("{name}: {outcome:?}");
                n += 1;
            }
            println!("precompiled {n} plugins");
            Ok(ExitCode::SUCCESS)
        }
        Command::JujuStandin {
            world,
            out,
            unit,
            socket,
            tools_dir,
            hook_tools,
            context_id,
            command,
        } => {
            juju_standin(
                world, out, unit, socket, tools_dir, hook_tools, context_id, command,
            )
            .await
        }
        Command::Dispatch {
            common,
            world,
            out,
            unit,
            event,
            trace,
            juju,
        } => {
            let event = match &event {
                Some(arg) => event_from_arg(arg)?,
                None => event_from_env(|k| std::env::var(k).ok())?,
            };
            // The hook tools first: the reads the last dispatch of this hook made start now
            // and overlap everything below (see backends::juju::ReadPlan).
            let hook_tools = match (&world, juju) {
                (None, _) | (Some(_), JujuSource::HookTools) => {
                    let juju = HookToolsJuju::from_env().map_err(|e| {
                        if world.is_none() {
                            e.context("the production backends need Juju's hook environment (or give --world)")
                        } else {
                            e
                        }
                    })?;
                    let juju = std::sync::Arc::new(juju);
                    let plan = common.cache_dir().map(|d| ReadPlan::new(&d, &event.name));
                    if let Some(p) = &plan {
                        juju.runner().prefetch(&p.load());
                    }
                    Some((juju, plan))
                }
                (Some(_), JujuSource::World) => None,
            };
            let keep_reads = || {
                if let Some((juju, Some(plan))) = &hook_tools {
                    plan.save(&juju.runner().reads());
                }
            };
            tracing::debug!("reads started");
            let runtime = common.runtime(Pooling::OneEvent)?;
            tracing::debug!("runtime ready");
            let mut dispatcher = Dispatcher::new(&runtime, common.plugins_dir());
            dispatcher.trace = trace;
            // Under Juju (no --world): every family from the production backends.
            let Some(world_path) = world else {
                let juju = hook_tools
                    .as_ref()
                    .expect("made above without --world")
                    .0
                    .clone();
                let caps = charm_host::backends::production(juju).await?;
                let unit = std::env::var("JUJU_UNIT_NAME").unwrap_or_default();
                let result = dispatcher.dispatch(&caps, event.clone()).await;
                keep_reads();
                let code = report_dispatch(&unit, &event, result, trace, None);
                drop(dispatcher);
                leave_for_exit(runtime);
                return Ok(code);
            };
            let world = read_world(&world_path)?;
            let unit = unit
                .or_else(|| std::env::var("JUJU_UNIT_NAME").ok())
                .or_else(|| world.read(|s| s.leader.clone()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no unit: give --unit, set JUJU_UNIT_NAME, or name a leader in the world"
                    )
                })?;
            if !world.read(|s| s.units.contains_key(&unit)) {
                anyhow::bail!(
                    "unit {unit} is not in the world {} (units: {:?})",
                    world_path.display(),
                    world.read(|s| s.units.keys().cloned().collect::<Vec<_>>())
                );
            }
            if event.kind == EventKind::Action {
                world.with_state(|s| {
                    let name = event
                        .action
                        .as_ref()
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    let a = s.action.get_or_insert_with(Default::default);
                    a.name = name;
                });
            }
            let (mut caps, _session) = world.capabilities(&unit);
            tracing::debug!("world ready");
            if let Some((juju, _)) = &hook_tools {
                caps.juju = juju.clone();
            }
            let result = dispatcher.dispatch(&caps, event.clone()).await;
            keep_reads();
            write_world(out.as_deref().unwrap_or(&world_path), &world)?;
            let status = world.read(|s| s.units[&unit].status.to_string());
            let code = report_dispatch(&unit, &event, result, trace, Some(status));
            drop(dispatcher);
            leave_for_exit(runtime);
            Ok(code)
        }
    }
}

/// A one-shot command is done with `value`: the process exits next, and the kernel takes its
/// memory back at once. Dropping the engine, its code and its mappings one by one first
/// (`munmap`, TLB shootdowns) cost a dispatch about 3 % of its CPU for nothing.
fn leave_for_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Print what a dispatch did, one line per run, and the verdict; the exit code.
fn report_dispatch(
    unit: &str,
    event: &charm_host::bindings::Event,
    result: Result<charm_host::dispatch::DispatchReport, charm_host::dispatch::DispatchError>,
    trace: bool,
    status: Option<String>,
) -> ExitCode {
    for run in charm_host::dispatch::runs_of(&result) {
        let outcome = match &run.report.result {
            Ok(o) => format!("{o:?}").to_lowercase(),
            Err(f) => format!("failed ({})", f.cause()),
        };
        let again = if run.event.deferred {
            " (re-emitted)"
        } else {
            ""
        };
        println!("{unit}: {}{again} -> {outcome}", run.event.name);
        if trace {
            for t in &run.report.trace {
                println!("    {}.{}{} -> {}", t.family, t.call, t.args, t.result);
            }
        }
    }
    match result {
        Ok(report) => {
            if report.no_plugin {
                println!("{unit}: {} -> no plugin (nothing to do)", event.name);
            }
            if report.duplicate_skipped {
                println!(
                    "{unit}: {} -> skipped (an identical event is still deferred)",
                    event.name
                );
            }
            let status = status.map(|s| format!("status {s}; ")).unwrap_or_default();
            println!(
                "{unit}: {status}{} deferred event(s) queued",
                report.queue.notices.len()
            );
            if let Some(msg) = report.action_failed {
                println!("{unit}: action failed: {msg}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("charm-host: {e}");
            ExitCode::from(1)
        }
    }
}

/// `charm-host juju-standin`: see the subcommand's help.
#[allow(clippy::too_many_arguments)]
async fn juju_standin(
    world_path: PathBuf,
    out: Option<PathBuf>,
    unit: Option<String>,
    socket: PathBuf,
    tools_dir: Option<PathBuf>,
    hook_tools: Option<PathBuf>,
    context_id: Option<String>,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    use charm_host::juju_standin;
    let world = read_world(&world_path)?;
    let unit = unit
        .or_else(|| world.state().leader)
        .ok_or_else(|| anyhow::anyhow!("no unit: give --unit or name a leader in the world"))?;
    if let Some(dir) = &tools_dir {
        let binary = match hook_tools {
            Some(b) => b,
            None => std::env::current_exe()?
                .parent()
                .map(|d| d.join("hook-tools"))
                .ok_or_else(|| anyhow::anyhow!("cannot locate this executable's directory"))?,
        };
        juju_standin::install_tools(&binary, dir)?;
    }
    let out_path = out.unwrap_or_else(|| world_path.clone());
    let save_to = out_path.clone();
    let on_commit: Box<dyn Fn(&World) + Send + Sync> = Box::new(move |w: &World| {
        if let Err(e) = write_world(&save_to, w) {
            tracing::error!("cannot write the world to {}: {e:#}", save_to.display());
        }
    });
    let agent = juju_standin::serve_with(world.clone(), &unit, &socket, Some(on_commit)).await?;
    if command.is_empty() {
        println!("serving the hook tools of {unit} on {}", socket.display());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        agent.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let context_id = context_id.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}-{}-{now}", unit.replace('/', "-"), std::process::id())
    });
    let state = world.state();
    let mut child = tokio::process::Command::new(&command[0]);
    child
        .args(&command[1..])
        .envs(agent.env(&context_id))
        .env("JUJU_UNIT_NAME", &unit)
        .env("JUJU_MODEL_NAME", &state.model.name)
        .env("JUJU_MODEL_UUID", &state.model.uuid)
        .env("JUJU_VERSION", &state.model.juju_version);
    if let Some(dir) = &tools_dir {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![std::fs::canonicalize(dir)?];
        dirs.extend(std::env::split_paths(&path));
        child.env("PATH", std::env::join_paths(dirs)?);
    }
    let status = child
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", command[0]))?;
    // What the hook cost in agent round trips (each is a process and an API call in Juju).
    let calls = agent.calls();
    eprintln!("{}", juju_standin::call_tally_line(&calls));
    if status.success() {
        let changed = agent.commit(&context_id).await?;
        eprintln!(
            "charm-host juju-standin: hook exited 0; committed context {context_id} ({} databag(s) changed)",
            changed.len()
        );
    } else {
        agent.abort(&context_id);
        // Status and workload version are not transactional in Juju: keep them.
        write_world(&out_path, agent.world())?;
        eprintln!(
            "charm-host juju-standin: hook failed ({status}); discarded the writes of context {context_id}"
        );
    }
    agent.shutdown().await;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}
