//! `cargo xtask build --release --pgo`: the host optimised with a profile of its own fuzz runs.
//!
//! Profile-guided optimisation, in three steps:
//! 1. an instrumented release host (`-Cprofile-generate`) at `target/pgo/gen/`;
//! 2. training: it fuzzes the two seed hooks and simulates a deployment, writing its counters to
//!    `target/pgo/profiles/`, which `llvm-profdata` (rustup's `llvm-tools`, the LLVM of this
//!    rustc) merges into `target/pgo/charm-host.profdata`;
//! 3. the release host built again with `-Cprofile-use`, copied to `target/pgo/charm-host`
//!    with the static hook-tool client beside it (as in `target/release`, for `bench`).
//!
//! Why: a pebble-ready fuzz execution spends two thirds of its time in host code that branches
//! on data (wasmtime lifting and lowering component values, the simulated world, mimalloc), and
//! the profile tells LLVM which side of each branch is hot and what to inline. Measured in
//! session 12 against the plain release host: pebble-ready's fuzz loop ×1.18–1.21,
//! leader-elected's ×1.09–1.30 (docs/BENCHMARKS.md, "Session 12").
//!
//! The flags go through `CARGO_TARGET_<triple>_RUSTFLAGS` with `--target` (as `pack`'s do), so
//! they reach the target artifacts (every crate of the host, dependencies included) and not
//! build scripts or proc macros, and the two builds keep to their own target directories:
//! `target/release` and the packed host are not disturbed. It costs two fat-LTO builds (about 14 and 8 minutes
//! here) and a minute of training. A rerun retrains, and rustc records the profile among each
//! crate's inputs, so the optimised host is rebuilt in full (about 9 minutes) while the
//! instrumented one is reused until the code changes. The packed charm's host is built
//! without a profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::{copy_replacing, host_triple, output, release_host_for_target, run};

/// What the instrumented host runs to record its profile: the fuzz loops the benchmarks
/// measure (both seed hooks) and a whole simulated deployment (the other hooks, the dispatcher,
/// the deferral queue).
const TRAINING: &[&[&str]] = &[
    &[
        "fuzz",
        "--plugin",
        "postgresql-pebble-ready",
        "--iterations",
        "3000",
    ],
    &["fuzz", "--plugin", "leader-elected", "--iterations", "6000"],
    &["simulate", "--units", "3", "--quiet"],
];

/// Build `target/pgo/charm-host` (after `build --release`: the plugins must be in
/// `target/plugins` and the hook-tool client in `target/release`).
pub fn build_host(root: &Path) -> Result<PathBuf> {
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some() {
            bail!("{var} is set: it would override the profile flags of `--pgo`; unset it");
        }
    }
    let triple = host_triple()?;
    let profdata_tool = llvm_profdata(&triple)?;
    let dir = root.join("target/pgo");
    let profiles = dir.join("profiles");
    if profiles.exists() {
        // Counters of an earlier build would not match this one's code.
        std::fs::remove_dir_all(&profiles)?;
    }
    std::fs::create_dir_all(&profiles)?;

    let instrumented = release_host_for_target(
        root,
        &triple,
        &dir.join("gen"),
        &format!("-Cprofile-generate={}", profiles.display()),
    )?;
    for args in TRAINING {
        run(Command::new(&instrumented)
            .current_dir(root)
            .args(*args)
            .arg("--plugins")
            .arg(root.join("target/plugins"))
            .env("CHARM_HOST_LOG", "warn")
            // One file per process and module: no two writers share a file.
            .env(
                "LLVM_PROFILE_FILE",
                profiles.join("charm-host-%p-%m.profraw"),
            ))?;
    }
    let profile = dir.join("charm-host.profdata");
    run(Command::new(&profdata_tool)
        .arg("merge")
        .arg("-o")
        .arg(&profile)
        .arg(&profiles))?;

    let optimised = release_host_for_target(
        root,
        &triple,
        &dir.join("use"),
        &format!("-Cprofile-use={}", profile.display()),
    )?;
    let dest = dir.join("charm-host");
    // `bench` runs the Juju stand-in's hook-tool client from beside its own binary: the static
    // one `build --release` made.
    for (from, to) in [
        (optimised, dest.clone()),
        (
            root.join("target/release/hook-tools"),
            dir.join("hook-tools"),
        ),
    ] {
        copy_replacing(&from, &to)?;
    }
    eprintln!("xtask: {} (profile-guided)", dest.display());
    Ok(dest)
}

/// `llvm-profdata` of the active toolchain: the profile format follows rustc's LLVM, so a
/// system `llvm-profdata` of another LLVM version cannot be used. Installs rustup's
/// `llvm-tools` component when it is missing.
fn llvm_profdata(triple: &str) -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = output(Command::new(&rustc).args(["--print", "sysroot"]))?;
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(triple)
        .join("bin/llvm-profdata");
    if !tool.exists() {
        run(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    if !tool.exists() {
        bail!(
            "{} is missing after `rustup component add llvm-tools`",
            tool.display()
        );
    }
    Ok(tool)
}
