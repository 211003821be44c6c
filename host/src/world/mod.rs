//! The simulated world: every capability family in memory, deterministic for a seed.
//!
//! A [`World`] holds one [`WorldState`]. Each dispatch on a unit gets a [`UnitSession`], the
//! per-unit view that implements every capability trait. Juju writes (relation data, secrets,
//! controller state, ports) go to a shadow copy that [`crate::capability::Juju::commit`]
//! applies, as Juju applies hook-tool writes only when a hook succeeds; Kubernetes, Pebble,
//! Patroni and PostgreSQL are real systems and change at once.

pub mod check;
pub mod faults;
mod juju;
mod kubernetes;
mod patroni;
mod pebble;
mod postgresql;
pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::bindings::Error;
use crate::capability::{CapResult, Capabilities};
pub use faults::{Fault, FaultKind};
pub use juju::config_defaults;
pub use state::*;

/// A databag that a committed dispatch changed: (relation id, owner app or unit name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BagChange {
    pub relation_id: u32,
    pub owner: String,
}

pub(crate) struct Inner {
    pub state: WorldState,
    pub rng: StdRng,
}

/// A shared, mutable simulated world.
#[derive(Clone)]
pub struct World {
    inner: Arc<Mutex<Inner>>,
}

impl World {
    pub fn new(state: WorldState) -> Self {
        let rng = StdRng::seed_from_u64(state.seed);
        World {
            inner: Arc::new(Mutex::new(Inner { state, rng })),
        }
    }

    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let state: WorldState = serde_yaml::from_str(text)?;
        Ok(World::new(state))
    }

    pub fn state(&self) -> WorldState {
        self.inner.lock().unwrap().state.clone()
    }

    /// The state, moved out when this is the last handle on the world (copied otherwise).
    pub fn into_state(self) -> WorldState {
        match Arc::try_unwrap(self.inner) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()).state,
            Err(shared) => shared.lock().unwrap().state.clone(),
        }
    }

    /// Look at the state without copying it.
    pub fn read<R>(&self, f: impl FnOnce(&WorldState) -> R) -> R {
        f(&self.inner.lock().unwrap().state)
    }

    pub fn now_ms(&self) -> u64 {
        self.read(|s| s.now_ms)
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        f(&mut self.inner.lock().unwrap().state)
    }

    /// A per-unit view for one dispatch.
    pub fn session(&self, unit: &str) -> Arc<UnitSession> {
        Arc::new(UnitSession {
            world: self.clone(),
            unit: unit.to_string(),
            shadow: Mutex::new(None),
            changes: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
        })
    }

    /// The capabilities of one unit for one dispatch, and the session behind them.
    pub fn capabilities(&self, unit: &str) -> (Capabilities, Arc<UnitSession>) {
        let s = self.session(unit);
        (Capabilities::from_one(s.clone()), s)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Advance virtual time and let the modelled systems (Patroni) move.
    pub fn advance(&self, ms: u64) {
        let mut g = self.lock();
        g.state.now_ms += ms;
        patroni::tick(&mut g.state);
    }

    /// Let the modelled systems catch up with the present.
    pub fn tick(&self) {
        patroni::tick(&mut self.lock().state);
    }
}

/// The Juju writes of one dispatch, not yet committed.
#[derive(Debug, Clone)]
pub(crate) struct Shadow {
    pub relations: Vec<RelationState>,
    pub secrets: Vec<SecretState>,
    pub unit_state: Bag,
    pub ports: Vec<PortState>,
}

/// What a Juju read sees, borrowed: this dispatch's shadow, or the committed world when the
/// dispatch has written nothing yet (reads then copy nothing).
pub(crate) struct JujuView<'a> {
    pub relations: &'a [RelationState],
    pub secrets: &'a [SecretState],
    pub unit_state: &'a Bag,
    pub ports: &'a [PortState],
}

impl Shadow {
    pub(crate) fn view(&self) -> JujuView<'_> {
        JujuView {
            relations: &self.relations,
            secrets: &self.secrets,
            unit_state: &self.unit_state,
            ports: &self.ports,
        }
    }
}

/// One unit's view of the world for one dispatch.
pub struct UnitSession {
    pub(crate) world: World,
    pub(crate) unit: String,
    pub(crate) shadow: Mutex<Option<Shadow>>,
    /// Bags changed by the last commit.
    pub(crate) changes: Mutex<Vec<BagChange>>,
    /// What the plugins logged through `juju.log`, in order.
    pub(crate) logs: Mutex<Vec<LogLine>>,
}

/// One `juju-log` line of a plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

impl UnitSession {
    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lock().unwrap().clone()
    }

    /// The databags the commit changed (the simulator fans out relation-changed from these).
    pub fn committed_changes(&self) -> Vec<BagChange> {
        self.changes.lock().unwrap().clone()
    }

    /// Fail with an injected fault if a rule matches.
    pub(crate) fn fault(&self, g: &mut Inner, family: &str, call: &str) -> CapResult<()> {
        use rand::RngExt;
        let Inner { state, rng } = g;
        for f in state.faults.iter_mut() {
            if !f.matches(family, call, &self.unit) {
                continue;
            }
            if let Some(p) = f.probability
                && rng.random::<f64>() >= p
            {
                continue;
            }
            if let Some(t) = &mut f.times {
                *t -= 1;
            }
            return Err(f.error(family, call));
        }
        Ok(())
    }

    /// The unit number (`app/3` -> 3).
    pub(crate) fn unit_number(&self) -> u32 {
        self.unit
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `app/3` -> `app-3`.
    pub(crate) fn pod_name(&self) -> String {
        self.unit.replace('/', "-")
    }
}

/// `app-3` -> `app/3`.
pub fn unit_of_pod(pod: &str) -> String {
    match pod.rsplit_once('-') {
        Some((a, n)) => format!("{a}/{n}"),
        None => pod.to_string(),
    }
}

pub(crate) fn unknown_unit(unit: &str) -> Error {
    Error::not_found(format!("unit {unit} is not in the model"))
}

pub(crate) fn bag_to_kvs(b: &Bag) -> Vec<crate::bindings::Kv> {
    b.iter()
        .map(|(k, v)| crate::bindings::Kv::new(k, v))
        .collect()
}

pub(crate) fn kvs_to_bag(kvs: &[crate::bindings::Kv]) -> Bag {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect::<BTreeMap<_, _>>()
}

#[async_trait::async_trait]
impl crate::capability::Clock for UnitSession {
    fn now_ms(&self) -> u64 {
        self.world.lock().state.now_ms
    }
    /// Virtual time: the sleep advances the world's clock and returns at once.
    async fn sleep_ms(&self, ms: u64) {
        self.world.advance(ms);
    }
}

impl crate::capability::Random for UnitSession {
    fn bytes(&self, len: u32) -> Vec<u8> {
        use rand::Rng;
        let mut out = vec![0u8; len as usize];
        self.world.lock().rng.fill_bytes(&mut out);
        out
    }
}
