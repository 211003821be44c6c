//! `cargo xtask <command>`: build, demo, test, setup.
//!
//! - `build [--release]`: the host at `target/{debug,release}/charm-host`, every hook and action
//!   plugin at `target/plugins/<name>.wasm`, the test plugins at `target/test-plugins/`.
//! - `demo`: build, then simulate a 3-unit deployment in the embedded simulated world.
//! - `test`: install what the tests need, build, and run every test.
//! - `setup`: only the installs (idempotent): the wasm target, real Pebble, and the packages
//!   the real-server tests use.
//!
//! The guests are a separate cargo workspace (`plugins/`), built with `--target wasm32-wasip2`
//! into the same target directory: building them never re-resolves the host's features.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const PEBBLE_MODULE: &str = "github.com/canonical/pebble";
const PEBBLE_VERSION: &str = "v1.32.1";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = args.iter().any(|a| a == "--release");
    match args.first().map(String::as_str) {
        Some("build") => build(release),
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("setup") => setup(),
        _ => {
            eprintln!(
                "usage: cargo xtask build [--release] | demo | test [-- <cargo test args>] | setup"
            );
            std::process::exit(2)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ensure_wasm_target() -> Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

fn build(release: bool) -> Result<()> {
    ensure_wasm_target()?;
    let root = root();
    build_plugins(&root)?;
    let mut host = cargo();
    host.current_dir(&root)
        .args(["build", "--package", "charm-host"]);
    if release {
        host.arg("--release");
    }
    run(&mut host)
}

/// Build every guest crate and copy the components to their stable names.
fn build_plugins(root: &Path) -> Result<()> {
    let target_dir = root.join("target");
    run(cargo()
        .current_dir(root)
        .args([
            "build",
            "--manifest-path",
            "plugins/Cargo.toml",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--target-dir",
        ])
        .arg(&target_dir))?;
    let meta: serde_json::Value =
        serde_json::from_str(&output(cargo().current_dir(root).args([
            "metadata",
            "--manifest-path",
            "plugins/Cargo.toml",
            "--format-version",
            "1",
            "--no-deps",
        ]))?)?;
    let built = target_dir.join("wasm32-wasip2/release");
    let plugins = target_dir.join("plugins");
    let test_plugins = target_dir.join("test-plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::create_dir_all(&test_plugins)?;
    let tests_dir = root.join("tests");
    let mut n = 0;
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let is_component = pkg["targets"].as_array().into_iter().flatten().any(|t| {
            t["crate_types"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c == "cdylib")
        });
        if !is_component {
            continue;
        }
        let name = pkg["name"].as_str().unwrap_or_default();
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
        let src = built.join(format!("{}.wasm", name.replace('-', "_")));
        let dest_dir = if manifest.starts_with(&tests_dir) {
            &test_plugins
        } else {
            &plugins
        };
        let dest = dest_dir.join(format!("{name}.wasm"));
        // Copy via a temp file and rename: a dispatch reading the file never sees half of it.
        let tmp = dest.with_extension("wasm.tmp");
        std::fs::copy(&src, &tmp).with_context(|| format!("copying {}", src.display()))?;
        std::fs::rename(&tmp, &dest)?;
        n += 1;
    }
    eprintln!(
        "xtask: {n} components in {} and {}",
        plugins.display(),
        test_plugins.display()
    );
    Ok(())
}

/// The README's demo: a 3-unit deployment in the embedded simulated world, its timeline and
/// final table.
fn demo() -> Result<()> {
    build(false)?;
    let root = root();
    run(Command::new(root.join("target/debug/charm-host"))
        .current_dir(&root)
        .args([
            "simulate",
            "--units",
            "3",
            "--story",
            "deploy",
            "--seed",
            "1",
            "--plugins",
        ])
        .arg(root.join("target/plugins"))
        .arg("--cache-dir")
        .arg(root.join("target/plugin-cache"))
        .env("CHARM_HOST_LOG", "warn"))
}

fn tools_dir() -> PathBuf {
    root().join("target/tools")
}

/// Real Pebble from the Go module proxy, into target/tools/bin (nothing outside the clone).
fn install_pebble() -> Result<PathBuf> {
    let tools = tools_dir();
    let bin = tools.join("bin/pebble");
    if bin.exists() {
        return Ok(bin);
    }
    let gopath = tools.join("go");
    let env = |c: &mut Command| {
        c.env("GOPATH", &gopath)
            .env("GOFLAGS", "-modcacherw")
            .env("GOBIN", tools.join("bin"));
    };
    let mut dl = Command::new("go");
    env(&mut dl);
    // `go install module@version` asks the proxy for the version list, which is refused here;
    // downloading the module and installing from its directory avoids that request.
    run(dl.args([
        "mod",
        "download",
        &format!("{PEBBLE_MODULE}@{PEBBLE_VERSION}"),
    ]))?;
    let src = gopath.join(format!("pkg/mod/{PEBBLE_MODULE}@{PEBBLE_VERSION}"));
    let mut inst = Command::new("go");
    env(&mut inst);
    run(inst.current_dir(&src).args(["install", "./cmd/pebble"]))?;
    Ok(bin)
}

/// Debian packages the real-server tests use: PostgreSQL 15; psycopg2 and the etcd client for
/// Patroni; etcd as the DCS of the backend tests' cluster; openssl for test certificates.
const APT_PACKAGES: &[&str] = &[
    "postgresql",
    "python3-psycopg2",
    "python3-venv",
    "python3-etcd",
    "etcd-server",
    "openssl",
];
/// Patroni 4.1.5 with both DCSs the tests use: Kubernetes (the stand-in) and etcd.
const PATRONI_SPEC: &str = "patroni[kubernetes,etcd3]==4.1.5";

fn install_apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Patroni 4.1.5 from PyPI in a venv that uses Debian's psycopg2 (target/tools/patroni-venv).
fn install_patroni() -> Result<PathBuf> {
    let venv = tools_dir().join("patroni-venv");
    let bin = venv.join("bin/patroni");
    let current = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !current.trim_end().ends_with(" 4.1.5") {
        run(Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--ignore-installed",
            PATRONI_SPEC,
        ]))?;
    }
    // Patroni runs as user postgres when the tests run as root.
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&venv))?;
    Ok(bin)
}

fn setup() -> Result<()> {
    ensure_wasm_target()?;
    install_pebble()?;
    install_apt_packages()?;
    install_patroni()?;
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    setup()?;
    build(false)?;
    let root = root();
    let pebble = tools_dir().join("bin/pebble");
    let mut t = cargo();
    t.current_dir(&root)
        .args(["test", "--workspace"])
        .env("PEBBLE_BIN", &pebble)
        .env("PATRONI_BIN", tools_dir().join("patroni-venv/bin/patroni"));
    let passthrough: Vec<&String> = extra.iter().skip_while(|a| *a != "--").collect();
    t.args(passthrough);
    run(&mut t)?;
    // The guest library's pure logic, natively.
    run(cargo()
        .current_dir(&root)
        .args([
            "test",
            "--manifest-path",
            "plugins/Cargo.toml",
            "--package",
            "charm-core",
            "--target-dir",
        ])
        .arg(root.join("target")))
}
