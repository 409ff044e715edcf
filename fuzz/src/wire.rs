//! The `wire` target: the parsers and rewriters of `dataplane::wire` called
//! directly, with parameters the input picks, on any frame the classifier
//! accepts. Faster than the whole core, and it checks each rewriter alone:
//! a packet that was valid stays valid (it classifies again, its IPv4 header
//! checksum is right, a right L4 checksum stays right).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::wire::icmp_err::{self, Translation};
use dataplane::wire::{
    classify_rx, ip_proto, ipip, nat, nat64, ndp, toa, IpFamily, IpMeta, Packet, PacketBuf, VecBuf,
};

use crate::check::facts;

/// Unicast addresses the rewrites put in (the classifier refuses others as
/// sources or destinations, so a rewrite to one would not classify again).
const V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 0, 0, 100),
    Ipv4Addr::new(192, 168, 0, 200),
    Ipv4Addr::new(1, 0, 0, 1),
    Ipv4Addr::new(223, 255, 255, 254),
];

const V6: [Ipv6Addr; 4] = [
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x100),
    Ipv6Addr::new(0xfd00, 0x192, 0, 0, 0, 0, 0, 0x200),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(
        0xfeff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe,
    ),
];

/// `[selector][frame ...]`: bit 0 says the NIC verified the IPv4 checksum;
/// bits 1-2 and 3-4 pick addresses; bits 5-7 the port numbers and MTU.
pub fn run(data: &[u8]) {
    let [sel, frame @ ..] = data else { return };
    let sel = *sel;
    let Ok(Packet::Ip(meta)) = classify_rx(frame, sel & 1 != 0) else {
        return;
    };
    let a = usize::from(sel >> 1) & 3;
    let b = usize::from(sel >> 3) & 3;
    let port = [0u16, 1, 80, 65535][usize::from(sel >> 5) & 3];
    let mtu = [1500usize, 68, 1280, 9000][usize::from(sel >> 6) & 3];
    let (src, dst) = match meta.family {
        IpFamily::V4 => (IpAddr::V4(V4[a]), IpAddr::V4(V4[b])),
        IpFamily::V6 => (IpAddr::V6(V6[a]), IpAddr::V6(V6[b])),
    };
    let mut before = facts(frame);
    // etherparse walks through an IPv6 AH to the transport behind it; the
    // director stops at AH (protocol 51: no ports, no L4 checksum of its
    // own to keep, and NAT breaks AH's integrity check anyway). Only a
    // transport both see is held to its checksum (found by this target:
    // IPv6, AH, then TCP).
    if let Some(b) = before.as_mut().filter(|b| b.proto != meta.proto) {
        b.l4_ok = None;
    }
    // The NIC vouched for a header checksum that is wrong: it stays wrong.
    let trust = sel & 1 != 0 && !before.is_some_and(|b| b.ip_csum_ok);
    let still_valid = |f: &[u8], what: &str| still_valid(f, before, trust, what);
    let l3 = meta.l3_off;

    // NAT rewrites and the TTL.
    let mut f = frame.to_vec();
    if nat::rewrite_both(&mut f[l3..], &meta, src, port, dst, port.wrapping_add(1)).is_ok() {
        still_valid(&f, "nat::rewrite_both");
    }
    let mut f = frame.to_vec();
    if nat::dec_ttl(&mut f[l3..], &meta).is_ok() {
        still_valid(&f, "nat::dec_ttl");
    }
    // What xmit does: both ends and the TTL in one pass.
    let mut f = frame.to_vec();
    let (s, d) = (Some((src, port)), Some((dst, port.wrapping_add(1))));
    if nat::rewrite_fwd(&mut f[l3..], &meta, s, d).is_ok() {
        still_valid(&f, "nat::rewrite_fwd");
    }

    match meta.proto {
        ip_proto::TCP => {
            let mut m = meta;
            let mut buf = VecBuf::new(frame);
            if let toa::Outcome::Inserted(_) = toa::insert(&mut buf, &mut m, src, port, mtu) {
                still_valid(buf.data(), "toa::insert");
                assert!(
                    m.ip_len() <= mtu.max(meta.ip_len()),
                    "toa::insert grew past the MTU"
                );
            }
            let mut f = frame.to_vec();
            if let Some(seg) = f.get_mut(meta.l4_off..meta.l3_end()) {
                if toa::clamp_mss(seg, port) {
                    still_valid(&f, "toa::clamp_mss");
                }
            }
            if let (IpAddr::V4(s4), IpAddr::V4(d4)) = (src, dst) {
                fnat_one_pass(frame, &meta, (s4, d4, port), mtu, &still_valid);
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => icmp(frame, &meta, (src, dst, port), &still_valid),
        _ => {}
    }

    // FULLNAT64 both ways, and the tunnels.
    let mut buf = VecBuf::new(frame);
    let v4 = (V4[a], V4[b]);
    let v6 = (V6[a], V6[b]);
    let done = match meta.family {
        IpFamily::V6 => nat64::v6_to_v4(&mut buf, &meta, v4.0, port, v4.1, port).map(|_| ()),
        IpFamily::V4 => nat64::v4_to_v6(&mut buf, &meta, v6.0, port, v6.1, port).map(|_| ()),
    };
    if done.is_ok() {
        still_valid(buf.data(), "nat64");
    }
    let mut buf = VecBuf::new(frame);
    if ipip::encap_ipip(&mut buf, &meta, v4.0, v4.1, port).is_ok() {
        assert!(
            facts(buf.data()).is_some_and(|x| x.ip_csum_ok),
            "ipip: outer header"
        );
    }
    // TUN's one pass: the same bytes as the checked encapsulation (the
    // outer identification from the inner header), or nothing changed.
    let mut buf = VecBuf::new(frame);
    if ipip::encap_ipip_v4(&mut buf, &meta, v4.0.octets(), v4.1.octets(), mtu).is_some() {
        let ident = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
        let mut want = VecBuf::new(frame);
        assert!(
            ipip::encap_ipip(&mut want, &meta, v4.0, v4.1, ident).is_ok(),
            "ipip::encap_ipip_v4 took a packet encap_ipip refuses"
        );
        assert_eq!(buf.data(), want.data(), "ipip::encap_ipip_v4");
    } else {
        assert_eq!(
            buf.data(),
            frame,
            "ipip::encap_ipip_v4 declined but changed"
        );
    }
    let mut buf = VecBuf::new(frame);
    if ipip::encap_ip6(&mut buf, &meta, v6.0, v6.1).is_ok() {
        assert!(facts(buf.data()).is_some(), "ip6 tunnel: outer header");
    }
}

/// FULLNAT's one pass (`nat::fnat_v4`), with TOA due and not: the same
/// bytes as `toa::insert` (when due) then `nat::rewrite_fwd_v4`, or nothing
/// changed.
fn fnat_one_pass(
    frame: &[u8],
    meta: &IpMeta,
    (s4, d4, port): (Ipv4Addr, Ipv4Addr, u16),
    mtu: usize,
    still_valid: &dyn Fn(&[u8], &str),
) {
    let Some(seq) = frame
        .get(meta.l4_off + 4..meta.l4_off + 8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return;
    };
    let (src, dst) = ((s4.octets(), port), (d4.octets(), port.wrapping_add(1)));
    let client = (V4[0].octets(), port);
    for first in [None, Some(seq)] {
        let mut got = VecBuf::new(frame);
        let done = nat::fnat_v4(&mut got, meta, first, client, src, dst, mtu);
        let Some(done) = done else {
            assert_eq!(got.data(), frame, "nat::fnat_v4 declined but changed");
            continue;
        };
        still_valid(got.data(), "nat::fnat_v4");
        let mut want = VecBuf::new(frame);
        let mut m = *meta;
        if done == nat::FnatIn::Toa {
            let ins = toa::insert(&mut want, &mut m, IpAddr::V4(V4[0]), port, mtu);
            assert_eq!(ins, toa::Outcome::Inserted(8), "nat::fnat_v4: TOA");
        }
        let l3 = m.l3_off;
        assert!(
            nat::rewrite_fwd_v4(&mut want.data_mut()[l3..], &m, src, dst).is_ok(),
            "nat::fnat_v4 took a segment rewrite_fwd_v4 refuses"
        );
        assert_eq!(got.data(), want.data(), "nat::fnat_v4 ({done:?})");
    }
}

/// ICMP errors (parse, translate) and neighbour discovery.
fn icmp(
    frame: &[u8],
    meta: &IpMeta,
    (src, dst, port): (IpAddr, IpAddr, u16),
    still_valid: &dyn Fn(&[u8], &str),
) {
    if meta.family == IpFamily::V6 {
        let _ = ndp::parse(&frame[meta.l3_off..], meta.l4_rel());
    }
    if !icmp_err::is_error(meta.family, meta.icmp_type) {
        return;
    }
    let Ok(e) = icmp_err::parse(frame, meta) else {
        return;
    };
    let _ = (e.quoted_len(), e.quoted_seq(frame), e.rest_of_header(frame));
    let t = Translation {
        outer_src: Some(src),
        outer_dst: Some(dst),
        inner_src: Some((dst, port)),
        inner_dst: Some((src, port)),
        inner_seq_sub: u32::from(port),
    };
    let mut f = frame.to_vec();
    if icmp_err::translate(&mut f, &e, &t).is_ok() {
        still_valid(&f, "icmp_err::translate");
    }
}

/// A rewrite of a packet the classifier took: it takes the result too, the
/// IPv4 header checksum is right (unless `trust`: the input's was wrong and
/// taken on the NIC's word), and a right L4 checksum stayed right.
fn still_valid(f: &[u8], before: Option<crate::check::IpFacts>, trust: bool, what: &str) {
    let c = classify_rx(f, trust);
    assert!(
        matches!(c, Ok(Packet::Ip(_))),
        "{what}: the result does not classify: {c:?}\n{f:02x?}"
    );
    let Some(b) = before else { return };
    let a = facts(f).unwrap_or_else(|| panic!("{what}: etherparse rejects the result\n{f:02x?}"));
    assert!(
        a.ip_csum_ok || trust,
        "{what}: bad IPv4 header checksum\n{f:02x?}"
    );
    if b.l4_ok == Some(true) {
        assert_ne!(a.l4_ok, Some(false), "{what}: L4 checksum broken\n{f:02x?}");
    }
}
