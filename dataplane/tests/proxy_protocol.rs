//! FULLNAT with Proxy Protocol in-process (DPDK on ring ports, one worker):
//! the header on the wire toward the real server, the MSS, the shifted
//! sequence / acknowledgement numbers, the event counter, and a new
//! connection that reuses a tracked tuple starting a fresh shift.

use std::time::Duration;

use dataplane::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

mod common;
use common::{arp, collect, dest, drain, inject, ip, Env};

const TAG: &str = "pp";
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
const CIP: [u8; 4] = [10, 0, 0, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const LIP: [u8; 4] = [192, 168, 0, 200];
const RIP: [u8; 4] = [192, 168, 0, 11];
const HEADER: &[u8] = b"PROXY TCP4 10.0.0.2 10.0.0.100 40000 80\r\n";

fn env() -> &'static std::sync::Mutex<Env> {
    common::env(TAG)
}

struct Seg<'a> {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    opts: &'a [TcpOptionElement],
    payload: &'a [u8],
}

fn frame(macs: ([u8; 6], [u8; 6]), src: ([u8; 4], u16), dst: ([u8; 4], u16), s: &Seg) -> Vec<u8> {
    let mut h = etherparse::TcpHeader::new(src.1, dst.1, s.seq, 64000);
    h.syn = s.syn;
    if let Some(a) = s.ack {
        h.ack = true;
        h.acknowledgment_number = a;
    }
    h.set_options(s.opts).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .tcp_header(h)
        .write(&mut v, s.payload)
        .unwrap();
    v
}

/// What the worker sent, checked (IP and TCP checksums) and taken apart.
struct Out {
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    opts: Vec<u8>,
    payload: Vec<u8>,
}

fn parse(f: &[u8]) -> Out {
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
    Out {
        src: h.source,
        sport: th.source_port,
        dst: h.destination,
        dport: th.destination_port,
        seq: th.sequence_number,
        ack: th.acknowledgment_number,
        opts: th.options.as_slice().to_vec(),
        payload: t.payload().to_vec(),
    }
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

fn one(env: &Env, port: usize) -> Out {
    let out = collect(env, port, 1);
    assert_eq!(out.len(), 1, "one frame out of port {port}");
    parse(&out[0])
}

#[test]
fn header_on_the_handshake_ack_and_shifted_numbers_after() {
    use TcpOptionElement::{MaximumSegmentSize, Noop, Timestamp};
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![dest("192.168.0.11", 8080, ForwardMode::FullNat)],
    );
    drain(&env);
    let dp = Dataplane::start_with_eal(&common::spec(TAG), &desc).expect("start");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    let ext = ExtDesc {
        laddrs: vec![LocalAddrSpec {
            service: key,
            addr: ip("192.168.0.200"),
            port: "dpdk1".into(),
        }],
        proxy_protocol: vec![(key, ProxyProtocol::V1)],
        ..ExtDesc::default()
    };
    dp.apply_ext(&desc, &ext).expect("ext");
    std::thread::sleep(Duration::from_millis(30));
    drain(&env);
    inject(&env, 0, &[arp(1, CLIENT_MAC, CIP, [0; 6], VIP, [0xff; 6])]);
    assert_eq!(collect(&env, 0, 1).len(), 1, "ARP reply for the VIP");
    // RS1 asks for its gateway, the DIP: the director learns its MAC.
    inject(
        &env,
        1,
        &[arp(1, RS1_MAC, RIP, [0; 6], [192, 168, 0, 1], [0xff; 6])],
    );
    std::thread::sleep(Duration::from_millis(30));
    drain(&env);

    let cli = (CLIENT_MAC, mac0);
    let rs = (RS1_MAC, mac1);
    let c = |s: &Seg| frame(cli, (CIP, 40000), (VIP, 80), s);
    let len = HEADER.len() as u32;

    // SYN: not clamped (no TOA, server -> client segments do not grow).
    let mss = [MaximumSegmentSize(1460)];
    inject(
        &env,
        0,
        &[c(&Seg {
            seq: 1000,
            ack: None,
            syn: true,
            opts: &mss,
            payload: b"",
        })],
    );
    let o = one(&env, 1);
    assert_eq!((o.src, o.dst, o.dport, o.seq), (LIP, RIP, 8080, 1000));
    assert_eq!(mss_of(&o.opts), Some(1460));
    let lport = o.sport;
    let r = |s: &Seg| frame(rs, (RIP, 8080), (LIP, lport), s);

    // SYN-ACK: MSS lowered by the header length.
    inject(
        &env,
        1,
        &[r(&Seg {
            seq: 7000,
            ack: Some(1001),
            syn: true,
            opts: &mss,
            payload: b"",
        })],
    );
    let o = one(&env, 0);
    assert_eq!(
        (o.src, o.sport, o.dst, o.dport, o.ack),
        (VIP, 80, CIP, 40000, 1001)
    );
    assert_eq!(mss_of(&o.opts), Some(1460 - len as u16));

    // Handshake ACK: becomes a data segment carrying the header, no TOA.
    let ts = [Noop, Noop, Timestamp(1, 2)];
    let ack = c(&Seg {
        seq: 1001,
        ack: Some(7001),
        syn: false,
        opts: &ts,
        payload: b"",
    });
    inject(&env, 0, std::slice::from_ref(&ack));
    let o = one(&env, 1);
    assert_eq!(
        (o.src, o.sport, o.dst, o.seq, o.ack),
        (LIP, lport, RIP, 1001, 7001)
    );
    assert_eq!(
        o.opts,
        ack[54..66].to_vec(),
        "options as the client sent them"
    );
    assert_eq!(o.payload, HEADER);

    // First data before the server's ACK: the header again, same place.
    let get = b"GET / HTTP/1.0\r\n\r\n";
    inject(
        &env,
        0,
        &[c(&Seg {
            seq: 1001,
            ack: Some(7001),
            syn: false,
            opts: &[],
            payload: get,
        })],
    );
    let o = one(&env, 1);
    assert_eq!(o.seq, 1001);
    assert_eq!(o.payload, [HEADER, &get[..]].concat());

    // The server acks header + request and answers: the client sees its own numbers.
    let ack_rs = 1001 + len + get.len() as u32;
    inject(
        &env,
        1,
        &[r(&Seg {
            seq: 7001,
            ack: Some(ack_rs),
            syn: false,
            opts: &[],
            payload: b"HTTP/1.0 200 OK\r\n\r\n",
        })],
    );
    let o = one(&env, 0);
    assert_eq!((o.seq, o.ack), (7001, 1001 + get.len() as u32));
    assert_eq!(o.payload, b"HTTP/1.0 200 OK\r\n\r\n");

    // A retransmission of the request now is only shifted; later data too.
    inject(
        &env,
        0,
        &[
            c(&Seg {
                seq: 1001,
                ack: Some(7020),
                syn: false,
                opts: &[],
                payload: get,
            }),
            c(&Seg {
                seq: 1019,
                ack: Some(7020),
                syn: false,
                opts: &[],
                payload: b"x",
            }),
        ],
    );
    let out = collect(&env, 1, 2);
    assert_eq!(out.len(), 2);
    let (a, b) = (parse(&out[0]), parse(&out[1]));
    assert_eq!((a.seq, a.payload.as_slice()), (1001 + len, &get[..]));
    assert_eq!(
        (b.seq, b.ack, b.payload.as_slice()),
        (1019 + len, 7020, &b"x"[..])
    );
    assert_eq!(event(&dp, "proxy_protocol_sent"), 1, "once per connection");
    assert_eq!(event(&dp, "toa_inserted"), 0);

    // The client reuses the tuple for a new connection (new ISN): a fresh
    // header at its ISN + 1, not the old shift.
    inject(
        &env,
        0,
        &[c(&Seg {
            seq: 50000,
            ack: None,
            syn: true,
            opts: &mss,
            payload: b"",
        })],
    );
    let o = one(&env, 1);
    assert_eq!((o.sport, o.seq), (lport, 50000));
    inject(
        &env,
        1,
        &[r(&Seg {
            seq: 9000,
            ack: Some(50001),
            syn: true,
            opts: &mss,
            payload: b"",
        })],
    );
    assert_eq!(one(&env, 0).ack, 50001);
    inject(
        &env,
        0,
        &[c(&Seg {
            seq: 50001,
            ack: Some(9001),
            syn: false,
            opts: &[],
            payload: b"",
        })],
    );
    let o = one(&env, 1);
    assert_eq!((o.seq, o.payload.as_slice()), (50001, HEADER));
    assert_eq!(event(&dp, "proxy_protocol_sent"), 2);
    dp.stop();
}
