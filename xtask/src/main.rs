//! `cargo xtask <command>`: build, demo, test, setup.
//!
//! - `build [--release]`: the host at `target/{debug,release}/charm-host`, every hook and action
//!   plugin at `target/plugins/<name>.wasm`, the test plugins at `target/test-plugins/`.
//!   `build --release --pgo` also builds `target/pgo/charm-host`, the host optimised with a
//!   profile of its own fuzz runs (module [`pgo`]).
//! - `demo`: build, then simulate a 3-unit deployment in the embedded simulated world.
//! - `test`: install what the tests need, build, and run every test.
//! - `setup`: only the installs (idempotent): the wasm target, real Pebble, and the packages
//!   the real-server tests use.
//! - `pack`: the deployable charm, `target/charm/postgresql-k8s.charm` (see [`pack`]).
//!
//! The guests are a separate cargo workspace (`plugins/`), built with `--target wasm32-wasip2`
//! into the same target directory: building them never re-resolves the host's features.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod pgo;

const PEBBLE_MODULE: &str = "github.com/canonical/pebble";
const PEBBLE_VERSION: &str = "v1.32.1";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = args.iter().any(|a| a == "--release");
    let pgo = args.iter().any(|a| a == "--pgo");
    match args.first().map(String::as_str) {
        Some("build") if pgo && !release => bail!("--pgo builds a release host: add --release"),
        Some(other) if pgo && other != "build" => bail!("--pgo is an option of `build` only"),
        Some("build") => {
            build(release)?;
            if pgo {
                pgo::build_host(&root())?;
            }
            Ok(())
        }
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("setup") => setup(),
        Some("pack") => pack().map(|_| ()),
        _ => {
            eprintln!(
                "usage: cargo xtask build [--release [--pgo]] | demo | test [-- <cargo test args>] | setup | pack"
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
    run(&mut host)?;
    if !release {
        // Debug tests build their own client (tests/support.rs); a static one here would be
        // rebuilt dynamically by the next `cargo test`.
        return Ok(());
    }
    // The hook-tool client of the Juju stand-in for `charm-host bench`, linked as Juju's own
    // `jujuc` is (a Go binary: static, and not position-independent, Go's default on
    // linux/amd64): every hook-tool call starts one, and the dispatch benchmark would count
    // a slower start against the host. Dynamically linked it spent about 0.7 ms more CPU per
    // call in the loader; static-pie 0.83 ms a call in all, non-PIE 0.53 ms. `cargo rustc`
    // gives the flags to this binary's link alone.
    run(cargo().current_dir(&root).args([
        "rustc",
        "--release",
        "--package",
        "hook-tools",
        "--bin",
        "hook-tools",
        "--",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "relocation-model=static",
    ]))
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
        copy_replacing(&src, &dest_dir.join(format!("{name}.wasm")))?;
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
    // The packed-charm test unpacks what `pack` built (a static release host of its own);
    // `build` just built the plugins.
    pack_built(&root)?;
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

/// Where `pack` writes the charm, relative to the workspace root.
pub const CHARM_FILE: &str = "target/charm/postgresql-k8s.charm";

/// `cargo xtask pack`: `target/charm/postgresql-k8s.charm`, the zip Juju deploys:
///
/// - `dispatch`, `metadata.yaml`, `config.yaml`, `actions.yaml`, `manifest.yaml` from `charm/`;
/// - `bin/charm-host`: the release host, statically linked (`+crt-static`), because it runs in
///   the charm container, whose base image need not carry the glibc it was built against, and
///   not position-independent (`relocation-model=static`), because it starts once per hook;
/// - `plugins/<hook>.wasm`: every hook and action plugin;
/// - `plugin-cache/`: those plugins compiled by the packed binary itself (`charm-host
///   precompile`), so the first hook deserialises instead of compiling. An entry is keyed by
///   the engine's compatibility hash, which includes the CPU features wasmtime detected: on a
///   machine whose CPU differs, the first dispatch of each hook compiles and caches instead.
///
/// The host is built with `--target <host triple>`, so the static flags reach only the target
/// artifacts (not build scripts or proc macros) and this build never disturbs `target/release`.
fn pack() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let root = root();
    build_plugins(&root)?;
    pack_built(&root)
}

/// [`pack`] with the plugins already built into `target/plugins`.
fn pack_built(root: &Path) -> Result<PathBuf> {
    let triple = host_triple()?;
    let host = release_host_for_target(
        root,
        &triple,
        &root.join("target"),
        // Static and not position-independent: the process starts with no loader and no
        // relocations to apply (a PIE host applied about 60,000 at every hook, each
        // relocated page a private copy); --version went from 2.4 to 1.0 ms of CPU, a
        // whole dispatch 2-3 ms faster. The price is a fixed load address for the host's
        // own image (heap, stack, mappings and the plugins' code stay randomised).
        "-C target-feature=+crt-static -C relocation-model=static",
    )?;
    let elf = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
    if let Some(interp) = elf_interpreter(&elf)? {
        bail!(
            "{} is dynamically linked (interpreter {interp}); is RUSTFLAGS set? It overrides the static flags",
            host.display()
        );
    }

    let out = root.join("target/charm");
    let stage = out.join("postgresql-k8s");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    for dir in ["bin", "plugins"] {
        std::fs::create_dir_all(stage.join(dir))?;
    }
    let charm_src = root.join("charm");
    for file in [
        "dispatch",
        "metadata.yaml",
        "config.yaml",
        "actions.yaml",
        "manifest.yaml",
    ] {
        std::fs::copy(charm_src.join(file), stage.join(file))
            .with_context(|| format!("copying charm/{file}"))?;
    }
    std::fs::copy(&host, stage.join("bin/charm-host"))?;
    let mut plugins = 0;
    for entry in std::fs::read_dir(root.join("target/plugins"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::copy(&path, stage.join("plugins").join(path.file_name().unwrap()))?;
            plugins += 1;
        }
    }
    if plugins == 0 {
        bail!("no plugins in target/plugins");
    }
    // Compiled by the binary that will load them, so the engine configuration matches.
    run(Command::new(stage.join("bin/charm-host"))
        .arg("precompile")
        .arg("--plugins")
        .arg(stage.join("plugins"))
        .arg("--cache-dir")
        .arg(stage.join("plugin-cache"))
        .env("CHARM_HOST_LOG", "warn"))?;
    // Records of which plugin file (device, inode, times) has which digest name files of this
    // machine: meaningless in the archive, and written or not depending on how long the
    // precompile took. Only the compiled entries are packed.
    let records = stage.join("plugin-cache/plugin-ids");
    if records.exists() {
        std::fs::remove_dir_all(&records)?;
    }

    let charm = root.join(CHARM_FILE);
    write_zip(&stage, &charm)?;
    eprintln!(
        "xtask: {} ({} plugins, {:.1} MiB)",
        charm.display(),
        plugins,
        std::fs::metadata(&charm)?.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(charm)
}

/// `cargo build --release` of the host binary with `--target <triple>` into `target_dir`,
/// `flags` given to the target artifacts alone (every crate of the host, not build scripts or
/// proc macros): the packed host and the profile-guided ones. Returns the binary's path.
fn release_host_for_target(
    root: &Path,
    triple: &str,
    target_dir: &Path,
    flags: &str,
) -> Result<PathBuf> {
    run(cargo()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--package",
            "charm-host",
            "--bin",
            "charm-host",
            "--target",
            triple,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env(target_rustflags_var(triple), flags))?;
    Ok(target_dir.join(triple).join("release/charm-host"))
}

/// Copy `from` over `to` through a temp file and a rename: a dispatch reading a plugin never
/// sees half of it, and a binary that is running keeps its old inode (writing into it in place
/// would fail with "text file busy").
fn copy_replacing(from: &Path, to: &Path) -> Result<()> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))
}

/// The variable that gives rustc flags to the artifacts of `--target <triple>` alone (not to
/// build scripts or proc macros, which run on the build machine).
fn target_rustflags_var(triple: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace(['-', '.'], "_")
    )
}

fn host_triple() -> Result<String> {
    let v =
        output(Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV"))?;
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host triple")
}

/// The program interpreter an ELF64 little-endian executable asks for (`PT_INTERP`), if any:
/// a static (or static-pie) executable has none.
fn elf_interpreter(elf: &[u8]) -> Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("truncated ELF header");
    };
    for i in 0..phnum as usize {
        let ph = phoff as usize + i * phentsize as usize;
        if u32_at(ph).context("truncated program header")? == PT_INTERP {
            let (off, size) = (
                u64_at(ph + 8).context("truncated program header")? as usize,
                u64_at(ph + 32).context("truncated program header")? as usize,
            );
            let name = elf
                .get(off..off + size)
                .context("PT_INTERP outside the file")?;
            return Ok(Some(
                String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_owned(),
            ));
        }
    }
    Ok(None)
}

/// Zip `dir` into `dest`: paths relative to `dir`, Unix modes kept (Juju runs `dispatch` and
/// `bin/charm-host` as they are unpacked), entries sorted and dated 1980-01-01 so the same
/// inputs give the same archive.
fn write_zip(dir: &Path, dest: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let tmp = dest.with_extension("charm.tmp");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&tmp)?);
    for path in files {
        let name = path.strip_prefix(dir)?.to_string_lossy().into_owned();
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode)
            .large_file(false);
        zip.start_file(name.as_str(), options)
            .with_context(|| format!("adding {name}"))?;
        zip.write_all(&std::fs::read(&path)?)?;
    }
    zip.finish()?.flush()?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_rustflags_var_is_cargos_name_for_the_triple() {
        assert_eq!(
            target_rustflags_var("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"
        );
        assert_eq!(
            target_rustflags_var("thumbv8m.main-none-eabi"),
            "CARGO_TARGET_THUMBV8M_MAIN_NONE_EABI_RUSTFLAGS"
        );
    }
}
