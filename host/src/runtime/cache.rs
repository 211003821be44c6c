//! The on-disk cache of compiled components.
//!
//! Key: the component's SHA-256 and the engine's precompile-compatibility hash, so a new host
//! build or a changed engine configuration never loads old code. Each entry carries a SHA-256
//! of its own bytes; deserialising compiled code is `unsafe` (it is trusted machine code), so
//! an entry whose checksum does not match is deleted and rebuilt, never loaded.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"CHCWASM1";

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
        if let Ok(bytes) = std::fs::read(&path) {
            match verify(&bytes) {
                Ok(body) => {
                    // SAFETY: the body is exactly what `precompile_component` wrote for this
                    // engine configuration (checksum verified above); wasmtime itself checks
                    // the version and configuration recorded in the header.
                    match unsafe { Component::deserialize(engine, body) } {
                        Ok(c) => return Ok((c, CacheOutcome::Hit)),
                        Err(e) => {
                            tracing::warn!(entry = %path.display(), "stale compiled-code cache entry ({e:#}); rebuilding");
                            rebuilt = true;
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(entry = %path.display(), "corrupt compiled-code cache entry ({why}); rebuilding");
                    rebuilt = true;
                }
            }
            let _ = std::fs::remove_file(&path);
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

    /// Write atomically: a reader never sees a half-written entry.
    fn store(&self, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&Sha256::digest(compiled))?;
        f.write_all(compiled)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn verify(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("bad header");
    }
    let (sum, body) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch");
    }
    Ok(body)
}
