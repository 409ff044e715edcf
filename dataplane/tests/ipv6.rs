//! IPv6 in-process (DPDK on ring ports, one worker lcore): neighbour discovery
//! for own addresses and next hops, ICMPv6 echo, NAT66 through an unresolved
//! next hop, TUN6 encapsulation and packet-too-big, as a user sees them on the
//! wire, re-parsed with etherparse.
//!
//! Same harness as `rings.rs` and `modes.rs` (its own process, EAL and rings).

use std::net::Ipv6Addr;

use dataplane::wire::ndp;
use dataplane::wire::MacAddr;
use dataplane::*;

mod common;
use common::{collect, dest, drain, drops, inject, ip, Env};

use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const TAG: &str = "six";

fn env() -> &'static std::sync::Mutex<Env> {
    common::env(TAG)
}

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
const CIP: &str = "fd00:10::2";
const DIP_C: &str = "fd00:10::1";
const VIP: &str = "fd00:10::100";
const DIP: &str = "fd00:192::1";
const RIP: &str = "fd00:192::11";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn addr(port: &str, a: &str, len: u8) -> AddrSpec {
    AddrSpec {
        port: port.into(),
        addr: ip(a),
        prefix_len: len,
    }
}

/// `[VIP]:80/tcp` to `[RIP]:80` in `mode`; DIPs fd00:10::1/64 and fd00:192::1/64.
fn config(mode: ForwardMode) -> ConfigDesc {
    ConfigDesc {
        services: vec![ServiceSpec {
            key: ServiceKey {
                proto: Proto::Tcp,
                vip: ip(VIP),
                vport: 80,
            },
            scheduler: "rr".into(),
            sched_flags: vec![],
            persistence: None,
            conn_timeout_s: None,
            ops: false,
            dests: vec![dest(RIP, 80, mode)],
        }],
        addrs: vec![
            addr("dpdk0", DIP_C, 64),
            addr("dpdk0", VIP, 128),
            addr("dpdk1", DIP, 64),
        ],
        routes: vec![],
    }
}

/// A multicast NS from `(mac, src)` for `target` (built by the wire module,
/// whose bytes the unit tests check against etherparse).
fn solicit(mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let mut f = vec![0u8; ndp::FRAME_LEN];
    let n = ndp::build_solicit(&mut f, MacAddr(mac), v6(src), v6(target));
    f.truncate(n);
    f
}

/// The ICMPv6 type, target address and link-layer option of an NDP frame,
/// after checking its checksum and hop limit with etherparse.
fn ndp_of(f: &[u8]) -> (u8, Ipv6Addr, Ipv6Addr, Ipv6Addr, u8, [u8; 6]) {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv6(ip6)) = &p.net else {
        panic!("ipv6")
    };
    let h = ip6.header();
    assert_eq!(h.hop_limit(), 255, "NDP hop limit");
    let Some(TransportSlice::Icmpv6(i)) = &p.transport else {
        panic!("icmpv6")
    };
    let (src, dst) = (h.source(), h.destination());
    let expect = i.icmp_type().calc_checksum(src, dst, i.payload()).unwrap();
    assert_eq!(i.checksum(), expect, "ICMPv6 checksum");
    let b = i.slice();
    let mut t = [0u8; 16];
    t.copy_from_slice(&b[8..24]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[26..32]);
    (b[0], src.into(), dst.into(), t.into(), b[4], mac)
}

/// (port index, target) of the advertisements seen on start-up.
type Announced = Vec<(usize, Ipv6Addr)>;

/// Starts the dataplane; returns it and the two port MACs, with the
/// unsolicited advertisements it sent on start-up.
fn start(env: &Env, desc: &ConfigDesc) -> (Dataplane, [u8; 6], [u8; 6], Announced) {
    drain(env);
    let dp = Dataplane::start_with_eal(&common::spec(TAG), desc).expect("start");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    let mut announced = Vec::new();
    for (port, n, mac) in [(0, 2, mac0), (1, 1, mac1)] {
        for f in collect(env, port, n) {
            assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1], "to all nodes");
            let (ty, src, dst, target, flags, ll) = ndp_of(&f);
            assert_eq!((ty, dst, flags), (136, ndp::ALL_NODES, ndp::flag::OVERRIDE));
            assert_eq!((src, ll), (target, mac), "our address at our MAC");
            announced.push((port, target));
        }
    }
    drain(env);
    (dp, mac0, mac1, announced)
}

#[test]
fn ndp_for_own_addresses_and_nat66_through_a_solicited_next_hop() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let (dp, mac0, mac1, mut announced) = start(&env, &config(ForwardMode::Nat));
    announced.sort();
    assert_eq!(
        announced,
        vec![(0, v6(DIP_C)), (0, v6(VIP)), (1, v6(DIP))],
        "unsolicited NA for every address"
    );

    // The client asks for the VIP: a solicited advertisement comes back to it.
    inject(&env, 0, &[solicit(CLIENT_MAC, CIP, VIP)]);
    let out = collect(&env, 0, 1);
    assert_eq!(out.len(), 1, "NA for the VIP");
    assert_eq!((&out[0][..6], &out[0][6..12]), (&CLIENT_MAC[..], &mac0[..]));
    let (ty, src, dst, target, flags, ll) = ndp_of(&out[0]);
    assert_eq!((ty, src, dst, target), (136, v6(VIP), v6(CIP), v6(VIP)));
    assert_eq!(flags, ndp::flag::SOLICITED | ndp::flag::OVERRIDE);
    assert_eq!(ll, mac0);

    // Invalid (hop limit 64) or not ours: no answer, one counter each.
    let (bad0, nfu0) = (
        drops(&dp, DropReason::BadNdp),
        drops(&dp, DropReason::NotForUs),
    );
    let mut forged = solicit(CLIENT_MAC, CIP, VIP);
    forged[21] = 64;
    inject(&env, 0, &[forged, solicit(CLIENT_MAC, CIP, "fd00:10::99")]);
    assert!(collect(&env, 0, 1).is_empty(), "neither is answered");
    assert_eq!(drops(&dp, DropReason::BadNdp), bad0 + 1);
    assert_eq!(drops(&dp, DropReason::NotForUs), nfu0 + 1);

    // A SYN to the VIP: the RS is unknown, so the SYN waits and a
    // solicitation for the RIP goes out of the server-side port.
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv6(v6(CIP).octets(), v6(VIP).octets(), 64)
        .tcp(40000, 80, 1000, 64000)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    inject(&env, 0, &[syn]);
    let ns = collect(&env, 1, 1);
    assert_eq!(ns.len(), 1, "NS for the RIP");
    assert_eq!(
        &ns[0][..6],
        &[0x33, 0x33, 0xff, 0, 0, 0x11],
        "solicited-node MAC"
    );
    let (ty, src, dst, target, _, ll) = ndp_of(&ns[0]);
    assert_eq!((ty, src, target, ll), (135, v6(DIP), v6(RIP), mac1));
    assert_eq!(dst, v6("ff02::1:ff00:11"));

    // The RS answers; the parked SYN leaves, NAT66-rewritten, to its MAC.
    let mut na = vec![0u8; ndp::FRAME_LEN];
    let flags = ndp::flag::SOLICITED | ndp::flag::OVERRIDE;
    ndp::build_advert(
        &mut na,
        MacAddr(RS1_MAC),
        v6(RIP),
        v6(DIP),
        MacAddr(mac1),
        flags,
    );
    inject(&env, 1, &[na]);
    let fwd = collect(&env, 1, 1);
    assert_eq!(fwd.len(), 1, "SYN forwarded once the RS is resolved");
    assert_eq!((&fwd[0][..6], &fwd[0][6..12]), (&RS1_MAC[..], &mac1[..]));
    let p = SlicedPacket::from_ethernet(&fwd[0]).unwrap();
    let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport) else {
        panic!("ipv6 tcp")
    };
    let h = ip6.header().to_header();
    assert_eq!(
        (h.source, h.destination),
        (v6(CIP).octets(), v6(RIP).octets())
    );
    assert_eq!(h.hop_limit, 63);
    assert_eq!(t.destination_port(), 80);
    let th = t.to_header();
    assert_eq!(th.checksum, th.calc_checksum_ipv6(&h, t.payload()).unwrap());

    // The SYN-ACK goes back from the VIP to the client's MAC, learned from its NS.
    let mut synack = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC, mac1)
        .ipv6(v6(RIP).octets(), v6(CIP).octets(), 64)
        .tcp(80, 40000, 5000, 64000)
        .syn()
        .ack(1001)
        .write(&mut synack, b"")
        .unwrap();
    inject(&env, 1, &[synack]);
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0][..6], &CLIENT_MAC);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport) else {
        panic!("ipv6 tcp")
    };
    let h = ip6.header().to_header();
    assert_eq!(
        (h.source, h.destination),
        (v6(VIP).octets(), v6(CIP).octets())
    );
    let th = t.to_header();
    assert_eq!(th.checksum, th.calc_checksum_ipv6(&h, t.payload()).unwrap());
    let tr = dp.stats().services[0].traffic;
    assert_eq!((tr.conns, tr.inpkts, tr.outpkts), (1, 1, 1));
    dp.stop();
}

#[test]
fn echo6_for_own_addresses_only() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let (dp, mac0, _, _) = start(&env, &config(ForwardMode::Nat));
    let ping = |dst: &str| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, mac0)
            .ipv6(v6(CIP).octets(), v6(dst).octets(), 64)
            .icmpv6_echo_request(7, 1)
            .write(&mut f, b"ping six")
            .unwrap();
        f
    };
    for dst in [VIP, DIP_C] {
        inject(&env, 0, &[ping(dst)]);
        let out = collect(&env, 0, 1);
        assert_eq!(out.len(), 1, "echo reply from {dst}");
        assert_eq!(&out[0][..6], &CLIENT_MAC);
        let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
        let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Icmpv6(i))) = (&p.net, &p.transport)
        else {
            panic!()
        };
        let h = ip6.header();
        assert_eq!(
            (h.source(), h.destination()),
            (v6(dst).octets(), v6(CIP).octets())
        );
        assert_eq!(
            i.icmp_type(),
            Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 7, seq: 1 })
        );
        assert_eq!(i.payload(), b"ping six");
        let c = i
            .icmp_type()
            .calc_checksum(h.source(), h.destination(), i.payload());
        assert_eq!(i.checksum(), c.unwrap());
    }
    let nfu = drops(&dp, DropReason::NotForUs);
    inject(&env, 0, &[ping("fd00:10::77")]);
    assert!(collect(&env, 0, 1).is_empty(), "not ours: no reply");
    assert_eq!(drops(&dp, DropReason::NotForUs), nfu + 1);
    dp.stop();
}

#[test]
fn tun6_encapsulates_from_the_dip6_and_answers_too_big_with_packet_too_big() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let (dp, mac0, mac1, _) = start(&env, &config(ForwardMode::Tun));
    // The client is known from its solicitation for the VIP.
    inject(&env, 0, &[solicit(CLIENT_MAC, CIP, VIP)]);
    assert_eq!(collect(&env, 0, 1).len(), 1);
    // An unsolicited advertisement from the RS is not learned (as Linux):
    // the first packet to it asks, and its answer is.
    let advert = || {
        let mut na = vec![0u8; ndp::FRAME_LEN];
        let all = ndp::ALL_NODES;
        ndp::build_advert(
            &mut na,
            MacAddr(RS1_MAC),
            v6(RIP),
            all,
            ndp::multicast_mac(all),
            0x20,
        );
        na
    };
    inject(&env, 1, &[advert()]);
    std::thread::sleep(std::time::Duration::from_millis(30));

    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv6(v6(CIP).octets(), v6(VIP).octets(), 64)
        .tcp(40000, 80, 1000, 64000)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    inject(&env, 0, std::slice::from_ref(&syn));
    let ns = collect(&env, 1, 1);
    assert_eq!(ns.len(), 1, "a solicitation for the RS");
    assert_eq!(
        &ns[0][0..3],
        &[0x33, 0x33, 0xff],
        "to its solicited-node group"
    );
    inject(&env, 1, &[advert()]);
    let out = collect(&env, 1, 1);
    assert_eq!(out.len(), 1, "encapsulated SYN to the RS");
    let f = &out[0];
    assert_eq!((&f[0..6], &f[6..12]), (&RS1_MAC[..], &mac1[..]));
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv6(outer)) = &p.net else {
        panic!()
    };
    let h = outer.header().to_header();
    assert_eq!(
        (h.source, h.destination),
        (v6(DIP).octets(), v6(RIP).octets())
    );
    assert_eq!(h.next_header, etherparse::IpNumber::IPV6, "IPv6-in-IPv6");
    assert_eq!(&f[54..], &syn[14..], "inner packet untouched");

    // 1500 bytes of IPv6 do not fit once 40 bytes are added on a 1500 link.
    let mut big = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv6(v6(CIP).octets(), v6(VIP).octets(), 64)
        .tcp(40000, 80, 1001, 64000)
        .ack(1)
        .write(&mut big, &[0x61; 1440])
        .unwrap();
    assert_eq!(big.len(), 14 + 1500);
    let before = drops(&dp, DropReason::FragNeeded);
    inject(&env, 0, std::slice::from_ref(&big));
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1, "packet-too-big back to the client");
    assert_eq!(&back[0][..6], &CLIENT_MAC);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Icmpv6(i))) = (&p.net, &p.transport)
    else {
        panic!()
    };
    let hh = ip6.header();
    assert_eq!(
        (hh.source(), hh.destination()),
        (v6(VIP).octets(), v6(CIP).octets())
    );
    assert_eq!(i.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1460 });
    assert_eq!(
        &i.payload()[..60],
        &big[14..74],
        "quotes the client's headers"
    );
    let c = i
        .icmp_type()
        .calc_checksum(hh.source(), hh.destination(), i.payload());
    assert_eq!(i.checksum(), c.unwrap());
    assert_eq!(drops(&dp, DropReason::FragNeeded), before + 1);
    assert!(collect(&env, 1, 1).is_empty(), "nothing went to the RS");
    dp.stop();
}
