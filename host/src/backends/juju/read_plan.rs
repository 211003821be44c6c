//! The reads one dispatch of a hook made, kept so that the next dispatch of the same hook can
//! start them ahead ([`super::ToolRunner::prefetch`]).
//!
//! Juju runs each hook as a fresh process, and each hook tool is a process start plus a round
//! trip to the unit agent: a plugin that asks for its inputs one after another waits for each
//! in turn. What a hook reads depends on the world only a little (the same relations, units,
//! secrets and state keys, dispatch after dispatch), so the last dispatch's reads are a good
//! guess of the next one's. A wrong guess costs only a wasted read; a read the guess missed is
//! made when asked, as without a plan.
//!
//! One small JSON file per hook in the compiled-code cache directory (per unit, like the
//! cache): `<cache>/hook-tool-reads/<hook>.json`. A missing or unreadable file is an empty
//! plan; writing one is best effort (it is a hint, never state).

use std::path::{Path, PathBuf};

use super::runner::{MAX_PREFETCH, is_read};

#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    /// `[tool, [args...]]`, in the order the last dispatch made them.
    reads: Vec<(String, Vec<String>)>,
}

/// Where the plan of one hook is kept.
pub struct ReadPlan {
    path: PathBuf,
}

impl ReadPlan {
    /// The plan of `hook` (a hook or action name) under the cache directory.
    pub fn new(cache_dir: &Path, hook: &str) -> Self {
        let name: String = hook
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        ReadPlan {
            path: cache_dir
                .join("hook-tool-reads")
                .join(format!("{name}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The reads to start; empty when there is no usable plan.
    pub fn load(&self) -> Vec<(String, Vec<String>)> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(_) => return Vec::new(),
        };
        match serde_json::from_slice::<PlanFile>(&text) {
            Ok(p) => p
                .reads
                .into_iter()
                .filter(|(t, a)| is_read(t, a))
                .take(MAX_PREFETCH)
                .collect(),
            Err(e) => {
                tracing::debug!("ignoring the read plan {}: {e}", self.path.display());
                Vec::new()
            }
        }
    }

    /// Keep `reads` for the next dispatch (written to a temporary file, then renamed, so a
    /// killed dispatch leaves the old plan or the new one). An unchanged plan is not rewritten.
    pub fn save(&self, reads: &[(String, Vec<String>)]) {
        let reads: Vec<_> = reads
            .iter()
            .filter(|(t, a)| is_read(t, a))
            .take(MAX_PREFETCH)
            .cloned()
            .collect();
        if self.load() == reads {
            return;
        }
        let body = serde_json::to_vec(&PlanFile { reads }).expect("strings serialise");
        let write = || -> std::io::Result<()> {
            let dir = self.path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.tmp", std::process::id()));
            std::fs::write(&tmp, &body)?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            tracing::debug!("cannot keep the read plan {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, args: &[&str]) -> (String, Vec<String>) {
        (
            tool.to_string(),
            args.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn a_plan_round_trips_and_keeps_only_reads() {
        let dir = tempfile::tempdir().unwrap();
        let plan = ReadPlan::new(dir.path(), "database-peers-relation-changed");
        assert!(plan.load().is_empty(), "no file: an empty plan");
        plan.save(&[
            call("state-get", &["--format=json"]),
            call("relation-set", &["-r", "database-peers:1", "--file", "-"]),
            call("secret-get", &["--format=json", "--label", "x"]),
            call("secret-get", &["secret:abc", "--label", "x"]),
            call(
                "secret-get",
                &["--format=json", "--label", "x", "--refresh"],
            ),
        ]);
        assert_eq!(
            plan.load(),
            vec![
                call("state-get", &["--format=json"]),
                call("secret-get", &["--format=json", "--label", "x"]),
            ]
        );
    }

    #[test]
    fn a_garbled_plan_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let plan = ReadPlan::new(dir.path(), "actions/get-password");
        assert!(
            plan.path()
                .ends_with("hook-tool-reads/actions_get-password.json")
        );
        std::fs::create_dir_all(plan.path().parent().unwrap()).unwrap();
        std::fs::write(plan.path(), b"{not json").unwrap();
        assert!(plan.load().is_empty());
        // Nor does a plan that names a write start it.
        std::fs::write(
            plan.path(),
            br#"{"reads":[["relation-set",["-r","1","--file","-"]],["is-leader",["--format=json"]]]}"#,
        )
        .unwrap();
        assert_eq!(plan.load(), vec![call("is-leader", &["--format=json"])]);
    }
}
