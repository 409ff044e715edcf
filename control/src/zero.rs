//! `ipvsadm -Z`: counters read as zero from the moment of the call.
//!
//! The dataplane's traffic counters are written by the workers (one slot
//! each) and never reset under them; zeroing keeps, per service and per real
//! server, what the counters read when `-Z` ran, and every listing subtracts
//! it. A service or real server that is deleted forgets its baseline, so one
//! added again under the same address starts from its new counters' zero.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use dataplane::{ServiceKey, Stats, TrafficStats};

/// A service (`dest` None) or one of its real servers.
type Key = (ServiceKey, Option<(IpAddr, u16)>);

#[derive(Default)]
pub struct Baselines(Mutex<HashMap<Key, TrafficStats>>);

fn minus(t: &mut TrafficStats, b: &TrafficStats) {
    t.conns = t.conns.saturating_sub(b.conns);
    t.inpkts = t.inpkts.saturating_sub(b.inpkts);
    t.outpkts = t.outpkts.saturating_sub(b.outpkts);
    t.inbytes = t.inbytes.saturating_sub(b.inbytes);
    t.outbytes = t.outbytes.saturating_sub(b.outbytes);
}

impl Baselines {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, TrafficStats>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Zero the counters of `only` (every service when `None`) as `now` reads them.
    pub fn zero(&self, now: &Stats, only: Option<ServiceKey>) {
        let mut m = self.map();
        for s in now
            .services
            .iter()
            .filter(|s| only.is_none_or(|k| k == s.key))
        {
            m.insert((s.key, None), s.traffic);
            for d in &s.dests {
                m.insert((s.key, Some((d.addr, d.port))), d.traffic);
            }
        }
    }

    /// `stats` as they read since the last zeroing.
    pub fn apply(&self, stats: &mut Stats) {
        let m = self.map();
        if m.is_empty() {
            return;
        }
        for s in &mut stats.services {
            if let Some(b) = m.get(&(s.key, None)) {
                minus(&mut s.traffic, b);
            }
            for d in &mut s.dests {
                if let Some(b) = m.get(&(s.key, Some((d.addr, d.port)))) {
                    minus(&mut d.traffic, b);
                }
            }
        }
    }

    pub fn forget_service(&self, key: &ServiceKey) {
        self.map().retain(|k, _| k.0 != *key);
    }

    pub fn forget_dest(&self, key: &ServiceKey, addr: IpAddr, port: u16) {
        self.map().remove(&(*key, Some((addr, port))));
    }

    pub fn clear(&self) {
        self.map().clear();
    }
}
