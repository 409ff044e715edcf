//! The LVS core of a worker: classify, connection lookup, scheduling of new
//! connections, persistence (what `ip_vs_core.c` and `ip_vs_conn.c` do), and
//! the worker's LVS state ([`Core`]).
//!
//! The core is generic over its I/O ([`Io`]: a packet buffer type, send,
//! alloc, hand-over), so it runs and is tested without EAL on byte buffers;
//! the worker loop (`worker`: rx, tx, clock, control requests) is a shell
//! around it. Forwarding itself (rewrites, route, neighbour) is in `xmit`;
//! ARP, NDP and ICMP echo for the director's own addresses are in `host`;
//! ICMP errors about tracked connections in `icmp_err`; fragments in `frag`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrayvec::ArrayVec;
use conntrack::{
    ConnId, ConnTable, Direction, FlowKey, NewConn, PersistTable, Timeouts, Transition, Tuple,
};

use crate::config::ForwardMode;
use crate::frag::Target;
use crate::io::Io;
use crate::laddr::LocalPorts;
use crate::neigh::{NeighView, PendingQueue};
use crate::route::mask;
use crate::shared::Shared;
use crate::snapshot::{FastMap, Service, Snapshot};
use crate::stats::{ConnEntry, DropReason};
use crate::wire::classify::{classify_rx_other, fast_v4};
use crate::wire::{ip_proto, IpFamily, IpMeta, Packet, PacketBuf};
use crate::xmit::Flow;

/// Packets per rx/tx burst.
pub const BURST: usize = 32;

// A burst record keeps its key's index as a byte (`Classified::tuple`).
const _: () = assert!(BURST <= u8::MAX as usize + 1);
/// Expired connections handled per call at most: a mass expiry never stalls forwarding.
const EXPIRE_BUDGET: usize = 128;
/// Connections the access-list sweep looks at per call at most (and it
/// examines at most 16 times as many table slots).
const ACL_SWEEP_BUDGET: usize = 256;

/// A worker's scheduler of one service: the table its cursor runs over
/// (from the snapshot) and the cursor.
pub type SchedCursor = (Arc<dyn sched::SchedTable>, Box<dyn sched::Scheduler>);

/// TCP flag bits as they sit in the header.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Forward mode stored in a connection's opaque flags.
pub fn mode_to_flags(m: ForwardMode) -> u8 {
    match m {
        ForwardMode::Nat => 0,
        ForwardMode::FullNat => 1,
        ForwardMode::Dr => 2,
        ForwardMode::Tun => 3,
    }
}

pub fn mode_from_flags(f: u8) -> ForwardMode {
    match f & 0x3 {
        1 => ForwardMode::FullNat,
        2 => ForwardMode::Dr,
        3 => ForwardMode::Tun,
        _ => ForwardMode::Nat,
    }
}

/// A received burst after classification: what each frame is and, for TCP and
/// UDP, its connection lookup done for the whole burst at once.
struct Classified {
    pkt: Result<Packet, DropReason>,
    /// Index into the burst's tuples (TCP/UDP only).
    /// (A byte: a burst's index fits, and the record is copied per frame.)
    tuple: Option<u8>,
}

/// Settings of one worker's core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub index: usize,
    pub conn_capacity: u32,
    pub hash_seed: u64,
    /// Called on the connection and template tables' arrays before their
    /// first write: the worker asks for huge pages there
    /// (`dpdk::advise_hugepages`), tests pass `conntrack::no_advice`.
    pub advise: fn(*const u8, usize),
}

/// One worker's LVS state: its connection table, persistence templates,
/// scheduler cursors, FULLNAT local ports and packets waiting for a
/// neighbour, plus its I/O. Nothing here is shared with another worker but
/// through `shared` (snapshot, neighbours, counters, owner function).
pub struct Core<I: Io> {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub io: I,
    pub conns: ConnTable,
    pub persist: PersistTable,
    /// Per service id: the table this worker's cursor runs over, and the cursor.
    pub scheds: crate::snapshot::ConfigMap<u32, SchedCursor>,
    /// Snapshot generation `scheds` was pruned at.
    scheds_gen: u64,
    /// Scheduler tables this thread had built before this core started
    /// (EAL threads outlive a dataplane).
    tables_built_before: u64,
    pub pending: PendingQueue<I::Buf>,
    /// This worker's view of the shared neighbour table.
    pub(crate) neigh: NeighView,
    /// The worker's clock, ms; the shell sets it once per loop.
    pub now_ms: u64,
    /// FULLNAT local ports this worker hands out.
    pub lports: LocalPorts,
    /// Addresses this worker has announced with gratuitous ARP (worker 0 only).
    pub announced: Vec<IpAddr>,
    /// Snapshot generation `announced` was brought up to date with.
    pub announced_gen: u64,
    /// Next hops cached on connections are valid for this epoch only: it
    /// moves when the snapshot (routes, ports) or the neighbour table changes.
    pub hops_epoch: u32,
    /// Neighbour table generation `hops_epoch` last followed.
    neigh_gen: u64,
    /// `--stats` traffic of the burst being handled.
    pub(crate) traffic: crate::counters::TrafficBatch,
    /// TUN: per real server, the DIP and the egress MTU toward it
    /// (`tun_dips`), and where each real server's entry is (`tun_routes`),
    /// valid for `tun_routes_epoch` (the hops epoch); bounded, allocated
    /// once. A connection carries its entry's index (`xmit::Flow`).
    pub(crate) tun_routes: FastMap<IpAddr, u32>,
    pub(crate) tun_dips: Vec<(IpAddr, usize)>,
    pub(crate) tun_routes_epoch: u32,
    /// Per real server (direct-mapped by dest id): the next hop requests
    /// take, valid for the hops epoch it was resolved in (`xmit::DestHop`).
    /// The last slot: the last gateway resolved (`xmit::GATEWAY_HOP`).
    pub(crate) dest_hops: Box<[crate::xmit::DestHop; crate::xmit::DEST_HOPS + 1]>,
    /// When `expire` last ran, and whether it left due entries behind.
    expired_at_ms: u64,
    expire_backlog: bool,
    /// `Snapshot::acl_gen` this worker's connections were swept for, and
    /// where the sweep goes on (`None`: done).
    acl_gen: u64,
    acl_sweep: Option<u32>,
    /// Connection sync's refresh scan (`crate::sync`): the time its pass
    /// looks back to and where it goes on; when the next pass starts.
    pub(crate) sync_scan: Option<(u64, u32)>,
    pub(crate) sync_pass_at: u64,
    /// SYN proxy: client segments of connections waiting for their real
    /// server's SYN-ACK (`crate::synproxy`); bounded by `WAITING_MAX`.
    pub(crate) sp_held: FastMap<ConnId, crate::synproxy::Held<I::Buf>>,
    /// Where the first fragments of datagrams went, and later fragments
    /// waiting for theirs (`crate::frag`).
    pub frags: crate::frag::Frags<I::Buf>,
}

/// Where a burst came from.
#[derive(Clone, Copy)]
pub enum Arrival<'a> {
    /// All received on port index `.0` by this worker.
    Port(usize),
    /// Handed over by other workers; the port index each packet arrived on.
    Handed(&'a [usize]),
}

impl<I: Io> Core<I> {
    pub fn new(cfg: CoreConfig, shared: Arc<Shared>, io: I) -> Core<I> {
        let nworkers = shared.counters.len();
        let core = Core {
            index: cfg.index,
            shared,
            io,
            conns: ConnTable::new_advised(
                cfg.conn_capacity,
                cfg.hash_seed,
                Timeouts::default(),
                &cfg.advise,
            ),
            persist: PersistTable::new_advised(
                (cfg.conn_capacity / 4).max(1024),
                cfg.hash_seed ^ 0x5bd1_e995,
                &cfg.advise,
            ),
            scheds: Default::default(),
            scheds_gen: 0,
            tables_built_before: sched::tables_built_on_this_thread(),
            pending: PendingQueue::default(),
            neigh: NeighView::default(),
            now_ms: 0,
            lports: LocalPorts::new(cfg.index, nworkers),
            announced: Vec::new(),
            announced_gen: 0,
            // 0 is what a new connection carries: never valid.
            hops_epoch: 1,
            neigh_gen: 0,
            traffic: Default::default(),
            tun_routes: FastMap::with_capacity_and_hasher(
                crate::xmit::TUN_ROUTES_MAX,
                Default::default(),
            ),
            tun_dips: Vec::with_capacity(crate::xmit::TUN_ROUTES_MAX),
            tun_routes_epoch: 0,
            dest_hops: Box::new([crate::xmit::DestHop::NONE; crate::xmit::DEST_HOPS + 1]),
            expired_at_ms: 0,
            expire_backlog: false,
            acl_gen: 0,
            acl_sweep: None,
            sync_scan: None,
            sync_pass_at: 0,
            sp_held: FastMap::default(),
            frags: Default::default(),
        };
        let c = &core.shared.counters[core.index];
        c.conn_capacity
            .store(core.conns.capacity() as u64, Ordering::Relaxed);
        core
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.shared.counters[self.index].drop(r);
    }

    /// A packet for an own address that the load balancer does not consume:
    /// up to the kernel interface of the port it came in on, or (no kernel
    /// interface, or its queue full) dropped as `r`.
    pub(crate) fn up_or_drop(&mut self, m: I::Buf, port: usize, r: DropReason) {
        match self.io.to_kernel(port, m) {
            Ok(()) => self.shared.events[self.index].bump(crate::events::Event::ToKernel),
            Err(_m) => self.count_drop(r),
        }
    }

    /// Number of workers of the dataplane.
    #[inline]
    pub fn nworkers(&self) -> usize {
        self.shared.counters.len()
    }

    /// What a new snapshot asks of the worker before its first burst:
    /// worker 0 announces new addresses; cursors of removed services go.
    pub fn on_snapshot(&mut self, snap: &Snapshot) {
        if self.index == 0 && snap.generation != self.announced_gen {
            self.announce(snap);
        }
        if snap.generation != self.scheds_gen {
            self.scheds_gen = snap.generation;
            self.new_hops_epoch();
            self.scheds
                .retain(|id, _| snap.services_by_id.contains_key(id));
            self.prepare_lports(snap);
        }
        if snap.acl_gen != self.acl_gen {
            // Access lists changed: established connections they now deny
            // are cut, a bounded step at a time (`expire`).
            self.acl_gen = snap.acl_gen;
            self.acl_sweep = Some(0);
        }
    }

    /// Every FULLNAT local address's port pool built before its first
    /// connection (a pool is a list of up to 64 k ports: building it on the
    /// packet path would stall that burst).
    fn prepare_lports(&mut self, snap: &Snapshot) {
        let range = snap.ext.local_port_range;
        for svc in snap.services_by_id.values() {
            for &lip in &svc.laddrs {
                let port = snap.local.get(&lip).map_or(0, |l| l.port);
                let partitioned = !self.shared.owners.lports_by_rss(port);
                self.lports.prepare(lip, range, partitioned);
            }
        }
    }

    /// Routes or neighbours changed: cached next hops are stale.
    pub(crate) fn new_hops_epoch(&mut self) {
        self.hops_epoch = self.hops_epoch.wrapping_add(1).max(1);
    }

    /// Expire connections and templates due by now (bounded per call). The
    /// wheel ticks every 100 ms, so this runs once per millisecond, and every
    /// loop only while a mass expiry has more to do.
    pub fn expire(&mut self, snap: &Snapshot) {
        if let Some(cursor) = self.acl_sweep {
            self.acl_sweep = self.sweep_acl(snap, cursor);
        }
        if self.sync_scan.is_some() || self.now_ms >= self.sync_pass_at {
            self.sync_refresh(snap);
        }
        let now = self.now_ms;
        if now == self.expired_at_ms && !self.expire_backlog {
            return;
        }
        let prev = std::mem::replace(&mut self.expired_at_ms, now);
        let lports = &mut self.lports;
        let n = self.conns.expire(now, EXPIRE_BUDGET, |c| {
            release_conn(lports, c);
            uncount(snap, c);
        });
        let t = self.persist.expire(now, EXPIRE_BUDGET);
        self.expire_backlog = n >= EXPIRE_BUDGET || t >= EXPIRE_BUDGET;
        if self.frags.held() != 0 {
            self.frag_sweep();
        }
        if !self.sp_held.is_empty() && now / 100 != prev / 100 {
            self.synproxy_sweep();
        }
    }

    /// One step of the sweep after an access-list change: the connections
    /// from `cursor` on whose client their service's lists now deny are
    /// removed, as DPVS stops their packets (it checks the lists on every
    /// packet toward the VIP); the client's next packets meet the lists on
    /// the new-connection path. Returns where to go on, `None` when done.
    fn sweep_acl(&mut self, snap: &Snapshot, cursor: u32) -> Option<u32> {
        let mut cut: ArrayVec<ConnId, ACL_SWEEP_BUDGET> = ArrayVec::new();
        let next = self.conns.scan(cursor, ACL_SWEEP_BUDGET, |id, c| {
            let denied = snap
                .services_by_id
                .get(&c.service())
                .and_then(|s| s.acl.as_ref())
                .is_some_and(|acl| acl.denies(c.original().src).is_some());
            if denied {
                cut.push(id);
            }
        });
        for id in cut {
            self.forget_conn(snap, id, true);
            self.shared.events[self.index].bump(crate::events::Event::AclConnCut);
        }
        next
    }

    /// Forgets connection `id` at once (one-packet scheduling), giving back
    /// what it held; `counted`: it is in its dest's ActiveConn/InActConn.
    pub(crate) fn forget_conn(&mut self, snap: &Snapshot, id: ConnId, counted: bool) {
        if let Some(c) = self.conns.remove(id) {
            release_conn(&mut self.lports, &c);
            if counted {
                uncount(snap, &c);
            }
        }
    }

    /// Now and then: publish the gauges, and let lblc/lblcr age their
    /// per-destination tables on this clock.
    pub fn housekeeping(&mut self) {
        let c = &self.shared.counters[self.index];
        c.sched_tables_built.store(
            sched::tables_built_on_this_thread() - self.tables_built_before,
            Ordering::Relaxed,
        );
        c.conns.store(self.conns.len() as u64, Ordering::Relaxed);
        let now_s = self.now_ms / 1000;
        for (_, s) in self.scheds.values_mut() {
            s.advance(now_s);
        }
    }

    /// Replace the global timeouts.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.conns.set_timeouts(t);
    }

    /// This worker's connections and persistence templates, as `-Lnc` lists them.
    pub fn entries(&self, snap: &Snapshot) -> Vec<ConnEntry> {
        let mut v = self.list_conns(snap);
        self.list_templates(snap, &mut v);
        v
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

    /// A burst (`arrival` says from where): classify every frame, look up
    /// the connections of all TCP/UDP packets together (prefetching: each
    /// key's index bucket as it is built, then every candidate conn, so the
    /// burst's cache misses overlap, which is what large tables are bound
    /// by), then handle the frames in order. Handed-over packets are never
    /// handed on.
    pub fn handle_burst(
        &mut self,
        snap: &Snapshot,
        rx: &mut ArrayVec<I::Buf, BURST>,
        arrival: Arrival<'_>,
    ) {
        let g = self.shared.neigh.generation();
        if g != self.neigh_gen {
            self.neigh_gen = g;
            self.new_hops_epoch();
        }
        // Every frame's first line is fetched before the first is parsed, so
        // the burst's cache misses overlap instead of adding up.
        for m in rx.iter() {
            m.prefetch();
        }
        // Per frame: what it is and, for TCP/UDP, its index in `tuples`. The
        // frames' metadata stays here and is lent to the handlers.
        let mut class: ArrayVec<Classified, BURST> = ArrayVec::new();
        let mut keys: ArrayVec<FlowKey, BURST> = ArrayVec::new();
        let mut places = [conntrack::KeyPlace::default(); BURST];
        // From a NIC: only frames for the port's MAC or a group address.
        let own = match arrival {
            Arrival::Port(p) => snap.ports.get(p).map(|i| i.mac),
            Arrival::Handed(_) => None,
        };
        for m in rx.iter() {
            let frame = m.data();
            // `classify_rx` in its two parts: its fast case (always TCP or
            // UDP, whole, so always keyed) tested here, not through the
            // `Result`.
            if own.is_some_and(|mac| !for_mac(frame, &mac)) {
                class.push(Classified {
                    pkt: Err(DropReason::OtherMac),
                    tuple: None,
                });
                continue;
            }
            if let Some(meta) = fast_v4(frame, m.ip_csum_good()) {
                // The key's index bucket fetched while the rest of the
                // burst is parsed.
                let k = key_of(frame, &meta);
                places[keys.len()] = self.conns.place_hinted(&k, crate::dpdk::prefetch);
                keys.push(k);
                class.push(Classified {
                    pkt: Ok(Packet::Ip(meta)),
                    tuple: Some((keys.len() - 1) as u8),
                });
                continue;
            }
            let pkt = classify_rx_other(frame, m.ip_csum_good());
            let tuple = match &pkt {
                Ok(Packet::Ip(meta))
                    if matches!(meta.proto, ip_proto::TCP | ip_proto::UDP) && meta.has_l4() =>
                {
                    let k = key_of(frame, meta);
                    places[keys.len()] = self.conns.place_hinted(&k, crate::dpdk::prefetch);
                    keys.push(k);
                    Some((keys.len() - 1) as u8)
                }
                _ => None,
            };
            class.push(Classified { pkt, tuple });
        }
        // Then every bucket's candidate conn fetched, and the compares.
        let mut found = [None; BURST];
        self.conns.mark_inserts();
        self.conns.lookup_burst_hinted(
            &keys,
            &places[..keys.len()],
            &mut found[..keys.len()],
            crate::dpdk::prefetch,
        );
        for (i, m) in rx.drain(..).enumerate() {
            let c = &class[i];
            let at = match arrival {
                Arrival::Port(p) => Rx::Nic(p),
                Arrival::Handed(ports) => Rx::Handed(ports.get(i).copied().unwrap_or(0)),
            };
            // The established case first: a whole TCP/UDP datagram (a key
            // was built for it) whose connection the burst's lookup found.
            if let (Ok(Packet::Ip(meta)), Some(t)) = (&c.pkt, c.tuple) {
                if let (Some((id, dir)), None) = (found[usize::from(t)], meta.frag) {
                    self.handle_tracked(snap, m, at, meta, id, dir);
                    continue;
                }
            }
            let pkt = match &c.pkt {
                Ok(p) => p,
                Err(r) => {
                    self.count_drop(*r);
                    continue;
                }
            };
            match pkt {
                Packet::Arp => self.handle_arp(snap, m, at.port()),
                Packet::Ip(meta) => {
                    let lookup = match c.tuple.map(usize::from) {
                        Some(i) => match found[i] {
                            Some((id, dir)) => Lookup::Hit(id, dir),
                            // A miss is stale once this burst created a conn
                            // (its next packets may belong to it): look
                            // again, with the key built for the burst, if a
                            // key with its hash may have been inserted since.
                            None if self.conns.maybe_inserted(places[i]) => {
                                match self.conns.lookup_placed(&keys[i], places[i]) {
                                    Some((id, dir)) => Lookup::Hit(id, dir),
                                    None => Lookup::Miss(places[i]),
                                }
                            }
                            None => Lookup::Miss(places[i]),
                        },
                        None => Lookup::Redo,
                    };
                    if meta.frag.is_some() {
                        self.handle_frag(snap, m, at, meta, lookup)
                    } else {
                        self.handle_ip(snap, m, at, meta, lookup)
                    }
                }
                Packet::Other(_) => self.count_drop(DropReason::UnknownEtherType),
            }
        }
        if !self.traffic.is_empty() {
            self.flush_traffic(snap);
        }
    }

    /// A packet that missed this worker's table: `Ok(owner)` if it belongs to
    /// another worker and was handed over to it, else the packet back to
    /// handle here (it is new, ours, or was handed over already).
    pub(crate) fn handed_to_owner(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        t: &Tuple,
    ) -> Result<usize, I::Buf> {
        let Rx::Nic(port) = at else {
            return Err(m);
        };
        if self.nworkers() == 1 {
            return Err(m);
        }
        let owner = self.shared.owners.of_tuple(snap, port, t);
        if owner == self.index {
            return Err(m);
        }
        self.io.hand_over(owner, m, port);
        Ok(owner)
    }

    /// An IP packet (not a later fragment): a TCP/UDP packet of a tracked
    /// connection goes straight to [`Core::handle_tracked`]; everything else
    /// (ICMP, other protocols, misses, new connections) to
    /// [`Core::handle_ip_rest`]. The split keeps the established path small
    /// enough to inline into the burst loop, without the stack frame the
    /// new-connection path needs.
    #[inline]
    pub(crate) fn handle_ip(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        meta: &IpMeta,
        lookup: Lookup,
    ) {
        if let (ip_proto::TCP | ip_proto::UDP, Lookup::Hit(id, dir)) = (meta.proto, lookup) {
            return self.handle_tracked(snap, m, at, meta, id, dir);
        }
        self.handle_ip_rest(snap, m, at, meta, lookup)
    }

    #[inline(never)]
    fn handle_ip_rest(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        meta: &IpMeta,
        lookup: Lookup,
    ) {
        match meta.proto {
            ip_proto::TCP | ip_proto::UDP => {}
            ip_proto::ICMP | ip_proto::ICMPV6 => {
                if crate::wire::icmp_err::is_error(meta.family, meta.icmp_type) {
                    return self.handle_icmp_error(snap, m, at, *meta);
                }
                return self.handle_icmp(snap, m, at.port(), *meta);
            }
            _ => {
                if snap.is_local(meta.dst) {
                    return self.up_or_drop(m, at.port(), DropReason::UnknownL4);
                }
                if meta.dst.is_multicast() {
                    // VRRP adverts, IGMP: for the kernel's daemons.
                    return self.up_or_drop(m, at.port(), DropReason::NotForUs);
                }
                return self.count_drop(DropReason::NotForUs);
            }
        }
        let place = match lookup {
            Lookup::Hit(id, dir) => return self.handle_tracked(snap, m, at, meta, id, dir),
            Lookup::Miss(p) => p,
            Lookup::Redo => match self.conns.lookup_wire_placed(&key_of(m.data(), meta)) {
                (Some((id, dir)), _) => return self.handle_tracked(snap, m, at, meta, id, dir),
                (None, p) => p,
            },
        };
        if meta.proto == ip_proto::UDP && !snap.ops_nat.is_empty() {
            if let Some(&(svc, dest)) = snap.ops_nat.get(&(meta.src, meta.sport)) {
                return self.ops_nat_reply(snap, m, *meta, svc, dest);
            }
        }
        let tuple = tuple_of(meta);
        let m = match self.handed_to_owner(snap, m, at, &tuple) {
            Ok(owner) => return self.frag_note(meta, Target::Worker(owner)),
            Err(m) => m,
        };
        let Some(svc) = snap.service(meta.proto, meta.dst, meta.dport) else {
            if snap.is_local(meta.dst) {
                // The director's own TCP/UDP (ssh, health checks, BGP).
                self.frag_note(meta, Target::Kernel);
                return self.up_or_drop(m, at.port(), DropReason::NoService);
            }
            if meta.dst.is_multicast() {
                // Group traffic for the kernel's daemons (IPVS connection
                // sync on 224.0.0.81:8848, mDNS, ...).
                self.frag_note(meta, Target::Kernel);
                return self.up_or_drop(m, at.port(), DropReason::NotForUs);
            }
            return self.count_drop(DropReason::NotForUs);
        };
        // DPVS's blacklist and whitelist, before anything else (before the
        // SYN proxy answers, as in DPVS): whatever a denied client sends the
        // service without a connection counts as denied.
        if let Some(r) = svc.acl.as_ref().and_then(|acl| acl.denies(meta.src)) {
            svc.acl_drops.count(self.index, r);
            return self.count_drop(r);
        }
        if svc.synproxy && meta.proto == ip_proto::TCP {
            if meta.frag.is_some() {
                return self.count_drop(DropReason::FragUnsupported);
            }
            return self.synproxy_new(snap, m, at, *meta, tuple, svc);
        }
        self.new_conn(snap, m, meta, tuple, place, svc);
    }

    /// A packet of tracked connection `id`, direction `dir`: state, then out.
    /// Inlined into the burst loop (the established path); the SYN proxy's
    /// waiting segments and connection sync go out of line.
    #[inline(always)]
    pub(crate) fn handle_tracked(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
    ) {
        // Read once, before the state change: `on_packet` moves the state
        // and the timer, nothing `Flow` holds.
        let Some(f) = self.conns.get(id).map(Flow::of) else {
            return self.count_drop(DropReason::NoConnection);
        };
        if meta.proto == ip_proto::TCP {
            if f.flags() & (crate::synproxy::SP | crate::synproxy::SP_OPEN) == crate::synproxy::SP {
                if meta.frag.is_some() {
                    return self.count_drop(DropReason::FragUnsupported);
                }
                return self.synproxy_waiting(snap, m, at, meta, id, dir);
            }
            if meta.tcp_flags & (tcp_flag::SYN | tcp_flag::RST) != 0 {
                self.passive_evidence(snap, id, dir, meta.tcp_flags);
            }
        }
        let tr = self
            .conns
            .on_packet(id, dir, conntrack_flags(meta.tcp_flags), self.now_ms);
        self.account_transition(snap, f.dest, tr);
        if !self.shared.sync.is_on() {
            return self.xmit(snap, m, meta, id, dir, &f);
        }
        self.xmit_synced(snap, m, meta, id, dir, f, tr.changed)
    }

    /// [`Core::xmit`] while connection sync runs: a state change
    /// (`changed`), or a new FULLNAT sequence offset (a Proxy Protocol
    /// header just went out), is news for the backups. Out of line, off the
    /// inlined established path.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn xmit_synced(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        f: Flow,
        changed: bool,
    ) {
        let user = self.conns.get(id).map_or(0, |c| c.user);
        self.xmit(snap, m, meta, id, dir, &f);
        let moved = changed || self.conns.get(id).is_some_and(|c| c.user != user);
        self.sync_note(snap, id, moved);
    }

    /// [`Core::xmit`] with the connection read here.
    pub(crate) fn xmit_conn(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
    ) {
        let Some(f) = self.conns.get(id).map(Flow::of) else {
            return self.count_drop(DropReason::NoConnection);
        };
        self.xmit(snap, m, meta, id, dir, &f)
    }

    /// Schedule a new connection to `svc` and forward its first packet.
    fn new_conn(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        meta: &IpMeta,
        tuple: Tuple,
        place: conntrack::KeyPlace,
        svc: &Arc<Service>,
    ) {
        // As IPVS without sloppy_tcp: only a SYN opens a TCP connection; not
        // one with FIN too (no stack sends it, scanners do).
        if meta.proto == ip_proto::TCP {
            let f = meta.tcp_flags;
            if f & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) != tcp_flag::SYN {
                return self.count_drop(DropReason::NoConnection);
            }
            if f & tcp_flag::FIN != 0 {
                return self.count_drop(DropReason::BadTcpFlags);
            }
        }
        // Created with its first packet's state (`on_packet` folded in).
        let first = Some(conntrack_flags(meta.tcp_flags));
        let Some((id, tr)) = self.open_conn_with(snap, meta, tuple, place, svc, first) else {
            return;
        };
        let Some(f) = self.conns.get(id).map(Flow::of) else {
            return self.count_drop(DropReason::NoConnection);
        };
        self.account_transition(snap, f.dest, tr);
        self.xmit(snap, m, meta, id, Direction::Original, &f);
        // As IPVS, one-packet connections are not synced.
        self.sync_note(snap, id, !svc.ops);
        if svc.ops && meta.frag.is_none() {
            // One-packet scheduling: the datagram is on its way, nothing is
            // kept; the next one is scheduled on its own. (A fragmented one
            // keeps its connection briefly for its other fragments.)
            self.forget_conn(snap, id, true);
        }
    }

    /// Schedule a dest of `svc` for a new connection with original tuple
    /// `tuple` and create it (FULLNAT: with a local address and port);
    /// counted as new on the service and dest. `None`: refused, the drop
    /// counted. `place`: where the burst's lookup found `tuple`'s key to
    /// belong (it is not hashed again), if it noted it.
    pub(crate) fn open_conn(
        &mut self,
        snap: &Snapshot,
        meta: &IpMeta,
        tuple: Tuple,
        place: conntrack::KeyPlace,
        svc: &Arc<Service>,
    ) -> Option<ConnId> {
        self.open_conn_with(snap, meta, tuple, place, svc, None)
            .map(|(id, _)| id)
    }

    /// [`Core::open_conn`]; with `first`, the connection is created as
    /// `ConnTable::on_packet` of its first packet (TCP flags `first`, the
    /// original direction) would leave it, and that packet's transition
    /// is returned (else a NONE -> NONE one, the packet not counted).
    #[inline(always)]
    fn open_conn_with(
        &mut self,
        snap: &Snapshot,
        meta: &IpMeta,
        tuple: Tuple,
        place: conntrack::KeyPlace,
        svc: &Arc<Service>,
        first: Option<conntrack::TcpFlags>,
    ) -> Option<(ConnId, Transition)> {
        if self.over_conn_limit(svc) {
            return None;
        }
        let Some(idx) = self.pick_dest(svc, meta) else {
            self.count_drop(DropReason::NoDest);
            return None;
        };
        let dest = &svc.dests[idx];
        let dm = &svc.meta[idx];
        // Replies come back to VIP:vport... for NAT, DR and TUN (the client's
        // own address); FULLNAT replies come to a local address and port of ours.
        let (reply_dst, reply_dport) = if dm.mode == ForwardMode::FullNat {
            let range = snap.ext.local_port_range;
            let (me, owners) = (self.index, &self.shared.owners);
            // The replies arrive on the LIP's port: pick a local port they
            // reach this worker by.
            let filter = |lip: IpAddr| {
                let port = snap.local.get(&lip).map_or(0, |l| l.port);
                owners.lport_filter(me, port, dest.addr, dest.port, lip)
            };
            let got = match svc.laddrs_for(dest.addr) {
                [] => dip_toward(snap, dest.addr)
                    .and_then(|dip| self.lports.alloc(&[dip], range, filter)),
                lips => self.lports.alloc(lips, range, filter),
            };
            match got {
                Some(l) => l,
                None => {
                    self.count_drop(DropReason::LipExhausted);
                    return None;
                }
            }
        } else {
            (meta.src, meta.sport)
        };
        let new = NewConn {
            original: tuple,
            reply: Tuple {
                proto: meta.proto,
                src: dest.addr,
                sport: dest.port,
                dst: reply_dst,
                dport: reply_dport,
            },
            service: svc.id,
            dest: dm.id,
            flags: mode_to_flags(dm.mode),
            timeout_override_s: ops_timeout(meta, svc.ops, svc.conn_timeout_s),
        };
        // Replies bypass the director: IPVS's INPUT-ONLY state rows.
        let input_only = matches!(dm.mode, ForwardMode::Dr | ForwardMode::Tun);
        let got = match first {
            Some(flags) => self.conns.insert_placed_first(
                new,
                place,
                input_only,
                flags,
                self.now_ms,
                crate::dpdk::prefetch,
            ),
            None => self.conns.insert_placed(new, place, self.now_ms).map(|id| {
                if input_only {
                    self.conns.set_input_only(id, true);
                }
                (id, Transition::NONE)
            }),
        };
        let (id, tr) = match got {
            Ok(got) => got,
            Err(_) => {
                if dm.mode == ForwardMode::FullNat {
                    self.lports.release(reply_dst, reply_dport);
                }
                self.count_drop(DropReason::ConnTableFull);
                return None;
            }
        };
        dest.counters.add(0, 1);
        svc.traffic.conn(self.index);
        dm.traffic.conn(self.index);
        Some((id, tr))
    }

    /// `--conn-limit`: whether `svc` refuses a new connection now; the
    /// refusal is counted (`service_conn_limit`, and on the service). Only
    /// the new-connection path asks, and a service without a limit sums
    /// nothing.
    #[inline]
    pub(crate) fn over_conn_limit(&self, svc: &Service) -> bool {
        if !svc.at_conn_limit() {
            return false;
        }
        svc.conn_limit_drops.bump(self.index);
        self.count_drop(DropReason::ServiceConnLimit);
        true
    }

    /// The passive health check's evidence, before the packet moves the
    /// connection's state: while the real server has not answered the
    /// client's SYN (state SYN_RECV, NAT/FULLNAT), a retransmitted SYN or a
    /// RST from the server counts against it, a SYN-ACK for it.
    pub(crate) fn passive_evidence(&self, snap: &Snapshot, id: ConnId, dir: Direction, flags: u8) {
        let Some(c) = self.conns.get(id) else { return };
        if c.state() != conntrack::TcpState::SynRecv
            || !matches!(
                mode_from_flags(c.flags()),
                ForwardMode::Nat | ForwardMode::FullNat
            )
        {
            return;
        }
        let Some(d) = snap.dest_ids.get(&c.dest()) else {
            return;
        };
        let syn = flags & tcp_flag::SYN != 0;
        let ack = flags & tcp_flag::ACK != 0;
        let rst = flags & tcp_flag::RST != 0;
        let counter = match dir {
            Direction::Original if syn && !ack => &d.counters.syn_unanswered,
            Direction::Reply if rst => &d.counters.syn_unanswered,
            Direction::Reply if syn && ack => &d.counters.syn_answered,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A UDP reply from a NAT real server of a one-packet service: there is no
    /// connection to find, so one is made for this datagram alone (client ->
    /// VIP:vport as the original direction), translated back, and forgotten
    /// (a fragmented datagram's when its fragments have had their time).
    fn ops_nat_reply(&mut self, snap: &Snapshot, m: I::Buf, meta: IpMeta, svc: u32, dest: u32) {
        let Some(s) = snap.services_by_id.get(&svc) else {
            return self.count_drop(DropReason::NoService);
        };
        let new = NewConn {
            original: Tuple {
                proto: meta.proto,
                src: meta.dst,
                sport: meta.dport,
                dst: s.key.vip,
                dport: s.key.vport,
            },
            reply: tuple_of(&meta),
            service: svc,
            dest,
            flags: mode_to_flags(ForwardMode::Nat),
            timeout_override_s: ops_timeout(&meta, true, s.conn_timeout_s),
        };
        let Ok(id) = self.conns.insert(new, self.now_ms) else {
            return self.count_drop(DropReason::ConnTableFull);
        };
        if let Some(f) = self.conns.get(id).map(Flow::of) {
            self.xmit(snap, m, &meta, id, Direction::Reply, &f);
        }
        if meta.frag.is_none() {
            return self.forget_conn(snap, id, false);
        }
        // It expires like any connection, which takes it out of its dest's
        // InActConn: count it there meanwhile.
        if let Some(d) = snap.dests.get(&dest) {
            d.counters.add(0, 1);
        }
    }

    /// Persistence template first, then the service's scheduler.
    fn pick_dest(&mut self, svc: &Arc<Service>, meta: &IpMeta) -> Option<usize> {
        let client_key = svc.persistence.map(|p| mask(meta.src, p.netmask_len));
        if let (Some(p), Some(ck)) = (svc.persistence, client_key) {
            if let Some(dest_id) = self.persist.lookup(svc.id, ck, self.now_ms) {
                if let Some(i) = svc.meta.iter().position(|d| d.id == dest_id) {
                    if svc.dests[i].effective_weight() > 0 || svc.dests[i].active_conns() > 0 {
                        // Connection sync: a template is sent again once
                        // half its life is gone.
                        let resend = self.shared.sync.is_on()
                            && self
                                .persist
                                .get(svc.id, ck, self.now_ms)
                                .is_some_and(|(_, exp)| {
                                    exp.saturating_sub(self.now_ms) < u64::from(p.timeout_s) * 500
                                });
                        let _ = self.persist.insert_or_refresh(
                            svc.id,
                            ck,
                            dest_id,
                            p.timeout_s,
                            self.now_ms,
                        );
                        if resend {
                            self.sync_template(svc, ck, i, p.timeout_s);
                        }
                        return Some(i);
                    }
                }
            }
        }
        let key = sched::FlowKey::new(meta.proto, meta.src, meta.sport, meta.dst, meta.dport);
        let (me, n) = (self.index, self.nworkers());
        let entry = self
            .scheds
            .entry(svc.id)
            .or_insert_with(|| (svc.sched.clone(), svc.sched.clone().cursor(me, n)));
        if !same_table(&entry.0, &svc.sched) {
            // A new snapshot changed the service's scheduling: keep the
            // cursor where the scheduler allows, else start a new one.
            if !entry.1.retable(&svc.sched, &svc.dests) {
                entry.1 = svc.sched.clone().cursor(me, n);
            }
            entry.0 = svc.sched.clone();
        }
        let idx = entry.1.schedule(&svc.dests, &key)?;
        if let (Some(p), Some(ck)) = (svc.persistence, client_key) {
            if self
                .persist
                .insert_or_refresh(svc.id, ck, svc.meta[idx].id, p.timeout_s, self.now_ms)
                .is_ok()
            {
                self.sync_template(svc, ck, idx, p.timeout_s);
            }
        }
        Some(idx)
    }

    /// Keep ipvsadm's ActiveConn / InActConn in step with the TCP state.
    #[inline(always)]
    pub(crate) fn account_transition(&self, snap: &Snapshot, dest_id: u32, tr: Transition) {
        if tr.was_active == tr.is_active {
            return;
        }
        if let Some(d) = snap.dest_ids.get(&dest_id) {
            // One count up, the other down: one atomic add.
            if tr.is_active {
                d.counters.add(1, -1);
            } else {
                d.counters.add(-1, 1);
            }
        }
    }

    /// This worker's connections as `ipvsadm -Lnc` lists them.
    pub fn list_conns(&self, snap: &Snapshot) -> Vec<ConnEntry> {
        let mut out = Vec::with_capacity(self.conns.len());
        let mut cursor = Some(0u32);
        while let Some(c) = cursor {
            cursor = self.conns.scan(c, 4096, |_, conn| {
                let o = conn.original();
                let r = conn.reply();
                let mode = mode_from_flags(conn.flags());
                let proto =
                    crate::config::Proto::from_number(o.proto).unwrap_or(crate::config::Proto::Tcp);
                out.push(ConnEntry {
                    proto,
                    client: (o.src, o.sport),
                    virt: (o.dst, o.dport),
                    local: (mode == ForwardMode::FullNat).then_some((r.dst, r.dport)),
                    dest: (r.src, r.sport),
                    state: if o.proto == ip_proto::UDP {
                        "UDP".to_string()
                    } else {
                        conn.state().name().to_string()
                    },
                    expires_s: (conn.expires_at_ms().saturating_sub(self.now_ms) / 1000) as u32,
                    worker: self.index as u32,
                });
            });
        }
        let _ = snap;
        out
    }
}

/// The director's address on the port that reaches `rip` (the DIP): the
/// local address of FULLNAT services without a local address pool.
pub fn dip_toward(snap: &Snapshot, rip: IpAddr) -> Option<IpAddr> {
    dip_via(snap, snap.routes.lookup(rip)?, rip)
}

/// [`dip_toward`] when the route to `rip` is already known.
pub fn dip_via(snap: &Snapshot, hop: crate::route::NextHop, rip: IpAddr) -> Option<IpAddr> {
    snap.local
        .values()
        .filter(|l| l.port == hop.port && same_family(l.addr, rip))
        .max_by_key(|l| {
            (
                crate::route::contains(l.addr, l.prefix_len, hop.gateway),
                std::cmp::Reverse(l.addr),
            )
        })
        .map(|l| l.addr)
}

/// Where a packet came from: a NIC queue of this worker, or another worker
/// (which received it on that port index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rx {
    Nic(usize),
    Handed(usize),
}

impl Rx {
    /// The index of the port the packet arrived on.
    #[inline]
    pub fn port(self) -> usize {
        match self {
            Rx::Nic(p) | Rx::Handed(p) => p,
        }
    }
}

/// A packet's connection lookup: done with the burst, or still to do.
#[derive(Clone, Copy)]
pub(crate) enum Lookup {
    /// The burst's lookup found the packet's connection.
    Hit(ConnId, Direction),
    /// It found none; the key's place in the table, for the insert of a
    /// new connection.
    Miss(conntrack::KeyPlace),
    /// Not looked up with the burst.
    Redo,
}

/// The connection key of a TCP/UDP packet, as it arrived, from the frame's
/// address bytes (wire form: no `IpAddr` on the way).
#[inline]
fn key_of(frame: &[u8], meta: &IpMeta) -> FlowKey {
    // Both addresses in one view: one bounds check.
    let ip = meta.l3_off;
    match meta.family {
        IpFamily::V4 => match frame.get(ip + 12..).and_then(|b| b.first_chunk::<8>()) {
            Some(&[s0, s1, s2, s3, d0, d1, d2, d3]) => FlowKey::v4(
                meta.proto,
                [s0, s1, s2, s3],
                meta.sport,
                [d0, d1, d2, d3],
                meta.dport,
            ),
            None => FlowKey::from_tuple(&tuple_of(meta)),
        },
        IpFamily::V6 => match frame.get(ip + 8..).and_then(|b| b.first_chunk::<32>()) {
            Some(a) => {
                let (s, d) = a.split_at(16);
                let (s, d) = (s.try_into(), d.try_into());
                match (s, d) {
                    (Ok(s), Ok(d)) => FlowKey::v6(meta.proto, s, meta.sport, d, meta.dport),
                    _ => FlowKey::from_tuple(&tuple_of(meta)),
                }
            }
            None => FlowKey::from_tuple(&tuple_of(meta)),
        },
    }
}

/// The conntrack tuple of a TCP/UDP packet, as it arrived.
#[inline]
fn tuple_of(meta: &IpMeta) -> Tuple {
    Tuple {
        proto: meta.proto,
        src: meta.src,
        sport: meta.sport,
        dst: meta.dst,
        dport: meta.dport,
    }
}

/// The timeout of a new connection: a one-packet-scheduling datagram that
/// comes in fragments keeps its connection for `frag::OPS_CONN_TIMEOUT_S`,
/// so its later fragments find it; otherwise the service's.
#[inline]
fn ops_timeout(meta: &IpMeta, ops: bool, service_s: Option<u32>) -> Option<u32> {
    if ops && meta.frag.is_some() {
        Some(crate::frag::OPS_CONN_TIMEOUT_S)
    } else {
        service_s
    }
}

/// Header flag bits to conntrack's flag set (same bit positions).
#[inline]
pub fn conntrack_flags(f: u8) -> conntrack::TcpFlags {
    conntrack::TcpFlags::from_bits(f)
}

/// Whether two scheduler tables are the same one (addresses only: vtables
/// of one type may differ between codegen units).
#[inline]
fn same_table(a: &Arc<dyn sched::SchedTable>, b: &Arc<dyn sched::SchedTable>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const u8, Arc::as_ptr(b) as *const u8)
}

/// Whether `a` is in the same family as `b`.
#[inline]
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Whether `frame` is addressed to `mac` or to a group (broadcast,
/// multicast); a frame too short to say is left to the classifier.
#[inline]
fn for_mac(frame: &[u8], mac: &[u8; 6]) -> bool {
    match frame.get(..6) {
        Some(dst) => dst[0] & 1 == 1 || dst == mac,
        None => true,
    }
}

/// Takes a leaving connection out of its dest's ActiveConn / InActConn.
fn uncount(snap: &Snapshot, c: &conntrack::Conn) {
    if let Some(d) = snap.dest_ids.get(&c.dest()) {
        if c.is_active() {
            d.counters.add(-1, 0);
        } else {
            d.counters.add(0, -1);
        }
    }
}

/// What a connection gives back when it goes: its FULLNAT local port.
pub fn release_conn(lports: &mut crate::laddr::LocalPorts, c: &conntrack::Conn) {
    if mode_from_flags(c.flags()) == ForwardMode::FullNat {
        let (lip, lport) = c.reply_dst();
        lports.release(lip, lport);
    }
}
