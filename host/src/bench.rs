//! `charm-host bench`: the numbers behind docs/BENCHMARKS.md, measured, not asserted.
//!
//! Run it from a release build (`cargo xtask build --release`): a debug host JIT-compiles and
//! runs everything many times slower.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bindings::{Event, EventKind};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::simulate::{SimConfig, Simulator, Story};
use crate::world::{World, WorldState};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub name: String,
    pub median: String,
    pub detail: String,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// This process's CPU time so far, user and system, all threads.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only fills the struct we own.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Fuzz executions per second per core: `charm-host fuzz --plugin <plugin>` (seed 0, the
/// command's default) in rounds of `per_round` executions, each rated by the CPU time it took,
/// after one untimed round that compiles the plugin and warms the instance pool. CPU time, not
/// wall time, is what "per core" means, and it ignores what else the machine is doing.
pub async fn fuzz_rate(
    runtime: &Runtime,
    plugins_dir: &Path,
    plugin: &str,
    per_round: u64,
    rounds: usize,
) -> anyhow::Result<Figure> {
    // A failure's reproduction is not kept: the error names the seed, which `charm-host fuzz
    // --seed` replays with its reproduction.
    let scratch = tempfile::tempdir()?;
    let cfg = crate::fuzz::FuzzConfig {
        plugin: plugin.to_string(),
        seed: 0,
        iterations: Some(per_round),
        duration: None,
        plugins_dir: plugins_dir.to_path_buf(),
        out_dir: scratch.path().to_path_buf(),
        progress: None,
    };
    let mut rates = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        let c0 = cpu_time();
        let summary = crate::fuzz::run(runtime, &cfg).await?;
        let cpu = cpu_time() - c0;
        if let Some(f) = summary.failures.first() {
            anyhow::bail!(
                "fuzz {plugin} failed during the benchmark (seed {}): {}",
                f.seed,
                f.invariant
            );
        }
        if round > 0 {
            rates.push(per_round as f64 / cpu.as_secs_f64().max(1e-9));
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(Figure {
        name: format!("fuzz executions per second per core: {plugin}"),
        median: format!("{:.0} /s", rates[rates.len() / 2]),
        detail: format!(
            "best {:.0} /s; CPU time of {rounds} rounds of {per_round} executions (seed 0)",
            rates[rates.len() - 1]
        ),
    })
}

/// A state for `plugin`'s event, from the bench world file when there is one.
fn bench_state(states_dir: &Path, plugin: &str) -> anyhow::Result<WorldState> {
    let f = states_dir.join(format!("{plugin}.yaml"));
    let f = if f.exists() {
        f
    } else {
        states_dir.join("demo-world.yaml")
    };
    let text = std::fs::read_to_string(&f)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
    Ok(serde_yaml::from_str(&text)?)
}

pub struct BenchConfig {
    pub plugins_dir: PathBuf,
    /// Where per-plugin states live (`<plugin>.yaml`, else `demo-world.yaml`).
    pub states_dir: PathBuf,
    pub plugins: Vec<String>,
    pub iterations: usize,
    /// The `charm-host` binary that runs the stand-in agent (and whose directory holds the
    /// `hook-tools` client).
    pub exe: PathBuf,
    /// The binary whose `dispatch` is timed; `None`: `exe`.
    pub dispatch_exe: Option<PathBuf>,
    pub sim_units: Vec<u32>,
}

impl BenchConfig {
    fn dispatch_exe(&self) -> &Path {
        self.dispatch_exe.as_deref().unwrap_or(&self.exe)
    }
}

pub async fn run(cfg: &BenchConfig) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    // The default configuration is the fuzzer's own: instance slots reused across executions.
    let runtime = Runtime::new(RuntimeConfig::default())?;
    for plugin in &cfg.plugins {
        figures
            .push(fuzz_rate(&runtime, &cfg.plugins_dir, plugin, cfg.iterations as u64, 7).await?);
        let loaded = runtime
            .load(&cfg.plugins_dir, plugin)
            .map_err(|f| anyhow::anyhow!("{plugin}: {f}"))?;
        let state = bench_state(&cfg.states_dir, plugin)?;
        let unit = state
            .leader
            .clone()
            .or_else(|| state.units.keys().next().cloned())
            .unwrap_or_default();
        let event = crate::scenario::event_for(&state, &unit, plugin, &Default::default())
            .unwrap_or_else(|_| Event::bare(plugin.as_str(), EventKind::Custom));
        // instantiate + call, in-process: a fresh Store per event, the world built beforehand.
        let mut samples = Vec::with_capacity(cfg.iterations);
        for _ in 0..cfg.iterations {
            let world = World::new(state.clone());
            let (caps, _) = world.capabilities(&unit);
            let t = Instant::now();
            let r = runtime.run(&loaded, event.clone(), caps, false).await;
            samples.push(t.elapsed());
            if let Err(f) = r.result {
                anyhow::bail!("{plugin} failed during the benchmark: {f}");
            }
        }
        figures.push(Figure {
            name: format!("instantiate+call in-process: {plugin}"),
            median: us(median(samples.clone())),
            detail: format!("p90 {}, {} runs", us(pct(samples, 0.9)), cfg.iterations),
        });
        // Scenario runs per second (world from the state, dispatch with the queue, commit).
        let t = Instant::now();
        let n = cfg.iterations;
        for _ in 0..n {
            crate::scenario::run(
                &runtime,
                &cfg.plugins_dir,
                state.clone(),
                Some(&unit),
                event.clone(),
                false,
            )
            .await?;
        }
        let per_sec = n as f64 / t.elapsed().as_secs_f64();
        figures.push(Figure {
            name: format!("scenario runs per second (1 thread): {plugin}"),
            median: format!("{per_sec:.0} /s"),
            detail: format!("{n} runs in {}", ms(t.elapsed())),
        });
        figures.extend(whole_process(cfg, plugin, &state, &unit)?);
    }
    for &units in &cfg.sim_units {
        let mut samples = Vec::new();
        let mut dispatches = 0;
        let mut converged = true;
        for seed in 1..=3 {
            let t = Instant::now();
            let r = Simulator::new(
                &runtime,
                &cfg.plugins_dir,
                SimConfig {
                    units,
                    seed,
                    story: Story::Deploy,
                    ..Default::default()
                },
            )
            .run()
            .await;
            samples.push(t.elapsed());
            dispatches = r.dispatches;
            converged &= r.converged;
        }
        figures.push(Figure {
            name: format!("simulate --units {units} --story deploy (wall)"),
            median: ms(median(samples)),
            detail: format!(
                "{dispatches} dispatches, {}, seeds 1-3",
                if converged {
                    "converged"
                } else {
                    "NOT converged"
                }
            ),
        });
    }
    Ok(figures)
}

/// `charm-host dispatch` as a whole process: cold (empty cache) and warm, with peak RSS.
fn whole_process(
    cfg: &BenchConfig,
    plugin: &str,
    state: &WorldState,
    unit: &str,
) -> anyhow::Result<Vec<Figure>> {
    let tmp = std::env::temp_dir().join(format!("charm-host-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let world_file = tmp.join("world.yaml");
    let cache = tmp.join("cache");
    let text = serde_yaml::to_string(state)?;
    let peak_rss = std::cell::Cell::new(0i64);
    // The dispatch command, run directly or under a wrapper (`/usr/bin/time -f …`).
    let dispatch = |wrapper: Option<(&Path, &[&str])>| {
        let mut c = match wrapper {
            Some((program, pre)) => {
                let mut c = std::process::Command::new(program);
                c.args(pre).arg(cfg.dispatch_exe());
                c
            }
            None => std::process::Command::new(cfg.dispatch_exe()),
        };
        c.args(["dispatch", "--world"])
            .arg(&world_file)
            .args(["--unit", unit, "--event", plugin, "--plugins"])
            .arg(&cfg.plugins_dir)
            .arg("--cache-dir")
            .arg(&cache)
            .env("CHARM_HOST_LOG", "error");
        c
    };
    let once = |cold: bool| -> anyhow::Result<Duration> {
        if cold {
            let _ = std::fs::remove_dir_all(&cache);
        }
        std::fs::write(&world_file, &text)?;
        let (d, ok, err, rss) = measured(&mut dispatch(None))?;
        if !ok {
            anyhow::bail!("dispatch of {plugin} failed: {err}");
        }
        peak_rss.set(peak_rss.get().max(rss));
        Ok(d)
    };
    let cold: Vec<Duration> = (0..5).map(|_| once(true)).collect::<anyhow::Result<_>>()?;
    let through_tools = through_hook_tools(cfg, plugin, &tmp, &text, unit, &cache)?;
    let agent_up_cold_plan = through_running_agent(cfg, plugin, &tmp, state, unit, &cache, false)?;
    let agent_up = through_running_agent(cfg, plugin, &tmp, state, unit, &cache, true)?;
    once(false)?;
    // The peak of the warm runs only (a cold run also compiles).
    peak_rss.set(0);
    let runs = cfg.iterations.clamp(20, 200);
    let warm: Vec<Duration> = (0..runs)
        .map(|_| once(false))
        .collect::<anyhow::Result<_>>()?;
    // wait4's ru_maxrss for a child of this (large) bench process also counts the bench's own
    // resident set: Linux keeps the high-water mark of the memory map replaced at exec, and the
    // child starts as a copy of this process. GNU time is a small parent, so the figure it
    // reports is the dispatch's own; without it the figure is an upper bound.
    let gnu_time = Path::new("/usr/bin/time");
    let (rss_kib, rss_how) = if gnu_time.exists() {
        let mut peak = 0i64;
        for _ in 0..10 {
            std::fs::write(&world_file, &text)?;
            let (_, ok, err, _) =
                measured(&mut dispatch(Some((gnu_time, &["-f", "maxrss-kib %M"]))))?;
            if !ok {
                anyhow::bail!("dispatch of {plugin} under /usr/bin/time failed: {err}");
            }
            let kib = err
                .lines()
                .find_map(|l| l.strip_prefix("maxrss-kib ")?.trim().parse::<i64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no maxrss line from /usr/bin/time: {err}"))?;
            peak = peak.max(kib);
        }
        (peak, "own peak of 10 runs, by GNU time")
    } else {
        (
            peak_rss.get(),
            "upper bound: wait4 also counts the bench process",
        )
    };
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(vec![
        through_tools,
        agent_up_cold_plan,
        agent_up,
        Figure {
            name: format!("whole-process dispatch, warm cache: {plugin}"),
            median: ms(median(warm.clone())),
            detail: format!(
                "p90 {}, {runs} runs, peak RSS {:.1} MiB ({rss_how})",
                ms(pct(warm, 0.9)),
                rss_kib as f64 / 1024.0
            ),
        },
        Figure {
            name: format!("whole-process dispatch, cold (compile + cache): {plugin}"),
            median: ms(median(cold)),
            detail: "5 runs".into(),
        },
    ])
}

/// `charm-host juju-standin -- charm-host dispatch --juju hook-tools`: Juju answered by the
/// hook-tool stand-in (each call a process and a socket round trip, as under a real agent).
/// The wall time includes the stand-in's own start, so it is an upper bound of the dispatch.
fn through_hook_tools(
    cfg: &BenchConfig,
    plugin: &str,
    tmp: &Path,
    state: &str,
    unit: &str,
    cache: &Path,
) -> anyhow::Result<Figure> {
    let hook_tools = cfg.exe.with_file_name("hook-tools");
    if !hook_tools.exists() {
        anyhow::bail!(
            "{} is missing: build it with `cargo xtask build --release`",
            hook_tools.display()
        );
    }
    let juju_world = tmp.join("juju.yaml");
    let rest_world = tmp.join("rest.yaml");
    let mut calls = 0;
    let mut once = || -> anyhow::Result<Duration> {
        std::fs::write(&juju_world, state)?;
        std::fs::write(&rest_world, state)?;
        let (d, ok, err, _) = measured(
            std::process::Command::new(&cfg.exe)
                .args(["juju-standin", "--world"])
                .arg(&juju_world)
                .args(["--unit", unit, "--socket"])
                .arg(tmp.join("agent.socket"))
                .arg("--tools-dir")
                .arg(tmp.join("tools"))
                .arg("--hook-tools")
                .arg(&hook_tools)
                .arg("--")
                .arg(cfg.dispatch_exe())
                .args(["dispatch", "--juju", "hook-tools", "--world"])
                .arg(&rest_world)
                .args(["--unit", unit, "--event", plugin, "--plugins"])
                .arg(&cfg.plugins_dir)
                .arg("--cache-dir")
                .arg(cache)
                .env("CHARM_HOST_LOG", "error"),
        )?;
        if !ok {
            anyhow::bail!("dispatch of {plugin} under the stand-in failed: {err}");
        }
        calls = crate::juju_standin::parse_call_tally(&err).unwrap_or(0);
        Ok(d)
    };
    once()?;
    let runs = cfg.iterations.clamp(20, 100);
    let samples: Vec<Duration> = (0..runs).map(|_| once()).collect::<anyhow::Result<_>>()?;
    Ok(Figure {
        name: format!("whole-process dispatch via the hook-tool stand-in: {plugin}"),
        median: ms(median(samples.clone())),
        detail: format!(
            "p90 {}, {runs} runs, {calls} hook-tool calls (stand-in start included)",
            ms(pct(samples, 0.9))
        ),
    })
}

/// `charm-host dispatch --juju hook-tools` with the stand-in agent already running, as under
/// Juju, where the unit agent is up before any hook starts: only the dispatch process (and the
/// tool processes it starts) is timed. Each context is aborted afterwards (untimed), so every
/// run sees the same Juju state; the dispatch itself does all its work, including flushing its
/// writes through the tools.
///
/// With `read_plan`, each run finds the reads the previous one made in the cache and starts
/// them ahead (as every dispatch of a hook after its first does); without, the plan is removed
/// before each run (the first dispatch of a hook on a unit).
fn through_running_agent(
    cfg: &BenchConfig,
    plugin: &str,
    tmp: &Path,
    world: &WorldState,
    unit: &str,
    cache: &Path,
    read_plan: bool,
) -> anyhow::Result<Figure> {
    let text = serde_yaml::to_string(world)?;
    let state = text.as_str();
    let hook_tools = cfg.exe.with_file_name("hook-tools");
    let juju_world = tmp.join("agent-juju.yaml");
    let rest_world = tmp.join("agent-rest.yaml");
    let socket = tmp.join("agent-up.socket");
    let tools = tmp.join("agent-tools");
    std::fs::write(&juju_world, state)?;
    let _ = std::fs::remove_file(&socket);
    let mut agent = std::process::Command::new(&cfg.exe)
        .args(["juju-standin", "--world"])
        .arg(&juju_world)
        .args(["--unit", unit, "--socket"])
        .arg(&socket)
        .arg("--tools-dir")
        .arg(&tools)
        .arg("--hook-tools")
        .arg(&hook_tools)
        .env("CHARM_HOST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let up = Instant::now();
    while !socket.exists() {
        if up.elapsed() > Duration::from_secs(10) {
            let _ = agent.kill();
            let _ = agent.wait();
            anyhow::bail!(
                "the stand-in agent did not start listening on {}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![std::fs::canonicalize(&tools)?];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs)?;
    let mut n = 0u64;
    let mut once = || -> anyhow::Result<Duration> {
        n += 1;
        let context = format!("bench-{}-{n}", std::process::id());
        std::fs::write(&rest_world, state)?;
        if !read_plan {
            let plan = crate::backends::juju::ReadPlan::new(cache, plugin);
            let _ = std::fs::remove_file(plan.path());
        }
        let (d, ok, err, _) = measured(
            std::process::Command::new(cfg.dispatch_exe())
                .args(["dispatch", "--juju", "hook-tools", "--world"])
                .arg(&rest_world)
                .args(["--unit", unit, "--event", plugin, "--plugins"])
                .arg(&cfg.plugins_dir)
                .arg("--cache-dir")
                .arg(cache)
                .env("CHARM_HOST_LOG", "error")
                .env("PATH", &path)
                .env(hook_tools::SOCKET_ENV, &socket)
                .env(hook_tools::NETWORK_ENV, "unix")
                .env(hook_tools::CONTEXT_ENV, &context)
                .env("JUJU_UNIT_NAME", unit)
                .env("JUJU_MODEL_NAME", &world.model.name)
                .env("JUJU_MODEL_UUID", &world.model.uuid)
                .env("JUJU_VERSION", &world.model.juju_version),
        )?;
        // Untimed: Juju's agent ends the context itself when the hook process exits.
        let _ = std::process::Command::new(&hook_tools)
            .arg("abort")
            .env(hook_tools::SOCKET_ENV, &socket)
            .env(hook_tools::NETWORK_ENV, "unix")
            .env(hook_tools::CONTEXT_ENV, &context)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !ok {
            anyhow::bail!("dispatch of {plugin} with the agent running failed: {err}");
        }
        Ok(d)
    };
    let runs = cfg.iterations.clamp(20, 100);
    let result: anyhow::Result<Vec<Duration>> =
        once().and_then(|_| (0..runs).map(|_| once()).collect());
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_file(&socket);
    let samples = result?;
    Ok(Figure {
        name: format!(
            "whole-process dispatch, agent already running{}: {plugin}",
            if read_plan { "" } else { ", no read plan" }
        ),
        median: ms(median(samples.clone())),
        detail: format!(
            "p90 {}, {runs} runs (dispatch + its tool processes; stand-in started once)",
            ms(pct(samples, 0.9))
        ),
    })
}

/// Run a command to its end; its wall time, whether it succeeded, its stderr and its own peak
/// resident set (KiB), from `wait4` for this child alone.
fn measured(cmd: &mut std::process::Command) -> anyhow::Result<(Duration, bool, String, i64)> {
    use std::io::Read;
    let t = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().expect("piped");
    // Read stderr while the child runs, so a chatty child cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waiting for our own child; the rusage struct is ours.
    let (rc, rusage) = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::wait4(pid, &mut status, 0, &mut u), u)
    };
    let d = t.elapsed();
    std::mem::forget(child); // reaped by wait4 above
    if rc != pid {
        anyhow::bail!("wait4 failed for {cmd:?}");
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((d, ok, reader.join().unwrap_or_default(), rusage.ru_maxrss))
}

pub fn render(figures: &[Figure]) -> String {
    let mut out = format!("{:<62} {:>14}  {}\n", "benchmark", "median", "detail");
    for f in figures {
        out.push_str(&format!("{:<62} {:>14}  {}\n", f.name, f.median, f.detail));
    }
    out
}
