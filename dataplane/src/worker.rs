//! One worker lcore: the poll loop.
//!
//! Each worker owns an rx/tx queue pair on every port, its own connection table,
//! persistence templates and scheduler cursors: nothing on the packet path is
//! shared with a lock. Packets of connections another worker owns go to it on
//! the hand-over rings (`handover`), and the worker drains the rings the others
//! fill for it. It loads the configuration snapshot once per loop, counts every
//! packet it does not forward under exactly one `DropReason`, and answers
//! control requests (connection listing, timeouts) between bursts.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use arrayvec::ArrayVec;
use conntrack::{ConnTable, PersistTable, Timeouts};
use crossbeam::channel::{Receiver, Sender};

use crate::counters::WorkerCounters;
use crate::dpdk::mbuf::Mbuf;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::port::{rx_burst, tx_burst};
use crate::handover::{Flushed, Outbox, Rings};
use crate::neigh::{NeighTable, PendingQueue};
use crate::owner::Owners;
use crate::snapshot::{FastMap, Snapshot};
use crate::stats::{ConnEntry, DropReason};

/// Packets per rx/tx burst.
pub const BURST: usize = 32;
/// Expired connections handled per loop at most: a mass expiry never stalls forwarding.
const EXPIRE_BUDGET: usize = 128;
/// Control requests are polled every this many loops.
const CONTROL_EVERY: u32 = 64;

/// A control-plane request served between bursts.
pub enum Request {
    /// List this worker's connections.
    Conns(Sender<Vec<ConnEntry>>),
    /// Replace the global timeouts.
    SetTimeouts(Timeouts),
    /// Panic (fault injection: proves a failing worker stops the dataplane).
    Panic(String),
}

/// A worker's scheduler of one service: the table its cursor runs over
/// (from the snapshot) and the cursor.
pub type SchedCursor = (Arc<dyn sched::SchedTable>, Box<dyn sched::Scheduler>);

/// What every worker and the control plane share.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub neigh: NeighTable,
    pub stop: AtomicBool,
    pub counters: Vec<WorkerCounters>,
    /// Per worker: what the modes did to forwarded packets (TOA, MSS, ...).
    pub events: Vec<crate::events::EventCounters>,
    /// Which worker owns a packet's connection.
    pub owners: Owners,
    /// Hand-over rings between workers.
    pub rings: Rings,
    /// Why a worker failed, if one did (then `stop` is set too).
    pub failure: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// Record that a worker failed and stop the others.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Where a worker's packets go out: a tx buffer per port.
pub struct TxQueues {
    pub queue: u16,
    pub ports: Vec<u16>,
    pub bufs: Vec<ArrayVec<Mbuf, BURST>>,
    pub sent: u64,
    pub dropped: u64,
}

impl TxQueues {
    #[inline]
    pub fn push(&mut self, port: usize, m: Mbuf) {
        if self.bufs[port].is_full() {
            self.flush_port(port);
        }
        self.bufs[port].push(m);
    }

    fn flush_port(&mut self, port: usize) {
        let (s, d) = tx_burst(self.ports[port], self.queue, &mut self.bufs[port]);
        self.sent += s as u64;
        self.dropped += d as u64;
    }

    pub fn flush(&mut self) {
        for p in 0..self.bufs.len() {
            if !self.bufs[p].is_empty() {
                self.flush_port(p);
            }
        }
    }
}

/// Settings of one worker.
pub struct WorkerConfig {
    pub index: usize,
    pub queue: u16,
    pub port_ids: Vec<u16>,
    pub conn_capacity: u32,
    pub hash_seed: u64,
    pub adaptive_poll: bool,
}

/// A worker's private state.
pub struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub pool: Arc<Mempool>,
    pub conns: ConnTable,
    pub persist: PersistTable,
    /// Per service id: the table this worker's cursor runs over, and the cursor.
    pub scheds: FastMap<u32, SchedCursor>,
    /// Snapshot generation `scheds` was pruned at.
    scheds_gen: u64,
    /// Scheduler tables this lcore's thread had built before this worker
    /// started (EAL threads outlive a dataplane).
    tables_built_before: u64,
    pub pending: PendingQueue,
    pub tx: TxQueues,
    pub now_ms: u64,
    /// FULLNAT local ports this worker hands out.
    pub lports: crate::laddr::LocalPorts,
    /// Addresses this worker has announced with gratuitous ARP (worker 0 only).
    pub announced: Vec<IpAddr>,
    /// Snapshot generation `announced` was brought up to date with.
    pub announced_gen: u64,
    /// Connections this worker created (wrapping): tells a burst whether its
    /// batched lookups may have gone stale.
    pub conns_inserted: u64,
    /// Bursts waiting to be handed to other workers.
    pub outbox: Outbox,
    rx_ports: Vec<u16>,
    requests: Receiver<Request>,
    adaptive_poll: bool,
}

impl Worker {
    pub fn new(
        cfg: WorkerConfig,
        shared: Arc<Shared>,
        pool: Arc<Mempool>,
        requests: Receiver<Request>,
    ) -> Worker {
        let nports = cfg.port_ids.len();
        let nworkers = shared.counters.len();
        Worker {
            index: cfg.index,
            shared,
            pool,
            conns: ConnTable::new(cfg.conn_capacity, cfg.hash_seed, Timeouts::default()),
            persist: PersistTable::new(
                (cfg.conn_capacity / 4).max(1024),
                cfg.hash_seed ^ 0x5bd1_e995,
            ),
            scheds: FastMap::default(),
            scheds_gen: 0,
            tables_built_before: sched::tables_built_on_this_thread(),
            pending: PendingQueue::default(),
            tx: TxQueues {
                queue: cfg.queue,
                ports: cfg.port_ids.clone(),
                bufs: (0..nports).map(|_| ArrayVec::new()).collect(),
                sent: 0,
                dropped: 0,
            },
            now_ms: 0,
            lports: crate::laddr::LocalPorts::new(cfg.index, nworkers),
            announced: Vec::new(),
            announced_gen: 0,
            conns_inserted: 0,
            outbox: Outbox::new(cfg.index, nworkers),
            rx_ports: cfg.port_ids,
            requests,
            adaptive_poll: cfg.adaptive_poll,
        }
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.shared.counters[self.index].drop(r);
    }

    /// Number of workers of the dataplane.
    #[inline]
    pub fn nworkers(&self) -> usize {
        self.shared.counters.len()
    }

    /// The index of the port with ethdev id `id` (0 if unknown).
    #[inline]
    pub fn port_index(&self, id: u16) -> usize {
        self.rx_ports.iter().position(|&p| p == id).unwrap_or(0)
    }

    /// Pass `m`, received on port index `in_port`, to worker `to`.
    pub fn hand_over(&mut self, to: usize, mut m: Mbuf, in_port: usize) {
        m.set_port(self.rx_ports[in_port]);
        let f = self.outbox.push(&self.shared.rings, to, m);
        self.count_handed(f);
    }

    fn count_handed(&self, f: Flushed) {
        let c = &self.shared.counters[self.index];
        if f.sent != 0 {
            WorkerCounters::add(&c.handed_over, f.sent);
        }
        if f.dropped != 0 {
            c.drop_n(DropReason::HandoverFull, f.dropped);
        }
    }

    /// Handle what other workers handed over; returns the packet count.
    /// `shared` is the caller's handle on `self.shared` (cloning the Arc here
    /// would bounce its counter between workers every loop).
    fn drain_handover(
        &mut self,
        shared: &Shared,
        snap: &Snapshot,
        rx: &mut ArrayVec<Mbuf, BURST>,
    ) -> usize {
        let mut got = 0;
        for from in 0..self.nworkers() {
            let Some(ring) = shared.rings.ring(from, self.index) else {
                continue;
            };
            let n = ring.dequeue_burst(rx);
            if n == 0 {
                continue;
            }
            got += n;
            WorkerCounters::add(&shared.counters[self.index].handover_in, n as u64);
            self.handle_burst(snap, rx, None);
        }
        got
    }

    /// The poll loop; returns when `shared.stop` is set.
    pub fn run(&mut self) {
        let hz_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
        let shared = self.shared.clone();
        let mut cache = Cache::new(&shared.snapshot);
        let mut loops: u32 = 0;
        let mut idle: u32 = 0;
        let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while !shared.stop.load(Ordering::Relaxed) {
            self.now_ms = crate::dpdk::rdtsc() / hz_ms;
            // A borrow of the cached Arc: no refcount traffic per loop.
            let snap: &Snapshot = cache.load();
            if self.index == 0 && snap.generation != self.announced_gen {
                self.announce(snap);
            }
            let mut got = 0;
            for pi in 0..self.rx_ports.len() {
                let n = rx_burst(self.rx_ports[pi], self.tx.queue, &mut rx);
                if n == 0 {
                    continue;
                }
                got += n;
                WorkerCounters::add(&shared.counters[self.index].rx, n as u64);
                self.handle_burst(snap, &mut rx, Some(pi));
            }
            if self.nworkers() > 1 {
                got += self.drain_handover(&shared, snap, &mut rx);
                let f = self.outbox.flush(&shared.rings);
                self.count_handed(f);
            }
            if !self.pending.queue.is_empty() {
                self.flush_pending(snap);
            }
            let before = self.tx.sent;
            let dropped_before = self.tx.dropped;
            self.tx.flush();
            WorkerCounters::add(&shared.counters[self.index].tx, self.tx.sent - before);
            if self.tx.dropped != dropped_before {
                self.shared.counters[self.index]
                    .drop_n(DropReason::TxFull, self.tx.dropped - dropped_before);
            }
            self.expire(snap);
            loops = loops.wrapping_add(1);
            if snap.generation != self.scheds_gen {
                // Cursors of services that are gone go with them.
                self.scheds_gen = snap.generation;
                self.scheds
                    .retain(|id, _| snap.services_by_id.contains_key(id));
            }
            if loops.is_multiple_of(CONTROL_EVERY) {
                self.serve_control(snap);
                shared.counters[self.index].sched_tables_built.store(
                    sched::tables_built_on_this_thread() - self.tables_built_before,
                    Ordering::Relaxed,
                );
                shared.counters[self.index]
                    .conns
                    .store(self.conns.len() as u64, Ordering::Relaxed);
                // lblc/lblcr age their per-destination tables on this clock.
                let now_s = self.now_ms / 1000;
                for (_, s) in self.scheds.values_mut() {
                    s.advance(now_s);
                }
            }
            if got == 0 {
                idle = idle.saturating_add(1);
                // Adaptive polling: after a run of empty polls, pause briefly so a
                // shared host gets its core back; traffic resumes within ~50 us.
                if self.adaptive_poll && idle > 256 {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            } else {
                idle = 0;
            }
        }
        let f = self.outbox.flush(&shared.rings);
        self.count_handed(f);
        self.tx.flush();
    }

    fn expire(&mut self, snap: &Snapshot) {
        let now = self.now_ms;
        let lports = &mut self.lports;
        self.conns.expire(now, EXPIRE_BUDGET, |c| {
            crate::core::release_conn(lports, c);
            if let Some(d) = snap.dests.get(&c.dest()) {
                let ctr = if c.is_active() {
                    &d.counters.active
                } else {
                    &d.counters.inactive
                };
                let _ = ctr.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
            }
        });
        self.persist.expire(now, EXPIRE_BUDGET);
    }

    fn serve_control(&mut self, snap: &Snapshot) {
        while let Ok(req) = self.requests.try_recv() {
            match req {
                Request::Conns(reply) => {
                    let mut v = self.list_conns(snap);
                    self.list_templates(snap, &mut v);
                    let _ = reply.send(v);
                }
                Request::SetTimeouts(t) => self.conns.set_timeouts(t),
                Request::Panic(msg) => panic!("{msg}"),
            }
        }
    }

    /// Persistence templates as IPVS lists them among connections: state
    /// `NONE`, client port 0 (the template matches any port of the client).
    fn list_templates(&self, snap: &Snapshot, out: &mut Vec<ConnEntry>) {
        let mut cursor = Some(0u32);
        while let Some(c) = cursor {
            cursor = self.persist.scan(c, 4096, |t| {
                let Some(svc) = snap.services_by_id.get(&t.service()) else {
                    return;
                };
                let Some(i) = svc.meta.iter().position(|m| m.id == t.dest()) else {
                    return;
                };
                out.push(ConnEntry {
                    proto: svc.key.proto,
                    client: (t.client(), 0),
                    virt: (svc.key.vip, svc.key.vport),
                    local: None,
                    dest: (svc.dests[i].addr, svc.dests[i].port),
                    state: "NONE".to_string(),
                    expires_s: (t.expires_at_ms().saturating_sub(self.now_ms) / 1000) as u32,
                    worker: self.index as u32,
                });
            });
        }
    }
}
