//! Per-worker counters, summed when read.
//!
//! Each worker writes only its own slot (a relaxed load + store, which compiles
//! to a plain add: no lock prefix, no shared cache line); the control plane sums
//! the slots. Slots are cache-line aligned so workers never false-share.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::{AclDrops, DropReason, TrafficStats};

/// Upper bound on worker lcores per dataplane.
pub const MAX_WORKERS: usize = 32;

#[derive(Default)]
#[repr(align(64))]
struct TrafficSlot {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// ipvsadm `--stats` counters of one service or dest, one slot per worker.
pub struct Traffic {
    slots: Box<[TrafficSlot]>,
}

/// One zeroed slot per possible worker.
fn per_worker<T: Default>() -> Box<[T]> {
    (0..MAX_WORKERS).map(|_| T::default()).collect()
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            slots: per_worker(),
        }
    }
}

impl Traffic {
    #[inline]
    pub fn conn(&self, worker: usize) {
        bump(&self.slots[worker % MAX_WORKERS].conns, 1);
    }
    #[inline]
    pub fn inbound(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % MAX_WORKERS];
        bump(&s.inpkts, 1);
        bump(&s.inbytes, bytes as u64);
    }
    #[inline]
    pub fn outbound(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % MAX_WORKERS];
        bump(&s.outpkts, 1);
        bump(&s.outbytes, bytes as u64);
    }
    /// A burst's worth at once (see [`TrafficBatch`]).
    #[inline]
    pub fn add(&self, worker: usize, b: &BatchEntry) {
        let s = &self.slots[worker % MAX_WORKERS];
        if b.inpkts != 0 {
            bump(&s.inpkts, b.inpkts);
            bump(&s.inbytes, b.inbytes);
        }
        if b.outpkts != 0 {
            bump(&s.outpkts, b.outpkts);
            bump(&s.outbytes, b.outbytes);
        }
    }
    pub fn sum(&self) -> TrafficStats {
        let mut t = TrafficStats::default();
        for s in self.slots.iter() {
            t.conns += s.conns.load(Ordering::Relaxed);
            t.inpkts += s.inpkts.load(Ordering::Relaxed);
            t.outpkts += s.outpkts.load(Ordering::Relaxed);
            t.inbytes += s.inbytes.load(Ordering::Relaxed);
            t.outbytes += s.outbytes.load(Ordering::Relaxed);
        }
        t
    }
}

#[derive(Default)]
#[repr(align(64))]
struct AclSlot {
    blacklist: AtomicU64,
    whitelist: AtomicU64,
}

/// Packets a service's access lists dropped, one slot per worker.
pub struct AclCounters {
    slots: Box<[AclSlot]>,
}

impl Default for AclCounters {
    fn default() -> Self {
        AclCounters {
            slots: per_worker(),
        }
    }
}

impl AclCounters {
    /// One packet dropped as `r` (`AclBlacklist` or `AclWhitelist`).
    #[inline]
    pub fn count(&self, worker: usize, r: DropReason) {
        let s = &self.slots[worker % MAX_WORKERS];
        match r {
            DropReason::AclBlacklist => bump(&s.blacklist, 1),
            _ => bump(&s.whitelist, 1),
        }
    }
    pub fn sum(&self) -> AclDrops {
        let mut d = AclDrops::default();
        for s in self.slots.iter() {
            d.blacklist += s.blacklist.load(Ordering::Relaxed);
            d.whitelist += s.whitelist.load(Ordering::Relaxed);
        }
        d
    }
}

#[derive(Default)]
#[repr(align(64))]
struct CountSlot(AtomicU64);

/// One event count (a service's `service_conn_limit` refusals), one slot
/// per worker.
pub struct WorkerCount {
    slots: Box<[CountSlot]>,
}

impl Default for WorkerCount {
    fn default() -> Self {
        WorkerCount {
            slots: per_worker(),
        }
    }
}

impl WorkerCount {
    #[inline]
    pub fn bump(&self, worker: usize) {
        bump(&self.slots[worker % MAX_WORKERS].0, 1);
    }
    pub fn sum(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// One dest's (and service's) traffic within a burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchEntry {
    pub dest: u32,
    pub service: u32,
    pub inpkts: u64,
    pub inbytes: u64,
    pub outpkts: u64,
    pub outbytes: u64,
}

impl BatchEntry {
    /// One packet of `bytes` in or out.
    #[inline(always)]
    fn count(&mut self, inbound: bool, bytes: usize) {
        if inbound {
            self.inpkts += 1;
            self.inbytes += bytes as u64;
        } else {
            self.outpkts += 1;
            self.outbytes += bytes as u64;
        }
    }
}

/// Traffic of one burst per (dest, service), added to the shared `--stats`
/// counters once per burst and dest instead of once per packet (one hash
/// lookup per dest, not per packet).
#[derive(Default)]
pub struct TrafficBatch {
    entries: arrayvec::ArrayVec<BatchEntry, 32>,
    /// Where a dest's entry was last put, by the dest id's low bits: a
    /// hint, confirmed against the entry (stale after a drain, or another
    /// dest's when two share the bits: then the entries are searched).
    hint: [u8; HINTS],
}

/// Hint slots of a [`TrafficBatch`].
const HINTS: usize = 32;

impl TrafficBatch {
    /// Count a packet of `bytes` (IP length) in or out. `false` when the
    /// batch is full of other dests: flush it first. Always inlined into
    /// the burst loop: left to the compiler's cost model it sat at the
    /// threshold, and unrelated changes elsewhere in the crate flipped it
    /// (+20 instructions a NAT packet; the eighth round).
    #[inline(always)]
    pub fn add(&mut self, dest: u32, service: u32, inbound: bool, bytes: usize) -> bool {
        let h = dest as usize % HINTS;
        let at = usize::from(self.hint[h]);
        // The common case: the hinted entry is the dest's (one bounds check,
        // one compare); else the search, out of line.
        if let Some(e) = self.entries.get_mut(at).filter(|e| e.dest == dest) {
            e.count(inbound, bytes);
            return true;
        }
        self.add_unhinted(h, dest, service, inbound, bytes)
    }

    /// [`TrafficBatch::add`] when the hint does not name `dest`'s entry:
    /// the entries searched, a new one made if `dest` has none.
    #[inline(never)]
    fn add_unhinted(
        &mut self,
        h: usize,
        dest: u32,
        service: u32,
        inbound: bool,
        bytes: usize,
    ) -> bool {
        let e = match self.entries.iter().position(|e| e.dest == dest) {
            Some(i) => &mut self.entries[i],
            None => {
                self.hint[h] = self.entries.len() as u8;
                let fresh = BatchEntry {
                    dest,
                    service,
                    ..Default::default()
                };
                if self.entries.try_push(fresh).is_err() {
                    return false;
                }
                self.entries.last_mut().expect("just pushed")
            }
        };
        e.count(inbound, bytes);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Take the burst's entries.
    pub fn drain(&mut self) -> arrayvec::Drain<'_, BatchEntry, 32> {
        self.entries.drain(..)
    }
}

/// Worker-wide counters: drops by reason, rx and tx, hand-over.
#[repr(align(64))]
pub struct WorkerCounters {
    drops: [AtomicU64; DropReason::COUNT],
    /// Packets received from the NIC queues.
    pub rx: AtomicU64,
    /// Packets the NIC took for transmission.
    pub tx: AtomicU64,
    /// Connections in this worker's table (a gauge, refreshed every few loops).
    pub conns: AtomicU64,
    /// How many connections its table holds (set once, when the table is made).
    pub conn_capacity: AtomicU64,
    /// Packets passed to their owner worker.
    pub handed_over: AtomicU64,
    /// Packets other workers passed to this one.
    pub handover_in: AtomicU64,
    /// Scheduler tables this worker's thread built: stays 0, tables come
    /// built in the snapshot (a check for tests and the benchmark).
    pub sched_tables_built: AtomicU64,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            conns: AtomicU64::new(0),
            conn_capacity: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
            handover_in: AtomicU64::new(0),
            sched_tables_built: AtomicU64::new(0),
        }
    }
}

impl WorkerCounters {
    #[inline]
    pub fn drop(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }
    #[inline]
    pub fn drop_n(&self, r: DropReason, n: u64) {
        bump(&self.drops[r as usize], n);
    }
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        bump(c, n);
    }
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_sums_worker_slots() {
        let t = Traffic::default();
        t.conn(0);
        t.conn(3);
        t.inbound(0, 60);
        t.inbound(1, 40);
        t.outbound(2, 1500);
        let s = t.sum();
        assert_eq!(
            (s.conns, s.inpkts, s.inbytes, s.outpkts, s.outbytes),
            (2, 2, 100, 1, 1500)
        );
    }

    #[test]
    fn a_batch_adds_up_per_dest() {
        let mut b = TrafficBatch::default();
        assert!(b.add(7, 1, true, 60));
        assert!(b.add(7, 1, true, 40));
        assert!(b.add(7, 1, false, 1500));
        assert!(b.add(8, 1, true, 60));
        let t = Traffic::default();
        for e in b.drain().filter(|e| e.dest == 7) {
            t.add(2, &e);
        }
        let s = t.sum();
        assert_eq!(
            (s.inpkts, s.inbytes, s.outpkts, s.outbytes),
            (2, 100, 1, 1500)
        );
        assert!(b.is_empty());
        for d in 0..32 {
            assert!(b.add(d, 1, true, 1));
        }
        assert!(!b.add(99, 1, true, 1), "full of other dests");
        assert!(b.add(3, 1, true, 1), "a dest it holds still counts");
    }

    /// Dests sharing a hint slot, and hints left stale by a drain, still
    /// count each dest in its own entry.
    #[test]
    fn a_batch_hint_is_only_a_hint() {
        let mut b = TrafficBatch::default();
        for round in 0..3u64 {
            for d in [1, 33, 65, 1, 2, 33] {
                assert!(b.add(d, 9, true, 10));
            }
            let mut got: Vec<_> = b.drain().map(|e| (e.dest, e.inpkts, e.inbytes)).collect();
            got.sort();
            assert_eq!(
                got,
                [(1, 2, 20), (2, 1, 10), (33, 2, 20), (65, 1, 10)],
                "{round}"
            );
        }
    }

    #[test]
    fn drops_count_by_reason() {
        let w = WorkerCounters::default();
        w.drop(DropReason::NoService);
        w.drop_n(DropReason::BadIpv4, 3);
        assert_eq!(w.drops(DropReason::NoService), 1);
        assert_eq!(w.drops(DropReason::BadIpv4), 3);
        assert_eq!(w.drops(DropReason::Truncated), 0);
    }
}
