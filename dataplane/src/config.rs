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
