//! What every worker and the control plane share: the configuration snapshot,
//! the neighbour table, per-worker counters, the owner function, and the stop
//! and failure flags. No packet buffers and no DPDK objects: the LVS core
//! (`core`) runs on it with or without EAL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use arc_swap::ArcSwap;

use crate::counters::WorkerCounters;
use crate::events::EventCounters;
use crate::neigh::NeighTable;
use crate::owner::Owners;
use crate::snapshot::Snapshot;

pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub neigh: NeighTable,
    pub stop: AtomicBool,
    /// One slot per worker.
    pub counters: Vec<WorkerCounters>,
    /// Per worker: what the modes did to forwarded packets (TOA, MSS, ...).
    pub events: Vec<EventCounters>,
    /// Which worker owns a packet's connection.
    pub owners: Owners,
    /// Why a worker failed, if one did (then `stop` is set too).
    pub failure: Mutex<Option<String>>,
    /// The SYN proxy's cookie secret (`crate::synproxy`).
    pub syn_secret: crate::synproxy::Secret,
    /// Connection sync's master side: the workers' queues (`crate::sync`).
    pub sync: crate::sync::SyncOut,
}

impl Shared {
    /// State for `owners.nworkers` workers starting on `snapshot`.
    pub fn new(snapshot: Snapshot, owners: Owners) -> Shared {
        let n = owners.nworkers;
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            neigh: NeighTable::default(),
            stop: AtomicBool::new(false),
            counters: (0..n).map(|_| WorkerCounters::default()).collect(),
            events: (0..n).map(|_| EventCounters::default()).collect(),
            owners,
            failure: Mutex::new(None),
            syn_secret: crate::synproxy::Secret::random(),
            sync: crate::sync::SyncOut::new(n),
        }
    }

    /// Record that a worker failed and stop the others.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// 64 random bits from the system (`/dev/urandom`; std's randomly keyed
/// hasher where that cannot be read): hash seeds, the SYN cookie secret.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
