//! Forwarding modes in-process (DPDK on ring ports, one worker lcore): DR, TUN
//! and FULLNAT as a user sees them on the wire, re-parsed with etherparse.
//!
//! Same harness as `rings.rs` (its own process, so its own EAL and rings): frames
//! go into a port's rx ring, what the worker sends is read from the tx rings.

use std::time::Duration;

use dataplane::*;

mod common;
use common::{arp, collect, dest, drain, drops, inject, ip, Env};

const TAG: &str = "m";

fn env() -> &'static std::sync::Mutex<Env> {
    common::env(TAG)
}

fn spec() -> DataplaneSpec {
    common::spec(TAG)
}
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
const CIP: [u8; 4] = [10, 0, 0, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const LIP: [u8; 4] = [192, 168, 0, 200];
const RIP: [u8; 4] = [192, 168, 0, 11];

fn config(proto: Proto, dests: Vec<DestSpec>) -> ConfigDesc {
    common::config(proto, "rr", dests)
}

fn syn(dst_mac: [u8; 6], sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, dst_mac)
        .ipv4(CIP, VIP, 64)
        .tcp(sport, 80, 1000, 64000)
        .syn()
        .write(&mut v, payload)
        .unwrap();
    v
}

#[allow(clippy::too_many_arguments)]
fn seg(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    opts: &[etherparse::TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = etherparse::TcpHeader::new(src.1, dst.1, seq, 64000);
    h.syn = syn;
    if let Some(a) = ack {
        h.ack = true;
        h.acknowledgment_number = a;
    }
    h.set_options(opts).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .tcp_header(h)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Parses an IPv4 TCP frame, checks the IP and TCP checksums, and returns
/// (src, sport, dst, dport, ttl, options, payload).
#[allow(clippy::type_complexity)]
fn parse_tcp(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16, u8, Vec<u8>, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!("ipv4")
    };
    let h = ip4.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("tcp")
    };
    let th = t.to_header();
    assert_eq!(
        th.checksum,
        th.calc_checksum_ipv4(&h, t.payload()).unwrap(),
        "TCP checksum"
    );
    (
        h.source,
        th.source_port,
        h.destination,
        th.destination_port,
        h.time_to_live,
        th.options.as_slice().to_vec(),
        t.payload().to_vec(),
    )
}

fn mss_of(opts: &[u8]) -> Option<u16> {
    let at = opts.windows(2).position(|w| w == [2, 4])?;
    Some(u16::from_be_bytes([opts[at + 2], opts[at + 3]]))
}

fn event(dp: &Dataplane, name: &str) -> u64 {
    dp.events()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap()
}

/// Starts the dataplane, lets the client resolve the VIP and the director
/// resolve RS1 (answering its ARP request), so forwarding is immediate after.
/// Returns the dataplane and the two port MACs.
fn start(env: &Env, desc: &ConfigDesc) -> (Dataplane, [u8; 6], [u8; 6]) {
    drain(env);
    let dp = Dataplane::start_with_eal(&spec(), desc).expect("start");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    drain(env);
    inject(env, 0, &[arp(1, CLIENT_MAC, CIP, [0; 6], VIP, [0xff; 6])]);
    assert_eq!(collect(env, 0, 1).len(), 1, "ARP reply for the VIP");
    // RS1 asks for the DIP (its gateway): the director learns its MAC (a
    // gratuitous ARP would not be learned: nobody asked for it).
    inject(
        env,
        1,
        &[arp(1, RS1_MAC, RIP, [0; 6], [192, 168, 0, 1], [0xff; 6])],
    );
    std::thread::sleep(Duration::from_millis(30));
    drain(env);
    (dp, mac0, mac1)
}

#[test]
fn dr_changes_only_the_destination_mac_and_counts_requests_only() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = config(Proto::Tcp, vec![dest("192.168.0.11", 80, ForwardMode::Dr)]);
    let (dp, mac0, mac1) = start(&env, &desc);

    let input = syn(mac0, 40000, b"");
    inject(&env, 0, std::slice::from_ref(&input));
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1, "SYN forwarded to the server LAN");
    let f = &out[0];
    assert_eq!(&f[0..6], &RS1_MAC, "to the real server's MAC");
    assert_eq!(&f[6..12], &mac1, "from the director's server-side port");
    assert_eq!(
        &f[12..],
        &input[12..],
        "IP packet untouched (VIP destination, TTL, checksums)"
    );
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!("ipv4")
    };
    assert_eq!(ip4.header().destination(), VIP);
    assert_eq!(ip4.header().ttl(), 64, "DR leaves the TTL alone");

    // A data segment of the same connection follows the same way.
    let mut ack = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv4(CIP, VIP, 64)
        .tcp(40000, 80, 1001, 64000)
        .ack(5000)
        .write(&mut ack, b"GET /")
        .unwrap();
    inject(&env, 0, &[ack]);
    assert_eq!(collect(&env, 1, 1).len(), 1);

    let st = dp.stats();
    let t = st.services[0].traffic;
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 2, 0), "requests only");
    let conns = dp.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].dest, (ip("192.168.0.11"), 80));
    dp.stop();
}

#[test]
fn dr_dest_on_another_port_number_is_rejected() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let good = config(Proto::Tcp, vec![dest("192.168.0.11", 80, ForwardMode::Dr)]);
    let dp = Dataplane::start_with_eal(&spec(), &good).expect("start");
    for mode in [ForwardMode::Dr, ForwardMode::Tun] {
        let bad = config(Proto::Tcp, vec![dest("192.168.0.11", 8080, mode)]);
        let err = dp.apply(&bad).expect_err("port mismatch rejected");
        assert!(
            err.to_string().contains("virtual port"),
            "clear error: {err}"
        );
    }
    dp.stop();
}

fn fullnat_ext(range: (u16, u16)) -> ExtDesc {
    ExtDesc {
        laddrs: vec![LocalAddrSpec {
            service: ServiceKey {
                proto: Proto::Tcp,
                vip: ip("10.0.0.100"),
                vport: 80,
            },
            addr: ip("192.168.0.200"),
            port: "dpdk1".into(),
        }],
        proxy_protocol: vec![],
        local_port_range: range,
        synproxy: vec![],
        ..Default::default()
    }
}

#[test]
fn fullnat_rewrites_both_ends_inserts_toa_and_refuses_when_ports_run_out() {
    use etherparse::TcpOptionElement::{MaximumSegmentSize, Noop, Timestamp};
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = config(
        Proto::Tcp,
        vec![dest("192.168.0.11", 8080, ForwardMode::FullNat)],
    );
    let (dp, mac0, mac1) = start(&env, &desc);
    dp.apply_ext(&desc, &fullnat_ext((5000, 5001)))
        .expect("pool");
    std::thread::sleep(Duration::from_millis(30));
    drain(&env);

    // The LIP is an own address: ARP answered on the server side.
    inject(&env, 1, &[arp(1, RS1_MAC, RIP, [0; 6], LIP, [0xff; 6])]);
    let r = collect(&env, 1, 1);
    assert_eq!(r.len(), 1, "ARP reply for the LIP");
    assert_eq!(&r[0][28..32], &LIP);

    // SYN: both ends rewritten, MSS lowered by the TOA length.
    let cli = (CLIENT_MAC, mac0);
    let syn = seg(
        cli,
        (CIP, 40000),
        (VIP, 80),
        1000,
        None,
        true,
        &[MaximumSegmentSize(1460)],
        b"",
    );
    inject(&env, 0, &[syn]);
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &RS1_MAC);
    let (src, lport, dst, dport, ttl, opts, _) = parse_tcp(&out[0]);
    assert_eq!((src, dst, dport, ttl), (LIP, RIP, 8080, 63));
    assert!(
        (5000..=5001).contains(&lport),
        "local port from the pool: {lport}"
    );
    assert_eq!(mss_of(&opts), Some(1452));

    // SYN-ACK from the RS to LIP:lport goes back as VIP:80 -> CIP:40000.
    let rs = (RS1_MAC, mac1);
    let synack = seg(
        rs,
        (RIP, 8080),
        (LIP, lport),
        7000,
        Some(1001),
        true,
        &[MaximumSegmentSize(1460)],
        b"",
    );
    inject(&env, 1, &[synack]);
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0][0..6], &CLIENT_MAC);
    let (src, sport, dst, dport, _, opts, _) = parse_tcp(&back[0]);
    assert_eq!((src, sport, dst, dport), (VIP, 80, CIP, 40000));
    assert_eq!(mss_of(&opts), Some(1452), "SYN-ACK MSS clamped too");

    // The handshake's ACK (with timestamps) carries TOA: kind 254, len 8,
    // client port, client address.
    let toa = [254u8, 8, 0x9c, 0x40, 10, 0, 0, 2];
    let ts = [Noop, Noop, Timestamp(1, 2)];
    let ack = seg(
        cli,
        (CIP, 40000),
        (VIP, 80),
        1001,
        Some(7001),
        false,
        &ts,
        b"",
    );
    inject(&env, 0, std::slice::from_ref(&ack));
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1);
    let (src, sport, dst, _, _, opts, pl) = parse_tcp(&out[0]);
    assert_eq!((src, sport, dst), (LIP, lport, RIP));
    assert_eq!(&opts[..12], &ack[54..66], "the client's options kept");
    assert_eq!(&opts[12..], &toa, "TOA appended");
    assert!(pl.is_empty());
    assert_eq!(out[0].len(), 14 + 20 + 20 + 12 + 8);

    // The first data segment has the same sequence number: TOA again (the toa
    // module reads whichever completes the handshake). Later data: no TOA.
    let data = seg(
        cli,
        (CIP, 40000),
        (VIP, 80),
        1001,
        Some(7001),
        false,
        &[],
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let more = seg(
        cli,
        (CIP, 40000),
        (VIP, 80),
        1019,
        Some(7001),
        false,
        &[],
        b"x",
    );
    inject(&env, 0, &[data, more]);
    let out = collect(&env, 1, 2);
    assert_eq!(out.len(), 2);
    let (_, _, _, _, _, opts, pl) = parse_tcp(&out[0]);
    assert_eq!(
        (opts.as_slice(), pl.as_slice()),
        (&toa[..], &b"GET / HTTP/1.0\r\n\r\n"[..])
    );
    let (_, _, _, _, _, opts, pl) = parse_tcp(&out[1]);
    assert!(opts.is_empty());
    assert_eq!(pl, b"x");
    assert_eq!(event(&dp, "toa_inserted"), 2);
    assert_eq!(event(&dp, "mss_clamped"), 2);

    // Two local ports: the second client gets the other one, the third is refused.
    let before = drops(&dp, DropReason::LipExhausted);
    for cport in [40001, 40002] {
        let s = seg(cli, (CIP, cport), (VIP, 80), 1, None, true, &[], b"");
        inject(&env, 0, &[s]);
    }
    let out = collect(&env, 1, 2);
    assert_eq!(out.len(), 1, "only one more connection fits");
    let (_, other, _, _, _, _, _) = parse_tcp(&out[0]);
    assert_ne!(other, lport);
    assert_eq!(drops(&dp, DropReason::LipExhausted), before + 1);
    // The existing connection is unaffected.
    let again = seg(
        cli,
        (CIP, 40000),
        (VIP, 80),
        1020,
        Some(7001),
        false,
        &[],
        b"y",
    );
    inject(&env, 0, &[again]);
    assert_eq!(collect(&env, 1, 1).len(), 1);

    let conns = dp.connections();
    assert_eq!(conns.len(), 2);
    assert!(conns
        .iter()
        .all(|c| c.local.map(|l| l.0) == Some(ip("192.168.0.200"))));
    let t = dp.stats().services[0].traffic;
    assert_eq!((t.conns, t.outpkts), (2, 1));
    dp.stop();
}

#[test]
fn fullnat_without_a_pool_uses_the_dip() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = config(
        Proto::Udp,
        vec![dest("192.168.0.11", 9000, ForwardMode::FullNat)],
    );
    let (dp, mac0, mac1) = start(&env, &desc);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv4(CIP, VIP, 64)
        .udp(5353, 80)
        .write(&mut v, b"ping")
        .unwrap();
    inject(&env, 0, &[v]);
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!()
    };
    assert_eq!(ip4.header().source(), [192, 168, 0, 1], "from the DIP");
    assert_eq!(ip4.header().destination(), RIP);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    let lport = u.source_port();
    let h = ip4.header().to_header();
    assert_eq!(
        u.to_header().checksum,
        u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
    );
    assert_eq!(u.destination_port(), 9000);

    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC, mac1)
        .ipv4(RIP, [192, 168, 0, 1], 64)
        .udp(9000, lport)
        .write(&mut r, b"pong")
        .unwrap();
    inject(&env, 1, &[r]);
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip4.header().source(), ip4.header().destination()),
        (VIP, CIP)
    );
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    assert_eq!((u.source_port(), u.destination_port()), (80, 5353));
    assert_eq!(u.payload(), b"pong");
    dp.stop();
}

/// Sets DF on an Ethernet/IPv4 frame and fixes the header checksum.
fn set_df(f: &mut [u8]) {
    f[14 + 6] |= 0x40;
    f[24] = 0;
    f[25] = 0;
    let mut s: u32 = 0;
    for w in f[14..34].chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
}

#[test]
fn tun_encapsulates_from_the_dip_and_answers_too_big_with_frag_needed() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = config(Proto::Tcp, vec![dest("192.168.0.11", 80, ForwardMode::Tun)]);
    let (dp, mac0, mac1) = start(&env, &desc);

    let mut input = syn(mac0, 40000, b"");
    set_df(&mut input);
    inject(&env, 0, std::slice::from_ref(&input));
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!((&f[0..6], &f[6..12]), (&RS1_MAC[..], &mac1[..]));
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(outer)) = &p.net else {
        panic!()
    };
    let h = outer.header().to_header();
    assert_eq!(
        (h.source, h.destination),
        ([192, 168, 0, 1], RIP),
        "DIP -> RIP"
    );
    assert_eq!(h.protocol, etherparse::IpNumber::IPV4, "IPIP");
    assert!(h.dont_fragment, "DF copied from the inner header");
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(&f[34..], &input[14..], "inner packet untouched");

    // A full-sized DF segment no longer fits once encapsulated: the client
    // gets fragmentation-needed with MTU 1480, quoting its packet.
    let mut big = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv4(CIP, VIP, 64)
        .tcp(40000, 80, 1001, 64000)
        .ack(1)
        .write(&mut big, &[0x61; 1460])
        .unwrap();
    set_df(&mut big);
    let before = drops(&dp, DropReason::FragNeeded);
    inject(&env, 0, std::slice::from_ref(&big));
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1, "ICMP back to the client");
    assert_eq!(&back[0][0..6], &CLIENT_MAC);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip4.header().source(), ip4.header().destination()),
        (VIP, CIP)
    );
    let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
        panic!("icmp")
    };
    assert_eq!(
        i.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1480 }
        )
    );
    assert_eq!(
        &i.payload()[..40],
        &big[14..54],
        "quotes the client's headers"
    );
    assert_eq!(drops(&dp, DropReason::FragNeeded), before + 1);
    assert!(collect(&env, 1, 1).is_empty(), "nothing went to the RS");
    let t = dp.stats().services[0].traffic;
    assert_eq!((t.inpkts, t.outpkts), (1, 0));
    dp.stop();
}
