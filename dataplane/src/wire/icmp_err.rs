//! ICMP and ICMPv6 error messages that quote an offending packet: reading the
//! quoted ("inner") IP header and first L4 bytes, and translating the whole
//! message in place for NAT and FULLNAT (what `ip_vs_nat_icmp` does).
//!
//! An error quotes the packet it is about: at least its IP header and 8 bytes of
//! L4 (RFC 792), often more (RFC 1812: as much as fits in 576 bytes; RFC 4443:
//! as much as fits in the IPv6 minimum MTU). The quoted lengths are the sender's
//! claims, not what is present: every length is checked against the bytes that
//! arrived, and a quote that cannot be used is `BadIcmpInner`, never a panic.
//!
//! Picking the new addresses is the connection table's job (`crate::icmp_err`);
//! this file only reads and writes bytes. Checksums are updated incrementally:
//! the inner IPv4 header checksum, the inner TCP/UDP checksum when the quote
//! holds it, the ICMP checksum over the changed quoted bytes and, for ICMPv6,
//! over the pseudo header of the outer addresses. No allocation.

use std::net::IpAddr;

use super::checksum;
use super::classify::{IpFamily, IpMeta};
use super::icmp::{self, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Packet};
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use crate::stats::DropReason;

/// Bytes of the inner L4 header an error must quote for TCP/UDP (ports, and the
/// UDP checksum; RFC 792's "64 bits of the original data").
pub const MIN_L4_QUOTE: usize = 8;
/// Offset of the checksum field in a TCP header.
const TCP_CSUM: usize = 16;
/// Offset of the checksum field in a UDP header.
const UDP_CSUM: usize = 6;
/// The quoted bytes a translation can change end here (relative to the inner
/// L4 header): ports, UDP checksum, TCP checksum.
const L4_CHANGED_END: usize = TCP_CSUM + 2;

/// `true` if an ICMP message of `icmp_type` in `family` is an error that quotes
/// an offending packet and is translated for tracked connections: ICMPv4
/// destination unreachable, source quench, time exceeded, parameter problem;
/// ICMPv6 destination unreachable, packet too big, time exceeded, parameter
/// problem. Redirects are for the director's own routing, not translated.
pub fn is_error(family: IpFamily, icmp_type: u8) -> bool {
    match family {
        IpFamily::V4 => matches!(
            icmp_type,
            icmp::msg_type::DEST_UNREACH
                | SOURCE_QUENCH
                | icmp::msg_type::TIME_EXCEEDED
                | icmp::msg_type::PARAM_PROBLEM
        ),
        IpFamily::V6 => matches!(
            icmp_type,
            icmpv6::msg_type::DEST_UNREACH
                | icmpv6::msg_type::PACKET_TOO_BIG
                | icmpv6::msg_type::TIME_EXCEEDED
                | icmpv6::msg_type::PARAM_PROBLEM
        ),
    }
}

/// ICMPv4 source quench (deprecated by RFC 6633, still an error that quotes).
const SOURCE_QUENCH: u8 = 4;

/// A parsed ICMP error: where its parts sit in the frame and what the quoted
/// packet says. Built by [`parse`]; the offsets are valid for that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub family: IpFamily,
    /// Outer IP header offset.
    l3_off: usize,
    /// ICMP header offset and the end of the ICMP message (the outer IP end).
    icmp_off: usize,
    icmp_end: usize,
    /// Quoted IP header offset, its L4 header offset, and the end of the quoted
    /// bytes that belong to it (what arrived, capped by its own length field).
    inner_off: usize,
    inner_l4_off: usize,
    inner_end: usize,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The quoted packet: protocol (after IPv6 extension headers), addresses,
    /// and ports (0 for protocols without ports).
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl IcmpError {
    /// Bytes of the quoted packet present in the message (IP header included).
    pub fn quoted_len(&self) -> usize {
        self.inner_end - self.inner_off
    }

    /// The 4-byte rest of the ICMP header of `frame` (MTU of frag-needed /
    /// packet-too-big, pointer of parameter problem).
    /// The quoted TCP segment's sequence number (0 for other protocols).
    pub fn quoted_seq(&self, frame: &[u8]) -> u32 {
        if self.proto != ip_proto::TCP {
            return 0;
        }
        frame
            .get(self.inner_l4_off + 4..self.inner_l4_off + 8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn rest_of_header(&self, frame: &[u8]) -> u32 {
        frame
            .get(self.icmp_off + 4..self.icmp_off + 8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses the ICMP error in `frame` as [`classify`](super::classify) described
/// it (`meta.proto` ICMP/ICMPv6 of `meta.family`).
///
/// `BadL4`: not an ICMP message of the family, or its checksum is wrong.
/// `BadIcmpInner`: the quote is unusable: shorter than an IP header (plus 8 L4
/// bytes for TCP/UDP), another IP version, a header length or total length that
/// contradicts itself, extension headers running past the quote, or a non-first
/// fragment (no ports to match a connection).
pub fn parse(frame: &[u8], meta: &IpMeta) -> Result<IcmpError, DropReason> {
    let icmp_off = meta.l4_off;
    let icmp_end = meta.l3_end();
    let msg = frame.get(icmp_off..icmp_end).ok_or(DropReason::BadL4)?;
    let (ty, code) = match (meta.family, meta.proto, meta.src, meta.dst) {
        (IpFamily::V4, ip_proto::ICMP, IpAddr::V4(_), IpAddr::V4(_)) => {
            let p = Icmpv4Packet::new_checked(msg)?;
            if !p.verify_checksum() {
                return Err(DropReason::BadL4);
            }
            (p.msg_type(), p.msg_code())
        }
        (IpFamily::V6, ip_proto::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => {
            let p = Icmpv6Packet::new_checked(msg)?;
            if !p.verify_checksum(s, d) {
                return Err(DropReason::BadL4);
            }
            (p.msg_type(), p.msg_code())
        }
        _ => return Err(DropReason::BadL4),
    };
    let inner_off = icmp_off + icmp::HEADER_LEN;
    let quote = &msg[icmp::HEADER_LEN..];
    let q = match meta.family {
        IpFamily::V4 => quoted_v4(quote)?,
        IpFamily::V6 => quoted_v6(quote)?,
    };
    let (sport, dport) = if matches!(q.proto, ip_proto::TCP | ip_proto::UDP) {
        let l4 = quote
            .get(q.l4_rel..q.end_rel)
            .filter(|l4| l4.len() >= MIN_L4_QUOTE)
            .ok_or(DropReason::BadIcmpInner)?;
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    } else {
        (0, 0)
    };
    Ok(IcmpError {
        family: meta.family,
        l3_off: meta.l3_off,
        icmp_off,
        icmp_end,
        inner_off,
        inner_l4_off: inner_off + q.l4_rel,
        inner_end: inner_off + q.end_rel,
        icmp_type: ty,
        icmp_code: code,
        proto: q.proto,
        src: q.src,
        dst: q.dst,
        sport,
        dport,
    })
}

/// What the quote holds, offsets relative to the quoted IP header.
struct Quoted {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4_rel: usize,
    end_rel: usize,
}

fn quoted_v4(quote: &[u8]) -> Result<Quoted, DropReason> {
    const BAD: DropReason = DropReason::BadIcmpInner;
    if quote.len() < ipv4::MIN_HEADER_LEN || quote[0] >> 4 != 4 {
        return Err(BAD);
    }
    // Not `Ipv4Packet::new_checked`: the quote is normally shorter than the
    // total length it states.
    let ip = Ipv4Packet::new_unchecked(quote);
    let hlen = ip.header_len();
    let total = usize::from(ip.total_len());
    if hlen < ipv4::MIN_HEADER_LEN || hlen > quote.len() || total < hlen {
        return Err(BAD);
    }
    if ip.frag_offset() != 0 {
        return Err(BAD);
    }
    Ok(Quoted {
        proto: ip.proto(),
        src: IpAddr::V4(ip.src()),
        dst: IpAddr::V4(ip.dst()),
        l4_rel: hlen,
        end_rel: total.min(quote.len()),
    })
}

fn quoted_v6(quote: &[u8]) -> Result<Quoted, DropReason> {
    const BAD: DropReason = DropReason::BadIcmpInner;
    if quote.len() < ipv6::HEADER_LEN || quote[0] >> 4 != 6 {
        return Err(BAD);
    }
    let ip = Ipv6Packet::new_unchecked(quote);
    let end = (ipv6::HEADER_LEN + usize::from(ip.payload_len())).min(quote.len());
    // The extension header walk of `ipv6::skip_ext_headers`, bounded by what
    // was quoted instead of the stated payload length.
    let mut next = ip.next_header();
    let mut off = ipv6::HEADER_LEN;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        let len = match next {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                let h = quote.get(off..off + 2).filter(|_| off + 2 <= end);
                (usize::from(h.ok_or(BAD)?[1]) + 1) * 8
            }
            ip_proto::IPV6_FRAG => 8,
            _ => {
                return Ok(Quoted {
                    proto: next,
                    src: IpAddr::V6(ip.src()),
                    dst: IpAddr::V6(ip.dst()),
                    l4_rel: off,
                    end_rel: end,
                })
            }
        };
        if off + len > end {
            return Err(BAD);
        }
        let h = &quote[off..off + len];
        if next == ip_proto::IPV6_FRAG && u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
            return Err(BAD);
        }
        next = h[0];
        off += len;
    }
    Err(BAD)
}

/// The new addresses (and ports) of an error's parts; `None` leaves one as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Translation {
    pub outer_src: Option<IpAddr>,
    pub outer_dst: Option<IpAddr>,
    pub inner_src: Option<(IpAddr, u16)>,
    pub inner_dst: Option<(IpAddr, u16)>,
    /// Subtracted from a quoted TCP sequence number: a FULLNAT connection
    /// with Proxy Protocol shifts the client's sequence space by the header
    /// length, and the client only accepts errors quoting its own numbers.
    pub inner_seq_sub: u32,
}

/// Rewrites the error `e` found in `frame` by [`parse`] as `t` says, with every
/// checksum kept right. Quoted ports change only for TCP/UDP. `Unsupported` (and
/// the frame unchanged) if an address is of the other family; `BadL4` if the
/// frame is not the one `e` was parsed from (shorter).
pub fn translate(frame: &mut [u8], e: &IcmpError, t: &Translation) -> Result<(), DropReason> {
    let v4 = e.family == IpFamily::V4;
    let addrs = [
        t.outer_src,
        t.outer_dst,
        t.inner_src.map(|x| x.0),
        t.inner_dst.map(|x| x.0),
    ];
    if addrs.iter().flatten().any(|a| a.is_ipv4() != v4) {
        return Err(DropReason::Unsupported);
    }
    if frame.len() < e.icmp_end {
        return Err(DropReason::BadL4);
    }
    let has_ports = matches!(e.proto, ip_proto::TCP | ip_proto::UDP);
    let changed_end = if has_ports {
        (e.inner_l4_off + L4_CHANGED_END).min(e.inner_end)
    } else {
        e.inner_l4_off
    };
    // ICMP checksum: the changed quoted bytes come out as a sum before and after
    // (RFC 1624 over a block; the block starts at an even offset of the message).
    let before = checksum::fold(checksum::sum(&frame[e.inner_off..changed_end]));
    let inner_csum_at = match e.proto {
        ip_proto::TCP if e.inner_l4_off + TCP_CSUM + 2 <= e.inner_end => {
            Some((e.inner_l4_off + TCP_CSUM, false))
        }
        ip_proto::UDP => Some((e.inner_l4_off + UDP_CSUM, true)),
        _ => None,
    };
    let (src_at, dst_at, alen) = if v4 {
        (e.inner_off + 12, e.inner_off + 16, 4)
    } else {
        (e.inner_off + 8, e.inner_off + 24, 16)
    };
    for (at, port_at, change) in [
        (src_at, e.inner_l4_off, t.inner_src),
        (dst_at, e.inner_l4_off + 2, t.inner_dst),
    ] {
        let Some((addr, port)) = change else { continue };
        let new = octets(addr);
        let new = &new[..alen];
        let mut old = [0u8; 16];
        old[..alen].copy_from_slice(&frame[at..at + alen]);
        let old = &old[..alen];
        if v4 {
            let c = read16(frame, e.inner_off + 10);
            write16(frame, e.inner_off + 10, checksum::update_addr(c, old, new));
        }
        // Ports only for TCP/UDP: other quotes may end right after the IP header.
        let old_port = if has_ports { read16(frame, port_at) } else { 0 };
        if let Some((c_at, udp)) = inner_csum_at {
            let c = read16(frame, c_at);
            if !(udp && c == 0) {
                let mut n = checksum::update_addr(c, old, new);
                if has_ports {
                    n = checksum::update16(n, old_port, port);
                }
                write16(frame, c_at, if udp && n == 0 { 0xffff } else { n });
            }
        }
        frame[at..at + alen].copy_from_slice(new);
        if has_ports {
            write16(frame, port_at, port);
        }
    }
    if e.proto == ip_proto::TCP && t.inner_seq_sub != 0 {
        // Within the 8 quoted L4 bytes parse guarantees.
        let at = e.inner_l4_off + 4;
        let old = u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
        let new = old.wrapping_sub(t.inner_seq_sub);
        if let Some((c_at, false)) = inner_csum_at {
            let c = read16(frame, c_at);
            write16(frame, c_at, checksum::update32(c, old, new));
        }
        frame[at..at + 4].copy_from_slice(&new.to_be_bytes());
    }
    let after = checksum::fold(checksum::sum(&frame[e.inner_off..changed_end]));
    let icsum_at = e.icmp_off + 2;
    let mut c = checksum::update16(read16(frame, icsum_at), before, after);
    // Outer addresses: the IPv4 header checksum, or the ICMPv6 pseudo header.
    let (osrc_at, odst_at) = if v4 {
        (e.l3_off + 12, e.l3_off + 16)
    } else {
        (e.l3_off + 8, e.l3_off + 24)
    };
    for (at, change) in [(osrc_at, t.outer_src), (odst_at, t.outer_dst)] {
        let Some(addr) = change else { continue };
        let new = octets(addr);
        let new = &new[..alen];
        let mut old = [0u8; 16];
        old[..alen].copy_from_slice(&frame[at..at + alen]);
        let old = &old[..alen];
        if v4 {
            let h = read16(frame, e.l3_off + 10);
            write16(frame, e.l3_off + 10, checksum::update_addr(h, old, new));
        } else {
            c = checksum::update_addr(c, old, new);
        }
        frame[at..at + alen].copy_from_slice(new);
    }
    write16(frame, icsum_at, c);
    Ok(())
}

fn octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

fn read16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn write16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, Packet};
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::{
        Icmpv4Type, Icmpv6Type, LaxNetSlice, LaxSlicedPacket, NetSlice, PacketBuilder,
        SlicedPacket, TransportSlice,
    };
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const CIP: [u8; 4] = [10, 0, 0, 2];
    const VIP: [u8; 4] = [10, 0, 0, 100];
    const RIP: [u8; 4] = [192, 168, 0, 11];
    const LIP: [u8; 4] = [192, 168, 0, 200];
    const ROUTER: [u8; 4] = [192, 168, 0, 254];

    fn a4(b: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(b))
    }

    fn a6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    fn o6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[derive(Clone, Copy)]
    enum L4 {
        Tcp,
        Udp,
    }

    /// An IP packet (no Ethernet) as it left the director.
    fn inner(l4: L4, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, pl: &[u8]) -> Vec<u8> {
        let b = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 63),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 63),
            _ => unreachable!(),
        };
        let mut v = Vec::new();
        match l4 {
            L4::Tcp => b
                .tcp(sport, dport, 1000, 64000)
                .syn()
                .write(&mut v, pl)
                .unwrap(),
            L4::Udp => b.udp(sport, dport).write(&mut v, pl).unwrap(),
        }
        v
    }

    /// An ICMPv4 error frame from `src` to `dst` quoting `quote`.
    fn err4(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, rest: [u8; 4], quote: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(src, dst, 64)
            .icmpv4_raw(ty, code, rest)
            .write(&mut v, quote)
            .unwrap();
        v
    }

    fn frag_needed4(src: [u8; 4], dst: [u8; 4], mtu: u16, quote: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let t = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu,
        });
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(src, dst, 64)
            .icmpv4(t)
            .write(&mut v, quote)
            .unwrap();
        v
    }

    fn too_big6(src: &str, dst: &str, mtu: u32, quote: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(o6(src), o6(dst), 64)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu })
            .write(&mut v, quote)
            .unwrap();
        v
    }

    fn meta(f: &[u8]) -> IpMeta {
        match classify(f) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("not IP: {other:?}"),
        }
    }

    /// What an independent parser sees in a translated error: outer addresses,
    /// ICMP rest-of-header, inner addresses and ports, after checking every
    /// checksum it can (outer IP, ICMP, inner IP, inner TCP/UDP when whole).
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        outer: (IpAddr, IpAddr),
        icmp: (u8, u8, [u8; 4]),
        inner: (IpAddr, u16, IpAddr, u16),
        quote_len: usize,
    }

    fn check(f: &[u8]) -> Seen {
        let p = SlicedPacket::from_ethernet(f).expect("outer parses");
        let (outer, icmp, quote) = match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(i))) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "outer IP csum");
                let ty = i.icmp_type();
                assert_eq!(i.checksum(), ty.calc_checksum(i.payload()), "ICMP csum");
                let b = i.header().to_bytes();
                (
                    (a4(h.source), a4(h.destination)),
                    (b[0], b[1], [b[4], b[5], b[6], b[7]]),
                    i.payload(),
                )
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(i))) => {
                let h = ip.header();
                let (s, d) = (h.source(), h.destination());
                assert!(i.is_checksum_valid(s, d), "ICMPv6 csum");
                let b = i.header().to_bytes();
                (
                    (IpAddr::V6(s.into()), IpAddr::V6(d.into())),
                    (b[0], b[1], [b[4], b[5], b[6], b[7]]),
                    i.payload(),
                )
            }
            other => panic!("not an ICMP error: {other:?}"),
        };
        let q = LaxSlicedPacket::from_ip(quote).expect("quote parses");
        let (isrc, idst, whole, pseudo4, pseudo6) = match &q.net {
            Some(LaxNetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "inner IP csum");
                let whole = usize::from(h.total_len) <= quote.len();
                (a4(h.source), a4(h.destination), whole, Some(h), None)
            }
            Some(LaxNetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                let whole = 40 + usize::from(h.payload_length) <= quote.len();
                let (s, d) = (h.source, h.destination);
                (
                    IpAddr::V6(s.into()),
                    IpAddr::V6(d.into()),
                    whole,
                    None,
                    Some(h),
                )
            }
            None => panic!("no inner IP"),
        };
        let (sport, dport) = match &q.transport {
            Some(TransportSlice::Tcp(t)) => {
                let th = t.to_header();
                if whole {
                    let c = match (&pseudo4, &pseudo6) {
                        (Some(h), _) => th.calc_checksum_ipv4(h, t.payload()).unwrap(),
                        (_, Some(h)) => th.calc_checksum_ipv6(h, t.payload()).unwrap(),
                        _ => unreachable!(),
                    };
                    assert_eq!(th.checksum, c, "inner TCP csum");
                }
                (th.source_port, th.destination_port)
            }
            Some(TransportSlice::Udp(u)) => {
                let uh = u.to_header();
                if whole && uh.checksum != 0 {
                    let c = match (&pseudo4, &pseudo6) {
                        (Some(h), _) => uh.calc_checksum_ipv4(h, u.payload()).unwrap(),
                        (_, Some(h)) => uh.calc_checksum_ipv6(h, u.payload()).unwrap(),
                        _ => unreachable!(),
                    };
                    assert_eq!(uh.checksum, c, "inner UDP csum");
                }
                (uh.source_port, uh.destination_port)
            }
            // A TCP header cut short by the quote: ports by hand.
            _ => {
                let l4 = &quote[quote.len() - 8..];
                (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                )
            }
        };
        Seen {
            outer,
            icmp,
            inner: (isrc, sport, idst, dport),
            quote_len: quote.len(),
        }
    }

    fn run(f: &mut [u8], t: &Translation) -> IcmpError {
        let m = meta(f);
        let e = parse(f, &m).expect("parses");
        translate(f, &e, t).expect("translates");
        e
    }

    #[test]
    fn nat_frag_needed_from_the_rs_goes_to_the_client_as_from_the_vip() {
        // The director sent CIP:40000 -> RIP:8080; the RS says it is too big.
        let q = inner(L4::Tcp, a4(CIP), a4(RIP), 40000, 8080, &[7u8; 100]);
        let mut f = frag_needed4(RIP, CIP, 1400, &q);
        let e = run(
            &mut f,
            &Translation {
                outer_src: Some(a4(VIP)),
                inner_dst: Some((a4(VIP), 80)),
                ..Default::default()
            },
        );
        assert_eq!((e.proto, e.sport, e.dport), (ip_proto::TCP, 40000, 8080));
        assert_eq!(e.rest_of_header(&f), 1400);
        assert_eq!(
            check(&f),
            Seen {
                outer: (a4(VIP), a4(CIP)),
                icmp: (3, 4, [0, 0, 0x05, 0x78]),
                inner: (a4(CIP), 40000, a4(VIP), 80),
                quote_len: q.len(),
            }
        );
        // The quoted payload is untouched.
        assert_eq!(&f[f.len() - 100..], &[7u8; 100][..]);
    }

    #[test]
    fn nat_error_from_a_router_keeps_its_source() {
        let q = inner(L4::Udp, a4(CIP), a4(RIP), 5353, 53, b"query");
        let mut f = err4(ROUTER, CIP, 11, 0, [0; 4], &q);
        run(
            &mut f,
            &Translation {
                inner_dst: Some((a4(VIP), 5300)),
                ..Default::default()
            },
        );
        let s = check(&f);
        assert_eq!(s.outer, (a4(ROUTER), a4(CIP)));
        assert_eq!(s.icmp.0, 11);
        assert_eq!(s.inner, (a4(CIP), 5353, a4(VIP), 5300));
    }

    /// FULLNAT with Proxy Protocol: the client's numbers were shifted by the
    /// header length; the quote goes back with the client's own sequence
    /// number, checksums right with the whole TCP header quoted or only 8 bytes.
    #[test]
    fn quoted_sequence_number_is_shifted_back() {
        for cut in [None, Some(28usize)] {
            let mut q = inner(L4::Tcp, a4(LIP), a4(RIP), 5000, 80, &[1u8; 40]);
            // As sent: the client's 1000 shifted by a 100-byte header.
            q[24..28].copy_from_slice(&1100u32.to_be_bytes());
            let c = checksum::update32(u16::from_be_bytes([q[36], q[37]]), 1000, 1100);
            q[36..38].copy_from_slice(&c.to_be_bytes());
            if let Some(n) = cut {
                q.truncate(n);
            }
            let mut f = frag_needed4(RIP, LIP, 1400, &q);
            let e = run(
                &mut f,
                &Translation {
                    outer_src: Some(a4(VIP)),
                    outer_dst: Some(a4(CIP)),
                    inner_src: Some((a4(CIP), 40000)),
                    inner_dst: Some((a4(VIP), 80)),
                    inner_seq_sub: 100,
                },
            );
            let s = check(&f);
            assert_eq!(s.inner, (a4(CIP), 40000, a4(VIP), 80));
            assert_eq!(e.quoted_seq(&f), 1000, "cut {cut:?}");
        }
    }

    #[test]
    fn fullnat_port_unreachable_rewrites_both_ends_inside_and_out() {
        // Sent LIP:5000 -> RIP:9001 on behalf of CIP:40000 -> VIP:9001.
        let q = inner(L4::Udp, a4(LIP), a4(RIP), 5000, 9001, b"hello");
        let mut f = err4(RIP, LIP, 3, 3, [0; 4], &q);
        run(
            &mut f,
            &Translation {
                outer_src: Some(a4(VIP)),
                outer_dst: Some(a4(CIP)),
                inner_src: Some((a4(CIP), 40000)),
                inner_dst: Some((a4(VIP), 9001)),
                ..Default::default()
            },
        );
        assert_eq!(
            check(&f),
            Seen {
                outer: (a4(VIP), a4(CIP)),
                icmp: (3, 3, [0; 4]),
                inner: (a4(CIP), 40000, a4(VIP), 9001),
                quote_len: q.len(),
            }
        );
    }

    #[test]
    fn client_side_error_about_a_reply_goes_to_the_rs() {
        // We sent VIP:80 -> CIP:40000 (a NAT reply); the client's router says
        // the client is unreachable, to the VIP.
        let q = inner(L4::Tcp, a4(VIP), a4(CIP), 80, 40000, b"HTTP/1.0 200");
        let mut f = err4([10, 0, 0, 254], VIP, 3, 1, [0; 4], &q);
        run(
            &mut f,
            &Translation {
                outer_dst: Some(a4(RIP)),
                inner_src: Some((a4(RIP), 8080)),
                ..Default::default()
            },
        );
        let s = check(&f);
        assert_eq!(s.outer, (a4([10, 0, 0, 254]), a4(RIP)));
        assert_eq!(s.inner, (a4(RIP), 8080, a4(CIP), 40000));
    }

    #[test]
    fn eight_byte_quote_of_tcp_keeps_every_present_checksum_right() {
        // RFC 792 minimum: IP header + 8 bytes (ports and sequence number, no
        // TCP checksum in the quote).
        let full = inner(L4::Tcp, a4(CIP), a4(RIP), 40000, 8080, b"");
        let q = &full[..28];
        let mut f = frag_needed4(RIP, CIP, 1280, q);
        let e = run(
            &mut f,
            &Translation {
                outer_src: Some(a4(VIP)),
                inner_dst: Some((a4(VIP), 80)),
                ..Default::default()
            },
        );
        assert_eq!(e.quoted_len(), 28);
        let s = check(&f);
        assert_eq!(s.inner, (a4(CIP), 40000, a4(VIP), 80));
        assert_eq!(s.quote_len, 28);
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut q = inner(L4::Udp, a4(CIP), a4(RIP), 5353, 53, b"x");
        q[26..28].copy_from_slice(&[0, 0]);
        let mut f = err4(RIP, CIP, 3, 3, [0; 4], &q);
        run(
            &mut f,
            &Translation {
                outer_src: Some(a4(VIP)),
                inner_dst: Some((a4(VIP), 5300)),
                ..Default::default()
            },
        );
        assert_eq!(&f[14 + 20 + 8 + 26..][..2], &[0, 0]);
        assert_eq!(check(&f).inner, (a4(CIP), 5353, a4(VIP), 5300));
    }

    #[test]
    fn ipv6_packet_too_big_and_unreachable_translate_with_the_pseudo_header() {
        let (c, v, r, l) = ("2001:db8::2", "2001:db8::100", "fd00::11", "fd00::200");
        for l4 in [L4::Tcp, L4::Udp] {
            let q = inner(l4, a6(l), a6(r), 5000, 8080, &[1u8; 64]);
            let mut f = too_big6(r, l, 1280, &q);
            let e = run(
                &mut f,
                &Translation {
                    outer_src: Some(a6(v)),
                    outer_dst: Some(a6(c)),
                    inner_src: Some((a6(c), 40000)),
                    inner_dst: Some((a6(v), 80)),
                    ..Default::default()
                },
            );
            assert_eq!(e.family, IpFamily::V6);
            assert_eq!(
                check(&f),
                Seen {
                    outer: (a6(v), a6(c)),
                    icmp: (2, 0, [0, 0, 0x05, 0x00]),
                    inner: (a6(c), 40000, a6(v), 80),
                    quote_len: q.len(),
                }
            );
        }
        // Unreachable (port), client side -> RS direction: outer dst only.
        let q = inner(L4::Udp, a6(v), a6(c), 80, 40000, b"reply");
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(o6(c), o6(v), 64)
            .icmpv6(Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut f, &q)
            .unwrap();
        run(
            &mut f,
            &Translation {
                outer_dst: Some(a6(r)),
                inner_src: Some((a6(r), 8080)),
                ..Default::default()
            },
        );
        let s = check(&f);
        assert_eq!(s.outer, (a6(c), a6(r)));
        assert_eq!(s.inner, (a6(r), 8080, a6(c), 40000));
    }

    #[test]
    fn ipv6_quote_with_extension_headers_is_walked() {
        // Destination options (8 bytes) before UDP in the quoted packet.
        let mut q = inner(L4::Udp, a6("fd00::200"), a6("fd00::11"), 5000, 53, b"q");
        let mut opts = vec![ip_proto::UDP, 0, 1, 4, 0, 0, 0, 0];
        q[6] = ip_proto::IPV6_OPTS;
        let plen = u16::from_be_bytes([q[4], q[5]]) + 8;
        q[4..6].copy_from_slice(&plen.to_be_bytes());
        let udp = q.split_off(40);
        q.append(&mut opts);
        q.extend_from_slice(&udp);
        let mut f = too_big6("fd00::11", "fd00::200", 1280, &q);
        let e = parse(&f, &meta(&f)).unwrap();
        assert_eq!((e.proto, e.sport, e.dport), (ip_proto::UDP, 5000, 53));
        translate(
            &mut f,
            &e,
            &Translation {
                outer_dst: Some(a6("2001:db8::2")),
                inner_src: Some((a6("2001:db8::2"), 40000)),
                ..Default::default()
            },
        )
        .unwrap();
        let e2 = parse(&f, &meta(&f)).expect("still valid (ICMPv6 checksum)");
        assert_eq!((e2.src, e2.sport), (a6("2001:db8::2"), 40000));
    }

    #[test]
    fn quoted_first_fragment_and_other_protocols_parse() {
        // First fragment (MF, offset 0) still has ports.
        let mut q = inner(L4::Udp, a4(CIP), a4(RIP), 1, 2, &[0u8; 40]);
        q[6] = 0x20;
        let f = err4(RIP, CIP, 3, 4, [0, 0, 2, 0], &q);
        let e = parse(&f, &meta(&f)).unwrap();
        assert_eq!((e.sport, e.dport), (1, 2));
        // A quoted echo request: no ports, parsed, nothing to match.
        let mut echo = Vec::new();
        PacketBuilder::ipv4(CIP, RIP, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, b"ping")
            .unwrap();
        let mut f = err4(RIP, CIP, 3, 1, [0; 4], &echo);
        let e = parse(&f, &meta(&f)).unwrap();
        assert_eq!((e.proto, e.sport, e.dport), (ip_proto::ICMP, 0, 0));
        // Translating it changes addresses only, checksums right.
        translate(
            &mut f,
            &e,
            &Translation {
                inner_dst: Some((a4(VIP), 99)),
                ..Default::default()
            },
        )
        .unwrap();
        let e2 = parse(&f, &meta(&f)).expect("ICMP checksum still right");
        assert_eq!(e2.dst, a4(VIP));
    }

    #[test]
    fn truncated_and_lying_quotes_are_bad_inner() {
        let q = inner(L4::Tcp, a4(CIP), a4(RIP), 40000, 8080, b"");
        let bad = |quote: &[u8]| {
            let f = err4(RIP, CIP, 3, 4, [0, 0, 5, 0], quote);
            parse(&f, &meta(&f))
        };
        let is_bad = |r: Result<IcmpError, DropReason>| r == Err(DropReason::BadIcmpInner);
        assert!(is_bad(bad(&q[..0])), "nothing quoted");
        assert!(is_bad(bad(&q[..19])), "half an IP header");
        assert!(is_bad(bad(&q[..27])), "7 L4 bytes");
        let mut x = q.clone();
        x[0] = 0x44; // IHL 4
        assert!(is_bad(bad(&x)), "IHL below 5");
        let mut x = q.clone();
        x[0] = 0x4f; // IHL 15: 60 bytes, more than quoted
        assert!(is_bad(bad(&x[..28])), "IHL past the quote");
        let mut x = q.clone();
        x[2..4].copy_from_slice(&16u16.to_be_bytes());
        assert!(is_bad(bad(&x)), "total length below the header");
        let mut x = q.clone();
        x[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(is_bad(bad(&x)), "total length leaves 4 L4 bytes");
        let mut x = q.clone();
        x[6..8].copy_from_slice(&[0, 1]);
        assert!(is_bad(bad(&x)), "non-first fragment");
        let v6q = inner(L4::Udp, a6("fd00::1"), a6("fd00::2"), 1, 2, b"");
        assert!(is_bad(bad(&v6q)), "IPv6 inside ICMPv4");
        // A stated total length longer than the quote is normal (truncated).
        let mut x = q.clone();
        x[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(bad(&x).map(|e| e.quoted_len()), Ok(q.len()));
        // A shorter one caps what is taken as the inner packet.
        let with_tail = [q.clone(), vec![0xee; 16]].concat();
        assert_eq!(bad(&with_tail).map(|e| e.quoted_len()), Ok(q.len()));
    }

    #[test]
    fn bad_ipv6_quotes_are_bad_inner() {
        let q = inner(L4::Udp, a6("fd00::200"), a6("fd00::11"), 5000, 53, b"q");
        let bad = |quote: &[u8]| {
            let f = too_big6("fd00::11", "fd00::200", 1280, quote);
            parse(&f, &meta(&f))
        };
        let is_bad = |r: Result<IcmpError, DropReason>| r == Err(DropReason::BadIcmpInner);
        assert!(is_bad(bad(&q[..39])));
        assert!(is_bad(bad(&q[..47])));
        let v4q = inner(L4::Udp, a4(CIP), a4(RIP), 1, 2, b"");
        assert!(is_bad(bad(&[v4q.clone(), vec![0; 40]].concat())));
        // A hop-by-hop header claiming 2 KiB.
        let mut x = q.clone();
        x[6] = ip_proto::HOPOPT;
        x[41] = 255;
        assert!(is_bad(bad(&x)));
        // A non-first fragment header.
        let mut x = q[..40].to_vec();
        x[6] = ip_proto::IPV6_FRAG;
        x.extend_from_slice(&[ip_proto::UDP, 0, 0, 8, 0, 0, 0, 1]);
        x.extend_from_slice(&q[40..]);
        assert!(is_bad(bad(&x)));
        // Nine extension headers: more than the walk follows.
        let mut x = q[..40].to_vec();
        x[6] = ip_proto::IPV6_OPTS;
        for i in 0..9 {
            let next = if i == 8 {
                ip_proto::UDP
            } else {
                ip_proto::IPV6_OPTS
            };
            x.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        x.extend_from_slice(&q[40..]);
        let plen = (x.len() - 40) as u16;
        x[4..6].copy_from_slice(&plen.to_be_bytes());
        assert!(is_bad(bad(&x)));
    }

    #[test]
    fn wrong_icmp_checksum_is_bad_l4_and_other_types_are_not_errors() {
        let q = inner(L4::Udp, a4(CIP), a4(RIP), 1, 2, b"");
        let mut f = err4(RIP, CIP, 3, 3, [0; 4], &q);
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(parse(&f, &meta(&f)), Err(DropReason::BadL4));
        for t in [3, 4, 11, 12] {
            assert!(is_error(IpFamily::V4, t), "{t}");
        }
        for t in [0, 5, 8, 9, 13, 42] {
            assert!(!is_error(IpFamily::V4, t), "{t}");
        }
        for t in [1, 2, 3, 4] {
            assert!(is_error(IpFamily::V6, t), "{t}");
        }
        for t in [0, 128, 129, 135, 136, 137] {
            assert!(!is_error(IpFamily::V6, t), "{t}");
        }
    }

    #[test]
    fn other_family_addresses_are_refused_unchanged() {
        let q = inner(L4::Udp, a4(CIP), a4(RIP), 1, 2, b"");
        let mut f = err4(RIP, CIP, 3, 3, [0; 4], &q);
        let e = parse(&f, &meta(&f)).unwrap();
        let before = f.clone();
        let t = Translation {
            inner_dst: Some((a4(VIP), 80)),
            outer_src: Some(a6("fd00::1")),
            ..Default::default()
        };
        assert_eq!(translate(&mut f, &e, &t), Err(DropReason::Unsupported));
        assert_eq!(f, before);
        assert_eq!(
            translate(&mut f[..20], &e, &Translation::default()),
            Err(DropReason::BadL4)
        );
    }

    /// Gives `f` (an ICMPv4 error built by `err4`) a right ICMP checksum.
    fn fix_icmp4(f: &mut [u8]) {
        let m = f.len();
        Icmpv4Packet::new_unchecked(&mut f[34..m]).fill_checksum();
    }

    proptest! {
        #[test]
        fn random_quotes_never_panic(
            quote in proptest::collection::vec(any::<u8>(), 0..120),
            v in 0u8..3,
            ports in any::<(u16, u16)>(),
        ) {
            // Half the time start from a plausible header so the deeper checks run.
            let mut q = quote;
            if v > 0 && q.len() >= 28 {
                let base = inner(L4::Udp, a4(CIP), a4(RIP), ports.0, ports.1, b"");
                let keep = if v == 1 { 10 } else { 20 };
                q[..keep].copy_from_slice(&base[..keep]);
            }
            let mut f = err4(RIP, CIP, 3, 3, [0; 4], &q);
            fix_icmp4(&mut f);
            let m = meta(&f);
            if let Ok(e) = parse(&f, &m) {
                prop_assert!(e.quoted_len() <= q.len());
                let t = Translation {
                    outer_src: Some(a4(VIP)),
                    outer_dst: Some(a4(LIP)),
                    inner_src: Some((a4(LIP), 5)),
                    inner_dst: Some((a4(VIP), 6)),
                    inner_seq_sub: 7,
                };
                prop_assert!(translate(&mut f, &e, &t).is_ok());
                // Still a valid ICMP message: the checksum followed.
                prop_assert!(parse(&f, &meta(&f)).is_ok());
            }
        }

        #[test]
        fn random_frames_never_panic(f in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Packet::Ip(m)) = classify(&f) {
                let _ = parse(&f, &m);
            }
            let mut g = f.clone();
            if g.len() > 34 {
                g[12..14].copy_from_slice(&[0x08, 0x00]);
                let m = meta_lax(&g);
                if let Some(m) = m {
                    if let Ok(e) = parse(&g, &m) {
                        let _ = translate(&mut g, &e, &Translation::default());
                    }
                }
            }
        }

        #[test]
        fn random_v6_quotes_never_panic(quote in proptest::collection::vec(any::<u8>(), 0..160)) {
            let mut q = quote;
            if q.len() >= 48 {
                q[0] = 0x60;
            }
            let mut f = too_big6("fd00::11", "fd00::200", 1280, &q);
            let m = meta(&f);
            if let Ok(e) = parse(&f, &m) {
                let t = Translation {
                    outer_src: Some(a6("2001:db8::100")),
                    inner_dst: Some((a6("2001:db8::100"), 6)),
                    ..Default::default()
                };
                prop_assert!(translate(&mut f, &e, &t).is_ok());
                prop_assert!(parse(&f, &meta(&f)).is_ok());
            }
        }
    }

    fn meta_lax(f: &[u8]) -> Option<IpMeta> {
        match classify(f) {
            Ok(Packet::Ip(m)) => Some(m),
            _ => None,
        }
    }
}
