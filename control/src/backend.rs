//! What the control plane needs from a dataplane, as a trait.
//!
//! `dpvsd` implements it with the real DPDK [`dataplane::Dataplane`]; tests use
//! [`FakeBackend`], which records every configuration it is given, so the whole
//! gRPC and `dpvsctl` path runs without EAL. Nothing here validates: the store does.

use std::sync::Mutex;

use dataplane::{ConfigDesc, ConnEntry, Stats};

use crate::store::Timeouts;

/// A dataplane as the control plane drives it.
pub trait Backend: Send + Sync + 'static {
    /// Publishes a full configuration; an error leaves the previous one in force.
    fn apply(&self, desc: &ConfigDesc) -> Result<(), String>;
    /// Counters summed over workers; may take a few milliseconds.
    fn stats(&self) -> Stats;
    /// Every tracked connection; may take ~100 ms (call from a blocking thread).
    fn connections(&self) -> Vec<ConnEntry>;
    /// Port names in config order.
    fn port_names(&self) -> Vec<String>;
    /// Connection idle timeouts (ipvsadm `--set`), full values (no zeros).
    fn set_timeouts(&self, t: Timeouts);
    /// Event counters (`toa_inserted`, `proxy_protocol_sent`, ...) summed over
    /// workers, every event listed. Backends without events return none.
    fn events(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Publishes a configuration with DPVS extras (FULLNAT local addresses).
    /// Backends without them ignore `ext`.
    fn apply_ext(&self, desc: &ConfigDesc, ext: &dataplane::ExtDesc) -> Result<(), String> {
        let _ = ext;
        self.apply(desc)
    }
    /// Connection sync, master: start or stop queueing records.
    fn sync_master(&self, on: bool) {
        let _ = on;
    }
    /// Connection sync, master: the records queued, at most `max`.
    fn sync_drain(&self, max: usize, out: &mut Vec<dataplane::sync::SyncConn>) {
        let _ = (max, out);
    }
    /// Connection sync, backup: install these connections.
    fn sync_install(&self, conns: Vec<dataplane::sync::SyncConn>) {
        let _ = conns;
    }
    /// Every connection and template as sync records (a restart saves them).
    fn sync_dump(&self) -> Vec<dataplane::sync::SyncConn> {
        Vec::new()
    }
}

#[cfg(feature = "dataplane")]
impl Backend for dataplane::Dataplane {
    fn apply(&self, desc: &ConfigDesc) -> Result<(), String> {
        dataplane::Dataplane::apply(self, desc).map_err(|e| e.to_string())
    }
    fn stats(&self) -> Stats {
        dataplane::Dataplane::stats(self)
    }
    fn connections(&self) -> Vec<ConnEntry> {
        dataplane::Dataplane::connections(self)
    }
    fn port_names(&self) -> Vec<String> {
        dataplane::Dataplane::port_names(self)
    }
    fn events(&self) -> Vec<(&'static str, u64)> {
        dataplane::Dataplane::events(self)
    }
    fn apply_ext(&self, desc: &ConfigDesc, ext: &dataplane::ExtDesc) -> Result<(), String> {
        dataplane::Dataplane::apply_ext(self, desc, ext).map_err(|e| e.to_string())
    }
    fn sync_master(&self, on: bool) {
        dataplane::Dataplane::sync_master(self, on);
    }
    fn sync_drain(&self, max: usize, out: &mut Vec<dataplane::sync::SyncConn>) {
        dataplane::Dataplane::sync_drain(self, max, out);
    }
    fn sync_install(&self, conns: Vec<dataplane::sync::SyncConn>) {
        dataplane::Dataplane::sync_install(self, conns);
    }
    fn sync_dump(&self) -> Vec<dataplane::sync::SyncConn> {
        dataplane::Dataplane::sync_dump(self)
    }
    fn set_timeouts(&self, t: Timeouts) {
        let mut ct = self.base_timeouts();
        ct.set_ipvsadm(t.tcp_s, t.tcp_fin_s, t.udp_s);
        dataplane::Dataplane::set_timeouts(self, ct);
    }
}

/// A dataplane stand-in for tests: remembers what it was given, returns canned
/// counters and connections, and can be told to refuse the next `apply`.
#[derive(Debug, Default)]
pub struct FakeBackend {
    ports: Vec<String>,
    applied: Mutex<Vec<ConfigDesc>>,
    fail_next: Mutex<Option<String>>,
    stats: Mutex<Stats>,
    conns: Mutex<Vec<ConnEntry>>,
    timeouts: Mutex<Option<Timeouts>>,
    ext: Mutex<Option<dataplane::ExtDesc>>,
    events: Mutex<Vec<(&'static str, u64)>>,
}

impl FakeBackend {
    pub fn new(ports: &[&str]) -> FakeBackend {
        FakeBackend {
            ports: ports.iter().map(|p| p.to_string()).collect(),
            ..FakeBackend::default()
        }
    }

    /// Every configuration applied so far, oldest first.
    pub fn applied(&self) -> Vec<ConfigDesc> {
        lock(&self.applied).clone()
    }

    /// The configuration in force (the last one applied), if any.
    pub fn current(&self) -> Option<ConfigDesc> {
        lock(&self.applied).last().cloned()
    }

    /// Makes the next `apply` fail with `reason`.
    pub fn fail_next_apply(&self, reason: &str) {
        *lock(&self.fail_next) = Some(reason.to_string());
    }

    /// The last timeouts set, if any.
    pub fn timeouts(&self) -> Option<Timeouts> {
        *lock(&self.timeouts)
    }

    pub fn set_stats(&self, stats: Stats) {
        *lock(&self.stats) = stats;
    }

    pub fn set_connections(&self, conns: Vec<ConnEntry>) {
        *lock(&self.conns) = conns;
    }

    /// The DPVS extras of the last `apply_ext`, if any.
    pub fn current_ext(&self) -> Option<dataplane::ExtDesc> {
        lock(&self.ext).clone()
    }

    pub fn set_events(&self, events: Vec<(&'static str, u64)>) {
        *lock(&self.events) = events;
    }
}

/// Locks ignoring poisoning: the fake's data stays usable after a failed test thread.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend for FakeBackend {
    fn apply(&self, desc: &ConfigDesc) -> Result<(), String> {
        if let Some(reason) = lock(&self.fail_next).take() {
            return Err(reason);
        }
        lock(&self.applied).push(desc.clone());
        Ok(())
    }
    fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }
    fn connections(&self) -> Vec<ConnEntry> {
        lock(&self.conns).clone()
    }
    fn port_names(&self) -> Vec<String> {
        self.ports.clone()
    }
    fn set_timeouts(&self, t: Timeouts) {
        *lock(&self.timeouts) = Some(t);
    }
    fn events(&self) -> Vec<(&'static str, u64)> {
        lock(&self.events).clone()
    }
    fn apply_ext(&self, desc: &ConfigDesc, ext: &dataplane::ExtDesc) -> Result<(), String> {
        self.apply(desc)?;
        *lock(&self.ext) = Some(ext.clone());
        Ok(())
    }
}
