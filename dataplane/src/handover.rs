//! Hand-over: a packet that reached a worker other than its connection's
//! owner (`crate::owner`) is passed to the owner on a lock-free
//! single-producer/single-consumer ring, one per ordered pair of workers.
//!
//! The sender collects a burst per peer and enqueues it once per poll loop
//! (or when the burst is full); the owner drains its incoming rings as part of
//! its poll loop and handles those packets as if it had received them, never
//! handing them on again. A full ring drops the packet under
//! `DropReason::HandoverFull`. The mbuf carries the ethdev port it arrived on
//! (`Mbuf::set_port`), which the owner needs for FULLNAT replies.
//!
//! This is the steering that always works (af_packet fanout, net_tap, memif,
//! any NIC): RSS pre-calculation for FULLNAT replies only makes it rarer.

use arrayvec::ArrayVec;

use crate::core::BURST;
use crate::dpdk::mbuf::Mbuf;
use crate::dpdk::ring::Ring;

/// Mbufs a hand-over ring holds (per ordered worker pair).
pub const RING_SIZE: u32 = 1024;

/// The rings between `n` workers: `from * n + to`, none where `from == to`.
pub struct Rings {
    n: usize,
    rings: Vec<Option<Ring>>,
}

impl Rings {
    /// Rings for `n` workers; `tag` makes the ring names unique in the process.
    pub fn new(n: usize, tag: &str) -> Result<Rings, String> {
        let mut rings = Vec::with_capacity(n * n);
        for from in 0..n {
            for to in 0..n {
                rings.push(if from == to {
                    None
                } else {
                    Some(Ring::new(&format!("ho{tag}_{from}_{to}"), RING_SIZE)?)
                });
            }
        }
        Ok(Rings { n, rings })
    }

    /// No rings (what is left after a shutdown freed them).
    pub fn none() -> Rings {
        Rings {
            n: 0,
            rings: Vec::new(),
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    #[inline]
    pub fn ring(&self, from: usize, to: usize) -> Option<&Ring> {
        self.rings.get(from * self.n + to).and_then(Option::as_ref)
    }

    /// Free whatever is still queued (the workers have stopped).
    pub fn drain(&self) {
        for r in self.rings.iter().flatten() {
            let mut b: ArrayVec<Mbuf, BURST> = ArrayVec::new();
            while r.dequeue_burst(&mut b) > 0 {
                b.clear();
            }
        }
    }
}

/// One worker's outgoing bursts, one per peer.
pub struct Outbox {
    me: usize,
    bufs: Vec<ArrayVec<Mbuf, BURST>>,
    /// Whether any buffer holds packets (skips the flush loop when idle).
    pending: bool,
}

/// What a flush did: packets enqueued, packets dropped on full rings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    pub dropped: u64,
}

impl Outbox {
    pub fn new(me: usize, n: usize) -> Outbox {
        Outbox {
            me,
            bufs: (0..n).map(|_| ArrayVec::new()).collect(),
            pending: false,
        }
    }

    /// Queue `m` for worker `to`; sends the burst first when it is full.
    #[inline]
    pub fn push(&mut self, rings: &Rings, to: usize, m: Mbuf) -> Flushed {
        let mut f = Flushed::default();
        if self.bufs[to].is_full() {
            f = self.flush_one(rings, to);
        }
        self.bufs[to].push(m);
        self.pending = true;
        f
    }

    fn flush_one(&mut self, rings: &Rings, to: usize) -> Flushed {
        let buf = &mut self.bufs[to];
        let sent = match rings.ring(self.me, to) {
            Some(r) => r.enqueue_burst(buf),
            None => 0,
        };
        let dropped = buf.len();
        buf.clear(); // frees what the ring did not take
        Flushed {
            sent: sent as u64,
            dropped: dropped as u64,
        }
    }

    /// Enqueue every pending burst.
    pub fn flush(&mut self, rings: &Rings) -> Flushed {
        let mut total = Flushed::default();
        if !self.pending {
            return total;
        }
        for to in 0..self.bufs.len() {
            if !self.bufs[to].is_empty() {
                let f = self.flush_one(rings, to);
                total.sent += f.sent;
                total.dropped += f.dropped;
            }
        }
        self.pending = false;
        total
    }
}
