//! The on-disk cache of compiled components.
//!
//! Key: the component's SHA-256 and the engine's precompile-compatibility hash, so a new host
//! build or a changed engine configuration never loads old code. Deserialising compiled code
//! is `unsafe` (it is trusted machine code), so an entry whose checksum does not match is
//! deleted and rebuilt, never loaded.
//!
//! An entry is two files: `<key>.cwasm`, exactly what `precompile_component` wrote, and
//! `<key>.sum`, a magic and the SHA-256 of the `.cwasm`. Keeping the compiled code alone in
//! its file lets wasmtime map it (`deserialize_file`) instead of the host reading it into a
//! buffer that wasmtime then copies into fresh executable memory: a dispatch touches the page
//! cache's copy, and only the pages it runs. The checksum is computed through a read-only
//! mapping of the same open file before wasmtime sees it.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The checksum file's magic (version 2: the code in a file of its own).
const MAGIC: &[u8; 8] = b"CHCWSUM2";

/// What happened when a component was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a verified cache entry.
    Hit,
    /// Compiled, and the entry written.
    Compiled,
    /// A corrupt or stale entry was found, discarded and rebuilt.
    Rebuilt,
    /// Compiled, but the entry could not be written (the reason was logged).
    CompiledUncached,
}

pub struct Cache {
    dir: PathBuf,
    engine_key: String,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Cache {
            dir: dir.into(),
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path for a component with this content hash.
    pub fn entry_path(&self, component_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(component_sha256),
            self.engine_key
        ))
    }

    /// The record of a plugin file's digest: `plugin-ids/<name>.id`.
    fn record_path(&self, plugin: &str) -> PathBuf {
        self.dir.join("plugin-ids").join(format!("{plugin}.id"))
    }

    /// The digest recorded for the plugin file `plugin` when it had exactly this identity
    /// (device, inode, size, mtime, ctime: see `FileIdentity`). Only settled files are
    /// recorded, so any later change to the file changes its identity and misses here.
    pub fn known_digest(&self, plugin: &str, identity: &str) -> Option<[u8; 32]> {
        let text = std::fs::read_to_string(self.record_path(plugin)).ok()?;
        let (id, hex_digest) = text.trim_end().rsplit_once(' ')?;
        if id != identity {
            return None;
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).ok()?;
        Some(digest)
    }

    /// Record `digest` for the plugin file with this identity; best effort (a cache that
    /// cannot be written only costs the next process a read and a hash).
    pub fn remember_digest(&self, plugin: &str, identity: &str, digest: &[u8; 32]) {
        if self.known_digest(plugin, identity) == Some(*digest) {
            return;
        }
        let path = self.record_path(plugin);
        let write = || -> anyhow::Result<()> {
            std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
            write_atomically(
                &path,
                format!("{identity} {}\n", hex::encode(digest)).as_bytes(),
            )
        };
        if let Err(e) = write() {
            tracing::debug!("cannot record the digest of plugin {plugin}: {e:#}");
        }
    }

    /// The verified compiled entry for `digest`, when there is one; never compiles (a
    /// corrupt entry is left for [`Cache::load`] to report and rebuild).
    pub fn load_hit(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        load_entry(engine, &self.entry_path(digest)).ok().flatten()
    }

    /// The checksum file of an entry.
    fn sum_path(entry: &Path) -> PathBuf {
        entry.with_extension("sum")
    }

    /// Load the compiled form of `wasm` (whose SHA-256 is `digest`), compiling and storing it
    /// when there is no valid entry.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &[u8; 32],
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(digest);
        let mut rebuilt = false;
        match load_entry(engine, &path) {
            Ok(Some(c)) => return Ok((c, CacheOutcome::Hit)),
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(entry = %path.display(), "unusable compiled-code cache entry ({why}); rebuilding");
                rebuilt = true;
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(Self::sum_path(&path));
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        // SAFETY: produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        let outcome = match self.store(&path, &compiled) {
            Ok(()) if rebuilt => CacheOutcome::Rebuilt,
            Ok(()) => CacheOutcome::Compiled,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "compiled-code cache not writable ({e:#}); continuing without it");
                CacheOutcome::CompiledUncached
            }
        };
        Ok((component, outcome))
    }

    /// Write atomically, the checksum first: a reader never sees a half-written file, and one
    /// that finds the checksum but not yet the code simply compiles (the code it would find
    /// is the same, for the same key).
    fn store(&self, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut sum = Vec::with_capacity(MAGIC.len() + 32);
        sum.extend_from_slice(MAGIC);
        sum.extend_from_slice(&Sha256::digest(compiled));
        write_atomically(&Self::sum_path(path), &sum)?;
        write_atomically(path, compiled)?;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let tmp = path.with_extension(format!("{ext}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The entry at `path`, verified: `Ok(None)` when there is none, `Err(why)` when there is one
/// that must not be loaded (corrupt, without its checksum, or refused by wasmtime as stale).
fn load_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    use std::os::unix::fs::MetadataExt;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let sum = std::fs::read(Cache::sum_path(path)).map_err(|e| format!("no checksum: {e}"))?;
    let expected = verify_sum(&sum)?;
    let opened = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if opened.len() == 0 {
        return Err("empty".into());
    }
    // SAFETY: a read-only mapping, dropped before wasmtime maps the file; entries are only
    // ever replaced by rename, never written in place.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
    if Sha256::digest(&map[..]).as_slice() != expected {
        return Err("checksum mismatch".into());
    }
    drop(map);
    // SAFETY: the file holds exactly what `precompile_component` wrote for this engine
    // configuration (checksum verified above, and the same file is checked below); wasmtime
    // itself checks the version and configuration recorded in the artifact.
    let component = unsafe { Component::deserialize_file(engine, path) }
        .map_err(|e| format!("stale: {e:#}"))?;
    // wasmtime opened the path again: it must still be the file just verified.
    let now = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if (now.dev(), now.ino()) != (opened.dev(), opened.ino()) {
        // Replaced by a concurrent writer's rename meanwhile: not loaded; compiling is safe.
        return Ok(None);
    }
    Ok(Some(component))
}

fn verify_sum(sum: &[u8]) -> Result<&[u8], &'static str> {
    if sum.len() != MAGIC.len() + 32 || &sum[..MAGIC.len()] != MAGIC {
        return Err("bad checksum file");
    }
    Ok(&sum[MAGIC.len()..])
}
