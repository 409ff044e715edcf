//! Fragments through the core (`dataplane::frag`): datagrams larger than the
//! MTU, cut into fragments here, reach the real server (or the client) with
//! every fragment rewritten by the connection's mode; reassembled in the test,
//! the datagram's L4 checksum is right after the rewrite. Early fragments
//! wait for their first, orphans time out, fragments of another worker's
//! connection follow their first to it.

use std::net::{IpAddr, Ipv6Addr};

use arrayvec::ArrayVec;
use dataplane::core::{Arrival, BURST};
use dataplane::events::Event;
use dataplane::wire::VecBuf;
use dataplane::*;
use etherparse::{IpFragOffset, Ipv4Header, Ipv4HeaderSlice, NetSlice, PacketBuilder};
use etherparse::{SlicedPacket, TransportSlice};

use super::{ip, tcp, Lab, CIP, CLIENT_MAC, DIP, LIP, MAC0, MAC1, RIP, RS_MAC, VIP};

const IDENT: u16 = 0x4242;
const CIP6: &str = "fd00:10::2";
const VIP6: &str = "fd00:10::100";
const RIP6: &str = "fd00:192::11";
const LIP6: &str = "fd00:192::200";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// `len` bytes of payload: a datagram too big for one frame.
fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// A 3000-byte UDP datagram from CIP:`sport` to VIP:80 in three fragments
/// (1480, 1480 and 48 bytes of IP payload).
fn client_frags(sport: u16) -> Vec<Vec<u8>> {
    frags_v4(
        &super::udp_with(CLIENT_MAC, MAC0, CIP, sport, VIP, 80, &big(3000)),
        &[1480, 2960],
    )
}

/// The IPv4 frame `frame` cut into fragments of its IP payload at byte
/// offsets `cuts` (multiples of 8), identification [`IDENT`], DF clear.
fn frags_v4(frame: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let (h, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = &frame[14 + h.header_len()..14 + usize::from(h.total_len)];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let mut fh = h.clone();
            fh.identification = IDENT;
            fh.dont_fragment = false;
            fh.more_fragments = w[1] < payload.len();
            fh.fragment_offset = IpFragOffset::try_new((w[0] / 8) as u16).unwrap();
            fh.total_len = (fh.header_len() + w[1] - w[0]) as u16;
            fh.header_checksum = fh.calc_header_checksum();
            let mut f = frame[..14].to_vec();
            fh.write(&mut f).unwrap();
            f.extend_from_slice(&payload[w[0]..w[1]]);
            f
        })
        .collect()
}

/// `f` (an IPv4 frame) with identification `id`.
fn with_ident(f: &[u8], id: u16) -> Vec<u8> {
    let (mut h, rest) = Ipv4Header::from_slice(&f[14..]).unwrap();
    h.identification = id;
    h.header_checksum = h.calc_header_checksum();
    let mut g = f[..14].to_vec();
    h.write(&mut g).unwrap();
    g.extend_from_slice(rest);
    g
}

/// IPv4 fragments (any order; as `Lab::rx` returns them) put back together
/// as one frame: the Ethernet header and IP header of the first (no fragment
/// bits, the whole length). Checks each fragment's header checksum, one
/// identification, no gap.
fn reassemble_v4(out: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let frags: Vec<&[u8]> = out.iter().map(|(_, f)| &f[..]).collect();
    let mut parts: Vec<(usize, bool, &[u8])> = frags
        .iter()
        .map(|f| {
            let h = Ipv4HeaderSlice::from_slice(&f[14..]).expect("IPv4");
            let hh = h.to_header();
            assert_eq!(
                hh.header_checksum,
                hh.calc_header_checksum(),
                "IPv4 checksum"
            );
            assert_eq!(h.identification(), IDENT, "identification kept");
            let off = usize::from(h.fragments_offset().value()) * 8;
            (
                off,
                h.more_fragments(),
                &f[14 + h.slice().len()..14 + usize::from(h.total_len())],
            )
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (off, _, d) in &parts {
        assert_eq!(*off, data.len(), "no gap, no overlap");
        data.extend_from_slice(d);
    }
    assert!(!parts.last().unwrap().1, "the last has MF clear");
    let first = frags
        .iter()
        .find(|f| {
            Ipv4HeaderSlice::from_slice(&f[14..])
                .unwrap()
                .fragments_offset()
                .value()
                == 0
        })
        .unwrap();
    let (mut h, _) = Ipv4Header::from_slice(&first[14..]).unwrap();
    h.more_fragments = false;
    h.total_len = (h.header_len() + data.len()) as u16;
    h.header_checksum = h.calc_header_checksum();
    let mut out = first[..14].to_vec();
    h.write(&mut out).unwrap();
    out.extend_from_slice(&data);
    out
}

/// An IPv6 UDP datagram `src:sport -> dst:dport` with `len` bytes of payload.
fn udp6_big(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    len: usize,
) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 5 + 1) as u8).collect();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv6(v6(src).octets(), v6(dst).octets(), 64)
        .udp(sport, dport)
        .write(&mut v, &payload)
        .unwrap();
    v
}

/// The IPv6 frame `frame` (no extension headers) cut at `cuts` of its
/// payload, each part behind a fragment header (identification `id`).
fn frags_v6(frame: &[u8], cuts: &[usize], id: u32) -> Vec<Vec<u8>> {
    let next = frame[14 + 6];
    let payload = &frame[54..];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let mut f = frame[..54].to_vec();
            f[14 + 4..14 + 6].copy_from_slice(&((8 + w[1] - w[0]) as u16).to_be_bytes());
            f[14 + 6] = 44;
            let more = u16::from(w[1] < payload.len());
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&((w[0] as u16) | more).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&payload[w[0]..w[1]]);
            f
        })
        .collect()
}

/// IPv6 fragments put back together as one frame (the first's headers,
/// without the fragment header).
fn reassemble_v6(frags: &[Vec<u8>], id: u32) -> Vec<u8> {
    let mut parts: Vec<(usize, bool, &[u8], u8)> = frags
        .iter()
        .map(|f| {
            assert_eq!(f[14 + 6], 44, "a fragment header");
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let w = u16::from_be_bytes([f[56], f[57]]);
            assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), id);
            (
                usize::from(w & 0xfff8),
                w & 1 == 1,
                &f[62..54 + plen],
                f[54],
            )
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (off, _, d, _) in &parts {
        assert_eq!(*off, data.len(), "no gap, no overlap");
        data.extend_from_slice(d);
    }
    assert!(!parts.last().unwrap().1, "the last has M clear");
    let first = frags
        .iter()
        .find(|f| u16::from_be_bytes([f[56], f[57]]) & 0xfff8 == 0)
        .unwrap();
    let mut out = first[..54].to_vec();
    out[14 + 4..14 + 6].copy_from_slice(&(data.len() as u16).to_be_bytes());
    out[14 + 6] = parts[0].3;
    out.extend_from_slice(&data);
    out
}

/// (src, sport, dst, dport, hop limit) of an IPv6 UDP frame, its checksum
/// checked over the whole datagram.
fn seen6(f: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, u8) {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv6(ip6)) = &p.net else {
        panic!("not IPv6")
    };
    let h = ip6.header().to_header();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    let uh = u.to_header();
    assert_eq!(
        uh.checksum,
        uh.calc_checksum_ipv6(&h, u.payload()).unwrap(),
        "UDP checksum"
    );
    (
        Ipv6Addr::from(h.source),
        u.source_port(),
        Ipv6Addr::from(h.destination),
        u.destination_port(),
        h.hop_limit,
    )
}

fn event(lab: &Lab, e: Event) -> u64 {
    lab.core.shared.events[lab.core.index].get(e)
}

/// Drops of the lab's worker (`Lab::drops` reads worker 0's).
fn worker_drops(lab: &Lab, r: Option<DropReason>) -> u64 {
    let c = &lab.core.shared.counters[lab.core.index];
    match r {
        Some(r) => c.drops(r),
        None => DropReason::ALL.iter().map(|&r| c.drops(r)).sum(),
    }
}

/// Feed `frames` as one burst handed over by another worker (port 0).
fn rx_handed(lab: &mut Lab, frames: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
    let mut b: ArrayVec<VecBuf, BURST> = frames.iter().map(|f| VecBuf::new(f)).collect();
    let ports = vec![0; frames.len()];
    lab.core
        .handle_burst(&lab.snap.clone(), &mut b, Arrival::Handed(&ports));
    std::mem::take(&mut lab.core.io.sent)
}

#[test]
fn a_udp_datagram_in_three_fragments_through_nat_and_fullnat() {
    for mode in [ForwardMode::Nat, ForwardMode::FullNat] {
        let mut lab = Lab::new(mode, Proto::Udp);
        let dgram = super::udp_with(CLIENT_MAC, MAC0, CIP, 5000, VIP, 80, &big(3000));
        let frags = frags_v4(&dgram, &[1480, 2960]);
        assert_eq!(frags.len(), 3);
        let out = lab.rx(0, &frags);
        assert_eq!(out.len(), 3, "{mode:?}: every fragment forwarded");
        assert!(out
            .iter()
            .all(|(p, f)| *p == 1 && f[..6] == RS_MAC && f[6..12] == MAC1));
        for (_, f) in &out {
            let h = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
            assert_eq!(h.ttl(), 63, "TTL decremented on each fragment");
            assert_eq!(h.destination(), RIP);
            let src = if mode == ForwardMode::FullNat {
                LIP
            } else {
                CIP
            };
            assert_eq!(h.source(), src);
        }
        let whole = reassemble_v4(&out);
        let s = super::seen(&whole); // the UDP checksum over it all
        assert_eq!((s.dst, s.dport), (RIP, 8080));
        match mode {
            ForwardMode::FullNat => assert_eq!(s.src, LIP),
            _ => assert_eq!((s.src, s.sport), (CIP, 5000)),
        }
        assert_eq!(&whole[14 + 28..], &dgram[14 + 28..], "payload intact");
        assert_eq!(lab.core.conns.len(), 1);
        assert_eq!(lab.all_drops(), 0);
        // --stats count every fragment.
        let d = lab.snap.dests.values().next().unwrap();
        assert_eq!(d.traffic.sum().inpkts, 3);
    }
}

#[test]
fn a_fragmented_reply_from_a_nat_real_server_reaches_the_client() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let req = super::udp_with(CLIENT_MAC, MAC0, CIP, 5000, VIP, 80, &big(10));
    assert_eq!(lab.rx(0, &[req]).len(), 1);
    let reply = super::udp_with(RS_MAC, MAC1, RIP, 8080, CIP, 5000, &big(4000));
    let out = lab.rx(1, &frags_v4(&reply, &[1480, 2960]));
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(p, f)| *p == 0 && f[..6] == CLIENT_MAC));
    for (_, f) in &out {
        let h = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!((h.source(), h.destination()), (VIP, CIP), "from the VIP");
    }
    let s = super::seen(&reassemble_v4(&out));
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, CIP, 5000));
    assert_eq!(lab.all_drops(), 0);
    let d = lab.snap.dests.values().next().unwrap();
    assert_eq!(d.traffic.sum().outpkts, 3);
}

#[test]
fn a_fragmented_tcp_segment_through_nat() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, CIP, 40000, "SA", 9, b"")]);
    let data: Vec<u8> = (0..2500).map(|i| i as u8).collect();
    let seg = tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, &data);
    let out = lab.rx(0, &frags_v4(&seg, &[552, 1104]));
    assert_eq!(out.len(), 3);
    let s = super::seen(&reassemble_v4(&out)); // the TCP checksum over it all
    assert_eq!((s.src, s.sport, s.dst, s.dport), (CIP, 40000, RIP, 8080));
    assert_eq!(lab.all_drops(), 0);
}

/// UDP `[VIP6]:80` to `rip:8080` in `mode` (FULLNAT through local address
/// `lip`), the client and the real server's MACs known.
fn lab6(mode: ForwardMode, rip: IpAddr, lip: IpAddr) -> Lab {
    let (mut d, mut e) = super::desc(mode, Proto::Udp);
    let key = ServiceKey {
        proto: Proto::Udp,
        vip: v6(VIP6).into(),
        vport: 80,
    };
    d.services[0].key = key;
    d.services[0].dests[0].addr = rip;
    for (port, a, len) in [
        ("dpdk0", "fd00:10::1", 64),
        ("dpdk0", VIP6, 128),
        ("dpdk1", "fd00:192::1", 64),
    ] {
        d.addrs.push(AddrSpec {
            port: port.into(),
            addr: v6(a).into(),
            prefix_len: len,
        });
    }
    for l in &mut e.laddrs {
        (l.service, l.addr) = (key, lip);
    }
    let lab = Lab::with_desc(&d, &e, 0, 1);
    let neigh = &lab.core.shared.neigh;
    neigh.learn(0, v6(CIP6).into(), CLIENT_MAC, 0);
    neigh.learn(1, rip, RS_MAC, 0);
    lab
}

#[test]
fn ipv6_fragments_through_nat66_and_fullnat66() {
    for mode in [ForwardMode::Nat, ForwardMode::FullNat] {
        let mut lab = lab6(mode, v6(RIP6).into(), v6(LIP6).into());
        let dgram = udp6_big(CLIENT_MAC, MAC0, CIP6, 5000, VIP6, 80, 3000);
        let frags = frags_v6(&dgram, &[1448, 2896], 0xabcd_0001);
        let out = lab.rx(0, &frags);
        assert_eq!(out.len(), 3, "{mode:?}");
        let out: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        let (src, sport, dst, dport, hop) = seen6(&reassemble_v6(&out, 0xabcd_0001));
        assert_eq!((dst, dport, hop), (v6(RIP6), 8080, 63));
        match mode {
            ForwardMode::FullNat => assert_eq!(src, v6(LIP6)),
            _ => assert_eq!((src, sport), (v6(CIP6), 5000)),
        }
        for f in &out {
            assert_eq!(
                &f[14 + 24..14 + 40],
                &v6(RIP6).octets(),
                "every fragment readdressed"
            );
            assert_eq!(f[14 + 7], 63);
        }
        assert_eq!(lab.all_drops(), 0);
    }
}

#[test]
fn fullnat64_drops_fragments_by_name() {
    let mut lab = lab6(ForwardMode::FullNat, ip(RIP), ip(LIP));
    let dgram = udp6_big(CLIENT_MAC, MAC0, CIP6, 5000, VIP6, 80, 3000);
    assert!(lab.rx(0, &frags_v6(&dgram, &[1448, 2896], 7)).is_empty());
    assert_eq!(lab.drops(DropReason::FragUnsupported), 3);
    assert_eq!(lab.all_drops(), 3);
    // Whole datagrams still go.
    let small = udp6_big(CLIENT_MAC, MAC0, CIP6, 5001, VIP6, 80, 100);
    let out = lab.rx(0, &[small]);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[12..14], &[0x08, 0x00], "translated to IPv4");
}

#[test]
fn one_packet_scheduling_keeps_a_fragmented_datagrams_connection_briefly() {
    let (mut d, e) = super::desc(ForwardMode::Nat, Proto::Udp);
    d.services[0].ops = true;
    let mut lab = Lab::with_desc(&d, &e, 0, 1);
    let frags = frags_v4(
        &super::udp_with(CLIENT_MAC, MAC0, CIP, 5353, VIP, 80, &big(3000)),
        &[1480, 2960],
    );
    assert_eq!(lab.rx(0, &frags).len(), 3);
    assert_eq!(lab.core.conns.len(), 1, "kept for the later fragments");
    // A fragmented answer to an earlier datagram (no connection left) goes
    // back as from the VIP, all of it.
    let reply = super::udp_with(RS_MAC, MAC1, RIP, 8080, CIP, 5300, &big(3000));
    let out = lab.rx(1, &frags_v4(&reply, &[1480, 2960]));
    assert_eq!(out.len(), 3);
    let s = super::seen(&reassemble_v4(&out));
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, CIP, 5300));
    assert_eq!(lab.core.conns.len(), 2);
    // Gone after a few seconds, the dest's counters back to zero.
    let snap = lab.snap.clone();
    lab.core.now_ms += 4_000;
    lab.core.expire(&snap);
    assert_eq!(lab.core.conns.len(), 0);
    for d in lab.snap.dests.values() {
        let c = &d.counters;
        assert_eq!(c.conns(), (0, 0));
    }
    assert_eq!(lab.all_drops(), 0);
}

#[test]
fn an_early_fragment_waits_for_its_first() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let frags = client_frags(5000);
    // The last comes first: it waits.
    assert!(lab.rx(0, &[frags[2].clone()]).is_empty());
    assert_eq!(lab.core.frags.held(), 1);
    assert_eq!(event(&lab, Event::FragHeld), 1);
    lab.core.now_ms += 50;
    // The first arrives: both go, then the middle one.
    let out = lab.rx(0, &[frags[0].clone()]);
    assert_eq!(out.len(), 2, "the first, and the one that waited");
    assert_eq!(lab.core.frags.held(), 0);
    let mut all = out;
    all.extend(lab.rx(0, &[frags[1].clone()]));
    let s = super::seen(&reassemble_v4(&all));
    assert_eq!((s.dst, s.dport), (RIP, 8080));
    assert_eq!(lab.all_drops(), 0);
}

#[test]
fn an_orphan_fragment_times_out_and_is_counted() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let frags = client_frags(5000);
    assert!(lab.rx(0, &[frags[1].clone()]).is_empty());
    let snap = lab.snap.clone();
    lab.core.now_ms += 99;
    lab.core.expire(&snap);
    assert_eq!(lab.drops(DropReason::FragOrphan), 0, "still waiting");
    lab.core.now_ms += 1;
    lab.core.expire(&snap);
    assert_eq!(lab.drops(DropReason::FragOrphan), 1);
    assert_eq!(lab.core.frags.held(), 0);
    assert_eq!(lab.all_drops(), 1);
    // Too many waiting: the one beyond the queue is dropped at once.
    let later = frags[1].clone();
    let frames: Vec<Vec<u8>> = (0..65u16).map(|i| with_ident(&later, i)).collect();
    for chunk in frames.chunks(BURST) {
        lab.rx(0, chunk);
    }
    assert_eq!(lab.core.frags.held(), 64);
    assert_eq!(lab.drops(DropReason::FragOrphan), 2);
}

#[test]
fn dr_forwards_fragments_untouched_and_tun_encapsulates_each() {
    let dgram = super::udp_with(CLIENT_MAC, MAC0, CIP, 5000, VIP, 80, &big(3000));
    let frags = frags_v4(&dgram, &[1480, 2960]);
    let mut lab = Lab::new(ForwardMode::Dr, Proto::Udp);
    let out = lab.rx(0, &frags);
    assert_eq!(out.len(), 3);
    for ((p, f), orig) in out.iter().zip(&frags) {
        assert_eq!((*p, &f[..6], &f[6..12]), (1, &RS_MAC[..], &MAC1[..]));
        assert_eq!(&f[12..], &orig[12..], "the IP packet is untouched");
    }

    // TUN adds 20 bytes: fragments of a 1500-byte path do not fit (dropped
    // as `frag_needed`; with DF clear no ICMP error goes back).
    let mut lab = Lab::new(ForwardMode::Tun, Proto::Udp);
    let out = lab.rx(0, &frags);
    assert_eq!(out.len(), 1, "only the last, short one");
    assert_eq!(lab.drops(DropReason::FragNeeded), 2);
    let frags = frags_v4(&dgram, &[1200, 2400]);
    let mut lab = Lab::new(ForwardMode::Tun, Proto::Udp);
    let out = lab.rx(0, &frags);
    assert_eq!(out.len(), 3);
    for ((_, f), orig) in out.iter().zip(&frags) {
        let outer = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(outer.protocol(), etherparse::IpNumber::IPV4, "IP-in-IP");
        assert_eq!((outer.source(), outer.destination()), (DIP, RIP));
        assert_eq!(&f[34..], &orig[14..], "the inner fragment is the client's");
    }
    assert_eq!(lab.all_drops(), 0);
}

#[test]
fn fragments_of_another_workers_connection_follow_their_first_to_it() {
    // Worker 0 of 2 receives; worker 1 owns the client's connection.
    let mut lab = Lab::with_workers(ForwardMode::Nat, Proto::Udp, 0, 2);
    let theirs = super::client_port_owned_by(&lab, Proto::Udp, 1);
    let frags = client_frags(theirs);
    // The last arrives early, then the first and the middle.
    assert!(lab.rx(0, &[frags[2].clone()]).is_empty());
    assert!(lab.rx(0, &[frags[0].clone(), frags[1].clone()]).is_empty());
    let handed: Vec<(usize, Vec<u8>, usize)> = std::mem::take(&mut lab.core.io.handed);
    assert_eq!(handed.len(), 3, "all three handed over");
    assert!(handed.iter().all(|h| h.0 == 1 && h.2 == 0));
    assert_eq!(handed[0].1, frags[0], "the first first");
    assert_eq!(lab.core.conns.len(), 0);
    assert_eq!(lab.all_drops(), 0);
    // Worker 1 forwards them, in the order they came on the ring.
    let mut owner = Lab::with_workers(ForwardMode::Nat, Proto::Udp, 1, 2);
    let frames: Vec<Vec<u8>> = handed.into_iter().map(|h| h.1).collect();
    let out = rx_handed(&mut owner, &frames);
    assert_eq!(out.len(), 3);
    let s = super::seen(&reassemble_v4(&out));
    assert_eq!((s.dst, s.dport), (RIP, 8080));
    assert_eq!(worker_drops(&owner, None), 0);
    // A later fragment whose first the owner never saw is an orphan there
    // (it came on the ring behind a first that was not forwarded).
    let stray = with_ident(&frags[1], IDENT + 1);
    assert!(rx_handed(&mut owner, &[stray]).is_empty());
    assert_eq!(worker_drops(&owner, Some(DropReason::FragOrphan)), 1);
}

#[test]
fn what_fragments_cannot_get_is_dropped_by_name() {
    // A first fragment that cuts the UDP header.
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let dgram = super::udp_with(CLIENT_MAC, MAC0, CIP, 5000, VIP, 80, &big(100));
    let tiny = {
        let (mut h, _) = Ipv4Header::from_slice(&dgram[14..]).unwrap();
        h.more_fragments = true;
        h.dont_fragment = false;
        h.total_len = 24;
        h.header_checksum = h.calc_header_checksum();
        let mut f = dgram[..14].to_vec();
        h.write(&mut f).unwrap();
        f.extend_from_slice(&dgram[34..38]);
        f
    };
    assert!(lab.rx(0, &[tiny]).is_empty());
    assert_eq!(lab.drops(DropReason::FragTiny), 1);

    // FULLNAT: the TCP segment carrying the client's first byte does not
    // grow when it is a fragment (no TOA): counted, forwarded.
    let mut lab = Lab::new(ForwardMode::FullNat, Proto::Tcp);
    let syn = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 100, b"")],
    );
    let lport = super::seen(&syn[0].1).sport;
    lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, LIP, lport, "SA", 9, b"")]);
    let data = vec![b'x'; 2000];
    let seg = tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 101, &data);
    let out = lab.rx(0, &frags_v4(&seg, &[1000]));
    assert_eq!(out.len(), 2);
    let s = super::seen(&reassemble_v4(&out));
    assert_eq!(
        (s.src, s.sport, s.dst, s.options.len()),
        (LIP, lport, RIP, 0)
    );
    assert_eq!(event(&lab, Event::FragNotExtended), 1);
    assert_eq!(event(&lab, Event::ToaInserted), 0);
    assert_eq!(lab.all_drops(), 0);
}

#[test]
fn own_fragments_go_up_to_the_kernel() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    lab.core.io.kernel = Some(Vec::new());
    // UDP to the DIP (no service there), its later fragment first; and an
    // ICMP echo too big for one frame.
    let dgram = super::udp_with(RS_MAC, MAC1, RIP, 53, DIP, 33000, &big(2000));
    let frags = frags_v4(&dgram, &[1480]);
    assert!(lab.rx(1, &[frags[1].clone()]).is_empty());
    assert!(lab.rx(1, &[frags[0].clone()]).is_empty());
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(RS_MAC, MAC1)
        .ipv4(RIP, DIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, &[0; 2000])
        .unwrap();
    assert!(lab.rx(1, &frags_v4(&ping, &[1480])).is_empty());
    let up = lab.core.io.kernel.take().unwrap();
    assert_eq!(up.len(), 4, "all fragments up, unchanged");
    assert_eq!((&up[0].1, &up[1].1), (&frags[0], &frags[1]));
    assert_eq!(lab.all_drops(), 0);
    // Without a kernel interface they are dropped as `fragment`.
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    lab.rx(1, &frags_v4(&ping, &[1480]));
    assert_eq!(lab.drops(DropReason::Fragment), 2);
}
