//! Being a host on the director's networks: ARP and IPv6 neighbour discovery
//! for own addresses (VIPs, DIPs, LIPs), learning neighbours, ARP requests and
//! neighbour solicitations for next hops, gratuitous ARP / unsolicited
//! advertisements when an address appears, and ICMP / ICMPv6 echo replies for
//! own addresses.

use std::net::{IpAddr, Ipv6Addr};

use crate::core::Core;
use crate::events::Event;
use crate::io::Io;
use crate::neigh::Learnt;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::icmpv6::msg_type;
use crate::wire::{arp, icmp, icmpv6, ndp, ArpPacket, IpFamily, IpMeta, MacAddr, PacketBuf};

const ETH_HLEN: usize = 14;
/// Minimum Ethernet frame without FCS.
const ETH_MIN: usize = 60;

impl<I: Io> Core<I> {
    pub(crate) fn handle_arp(&mut self, snap: &Snapshot, mut m: I::Buf, in_port: usize) {
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
        // Neither a request nor a reply (RARP's, InARP's or no operation):
        // nothing to learn or answer.
        if !is_request && !is_reply {
            return self.count_drop(DropReason::BadArp);
        }
        let target = IpAddr::V4(target_ip);
        let ours = snap.local.get(&target).is_some_and(|l| l.port == in_port);
        // The sender, when it asks us, answers us, or announces itself: a new
        // entry only if we asked or it asked us, and a move only once the old
        // MAC has been probed and stayed silent (crate::neigh::NeighTable::claim).
        if !sender_ip.is_unspecified()
            && !snap.is_local(IpAddr::V4(sender_ip))
            && (ours || is_reply || sender_ip == target_ip)
        {
            let sender = IpAddr::V4(sender_ip);
            let claim = self.shared.neigh.claim(
                in_port,
                sender,
                sender_mac.0,
                self.now_ms,
                ours && is_request,
            );
            self.after_claim(snap, in_port, sender, claim);
        }
        if is_request && ours {
            let mac = MacAddr(snap.ports[in_port].mac);
            if arp::reply_in_place(m.data_mut(), mac) {
                self.io.send(in_port, m);
            } else {
                self.count_drop(DropReason::BadArp);
            }
        } else if !is_reply && !ours {
            // Someone else's request on the segment: not for us.
            self.count_drop(DropReason::NotForUs);
        } else if is_reply {
            // Learnt above (`flush_pending` sends what waited for it); the
            // kernel interface may have asked too.
            let _ = self.io.to_kernel(in_port, m);
        }
    }

    /// What a neighbour claim asks of us: a probe of the old MAC, or counting.
    fn after_claim(&mut self, snap: &Snapshot, port: usize, addr: IpAddr, claim: Learnt) {
        let ev = &self.shared.events[self.index];
        match claim {
            Learnt::Probe(old) => self.send_request_to(snap, port, addr, Some(old)),
            Learnt::Ignored => ev.bump(Event::NeighUnsolicited),
            Learnt::Conflict => ev.bump(Event::NeighConflict),
            Learnt::Learned | Learnt::Same | Learnt::Moved => {}
        }
    }

    /// Ask who has `ip` on `port`, from an address of ours on that port: an
    /// ARP request, or for IPv6 a neighbour solicitation.
    pub(crate) fn send_arp_request(&mut self, snap: &Snapshot, port: usize, ip: IpAddr) {
        self.send_request_to(snap, port, ip, None)
    }

    /// [`Core::send_arp_request`]; `to`: unicast to that MAC (the probe of an
    /// entry's old MAC) instead of broadcast.
    fn send_request_to(&mut self, snap: &Snapshot, port: usize, ip: IpAddr, to: Option<[u8; 6]>) {
        if !self.pending.take_request_token(self.now_ms) {
            return self.shared.events[self.index].bump(Event::NeighRequestsLimited);
        }
        self.shared.neigh.asked(port, ip, self.now_ms);
        let target = match ip {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => return self.send_neigh_solicit(snap, port, a),
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
        // No buffer for it: an event, not a drop (no packet is lost here;
        // one waiting for the answer is counted when it times out).
        let Some(mut m) = self.io.alloc() else {
            return self.shared.events[self.index].bump(Event::NeighRequestNoMbuf);
        };
        let mut frame = [0u8; ETH_MIN];
        let n = arp::build_request(&mut frame, MacAddr(snap.ports[port].mac), src, target);
        if let (Some(mac), true) = (to, n != 0) {
            frame[..6].copy_from_slice(&mac);
        }
        if n == 0 || !m.write_from(&frame[..ETH_MIN.max(n)]) {
            return self.shared.events[self.index].bump(Event::NeighRequestNoMbuf);
        }
        self.io.send(port, m);
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
            let Some(mut m) = self.io.alloc() else {
                return;
            };
            let mac = MacAddr(snap.ports[l.port].mac);
            let mut frame = [0u8; ndp::FRAME_LEN];
            let n = match l.addr {
                IpAddr::V4(a) => match arp::build_gratuitous(&mut frame, mac, a) {
                    0 => 0,
                    n => n.max(ETH_MIN),
                },
                // Unsolicited advertisement (RFC 4861 7.2.6): override, not solicited.
                IpAddr::V6(a) => ndp::build_advert(
                    &mut frame,
                    mac,
                    a,
                    ndp::ALL_NODES,
                    ndp::multicast_mac(ndp::ALL_NODES),
                    ndp::flag::OVERRIDE,
                ),
            };
            if n > 0 && m.write_from(&frame[..n]) {
                self.io.send(l.port, m);
            }
        }
    }

    /// A neighbour solicitation for `target` to its solicited-node group, from
    /// our IPv6 address on `port` (one in the target's prefix if there is one).
    fn send_neigh_solicit(&mut self, snap: &Snapshot, port: usize, target: Ipv6Addr) {
        let src = snap
            .local
            .values()
            .filter(|l| l.port == port)
            .filter_map(|l| match l.addr {
                IpAddr::V6(a) => Some((
                    a,
                    crate::route::contains(l.addr, l.prefix_len, IpAddr::V6(target)),
                )),
                _ => None,
            })
            .max_by_key(|(a, same_net)| (*same_net, std::cmp::Reverse(*a)))
            .map(|(a, _)| a);
        let Some(src) = src else { return };
        // As for an ARP request: an event, not a drop.
        let Some(mut m) = self.io.alloc() else {
            return self.shared.events[self.index].bump(Event::NeighRequestNoMbuf);
        };
        let mut frame = [0u8; ndp::FRAME_LEN];
        let n = ndp::build_solicit(&mut frame, MacAddr(snap.ports[port].mac), src, target);
        if n == 0 || !m.write_from(&frame[..n]) {
            return self.shared.events[self.index].bump(Event::NeighRequestNoMbuf);
        }
        self.io.send(port, m);
    }

    /// Neighbour solicitations and advertisements (RFC 4861): answer a
    /// solicitation for an address of ours on that port, learn the solicitor's
    /// and the advertiser's link-layer address. Invalid messages count `BadNdp`.
    fn handle_ndp(&mut self, snap: &Snapshot, mut m: I::Buf, in_port: usize, meta: IpMeta) {
        let parsed = match m.data().get(meta.l3_off..) {
            Some(ip) => ndp::parse(ip, meta.l4_rel()),
            None => Err(DropReason::Truncated),
        };
        let n = match parsed {
            Ok(Some(n)) => n,
            Ok(None) => return self.count_drop(DropReason::IcmpIgnored),
            Err(r) => return self.count_drop(r),
        };
        let target = IpAddr::V6(n.target);
        let ours = snap.local.get(&target).is_some_and(|l| l.port == in_port);
        match n.kind {
            ndp::Kind::Solicit => {
                if !ours {
                    return self.count_drop(DropReason::NotForUs);
                }
                if let (Some(mac), false) = (n.lladdr, n.src.is_unspecified()) {
                    let src = IpAddr::V6(n.src);
                    let claim = self
                        .shared
                        .neigh
                        .claim(in_port, src, mac, self.now_ms, true);
                    self.after_claim(snap, in_port, src, claim);
                }
                let eth_src = MacAddr::from_bytes(&m.data()[6..12]).unwrap_or(MacAddr([0; 6]));
                let mut frame = [0u8; ndp::FRAME_LEN];
                let k = ndp::build_reply(&mut frame, MacAddr(snap.ports[in_port].mac), &n, eth_src);
                if k == 0 || !m.write_from(&frame[..k]) {
                    return self.count_drop(DropReason::NoMbuf);
                }
                self.io.send(in_port, m);
            }
            // An advertisement is consumed by learning (like an ARP reply);
            // `flush_pending` sends what waited for it. Nobody else may claim
            // an address of ours.
            ndp::Kind::Advert => {
                if let (Some(mac), false) = (n.lladdr, snap.is_local(target)) {
                    let claim = self
                        .shared
                        .neigh
                        .claim(in_port, target, mac, self.now_ms, false);
                    self.after_claim(snap, in_port, target, claim);
                    let _ = self.io.to_kernel(in_port, m);
                }
            }
        }
    }

    /// Echo requests (ICMP and ICMPv6) to our own addresses are answered and
    /// IPv6 neighbour discovery is handled; other ICMP is not ours to handle
    /// here (error translation for tracked flows is dispatched in `core`).
    pub(crate) fn handle_icmp(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        in_port: usize,
        meta: IpMeta,
    ) {
        if meta.family == IpFamily::V6
            && matches!(
                meta.icmp_type,
                msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT
            )
        {
            // Solicitations go to multicast groups: before the is-it-ours test.
            return self.handle_ndp(snap, m, in_port, meta);
        }
        if !snap.is_local(meta.dst) {
            return self.count_drop(DropReason::NotForUs);
        }
        let ip = &mut m.data_mut()[meta.l3_off..];
        let answered = match meta.family {
            IpFamily::V4 => icmp::echo_reply_in_place(ip),
            IpFamily::V6 => icmpv6::echo_reply_in_place(ip),
        };
        if !answered {
            // Echo replies to the kernel's pings, errors about its own flows.
            return self.up_or_drop(m, in_port, DropReason::IcmpIgnored);
        }
        // Back to whoever sent it, on the port it came in.
        let d = m.data_mut();
        let mut src = [0u8; 6];
        src.copy_from_slice(&d[6..12]);
        self.send_to(snap, m, in_port, src);
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use crate::events::Event;
    use crate::stats::DropReason;
    use crate::testkit::*;
    use crate::{ForwardMode, Proto};

    /// Found by the `pipeline` fuzz target (its minimised input, after the
    /// options and selector bytes): an ARP packet for the VIP whose
    /// operation is neither request nor reply (0x0081) went nowhere and was
    /// counted nowhere.
    #[test]
    fn an_arp_operation_other_than_request_or_reply_is_a_bad_arp() {
        let frame: [u8; 60] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x81, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x0a, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x64,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
        assert!(lab.rx(0, &[frame.to_vec()]).is_empty());
        assert_eq!(lab.drops(DropReason::BadArp), 1);
        assert_eq!(lab.all_drops(), 1, "one reason");
    }

    /// Found by the `pipeline_seq` fuzz target: without an mbuf for the ARP
    /// request, a packet that waits for its next hop was counted twice
    /// (`no_mbuf` for the request, `neigh_unresolved` when it timed out).
    #[test]
    fn a_request_without_a_buffer_is_an_event_and_the_waiting_packet_one_drop() {
        let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
        let client = [10, 0, 0, 9]; // no MAC known
        let syn = tcp(CLIENT_MAC, MAC0, client, 1000, VIP, 80, "S", 1, b"");
        assert_eq!(lab.rx(0, &[syn]).len(), 1);
        lab.core.io.no_buffers = true;
        let reply = tcp(RS_MAC, MAC1, RIP, 8080, client, 1000, "SA", 1, b"");
        assert!(lab.rx(1, &[reply]).is_empty(), "waits, no ARP request");
        assert_eq!(lab.core.pending.queue.len(), 1);
        assert_eq!(lab.all_drops(), 0);
        let ev = lab.core.shared.events[0].get(Event::NeighRequestNoMbuf);
        assert_eq!(ev, 1);
        lab.core.now_ms += 2_000;
        let snap = lab.snap.clone();
        lab.core.flush_pending(&snap);
        assert_eq!(lab.drops(DropReason::NeighUnresolved), 1);
        assert_eq!(lab.all_drops(), 1, "one reason");
    }
}
