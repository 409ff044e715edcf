//! Malformed and unusual frames, each with its decided outcome: forwarded (to
//! which port, with what) or dropped under exactly one named reason. The
//! kinds are issue 13's list; fragments have their own tests (core/frag.rs),
//! ICMP errors with bogus quotes too (the ICMP tests).

use dataplane::*;

use super::{seen_l4, tcp, Lab, CIP, CLIENT_MAC, MAC0, RIP, VIP};

/// What should become of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent out of the server-side port to the real server.
    ToServer,
    Dropped(DropReason),
}

/// Recomputes the IPv4 header checksum of the header at 14.
fn fix_ip_csum(f: &mut [u8]) {
    let ihl = (usize::from(f[14] & 0xf) * 4).clamp(20, f.len() - 14);
    f[24..26].fill(0);
    let c = dataplane::wire::checksum::checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// A SYN from the client to VIP:80 from client port `p`, edited by `edit`.
fn syn(p: u16, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = tcp(CLIENT_MAC, MAC0, CIP, p, VIP, 80, "S", 1, b"");
    edit(&mut f);
    f
}

/// A TCP segment from client port `p` with flags byte `flags` (valid
/// checksums).
fn with_flags(p: u16, flags: u8) -> Vec<u8> {
    let mut h = etherparse::TcpHeader::new(p, 80, 1, 64000);
    h.fin = flags & 0x01 != 0;
    h.syn = flags & 0x02 != 0;
    h.rst = flags & 0x04 != 0;
    h.psh = flags & 0x08 != 0;
    h.ack = flags & 0x10 != 0;
    h.urg = flags & 0x20 != 0;
    h.ece = flags & 0x40 != 0;
    h.cwr = flags & 0x80 != 0;
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv4(CIP, VIP, 64)
        .tcp_header(h)
        .write(&mut f, b"")
        .unwrap();
    f
}

#[test]
fn every_kind_of_unusual_frame_has_its_decided_outcome() {
    use DropReason::*;
    use Outcome::*;
    let mut port = 20000u16;
    let mut next = || {
        port += 1;
        port
    };
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("shorter than Ethernet", vec![1, 2, 3], Dropped(Truncated)),
        (
            "IPv4 header cut short",
            syn(next(), |f| f.truncate(14 + 10)),
            Dropped(BadIpv4),
        ),
        (
            "IHL 4",
            syn(next(), |f| {
                f[14] = 0x44;
                fix_ip_csum(f)
            }),
            Dropped(BadIpv4),
        ),
        (
            "total length past the frame",
            syn(next(), |f| {
                f[16..18].copy_from_slice(&400u16.to_be_bytes());
                fix_ip_csum(f)
            }),
            Dropped(BadIpv4),
        ),
        (
            "total length below the header",
            syn(next(), |f| {
                f[16..18].copy_from_slice(&12u16.to_be_bytes());
                fix_ip_csum(f)
            }),
            Dropped(BadIpv4),
        ),
        (
            "bad IPv4 header checksum",
            syn(next(), |f| f[24] ^= 0xff),
            Dropped(BadIpv4),
        ),
        (
            "Ethernet padding after the IP end",
            syn(next(), |f| f.extend_from_slice(&[0xee; 20])),
            ToServer,
        ),
        (
            "IPv4 options",
            syn(next(), |f| {
                f.splice(34..34, [1, 1, 1, 0]); // NOP NOP NOP EOL
                f[14] = 0x46;
                let tl = u16::from_be_bytes([f[16], f[17]]) + 4;
                f[16..18].copy_from_slice(&tl.to_be_bytes());
                fix_ip_csum(f)
            }),
            ToServer,
        ),
        (
            "TTL 1",
            syn(next(), |f| {
                f[22] = 1;
                fix_ip_csum(f)
            }),
            Dropped(TtlExceeded),
        ),
        (
            "TTL 0",
            syn(next(), |f| {
                f[22] = 0;
                fix_ip_csum(f)
            }),
            Dropped(TtlExceeded),
        ),
        (
            "bad TCP checksum (passed on, the server decides)",
            syn(next(), |f| f[50] ^= 0xff),
            ToServer,
        ),
        (
            "TCP header cut short",
            syn(next(), |f| {
                f.truncate(34 + 12);
                f[16..18].copy_from_slice(&32u16.to_be_bytes());
                fix_ip_csum(f)
            }),
            Dropped(BadL4),
        ),
        ("SYN+FIN", with_flags(next(), 0x03), Dropped(BadTcpFlags)),
        ("SYN+RST", with_flags(next(), 0x06), Dropped(NoConnection)),
        ("no flags", with_flags(next(), 0x00), Dropped(NoConnection)),
        (
            "every flag",
            with_flags(next(), 0xff),
            Dropped(NoConnection),
        ),
        (
            "data on the SYN",
            tcp(
                CLIENT_MAC,
                MAC0,
                CIP,
                next(),
                VIP,
                80,
                "S",
                1,
                b"early data",
            ),
            ToServer,
        ),
        (
            "VLAN-tagged",
            syn(next(), |f| {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
            }),
            Dropped(UnknownEtherType),
        ),
        (
            "over the egress MTU",
            tcp(CLIENT_MAC, MAC0, CIP, next(), VIP, 80, "S", 1, &[7; 1600]),
            Dropped(OverMtu),
        ),
        (
            "for another host's MAC",
            syn(next(), |f| f[5] ^= 0x40),
            Dropped(OtherMac),
        ),
        (
            "IPv6 with an extension chain, for nobody",
            {
                let mut f = Vec::new();
                etherparse::PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
                    .ipv6([0xfd; 16], [0xfe; 16], 64)
                    .tcp(1, 80, 1, 100)
                    .syn()
                    .write(&mut f, b"")
                    .unwrap();
                // Hop-by-hop and destination options (8 bytes each, padding).
                let nh = f[20];
                f[20] = 0;
                f.splice(54..54, [60, 0, 1, 4, 0, 0, 0, 0, nh, 0, 1, 4, 0, 0, 0, 0]);
                let pl = u16::from_be_bytes([f[18], f[19]]) + 16;
                f[18..20].copy_from_slice(&pl.to_be_bytes());
                f
            },
            Dropped(NotForUs),
        ),
    ];
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let mut wrong = Vec::new();
    for (what, f, want) in cases {
        let before: Vec<u64> = DropReason::ALL.iter().map(|&r| lab.drops(r)).collect();
        let out = lab.rx(0, &[f]);
        let moved: Vec<DropReason> = DropReason::ALL
            .iter()
            .zip(&before)
            .filter(|&(&r, &b)| lab.drops(r) != b)
            .map(|(&r, _)| r)
            .collect();
        let to_server: Vec<_> = out.iter().filter(|(p, _)| *p == 1).collect();
        let got = match (to_server.as_slice(), moved.as_slice()) {
            ([(_, frame)], []) => {
                let s = seen_l4(frame, false);
                assert_eq!((s.dst, s.dport), (RIP, 8080), "{what}: to the real server");
                ToServer
            }
            ([], [r]) => {
                let i = DropReason::ALL.iter().position(|x| x == r).unwrap();
                assert_eq!(lab.drops(*r), before[i] + 1, "{what}: counted once");
                Dropped(*r)
            }
            (sent, reasons) => panic!(
                "{what}: {} frames to the server, drops {reasons:?}",
                sent.len()
            ),
        };
        if got != want {
            wrong.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
