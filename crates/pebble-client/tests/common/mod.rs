//! Starts a real Pebble daemon per test.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pebble_client::Client;

/// Where the daemon comes from: `$PEBBLE_BIN`, else the workspace's `target/tools/bin/pebble`.
pub fn pebble_bin() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let bin = match std::env::var_os("PEBBLE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => workspace.join("target/tools/bin/pebble"),
    };
    assert!(
        bin.is_file(),
        "no pebble binary at {} (set PEBBLE_BIN, or install it there). Install with:\n  \
         GOBIN={gobin} go install github.com/canonical/pebble/cmd/pebble@v1.32.1\n\
         or, where the module proxy refuses the version list that `go install pkg@version` reads:\n  \
         go mod download github.com/canonical/pebble@v1.32.1 && \
         cd \"$(go env GOMODCACHE)/github.com/canonical/pebble@v1.32.1\" && \
         GOBIN={gobin} go install ./cmd/pebble",
        bin.display(),
        gobin = workspace.join("target/tools/bin").display(),
    );
    bin
}

/// A running `pebble run` in its own `$PEBBLE` directory, stopped on drop.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Pebble {
    /// Starts a daemon and waits until it answers.
    pub async fn start() -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log file");
        let child = Command::new(pebble_bin())
            .args(["run", "--create-dirs"])
            .env("PEBBLE", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start pebble");
        let pebble = Pebble { dir, child };
        let client = pebble.client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if pebble.socket().exists() && client.system_info().await.is_ok() {
                return pebble;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not come up; log:\n{}",
                pebble.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(".pebble.socket")
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket()).with_request_timeout(Duration::from_secs(10))
    }

    /// A scratch directory for files the test creates.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        // SIGTERM first so Pebble stops its services; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until true or the timeout passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Looks a user or group id up in /etc/passwd or /etc/group.
pub fn id_of(db: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(db).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not in {db}"))
}
