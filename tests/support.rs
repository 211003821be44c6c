//! Shared helpers of the top-level integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A component built by `cargo xtask build`; a clear failure when it is missing.
pub fn component(dir: &str, name: &str) -> PathBuf {
    let p = root().join("target").join(dir).join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask build` (or `cargo xtask test`) first",
        p.display()
    );
    p
}

pub fn test_plugin(name: &str) -> PathBuf {
    component("test-plugins", name)
}

/// A plugins directory holding copies of test plugins under chosen hook names.
pub fn plugins_dir(entries: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (hook, plugin) in entries {
        install(dir.path(), hook, plugin);
    }
    dir
}

/// Put test plugin `plugin` at `<dir>/<hook>.wasm` (atomically, as a deployment would).
pub fn install(dir: &Path, hook: &str, plugin: &str) {
    let tmp = dir.join(format!("{hook}.wasm.tmp"));
    std::fs::copy(test_plugin(plugin), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{hook}.wasm"))).unwrap();
}

/// The multi-call hook-tool client (`crates/hook-tools`), built beside this test binary.
/// Cargo builds only this package's binaries for its tests, so build that one here (a no-op
/// when it is fresh).
pub fn hook_tools_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> -> target/<profile>/hook-tools
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .current_dir(root())
                .args([
                    "build",
                    "--quiet",
                    "--package",
                    "hook-tools",
                    "--target-dir",
                ])
                .arg(target_dir)
                .status()
                .expect("running cargo to build hook-tools");
            assert!(status.success(), "building hook-tools failed");
            let bin = profile_dir.join("hook-tools");
            assert!(
                bin.exists(),
                "{} is missing after building hook-tools",
                bin.display()
            );
            bin
        })
        .clone()
}

/// `charm-host juju-standin --world <world> --unit <unit> --socket <dir>/agent.socket
/// --tools-dir <dir>/tools --hook-tools <the client> --`: the hook-tool stand-in as Juju's
/// agent for one hook, whose command the caller appends.
pub fn juju_standin(world: &Path, unit: &str, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"));
    standin_args(&mut cmd, world, unit, dir);
    cmd
}

/// The stand-in's arguments (from `juju-standin` to `--`) appended to `cmd`, for a stand-in
/// started through a wrapper.
pub fn standin_args(cmd: &mut std::process::Command, world: &Path, unit: &str, dir: &Path) {
    cmd.args(["juju-standin", "--world"])
        .arg(world)
        .args(["--unit", unit, "--socket"])
        .arg(dir.join("agent.socket"))
        .arg("--tools-dir")
        .arg(dir.join("tools"))
        .arg("--hook-tools")
        .arg(hook_tools_bin())
        .arg("--");
}
