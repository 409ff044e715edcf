//! DPDK in-process: EAL with `--no-huge --no-pci`, two ring-backed
//! ports, one worker lcore running the real pipeline. Frames go into a port's
//! rx ring; what the worker transmits is read back from the tx rings and
//! checked with etherparse.

use std::time::Duration;

use dataplane::*;

mod common;
use common::{arp, collect, drain, drops, inject, tcp, Env};

const TAG: &str = "t";

fn env() -> &'static std::sync::Mutex<Env> {
    common::env(TAG)
}

fn spec() -> DataplaneSpec {
    common::spec(TAG)
}
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x12];

fn config(sched: &str) -> ConfigDesc {
    let nat = |a: &str| common::dest(a, 8080, ForwardMode::Nat);
    common::config(
        Proto::Tcp,
        sched,
        vec![nat("192.168.0.11"), nat("192.168.0.12")],
    )
}

#[test]
fn arp_for_own_address_is_answered_and_unknown_frames_counted() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let dp = Dataplane::start_with_eal(&spec(), &config("rr")).expect("start");
    let mac0 = dp.stats().ports[0].mac;

    drain(&env); // gratuitous ARPs
    inject(
        &env,
        0,
        &[arp(
            1,
            CLIENT_MAC,
            [10, 0, 0, 2],
            [0; 6],
            [10, 0, 0, 100],
            [0xff; 6],
        )],
    );
    let out = collect(&env, 0, 1);
    assert_eq!(out.len(), 1, "one ARP reply");
    let r = &out[0];
    assert_eq!(&r[0..6], &CLIENT_MAC, "to the asker");
    assert_eq!(&r[6..12], &mac0, "from our port");
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0, 2], "opcode reply");
    assert_eq!(&r[22..28], &mac0, "sender MAC is ours");
    assert_eq!(&r[28..32], &[10, 0, 0, 100], "sender IP is the VIP");
    assert_eq!(&r[32..38], &CLIENT_MAC);
    assert_eq!(&r[38..42], &[10, 0, 0, 2]);

    // Garbage: a truncated frame, an unknown EtherType, a TCP SYN to an unknown port.
    let before_trunc = drops(&dp, DropReason::Truncated);
    let before_et = drops(&dp, DropReason::UnknownEtherType);
    let before_ns = drops(&dp, DropReason::NoService);
    let mut unknown = vec![0u8; 60];
    unknown[12] = 0x88;
    unknown[13] = 0xb5;
    inject(
        &env,
        0,
        &[
            vec![1, 2, 3],
            unknown,
            tcp(
                CLIENT_MAC,
                mac0,
                [10, 0, 0, 2],
                5555,
                [10, 0, 0, 100],
                81,
                true,
                false,
                b"",
            ),
        ],
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(drops(&dp, DropReason::Truncated), before_trunc + 1);
    assert_eq!(drops(&dp, DropReason::UnknownEtherType), before_et + 1);
    assert_eq!(drops(&dp, DropReason::NoService), before_ns + 1);
    assert!(collect(&env, 1, 1).is_empty(), "nothing forwarded");
    dp.stop();
}

#[test]
fn nat_syn_is_rewritten_to_a_real_server_and_the_reply_back_to_the_vip() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let dp = Dataplane::start_with_eal(&spec(), &config("rr")).expect("start");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    drain(&env);
    // The client resolves the VIP first (the director learns the client's MAC).
    inject(
        &env,
        0,
        &[arp(
            1,
            CLIENT_MAC,
            [10, 0, 0, 2],
            [0; 6],
            [10, 0, 0, 100],
            [0xff; 6],
        )],
    );
    assert_eq!(collect(&env, 0, 1).len(), 1);

    // SYN to the VIP: the RS's MAC is unknown, so an ARP request goes out first.
    inject(
        &env,
        0,
        &[tcp(
            CLIENT_MAC,
            mac0,
            [10, 0, 0, 2],
            40000,
            [10, 0, 0, 100],
            80,
            true,
            false,
            b"",
        )],
    );
    let req = collect(&env, 1, 1);
    assert_eq!(req.len(), 1, "ARP request toward the server LAN");
    assert_eq!(&req[0][12..14], &[0x08, 0x06]);
    assert_eq!(&req[0][20..22], &[0, 1]);
    assert_eq!(&req[0][28..32], &[192, 168, 0, 1], "asked from the DIP");
    let target: [u8; 4] = req[0][38..42].try_into().unwrap();
    let rs_mac = if target == [192, 168, 0, 11] {
        RS1_MAC
    } else {
        RS2_MAC
    };
    inject(
        &env,
        1,
        &[arp(2, rs_mac, target, mac1, [192, 168, 0, 1], mac1)],
    );
    let fwd = collect(&env, 1, 1);
    assert_eq!(fwd.len(), 1, "the parked SYN leaves once the RS answered");
    let p = SlicedPacket::from_ethernet(&fwd[0]).expect("parses");
    let eth = p.link.as_ref().unwrap().to_header().unwrap();
    let eth = match eth {
        etherparse::LinkHeader::Ethernet2(e) => e,
        _ => panic!(),
    };
    assert_eq!(eth.destination, rs_mac);
    assert_eq!(eth.source, mac1);
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!("ipv4")
    };
    assert_eq!(
        ip4.header().source(),
        [10, 0, 0, 2],
        "NAT keeps the client address"
    );
    assert_eq!(ip4.header().destination(), target, "to the scheduled RS");
    assert_eq!(ip4.header().ttl(), 63);
    let h = ip4.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IP checksum valid"
    );
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("tcp")
    };
    assert_eq!(t.destination_port(), 8080, "port mapping 80 -> 8080");
    assert_eq!(t.source_port(), 40000);
    let th = t.to_header();
    let csum = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
    assert_eq!(th.checksum, csum, "TCP checksum valid");

    // SYN-ACK from the RS comes back with the VIP as source, to the client's MAC.
    inject(
        &env,
        1,
        &[tcp(
            rs_mac,
            mac1,
            target,
            8080,
            [10, 0, 0, 2],
            40000,
            true,
            true,
            b"",
        )],
    );
    let back = collect(&env, 0, 1);
    assert_eq!(back.len(), 1);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    assert_eq!(&back[0][0..6], &CLIENT_MAC);
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!()
    };
    assert_eq!(
        ip4.header().source(),
        [10, 0, 0, 100],
        "reply source is the VIP"
    );
    assert_eq!(ip4.header().destination(), [10, 0, 0, 2]);
    let h = ip4.header().to_header();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    assert_eq!(t.source_port(), 80);
    assert_eq!(
        t.to_header().checksum,
        t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap()
    );

    let st = dp.stats();
    let svc = &st.services[0];
    assert_eq!(svc.traffic.conns, 1);
    assert_eq!(svc.traffic.inpkts, 1);
    assert_eq!(svc.traffic.outpkts, 1);
    assert_eq!(dp.connections().len(), 1);
    assert_eq!(dp.connections()[0].state, "SYN_RECV");
    dp.stop();
}

#[test]
fn icmp_echo_to_own_address_is_answered() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let dp = Dataplane::start_with_eal(&spec(), &config("rr")).expect("start");
    let mac0 = dp.stats().ports[0].mac;
    drain(&env);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, mac0)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut v, b"ping!")
        .unwrap();
    inject(&env, 0, &[v]);
    let out = collect(&env, 0, 1);
    assert_eq!(out.len(), 1);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!()
    };
    assert_eq!(ip4.header().source(), [10, 0, 0, 1]);
    assert_eq!(ip4.header().destination(), [10, 0, 0, 2]);
    let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
        panic!()
    };
    assert!(matches!(
        i.icmp_type(),
        etherparse::Icmpv4Type::EchoReply(_)
    ));
    assert_eq!(i.payload(), b"ping!");

    dp.stop();
}

/// Several datagrams of two new UDP flows arrive in one burst: the burst's
/// batched lookup misses for all of them, yet each flow gets one connection
/// and all its datagrams reach the same real server (rr would alternate
/// between the two if every datagram had opened a connection of its own).
#[test]
fn a_burst_of_new_flows_opens_one_connection_per_flow() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let nat = |a: &str| common::dest(a, 9000, ForwardMode::Nat);
    let desc = common::config(
        Proto::Udp,
        "rr",
        vec![nat("192.168.0.11"), nat("192.168.0.12")],
    );
    let dp = Dataplane::start_with_eal(&spec(), &desc).expect("start");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    // Both real servers ask for their gateway, the DIP: learned, no parking.
    let ga = |mac, ip| arp(1, mac, ip, [0; 6], [192, 168, 0, 1], [0xff; 6]);
    inject(
        &env,
        1,
        &[
            ga(RS1_MAC, [192, 168, 0, 11]),
            ga(RS2_MAC, [192, 168, 0, 12]),
        ],
    );
    std::thread::sleep(Duration::from_millis(30));
    drain(&env);
    let udp = |sport: u16, i: u8| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, mac0)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 100], 64)
            .udp(sport, 80)
            .write(&mut v, &[i; 10])
            .unwrap();
        v
    };
    let frames: Vec<Vec<u8>> = (0..16u8)
        .map(|i| udp(if i % 2 == 0 { 5000 } else { 5001 }, i))
        .collect();
    inject(&env, 0, &frames);
    let out = collect(&env, 1, 16);
    assert_eq!(out.len(), 16, "every datagram forwarded");
    let mut by_flow = std::collections::BTreeMap::<u16, Vec<[u8; 6]>>::new();
    for f in &out {
        assert_eq!(&f[6..12], &mac1);
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("udp")
        };
        by_flow
            .entry(u.source_port())
            .or_default()
            .push(f[0..6].try_into().unwrap());
    }
    for (port, macs) in &by_flow {
        assert_eq!(macs.len(), 8, "flow {port}");
        assert!(
            macs.iter().all(|m| *m == macs[0]),
            "flow {port} stayed on one server: {macs:?}"
        );
    }
    assert_ne!(by_flow[&5000][0], by_flow[&5001][0], "rr spread the flows");
    assert_eq!(dp.connections().len(), 2, "one connection per flow");
    dp.stop();
}

/// The mbuf's own headroom and tailroom (prepend/adj/append/trim in Rust
/// for a single segment) behave as the byte buffer the core is tested on, and as
/// DPDK's: the packet length follows, a request beyond the room changes nothing.
#[test]
fn mbuf_grows_and_shrinks_at_both_ends_like_a_byte_buffer() {
    use dataplane::wire::{PacketBuf, VecBuf};
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let frame: Vec<u8> = (0..60u8).collect();
    let mut m = env.pool.alloc().expect("mbuf");
    let mut v = VecBuf::new(&frame);
    assert!(m.write_from(&frame));
    let headroom = {
        // Everything the headroom holds, then one byte more: refused, unchanged.
        let mut probe = env.pool.alloc().expect("mbuf");
        assert!(probe.write_from(&frame));
        let mut n = 0;
        while probe.prepend(1).is_some() {
            n += 1;
        }
        assert_eq!(probe.len(), frame.len() + n);
        n
    };
    assert!(
        headroom >= 64,
        "DPDK's default headroom is 128, got {headroom}"
    );
    for (pre, cut) in [(8usize, 0usize), (20, 12), (0, 30)] {
        m.prepend(pre).unwrap().fill(0xaa);
        v.prepend(pre).unwrap().fill(0xaa);
        assert!(m.adj(cut));
        assert!(v.adj(cut));
        assert_eq!(m.data(), v.data());
    }
    for (grow, cut) in [(8usize, 0usize), (2, 6), (0, 10)] {
        m.append(grow).unwrap().fill(0xbb);
        v.append(grow).unwrap().fill(0xbb);
        assert!(m.trim(cut));
        assert!(v.trim(cut));
        assert_eq!(m.data(), v.data());
    }
    let before = m.data().to_vec();
    assert!(m.prepend(4096).is_none());
    assert!(!m.adj(m.len() + 1));
    assert!(m.append(65_535).is_none());
    assert!(!m.trim(m.len() + 1));
    assert_eq!(m.data(), &before[..], "refused requests change nothing");
    // The packet length (what tx_burst sends) follows the data length.
    assert_eq!(m.pkt_len() as usize, m.len());
}

/// A NIC's default kernel interface (`KniMode::Auto`) that cannot be made
/// leaves the port without one and the dataplane running; with `kni = true`
/// (`On`) the same failure stops the start, naming the port.
#[test]
fn a_default_kernel_interface_that_cannot_be_made_is_left_out() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let mut s = spec();
    // Longer than an interface name may be (15 bytes): the TAP cannot exist,
    // and nothing is made in this (the host's) namespace.
    s.ports[1].name = "dpdk1-longer-than-ifnamsiz".into();
    s.ports[1].kni = KniMode::Auto;
    let dp = Dataplane::start_with_eal(&s, &ConfigDesc::default()).expect("starts without it");
    assert_eq!(dp.kni_ports(), Vec::<String>::new());
    assert_eq!(dp.port_names().len(), 2);
    drop(dp);
    s.ports[1].kni = KniMode::On;
    let e = match Dataplane::start_with_eal(&s, &ConfigDesc::default()) {
        Ok(_) => panic!("kni = true without a kernel interface started"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("dpdk1-longer-than-ifnamsiz"), "{e}");
    drain(&env);
}

/// A real server a health check has down is reported as such (the metric
/// `dpvs_dest_inhibited`), with weight 0 for the schedulers.
#[test]
fn stats_report_inhibited_real_servers() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let mut c = config("rr");
    c.services[0].dests[1].inhibited = true;
    let dp = Dataplane::start_with_eal(&spec(), &c).expect("start");
    let d: Vec<(u32, bool)> = dp.stats().services[0]
        .dests
        .iter()
        .map(|d| (d.weight, d.inhibited))
        .collect();
    assert_eq!(d, [(1, false), (0, true)]);
    drop(dp);
    drain(&env);
}
