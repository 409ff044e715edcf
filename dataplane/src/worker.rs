//! One worker lcore: the poll loop, a thin DPDK shell around the LVS core.
//!
//! The shell owns what touches DPDK: the worker's rx/tx queue pair on every
//! port, its mbuf pool, and its ends of the hand-over rings ([`DpdkIo`], the
//! core's `Io`). Each loop it reads the clock, loads the configuration
//! snapshot, feeds rx bursts and handed-over bursts to the core, flushes the
//! hand-over and tx bursts, and between bursts answers control requests
//! (connection listing, timeouts). Everything LVS is in `core` and the modules
//! it calls; nothing on the packet path takes a lock or touches another
//! worker's table.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::Cache;
use arrayvec::ArrayVec;
use conntrack::Timeouts;
use crossbeam::channel::{Receiver, Sender};

use crate::core::{Arrival, Core, CoreConfig, BURST};
use crate::counters::WorkerCounters;
use crate::dpdk::mbuf::Mbuf;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::port::{rx_burst, tx_burst};
use crate::handover::{Flushed, Outbox, Rings};
use crate::io::Io;
use crate::kni::KniRings;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::stats::{ConnEntry, DropReason};

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
    /// Connection sync, backup: install these connections (`crate::sync`).
    SyncInstall(Vec<crate::sync::SyncConn>),
    /// Every connection and template as sync records (a restart saves them).
    SyncDump(Sender<Vec<crate::sync::SyncConn>>),
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

/// The core's I/O on DPDK: mbufs from the worker's pool, tx bursts on its
/// queue of every port, per-peer bursts onto the hand-over rings.
pub struct DpdkIo {
    index: usize,
    shared: Arc<Shared>,
    pool: Arc<Mempool>,
    tx: TxQueues,
    outbox: Outbox,
    rings: Arc<Rings>,
    /// The ports' kernel interfaces, if any.
    kni: Option<Arc<KniRings>>,
}

impl Io for DpdkIo {
    type Buf = Mbuf;

    #[inline]
    fn send(&mut self, port: usize, m: Mbuf) {
        self.tx.push(port, m);
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }

    fn hand_over(&mut self, to: usize, mut m: Mbuf, port: usize) {
        // The owner needs the arrival port (FULLNAT replies, ICMP); not every
        // PMD sets it, so the mbuf carries it across.
        m.set_port(self.tx.ports[port]);
        let f = self.outbox.push(&self.rings, to, m);
        self.count_handed(f);
    }

    fn to_kernel(&mut self, port: usize, m: Mbuf) -> Result<(), Mbuf> {
        match &self.kni {
            Some(k) if k.has(port) => k.up(self.index, port, m),
            _ => Err(m),
        }
    }
}

impl DpdkIo {
    fn count_handed(&self, f: Flushed) {
        let c = &self.shared.counters[self.index];
        if f.sent != 0 {
            WorkerCounters::add(&c.handed_over, f.sent);
        }
        if f.dropped != 0 {
            c.drop_n(DropReason::HandoverFull, f.dropped);
        }
    }

    /// Enqueue the pending hand-over bursts.
    fn flush_handover(&mut self) {
        let f = self.outbox.flush(&self.rings);
        self.count_handed(f);
    }

    /// Transmit what is queued; count sent and refused packets.
    fn flush_tx(&mut self) {
        let (sent, dropped) = (self.tx.sent, self.tx.dropped);
        self.tx.flush();
        let c = &self.shared.counters[self.index];
        WorkerCounters::add(&c.tx, self.tx.sent - sent);
        if self.tx.dropped != dropped {
            c.drop_n(DropReason::TxFull, self.tx.dropped - dropped);
        }
    }

    /// The index of the port with ethdev id `id` (0 if unknown).
    #[inline]
    fn port_index(&self, id: u16) -> usize {
        self.tx.ports.iter().position(|&p| p == id).unwrap_or(0)
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
    /// The ports' kernel interfaces (worker 0 transmits what they send).
    pub kni: Option<Arc<KniRings>>,
}

/// One worker: the LVS core on DPDK I/O, and what the loop needs.
pub struct Worker {
    core: Core<DpdkIo>,
    /// The rings others fill for this worker (the same `Arc` as the core's
    /// I/O holds, kept here so draining needs no clone per loop).
    rings: Arc<Rings>,
    rx_ports: Vec<u16>,
    queue: u16,
    requests: Receiver<Request>,
    adaptive_poll: bool,
    /// Worker 0: what the kernel interfaces send, to transmit.
    kni_down: Option<Arc<KniRings>>,
}

impl Worker {
    pub fn new(
        cfg: WorkerConfig,
        shared: Arc<Shared>,
        pool: Arc<Mempool>,
        rings: Arc<Rings>,
        requests: Receiver<Request>,
    ) -> Worker {
        let nports = cfg.port_ids.len();
        let nworkers = shared.counters.len();
        let io = DpdkIo {
            index: cfg.index,
            shared: shared.clone(),
            pool,
            tx: TxQueues {
                queue: cfg.queue,
                ports: cfg.port_ids.clone(),
                bufs: (0..nports).map(|_| ArrayVec::new()).collect(),
                sent: 0,
                dropped: 0,
            },
            outbox: Outbox::new(cfg.index, nworkers),
            rings: rings.clone(),
            kni: cfg.kni.clone(),
        };
        let core = Core::new(
            CoreConfig {
                index: cfg.index,
                conn_capacity: cfg.conn_capacity,
                hash_seed: cfg.hash_seed,
                advise: crate::dpdk::advise_hugepages,
            },
            shared,
            io,
        );
        Worker {
            kni_down: cfg.kni.filter(|_| cfg.index == 0),
            core,
            rings,
            rx_ports: cfg.port_ids,
            queue: cfg.queue,
            requests,
            adaptive_poll: cfg.adaptive_poll,
        }
    }

    /// Handle what other workers handed over; returns the packet count.
    fn drain_handover(&mut self, snap: &Snapshot, rx: &mut ArrayVec<Mbuf, BURST>) -> usize {
        let me = self.core.index;
        let mut got = 0;
        for from in 0..self.rings.workers() {
            let Some(ring) = self.rings.ring(from, me) else {
                continue;
            };
            let n = ring.dequeue_burst(rx);
            if n == 0 {
                continue;
            }
            got += n;
            let ports: ArrayVec<usize, BURST> = rx
                .iter()
                .map(|m| self.core.io.port_index(m.port()))
                .collect();
            self.core.handle_burst(snap, rx, Arrival::Handed(&ports));
        }
        if got != 0 {
            WorkerCounters::add(&self.core.shared.counters[me].handover_in, got as u64);
        }
        got
    }

    /// The poll loop; returns when `shared.stop` is set.
    pub fn run(&mut self) {
        let hz_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
        let shared = self.core.shared.clone();
        let me = self.core.index;
        let several = shared.counters.len() > 1;
        let mut cache = Cache::new(&shared.snapshot);
        let mut loops: u32 = 0;
        let mut idle: u32 = 0;
        let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while !shared.stop.load(Ordering::Relaxed) {
            self.core.now_ms = crate::dpdk::rdtsc() / hz_ms;
            // A borrow of the cached Arc: no refcount traffic per loop.
            let snap: &Snapshot = cache.load();
            self.core.on_snapshot(snap);
            let mut got = 0;
            for pi in 0..self.rx_ports.len() {
                let n = rx_burst(self.rx_ports[pi], self.queue, &mut rx);
                if n == 0 {
                    continue;
                }
                got += n;
                WorkerCounters::add(&shared.counters[me].rx, n as u64);
                self.core.handle_burst(snap, &mut rx, Arrival::Port(pi));
            }
            if several {
                got += self.drain_handover(snap, &mut rx);
                self.core.io.flush_handover();
            }
            if let Some(k) = &self.kni_down {
                // The mbuf's port field is the port index (set by the host thread).
                let n = k.down(&mut rx);
                for m in rx.drain(..) {
                    let port = usize::from(m.port());
                    if port < self.rx_ports.len() {
                        self.core.io.send(port, m);
                    }
                }
                got += n;
            }
            if !self.core.pending.queue.is_empty() {
                self.core.flush_pending(snap);
            }
            self.core.io.flush_tx();
            self.core.expire(snap);
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(CONTROL_EVERY) {
                self.serve_control(snap);
                self.core.housekeeping();
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
        self.core.io.flush_handover();
        self.core.io.flush_tx();
    }

    fn serve_control(&mut self, snap: &Snapshot) {
        while let Ok(req) = self.requests.try_recv() {
            match req {
                Request::Conns(reply) => {
                    let _ = reply.send(self.core.entries(snap));
                }
                Request::SetTimeouts(t) => self.core.set_timeouts(t),
                Request::Panic(msg) => panic!("{msg}"),
                Request::SyncDump(reply) => {
                    let _ = reply.send(self.core.sync_all(snap));
                }
                Request::SyncInstall(conns) => {
                    for c in &conns {
                        if self.core.sync_install(snap, c).is_err() {
                            self.core.shared.events[self.core.index]
                                .bump(crate::events::Event::SyncRejected);
                        }
                    }
                }
            }
        }
    }
}
