//! Fragments of load-balanced TCP/UDP datagrams, forwarded without
//! reassembly (kernel IPVS reassembles, Maglev forwards by a table; DPVS,
//! Katran and GLB drop them).
//!
//! The first fragment (offset 0) carries the L4 header: it takes the normal
//! path (connection lookup or scheduling, hand-over to the owning worker, the
//! mode's rewrite, whose incremental L4 checksum update stays right for the
//! whole datagram), and where it went is noted in the worker's **fragment
//! table**, keyed by (source, destination, identification, protocol): a
//! connection and direction, another worker (the owner it was handed to), or
//! the kernel interface. The later fragments have no ports: they find the
//! entry and follow, with the connection's IP-level rewrite only (`xmit`,
//! `wire::nat`). One that comes before its first waits in a small queue
//! until the entry appears, for [`HOLD_TIMEOUT_MS`] at most (`frag_orphan`).
//! RSS hashes fragments on their addresses, so every fragment of a datagram
//! reaches the same worker; hand-over takes them on to the owner in order.
//!
//! Overlapping and duplicate fragments are forwarded as they come: the real
//! server's stack reassembles and decides. Nothing here allocates after the
//! worker starts: the table and the queue are bounded and made once.

use std::collections::VecDeque;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use conntrack::{ConnId, Direction};

use crate::core::{Core, Lookup, Rx};
use crate::events::Event;
use crate::io::Io;
use crate::snapshot::{FastMap, Snapshot};
use crate::stats::DropReason;
use crate::wire::{ip_proto, Frag, IpMeta};
use crate::xmit::Flow;

/// Datagrams a worker's table follows at once; a new one beyond that evicts
/// the oldest (`frag_table_full`).
pub const TABLE_MAX: usize = 4096;
/// How long an entry lasts after its first fragment: the later ones come
/// within milliseconds; a short life limits what a reused identification
/// can misdirect.
pub const TABLE_TIMEOUT_MS: u64 = 3_000;
/// Fragments a worker keeps waiting for their first.
pub const HOLD_MAX: usize = 64;
/// How long a fragment waits for its first.
pub const HOLD_TIMEOUT_MS: u64 = 100;
/// A one-packet-scheduling datagram that comes in fragments keeps its
/// connection this long (instead of none), so its later fragments find it.
pub const OPS_CONN_TIMEOUT_S: u32 = 3;

/// What identifies a datagram's fragments (RFC 791: source, destination,
/// protocol, identification; IPv6 the same with its 32-bit identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

impl FragKey {
    /// The key of fragment `meta` (`meta.frag` set; 0 as the identification
    /// otherwise).
    pub fn of(meta: &IpMeta) -> FragKey {
        FragKey {
            src: meta.src,
            dst: meta.dst,
            id: meta.frag.map_or(0, Frag::id),
            proto: meta.proto,
        }
    }
}

/// Where a datagram's first fragment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Forwarded by this worker for connection `.0`, direction `.1`.
    Conn(ConnId, Direction),
    /// Handed over to worker `.0`, which owns its connection.
    Worker(usize),
    /// Up to the kernel interface: the director's own traffic.
    Kernel,
}

/// The fragment table: datagrams whose first fragment was seen, oldest
/// first. Each entry lasts [`TABLE_TIMEOUT_MS`]; a full table drops its
/// oldest.
pub struct FragTable {
    map: FastMap<FragKey, (Target, u64)>,
    /// Keys in insertion order with their time: one per entry of `map`.
    order: VecDeque<(FragKey, u64)>,
}

impl Default for FragTable {
    fn default() -> Self {
        FragTable {
            // Twice the entries: a hash table this sparse rehashes in place,
            // never growing, however entries come and go.
            map: FastMap::with_capacity_and_hasher(2 * TABLE_MAX, Default::default()),
            order: VecDeque::with_capacity(TABLE_MAX),
        }
    }
}

impl FragTable {
    /// Notes where `key`'s first fragment went. A live entry for it keeps its
    /// time and takes the new target (a duplicate first fragment). `true`
    /// when the table was full and its oldest entry went before its time.
    pub fn insert(&mut self, key: FragKey, target: Target, now_ms: u64) -> bool {
        self.expire(now_ms);
        if let Some(e) = self.map.get_mut(&key) {
            e.0 = target;
            return false;
        }
        let full = self.order.len() >= TABLE_MAX;
        if full {
            if let Some((old, _)) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(key, (target, now_ms));
        self.order.push_back((key, now_ms));
        full
    }

    /// Where `key`'s first fragment went, if that was less than
    /// [`TABLE_TIMEOUT_MS`] ago.
    pub fn get(&self, key: &FragKey, now_ms: u64) -> Option<Target> {
        self.map
            .get(key)
            .filter(|(_, at)| now_ms.saturating_sub(*at) < TABLE_TIMEOUT_MS)
            .map(|&(t, _)| t)
    }

    /// Drops the entries that have timed out (they are the oldest).
    fn expire(&mut self, now_ms: u64) {
        while let Some(&(k, at)) = self.order.front() {
            if now_ms.saturating_sub(at) < TABLE_TIMEOUT_MS {
                break;
            }
            self.order.pop_front();
            self.map.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A fragment waiting for its first.
pub struct Held<B> {
    key: FragKey,
    buf: B,
    meta: IpMeta,
    /// The port index it arrived on (always from a NIC queue).
    port: usize,
    since_ms: u64,
}

/// One worker's fragment state: the table and the fragments waiting.
pub struct Frags<B> {
    pub table: FragTable,
    /// Oldest first; at most [`HOLD_MAX`].
    held: VecDeque<Held<B>>,
}

impl<B> Default for Frags<B> {
    fn default() -> Self {
        Frags {
            table: FragTable::default(),
            held: VecDeque::with_capacity(HOLD_MAX),
        }
    }
}

impl<B> Frags<B> {
    /// Fragments waiting for their first.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl<I: Io> Core<I> {
    /// A fragment, classified (`meta.frag` set). TCP/UDP fragments are
    /// forwarded as described in the module doc; others (ICMP, protocols the
    /// director does not track) go up to the kernel when they are for an
    /// own address (it reassembles and answers: a large ping), else are
    /// dropped (`fragment`).
    pub(crate) fn handle_frag(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        meta: &IpMeta,
        lookup: Lookup,
    ) {
        if !matches!(meta.proto, ip_proto::TCP | ip_proto::UDP) {
            if snap.is_local(meta.dst) {
                return self.up_or_drop(m, at.port(), DropReason::Fragment);
            }
            return self.count_drop(DropReason::Fragment);
        }
        if meta.has_l4() {
            self.handle_ip(snap, m, at, meta, lookup);
            if !self.frags.held.is_empty() {
                self.frag_release(snap, meta);
            }
        } else {
            self.frag_rest(snap, m, at, meta);
        }
    }

    /// Notes where the first fragment `meta` went (nothing for any other
    /// packet): its datagram's later fragments follow it.
    #[inline]
    pub(crate) fn frag_note(&mut self, meta: &IpMeta, target: Target) {
        if !matches!(meta.frag, Some(Frag::First(_))) {
            return;
        }
        if self
            .frags
            .table
            .insert(FragKey::of(meta), target, self.now_ms)
        {
            self.shared.events[self.index].bump(Event::FragTableFull);
        }
    }

    /// A fragment after the first: where its first went, or wait for it.
    fn frag_rest(&mut self, snap: &Snapshot, m: I::Buf, at: Rx, meta: &IpMeta) {
        let key = FragKey::of(meta);
        match self.frags.table.get(&key, self.now_ms) {
            Some(Target::Conn(id, dir)) => {
                // The connection must still be the one the first fragment
                // took (its slot may have been reused since).
                let f = self
                    .conns
                    .get(id)
                    .filter(|c| {
                        let k = c.key(dir);
                        k.proto() == meta.proto && k.src() == meta.src && k.dst() == meta.dst
                    })
                    .map(Flow::of);
                match f {
                    Some(f) => self.xmit(snap, m, meta, id, dir, &f),
                    None => self.count_drop(DropReason::FragOrphan),
                }
            }
            Some(Target::Worker(w)) => match at {
                Rx::Nic(port) => self.io.hand_over(w, m, port),
                Rx::Handed(_) => self.count_drop(DropReason::FragOrphan),
            },
            Some(Target::Kernel) => self.up_or_drop(m, at.port(), DropReason::NoService),
            None => match at {
                Rx::Nic(port) => {
                    if self.frags.held.len() >= HOLD_MAX {
                        return self.count_drop(DropReason::FragOrphan);
                    }
                    self.frags.held.push_back(Held {
                        key,
                        buf: m,
                        meta: *meta,
                        port,
                        since_ms: self.now_ms,
                    });
                    self.shared.events[self.index].bump(Event::FragHeld);
                }
                // Its first fragment came on the same ring before it, and was
                // not forwarded.
                Rx::Handed(_) => self.count_drop(DropReason::FragOrphan),
            },
        }
    }

    /// The first fragment `meta` was handled: the fragments of its datagram
    /// that came before it follow now, if it went anywhere.
    fn frag_release(&mut self, snap: &Snapshot, meta: &IpMeta) {
        let key = FragKey::of(meta);
        if self.frags.table.get(&key, self.now_ms).is_none() {
            return;
        }
        let mut ready: ArrayVec<Held<I::Buf>, HOLD_MAX> = ArrayVec::new();
        let mut i = 0;
        while i < self.frags.held.len() {
            if self.frags.held[i].key == key {
                if let Some(h) = self.frags.held.remove(i) {
                    ready.push(h);
                }
            } else {
                i += 1;
            }
        }
        for h in ready {
            self.frag_rest(snap, h.buf, Rx::Nic(h.port), &h.meta);
        }
    }

    /// Fragments that waited [`HOLD_TIMEOUT_MS`] for their first in vain are
    /// dropped (`frag_orphan`).
    pub(crate) fn frag_sweep(&mut self) {
        let now = self.now_ms;
        while let Some(h) = self.frags.held.front() {
            if now.saturating_sub(h.since_ms) < HOLD_TIMEOUT_MS {
                break;
            }
            self.frags.held.pop_front();
            self.count_drop(DropReason::FragOrphan);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::from([10, 0, 0, 2]),
            dst: IpAddr::from([10, 0, 0, 100]),
            id,
            proto: ip_proto::UDP,
        }
    }

    #[test]
    fn entries_time_out_and_the_oldest_makes_room() {
        let mut t = FragTable::default();
        assert!(!t.insert(key(1), Target::Worker(1), 1000));
        assert_eq!(t.get(&key(1), 1000), Some(Target::Worker(1)));
        // A duplicate first fragment: the new target, the old time.
        assert!(!t.insert(key(1), Target::Kernel, 2000));
        assert_eq!(t.get(&key(1), 3999), Some(Target::Kernel));
        assert_eq!(t.get(&key(1), 1000 + TABLE_TIMEOUT_MS), None);
        assert_eq!(t.get(&key(2), 1000), None);
        // Timed-out entries go when the next comes.
        assert!(!t.insert(key(2), Target::Kernel, 1000 + TABLE_TIMEOUT_MS));
        assert_eq!(t.len(), 1);
        // Full: the oldest goes first.
        let now = 10_000;
        for id in 0..TABLE_MAX as u32 {
            assert!(!t.insert(key(100 + id), Target::Worker(0), now));
        }
        assert_eq!(t.len(), TABLE_MAX);
        assert!(t.insert(key(7), Target::Worker(1), now + 1));
        assert_eq!(t.get(&key(100), now + 1), None, "the oldest went");
        assert_eq!(t.get(&key(101), now + 1), Some(Target::Worker(0)));
        assert_eq!(t.get(&key(7), now + 1), Some(Target::Worker(1)));
        assert_eq!(t.len(), TABLE_MAX);
    }

    #[test]
    fn the_table_never_grows_its_allocation() {
        let mut t = FragTable::default();
        let (cap, order_cap) = (t.map.capacity(), t.order.capacity());
        for id in 0..20 * TABLE_MAX as u32 {
            t.insert(key(id), Target::Kernel, u64::from(id / 64));
        }
        // (hashbrown's capacity counts tombstones against it: it may shrink,
        // never grow without a new allocation.)
        assert!(t.map.capacity() <= cap, "{} > {cap}", t.map.capacity());
        assert_eq!(t.order.capacity(), order_cap);
        assert!(t.len() <= TABLE_MAX);
    }
}
