//! The LVS core without EAL: `Core<TestIo>` on plain byte buffers
//! (`wire::VecBuf`), frames built and checked with etherparse. Every mode's new
//! and established path, the director as a host (ARP, NDP, echo), ICMP errors,
//! drop reasons, the hand-over decision, and random frames that must each be
//! forwarded correctly or dropped under exactly one reason.

use std::net::IpAddr;

use dataplane::core::BURST;
use dataplane::testkit::*;
use dataplane::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;

/// What an IPv4 frame is, checksums verified: (dst MAC, src MAC, src, sport,
/// dst, dport, ttl, TCP options).
#[derive(Debug, PartialEq)]
struct Seen {
    dmac: [u8; 6],
    smac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    options: Vec<u8>,
}

fn seen(f: &[u8]) -> Seen {
    seen_l4(f, true)
}

/// [`seen`]; the TCP/UDP checksum is verified only if `check_l4` (the core
/// updates it incrementally, so a segment that came in with a bad one leaves
/// with a bad one).
fn seen_l4(f: &[u8], check_l4: bool) -> Seen {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!("not IPv4: {f:02x?}")
    };
    let h = ip4.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let (sport, dport, options) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            let c = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert!(!check_l4 || th.checksum == c, "TCP checksum");
            (t.source_port(), t.destination_port(), t.options().to_vec())
        }
        Some(TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            let c = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert!(!check_l4 || uh.checksum == c, "UDP checksum");
            (u.source_port(), u.destination_port(), vec![])
        }
        _ => (0, 0, vec![]),
    };
    Seen {
        dmac: f[0..6].try_into().unwrap(),
        smac: f[6..12].try_into().unwrap(),
        src: ip4.header().source(),
        sport,
        dst: ip4.header().destination(),
        dport,
        ttl: ip4.header().ttl(),
        options,
    }
}

#[test]
fn nat_new_and_established_both_ways() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1, "out the server-side port");
    let s = seen(&out[0].1);
    assert_eq!(
        (s.dmac, s.smac, s.src, s.sport, s.dst, s.dport, s.ttl),
        (RS_MAC, MAC1, CIP, 40000, RIP, 8080, 63)
    );
    let out = lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, CIP, 40000, "SA", 9, b"")]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0);
    let s = seen(&out[0].1);
    assert_eq!(
        (s.dmac, s.smac, s.src, s.sport, s.dst, s.dport, s.ttl),
        (CLIENT_MAC, MAC0, VIP, 80, CIP, 40000, 63)
    );
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"GET /")],
    );
    assert_eq!(seen(&out[0].1).dst, RIP, "established: same real server");
    assert_eq!(lab.core.conns.len(), 1);
    assert_eq!(lab.all_drops(), 0);
    // --stats: two packets in (40 + 45 IP bytes), one out (40), on the dest
    // and its service alike.
    let d = lab.snap.dests.values().next().expect("one dest");
    for t in [d.traffic.sum(), d.service_traffic.sum()] {
        assert_eq!((t.inpkts, t.inbytes, t.outpkts, t.outbytes), (2, 85, 1, 40));
    }
}

#[test]
fn fullnat_rewrites_both_ends_and_inserts_toa_in_the_first_ack() {
    let mut lab = Lab::new(ForwardMode::FullNat, Proto::Tcp);
    // The LIP's port pool was built with the snapshot, not by the first SYN.
    let pool = lab.core.lports.free(ip(LIP));
    assert_eq!(
        pool,
        65535 - 1024 + 1,
        "default local port range 1024-65535"
    );
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 100, b"")],
    );
    let syn = seen(&out[0].1);
    assert_eq!((syn.src, syn.dst, syn.dport), (LIP, RIP, 8080));
    let lport = syn.sport;
    let out = lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, LIP, lport, "SA", 9, b"")]);
    let sa = seen(&out[0].1);
    assert_eq!((sa.src, sa.sport, sa.dst, sa.dport), (VIP, 80, CIP, 40000));
    // The handshake's ACK carries the client's first data sequence number.
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 101, b"")],
    );
    let ack = seen(&out[0].1);
    let toa = [254u8, 8, 0x9c, 0x40, 10, 0, 0, 2]; // kind, len, port 40000, CIP
    assert!(
        ack.options.windows(8).any(|w| w == toa),
        "TOA with the client's address: {:02x?}",
        ack.options
    );
    assert_eq!(
        lab.core.shared.events[0].get(dataplane::events::Event::ToaInserted),
        1
    );
}

#[test]
fn dr_changes_only_the_destination_mac_and_tun_encapsulates_from_the_dip() {
    let mut lab = Lab::new(ForwardMode::Dr, Proto::Tcp);
    let syn = tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"");
    let out = lab.rx(0, std::slice::from_ref(&syn));
    assert_eq!(out[0].0, 1);
    assert_eq!(&out[0].1[0..6], &RS_MAC);
    assert_eq!(&out[0].1[6..12], &MAC1);
    assert_eq!(&out[0].1[12..], &syn[12..], "the IP packet is untouched");

    let mut lab = Lab::new(ForwardMode::Tun, Proto::Tcp);
    let out = lab.rx(0, std::slice::from_ref(&syn));
    let f = &out[0].1;
    let outer = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
    assert_eq!(outer.protocol(), etherparse::IpNumber::IPV4, "IP-in-IP");
    assert_eq!((outer.source(), outer.destination()), (DIP, RIP));
    assert_eq!(&f[34..], &syn[14..], "the inner packet is the client's");
}

#[test]
fn udp_through_nat_opens_one_connection_per_flow() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|i| udp(CLIENT_MAC, MAC0, CIP, 5000 + i % 4, VIP, 80))
        .collect();
    let out = lab.rx(0, &frames);
    assert_eq!(out.len(), 8);
    assert!(out.iter().all(|(_, f)| seen(f).dst == RIP));
    assert_eq!(
        lab.core.conns.len(),
        4,
        "repeats in one burst find their flow"
    );
}

#[test]
fn one_packet_scheduling_keeps_no_connection_and_translates_replies() {
    // ipvsadm -A -u VIP:80 -s rr -o, two NAT real servers.
    let (mut d, e) = desc(ForwardMode::Nat, Proto::Udp);
    d.services[0].ops = true;
    let second = DestSpec {
        addr: ip(RIP2),
        ..d.services[0].dests[0].clone()
    };
    d.services[0].dests.push(second);
    let mut lab = Lab::with_desc(&d, &e, 0, 1);
    // The same client socket, four datagrams: each scheduled on its own.
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|_| udp(CLIENT_MAC, MAC0, CIP, 5353, VIP, 80))
        .collect();
    let out = lab.rx(0, &frames);
    let dsts: Vec<[u8; 4]> = out.iter().map(|(_, f)| seen(f).dst).collect();
    assert_eq!(dsts, [RIP, RIP2, RIP, RIP2], "rr per datagram");
    assert_eq!(lab.core.conns.len(), 0, "no connection kept");
    // The real servers' answers go back as from the VIP, without a connection.
    let out = lab.rx(
        1,
        &[
            udp(RS_MAC, MAC1, RIP, 8080, CIP, 5353),
            udp(RS_MAC, MAC1, RIP2, 8080, CIP, 5353),
        ],
    );
    assert_eq!(out.len(), 2);
    for (port, f) in &out {
        let s = seen(f);
        assert_eq!(
            (*port, s.dmac, s.src, s.sport, s.dst, s.dport),
            (0, CLIENT_MAC, VIP, 80, CIP, 5353)
        );
    }
    assert_eq!(lab.core.conns.len(), 0);
    assert_eq!(lab.all_drops(), 0);
    // Counters: four scheduled, two answers out; no connection left counted.
    let svc = lab.snap.services_by_id.values().next().expect("service");
    let t = svc.traffic.sum();
    assert_eq!((t.conns, t.inpkts, t.outpkts), (4, 4, 2));
    for d in lab.snap.dests.values() {
        let c = &d.counters;
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!((c.active.load(Relaxed), c.inactive.load(Relaxed)), (0, 0));
    }
}

#[test]
fn what_the_balancer_does_not_consume_goes_up_to_the_kernel_interface() {
    let frames = || {
        vec![
            // The kernel's own TCP: a SYN-ACK to the DIP, no service there.
            tcp(RS_MAC, MAC1, RIP, 80, DIP, 40000, "SA", 1, b""),
            // A UDP answer to the DIP.
            udp(RS_MAC, MAC1, RIP, 53, DIP, 33000),
        ]
    };
    // Without a kernel interface: dropped and counted, as before.
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    assert!(lab.rx(1, &frames()).is_empty());
    assert_eq!(lab.drops(DropReason::NoService), 2);
    // With one: up, on the port they came in on, unchanged; nothing dropped.
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    lab.core.io.kernel = Some(Vec::new());
    assert!(lab.rx(1, &frames()).is_empty());
    let up = lab.core.io.kernel.take().unwrap();
    assert_eq!(up.len(), 2);
    assert!(up.iter().all(|(port, _)| *port == 1));
    assert_eq!(up[0].1, frames()[0]);
    assert_eq!(lab.all_drops(), 0);
    assert_eq!(
        lab.core.shared.events[0].get(dataplane::events::Event::ToKernel),
        2
    );
    // The load-balanced traffic does not go up: a SYN to the VIP is forwarded.
    lab.core.io.kernel = Some(Vec::new());
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40001, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1);
    assert!(lab.core.io.kernel.as_ref().unwrap().is_empty());
}

#[test]
fn a_forged_arp_reply_does_not_redirect_a_real_server() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    const EVIL: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];
    // An ARP reply "RIP is at EVIL", to the director's DIP, nobody asked.
    let reply = |mac: [u8; 6]| {
        let mut f = MAC1.to_vec();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&RIP);
        f.extend_from_slice(&MAC1);
        f.extend_from_slice(&DIP);
        f.resize(60, 0);
        f
    };
    let out = lab.rx(1, &[reply(EVIL)]);
    // The director probes the MAC it knows, by unicast, and keeps it.
    assert_eq!(out.len(), 1, "a probe");
    let probe = &out[0].1;
    assert_eq!((&probe[0..6], &probe[20..22]), (&RS_MAC[..], &[0u8, 1][..]));
    assert_eq!(&probe[38..42], &RIP, "who has RIP");
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(seen(&out[0].1).dmac, RS_MAC, "not even for a moment");
    // The real server answers: a conflict, counted; the forger's next word
    // starts another probe, never a move while the server answers.
    let out = lab.rx(1, &[reply(RS_MAC)]);
    assert!(out.is_empty());
    let ev = |e| lab.core.shared.events[0].get(e);
    assert_eq!(ev(dataplane::events::Event::NeighConflict), 1);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40001, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(seen(&out[0].1).dmac, RS_MAC);
    // A reply for an address nobody asked about creates nothing.
    let mut f = reply(EVIL);
    f[28..32].copy_from_slice(&[192, 168, 0, 77]);
    assert!(lab.rx(1, &[f]).is_empty());
    assert_eq!(
        lab.core.shared.events[0].get(dataplane::events::Event::NeighUnsolicited),
        1
    );
    assert!(!lab
        .core
        .shared
        .neigh
        .entries()
        .iter()
        .any(|(ip, _)| *ip == IpAddr::from([192, 168, 0, 77])));
}

#[test]
fn frames_for_another_mac_are_dropped_as_such() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let other = [0x02, 0, 0, 0, 0, 0x77];
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, other, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    assert!(out.is_empty());
    assert_eq!(lab.drops(DropReason::OtherMac), 1);
    assert_eq!(lab.core.conns.len(), 0, "no connection from it");
    // The port's own MAC still forwards; group addresses still reach ARP.
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(lab.all_drops(), 1);
}

#[test]
fn arp_for_own_addresses_is_answered_and_others_not() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let req = |target: [u8; 4]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&CIP);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.resize(60, 0);
        f
    };
    let out = lab.rx(0, &[req(VIP)]);
    assert_eq!(out.len(), 1);
    let r = &out[0].1;
    assert_eq!(&r[20..22], &[0, 2], "a reply");
    assert_eq!(&r[22..28], &MAC0);
    assert_eq!(&r[28..32], &VIP);
    let out = lab.rx(0, &[req([10, 0, 0, 77])]);
    assert!(out.is_empty());
    assert_eq!(lab.drops(DropReason::NotForUs), 1);
}

#[test]
fn echo_to_an_own_address_is_answered() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv4(CIP, VIP, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut f, b"ping")
        .unwrap();
    let out = lab.rx(0, &[f]);
    assert_eq!(out.len(), 1);
    let s = seen(&out[0].1);
    assert_eq!((s.dmac, s.src, s.dst), (CLIENT_MAC, VIP, CIP));
    assert_eq!(out[0].1[34], 0, "echo reply");
}

#[test]
fn icmp_port_unreachable_from_the_server_reaches_the_client_as_from_the_vip() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    let dgram = udp(CLIENT_MAC, MAC0, CIP, 5000, VIP, 80);
    let out = lab.rx(0, std::slice::from_ref(&dgram));
    let fwd = &out[0].1;
    // The real server answers with port unreachable quoting what it got.
    let quote = &fwd[14..];
    let mut f = Vec::new();
    PacketBuilder::ethernet2(RS_MAC, MAC1)
        .ipv4(RIP, CIP, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut f, quote)
        .unwrap();
    let out = lab.rx(1, &[f]);
    assert_eq!(out.len(), 1, "translated and sent on");
    let e = &out[0].1;
    let outer = etherparse::Ipv4HeaderSlice::from_slice(&e[14..]).unwrap();
    assert_eq!((outer.source(), outer.destination()), (VIP, CIP));
    let inner = etherparse::Ipv4HeaderSlice::from_slice(&e[42..]).unwrap();
    assert_eq!(
        (inner.source(), inner.destination()),
        (CIP, VIP),
        "the quote as the client sent it"
    );
}

#[test]
fn each_kind_of_bad_frame_counts_its_reason() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let mut bad_csum = tcp(CLIENT_MAC, MAC0, CIP, 1, VIP, 80, "S", 1, b"");
    bad_csum[24] ^= 0xff; // IPv4 header checksum
    let mut unknown = vec![0u8; 60];
    unknown[..6].copy_from_slice(&MAC0);
    unknown[12..14].copy_from_slice(&[0x88, 0xb5]);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![1, 2, 3], DropReason::Truncated),
        (unknown, DropReason::UnknownEtherType),
        (
            tcp(
                CLIENT_MAC,
                [2, 0, 0, 0, 0, 0x77],
                CIP,
                1,
                VIP,
                80,
                "S",
                1,
                b"",
            ),
            DropReason::OtherMac,
        ),
        (bad_csum, DropReason::BadIpv4),
        (
            tcp(CLIENT_MAC, MAC0, CIP, 1, VIP, 81, "S", 1, b""),
            DropReason::NoService,
        ),
        (
            tcp(CLIENT_MAC, MAC0, CIP, 1, [10, 9, 9, 9], 80, "S", 1, b""),
            DropReason::NotForUs,
        ),
        (
            tcp(CLIENT_MAC, MAC0, CIP, 1, VIP, 80, "A", 1, b""),
            DropReason::NoConnection,
        ),
    ];
    for (f, reason) in cases {
        let before = lab.all_drops();
        let r0 = lab.drops(reason);
        let out = lab.rx(0, &[f]);
        assert!(out.is_empty(), "{reason:?}: nothing sent");
        assert_eq!(lab.drops(reason), r0 + 1, "{reason:?}");
        assert_eq!(
            lab.all_drops(),
            before + 1,
            "{reason:?}: exactly one reason"
        );
    }
}

#[test]
fn an_unknown_next_hop_parks_the_packet_and_asks_for_it() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let out = lab.rx(
        0,
        &[tcp(
            CLIENT_MAC,
            MAC0,
            [10, 0, 0, 9],
            1,
            VIP,
            80,
            "S",
            1,
            b"",
        )],
    );
    assert_eq!(out.len(), 1, "the SYN goes out (RS known)");
    // The reply's next hop (a client whose MAC is unknown) is asked for.
    let out = lab.rx(
        1,
        &[tcp(RS_MAC, MAC1, RIP, 8080, [10, 0, 0, 9], 1, "SA", 1, b"")],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[12..14], &[0x08, 0x06], "an ARP request");
    assert_eq!(&out[0].1[38..42], &[10, 0, 0, 9]);
    assert_eq!(lab.core.pending.queue.len(), 1, "the reply waits");
    lab.core
        .shared
        .neigh
        .learn(0, ip([10, 0, 0, 9]), CLIENT_MAC, 0);
    let snap = lab.snap.clone();
    lab.core.flush_pending(&snap);
    let out = std::mem::take(&mut lab.core.io.sent);
    assert_eq!(seen(&out[0].1).dst, [10, 0, 0, 9], "sent once resolved");
}

#[test]
fn a_packet_owned_by_another_worker_is_handed_over_not_handled() {
    // Worker 0 of 2: find a client port whose connection worker 1 owns.
    let mut lab = Lab::with_workers(ForwardMode::Nat, Proto::Tcp, 0, 2);
    let owners = &lab.core.shared.owners;
    let t = |p| conntrack::Tuple::tcp(ip(CIP), p, ip(VIP), 80);
    let theirs = (1024..2000)
        .find(|&p| owners.of_tuple(&lab.snap, 0, &t(p)) == 1)
        .unwrap();
    let mine = (1024..2000)
        .find(|&p| owners.of_tuple(&lab.snap, 0, &t(p)) == 0)
        .unwrap();
    let out = lab.rx(
        0,
        &[
            tcp(CLIENT_MAC, MAC0, CIP, theirs, VIP, 80, "S", 1, b""),
            tcp(CLIENT_MAC, MAC0, CIP, mine, VIP, 80, "S", 1, b""),
        ],
    );
    assert_eq!(out.len(), 1, "its own connection is forwarded");
    assert_eq!(seen(&out[0].1).sport, mine);
    let h = &lab.core.io.handed;
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].0, h[0].2), (1, 0), "to worker 1, arrived on port 0");
    assert_eq!(
        lab.core.conns.len(),
        1,
        "no connection for the other's packet"
    );
    assert_eq!(lab.all_drops(), 0);
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let valid = (
        any::<u16>(),
        prop::sample::select(vec![80u16, 81, 8080]),
        prop::sample::select(vec!["S", "A", "SA", "R", ""]),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(sport, dport, flags, from_rs, payload)| {
            if from_rs {
                tcp(RS_MAC, MAC1, RIP, 8080, CIP, sport, flags, 5, &payload)
            } else {
                tcp(CLIENT_MAC, MAC0, CIP, sport, VIP, dport, flags, 5, &payload)
            }
        });
    let mutated = (valid.clone(), any::<usize>(), any::<u8>()).prop_map(|(mut f, i, b)| {
        let i = i % f.len();
        f[i] ^= b | 1;
        f
    });
    let truncated = (valid.clone(), any::<usize>()).prop_map(|(f, n)| f[..n % f.len()].to_vec());
    let random = prop::collection::vec(any::<u8>(), 0..128);
    prop_oneof![valid, mutated, truncated, random]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Random frames through every mode: none panics; each one is sent,
    /// parked or dropped under exactly one reason; what is sent re-parses with
    /// valid checksums and a decremented TTL (DR: untouched IP packet).
    #[test]
    fn every_frame_is_forwarded_correctly_or_dropped_under_one_reason(
        mode in prop::sample::select(vec![ForwardMode::Nat, ForwardMode::FullNat, ForwardMode::Dr, ForwardMode::Tun]),
        frames in prop::collection::vec(frame_strategy(), 1..BURST),
        port in 0usize..2,
    ) {
        let mut lab = Lab::new(mode, Proto::Tcp);
        let before = lab.all_drops();
        let parked_before = lab.core.pending.queue.len();
        let out = lab.rx(port, &frames);
        let drops = lab.all_drops() - before;
        let parked = (lab.core.pending.queue.len() - parked_before) as u64;
        // ARP requests for parked packets are extra output, not inputs.
        let arps = out.iter().filter(|(_, f)| f.get(12..14) == Some(&[0x08, 0x06])).count() as u64;
        let forwarded = out.len() as u64 - arps;
        prop_assert_eq!(forwarded + parked + drops, frames.len() as u64,
            "each frame sent, parked or dropped once");
        // Checksums are updated incrementally: outputs are checked when every
        // input TCP segment had a valid one.
        let inputs_valid = frames.iter().all(|f| match SlicedPacket::from_ethernet(f) {
            Ok(SlicedPacket { net: Some(NetSlice::Ipv4(ip4)), transport: Some(TransportSlice::Tcp(t)), .. }) => {
                let h = ip4.header().to_header();
                t.to_header().calc_checksum_ipv4(&h, t.payload()).ok() == Some(t.checksum())
            }
            _ => true,
        });
        for (p, f) in out.iter().filter(|(_, f)| f.get(12..14) == Some(&[0x08, 0x00])) {
            let s = seen_l4(f, inputs_valid);
            if mode == ForwardMode::Dr {
                prop_assert_eq!(s.ttl, 64);
            } else if mode == ForwardMode::Tun && *p == 1 {
                prop_assert_eq!(s.dst, RIP, "tunnelled to the real server");
            } else {
                prop_assert_eq!(s.ttl, 63, "TTL decremented");
            }
        }
    }
}

#[test]
fn a_cached_next_hop_follows_a_neighbour_change() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(seen(&out[0].1).dmac, RS_MAC);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"")],
    );
    assert_eq!(seen(&out[0].1).dmac, RS_MAC, "from the connection's cache");
    // The real server's MAC changes (a failover, a new NIC): the next packet
    // of the established connection goes to the new one.
    let moved = [0x02, 0, 0, 0, 9, 9];
    lab.core.shared.neigh.learn(1, ip(RIP), moved, 2000);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 3, b"")],
    );
    assert_eq!(seen(&out[0].1).dmac, moved);
    // And the reply direction resolves its own hop.
    let out = lab.rx(1, &[tcp(moved, MAC1, RIP, 8080, CIP, 40000, "A", 9, b"")]);
    assert_eq!((out[0].0, seen(&out[0].1).dmac), (0, CLIENT_MAC));
}

#[test]
fn connections_expire_and_a_mass_expiry_continues_every_loop() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Udp);
    for chunk in 0..10u16 {
        let frames: Vec<Vec<u8>> = (0..30)
            .map(|i| udp(CLIENT_MAC, MAC0, CIP, 10000 + chunk * 30 + i, VIP, 80))
            .collect();
        lab.rx(0, &frames);
    }
    assert_eq!(lab.core.conns.len(), 300);
    let snap = lab.snap.clone();
    lab.core.expire(&snap);
    assert_eq!(lab.core.conns.len(), 300, "none due yet");
    lab.core.expire(&snap);
    // UDP's 300 s later, all are due; each call takes at most 128.
    lab.core.now_ms += 301_000;
    lab.core.expire(&snap);
    assert_eq!(lab.core.conns.len(), 300 - 128);
    lab.core.expire(&snap);
    lab.core.expire(&snap);
    assert_eq!(
        lab.core.conns.len(),
        0,
        "the backlog goes on within the same ms"
    );
}
