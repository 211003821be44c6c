//! The deferral queue, with the ops semantics of spec 9.4, kept in controller-side state.

use serde::{Deserialize, Serialize};

use crate::bindings::Event;

/// The state key of the queue. The `charm-host.` prefix is refused to plugins.
pub const QUEUE_KEY: &str = "charm-host.deferred";
/// Where an unreadable queue is kept aside (suffixed with the time), never dropped.
pub const CORRUPT_KEY_PREFIX: &str = "charm-host.deferred.corrupt.";

/// One deferred (event, plugin) pair: what ops calls a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub plugin: String,
    pub event: Event,
}

impl Notice {
    /// Identity for duplicate suppression: same plugin, same event and snapshot.
    pub fn same_as(&self, plugin: &str, event: &Event) -> bool {
        let mut a = self.event.clone();
        let mut b = event.clone();
        a.deferred = false;
        b.deferred = false;
        self.plugin == plugin && a == b
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub version: u32,
    pub notices: Vec<Notice>,
}

impl Queue {
    pub fn parse(raw: &str) -> Result<Queue, String> {
        let q: Queue = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        if q.version != 1 {
            return Err(format!("unsupported queue version {}", q.version));
        }
        Ok(q)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&Queue {
            version: 1,
            notices: self.notices.clone(),
        })
        .expect("queue serialises")
    }

    pub fn contains(&self, plugin: &str, event: &Event) -> bool {
        self.notices.iter().any(|n| n.same_as(plugin, event))
    }
}
