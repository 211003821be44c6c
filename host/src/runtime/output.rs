//! Guest stdout/stderr: captured per event, bounded, then written to the host log tagged with
//! the plugin name. The guest never learns that output was dropped; it must not be able to
//! fail or stall because of its own logging.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Buf>>,
}

struct Buf {
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl GuestOutput {
    pub fn new(cap: usize) -> Self {
        GuestOutput {
            inner: Arc::new(Mutex::new(Buf {
                bytes: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    pub fn text(&self) -> String {
        let b = self.inner.lock().unwrap();
        let mut s = String::from_utf8_lossy(&b.bytes).into_owned();
        if b.dropped > 0 {
            s.push_str(&format!("\n[{} more bytes of output dropped]\n", b.dropped));
        }
        s
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut b = self.inner.lock().unwrap();
        let room = b.cap.saturating_sub(b.bytes.len());
        let take = room.min(buf.len());
        b.bytes.extend_from_slice(&buf[..take]);
        b.dropped += buf.len() - take;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
