//! Forwarding methods (what `ip_vs_xmit.c` does) and the output path.
//!
//! NAT rewrites the destination of requests and the source of replies; DR only
//! readdresses the Ethernet frame to the real server. Output looks up the route
//! and the next hop's MAC; a packet whose neighbour is unknown waits in the
//! worker's bounded pending queue while an ARP request goes out.

use std::net::IpAddr;

use conntrack::Direction;

use crate::config::ForwardMode;
use crate::dpdk::mbuf::Mbuf;
use crate::neigh::Pending;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::{nat, IpMeta, PacketBuf};
use crate::worker::Worker;

const ETH_HLEN: usize = 14;

impl Worker {
    /// Forward a packet of a tracked connection. `peer` is the address the
    /// rewrite puts in: RIP:rport for requests, VIP:vport for NAT replies.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn xmit(
        &mut self,
        snap: &Snapshot,
        mut m: Mbuf,
        meta: IpMeta,
        dir: Direction,
        mode: ForwardMode,
        peer: (IpAddr, u16),
        dest_id: u32,
        service_id: u32,
    ) {
        let len = m.len();
        let next_dst = match (mode, dir) {
            (ForwardMode::Nat, Direction::Original) => {
                let ip = &mut m.data_mut()[meta.l3_off..];
                if let Err(r) = nat::rewrite_dst(ip, &meta, peer.0, peer.1) {
                    return self.count_drop(r);
                }
                peer.0
            }
            (ForwardMode::Nat, Direction::Reply) => {
                let ip = &mut m.data_mut()[meta.l3_off..];
                if let Err(r) = nat::rewrite_src(ip, &meta, peer.0, peer.1) {
                    return self.count_drop(r);
                }
                meta.dst
            }
            // DR: the frame goes to the real server unchanged but for its MAC.
            (ForwardMode::Dr, Direction::Original) => peer.0,
            _ => return self.count_drop(DropReason::Unsupported),
        };
        if mode != ForwardMode::Dr {
            if let Err(r) = nat::dec_ttl(&mut m.data_mut()[meta.l3_off..], &meta) {
                return self.count_drop(r);
            }
        }
        if let Some(d) = snap.dests.get(&dest_id) {
            match dir {
                Direction::Original => d.traffic.inbound(self.index, len - ETH_HLEN),
                Direction::Reply => d.traffic.outbound(self.index, len - ETH_HLEN),
            }
        }
        if let Some(s) = snap.services_by_id.get(&service_id) {
            match dir {
                Direction::Original => s.traffic.inbound(self.index, len - ETH_HLEN),
                Direction::Reply => s.traffic.outbound(self.index, len - ETH_HLEN),
            }
        }
        self.output(snap, m, next_dst, mode == ForwardMode::Dr);
    }

    /// Route `m` (an Ethernet frame) toward `dst` and send it, or park it
    /// until the next hop's MAC is known. `connected_only`: the destination
    /// must be on a directly connected network (DR).
    pub(crate) fn output(&mut self, snap: &Snapshot, m: Mbuf, dst: IpAddr, connected_only: bool) {
        let Some(hop) = snap.routes.lookup(dst) else {
            return self.count_drop(DropReason::NoRoute);
        };
        if connected_only && hop.gateway != dst {
            return self.count_drop(DropReason::NoRoute);
        }
        match self.shared.neigh.lookup(hop.port, hop.gateway) {
            Some(mac) => self.send_to(snap, m, hop.port, mac),
            None => {
                let p = Pending {
                    mbuf: m,
                    port: hop.port,
                    gateway: hop.gateway,
                    since_ms: self.now_ms,
                };
                if self.pending.push(p).is_err() {
                    self.count_drop(DropReason::NeighQueueFull);
                }
                if self.pending.should_request(hop.gateway, self.now_ms) {
                    self.send_arp_request(snap, hop.port, hop.gateway);
                }
            }
        }
    }

    /// Address the frame from our port to `mac` and queue it for tx.
    #[inline]
    pub(crate) fn send_to(&mut self, snap: &Snapshot, mut m: Mbuf, port: usize, mac: [u8; 6]) {
        let our = snap.ports[port].mac;
        let d = m.data_mut();
        d[0..6].copy_from_slice(&mac);
        d[6..12].copy_from_slice(&our);
        self.tx.push(port, m);
    }

    /// Send parked packets whose neighbour answered; drop the ones that waited too long.
    pub(crate) fn flush_pending(&mut self, snap: &Snapshot) {
        let neigh = &self.shared.neigh;
        let (ready, expired) = self
            .pending
            .drain(self.now_ms, |port, ip| neigh.lookup(port, ip));
        for (p, mac) in ready {
            self.send_to(snap, p.mbuf, p.port, mac);
        }
        for _ in expired {
            self.count_drop(DropReason::NeighUnresolved);
        }
    }
}
