//! The immutable configuration snapshot workers read, and how it is compiled.
//!
//! `control` hands over a [`ConfigDesc`]; [`Compiler`] validates it, gives every
//! service and dest a stable id (so counters and connections survive edits) and
//! builds a [`Snapshot`]. Workers load the current snapshot once per burst
//! through an `ArcSwap`; writers never block them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::acl::Acl;
use crate::config::{
    AclSpec, ConfigDesc, ExtDesc, ForwardMode, Persistence, Proto, ProxyProtocol, ServiceKey,
};
use crate::counters::{AclCounters, Traffic, WorkerCount};
use crate::owner::OwnerKey;
use crate::route::{Route, RouteTable};

pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Hashes a key of the configuration, never one a packet chose: a LIP (the
/// key of a worker's pools), a service id (`Core::scheds`), a dest id
/// (`Snapshot::dests`), a service's (protocol, VIP, vport)
/// (`Snapshot::services`: a packet's key only probes the configuration's
/// entries, it cannot add colliding ones). So an unkeyed multiply per word
/// (FxHash's) does, where the keyed ahash costs some 25 to 50 instructions
/// more per lookup.
#[derive(Default)]
pub struct ConfigKeyHasher(u64);

/// A map keyed by the configuration ([`ConfigKeyHasher`]).
pub type ConfigMap<K, V> = HashMap<K, V, BuildHasherDefault<ConfigKeyHasher>>;

impl ConfigKeyHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for ConfigKeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits: bring the
        // multiply's well-mixed high bits down.
        self.0.rotate_left(26)
    }
}

/// A map keyed by the compiler's ids (`Compiler::id`: small, distinct,
/// handed out in sequence, never a packet's): open addressing over a
/// power-of-two table at most half full, the id's low bits its first slot,
/// so a lookup is an index and one compare in the usual case (sequential ids
/// take sequential slots) where the general `ConfigMap` hashes and probes
/// a control group: `Snapshot::dests`, which a connection's state changes,
/// its expiry and every burst's traffic flush look up.
pub struct IdMap<V> {
    slots: Vec<Option<(u32, V)>>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> IdMap<V> {
        IdMap {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<V> IdMap<V> {
    /// The value of `id`, if present.
    /// Out of line: its callers (a state change's accounting, inlined
    /// into the burst loop) stay small.
    #[inline(never)]
    pub fn get(&self, id: &u32) -> Option<&V> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = *id as usize & mask;
        loop {
            match self.slots.get(i)? {
                Some((k, v)) if *k == *id => return Some(v),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.get(id).is_some()
    }

    /// Insert or replace; the value replaced, if any.
    pub fn insert(&mut self, id: u32, v: V) -> Option<V> {
        if (self.len + 1) * 2 > self.slots.len() {
            let cap = ((self.len + 1) * 2).next_power_of_two().max(8);
            let old = std::mem::take(&mut self.slots);
            self.slots = (0..cap).map(|_| None).collect();
            self.len = 0;
            for (k, v) in old.into_iter().flatten() {
                self.put(k, v);
            }
        }
        self.put(id, v)
    }

    fn put(&mut self, id: u32, v: V) -> Option<V> {
        let mask = self.slots.len() - 1;
        let mut i = id as usize & mask;
        loop {
            match &mut self.slots[i] {
                Some((k, old)) if *k == id => return Some(std::mem::replace(old, v)),
                Some(_) => i = (i + 1) & mask,
                empty @ None => {
                    *empty = Some((id, v));
                    self.len += 1;
                    return None;
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

/// One port as workers see it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub id: u16,
    pub mac: [u8; 6],
    /// IP MTU of the port (bytes after the Ethernet header).
    pub mtu: u16,
}

/// A dest's forwarding data beside the scheduler's view of it.
pub struct DestMeta {
    pub id: u32,
    pub mode: ForwardMode,
    pub traffic: Arc<Traffic>,
}

/// A compiled virtual service.
pub struct Service {
    pub id: u32,
    pub key: ServiceKey,
    pub scheduler: String,
    pub sched_flags: sched::SchedFlags,
    /// The scheduler's tables, built here on the control thread; workers
    /// keep only their cursors over it.
    pub sched: Arc<dyn sched::SchedTable>,
    pub persistence: Option<Persistence>,
    pub conn_timeout_s: Option<u32>,
    /// One-packet scheduling (UDP, ipvsadm `-o`): no connection outlives the
    /// datagram it was made for.
    pub ops: bool,
    /// What schedulers see (weights, thresholds, shared conn counters).
    pub dests: Vec<sched::Dest>,
    /// Parallel to `dests`.
    pub meta: Vec<DestMeta>,
    pub traffic: Arc<Traffic>,
    /// FULLNAT local addresses (`-P`), IPv4 ones first; empty: the DIP toward
    /// the real server. See [`Service::laddrs_for`].
    pub laddrs: Vec<IpAddr>,
    /// How many of `laddrs` are IPv4.
    pub laddrs_v4: usize,
    /// Proxy Protocol prepended to FULLNAT TCP streams.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// New connections go through the SYN proxy (`crate::synproxy`).
    pub synproxy: bool,
    /// How its connections are keyed to a worker (`crate::owner`).
    pub owner_key: OwnerKey,
    /// Its blacklist and whitelist; `None`: both empty.
    pub acl: Option<Arc<Acl>>,
    /// Packets they dropped (kept across snapshots, like `traffic`).
    pub acl_drops: Arc<AclCounters>,
    /// `--conn-limit`: no new connection while its real servers hold this
    /// many (active + inactive, all workers); 0 = no limit.
    pub conn_limit: u32,
    /// New connections the limit refused (kept across snapshots).
    pub conn_limit_drops: Arc<WorkerCount>,
}

/// An address the director owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub port: usize,
}

/// Counters of a dest that outlive snapshots (and so connection expiry can
/// reach them by id).
#[derive(Clone)]
pub struct DestRef {
    pub counters: Arc<sched::DestCounters>,
    pub traffic: Arc<Traffic>,
    pub service: u32,
    /// The service's counters, so a packet counts both with one lookup.
    pub service_traffic: Arc<Traffic>,
}

/// Everything a worker needs, immutable.
pub struct Snapshot {
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    /// By (protocol, VIP, vport). Unkeyed (`ConfigMap`): its entries come
    /// from the configuration, so a packet's key can only probe, never
    /// lengthen, their chains; every new connection looks one up.
    pub services: crate::snapshot::ConfigMap<(u8, IpAddr, u16), Arc<Service>>,
    /// By service id, and the director's own addresses: both keyed by the
    /// configuration (`ConfigMap`; a packet's address only probes `local`).
    /// A FULLNAT SYN looks up both (its service's Proxy Protocol, its
    /// LIP's port).
    pub services_by_id: ConfigMap<u32, Arc<Service>>,
    pub local: ConfigMap<IpAddr, LocalAddr>,
    pub routes: RouteTable,
    /// By dest id: ids are the compiler's, never a packet's, so the
    /// unhashed [`IdMap`] (a state change, an expiry and the burst's
    /// traffic flush each look one up).
    pub dests: crate::snapshot::ConfigMap<u32, DestRef>,
    /// `dests` again, in an [`IdMap`]: what the connections' own paths
    /// (a state change's ActiveConn/InActConn move, the passive check's
    /// evidence, an expiry) look their dest up in.
    pub dest_ids: IdMap<DestRef>,
    /// NAT real servers (proto, RIP, rport) whose services key connections
    /// by the client's net (persistence): what a NAT reply's owner is keyed
    /// by. Absent: by client address and port.
    pub nat_owner_keys: NatOwnerKeys,
    /// NAT real servers (RIP, rport) of one-packet UDP services -> (service
    /// id, dest id): their replies are translated back without a connection.
    pub ops_nat: FastMap<(IpAddr, u16), (u32, u32)>,
    pub desc: ConfigDesc,
    pub ext: ExtDesc,
    /// Generation of the last snapshot that changed any service's access
    /// lists: a worker that has not swept its connections since looks for
    /// the ones they now deny (`core`).
    pub acl_gen: u64,
}

impl Service {
    /// Whether its connection limit is reached: the sum of its real servers'
    /// active and inactive connections, the shared counters ipvsadm's `-x`
    /// threshold reads, is at the limit or over. Without a limit nothing is
    /// summed. A dest taken out of the service takes its connections out
    /// of the sum.
    #[inline]
    pub fn at_conn_limit(&self) -> bool {
        if self.conn_limit == 0 {
            return false;
        }
        let limit = u64::from(self.conn_limit);
        let mut total = 0u64;
        for d in &self.dests {
            total += u64::from(d.active_conns()) + u64::from(d.inactive_conns());
            if total >= limit {
                return true;
            }
        }
        false
    }

    /// The local addresses usable toward real server `rip` (its family: FULLNAT64
    /// talks IPv4 to the real server whatever the VIP's family).
    #[inline]
    pub fn laddrs_for(&self, rip: IpAddr) -> &[IpAddr] {
        if rip.is_ipv4() {
            &self.laddrs[..self.laddrs_v4]
        } else {
            &self.laddrs[self.laddrs_v4..]
        }
    }
}

impl Snapshot {
    #[inline]
    pub fn service(&self, proto: u8, vip: IpAddr, vport: u16) -> Option<&Arc<Service>> {
        self.services.get(&(proto, vip, vport))
    }
    #[inline]
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local.contains_key(&addr)
    }
    pub fn empty(ports: Vec<PortInfo>) -> Snapshot {
        Snapshot {
            generation: 0,
            ports,
            services: Default::default(),
            services_by_id: ConfigMap::default(),
            local: ConfigMap::default(),
            routes: RouteTable::default(),
            dests: Default::default(),
            dest_ids: Default::default(),
            nat_owner_keys: FastMap::default(),
            ops_nat: FastMap::default(),
            desc: ConfigDesc::default(),
            ext: ExtDesc::default(),
            acl_gen: 0,
        }
    }
}

/// What a service keeps across applies: its id and counters.
struct ServiceEntry {
    id: u32,
    traffic: Arc<Traffic>,
    acl_drops: Arc<AclCounters>,
    conn_limit_drops: Arc<WorkerCount>,
}

struct DestEntry {
    id: u32,
    counters: Arc<sched::DestCounters>,
    traffic: Arc<Traffic>,
}

/// What a scheduler table is a function of: the scheduler, its flags and the
/// dests as it sees them (counters aside).
#[derive(Clone, PartialEq)]
struct SchedInput {
    name: String,
    flags: sched::SchedFlags,
    dests: Vec<(IpAddr, u16, u32, u32, u32, bool)>,
}

impl SchedInput {
    fn new(name: &str, flags: &sched::SchedFlags, dests: &[sched::Dest]) -> SchedInput {
        SchedInput {
            name: name.to_string(),
            flags: flags.clone(),
            dests: dests
                .iter()
                .map(|d| {
                    (
                        d.addr,
                        d.port,
                        d.weight,
                        d.u_threshold,
                        d.l_threshold,
                        d.inhibited,
                    )
                })
                .collect(),
        }
    }
}

/// Keeps ids and counters stable across applies. Lives on the control side.
#[derive(Default)]
pub struct Compiler {
    next_id: u32,
    generation: u64,
    services: HashMap<ServiceKey, ServiceEntry>,
    /// Each service's last scheduler table and what it was built from: an
    /// apply that leaves a service's scheduling alone reuses it.
    tables: HashMap<ServiceKey, (SchedInput, Arc<dyn sched::SchedTable>)>,
    dests: HashMap<(ServiceKey, IpAddr, u16), DestEntry>,
    /// The last DPVS extras given to `compile_ext`; `compile` reuses them.
    ext: ExtDesc,
    /// Each service's compiled access lists and what they were built from.
    acls: HashMap<ServiceKey, (AclSpec, Arc<Acl>)>,
    /// `Snapshot::acl_gen` of the last snapshot compiled.
    acl_gen: u64,
}

impl Compiler {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Validate and compile `desc` with the extras last given to
    /// [`Compiler::compile_ext`]. Errors name the item and the problem.
    pub fn compile(&mut self, desc: &ConfigDesc, ports: &[PortInfo]) -> Result<Snapshot, String> {
        let ext = self.ext.clone();
        self.compile_with(desc, &ext, ports)
    }

    /// Validate and compile `desc` and `ext`; `ext` is kept for later `compile`s
    /// only if this succeeds.
    pub fn compile_ext(
        &mut self,
        desc: &ConfigDesc,
        ext: &ExtDesc,
        ports: &[PortInfo],
    ) -> Result<Snapshot, String> {
        let snap = self.compile_with(desc, ext, ports)?;
        self.ext = ext.clone();
        Ok(snap)
    }

    fn compile_with(
        &mut self,
        desc: &ConfigDesc,
        ext: &ExtDesc,
        ports: &[PortInfo],
    ) -> Result<Snapshot, String> {
        let port_idx = |name: &str| ports.iter().position(|p| p.name == name);

        let mut local = ConfigMap::default();
        let mut routes = Vec::new();
        for a in &desc.addrs {
            let port = port_idx(&a.port)
                .ok_or_else(|| format!("address {}: unknown port {:?}", a.addr, a.port))?;
            let max = if a.addr.is_ipv4() { 32 } else { 128 };
            if a.prefix_len > max {
                return Err(format!(
                    "address {}/{}: prefix length over {max}",
                    a.addr, a.prefix_len
                ));
            }
            local.insert(
                a.addr,
                crate::snapshot::LocalAddr {
                    addr: a.addr,
                    prefix_len: a.prefix_len,
                    port,
                },
            );
            if a.prefix_len < max {
                routes.push(Route {
                    prefix: a.addr,
                    prefix_len: a.prefix_len,
                    via: None,
                    port,
                });
            }
        }
        for r in &desc.routes {
            let port = port_idx(&r.port).ok_or_else(|| {
                format!(
                    "route {}/{}: unknown port {:?}",
                    r.prefix, r.prefix_len, r.port
                )
            })?;
            let max = if r.prefix.is_ipv4() { 32 } else { 128 };
            if r.prefix_len > max {
                return Err(format!(
                    "route {}/{}: prefix length over {max}",
                    r.prefix, r.prefix_len
                ));
            }
            if let Some(via) = r.via {
                if via.is_ipv4() != r.prefix.is_ipv4() {
                    return Err(format!(
                        "route {}/{}: gateway {via} is of the other address family",
                        r.prefix, r.prefix_len
                    ));
                }
            }
            routes.push(Route {
                prefix: r.prefix,
                prefix_len: r.prefix_len,
                via: r.via,
                port,
            });
        }

        let (lo, hi) = ext.local_port_range;
        if lo == 0 || lo > hi {
            return Err(format!(
                "local port range {lo}-{hi}: must be 1..=65535, low <= high"
            ));
        }
        let mut laddrs: HashMap<ServiceKey, Vec<IpAddr>> = HashMap::new();
        for l in &ext.laddrs {
            let port = port_idx(&l.port)
                .ok_or_else(|| format!("local address {}: unknown port {:?}", l.addr, l.port))?;
            if !desc.services.iter().any(|s| s.key == l.service) {
                return Err(format!(
                    "local address {}: no service {} {}:{}",
                    l.addr, l.service.proto, l.service.vip, l.service.vport
                ));
            }
            let max = if l.addr.is_ipv4() { 32 } else { 128 };
            // A LIP is an own address (answers ARP); an explicit address entry wins.
            if ext.claim_laddrs {
                local.entry(l.addr).or_insert(crate::snapshot::LocalAddr {
                    addr: l.addr,
                    prefix_len: max,
                    port,
                });
            }
            let v = laddrs.entry(l.service).or_default();
            if !v.contains(&l.addr) {
                v.push(l.addr);
            }
        }
        let mut acl_specs: HashMap<ServiceKey, &AclSpec> = HashMap::new();
        for (key, spec) in &ext.acl {
            check_acl(desc, key, spec)?;
            if acl_specs.insert(*key, spec).is_some() {
                return Err(format!(
                    "access lists of service {} {}:{} given twice",
                    key.proto, key.vip, key.vport
                ));
            }
        }
        let mut acls = HashMap::new();
        let mut limits: HashMap<ServiceKey, u32> = HashMap::new();
        for (key, n) in &ext.conn_limit {
            if !desc.services.iter().any(|s| s.key == *key) {
                return Err(format!(
                    "connection limit: no service {} {}:{}",
                    key.proto, key.vip, key.vport
                ));
            }
            if limits.insert(*key, *n).is_some() {
                return Err(format!(
                    "connection limit of service {} {}:{} given twice",
                    key.proto, key.vip, key.vport
                ));
            }
        }
        let (owner_keys, nat_owner_keys) = owner_keys(desc);
        let mut services = crate::snapshot::ConfigMap::default();
        let mut services_by_id = ConfigMap::default();
        let mut ops_nat = FastMap::default();
        let mut dest_refs = crate::snapshot::ConfigMap::default();
        let mut dest_ids = IdMap::default();
        let mut live_services = std::collections::HashSet::new();
        let mut live_dests = std::collections::HashSet::new();
        for s in &desc.services {
            let name = s.scheduler.as_str();
            let flags = sched::SchedFlags::parse(&s.sched_flags).map_err(|e| {
                format!("service {} {}:{}: {e}", s.key.proto, s.key.vip, s.key.vport)
            })?;
            if !sched::SCHEDULERS.contains(&name) {
                return Err(format!(
                    "service {} {}:{}: unknown scheduler {name:?} (known: {})",
                    s.key.proto,
                    s.key.vip,
                    s.key.vport,
                    sched::SCHEDULERS.join(", ")
                ));
            }
            if !self.services.contains_key(&s.key) {
                let id = self.id();
                let entry = ServiceEntry {
                    id,
                    traffic: Arc::new(Traffic::default()),
                    acl_drops: Arc::new(AclCounters::default()),
                    conn_limit_drops: Arc::new(WorkerCount::default()),
                };
                self.services.insert(s.key, entry);
            }
            let (sid, straffic, acl_drops, conn_limit_drops) = {
                let e = &self.services[&s.key];
                (
                    e.id,
                    e.traffic.clone(),
                    e.acl_drops.clone(),
                    e.conn_limit_drops.clone(),
                )
            };
            // Unchanged lists keep their compiled form (and the workers
            // their connections).
            let acl = acl_specs.get(&s.key).and_then(|spec| {
                let acl = match self.acls.get(&s.key) {
                    Some((was, acl)) if was == *spec => acl.clone(),
                    _ => Arc::new(Acl::compile(spec)?),
                };
                acls.insert(s.key, ((*spec).clone(), acl.clone()));
                Some(acl)
            });
            live_services.insert(s.key);
            let mut dests = Vec::with_capacity(s.dests.len());
            let mut meta = Vec::with_capacity(s.dests.len());
            for d in &s.dests {
                let fnat64 =
                    d.mode == ForwardMode::FullNat && s.key.vip.is_ipv6() && d.addr.is_ipv4();
                if d.addr.is_ipv4() != s.key.vip.is_ipv4() && !fnat64 {
                    return Err(format!(
                        "dest {} of service {}:{}: address family differs from the VIP (only FULLNAT serves an IPv6 VIP from IPv4 real servers)",
                        d.addr, s.key.vip, s.key.vport
                    ));
                }
                if matches!(d.mode, ForwardMode::Dr | ForwardMode::Tun) && d.port != s.key.vport {
                    return Err(format!(
                        "dest {}:{} of service {}:{}: DR and TUN forward to the virtual port (real server port must be {})",
                        d.addr, d.port, s.key.vip, s.key.vport, s.key.vport
                    ));
                }
                let k = (s.key, d.addr, d.port);
                if !self.dests.contains_key(&k) {
                    let id = self.id();
                    self.dests.insert(
                        k,
                        DestEntry {
                            id,
                            counters: Arc::new(sched::DestCounters::default()),
                            traffic: Arc::new(Traffic::default()),
                        },
                    );
                }
                let e = &self.dests[&k];
                live_dests.insert(k);
                let mut sd = sched::Dest::new(d.addr, d.port, d.weight);
                sd.u_threshold = d.u_threshold;
                sd.l_threshold = d.l_threshold;
                sd.inhibited = d.inhibited;
                sd.counters = e.counters.clone();
                dests.push(sd);
                meta.push(DestMeta {
                    id: e.id,
                    mode: d.mode,
                    traffic: e.traffic.clone(),
                });
                let r = DestRef {
                    counters: e.counters.clone(),
                    traffic: e.traffic.clone(),
                    service: sid,
                    service_traffic: straffic.clone(),
                };
                dest_ids.insert(e.id, r.clone());
                dest_refs.insert(e.id, r);
            }
            let input = SchedInput::new(name, &flags, &dests);
            let table = match self.tables.get(&s.key) {
                Some((i, t)) if *i == input => t.clone(),
                _ => {
                    let t = sched::compile(name, &flags, &dests).map_err(|e| {
                        format!("service {} {}:{}: {e}", s.key.proto, s.key.vip, s.key.vport)
                    })?;
                    self.tables.insert(s.key, (input, t.clone()));
                    t
                }
            };
            let mut lips = laddrs.remove(&s.key).unwrap_or_default();
            lips.sort_by_key(|a| a.is_ipv6()); // stable: IPv4 first, order kept
            let laddrs_v4 = lips.iter().filter(|a| a.is_ipv4()).count();
            let svc = Arc::new(Service {
                id: sid,
                key: s.key,
                scheduler: s.scheduler.clone(),
                sched_flags: flags,
                sched: table,
                persistence: s.persistence,
                conn_timeout_s: s.conn_timeout_s,
                ops: s.ops,
                dests,
                meta,
                traffic: straffic,
                laddrs: lips,
                laddrs_v4,
                proxy_protocol: ext
                    .proxy_protocol
                    .iter()
                    .find(|(k, _)| *k == s.key)
                    .map(|(_, v)| *v),
                synproxy: s.key.proto == Proto::Tcp && ext.synproxy.contains(&s.key),
                owner_key: owner_keys[&s.key],
                acl,
                acl_drops,
                conn_limit: limits.get(&s.key).copied().unwrap_or(0),
                conn_limit_drops,
            });
            let proto = proto_number(s.key.proto);
            if services
                .insert((proto, s.key.vip, s.key.vport), svc.clone())
                .is_some()
            {
                return Err(format!(
                    "service {} {}:{} listed twice",
                    s.key.proto, s.key.vip, s.key.vport
                ));
            }
            if svc.ops && s.key.proto == Proto::Udp {
                for (d, m) in svc.dests.iter().zip(&svc.meta) {
                    if m.mode == ForwardMode::Nat {
                        ops_nat.insert((d.addr, d.port), (sid, m.id));
                    }
                }
            }
            services_by_id.insert(sid, svc);
        }
        // Forget counters of what no longer exists (a re-added service starts at zero, as in IPVS).
        self.services.retain(|k, _| live_services.contains(k));
        self.tables.retain(|k, _| live_services.contains(k));
        self.dests.retain(|k, _| live_dests.contains(k));

        self.generation += 1;
        let acls_changed = acls.len() != self.acls.len()
            || acls
                .iter()
                .any(|(k, (_, a))| !self.acls.get(k).is_some_and(|(_, b)| Arc::ptr_eq(a, b)));
        if acls_changed {
            self.acl_gen = self.generation;
        }
        self.acls = acls;
        Ok(Snapshot {
            generation: self.generation,
            ports: ports.to_vec(),
            services,
            services_by_id,
            local,
            routes: RouteTable::new(routes),
            dests: dest_refs,
            dest_ids,
            nat_owner_keys,
            ops_nat,
            desc: desc.clone(),
            ext: ext.clone(),
            acl_gen: self.acl_gen,
        })
    }
}

/// Access lists must name a service and hold prefixes of its VIP's family
/// (its clients' family).
fn check_acl(desc: &ConfigDesc, key: &ServiceKey, spec: &AclSpec) -> Result<(), String> {
    let name = format!("service {} {}:{}", key.proto, key.vip, key.vport);
    if !desc.services.iter().any(|s| s.key == *key) {
        return Err(format!("access lists: no {name}"));
    }
    for (list, entries) in [
        ("blacklist", &spec.blacklist),
        ("whitelist", &spec.whitelist),
    ] {
        for (a, len) in entries {
            let max = if a.is_ipv4() { 32 } else { 128 };
            if a.is_ipv4() != key.vip.is_ipv4() || *len > max {
                return Err(format!(
                    "{name}: {list} entry {a}/{len} does not fit the VIP"
                ));
            }
        }
    }
    Ok(())
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// NAT real server (proto, RIP, rport) -> how its replies find their owner.
pub type NatOwnerKeys = FastMap<(u8, IpAddr, u16), OwnerKey>;

/// Each service's [`OwnerKey`], and the keys NAT replies are owned by.
///
/// A persistent service keys by its client net. A NAT reply names only its
/// real server, so services sharing a NAT real server (same proto, RIP and
/// rport) form a group that must key alike: a group with a persistent member
/// keys by the coarsest (shortest) persistence mask in it; other services
/// with NAT real servers by client address and port; the rest (FULLNAT, DR,
/// TUN) by the request's own flow.
fn owner_keys(desc: &ConfigDesc) -> (HashMap<ServiceKey, OwnerKey>, NatOwnerKeys) {
    let n = desc.services.len();
    // Union-find over service indices.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut first_user: HashMap<(u8, IpAddr, u16), usize> = HashMap::new();
    for (i, s) in desc.services.iter().enumerate() {
        for d in s.dests.iter().filter(|d| d.mode == ForwardMode::Nat) {
            let k = (proto_number(s.key.proto), d.addr, d.port);
            let j = *first_user.entry(k).or_insert(i);
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a] = b;
        }
    }
    let mut group_mask: HashMap<usize, u8> = HashMap::new();
    for (i, s) in desc.services.iter().enumerate() {
        if let Some(p) = s.persistence {
            let r = root(&mut parent, i);
            let m = group_mask.entry(r).or_insert(p.netmask_len);
            *m = (*m).min(p.netmask_len);
        }
    }
    let mut keys = HashMap::new();
    for (i, s) in desc.services.iter().enumerate() {
        let r = root(&mut parent, i);
        let nat = s.dests.iter().any(|d| d.mode == ForwardMode::Nat);
        let key = match group_mask.get(&r) {
            Some(&m) => OwnerKey::ClientNet(m),
            None if nat => OwnerKey::ClientPort,
            None => OwnerKey::Flow,
        };
        keys.insert(s.key, key);
    }
    let mut nat = FastMap::default();
    for (k, i) in first_user {
        let key = keys[&desc.services[i].key];
        if key != OwnerKey::ClientPort {
            nat.insert(k, key);
        }
    }
    (keys, nat)
}

/// Test helper: compile `desc` with `ext` for two ports `dpdk0`, `dpdk1`.
#[cfg(test)]
pub(crate) fn compile_for_test(desc: &ConfigDesc, ext: &ExtDesc) -> Snapshot {
    let ports: Vec<PortInfo> = (0..2)
        .map(|i| PortInfo {
            name: format!("dpdk{i}"),
            id: i,
            mac: [2, 0, 0, 0, 0, i as u8],
            mtu: 1500,
        })
        .collect();
    Compiler::default()
        .compile_ext(desc, ext, &ports)
        .expect("test configuration compiles")
}

#[cfg(test)]
mod id_map_tests {
    use super::IdMap;
    use std::collections::HashMap;

    /// `IdMap` answers as a `HashMap` does, for sequential ids (the
    /// compiler's), spread ones (after many applies) and colliding ones.
    #[test]
    fn id_map_answers_as_a_hash_map() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut m = IdMap::default();
            let mut h = HashMap::new();
            assert_eq!(m.get(&0), None);
            assert_eq!(m.get(&7), None);
            let n = (next() % 300) as usize;
            let mut id = (next() % 50) as u32;
            for _ in 0..n {
                id = match round % 3 {
                    0 => id + 1,
                    1 => id + 1 + (next() % 1000) as u32,
                    _ => (next() % 64) as u32 * 1024,
                };
                let v = next();
                assert_eq!(m.insert(id, v), h.insert(id, v));
                assert_eq!(m.len(), h.len());
            }
            for _ in 0..2000 {
                let q = match next() % 3 {
                    0 => (next() % 70_000) as u32,
                    1 => next() as u32,
                    _ => h
                        .keys()
                        .nth((next() % (h.len() as u64 + 1)) as usize)
                        .copied()
                        .unwrap_or(0),
                };
                assert_eq!(m.get(&q), h.get(&q), "{q}");
                assert_eq!(m.contains_key(&q), h.contains_key(&q));
            }
            let mut a: Vec<(u32, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            let mut b: Vec<(u32, u64)> = h.iter().map(|(k, v)| (*k, *v)).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            assert_eq!(m.values().count(), h.len());
            assert_eq!(m.is_empty(), h.is_empty());
        }
    }
}
