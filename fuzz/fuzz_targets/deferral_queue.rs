//! Arbitrary bytes as the stored deferral queue: parsed or rejected, never a panic; a parsed
//! queue round-trips exactly.
#![no_main]
use charm_host::dispatch::Queue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(q) = Queue::parse(&raw) {
        assert_eq!(Queue::parse(&q.to_json()).unwrap(), q);
    }
});
