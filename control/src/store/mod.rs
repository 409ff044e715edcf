//! The configuration state of the director with IPVS semantics: services keyed by
//! (protocol, VIP, port), dests keyed by (address, port) within a service,
//! addresses on ports, static routes, and the idle timeouts.
//!
//! Every mutation validates first and changes nothing when it fails; the store is
//! `Clone` so the server can try a change on a copy and keep the original when the
//! dataplane refuses it. It never talks to the dataplane itself: [`Store::desc`]
//! is the full description handed to `Backend::apply`. What the health checks
//! found lives in `health`, keepalived's quorum and sorry server in `quorum`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use dataplane::{
    AclSpec, AddrSpec, ConfigDesc, DestSpec, ExtDesc, ForwardMode, LocalAddrSpec, Proto,
    ProxyProtocol, RouteSpec, ServiceKey, ServiceSpec,
};

mod health;
mod quorum;

pub use quorum::QuorumScripts;

use crate::addr::{fmt_acl_entry, fmt_addr_port, max_prefix, network_of, prefix_contains};
use crate::health::{CheckSpec, DestId};
use crate::scheduler::{check_sched_flags, check_scheduler};

/// Persistence timeout when `-p` is given without a value (ipvsadm).
pub const DEFAULT_PERSISTENCE_S: u32 = 300;
/// Largest dest weight IPVS accepts.
pub const MAX_WEIGHT: u32 = 65535;

/// Why a change was refused; maps onto gRPC NOT_FOUND / ALREADY_EXISTS / INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound(String),
    AlreadyExists(String),
    /// A value the rules refuse: the field as `dpvs.proto` names it (`weight`,
    /// `port`, `netmask_len`) and why. Shown as `field: message`; the config
    /// file maps the field to its own key.
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl StoreError {
    /// The message without the field.
    pub fn message(&self) -> &str {
        match self {
            StoreError::NotFound(m) | StoreError::AlreadyExists(m) => m,
            StoreError::Invalid { message, .. } => message,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(m) | StoreError::AlreadyExists(m) => f.write_str(m),
            StoreError::Invalid { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn invalid(field: &'static str, m: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        message: m.into(),
    }
}

/// `TCP 10.0.0.100:80`, as messages name a service.
pub fn service_name(key: &ServiceKey) -> String {
    format!("{} {}", key.proto, fmt_addr_port(&key.vip, key.vport))
}

/// Which access list of a service: DPVS's blacklist (`-U`/`-V`/`-B`) or
/// whitelist (`-O`/`-Y`/`-W`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclList {
    Blacklist,
    Whitelist,
}

impl AclList {
    /// As messages, dpvs.toml keys and the API name it.
    pub fn name(self) -> &'static str {
        match self {
            AclList::Blacklist => "blacklist",
            AclList::Whitelist => "whitelist",
        }
    }
}

/// A service's access lists: client prefixes `(address, length)`, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclLists {
    pub blacklist: BTreeSet<(IpAddr, u8)>,
    pub whitelist: BTreeSet<(IpAddr, u8)>,
}

impl AclLists {
    pub fn list(&self, l: AclList) -> &BTreeSet<(IpAddr, u8)> {
        match l {
            AclList::Blacklist => &self.blacklist,
            AclList::Whitelist => &self.whitelist,
        }
    }
    fn list_mut(&mut self, l: AclList) -> &mut BTreeSet<(IpAddr, u8)> {
        match l {
            AclList::Blacklist => &mut self.blacklist,
            AclList::Whitelist => &mut self.whitelist,
        }
    }
}

/// ipvsadm's connection idle timeouts (`--set tcp tcpfin udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_s: u32,
    pub tcp_fin_s: u32,
    pub udp_s: u32,
}

impl Default for Timeouts {
    /// The IPVS defaults: 900 120 300.
    fn default() -> Self {
        Timeouts {
            tcp_s: 900,
            tcp_fin_s: 120,
            udp_s: 300,
        }
    }
}

/// Services, addresses, routes and timeouts, validated.
#[derive(Debug, Clone, Default)]
pub struct Store {
    ports: Vec<String>,
    services: BTreeMap<ServiceKey, ServiceSpec>,
    addrs: Vec<AddrSpec>,
    routes: Vec<RouteSpec>,
    /// VIP host addresses added by `add_service`, removed with the last service using them.
    auto_addrs: BTreeSet<IpAddr>,
    /// Addresses learned from a kernel interface (keepalived's VRRP, `ip addr`
    /// there): the kernel side's, so `-S`, the state file and `apply` leave
    /// them alone; they go when they leave the interface.
    kernel_addrs: BTreeSet<IpAddr>,
    /// `[control] claim_vips = false`: services do not make their VIPs (nor
    /// FULLNAT local addresses) addresses of the director; they become its
    /// only when added (by keepalived's VRRP on a kernel interface,
    /// `dpvsctl addr add`).
    no_vip_claim: bool,
    timeouts: Timeouts,
    /// FULLNAT local addresses (DPVS `-P`), in the order added.
    laddrs: Vec<LocalAddrSpec>,
    /// Services that send a Proxy Protocol header (DPVS `--proxy-protocol`).
    proxy_protocol: BTreeMap<ServiceKey, ProxyProtocol>,
    /// Health checks of real servers (docs/health.md).
    checks: BTreeMap<DestId, CheckSpec>,
    /// Sorry servers (keepalived's `sorry_server`): in the dataplane only
    /// while the service has no usable real server.
    sorry: BTreeMap<ServiceKey, SocketAddr>,
    /// Services with the passive health check on.
    passive: BTreeSet<ServiceKey>,
    /// Services behind the SYN proxy (DPVS `-j enable`).
    synproxy: BTreeSet<ServiceKey>,
    /// Per-service connection limits (`--conn-limit N`); services without
    /// one (0) are absent.
    conn_limit: BTreeMap<ServiceKey, u32>,
    /// Real servers the passive check has inhibited for now.
    passive_down: BTreeSet<DestId>,
    /// keepalived's `quorum` and `hysteresis` per service (absent: 1 and 0).
    quorum: BTreeMap<ServiceKey, (u32, u32)>,
    /// Services whose quorum is lost (kept only where hysteresis needs memory).
    quorum_lost: BTreeSet<ServiceKey>,
    /// keepalived's `quorum_up` / `quorum_down` commands per service; services
    /// with neither are absent.
    quorum_scripts: BTreeMap<ServiceKey, QuorumScripts>,
    /// Access lists (DPVS `-U`, `-O`); services with both empty are absent.
    acl: BTreeMap<ServiceKey, AclLists>,
}

impl Store {
    /// An empty store for a director with these ports.
    pub fn new(ports: Vec<String>) -> Store {
        Store {
            ports,
            ..Store::default()
        }
    }

    /// Whether services make their VIPs the director's addresses (the
    /// default; `[control] claim_vips`). Set before services are added.
    pub fn set_claim_vips(&mut self, on: bool) {
        self.no_vip_claim = !on;
    }

    pub fn claims_vips(&self) -> bool {
        !self.no_vip_claim
    }

    /// The full description for the dataplane; services sorted by key. A
    /// service whose real servers are all down (inhibited) or quiescent has
    /// its sorry server, if it has one, as its only usable real server.
    pub fn desc(&self) -> ConfigDesc {
        ConfigDesc {
            services: self.services.values().map(|s| self.effective(s)).collect(),
            addrs: self.addrs.clone(),
            routes: self.routes.clone(),
        }
    }

    /// A service as the dataplane runs it: real servers the passive check
    /// has down are inhibited too, and the sorry server is in while in use.
    pub fn effective(&self, s: &ServiceSpec) -> ServiceSpec {
        let mut s = s.clone();
        for d in &mut s.dests {
            if self.passive_down.contains(&(s.key, d.addr, d.port)) {
                d.inhibited = true;
            }
        }
        if let Some(sorry) = self.sorry_in_use(&s.key) {
            // As keepalived: the sorry server alone, the real servers still
            // alive taken out until the quorum is back.
            for d in &mut s.dests {
                d.inhibited = true;
            }
            s.dests.push(sorry);
        }
        s
    }

    /// The VIPs whose services can take connections now: a real server
    /// neither inhibited nor of weight 0, or a sorry server in use. What a
    /// director announces to its routers (`[control] announce_vips`).
    pub fn usable_vips(&self) -> BTreeSet<IpAddr> {
        self.services
            .values()
            .map(|s| self.effective(s))
            .filter(|s| s.dests.iter().any(|d| !d.inhibited && d.weight > 0))
            .map(|s| s.key.vip)
            .collect()
    }

    /// DPVS extras for the dataplane (FULLNAT local addresses).
    pub fn ext(&self) -> ExtDesc {
        ExtDesc {
            laddrs: self.laddrs.clone(),
            proxy_protocol: self.proxy_protocol.iter().map(|(k, v)| (*k, *v)).collect(),
            acl: self
                .acl
                .iter()
                .map(|(k, l)| {
                    let spec = AclSpec {
                        blacklist: l.blacklist.iter().copied().collect(),
                        whitelist: l.whitelist.iter().copied().collect(),
                    };
                    (*k, spec)
                })
                .collect(),
            synproxy: self.synproxy.iter().copied().collect(),
            claim_laddrs: !self.no_vip_claim,
            conn_limit: self.conn_limit.iter().map(|(k, n)| (*k, *n)).collect(),
            ..ExtDesc::default()
        }
    }

    /// The Proxy Protocol version of a service, if it sends one.
    pub fn proxy_protocol(&self, key: &ServiceKey) -> Option<ProxyProtocol> {
        self.proxy_protocol.get(key).copied()
    }

    /// `-A/-E ... --proxy-protocol v1|v2|none`. TCP services only: a UDP
    /// service has no stream to prepend to (v2 over UDP is not implemented).
    pub fn set_proxy_protocol(
        &mut self,
        key: &ServiceKey,
        pp: Option<ProxyProtocol>,
    ) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        match pp {
            Some(_) if key.proto != Proto::Tcp => Err(invalid(
                "proxy_protocol",
                format!(
                    "{}: Proxy Protocol is supported for TCP services only",
                    service_name(key)
                ),
            )),
            Some(v) => {
                self.proxy_protocol.insert(*key, v);
                Ok(())
            }
            None => {
                self.proxy_protocol.remove(key);
                Ok(())
            }
        }
    }

    /// The access lists of a service (`None`: both empty).
    pub fn acl(&self, key: &ServiceKey) -> Option<&AclLists> {
        self.acl.get(key)
    }

    /// `-U -t VIP:PORT -k ADDR|CIDR` (blacklist), `-O ... -2 ...` (whitelist):
    /// a client prefix of the VIP's family, without host bits.
    pub fn add_acl_entry(
        &mut self,
        key: &ServiceKey,
        list: AclList,
        addr: IpAddr,
        len: u8,
    ) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        let family = |a: &IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        if addr.is_ipv4() != key.vip.is_ipv4() {
            return Err(invalid(
                "addr",
                format!(
                    "{} is {}, the service {} is {}: its clients are of its family",
                    fmt_acl_entry(&addr, len),
                    family(&addr),
                    service_name(key),
                    family(&key.vip)
                ),
            ));
        }
        if len > max_prefix(&addr) || network_of(&addr, len).0 != addr {
            return Err(invalid(
                "addr",
                format!("invalid prefix {addr}/{len}: host bits set"),
            ));
        }
        if !self
            .acl
            .entry(*key)
            .or_default()
            .list_mut(list)
            .insert((addr, len))
        {
            return Err(StoreError::AlreadyExists(format!(
                "{} already exists in {}",
                acl_entry_name(list, &addr, len),
                service_name(key)
            )));
        }
        Ok(())
    }

    /// `-V -t VIP:PORT -k ADDR|CIDR`, `-Y ... -2 ...`: the entry as added.
    pub fn delete_acl_entry(
        &mut self,
        key: &ServiceKey,
        list: AclList,
        addr: IpAddr,
        len: u8,
    ) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        let lists = self.acl.get_mut(key);
        if !lists.is_some_and(|l| l.list_mut(list).remove(&(addr, len))) {
            return Err(StoreError::NotFound(format!(
                "no {} in {}",
                acl_entry_name(list, &addr, len),
                service_name(key)
            )));
        }
        self.acl
            .retain(|_, l| !l.blacklist.is_empty() || !l.whitelist.is_empty());
        Ok(())
    }

    pub fn laddrs(&self) -> &[LocalAddrSpec] {
        &self.laddrs
    }

    /// `-P -t VIP:PORT -z LIP -F PORT`: a local address for a service.
    pub fn add_laddr(&mut self, l: LocalAddrSpec) -> Result<(), StoreError> {
        self.check_port(&l.port)?;
        if !self.services.contains_key(&l.service) {
            return Err(not_found(&l.service));
        }
        if l.addr.is_unspecified() || l.addr.is_multicast() || l.addr.is_loopback() {
            return Err(invalid("addr", format!("invalid local address {}", l.addr)));
        }
        if self
            .laddrs
            .iter()
            .any(|x| x.service == l.service && x.addr == l.addr)
        {
            return Err(StoreError::AlreadyExists(format!(
                "local address {} already exists in {}",
                l.addr,
                service_name(&l.service)
            )));
        }
        if let Some(other) = self
            .laddrs
            .iter()
            .find(|x| x.addr == l.addr && x.port != l.port)
        {
            return Err(invalid(
                "addr",
                format!("local address {} is already on port {}", l.addr, other.port),
            ));
        }
        self.laddrs.push(l);
        Ok(())
    }

    /// `-Q -t VIP:PORT -z LIP`.
    pub fn delete_laddr(&mut self, key: &ServiceKey, addr: &IpAddr) -> Result<(), StoreError> {
        let before = self.laddrs.len();
        self.laddrs
            .retain(|x| !(x.service == *key && x.addr == *addr));
        if self.laddrs.len() == before {
            return Err(StoreError::NotFound(format!(
                "no local address {addr} in {}",
                service_name(key)
            )));
        }
        Ok(())
    }

    pub fn ports(&self) -> &[String] {
        &self.ports
    }
    pub fn services(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.services.values()
    }
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceSpec> {
        self.services.get(key)
    }
    /// Addresses the operator configured: without the VIP host addresses that
    /// `add_service` put on ports (those come back with their services) and
    /// those learned from a kernel interface (the kernel side's).
    pub fn own_addrs(&self) -> impl Iterator<Item = &AddrSpec> {
        self.addrs
            .iter()
            .filter(|a| !self.auto_addrs.contains(&a.addr) && !self.kernel_addrs.contains(&a.addr))
    }

    /// An address that appeared on a kernel interface (docs/kni.md).
    pub fn add_kernel_addr(&mut self, a: AddrSpec) -> Result<(), StoreError> {
        let ip = a.addr;
        self.add_addr(a)?;
        self.kernel_addrs.insert(ip);
        Ok(())
    }

    /// A new configuration (`apply`, SIGHUP) keeps what the kernel
    /// interfaces hold and it does not configure itself: a VIP keepalived
    /// put there stays the dataplane's.
    pub fn carry_kernel_addrs_from(&mut self, old: &Store) {
        for a in old
            .addrs
            .iter()
            .filter(|a| old.kernel_addrs.contains(&a.addr))
        {
            if !self.addrs.iter().any(|x| x.addr == a.addr) && self.ports.contains(&a.port) {
                self.addrs.push(a.clone());
                self.kernel_addrs.insert(a.addr);
            }
        }
    }

    pub fn addrs(&self) -> &[AddrSpec] {
        &self.addrs
    }
    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// `--set tcp tcpfin udp`: a 0 leaves that value unchanged (as ipvsadm).
    pub fn set_timeouts(&mut self, t: Timeouts) {
        if t.tcp_s != 0 {
            self.timeouts.tcp_s = t.tcp_s;
        }
        if t.tcp_fin_s != 0 {
            self.timeouts.tcp_fin_s = t.tcp_fin_s;
        }
        if t.udp_s != 0 {
            self.timeouts.udp_s = t.udp_s;
        }
    }

    // ---- services (ipvsadm -A -E -D -C) ----

    /// `-A`: adds a service (with any dests it carries). Puts the VIP on a port
    /// when no address equals it yet (see [`Store::ensure_vip`]).
    pub fn add_service(&mut self, mut spec: ServiceSpec) -> Result<(), StoreError> {
        if self.services.contains_key(&spec.key) {
            return Err(StoreError::AlreadyExists(format!(
                "service already exists: {}",
                service_name(&spec.key)
            )));
        }
        check_service_attrs(&spec)?;
        spec.sched_flags = check_sched_flags(&spec.scheduler, &spec.sched_flags)
            .map_err(|m| invalid("sched_flags", m))?;
        let mut seen = BTreeSet::new();
        for d in &spec.dests {
            check_dest(&spec.key, d)?;
            if !seen.insert((d.addr, d.port)) {
                return Err(StoreError::AlreadyExists(format!(
                    "real server already exists: {} in {}",
                    fmt_addr_port(&d.addr, d.port),
                    service_name(&spec.key)
                )));
            }
        }
        let vip = spec.key.vip;
        let mut next = self.clone();
        next.services.insert(spec.key, spec);
        next.ensure_vip(vip)?;
        *self = next;
        Ok(())
    }

    /// `-E`: replaces scheduler, flags, persistence and conn timeout; keeps dests.
    pub fn edit_service(&mut self, spec: ServiceSpec) -> Result<(), StoreError> {
        check_service_attrs(&spec)?;
        let flags = check_sched_flags(&spec.scheduler, &spec.sched_flags)
            .map_err(|m| invalid("sched_flags", m))?;
        let cur = self.service_mut(&spec.key)?;
        cur.scheduler = spec.scheduler;
        cur.sched_flags = flags;
        cur.persistence = spec.persistence;
        if spec.ops {
            if let Some(d) = cur.dests.iter().find(|d| d.mode == ForwardMode::FullNat) {
                return Err(ops_fullnat(&d.addr, d.port));
            }
        }
        cur.conn_timeout_s = spec.conn_timeout_s;
        cur.ops = spec.ops;
        Ok(())
    }

    /// `-D`.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Result<(), StoreError> {
        if self.services.remove(key).is_none() {
            return Err(not_found(key));
        }
        self.laddrs.retain(|l| l.service != *key);
        self.proxy_protocol.remove(key);
        self.checks.retain(|id, _| id.0 != *key);
        self.sorry.remove(key);
        self.passive.remove(key);
        self.passive_down.retain(|id| id.0 != *key);
        self.synproxy.remove(key);
        self.conn_limit.remove(key);
        self.quorum.remove(key);
        self.quorum_lost.remove(key);
        self.quorum_scripts.remove(key);
        self.acl.remove(key);
        self.drop_unused_auto_addrs();
        Ok(())
    }

    /// `-C`: every service goes (addresses and routes stay, except VIPs added for services).
    pub fn clear_services(&mut self) {
        self.services.clear();
        self.laddrs.clear();
        self.proxy_protocol.clear();
        self.checks.clear();
        self.sorry.clear();
        self.passive.clear();
        self.passive_down.clear();
        self.synproxy.clear();
        self.conn_limit.clear();
        self.quorum.clear();
        self.quorum_lost.clear();
        self.quorum_scripts.clear();
        self.acl.clear();
        self.drop_unused_auto_addrs();
    }

    fn service_mut(&mut self, key: &ServiceKey) -> Result<&mut ServiceSpec, StoreError> {
        self.services.get_mut(key).ok_or_else(|| not_found(key))
    }

    // ---- dests (ipvsadm -a -e -d) ----

    /// `-a`. The dest port must already be resolved (ipvsadm: no port = the virtual port).
    pub fn add_dest(&mut self, key: &ServiceKey, dest: DestSpec) -> Result<(), StoreError> {
        check_dest(key, &dest)?;
        if self.synproxy.contains(key) && !replies_through_us(dest.mode) {
            return Err(synproxy_mode(key, &dest));
        }
        let svc = self.service_mut(key)?;
        if svc.ops && dest.mode == ForwardMode::FullNat {
            return Err(ops_fullnat(&dest.addr, dest.port));
        }
        if svc
            .dests
            .iter()
            .any(|d| d.addr == dest.addr && d.port == dest.port)
        {
            return Err(StoreError::AlreadyExists(format!(
                "real server already exists: {} in {}",
                fmt_addr_port(&dest.addr, dest.port),
                service_name(key)
            )));
        }
        svc.dests.push(dest);
        Ok(())
    }

    /// `-e`: replaces weight, mode and thresholds; keeps the health-check state.
    pub fn edit_dest(&mut self, key: &ServiceKey, dest: DestSpec) -> Result<(), StoreError> {
        check_dest(key, &dest)?;
        if self.synproxy.contains(key) && !replies_through_us(dest.mode) {
            return Err(synproxy_mode(key, &dest));
        }
        let svc = self.service_mut(key)?;
        if svc.ops && dest.mode == ForwardMode::FullNat {
            return Err(ops_fullnat(&dest.addr, dest.port));
        }
        let cur = svc
            .dests
            .iter_mut()
            .find(|d| d.addr == dest.addr && d.port == dest.port)
            .ok_or_else(|| dest_not_found(key, &dest.addr, dest.port))?;
        let inhibited = cur.inhibited;
        *cur = DestSpec { inhibited, ..dest };
        Ok(())
    }

    /// `-d`.
    pub fn delete_dest(
        &mut self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
    ) -> Result<(), StoreError> {
        let svc = self.service_mut(key)?;
        let before = svc.dests.len();
        svc.dests.retain(|d| !(d.addr == *addr && d.port == port));
        if svc.dests.len() == before {
            return Err(dest_not_found(key, addr, port));
        }
        self.checks.remove(&(*key, *addr, port));
        Ok(())
    }

    /// `-A/-E ... -j enable|disable`: the SYN proxy. TCP services whose real
    /// servers all answer through the director (NAT, FULLNAT): it must see
    /// the real server's SYN-ACK.
    pub fn set_synproxy(&mut self, key: &ServiceKey, on: bool) -> Result<(), StoreError> {
        let svc = self.services.get(key).ok_or_else(|| not_found(key))?;
        if !on {
            self.synproxy.remove(key);
            return Ok(());
        }
        if key.proto != Proto::Tcp {
            return Err(invalid(
                "synproxy",
                format!(
                    "{}: the SYN proxy is for TCP services only",
                    service_name(key)
                ),
            ));
        }
        if let Some(d) = svc.dests.iter().find(|d| !replies_through_us(d.mode)) {
            return Err(synproxy_mode(key, d));
        }
        self.synproxy.insert(*key);
        Ok(())
    }

    pub fn synproxy(&self, key: &ServiceKey) -> bool {
        self.synproxy.contains(key)
    }

    /// `-A/-E ... --conn-limit N`: the most connections (active + inactive,
    /// over its real servers) the service holds before it refuses new
    /// ones; 0 = no limit.
    pub fn set_conn_limit(&mut self, key: &ServiceKey, limit: u32) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        if limit == 0 {
            self.conn_limit.remove(key);
        } else {
            self.conn_limit.insert(*key, limit);
        }
        Ok(())
    }

    /// A service's connection limit; 0 = none.
    pub fn conn_limit(&self, key: &ServiceKey) -> u32 {
        self.conn_limit.get(key).copied().unwrap_or(0)
    }

    // ---- addresses (dpip addr) ----

    /// Adds an address on a port. An address lives on one port only.
    pub fn add_addr(&mut self, a: AddrSpec) -> Result<(), StoreError> {
        self.check_port(&a.port)?;
        if a.prefix_len > max_prefix(&a.addr) {
            return Err(invalid(
                "prefix_len",
                format!("invalid prefix length /{} for {}", a.prefix_len, a.addr),
            ));
        }
        if a.addr.is_unspecified() || a.addr.is_multicast() {
            return Err(invalid(
                "addr",
                format!("address {} cannot be assigned", a.addr),
            ));
        }
        if let Some(cur) = self.addrs.iter().find(|x| x.addr == a.addr) {
            if self.auto_addrs.contains(&a.addr) && cur.port == a.port {
                // The user now owns an address a service had put there.
                self.auto_addrs.remove(&a.addr);
                let i = self.addrs.iter().position(|x| x.addr == a.addr);
                if let Some(i) = i {
                    self.addrs[i] = a;
                }
                return Ok(());
            }
            return Err(StoreError::AlreadyExists(format!(
                "address {} already exists on {}",
                a.addr, cur.port
            )));
        }
        self.addrs.push(a);
        Ok(())
    }

    /// Deletes an address from a port (the prefix length is not compared).
    pub fn delete_addr(&mut self, port: &str, addr: &IpAddr) -> Result<(), StoreError> {
        self.check_port(port)?;
        let before = self.addrs.len();
        self.addrs.retain(|x| !(x.port == port && x.addr == *addr));
        if self.addrs.len() == before {
            return Err(StoreError::NotFound(format!(
                "no such address {addr} on {port}"
            )));
        }
        self.auto_addrs.remove(addr);
        self.kernel_addrs.remove(addr);
        Ok(())
    }

    /// DPVS answers for a VIP only when it is an address on a port: when no address
    /// equals `vip`, add it as a host address (/32, /128) on the port whose
    /// connected prefix contains it, else on the first port.
    fn ensure_vip(&mut self, vip: IpAddr) -> Result<(), StoreError> {
        if self.no_vip_claim || self.addrs.iter().any(|a| a.addr == vip) {
            return Ok(());
        }
        let port = self
            .addrs
            .iter()
            .find(|a| prefix_contains(&a.addr, a.prefix_len, &vip))
            .map(|a| a.port.clone())
            .or_else(|| self.ports.first().cloned())
            .ok_or_else(|| invalid("vip", format!("no port to put VIP {vip} on")))?;
        self.addrs.push(AddrSpec {
            port,
            addr: vip,
            prefix_len: max_prefix(&vip),
        });
        self.auto_addrs.insert(vip);
        Ok(())
    }

    fn drop_unused_auto_addrs(&mut self) {
        let used: BTreeSet<IpAddr> = self.services.keys().map(|k| k.vip).collect();
        let unused: Vec<IpAddr> = self.auto_addrs.difference(&used).copied().collect();
        for vip in unused {
            self.auto_addrs.remove(&vip);
            self.addrs.retain(|a| a.addr != vip);
        }
    }

    // ---- routes (dpip route) ----

    pub fn add_route(&mut self, r: RouteSpec) -> Result<(), StoreError> {
        self.check_port(&r.port)?;
        check_route_prefix(&r.prefix, r.prefix_len)?;
        if let Some(via) = &r.via {
            if via.is_ipv4() != r.prefix.is_ipv4() {
                return Err(invalid(
                    "via",
                    format!(
                        "next hop {via} and prefix {}/{} differ in address family",
                        r.prefix, r.prefix_len
                    ),
                ));
            }
            if via.is_unspecified() || via.is_multicast() {
                return Err(invalid("via", format!("invalid next hop {via}")));
            }
        }
        if self
            .routes
            .iter()
            .any(|x| x.prefix == r.prefix && x.prefix_len == r.prefix_len)
        {
            return Err(StoreError::AlreadyExists(format!(
                "route {}/{} already exists",
                r.prefix, r.prefix_len
            )));
        }
        self.routes.push(r);
        Ok(())
    }

    pub fn delete_route(&mut self, prefix: &IpAddr, prefix_len: u8) -> Result<(), StoreError> {
        let before = self.routes.len();
        self.routes
            .retain(|x| !(x.prefix == *prefix && x.prefix_len == prefix_len));
        if self.routes.len() == before {
            return Err(StoreError::NotFound(format!(
                "no such route {prefix}/{prefix_len}"
            )));
        }
        Ok(())
    }

    fn check_port(&self, port: &str) -> Result<(), StoreError> {
        if port.is_empty() {
            Err(invalid(
                "port",
                "missing (a port name from the config file)",
            ))
        } else if self.ports.iter().any(|p| p == port) {
            Ok(())
        } else {
            Err(invalid("port", format!("unknown port \"{port}\"")))
        }
    }
}

/// `blacklist entry 10.1.0.0/16`, as messages name an access-list entry.
fn acl_entry_name(list: AclList, addr: &IpAddr, len: u8) -> String {
    format!("{} entry {}", list.name(), fmt_acl_entry(addr, len))
}

/// The error for a service the store does not have.
pub fn not_found(key: &ServiceKey) -> StoreError {
    StoreError::NotFound(format!("no such service {}", service_name(key)))
}

fn dest_not_found(key: &ServiceKey, addr: &IpAddr, port: u16) -> StoreError {
    StoreError::NotFound(format!(
        "no such real server {} in {}",
        fmt_addr_port(addr, port),
        service_name(key)
    ))
}

/// A route prefix must have no host bits set (as `ip route` insists).
pub fn check_route_prefix(prefix: &IpAddr, len: u8) -> Result<(), StoreError> {
    if len > max_prefix(prefix) {
        return Err(invalid(
            "prefix_len",
            format!("invalid prefix length /{len} for {prefix}"),
        ));
    }
    let network_ok = match prefix {
        IpAddr::V4(p) => {
            let l = u32::from(len);
            let host = if l >= 32 { 0 } else { u32::MAX >> l };
            u32::from(*p) & host == 0
        }
        IpAddr::V6(p) => {
            let l = u32::from(len);
            let host = if l >= 128 { 0 } else { u128::MAX >> l };
            u128::from(*p) & host == 0
        }
    };
    if network_ok {
        Ok(())
    } else {
        Err(invalid(
            "prefix",
            format!("invalid prefix {prefix}/{len}: host bits set"),
        ))
    }
}

fn check_service_attrs(s: &ServiceSpec) -> Result<(), StoreError> {
    let vip = &s.key.vip;
    if vip.is_unspecified() || vip.is_multicast() {
        return Err(invalid("vip", format!("invalid virtual address {vip}")));
    }
    check_scheduler(&s.scheduler).map_err(|m| invalid("scheduler", m))?;
    match &s.persistence {
        Some(p) => {
            if p.timeout_s == 0 {
                return Err(invalid(
                    "timeout_s",
                    "persistence timeout must be at least 1 second",
                ));
            }
            if p.netmask_len > max_prefix(vip) {
                return Err(invalid(
                    "netmask_len",
                    format!("invalid persistence netmask /{} for {vip}", p.netmask_len),
                ));
            }
        }
        None if s.key.vport == 0 => {
            return Err(invalid(
                "vport",
                "zero port specified for non-persistent service",
            ));
        }
        None => {}
    }
    if s.ops && s.key.proto != Proto::Udp {
        return Err(invalid(
            "ops",
            "one-packet scheduling (-o) is for UDP services only",
        ));
    }
    if s.ops {
        if let Some(d) = s.dests.iter().find(|d| d.mode == ForwardMode::FullNat) {
            return Err(ops_fullnat(&d.addr, d.port));
        }
    }
    if s.conn_timeout_s == Some(0) {
        return Err(invalid(
            "conn_timeout_s",
            "connection timeout must be at least 1 second",
        ));
    }
    Ok(())
}

/// One-packet scheduling keeps no connection; FULLNAT needs one (its local
/// address and port are how replies find their client).
fn ops_fullnat(addr: &IpAddr, port: u16) -> StoreError {
    invalid(
        "mode",
        format!(
            "real server {} is FULLNAT: one-packet scheduling (-o) keeps no connection, which FULLNAT needs",
            fmt_addr_port(addr, port)
        ),
    )
}

/// A real server's own rules (those that need no other dest): what
/// `add_dest`/`edit_dest` check first.
/// NAT and FULLNAT: the real server's replies come back through the director.
fn replies_through_us(m: ForwardMode) -> bool {
    matches!(m, ForwardMode::Nat | ForwardMode::FullNat)
}

fn synproxy_mode(key: &ServiceKey, d: &DestSpec) -> StoreError {
    invalid(
        "synproxy",
        format!(
            "{}: real server {} is {}: the SYN proxy needs NAT or FULLNAT real servers \
             (it must see their SYN-ACK)",
            service_name(key),
            fmt_addr_port(&d.addr, d.port),
            d.mode.ipvsadm_name()
        ),
    )
}

pub fn check_dest(key: &ServiceKey, d: &DestSpec) -> Result<(), StoreError> {
    if d.addr.is_unspecified() || d.addr.is_multicast() {
        return Err(invalid(
            "addr",
            format!("invalid real server address {}", d.addr),
        ));
    }
    // FULLNAT64: an IPv6 service may have IPv4 real servers in FULLNAT mode.
    let fnat64 = d.mode == ForwardMode::FullNat && key.vip.is_ipv6() && d.addr.is_ipv4();
    if d.addr.is_ipv4() != key.vip.is_ipv4() && !fnat64 {
        return Err(invalid("addr", format!(
            "real server {} and virtual service {} differ in address family (only FULLNAT (-b) serves an IPv6 service from IPv4 real servers)",
            d.addr, key.vip
        )));
    }
    if d.weight > MAX_WEIGHT {
        return Err(invalid(
            "weight",
            format!("invalid weight {}: must be 0..{MAX_WEIGHT}", d.weight),
        ));
    }
    if d.l_threshold > d.u_threshold && d.u_threshold != 0 {
        return Err(invalid(
            "l_threshold",
            format!(
                "lower threshold {} is above upper threshold {}",
                d.l_threshold, d.u_threshold
            ),
        ));
    }
    if matches!(d.mode, ForwardMode::Dr | ForwardMode::Tun) && d.port != key.vport {
        return Err(invalid(
            "port",
            format!(
                "DR and TUN forward to the virtual port: real server port {} != {}",
                d.port, key.vport
            ),
        ));
    }
    if d.port == 0 && key.vport != 0 {
        return Err(invalid(
            "port",
            "real server port 0 is only valid for a port-0 service",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{Persistence, Proto};

    fn key(vip: &str, port: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: vip.parse().unwrap(),
            vport: port,
        }
    }

    fn svc(vip: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            key: key(vip, port),
            scheduler: "rr".into(),
            sched_flags: vec![],
            persistence: None,
            conn_timeout_s: None,
            ops: false,
            dests: vec![],
        }
    }

    fn dest(addr: &str, port: u16, mode: ForwardMode) -> DestSpec {
        DestSpec {
            addr: addr.parse().unwrap(),
            port,
            weight: 1,
            mode,
            u_threshold: 0,
            l_threshold: 0,
            inhibited: false,
        }
    }

    #[test]
    fn proxy_protocol_per_tcp_service() {
        let mut s = store();
        let k = key("10.0.0.100", 80);
        assert!(matches!(
            s.set_proxy_protocol(&k, Some(ProxyProtocol::V1)),
            Err(StoreError::NotFound(_))
        ));
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        s.set_proxy_protocol(&k, Some(ProxyProtocol::V2)).unwrap();
        assert_eq!(s.proxy_protocol(&k), Some(ProxyProtocol::V2));
        assert_eq!(s.ext().proxy_protocol, vec![(k, ProxyProtocol::V2)]);
        s.set_proxy_protocol(&k, None).unwrap();
        assert_eq!(s.ext(), ExtDesc::default());
        s.set_proxy_protocol(&k, Some(ProxyProtocol::V1)).unwrap();
        s.delete_service(&k).unwrap();
        assert_eq!(s.ext(), ExtDesc::default(), "gone with the service");

        let mut u = svc("10.0.0.100", 53);
        u.key.proto = Proto::Udp;
        let uk = u.key;
        s.add_service(u).unwrap();
        let e = s
            .set_proxy_protocol(&uk, Some(ProxyProtocol::V2))
            .unwrap_err();
        assert!(e.to_string().contains("TCP services only"), "{e}");
        assert_eq!(s.proxy_protocol(&uk), None);
    }

    #[test]
    fn access_lists_per_service() {
        let mut s = store();
        let k = key("10.0.0.100", 80);
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let bl = AclList::Blacklist;
        assert_eq!(
            s.add_acl_entry(&k, bl, ip("10.1.0.0"), 16).unwrap_err(),
            StoreError::NotFound("no such service TCP 10.0.0.100:80".into())
        );
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        s.add_acl_entry(&k, bl, ip("10.1.0.0"), 16).unwrap();
        s.add_acl_entry(&k, bl, ip("10.0.0.7"), 32).unwrap();
        s.add_acl_entry(&k, AclList::Whitelist, ip("10.0.0.0"), 8)
            .unwrap();
        assert_eq!(
            s.ext().acl,
            vec![(
                k,
                AclSpec {
                    blacklist: vec![(ip("10.0.0.7"), 32), (ip("10.1.0.0"), 16)],
                    whitelist: vec![(ip("10.0.0.0"), 8)],
                }
            )]
        );
        let before = s.clone();
        for (addr, len, e) in [
            (
                "10.1.0.0",
                16,
                StoreError::AlreadyExists(
                    "blacklist entry 10.1.0.0/16 already exists in TCP 10.0.0.100:80".into(),
                ),
            ),
            (
                "2001:db8::",
                32,
                invalid(
                    "addr",
                    "2001:db8::/32 is IPv6, the service TCP 10.0.0.100:80 is IPv4: \
                     its clients are of its family",
                ),
            ),
            (
                "10.2.3.4",
                16,
                invalid("addr", "invalid prefix 10.2.3.4/16: host bits set"),
            ),
        ] {
            assert_eq!(s.add_acl_entry(&k, bl, ip(addr), len).unwrap_err(), e);
        }
        assert_eq!(
            s.delete_acl_entry(&k, bl, ip("10.1.0.0"), 24).unwrap_err(),
            StoreError::NotFound("no blacklist entry 10.1.0.0/24 in TCP 10.0.0.100:80".into())
        );
        assert_eq!(
            s.delete_acl_entry(&k, AclList::Whitelist, ip("10.0.0.7"), 32)
                .unwrap_err()
                .to_string(),
            "no whitelist entry 10.0.0.7 in TCP 10.0.0.100:80"
        );
        assert_eq!(s.ext(), before.ext(), "refused changes change nothing");
        s.delete_acl_entry(&k, bl, ip("10.1.0.0"), 16).unwrap();
        s.delete_acl_entry(&k, bl, ip("10.0.0.7"), 32).unwrap();
        s.delete_acl_entry(&k, AclList::Whitelist, ip("10.0.0.0"), 8)
            .unwrap();
        assert_eq!(s.ext(), ExtDesc::default());
        s.add_acl_entry(&k, bl, ip("10.1.0.0"), 16).unwrap();
        s.delete_service(&k).unwrap();
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        assert_eq!(s.acl(&k), None, "gone with the service");
    }

    #[test]
    fn local_addresses_follow_their_service() {
        let mut s = store();
        let k = key("10.0.0.100", 80);
        let l = |a: &str, port: &str| LocalAddrSpec {
            service: k,
            addr: a.parse().unwrap(),
            port: port.into(),
        };
        assert!(matches!(
            s.add_laddr(l("192.168.0.200", "dpdk1")),
            Err(StoreError::NotFound(_))
        ));
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        s.add_laddr(l("192.168.0.200", "dpdk1")).unwrap();
        assert!(matches!(
            s.add_laddr(l("192.168.0.200", "dpdk1")),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(
            s.add_laddr(l("192.168.0.201", "dpdk9")).is_err(),
            "unknown port"
        );
        assert!(s.add_laddr(l("0.0.0.0", "dpdk1")).is_err());
        s.add_laddr(l("192.168.0.201", "dpdk1")).unwrap();
        assert_eq!(s.ext().laddrs.len(), 2);
        s.delete_laddr(&k, &"192.168.0.201".parse().unwrap())
            .unwrap();
        assert!(s
            .delete_laddr(&k, &"192.168.0.201".parse().unwrap())
            .is_err());
        s.delete_service(&k).unwrap();
        assert!(s.laddrs().is_empty(), "gone with the service");
        assert_eq!(s.ext(), ExtDesc::default());
    }

    fn store() -> Store {
        let mut s = Store::new(vec!["dpdk0".into(), "dpdk1".into()]);
        s.add_addr(AddrSpec {
            port: "dpdk0".into(),
            addr: "10.0.0.1".parse().unwrap(),
            prefix_len: 24,
        })
        .unwrap();
        s.add_addr(AddrSpec {
            port: "dpdk1".into(),
            addr: "192.168.0.1".parse().unwrap(),
            prefix_len: 24,
        })
        .unwrap();
        s
    }

    /// An address keepalived put on a kernel interface is not saved and
    /// survives a new configuration that does not name it.
    #[test]
    fn kernel_addresses_are_the_kernels() {
        let mut s = store();
        let vip = AddrSpec {
            port: "dpdk0".into(),
            addr: "10.0.0.100".parse().unwrap(),
            prefix_len: 32,
        };
        s.add_kernel_addr(vip.clone()).unwrap();
        assert!(s.addrs().contains(&vip));
        assert!(!s.own_addrs().any(|a| *a == vip), "not saved with -S");
        let mut next = store();
        next.carry_kernel_addrs_from(&s);
        assert!(next.addrs().contains(&vip), "dropped by apply");
        next.delete_addr("dpdk0", &vip.addr).unwrap();
        let mut later = store();
        later.carry_kernel_addrs_from(&next);
        assert!(!later.addrs().contains(&vip), "gone from the kernel, gone");
    }

    /// What `announce_vips` announces: VIPs with a usable real server.
    #[test]
    fn usable_vips_follow_weights_and_health() {
        let mut s = store();
        let mut a = svc("10.0.1.100", 80);
        a.dests = vec![dest("192.168.0.11", 80, ForwardMode::Dr)];
        s.add_service(a).unwrap();
        let mut b = svc("10.0.1.101", 80);
        let mut zero = dest("192.168.0.12", 80, ForwardMode::Dr);
        zero.weight = 0;
        b.dests = vec![zero];
        s.add_service(b).unwrap();
        s.add_service(svc("10.0.1.102", 80)).unwrap();
        let ip = |a: &str| -> IpAddr { a.parse().unwrap() };
        assert_eq!(s.usable_vips(), [ip("10.0.1.100")].into());
        s.set_health(&key("10.0.1.100", 80), &ip("192.168.0.11"), 80, false)
            .unwrap();
        assert!(s.usable_vips().is_empty(), "its only real server is down");
        s.set_health(&key("10.0.1.100", 80), &ip("192.168.0.11"), 80, true)
            .unwrap();
        assert_eq!(s.usable_vips(), [ip("10.0.1.100")].into());
    }

    #[test]
    fn service_lifecycle_and_errors() {
        let mut s = store();
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        assert_eq!(
            s.add_service(svc("10.0.0.100", 80)),
            Err(StoreError::AlreadyExists(
                "service already exists: TCP 10.0.0.100:80".into()
            ))
        );
        assert_eq!(
            s.delete_service(&key("10.0.0.101", 80)),
            Err(StoreError::NotFound(
                "no such service TCP 10.0.0.101:80".into()
            ))
        );
        let mut e = svc("10.0.0.100", 80);
        e.scheduler = "nope".into();
        assert!(
            matches!(s.edit_service(e), Err(StoreError::Invalid { field: "scheduler", message: m }) if m.starts_with("unknown scheduler \"nope\""))
        );
        let mut e = svc("10.0.0.100", 80);
        e.scheduler = "wrr".into();
        e.persistence = Some(Persistence {
            timeout_s: 300,
            netmask_len: 24,
        });
        s.edit_service(e).unwrap();
        assert_eq!(s.desc().services[0].scheduler, "wrr");
        s.delete_service(&key("10.0.0.100", 80)).unwrap();
        assert!(s.desc().services.is_empty());
    }

    #[test]
    fn vip_is_put_on_the_connected_port_and_removed_with_its_service() {
        let mut s = store();
        s.add_service(svc("192.168.0.100", 80)).unwrap();
        let a = s
            .addrs()
            .iter()
            .find(|a| a.addr == "192.168.0.100".parse::<IpAddr>().unwrap())
            .unwrap();
        assert_eq!((a.port.as_str(), a.prefix_len), ("dpdk1", 32));
        s.add_service(svc("172.16.0.1", 80)).unwrap();
        let a = s.addrs().last().unwrap();
        assert_eq!((a.port.as_str(), a.prefix_len), ("dpdk0", 32));
        s.clear_services();
        assert_eq!(s.addrs().len(), 2);
    }

    #[test]
    fn dest_rules() {
        let mut s = store();
        let k = key("10.0.0.100", 80);
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        s.add_dest(&k, dest("192.168.0.11", 8080, ForwardMode::Nat))
            .unwrap();
        assert!(matches!(
            s.add_dest(&k, dest("192.168.0.11", 8080, ForwardMode::Nat)),
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(
            s.add_dest(&k, dest("192.168.0.12", 8080, ForwardMode::Dr)),
            Err(StoreError::Invalid {
                field: "port",
                message: "DR and TUN forward to the virtual port: real server port 8080 != 80"
                    .into()
            })
        );
        let mut heavy = dest("192.168.0.12", 80, ForwardMode::Dr);
        heavy.weight = 70000;
        assert_eq!(
            s.add_dest(&k, heavy).unwrap_err().to_string(),
            "weight: invalid weight 70000: must be 0..65535"
        );
        let mut th = dest("192.168.0.12", 80, ForwardMode::Dr);
        th.u_threshold = 5;
        th.l_threshold = 10;
        assert_eq!(
            s.add_dest(&k, th).unwrap_err().to_string(),
            "l_threshold: lower threshold 10 is above upper threshold 5"
        );
        let mut w = dest("192.168.0.11", 8080, ForwardMode::FullNat);
        w.weight = 5;
        s.edit_dest(&k, w).unwrap();
        assert_eq!(s.service(&k).unwrap().dests[0].weight, 5);
        assert_eq!(
            s.delete_dest(&k, &"192.168.0.99".parse().unwrap(), 80),
            Err(StoreError::NotFound(
                "no such real server 192.168.0.99:80 in TCP 10.0.0.100:80".into()
            ))
        );
        s.delete_dest(&k, &"192.168.0.11".parse().unwrap(), 8080)
            .unwrap();
        assert!(s.service(&k).unwrap().dests.is_empty());
    }

    #[test]
    fn only_fullnat_serves_an_ipv6_service_from_ipv4_servers() {
        let mut s = store();
        let k6 = key("fd00:10::100", 80);
        s.add_service(svc("fd00:10::100", 80)).unwrap();
        s.add_dest(&k6, dest("192.168.0.11", 80, ForwardMode::FullNat))
            .unwrap();
        for mode in [ForwardMode::Nat, ForwardMode::Dr, ForwardMode::Tun] {
            let err = s.add_dest(&k6, dest("192.168.0.12", 80, mode)).unwrap_err();
            assert!(
                err.to_string().contains("differ in address family"),
                "{mode:?}: {err}"
            );
        }
        // No NAT46: an IPv4 service never gets IPv6 servers.
        let k4 = key("10.0.0.100", 80);
        s.add_service(svc("10.0.0.100", 80)).unwrap();
        assert!(s
            .add_dest(&k4, dest("fd00:192::11", 80, ForwardMode::FullNat))
            .is_err());
    }

    #[test]
    fn addrs_and_routes() {
        let mut s = store();
        assert_eq!(
            s.add_addr(AddrSpec {
                port: "dpdk9".into(),
                addr: "10.0.0.5".parse().unwrap(),
                prefix_len: 32
            }),
            Err(StoreError::Invalid {
                field: "port",
                message: "unknown port \"dpdk9\"".into()
            })
        );
        assert!(matches!(
            s.add_addr(AddrSpec {
                port: "dpdk1".into(),
                addr: "10.0.0.1".parse().unwrap(),
                prefix_len: 32
            }),
            Err(StoreError::AlreadyExists(_))
        ));
        let r = RouteSpec {
            prefix: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            via: Some("10.0.0.254".parse().unwrap()),
            port: "dpdk0".into(),
        };
        s.add_route(r.clone()).unwrap();
        assert!(matches!(s.add_route(r), Err(StoreError::AlreadyExists(_))));
        assert!(matches!(
            s.add_route(RouteSpec {
                prefix: "10.1.0.1".parse().unwrap(),
                prefix_len: 16,
                via: None,
                port: "dpdk0".into()
            }),
            Err(StoreError::Invalid { field: "prefix", message: m }) if m.contains("host bits")
        ));
        s.delete_route(&"0.0.0.0".parse().unwrap(), 0).unwrap();
        assert!(matches!(
            s.delete_route(&"0.0.0.0".parse().unwrap(), 0),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn timeouts_zero_keeps_value() {
        let mut s = store();
        s.set_timeouts(Timeouts {
            tcp_s: 600,
            tcp_fin_s: 0,
            udp_s: 60,
        });
        assert_eq!(
            s.timeouts(),
            Timeouts {
                tcp_s: 600,
                tcp_fin_s: 120,
                udp_s: 60
            }
        );
    }

    #[test]
    fn a_reload_keeps_what_the_checks_found() {
        let file = |check: &str| {
            format!(
                "[workers]\ncores = [1]\n[[port]]\nname = \"dpdk0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.1/24\"]\n\
                 [[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\npassive_check = true\n\
                 dest = [{{ addr = \"10.0.0.11\", mode = \"nat\", check = {{ type = \"{check}\" }} }}, {{ addr = \"10.0.0.12\", mode = \"nat\" }}]\n"
            )
        };
        let load = |check: &str| crate::config::parse(&file(check)).unwrap().store;
        let key = ServiceKey {
            proto: Proto::Tcp,
            vip: "10.0.0.100".parse().unwrap(),
            vport: 80,
        };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.11".parse().unwrap(), "10.0.0.12".parse().unwrap());
        let mut old = load("tcp");
        old.set_health(&key, &a, 80, false).unwrap();
        assert!(old.set_passive_down((key, b, 80), true));
        let down = |s: &Store, ip: IpAddr| {
            s.desc().services[0]
                .dests
                .iter()
                .any(|d| d.addr == ip && d.inhibited)
        };
        // The same file again: both stay down.
        let mut next = load("tcp");
        next.carry_health_from(&old);
        assert!(down(&next, a) && down(&next, b));
        // Another check: it starts over (up until it finds otherwise).
        let mut next = load("http");
        next.carry_health_from(&old);
        assert!(!down(&next, a) && down(&next, b));
    }

    #[test]
    fn quorum_and_hysteresis_decide_when_the_sorry_server_takes_over() {
        let cfg = crate::config::parse(
            "[workers]\ncores = [1]\n[[port]]\nname = \"dpdk0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.1/24\"]\n\
             [[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nsorry_server = \"10.0.0.99:80\"\nquorum = 4\nhysteresis = 1\n\
             dest = [{ addr = \"10.0.0.11\", mode = \"nat\", weight = 2 }, { addr = \"10.0.0.12\", mode = \"nat\", weight = 2 }, { addr = \"10.0.0.13\", mode = \"nat\", weight = 1 }]\n",
        )
        .unwrap();
        let mut s = cfg.store;
        let key = s.services().next().unwrap().key;
        let ip = |x: &str| -> IpAddr { x.parse().unwrap() };
        let sorry = |s: &Store| {
            let d = &s.desc().services[0].dests;
            let usable = d.iter().filter(|d| !d.inhibited).count();
            (
                s.quorum_lost(&key),
                d.iter().any(|d| d.addr == ip("10.0.0.99")),
                usable,
            )
        };
        // Weight 5 alive: quorum 4 held.
        assert_eq!(sorry(&s), (false, false, 3));
        // 3 alive: below quorum but not below 4 - 1: still held (hysteresis).
        s.set_health(&key, &ip("10.0.0.11"), 80, false).unwrap();
        assert!(s.update_quorum().is_empty());
        assert_eq!(sorry(&s), (false, false, 2));
        // 2 alive: lost; the sorry server alone.
        s.set_health(&key, &ip("10.0.0.12"), 80, false).unwrap();
        assert_eq!(s.update_quorum(), [(key, true)]);
        assert_eq!(sorry(&s), (true, true, 1));
        // Back to 4: not yet quorum + hysteresis (5).
        s.set_health(&key, &ip("10.0.0.12"), 80, true).unwrap();
        assert!(s.update_quorum().is_empty());
        assert!(s.quorum_lost(&key));
        // 5: regained, the sorry server leaves.
        s.set_health(&key, &ip("10.0.0.11"), 80, true).unwrap();
        assert_eq!(s.update_quorum(), [(key, false)]);
        assert_eq!(sorry(&s), (false, false, 3));
        assert!(s
            .set_quorum(&key, 2, 2)
            .unwrap_err()
            .to_string()
            .starts_with("hysteresis: "));
        assert!(s.set_quorum(&key, 0, 0).is_err());
    }
}
