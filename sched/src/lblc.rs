//! Locality-based least connection (ip_vs_lblc.c), for cache clusters: each
//! destination address (`daddr`) is bound to one dest in a table; a flow goes to its
//! bound dest unless that dest is unavailable or "overloaded" in lblc's sense
//! (`active > weight` while some dest has `active * 2 < weight`, i.e. runs at under
//! half load). Otherwise wlc picks a dest and the binding is replaced.
//!
//! No clock is read. Time comes in through [`Scheduler::advance`]: entries unused
//! for [`EXPIRATION_SECS`] (kernel `lblc_expiration`, 24 h) are dropped by a full
//! check every [`CHECK_PERIOD_SECS`], and, while the table holds more than
//! [`TABLE_MAX`] entries, those unused for [`ENTRY_TIMEOUT_SECS`] go too (the
//! kernel's `ip_vs_lblc_check_expire`). Independently of time the table never
//! exceeds [`HARD_MAX`] entries: at that size the least recently used half goes.
//! Bindings name the dest by address and port, so they survive snapshot reorders;
//! the kernel also requires a cached dest to be unthrottled, here any unavailable
//! dest (including over its `-x` threshold) is rebound.
//!
//! The bindings are runtime state, not configuration, so they live in each
//! worker's cursor ([`Lblc`]) and the table ([`LblcTable`]) is empty. A new
//! configuration snapshot ([`Scheduler::retable`]) keeps every binding, as the
//! kernel keeps its entries when dests change: one whose dest left the service is
//! rebound at its next lookup, or ages out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::{is_table, least_weighted, Dest, FlowKey, SchedTable, Scheduler};

pub const EXPIRATION_SECS: u64 = 24 * 60 * 60;
pub const CHECK_PERIOD_SECS: u64 = 30 * 60;
pub const ENTRY_TIMEOUT_SECS: u64 = 60;
/// Kernel `max_size`: 16 entries per bucket of a 1024-bucket table.
pub const TABLE_MAX: usize = 16 * 1024;
pub const HARD_MAX: usize = 4 * TABLE_MAX;

/// lblc/lblcr `is_overloaded`: more active connections than weight, while a dest
/// at under half load (`active * 2 < weight`) exists.
pub(crate) fn lblc_overloaded(d: &Dest, dests: &[Dest]) -> bool {
    u64::from(d.active_conns()) > u64::from(d.effective_weight())
        && dests
            .iter()
            .any(|o| u64::from(o.active_conns()) * 2 < u64::from(o.effective_weight()))
}

/// Index of the dest with this address and port, trying `hint` first.
pub(crate) fn find_dest(dests: &[Dest], id: (IpAddr, u16), hint: usize) -> Option<usize> {
    let is = |d: &Dest| d.addr == id.0 && d.port == id.1;
    if dests.get(hint).is_some_and(is) {
        return Some(hint);
    }
    dests.iter().position(is)
}

/// Time bookkeeping shared with lblcr: seconds from `advance`, plus a use sequence
/// number for size-bounded eviction without a clock.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    pub now: u64,
    pub seq: u64,
    pub last_check: u64,
}

impl Clock {
    pub fn tick(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Drop the least recently used half of `table` (by use sequence).
pub(crate) fn evict_half<V>(table: &mut HashMap<IpAddr, V>, seq_of: impl Fn(&V) -> u64) {
    let mut seqs: Vec<u64> = table.values().map(&seq_of).collect();
    if seqs.is_empty() {
        return;
    }
    let mid = seqs.len() / 2;
    let (_, &mut cut, _) = seqs.select_nth_unstable(mid);
    table.retain(|_, v| seq_of(v) >= cut);
}

#[derive(Debug)]
struct Entry {
    dest: (IpAddr, u16),
    hint: usize,
    lastuse: u64,
    seq: u64,
}

/// lblc's table: nothing is a function of the configuration alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct LblcTable;

impl SchedTable for LblcTable {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(Lblc::new())
    }
}

/// lblc's cursor: this worker's destination-address bindings and clock.
#[derive(Debug, Default)]
pub struct Lblc {
    table: HashMap<IpAddr, Entry>,
    clock: Clock,
}

impl Lblc {
    pub fn new() -> Lblc {
        Lblc::default()
    }

    /// Number of destination addresses bound.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let seq = self.clock.tick();
        let now = self.clock.now;
        if let Some(e) = self.table.get_mut(&key.dst) {
            e.lastuse = now;
            e.seq = seq;
            if let Some(i) = find_dest(dests, e.dest, e.hint) {
                e.hint = i;
                if dests[i].is_available() && !lblc_overloaded(&dests[i], dests) {
                    return Some(i);
                }
            }
        }
        let i = least_weighted(dests, Dest::conn_overhead)?;
        if self.table.len() >= HARD_MAX && !self.table.contains_key(&key.dst) {
            evict_half(&mut self.table, |e| e.seq);
        }
        self.table.insert(
            key.dst,
            Entry {
                dest: (dests[i].addr, dests[i].port),
                hint: i,
                lastuse: now,
                seq,
            },
        );
        Some(i)
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<LblcTable>(table)
    }

    fn advance(&mut self, now_secs: u64) {
        self.clock.now = now_secs;
        if now_secs.saturating_sub(self.clock.last_check) >= CHECK_PERIOD_SECS {
            self.clock.last_check = now_secs;
            self.table
                .retain(|_, e| now_secs.saturating_sub(e.lastuse) < EXPIRATION_SECS);
        }
        if self.table.len() > TABLE_MAX {
            self.table
                .retain(|_, e| now_secs.saturating_sub(e.lastuse) < ENTRY_TIMEOUT_SECS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn to(daddr: u32) -> FlowKey {
        let mut k = key(daddr);
        k.dst = IpAddr::V4(Ipv4Addr::from(daddr));
        k
    }

    #[test]
    fn sticks_until_overloaded_with_a_half_loaded_peer() {
        let dests = dests_with_weights(&[10, 10]);
        let mut s = Lblc::new();
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        // Bound dest busier than the other: still sticky (locality first).
        dests[0].counters.set(10, 0);
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        // active 11 > weight 10, and dest 1 has 0*2 < 10: rebinding to the wlc pick.
        dests[0].counters.set(11, 0);
        assert_eq!(s.schedule(&dests, &to(1)), Some(1));
        dests[0].counters.set(0, 0);
        assert_eq!(
            s.schedule(&dests, &to(1)),
            Some(1),
            "the new binding sticks"
        );
        // Over weight but nobody at half load: stays.
        dests[1].counters.set(11, 0);
        dests[0].counters.set(5, 0);
        assert_eq!(s.schedule(&dests, &to(1)), Some(1));
    }

    #[test]
    fn expiry_by_advance_and_hard_bound() {
        let dests = dests_with_weights(&[1, 1]);
        let mut s = Lblc::new();
        s.schedule(&dests, &to(1));
        s.advance(EXPIRATION_SECS + CHECK_PERIOD_SECS);
        assert!(s.is_empty());
        for a in 0..(HARD_MAX as u32 + 10) {
            s.schedule(&dests, &to(a));
        }
        assert!(s.len() <= HARD_MAX);
        assert!(s.table.contains_key(&to(HARD_MAX as u32 + 9).dst));
    }

    #[test]
    fn retable_keeps_bindings_even_to_departed_dests() {
        let dests = dests_with_weights(&[10, 10, 10]);
        let mut s = Lblc::new();
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        dests[0].counters.set(5, 0);
        assert_eq!(s.schedule(&dests, &to(2)), Some(1));
        dests[1].counters.set(5, 0);
        assert_eq!(s.schedule(&dests, &to(3)), Some(2));
        // New snapshot: dest 0 leaves, the others swap places.
        let next = vec![dests[2].clone(), dests[1].clone()];
        let t = crate::compile("lblc", &crate::SchedFlags::default(), &next).unwrap();
        assert!(s.retable(&t, &next));
        assert_eq!(s.len(), 3, "every binding kept");
        // Bindings follow their dest to its new index, though it is now busier.
        assert_eq!(s.schedule(&next, &to(2)), Some(1));
        assert_eq!(s.schedule(&next, &to(3)), Some(0));
        // The binding to the departed dest is replaced by wlc's pick.
        next[1].counters.set(9, 0);
        assert_eq!(s.schedule(&next, &to(1)), Some(0));
        let wlc = crate::compile("wlc", &crate::SchedFlags::default(), &next).unwrap();
        assert!(!s.retable(&wlc, &next));
        assert_eq!(s.len(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// A bound dest is kept exactly when it is available and not lblc-overloaded;
        /// otherwise the pick is wlc's.
        #[test]
        fn follows_overload_rule(weights in prop::collection::vec(0u32..6, 1..6),
                                 actives in prop::collection::vec(0u32..12, 6),
                                 daddrs in prop::collection::vec(0u32..4, 1..20)) {
            let dests = dests_with_weights(&weights);
            let mut s = Lblc::new();
            let mut bound: HashMap<u32, usize> = HashMap::new();
            for (step, &a) in daddrs.iter().enumerate() {
                for (i, d) in dests.iter().enumerate() {
                    d.counters.set(actives[(i + step) % actives.len()], 0);
                }
                let got = s.schedule(&dests, &to(a));
                let keep = bound.get(&a).copied().filter(|&b| dests[b].is_available() && !lblc_overloaded(&dests[b], &dests));
                let expect = keep.or_else(|| least_weighted(&dests, Dest::conn_overhead));
                prop_assert_eq!(got, expect);
                if let Some(g) = got { bound.insert(a, g); }
            }
        }
    }
}
