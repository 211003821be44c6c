use async_trait::async_trait;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time. In a simulated world `sleep_ms` advances virtual time and returns at once.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    async fn sleep_ms(&self, ms: u64);
}

/// Randomness: a CSPRNG in production, a seeded generator in a simulated world.
pub trait Random: Send + Sync {
    fn bytes(&self, len: u32) -> Vec<u8>;
}

/// Real time.
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    async fn sleep_ms(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await
    }
}

/// The operating system's CSPRNG.
pub struct SystemRandom;

impl Random for SystemRandom {
    fn bytes(&self, len: u32) -> Vec<u8> {
        use rand::Rng;
        let mut out = vec![0u8; len as usize];
        rand::rng().fill_bytes(&mut out);
        out
    }
}
