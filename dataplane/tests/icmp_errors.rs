//! ICMP errors about tracked connections, in-process (DPDK on ring ports, one
//! worker lcore): a connection is opened with a real first packet, then an
//! error quoting what the director sent comes back and the translated frame is
//! compared byte by byte with the one an independent builder (etherparse)
//! makes for what the other side must see.
//!
//! IPv6 is covered at the wire level (`wire::icmp_err` unit tests): the
//! director learns IPv6 neighbours only once NDP exists.

use std::time::Duration;

use dataplane::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, PacketBuilder};

mod common;
use common::{arp, collect, dest, drain, drops, inject, Env};

const TAG: &str = "ie";

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
const CIP: [u8; 4] = [10, 0, 0, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const LIP: [u8; 4] = [192, 168, 0, 200];
const RIP: [u8; 4] = [192, 168, 0, 11];
const ROUTER: [u8; 4] = [192, 168, 0, 254];

fn env() -> &'static std::sync::Mutex<Env> {
    common::env(TAG)
}

/// Starts the dataplane with `desc` (and `ext`), lets the client resolve the
/// VIP and the director learn RS1 (and the router), so forwarding is immediate.
fn start(env: &Env, desc: &ConfigDesc, ext: Option<&ExtDesc>) -> (Dataplane, [u8; 6], [u8; 6]) {
    drain(env);
    let dp = Dataplane::start_with_eal(&common::spec(TAG), desc).expect("start");
    if let Some(ext) = ext {
        dp.apply_ext(desc, ext).expect("ext");
        std::thread::sleep(Duration::from_millis(30));
    }
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    drain(env);
    inject(env, 0, &[arp(1, CLIENT_MAC, CIP, [0; 6], VIP, [0xff; 6])]);
    assert_eq!(collect(env, 0, 1).len(), 1, "ARP reply for the VIP");
    inject(
        env,
        1,
        &[
            // They ask for the DIP (their gateway), as before they answer:
            // what asks the director for its address is learned.
            arp(1, RS1_MAC, RIP, [0; 6], [192, 168, 0, 1], [0xff; 6]),
            arp(1, RS1_MAC, ROUTER, [0; 6], [192, 168, 0, 1], [0xff; 6]),
        ],
    );
    std::thread::sleep(Duration::from_millis(30));
    drain(env);
    (dp, mac0, mac1)
}

/// A TCP SYN (no options, so no MSS clamp) as an IP packet from `src` to `dst`.
fn syn_ip(src: ([u8; 4], u16), dst: ([u8; 4], u16), ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.0, dst.0, ttl)
        .tcp(src.1, dst.1, 1000, 64000)
        .syn()
        .write(&mut v, b"")
        .unwrap();
    v
}

fn synack_ip(src: ([u8; 4], u16), dst: ([u8; 4], u16), ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.0, dst.0, ttl)
        .tcp(src.1, dst.1, 7000, 64000)
        .syn()
        .ack(1001)
        .write(&mut v, b"")
        .unwrap();
    v
}

fn eth(src: [u8; 6], dst: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    f
}

/// An Ethernet/IPv4 ICMP error quoting `quote`.
fn icmp_err(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ty: Icmpv4Type,
    quote: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, ttl)
        .icmpv4(ty)
        .write(&mut v, quote)
        .unwrap();
    v
}

fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    })
}

fn port_unreach() -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port)
}

#[test]
fn nat_frag_needed_from_the_rs_and_from_a_router_reach_the_client() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![dest("192.168.0.11", 8080, ForwardMode::Nat)],
    );
    let (dp, mac0, mac1) = start(&env, &desc, None);

    let syn = syn_ip((CIP, 40000), (VIP, 80), 64);
    inject(&env, 0, &[eth(CLIENT_MAC, mac0, &syn)]);
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1, "SYN forwarded");
    let sent = out[0][14..].to_vec();
    assert_eq!(
        sent,
        syn_ip((CIP, 40000), (RIP, 8080), 63),
        "NAT SYN as sent"
    );

    // The RS says the SYN was too big for it, quoting what it got.
    let from_rs = icmp_err((RS1_MAC, mac1), RIP, CIP, 64, frag_needed(1400), &sent);
    inject(&env, 1, &[from_rs]);
    let got = collect(&env, 0, 1);
    assert_eq!(got.len(), 1, "error delivered to the client");
    // What the client must see: from the VIP, about its own packet to the VIP
    // (with the TTL it had when the director forwarded it), every checksum
    // right (etherparse computes them from scratch).
    let client_view = syn_ip((CIP, 40000), (VIP, 80), 63);
    let want = icmp_err(
        (mac0, CLIENT_MAC),
        VIP,
        CIP,
        63,
        frag_needed(1400),
        &client_view,
    );
    assert_eq!(got[0], want, "translated frame, byte by byte");

    // A router on the server side keeps its own source address.
    let from_router = icmp_err(
        (RS1_MAC, mac1),
        ROUTER,
        CIP,
        64,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        &sent,
    );
    inject(&env, 1, &[from_router]);
    let got = collect(&env, 0, 1);
    assert_eq!(got.len(), 1);
    let want = icmp_err(
        (mac0, CLIENT_MAC),
        ROUTER,
        CIP,
        63,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        &client_view,
    );
    assert_eq!(got[0], want);

    // The client's side: the client says a reply of the connection could not
    // be delivered; the RS gets it about its own reply.
    let synack = synack_ip((RIP, 8080), (CIP, 40000), 64);
    inject(&env, 1, &[eth(RS1_MAC, mac1, &synack)]);
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    let reply_sent = back[0][14..].to_vec();
    assert_eq!(reply_sent, synack_ip((VIP, 80), (CIP, 40000), 63));
    let from_client = icmp_err(
        (CLIENT_MAC, mac0),
        CIP,
        VIP,
        64,
        port_unreach(),
        &reply_sent,
    );
    inject(&env, 0, &[from_client]);
    let got = collect(&env, 1, 1);
    assert_eq!(got.len(), 1, "error delivered to the RS");
    let rs_view = synack_ip((RIP, 8080), (CIP, 40000), 63);
    let want = icmp_err((mac1, RS1_MAC), CIP, RIP, 63, port_unreach(), &rs_view);
    assert_eq!(got[0], want);

    let st = dp.stats();
    let t = st.services[0].traffic;
    assert_eq!((t.inpkts, t.outpkts), (1, 1), "errors are not traffic");
    assert_eq!(dp.connections().len(), 1);
    // The three errors went through translated: the event counts them.
    let translated = dp
        .events()
        .iter()
        .find(|(n, _)| *n == "icmp_translated")
        .map_or(0, |(_, c)| *c);
    assert_eq!(translated, 3, "{:?}", dp.events());
    dp.stop();
}

fn fullnat_ext() -> ExtDesc {
    ExtDesc {
        laddrs: vec![LocalAddrSpec {
            service: ServiceKey {
                proto: Proto::Tcp,
                vip: common::ip("10.0.0.100"),
                vport: 80,
            },
            addr: common::ip("192.168.0.200"),
            port: "dpdk1".into(),
        }],
        proxy_protocol: vec![],
        local_port_range: (5000, 5000),
        synproxy: vec![],
        ..Default::default()
    }
}

#[test]
fn fullnat_errors_are_translated_both_ways() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![dest("192.168.0.11", 8080, ForwardMode::FullNat)],
    );
    let (dp, mac0, mac1) = start(&env, &desc, Some(&fullnat_ext()));

    inject(
        &env,
        0,
        &[eth(CLIENT_MAC, mac0, &syn_ip((CIP, 40000), (VIP, 80), 64))],
    );
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1, "SYN forwarded");
    let sent = out[0][14..].to_vec();
    assert_eq!(sent, syn_ip((LIP, 5000), (RIP, 8080), 63), "FULLNAT SYN");

    // RS -> LIP: frag needed about LIP:5000 -> RIP:8080; the client gets it
    // from the VIP about CIP:40000 -> VIP:80. The MTU is passed on as is.
    let from_rs = icmp_err((RS1_MAC, mac1), RIP, LIP, 64, frag_needed(1300), &sent);
    inject(&env, 1, &[from_rs]);
    let got = collect(&env, 0, 1);
    assert_eq!(got.len(), 1, "error delivered to the client");
    let want = icmp_err(
        (mac0, CLIENT_MAC),
        VIP,
        CIP,
        63,
        frag_needed(1300),
        &syn_ip((CIP, 40000), (VIP, 80), 63),
    );
    assert_eq!(got[0], want, "translated frame, byte by byte");

    // SYN-ACK back to the client, which answers port unreachable about it:
    // the RS gets it from the LIP about RIP:8080 -> LIP:5000.
    inject(
        &env,
        1,
        &[eth(RS1_MAC, mac1, &synack_ip((RIP, 8080), (LIP, 5000), 64))],
    );
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    let reply_sent = back[0][14..].to_vec();
    assert_eq!(reply_sent, synack_ip((VIP, 80), (CIP, 40000), 63));
    let from_client = icmp_err(
        (CLIENT_MAC, mac0),
        CIP,
        VIP,
        64,
        port_unreach(),
        &reply_sent,
    );
    inject(&env, 0, &[from_client]);
    let got = collect(&env, 1, 1);
    assert_eq!(got.len(), 1, "error delivered to the RS");
    let want = icmp_err(
        (mac1, RS1_MAC),
        LIP,
        RIP,
        63,
        port_unreach(),
        &synack_ip((RIP, 8080), (LIP, 5000), 63),
    );
    assert_eq!(got[0], want);
    dp.stop();
}

#[test]
fn unmatched_and_malformed_errors_are_counted_not_forwarded() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let desc = common::config(
        Proto::Udp,
        "rr",
        vec![dest("192.168.0.11", 9000, ForwardMode::Nat)],
    );
    let (dp, mac0, mac1) = start(&env, &desc, None);
    let mut udp = Vec::new();
    PacketBuilder::ipv4(CIP, VIP, 64)
        .udp(5353, 80)
        .write(&mut udp, b"ping")
        .unwrap();
    inject(&env, 0, &[eth(CLIENT_MAC, mac0, &udp)]);
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1);
    let sent = out[0][14..].to_vec();
    let rs = (RS1_MAC, mac1);

    let no_conn_before = drops(&dp, DropReason::IcmpNoConn);
    let bad_before = drops(&dp, DropReason::BadIcmpInner);
    let badl4_before = drops(&dp, DropReason::BadL4);

    // Another client port: no connection.
    let mut other = sent.clone();
    other[20..22].copy_from_slice(&5354u16.to_be_bytes());
    // A quote cut inside the UDP header; one whose IHL says 60 bytes; one
    // whose total length leaves no room for the ports.
    let mut ihl = sent.clone();
    ihl[0] = 0x4f;
    let mut short_total = sent.clone();
    short_total[2..4].copy_from_slice(&22u16.to_be_bytes());
    // A valid quote, but the error goes to someone else than its sender.
    let misaddressed = icmp_err(rs, RIP, [10, 0, 0, 3], 64, port_unreach(), &sent);
    // A bad ICMP checksum.
    let mut corrupt = icmp_err(rs, RIP, CIP, 64, port_unreach(), &sent);
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    inject(
        &env,
        1,
        &[
            icmp_err(rs, RIP, CIP, 64, port_unreach(), &other),
            icmp_err(rs, RIP, CIP, 64, port_unreach(), &sent[..24]),
            icmp_err(rs, RIP, CIP, 64, port_unreach(), &ihl[..28]),
            icmp_err(rs, RIP, CIP, 64, port_unreach(), &short_total),
            misaddressed,
            corrupt,
        ],
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(collect(&env, 0, 1).is_empty(), "nothing reaches the client");
    assert_eq!(drops(&dp, DropReason::IcmpNoConn) - no_conn_before, 1);
    assert_eq!(drops(&dp, DropReason::BadIcmpInner) - bad_before, 4);
    assert_eq!(drops(&dp, DropReason::BadL4) - badl4_before, 1);

    // Echo to the VIP is still the host's: answered.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv4(CIP, VIP, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"hi")
        .unwrap();
    inject(&env, 0, &[ping]);
    let pong = collect(&env, 0, 1);
    assert_eq!(pong.len(), 1, "echo reply");
    assert_eq!(pong[0][14 + 20], 0, "type echo reply");

    // And the good error still goes through after all that.
    inject(
        &env,
        1,
        &[icmp_err(rs, RIP, CIP, 64, port_unreach(), &sent)],
    );
    assert_eq!(collect(&env, 0, 1).len(), 1);
    dp.stop();
}

#[test]
fn dr_and_tun_pass_client_side_errors_to_the_rs_unchanged() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    for mode in [ForwardMode::Dr, ForwardMode::Tun] {
        let desc = common::config(Proto::Tcp, "rr", vec![dest("192.168.0.11", 80, mode)]);
        let (dp, mac0, mac1) = start(&env, &desc, None);
        inject(
            &env,
            0,
            &[eth(CLIENT_MAC, mac0, &syn_ip((CIP, 40000), (VIP, 80), 64))],
        );
        assert_eq!(collect(&env, 1, 1).len(), 1, "{mode:?}: SYN forwarded");

        // The RS answered from the VIP directly; the client's side says that
        // reply could not be delivered. The RS must hear it, quote untouched.
        let reply = synack_ip((VIP, 80), (CIP, 40000), 64);
        let err = icmp_err((CLIENT_MAC, mac0), CIP, VIP, 64, frag_needed(1280), &reply);
        inject(&env, 0, std::slice::from_ref(&err));
        let got = collect(&env, 1, 1);
        assert_eq!(got.len(), 1, "{mode:?}: error passed to the RS");
        let f = &got[0];
        assert_eq!(&f[0..6], &RS1_MAC, "{mode:?}: to the RS");
        match mode {
            ForwardMode::Dr => assert_eq!(&f[12..], &err[12..], "DR: IP packet as it came"),
            _ => {
                assert_eq!(f[14 + 9], 4, "TUN: IPIP");
                assert_eq!(&f[14 + 12..14 + 20], &[192, 168, 0, 1, 192, 168, 0, 11]);
                assert_eq!(&f[34..], &err[14..], "TUN: the error inside, as it came");
            }
        }
        // Server-side errors about DR/TUN flows are not ours to translate.
        let before = drops(&dp, DropReason::Unsupported);
        let about_rs = syn_ip((CIP, 40000), (RIP, 80), 63);
        inject(
            &env,
            1,
            &[icmp_err(
                (RS1_MAC, mac1),
                RIP,
                CIP,
                64,
                port_unreach(),
                &about_rs,
            )],
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(collect(&env, 0, 1).is_empty());
        assert_eq!(
            drops(&dp, DropReason::Unsupported) - before,
            1,
            "{mode:?}: counted"
        );
        dp.stop();
    }
}
