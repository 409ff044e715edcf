//! Counters as the control plane reads them: summed over workers.
//!
//! Workers keep their own counters (single writer, no contention); these are the
//! plain values a read produces. `DropReason` lists every reason a packet is not
//! forwarded: each dropped packet increments exactly one of them.

use std::net::IpAddr;

use crate::config::{ForwardMode, Proto, ServiceKey};

/// Why a packet was not forwarded. Each variant is one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Frame shorter than an Ethernet header.
    Truncated,
    /// EtherType we do not handle (not ARP/IPv4/IPv6).
    UnknownEtherType,
    /// ARP frame that is malformed or not for us.
    BadArp,
    /// IPv4 header invalid (version, IHL, length, checksum).
    BadIpv4,
    /// IPv6 header invalid.
    BadIpv6,
    /// TCP/UDP header truncated or invalid.
    BadL4,
    /// IP fragment the director does not forward: not TCP/UDP (ICMP and
    /// the rest), and not for an own address, where it goes up to the kernel
    /// interface (`crate::frag`).
    Fragment,
    /// L4 protocol not served (not TCP/UDP/ICMP).
    UnknownL4,
    /// Destination is ours but no service matches (VIP:port unknown).
    NoService,
    /// Destination is not ours and matches no connection.
    NotForUs,
    /// Service found but the scheduler had no usable dest.
    NoDest,
    /// A non-SYN TCP segment that matches no connection.
    NoConnection,
    /// Connection table full: new connection refused.
    ConnTableFull,
    /// No route to the destination.
    NoRoute,
    /// Next hop MAC unknown and the pending queue is full.
    NeighQueueFull,
    /// Next hop never answered ARP.
    NeighUnresolved,
    /// TTL/hop limit expired.
    TtlExceeded,
    /// ICMP we do not answer or translate.
    IcmpIgnored,
    /// Forwarding mode not supported for this packet.
    Unsupported,
    /// No mbuf to build a reply or copy.
    NoMbuf,
    /// tx queue full: the NIC did not take the packet.
    TxFull,
    /// FULLNAT: every local address of the service is out of free ports; the
    /// new connection is refused (existing ones are unaffected).
    LipExhausted,
    /// Too big for the egress MTU with DF set (TUN adds a header, FULLNAT a
    /// Proxy Protocol header): an ICMP
    /// fragmentation-needed / packet-too-big went back to the sender instead.
    FragNeeded,
    /// ICMP error quoting a packet of no tracked NAT/FULLNAT connection (or of
    /// a protocol the director does not track): not forwarded.
    IcmpNoConn,
    /// ICMP error whose quoted packet is unusable: truncated, lying lengths,
    /// another address family, a non-first fragment (no ports), or not
    /// addressed to the quoted packet's sender.
    BadIcmpInner,
    /// IPv6 neighbour solicitation/advertisement failing RFC 4861's checks
    /// (hop limit 255, code 0, checksum, lengths, options).
    BadNdp,
    /// The hand-over ring to the connection's owner worker was full.
    HandoverFull,
    /// A frame for another host's MAC (neither the port's nor a group
    /// address): a promiscuous port or a flooding switch delivered it.
    OtherMac,
    /// A packet of a new connection (or of one cut when the lists changed)
    /// from a client on the service's blacklist (DPVS `-U`).
    AclBlacklist,
    /// The same from a client not on the service's whitelist, which is not
    /// empty (DPVS `-O`).
    AclWhitelist,
    /// SYN proxy: an ACK matching no connection whose acknowledgement is not
    /// a valid cookie (forged, or older than two 64 s slots).
    SynproxyBadCookie,
    /// SYN proxy: a valid cookie, but the worker already keeps segments for
    /// `synproxy::WAITING_MAX` connections waiting for their real servers.
    SynproxyBusy,
    /// SYN proxy: a client segment beyond the few kept while the real server
    /// has not answered yet (the SYN to it is sent again), or one kept for a
    /// connection that never opened (the server refused it or stayed silent
    /// until it timed out, or the client reset it).
    SynproxyWaiting,
    /// A first fragment too short to hold the whole TCP/UDP header, or a TCP
    /// fragment at offset 8 that would overwrite the first one's flags
    /// (RFC 1858).
    FragTiny,
    /// A non-first fragment whose first fragment never came (100 ms), was
    /// not forwarded, or whose entry had gone; or one more than the worker's
    /// queue of early fragments holds (`crate::frag`).
    FragOrphan,
    /// A fragment of a connection whose forwarding needs the whole datagram:
    /// FULLNAT64 (IPv6 <-> IPv4 translation) or a SYN-proxied connection
    /// that is not open yet.
    FragUnsupported,
    /// A TCP segment matching no connection whose flags no stack sends to
    /// open one: SYN with FIN (a scanner's probe); nothing is made for it.
    BadTcpFlags,
    /// Bigger than the egress port's MTU (it came in on a port with a larger
    /// one): dropped, as the director does not fragment.
    OverMtu,
    /// A new connection refused because its service holds as many
    /// connections as its limit (`--conn-limit`) allows; established ones
    /// go on.
    ServiceConnLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 39] = [
        DropReason::Truncated,
        DropReason::UnknownEtherType,
        DropReason::BadArp,
        DropReason::BadIpv4,
        DropReason::BadIpv6,
        DropReason::BadL4,
        DropReason::Fragment,
        DropReason::UnknownL4,
        DropReason::NoService,
        DropReason::NotForUs,
        DropReason::NoDest,
        DropReason::NoConnection,
        DropReason::ConnTableFull,
        DropReason::NoRoute,
        DropReason::NeighQueueFull,
        DropReason::NeighUnresolved,
        DropReason::TtlExceeded,
        DropReason::IcmpIgnored,
        DropReason::Unsupported,
        DropReason::NoMbuf,
        DropReason::TxFull,
        DropReason::LipExhausted,
        DropReason::FragNeeded,
        DropReason::IcmpNoConn,
        DropReason::BadIcmpInner,
        DropReason::BadNdp,
        DropReason::HandoverFull,
        DropReason::OtherMac,
        DropReason::AclBlacklist,
        DropReason::AclWhitelist,
        DropReason::SynproxyBadCookie,
        DropReason::SynproxyBusy,
        DropReason::SynproxyWaiting,
        DropReason::FragTiny,
        DropReason::FragOrphan,
        DropReason::FragUnsupported,
        DropReason::BadTcpFlags,
        DropReason::OverMtu,
        DropReason::ServiceConnLimit,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// snake_case name used in `dpvsctl` output and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::BadArp => "bad_arp",
            DropReason::BadIpv4 => "bad_ipv4",
            DropReason::BadIpv6 => "bad_ipv6",
            DropReason::BadL4 => "bad_l4",
            DropReason::Fragment => "fragment",
            DropReason::UnknownL4 => "unknown_l4",
            DropReason::NoService => "no_service",
            DropReason::NotForUs => "not_for_us",
            DropReason::NoDest => "no_dest",
            DropReason::NoConnection => "no_connection",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NoRoute => "no_route",
            DropReason::NeighQueueFull => "neigh_queue_full",
            DropReason::NeighUnresolved => "neigh_unresolved",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::IcmpIgnored => "icmp_ignored",
            DropReason::Unsupported => "unsupported",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::TxFull => "tx_full",
            DropReason::LipExhausted => "lip_exhausted",
            DropReason::FragNeeded => "frag_needed",
            DropReason::IcmpNoConn => "icmp_no_conn",
            DropReason::BadIcmpInner => "bad_icmp_inner",
            DropReason::BadNdp => "bad_ndp",
            DropReason::HandoverFull => "handover_full",
            DropReason::OtherMac => "other_mac",
            DropReason::AclBlacklist => "acl_blacklist",
            DropReason::AclWhitelist => "acl_whitelist",
            DropReason::SynproxyBadCookie => "synproxy_bad_cookie",
            DropReason::SynproxyBusy => "synproxy_busy",
            DropReason::SynproxyWaiting => "synproxy_waiting",
            DropReason::FragTiny => "frag_tiny",
            DropReason::FragOrphan => "frag_orphan",
            DropReason::FragUnsupported => "frag_unsupported",
            DropReason::BadTcpFlags => "bad_tcp_flags",
            DropReason::OverMtu => "over_mtu",
            DropReason::ServiceConnLimit => "service_conn_limit",
        }
    }
}

/// Traffic counters in ipvsadm's `--stats` sense.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client -> real server.
    pub inpkts: u64,
    /// Packets real server -> client (through the director).
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl TrafficStats {
    pub fn add(&mut self, o: &TrafficStats) {
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.outpkts += o.outpkts;
        self.inbytes += o.inbytes;
        self.outbytes += o.outbytes;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestStats {
    pub addr: IpAddr,
    pub port: u16,
    pub mode: ForwardMode,
    /// What the schedulers use: 0 while a health check has it down.
    pub weight: u32,
    /// A health check (active or passive) has it down.
    pub inhibited: bool,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub traffic: TrafficStats,
    /// Passive health check evidence: SYNs left unanswered (retransmitted,
    /// or answered by a RST) and SYN-ACKs, since the dest was added.
    pub syn_unanswered: u64,
    pub syn_answered: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    pub key: ServiceKey,
    pub traffic: TrafficStats,
    pub dests: Vec<DestStats>,
    /// Packets its access lists dropped (`acl_blacklist`, `acl_whitelist`
    /// of this service), since it was added.
    pub acl_drops: AclDrops,
    /// New connections its limit (`--conn-limit`) refused, since it was
    /// added (`service_conn_limit` of this service).
    pub conn_limit_drops: u64,
}

/// Packets a service's blacklist and whitelist dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AclDrops {
    pub blacklist: u64,
    pub whitelist: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    pub name: String,
    pub mac: [u8; 6],
    pub link_up: bool,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// One worker's share of the work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Packets received from its NIC queues.
    pub rx_packets: u64,
    /// Packets it transmitted.
    pub tx_packets: u64,
    /// Packets it dropped, all reasons.
    pub drops: u64,
    /// The same by reason: (reason, packets), every reason listed.
    pub drops_by_reason: Vec<(DropReason, u64)>,
    /// Packets it passed to their connection's owner.
    pub handed_over: u64,
    /// Packets other workers passed to it.
    pub handover_in: u64,
    /// Connections in its table.
    pub conns: u64,
    /// Connections its table can hold (`[dataplane] conn_capacity`, at least 1024).
    pub conn_capacity: u64,
    /// Scheduler tables its thread built (0: every table came in the snapshot).
    pub sched_tables_built: u64,
}

/// Everything `dpvsctl --stats` and metrics show.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub services: Vec<ServiceStats>,
    /// (reason, packets), every reason listed, zero included.
    pub drops: Vec<(DropReason, u64)>,
    pub ports: Vec<PortStats>,
    /// Packets received by workers, summed.
    pub rx_packets: u64,
    /// Packets forwarded (transmitted) by workers, summed.
    pub tx_packets: u64,
    /// Per worker, by worker index.
    pub workers: Vec<WorkerStats>,
    /// The packet mbuf pool, when the dataplane has one.
    pub mempool: Option<MempoolStats>,
}

/// Fill of the packet mbuf pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MempoolStats {
    /// Mbufs taken from the pool (in queues, rings, workers' hands and the
    /// per-lcore caches' complement).
    pub in_use: u64,
    /// Mbufs in the pool.
    pub capacity: u64,
}

/// One tracked connection as `ipvsadm -Lnc` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    pub proto: Proto,
    pub client: (IpAddr, u16),
    pub virt: (IpAddr, u16),
    /// FULLNAT local address; `None` for other modes.
    pub local: Option<(IpAddr, u16)>,
    pub dest: (IpAddr, u16),
    /// State name as ipvsadm prints it (`ESTABLISHED`, `TIME_WAIT`, `UDP`, ...).
    pub state: String,
    /// Seconds until expiry.
    pub expires_s: u32,
    pub worker: u32,
}

#[cfg(test)]
mod drop_reason_tests {
    use super::DropReason;

    /// Every reason has its own counter slot and its own name, so a drop is
    /// always counted and shown under what happened.
    #[test]
    fn every_drop_reason_has_a_name_and_a_slot() {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} is slot {i}");
            let n = r.name();
            assert!(
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{n}"
            );
            assert!(names.insert(n), "{n} twice");
        }
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
    }
}
