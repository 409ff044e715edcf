//! Per-worker counters of things the modes did to packets that were still
//! forwarded (so they are not `DropReason`s): TOA inserted or skipped for lack
//! of room, MSS clamped, Proxy Protocol headers sent, fragments held. Same single-writer slots
//! as the drop counters; summed when read.

use std::sync::atomic::{AtomicU64, Ordering};

/// A forwarded-packet event. Each variant is one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Event {
    /// A TOA option (client address) was inserted.
    ToaInserted,
    /// No room for TOA (header full even without NOPs/timestamps, or the
    /// segment would exceed the MTU): forwarded without it.
    ToaNoRoom,
    /// MSS lowered in a SYN or SYN-ACK to leave room for TOA.
    MssClamped,
    /// A Proxy Protocol header was prepended to a client stream.
    ProxyProtocolSent,
    /// An ICMP error about a tracked connection was translated and forwarded.
    IcmpTranslated,
    /// A packet for an own address that the load balancer does not consume
    /// went up to the port's kernel interface.
    ToKernel,
    /// A neighbour claim nobody asked for was not learned (an unsolicited
    /// ARP reply or advertisement for an unknown address, or one repeated
    /// while the entry's MAC is being probed).
    NeighUnsolicited,
    /// A claim tried to move a neighbour entry to another MAC and the old
    /// MAC answered the probe: the entry stayed (likely ARP spoofing).
    NeighConflict,
    /// An ARP request or solicitation not sent: the worker's rate limit
    /// (crate::neigh::REQUESTS_PER_S) was used up.
    NeighRequestsLimited,
    /// A tracked connection was removed because its service's access lists
    /// changed to deny its client (docs/security.md).
    AclConnCut,
    /// SYN proxy: a client's SYN was answered with a SYN cookie.
    SynproxySynAck,
    /// SYN proxy: an ACK returned a valid cookie; the connection was made
    /// and a SYN went to its real server.
    SynproxyOpened,
    /// A non-first fragment came before its datagram's first and waited for
    /// it in the worker's queue (`crate::frag`).
    FragHeld,
    /// The worker's fragment table was full: its oldest entry made room for
    /// a new datagram before its time (later fragments of that one become
    /// `frag_orphan`).
    FragTableFull,
    /// A first fragment carried the client's first data byte of a FULLNAT
    /// connection: no TOA option or Proxy Protocol header was added to it (a
    /// fragment never grows; the handshake's ACK normally carried them).
    FragNotExtended,
    /// An ARP request or solicitation not sent: no buffer to build it in
    /// (the packet waiting for the answer is not dropped for it).
    NeighRequestNoMbuf,
    /// SYN proxy: no buffer to build the SYN to the real server in; the
    /// client's segment waits, and its retransmission tries again.
    SynproxyNoMbuf,
    /// Connection sync, master: a connection was queued for the backups.
    SyncQueued,
    /// Connection sync, master: the worker's queue was full (the sender
    /// fell behind); that record is lost, a later state change or refresh
    /// sends the connection again.
    SyncQueueFull,
    /// Connection sync, backup: a connection was created from a record.
    SyncInstalled,
    /// Connection sync, backup: a record brought a connection up to date
    /// (every installed one counts here too).
    SyncUpdated,
    /// Connection sync, backup: a record was not installed (no such
    /// service, dest or local address here; table full; bad state).
    SyncRejected,
    /// Connection sync, backup: a record for a connection that carries
    /// traffic on this director was left alone (this one is its master).
    SyncIgnored,
}

impl Event {
    pub const ALL: [Event; 23] = [
        Event::ToaInserted,
        Event::ToaNoRoom,
        Event::MssClamped,
        Event::ProxyProtocolSent,
        Event::IcmpTranslated,
        Event::ToKernel,
        Event::NeighUnsolicited,
        Event::NeighConflict,
        Event::NeighRequestsLimited,
        Event::AclConnCut,
        Event::SynproxySynAck,
        Event::SynproxyOpened,
        Event::FragHeld,
        Event::FragTableFull,
        Event::FragNotExtended,
        Event::NeighRequestNoMbuf,
        Event::SynproxyNoMbuf,
        Event::SyncQueued,
        Event::SyncQueueFull,
        Event::SyncInstalled,
        Event::SyncUpdated,
        Event::SyncRejected,
        Event::SyncIgnored,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// snake_case name for `dpvsctl` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Event::ToaInserted => "toa_inserted",
            Event::ToaNoRoom => "toa_no_room",
            Event::MssClamped => "mss_clamped",
            Event::ProxyProtocolSent => "proxy_protocol_sent",
            Event::IcmpTranslated => "icmp_translated",
            Event::ToKernel => "to_kernel",
            Event::NeighUnsolicited => "neigh_unsolicited",
            Event::NeighConflict => "neigh_conflict",
            Event::NeighRequestsLimited => "neigh_requests_limited",
            Event::AclConnCut => "acl_conn_cut",
            Event::SynproxySynAck => "synproxy_syn_ack",
            Event::SynproxyOpened => "synproxy_opened",
            Event::FragHeld => "frag_held",
            Event::FragTableFull => "frag_table_full",
            Event::FragNotExtended => "frag_not_extended",
            Event::NeighRequestNoMbuf => "neigh_request_no_mbuf",
            Event::SynproxyNoMbuf => "synproxy_no_mbuf",
            Event::SyncQueued => "sync_queued",
            Event::SyncQueueFull => "sync_queue_full",
            Event::SyncInstalled => "sync_installed",
            Event::SyncUpdated => "sync_updated",
            Event::SyncRejected => "sync_rejected",
            Event::SyncIgnored => "sync_ignored",
        }
    }
}

/// One worker's event counters (cache-line aligned, single writer).
#[repr(align(64))]
pub struct EventCounters {
    c: [AtomicU64; Event::COUNT],
}

impl Default for EventCounters {
    fn default() -> Self {
        EventCounters {
            c: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl EventCounters {
    #[inline]
    pub fn bump(&self, e: Event) {
        let c = &self.c[e as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
    pub fn get(&self, e: Event) -> u64 {
        self.c[e as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_event() {
        let c = EventCounters::default();
        c.bump(Event::ToaNoRoom);
        c.bump(Event::ToaNoRoom);
        assert_eq!(c.get(Event::ToaNoRoom), 2);
        assert_eq!(c.get(Event::ToaInserted), 0);
        assert_eq!(Event::ALL.len(), Event::COUNT);
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
    }
}
