//! The neighbour table (IPv4 by ARP, IPv6 by NDP; both handled in `host.rs`).
//!
//! Resolved entries are shared by all workers: learning is rare, so the table
//! is a copy-on-write map behind an `ArcSwap` (lock-free reads on the packet
//! path). Each worker keeps its own small bounded queue of packets waiting for
//! resolution and its own request pacing, so no worker waits on another.

use std::collections::HashMap;
use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use arrayvec::ArrayVec;

/// Packets waiting for ARP, per worker.
pub const PENDING_MAX: usize = 64;
/// How long a packet may wait for its neighbour, ms.
pub const PENDING_TIMEOUT_MS: u64 = 1000;
/// Minimum gap between two requests for the same address, ms.
pub const REQUEST_GAP_MS: u64 = 200;
/// How long a request of ours makes an answer welcome, ms.
pub const SOLICITED_MS: u64 = 3000;
/// How long the old MAC of an entry has to answer the probe a conflicting
/// claim started, ms: a claim repeated after that moves the entry.
pub const PROBE_MS: u64 = 1000;

/// What a neighbour claim did (ARP sender, NDP advertisement or solicitation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learnt {
    /// A new entry (we asked, or the sender addressed us).
    Learned,
    /// The entry already said so.
    Same,
    /// Unsolicited and new, or while a probe runs: not taken.
    Ignored,
    /// It would move an existing entry: the old MAC must be probed (a
    /// unicast request); the entry stays until the probe goes unanswered.
    Probe([u8; 6]),
    /// The old MAC answered a probe: it stays, the other claim was false.
    Conflict,
    /// The probe went unanswered and the claim came again: moved.
    Moved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: [u8; 6],
    pub port: usize,
    pub learned_ms: u64,
}

/// Shared resolved neighbours: (port index, address) -> MAC.
#[derive(Default)]
pub struct NeighTable {
    map: ArcSwap<NeighMap>,
    /// Bumped whenever an entry appears or changes: next hops cached on
    /// connections are stale once it moves.
    generation: AtomicU64,
    /// Requests we sent: (port, address) -> when (copy-on-write, rare).
    asked: ArcSwap<HashMap<(usize, IpAddr), u64>>,
    /// Entries a conflicting claim put on probation: -> (claimed MAC, since).
    probes: ArcSwap<Probes>,
}

/// Entries on probation: (port, address) -> (the MAC claimed, since when).
type Probes = HashMap<(usize, IpAddr), ([u8; 6], u64)>;

/// ahash: the lookup runs for every forwarded packet.
pub type NeighMap = HashMap<(usize, IpAddr), Neighbour, ahash::RandomState>;

/// A worker's view of the neighbour table: the map it loaded last, reloaded
/// only when the table's generation moved, so a lookup is one hash probe
/// (no `ArcSwap` load, which costs more than the probe).
pub struct NeighView {
    generation: u64,
    map: Arc<NeighMap>,
}

impl Default for NeighView {
    fn default() -> NeighView {
        NeighView {
            // Never a table's generation: the first lookup loads.
            generation: u64::MAX,
            map: Arc::default(),
        }
    }
}

impl NeighView {
    /// `table`'s MAC for `addr` on port index `port`, as of now.
    #[inline]
    pub fn lookup(&mut self, table: &NeighTable, port: usize, addr: IpAddr) -> Option<[u8; 6]> {
        let g = table.generation();
        if g != self.generation {
            // The map is stored before the generation moves: this one is at
            // least as new as `g`.
            self.map = table.map.load_full();
            self.generation = g;
        }
        self.map.get(&(port, addr)).map(|n| n.mac)
    }
}

impl NeighTable {
    /// Changes so far (see `generation`).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Learn or refresh an entry; copies the map only when something changed.
    pub fn learn(&self, port: usize, addr: IpAddr, mac: [u8; 6], now_ms: u64) {
        if self
            .map
            .load()
            .get(&(port, addr))
            .is_some_and(|n| n.mac == mac)
        {
            return;
        }
        self.map.rcu(|m| {
            let mut m = NeighMap::clone(m);
            m.insert(
                (port, addr),
                Neighbour {
                    mac,
                    port,
                    learned_ms: now_ms,
                },
            );
            m
        });
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A request for `addr` went out on `port`: its answer is welcome.
    pub fn asked(&self, port: usize, addr: IpAddr, now_ms: u64) {
        self.asked.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|_, t| now_ms.saturating_sub(*t) < SOLICITED_MS);
            m.insert((port, addr), now_ms);
            m
        });
    }

    fn was_asked(&self, port: usize, addr: IpAddr, now_ms: u64) -> bool {
        self.asked
            .load()
            .get(&(port, addr))
            .is_some_and(|t| now_ms.saturating_sub(*t) < SOLICITED_MS)
    }

    /// Someone says `addr` is at `mac` on `port`; `addressed_to_us`: it asked
    /// for an address of ours (a request or a solicitation), which makes its
    /// own address worth knowing. As Linux: no entry is created from what
    /// nobody asked for, and an entry does not move on one frame's word.
    pub fn claim(
        &self,
        port: usize,
        addr: IpAddr,
        mac: [u8; 6],
        now_ms: u64,
        addressed_to_us: bool,
    ) -> Learnt {
        let key = (port, addr);
        let existing = self.map.load().get(&key).map(|n| n.mac);
        let probe = self.probes.load().get(&key).copied();
        let end_probe = |t: &NeighTable| {
            t.probes.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.remove(&key);
                m
            });
        };
        match existing {
            None if addressed_to_us || self.was_asked(port, addr, now_ms) => {
                self.learn(port, addr, mac, now_ms);
                Learnt::Learned
            }
            None => Learnt::Ignored,
            Some(old) if old == mac => {
                if probe.is_some() {
                    end_probe(self);
                    Learnt::Conflict
                } else {
                    Learnt::Same
                }
            }
            Some(old) => match probe {
                Some((claimed, since))
                    if claimed == mac && now_ms.saturating_sub(since) >= PROBE_MS =>
                {
                    end_probe(self);
                    self.learn(port, addr, mac, now_ms);
                    Learnt::Moved
                }
                Some(_) => Learnt::Ignored,
                None => {
                    self.probes.rcu(|m| {
                        let mut m = HashMap::clone(m);
                        m.insert(key, (mac, now_ms));
                        m
                    });
                    Learnt::Probe(old)
                }
            },
        }
    }

    pub fn entries(&self) -> Vec<(IpAddr, Neighbour)> {
        self.map.load().iter().map(|(k, v)| (k.1, *v)).collect()
    }
}

/// A resolved next hop (port index < 256, MAC) packed in a connection's
/// per-direction scratch word: bit 63 set, port in bits 48..56, MAC below.
#[inline]
pub fn pack_hop(port: usize, mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac);
    1 << 63 | ((port as u64 & 0xff) << 48) | u64::from_be_bytes(b)
}

/// The next hop [`pack_hop`] stored, if any.
#[inline]
pub fn unpack_hop(w: u64) -> Option<(usize, [u8; 6])> {
    if w >> 63 == 0 {
        return None;
    }
    let b = w.to_be_bytes();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[2..]);
    Some((((w >> 48) & 0xff) as usize, mac))
}

/// A packet waiting for its next hop's MAC.
pub struct Pending<B> {
    pub mbuf: B,
    pub port: usize,
    pub gateway: IpAddr,
    pub since_ms: u64,
}

/// What [`PendingQueue::drain`] took out: (packets whose neighbour is now
/// known, with its MAC), (packets that waited too long).
pub type Drained<B> = (Vec<(Pending<B>, [u8; 6])>, Vec<Pending<B>>);

/// One worker's waiting packets and request pacing.
pub struct PendingQueue<B> {
    pub queue: ArrayVec<Pending<B>, PENDING_MAX>,
    last_request: HashMap<IpAddr, u64>,
    /// Requests this worker may still send now (a token bucket).
    tokens: u32,
    refilled_ms: u64,
}

/// ARP requests and solicitations one worker sends at most, per second, and
/// in a burst: a flood toward unknown next hops must not become one.
pub const REQUESTS_PER_S: u32 = 100;
pub const REQUEST_BURST: u32 = 32;

impl<B> Default for PendingQueue<B> {
    fn default() -> Self {
        PendingQueue {
            queue: ArrayVec::new(),
            last_request: HashMap::new(),
            tokens: REQUEST_BURST,
            refilled_ms: 0,
        }
    }
}

impl<B> PendingQueue<B> {
    /// Queue a packet; gives it back when the queue is full.
    pub fn push(&mut self, p: Pending<B>) -> Result<(), Pending<B>> {
        self.queue.try_push(p).map_err(|e| e.element())
    }

    /// Whether this worker may send one more request now (any address);
    /// takes the token when it may.
    pub fn take_request_token(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        let earned = elapsed * u64::from(REQUESTS_PER_S) / 1000;
        if earned > 0 {
            self.tokens = (self.tokens as u64 + earned).min(u64::from(REQUEST_BURST)) as u32;
            self.refilled_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Whether a request for `addr` should go out now (paced).
    pub fn should_request(&mut self, addr: IpAddr, now_ms: u64) -> bool {
        match self.last_request.get(&addr) {
            Some(&t) if now_ms.saturating_sub(t) < REQUEST_GAP_MS => false,
            _ => {
                if self.last_request.len() > 4 * PENDING_MAX {
                    self.last_request.clear();
                }
                self.last_request.insert(addr, now_ms);
                true
            }
        }
    }

    /// Remove the packets whose neighbour is now known or that timed out.
    /// `resolve` gives the MAC if known. Returns (ready, expired).
    pub fn drain(
        &mut self,
        now_ms: u64,
        mut resolve: impl FnMut(usize, IpAddr) -> Option<[u8; 6]>,
    ) -> Drained<B> {
        let mut ready = Vec::new();
        let mut expired = Vec::new();
        let mut keep = ArrayVec::<Pending<B>, PENDING_MAX>::new();
        for p in self.queue.drain(..) {
            if let Some(mac) = resolve(p.port, p.gateway) {
                ready.push((p, mac));
            } else if now_ms.saturating_sub(p.since_ms) > PENDING_TIMEOUT_MS {
                expired.push(p);
            } else {
                keep.push(p);
            }
        }
        self.queue = keep;
        (ready, expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_pack_and_unpack() {
        let mac = [0x02, 0xab, 0xcd, 0xef, 0x01, 0xff];
        assert_eq!(unpack_hop(pack_hop(3, mac)), Some((3, mac)));
        assert_eq!(unpack_hop(pack_hop(255, [0xff; 6])), Some((255, [0xff; 6])));
        assert_eq!(unpack_hop(pack_hop(0, [0; 6])), Some((0, [0; 6])));
        assert_eq!(unpack_hop(0), None, "a fresh connection has none");
    }

    #[test]
    fn generation_moves_only_when_an_entry_changes() {
        let t = NeighTable::default();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        t.learn(0, a, [2; 6], 1);
        let g = t.generation();
        t.learn(0, a, [2; 6], 2);
        assert_eq!(t.generation(), g, "a refresh changes nothing");
        t.learn(0, a, [3; 6], 3);
        assert!(t.generation() > g, "a new MAC does");
    }

    #[test]
    fn one_forged_frame_does_not_move_an_entry() {
        let t = NeighTable::default();
        let ip: IpAddr = "192.168.0.11".parse().unwrap();
        let (good, evil) = ([2, 0, 0, 0, 0, 0x11], [2, 0, 0, 0, 0, 0xee]);
        let mac = |t: &NeighTable| t.entries().iter().find(|e| e.0 == ip).map(|e| e.1.mac);
        // Unsolicited: no entry from it.
        assert_eq!(t.claim(1, ip, good, 0, false), Learnt::Ignored);
        assert_eq!(mac(&t), None);
        // Asked: learned.
        t.asked(1, ip, 10);
        assert_eq!(t.claim(1, ip, good, 20, false), Learnt::Learned);
        // A forged claim: the old MAC is probed, the entry stays.
        assert_eq!(t.claim(1, ip, evil, 100, false), Learnt::Probe(good));
        assert_eq!(mac(&t), Some(good));
        assert_eq!(t.claim(1, ip, evil, 200, false), Learnt::Ignored);
        // The real server answers the probe: a conflict, it stays.
        assert_eq!(t.claim(1, ip, good, 300, false), Learnt::Conflict);
        assert_eq!(mac(&t), Some(good));
        // A real move: the old MAC stays silent through the probe.
        assert_eq!(t.claim(1, ip, evil, 1000, false), Learnt::Probe(good));
        assert_eq!(t.claim(1, ip, evil, 1500, false), Learnt::Ignored);
        assert_eq!(t.claim(1, ip, evil, 2000, false), Learnt::Moved);
        assert_eq!(mac(&t), Some(evil));
        // Someone asking for our address is worth an entry.
        let other: IpAddr = "192.168.0.50".parse().unwrap();
        assert_eq!(t.claim(1, other, good, 3000, true), Learnt::Learned);
    }

    #[test]
    fn requests_are_rate_limited_per_worker() {
        let mut q: PendingQueue<()> = PendingQueue::default();
        let sent = (0..100).filter(|_| q.take_request_token(1000)).count();
        assert_eq!(sent, REQUEST_BURST as usize, "a burst, then none");
        assert!(!q.take_request_token(1005), "5 ms earn nothing at 100/s");
        assert!(q.take_request_token(1010), "10 ms earn one");
        assert!(!q.take_request_token(1010));
        // A quiet second refills the burst, no more.
        let sent = (0..100).filter(|_| q.take_request_token(3000)).count();
        assert_eq!(sent, REQUEST_BURST as usize);
    }
}
