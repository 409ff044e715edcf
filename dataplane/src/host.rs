//! Being a host on the director's networks: ARP for own addresses (VIPs, DIPs,
//! LIPs), learning neighbours, ARP requests for next hops, gratuitous ARP when an
//! address appears, and ICMP echo replies for own addresses.

use std::net::IpAddr;

use crate::dpdk::mbuf::Mbuf;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::{arp, icmp, ArpPacket, IpMeta, MacAddr, PacketBuf};
use crate::worker::Worker;

const ETH_HLEN: usize = 14;
/// Minimum Ethernet frame without FCS.
const ETH_MIN: usize = 60;

impl Worker {
    pub(crate) fn handle_arp(&mut self, snap: &Snapshot, mut m: Mbuf, in_port: usize) {
        let (is_request, is_reply, sender_ip, sender_mac, target_ip) = {
            let Some(payload) = m.data().get(ETH_HLEN..) else {
                return self.count_drop(DropReason::Truncated);
            };
            let Ok(a) = ArpPacket::new_checked(payload) else {
                return self.count_drop(DropReason::BadArp);
            };
            (
                a.is_request(),
                a.is_reply(),
                a.sender_ip(),
                a.sender_mac(),
                a.target_ip(),
            )
        };
        let target = IpAddr::V4(target_ip);
        let ours = snap.local.get(&target).is_some_and(|l| l.port == in_port);
        // Learn the sender when it talks to us, answers us, or announces itself.
        if !sender_ip.is_unspecified() && (ours || is_reply || sender_ip == target_ip) {
            self.shared
                .neigh
                .learn(in_port, IpAddr::V4(sender_ip), sender_mac.0, self.now_ms);
        }
        if is_request && ours {
            let mac = MacAddr(snap.ports[in_port].mac);
            if arp::reply_in_place(m.data_mut(), mac) {
                self.tx.push(in_port, m);
            } else {
                self.count_drop(DropReason::BadArp);
            }
        } else if !is_reply && !ours {
            // Someone else's request on the segment: not for us.
            self.count_drop(DropReason::NotForUs);
        }
        // A reply is consumed by learning; `flush_pending` sends what waited for it.
    }

    /// Ask who has `ip` on `port`, from an address of ours on that port.
    pub(crate) fn send_arp_request(&mut self, snap: &Snapshot, port: usize, ip: IpAddr) {
        let IpAddr::V4(target) = ip else {
            return; // NDP comes with IPv6 forwarding
        };
        let src = snap
            .local
            .values()
            .filter(|l| l.port == port)
            .filter_map(|l| match l.addr {
                IpAddr::V4(a) => Some((a, crate::route::contains(l.addr, l.prefix_len, ip))),
                _ => None,
            })
            .max_by_key(|(_, same_net)| *same_net)
            .map(|(a, _)| a);
        let Some(src) = src else { return };
        let Some(mut m) = self.pool.alloc() else {
            return self.count_drop(DropReason::NoMbuf);
        };
        let mut frame = [0u8; ETH_MIN];
        let n = arp::build_request(&mut frame, MacAddr(snap.ports[port].mac), src, target);
        if n == 0 || !m.write_from(&frame[..ETH_MIN.max(n)]) {
            return self.count_drop(DropReason::NoMbuf);
        }
        self.tx.push(port, m);
    }

    /// Worker 0 announces every newly configured IPv4 address once.
    /// Called when the snapshot generation changed.
    pub(crate) fn announce(&mut self, snap: &Snapshot) {
        self.announced_gen = snap.generation;
        if snap.local.len() == self.announced.len()
            && snap.local.keys().all(|a| self.announced.contains(a))
        {
            return;
        }
        let fresh: Vec<_> = snap
            .local
            .values()
            .filter(|l| !self.announced.contains(&l.addr))
            .copied()
            .collect();
        self.announced = snap.local.keys().copied().collect();
        for l in fresh {
            let IpAddr::V4(a) = l.addr else { continue };
            let Some(mut m) = self.pool.alloc() else {
                return;
            };
            let mut frame = [0u8; ETH_MIN];
            let n = arp::build_gratuitous(&mut frame, MacAddr(snap.ports[l.port].mac), a);
            if n > 0 && m.write_from(&frame[..ETH_MIN.max(n)]) {
                self.tx.push(l.port, m);
            }
        }
    }

    /// Echo requests to our own addresses are answered; other ICMP is not ours
    /// to handle yet (error translation comes with the modes work).
    pub(crate) fn handle_icmp(
        &mut self,
        snap: &Snapshot,
        mut m: Mbuf,
        in_port: usize,
        meta: IpMeta,
    ) {
        if !snap.is_local(meta.dst) {
            return self.count_drop(DropReason::NotForUs);
        }
        if !meta.dst.is_ipv4() || !icmp::echo_reply_in_place(&mut m.data_mut()[meta.l3_off..]) {
            return self.count_drop(DropReason::IcmpIgnored);
        }
        // Back to whoever sent it, on the port it came in.
        let d = m.data_mut();
        let mut src = [0u8; 6];
        src.copy_from_slice(&d[6..12]);
        self.send_to(snap, m, in_port, src);
    }
}
