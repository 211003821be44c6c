//! Hostile behaviours for the host's sandbox tests. The event name selects one.
use charm_core::bindings::charm::host::juju::{self, LogLevel};
use charm_core::bindings::charm::host::types::{Event, Outcome};
use charm_core::bindings::{Guest, export_plugin};

struct Hostile;

/// Recursion that lives on the wasm call stack (no address-taken locals).
fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 + recurse(std::hint::black_box(n - 1))
    }
}

/// Recursion whose frames live on the guest's shadow stack in linear memory.
fn recurse_shadow(n: u64) -> u64 {
    let buf = [n as u8; 256];
    std::hint::black_box(&buf);
    if n == 0 {
        0
    } else {
        1 + recurse_shadow(std::hint::black_box(n - 1)) + buf[3] as u64
    }
}

impl Guest for Hostile {
    fn handle(event: Event) -> Result<Outcome, String> {
        match event.name.as_str() {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut chunks = Vec::new();
                loop {
                    chunks.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&chunks);
                }
            }
            "deep-recursion" => {
                std::hint::black_box(recurse(u64::MAX));
                Ok(Outcome::Done)
            }
            "deep-recursion-shadow-stack" => {
                std::hint::black_box(recurse_shadow(u64::MAX));
                Ok(Outcome::Done)
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "huge-string" => {
                // 32 MiB through a host call: the host must bound what it accepts.
                let huge = "x".repeat(32 << 20);
                juju::log(LogLevel::Info, &huge);
                juju::state_set("hostile-huge", &huge)
                    .map_err(|e| format!("{:?}: {}", e.kind, e.message))?;
                Ok(Outcome::Done)
            }
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(s) => Err(format!("escaped: read {} bytes of /etc/passwd", s.len())),
                Err(e) => Err(format!("denied: {e}")),
            },
            "read-env" => {
                let vars: Vec<_> = std::env::vars().collect();
                match std::env::var("HOME") {
                    Ok(v) => Err(format!("escaped: HOME={v}")),
                    Err(_) if vars.is_empty() => Err("denied: empty environment".into()),
                    Err(_) => Err(format!("escaped: {} variables visible", vars.len())),
                }
            }
            "open-socket" => match std::net::TcpStream::connect("127.0.0.1:22") {
                Ok(_) => Err("escaped: connected to 127.0.0.1:22".into()),
                Err(e) => Err(format!("denied: {e}")),
            },
            "defer" => Ok(Outcome::Defer),
            "fail" => Err("failed on purpose".into()),
            "stdout" => {
                println!("hello from the guest's stdout");
                eprintln!("hello from the guest's stderr");
                Ok(Outcome::Done)
            }
            _ => Ok(Outcome::Done),
        }
    }
}

export_plugin!(Hostile);
