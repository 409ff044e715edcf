//! The configuration the control plane hands to the dataplane.
//!
//! Plain descriptions only: `control` validates user input into these, and
//! [`crate::Dataplane::apply`] compiles them into the immutable snapshot the
//! workers read. Nothing here is touched on the packet path.

use std::fmt;
use std::net::IpAddr;

/// L4 protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// LVS forwarding method of a dest (ipvsadm `-m`, `-g`, `-i`; DPVS `-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ForwardMode {
    /// Masquerading: DNAT on requests, SNAT on replies.
    #[default]
    Nat,
    /// DPVS full NAT: source and destination rewritten, replies come back to a LIP.
    FullNat,
    /// Direct routing: only the destination MAC changes.
    Dr,
    /// IP-in-IP tunnel to the real server.
    Tun,
}

impl ForwardMode {
    /// The word ipvsadm prints in the `Forward` column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMode::Nat => "Masq",
            ForwardMode::FullNat => "FullNat",
            ForwardMode::Dr => "Route",
            ForwardMode::Tun => "Tunnel",
        }
    }
}

/// Identity of a virtual service: (protocol, VIP, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub proto: Proto,
    pub vip: IpAddr,
    pub vport: u16,
}

/// One real server behind a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    /// 0 = quiescent: no new connections, existing ones continue.
    pub weight: u32,
    pub mode: ForwardMode,
    /// Upper connection threshold (`-x`); 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`); 0 = none.
    pub l_threshold: u32,
    /// Set by a failing health check: treated as weight 0 by every scheduler.
    pub inhibited: bool,
}

/// Persistence (`-p [timeout] -M netmask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    pub timeout_s: u32,
    /// Prefix length applied to the client address (IPv4 /32 or IPv6 /128 = per client).
    pub netmask_len: u8,
}

/// One virtual service and its dests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Scheduler name as ipvsadm spells it (`rr`, `wrr`, `wlc`, ...).
    pub scheduler: String,
    /// Scheduler flags (`-b sh-fallback,sh-port`, ...).
    pub sched_flags: Vec<String>,
    pub persistence: Option<Persistence>,
    /// Per-service idle timeout override for established connections, seconds.
    pub conn_timeout_s: Option<u32>,
    /// ipvsadm `-o`/`--ops` (UDP): one-packet scheduling, every datagram
    /// scheduled on its own and no connection kept.
    pub ops: bool,
    pub dests: Vec<DestSpec>,
}

/// An address owned by the director on one of its ports (VIP, DIP, LIP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSpec {
    /// Port name from the config file (`dpdk0`).
    pub port: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A static route. Connected routes of port addresses are implied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: IpAddr,
    pub prefix_len: u8,
    /// Next hop; `None` means directly connected on `port`.
    pub via: Option<IpAddr>,
    pub port: String,
}

/// Everything the workers need to forward, as one description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDesc {
    pub services: Vec<ServiceSpec>,
    pub addrs: Vec<AddrSpec>,
    pub routes: Vec<RouteSpec>,
}

/// A FULLNAT local address of a service (DPVS `dpvsctl -P -t VIP:PORT -z LIP -F PORT`).
/// The director owns it (answers ARP for it) on `port`; connections of the
/// service leave toward the real servers from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddrSpec {
    pub service: ServiceKey,
    pub addr: IpAddr,
    /// Port name (`dpdk1`), the side facing the real servers.
    pub port: String,
}

/// Proxy Protocol version a FULLNAT service prepends to each TCP stream
/// (DPVS `--proxy-protocol v1|v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// A service's access lists (DPVS `-U`/`-O`): client prefixes
/// `(address, length)` of the VIP's family. A new connection from a
/// blacklisted client is refused; so is one from a client not on the
/// whitelist, when that is not empty (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSpec {
    pub blacklist: Vec<(IpAddr, u8)>,
    pub whitelist: Vec<(IpAddr, u8)>,
}

/// DPVS's settings beyond ipvsadm's, kept apart from [`ConfigDesc`] so that
/// descriptions built by older code stay valid. `Dataplane::apply` keeps the
/// last one given to `Dataplane::apply_ext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtDesc {
    /// FULLNAT local address pools. A FULLNAT service without one uses the
    /// director's address on the port facing the real server (the DIP).
    pub laddrs: Vec<LocalAddrSpec>,
    /// Services that prepend a Proxy Protocol header (FULLNAT, TCP).
    pub proxy_protocol: Vec<(ServiceKey, ProxyProtocol)>,
    /// Local ports FULLNAT takes from each local address, inclusive.
    pub local_port_range: (u16, u16),
    /// Services with access lists.
    pub acl: Vec<(ServiceKey, AclSpec)>,
    /// TCP services behind the SYN proxy (DPVS `-j enable`; NAT and FULLNAT
    /// real servers only).
    pub synproxy: Vec<ServiceKey>,
    /// Local addresses become the director's own (answered in ARP / NDP)
    /// by being in `laddrs`; `false` where keepalived's VRRP moves them
    /// (`[control] claim_vips = false`, docs/ha.md): then only an address
    /// entry makes them own.
    pub claim_laddrs: bool,
    /// Per-service connection limits (`--conn-limit N`, this project's own):
    /// a new connection is refused while the service's real servers hold
    /// `N` connections (active + inactive) or more. Absent or 0: no limit.
    pub conn_limit: Vec<(ServiceKey, u32)>,
}

impl Default for ExtDesc {
    fn default() -> Self {
        ExtDesc {
            laddrs: Vec::new(),
            proxy_protocol: Vec::new(),
            local_port_range: (1024, 65535),
            acl: Vec::new(),
            synproxy: Vec::new(),
            claim_laddrs: true,
            conn_limit: Vec::new(),
        }
    }
}
