//! First look at a received frame: which protocol it is, and for IP the metadata
//! the pipeline needs (offsets, addresses, ports, flags), each layer validated once.
//!
//! Classification decides nothing about forwarding: a valid packet of any L4
//! protocol comes back with `proto` set and the pipeline chooses. Every rejection is
//! one `DropReason`. Lengths come from the IP header, never the frame, because
//! short frames carry Ethernet padding.
//!
//! A fragment of a larger datagram comes back with [`IpMeta::frag`] set: the
//! first (offset 0) with its L4 header parsed, which must be whole in it
//! (`frag_tiny` otherwise), the others with no ports (`crate::frag` forwards
//! them). The common case, an unfragmented packet, pays nothing for this.

use std::net::{IpAddr, Ipv4Addr};

use super::ethernet::{self, EtherType, EthernetFrame};
use super::icmp::Icmpv4Packet;
use super::icmpv6::Icmpv6Packet;
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::ArpPacket;
use crate::stats::DropReason;

/// IP version of a classified packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// What the pipeline needs of an IP packet, found by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMeta {
    /// Offset of the IP header in the frame.
    pub l3_off: usize,
    /// Offset of the L4 header in the frame (after IPv4 options / IPv6 extensions).
    pub l4_off: usize,
    /// L4 header and payload length (to the IP end, padding excluded).
    pub l4_len: usize,
    pub family: IpFamily,
    /// L4 protocol (IPv6: after extension headers).
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TCP/UDP ports; 0 for other protocols.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte; 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type and code; 0 for other protocols.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Part of a fragmented datagram: which part, and its identification.
    /// `None` for a whole datagram (an IPv6 atomic fragment included).
    pub frag: Option<Frag>,
}

/// Where a fragment sits in its datagram (RFC 791, RFC 8200 4.5), with the
/// datagram's identification (IPv4: 16 bits; IPv6: 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frag {
    /// Offset 0, more to come: it carries the L4 header, parsed as usual
    /// (only the header: the rest of the segment is in later fragments).
    First(u32),
    /// A later one: no L4 header. `IpMeta::l4_off` is where its data
    /// starts, ports and flags are 0.
    Rest(u32),
}

impl Frag {
    /// The datagram's identification.
    pub fn id(self) -> u32 {
        match self {
            Frag::First(id) | Frag::Rest(id) => id,
        }
    }
}

impl IpMeta {
    /// End of the IP packet in the frame (`l4_off + l4_len`); bytes after it are
    /// Ethernet padding.
    pub fn l3_end(&self) -> usize {
        self.l4_off + self.l4_len
    }

    /// IP header(s) and payload length.
    pub fn ip_len(&self) -> usize {
        self.l3_end() - self.l3_off
    }

    /// Offset of the L4 header from the start of the IP header.
    pub fn l4_rel(&self) -> usize {
        self.l4_off - self.l3_off
    }

    /// Whether an L4 header is at `l4_off`: not for a fragment after the first.
    #[inline]
    pub fn has_l4(&self) -> bool {
        !matches!(self.frag, Some(Frag::Rest(_)))
    }
}

/// A received frame, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// A well-formed Ethernet/IPv4 ARP packet at offset 14.
    Arp,
    /// A valid IPv4 or IPv6 packet with a valid TCP/UDP/ICMP header when it is
    /// one of those (for a fragment: see [`IpMeta::frag`]).
    Ip(IpMeta),
    /// Reserved for EtherTypes the pipeline wants to see (LLDP, slow protocols);
    /// `classify` does not return it today: unknown EtherTypes (VLAN tags
    /// included) are `Err(UnknownEtherType)`.
    Other(EtherType),
}

/// Classifies an Ethernet frame. See the module doc and [`Packet`].
pub fn classify(frame: &[u8]) -> Result<Packet, DropReason> {
    classify_rx(frame, false)
}

/// [`classify`] of a received frame whose IPv4 header checksum the NIC
/// verified already when `ip_csum_good` (rx checksum offload): the software
/// check is skipped, every other check is made.
///
/// The common frame (untagged IPv4 TCP/UDP without IP options, whole) is
/// classified inline in the caller's frame ([`fast_v4`]); everything else
/// goes to [`classify_rx_other`], out of line.
#[inline]
pub fn classify_rx(frame: &[u8], ip_csum_good: bool) -> Result<Packet, DropReason> {
    match fast_v4(frame, ip_csum_good) {
        Some(meta) => Ok(Packet::Ip(meta)),
        None => classify_rx_other(frame, ip_csum_good),
    }
}

/// [`classify_rx`] of a frame off its fast case.
#[inline(never)]
pub(crate) fn classify_rx_other(frame: &[u8], ip_csum_good: bool) -> Result<Packet, DropReason> {
    let eth = EthernetFrame::new_checked(frame)?;
    match eth.ethertype() {
        EtherType::ARP => {
            ArpPacket::new_checked(eth.payload())?;
            Ok(Packet::Arp)
        }
        EtherType::IPV4 => {
            classify_v4_with(frame, ethernet::HEADER_LEN, ip_csum_good).map(Packet::Ip)
        }
        EtherType::IPV6 => classify_v6(frame, ethernet::HEADER_LEN).map(Packet::Ip),
        _ => Err(DropReason::UnknownEtherType),
    }
}

/// Classifies the IP packet at `l3_off` in `frame` (also for a decapsulated inner
/// packet). Same checks as [`classify`].
pub fn classify_ip(frame: &[u8], l3_off: usize) -> Result<IpMeta, DropReason> {
    match frame.get(l3_off).map(|b| b >> 4) {
        Some(4) => classify_v4(frame, l3_off),
        Some(6) => classify_v6(frame, l3_off),
        _ => Err(DropReason::Truncated),
    }
}

fn classify_v4(frame: &[u8], l3_off: usize) -> Result<IpMeta, DropReason> {
    classify_v4_with(frame, l3_off, false)
}

fn classify_v4_with(frame: &[u8], l3_off: usize, csum_good: bool) -> Result<IpMeta, DropReason> {
    let bytes = frame.get(l3_off..).ok_or(DropReason::BadIpv4)?;
    let ip = if csum_good {
        Ipv4Packet::new_checked_no_csum(bytes)?
    } else {
        Ipv4Packet::new_checked(bytes)?
    };
    let frag = if ip.is_fragment() {
        let id = u32::from(ip.ident());
        match ip.frag_offset() {
            0 => Some(Frag::First(id)),
            // RFC 1858: a TCP fragment at offset 8 would overwrite the flags
            // the first one carried, past whatever looked at them.
            8 if ip.proto() == ip_proto::TCP => return Err(DropReason::FragTiny),
            _ => Some(Frag::Rest(id)),
        }
    } else {
        None
    };
    let mut meta = IpMeta {
        l3_off,
        l4_off: l3_off + ip.header_len(),
        l4_len: ip.payload().len(),
        family: IpFamily::V4,
        proto: ip.proto(),
        src: IpAddr::V4(ip.src()),
        dst: IpAddr::V4(ip.dst()),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
        ttl: ip.ttl(),
        frag,
    };
    l4(&mut meta, ip.payload())?;
    Ok(meta)
}

/// The common case in one pass over fixed offsets: an untagged IPv4 frame
/// without options, not a fragment, carrying a whole TCP or UDP header. Every
/// check the full path makes for such a frame is made here; anything else
/// (including every frame the full path would drop) returns `None` and goes
/// the full way, which then names the reason.
///
/// `Some` is always TCP or UDP, whole (`frag` `None`, so `has_l4`), at
/// `l3_off` 14: a caller that keys such packets can skip those tests.
#[inline(always)]
pub(crate) fn fast_v4(frame: &[u8], csum_good: bool) -> Option<IpMeta> {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + 20;
    let h = frame.first_chunk::<{ L4 + 8 }>()?;
    if h[12] != 0x08 || h[13] != 0x00 || h[L3] != 0x45 {
        return None;
    }
    let be = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let total = usize::from(be(L3 + 2));
    // Fragment: MF set or an offset (the DF bit is fine).
    if total < 20 || L3 + total > frame.len() || be(L3 + 6) & 0x3fff != 0 {
        return None;
    }
    if !csum_good && !h[L3..L4].first_chunk().is_some_and(ipv4::header_sum_ok) {
        return None;
    }
    let l4_len = total - 20;
    let proto = h[L3 + 9];
    let tcp_flags = match proto {
        ip_proto::TCP => {
            // A whole TCP header (data offset within the segment).
            let hl = usize::from(*frame.get(L4 + 12)? >> 4) * 4;
            if l4_len < 20 || hl < 20 || hl > l4_len {
                return None;
            }
            frame[L4 + 13]
        }
        ip_proto::UDP => {
            let ulen = usize::from(be(L4 + 4));
            if l4_len < 8 || ulen < 8 || ulen > l4_len {
                return None;
            }
            0
        }
        _ => return None,
    };
    let addr = |i: usize| IpAddr::V4(Ipv4Addr::new(h[i], h[i + 1], h[i + 2], h[i + 3]));
    Some(IpMeta {
        l3_off: L3,
        l4_off: L4,
        l4_len,
        family: IpFamily::V4,
        proto,
        src: addr(L3 + 12),
        dst: addr(L3 + 16),
        sport: be(L4),
        dport: be(L4 + 2),
        tcp_flags,
        icmp_type: 0,
        icmp_code: 0,
        ttl: h[L3 + 8],
        frag: None,
    })
}

fn classify_v6(frame: &[u8], l3_off: usize) -> Result<IpMeta, DropReason> {
    let packet = frame.get(l3_off..).ok_or(DropReason::BadIpv6)?;
    let ip = Ipv6Packet::new_checked(packet)?;
    let end = ip.total_len();
    let upper = ipv6::skip_ext_headers(&packet[..end])?;
    if upper.frag_offset == 8 && upper.next_header == ip_proto::TCP {
        return Err(DropReason::FragTiny); // RFC 1858, as for IPv4
    }
    let mut meta = IpMeta {
        l3_off,
        l4_off: l3_off + upper.l4_off,
        l4_len: end - upper.l4_off,
        family: IpFamily::V6,
        proto: upper.next_header,
        src: IpAddr::V6(ip.src()),
        dst: IpAddr::V6(ip.dst()),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
        ttl: ip.hop_limit(),
        frag: upper.frag,
    };
    l4(&mut meta, &packet[upper.l4_off..end])?;
    Ok(meta)
}

/// The L4 header of `seg` into `meta`. A whole datagram must hold what its
/// header says; a first fragment only the header (`frag_tiny` if it stops
/// inside it); a later fragment has none.
fn l4(meta: &mut IpMeta, seg: &[u8]) -> Result<(), DropReason> {
    let whole = match meta.frag {
        None => true,
        Some(Frag::First(_)) => false,
        Some(Frag::Rest(_)) => return Ok(()),
    };
    if !whole && seg.len() < l4_header_len(meta.proto, meta.family, seg) {
        return Err(DropReason::FragTiny);
    }
    match (meta.proto, meta.family) {
        (ip_proto::TCP, _) => {
            let t = TcpPacket::new_checked(seg)?;
            meta.sport = t.src_port();
            meta.dport = t.dst_port();
            meta.tcp_flags = t.flags();
        }
        (ip_proto::UDP, _) => {
            let u = if whole {
                UdpPacket::new_checked(seg)?
            } else {
                UdpPacket::new_checked_header(seg)?
            };
            meta.sport = u.src_port();
            meta.dport = u.dst_port();
        }
        (ip_proto::ICMP, IpFamily::V4) => {
            let i = Icmpv4Packet::new_checked(seg)?;
            meta.icmp_type = i.msg_type();
            meta.icmp_code = i.msg_code();
        }
        (ip_proto::ICMPV6, IpFamily::V6) => {
            let i = Icmpv6Packet::new_checked(seg)?;
            meta.icmp_type = i.msg_type();
            meta.icmp_code = i.msg_code();
        }
        _ => {}
    }
    Ok(())
}

/// How many bytes the L4 header of `seg` takes (TCP: its data offset, at
/// least 20), as far as the bytes present tell; 0 for protocols without one
/// the pipeline reads.
fn l4_header_len(proto: u8, family: IpFamily, seg: &[u8]) -> usize {
    match (proto, family) {
        (ip_proto::TCP, _) => {
            let min = super::tcp::MIN_HEADER_LEN;
            seg.get(12)
                .map_or(min, |&b| (usize::from(b >> 4) * 4).max(min))
        }
        (ip_proto::UDP, _) => super::udp::HEADER_LEN,
        (ip_proto::ICMP, IpFamily::V4) => super::icmp::HEADER_LEN,
        (ip_proto::ICMPV6, IpFamily::V6) => super::icmpv6::HEADER_LEN,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V6A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
    const V6B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .tcp(40000, 80, 1, 1024)
            .syn()
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn udp_v4(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(5353, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn tcp_v6(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6A, V6B, 33)
            .tcp(40000, 443, 1, 1024)
            .syn()
            .ack(5)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn icmp_v4() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut v, b"ping")
            .unwrap();
        v
    }

    fn refix_v4(f: &mut [u8]) {
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    }

    fn arp() -> Vec<u8> {
        let mut b = vec![0u8; 60];
        super::super::arp::build_request(
            &mut b,
            super::super::MacAddr(MAC_A),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        b
    }

    #[test]
    fn classifies_tcp_v4_with_padding() {
        let mut f = tcp_v4(b"");
        f.extend_from_slice(&[0xee; 6]); // 54 -> 60 bytes of Ethernet padding
        let Packet::Ip(m) = classify(&f).unwrap() else {
            panic!("not IP")
        };
        assert_eq!(m.family, IpFamily::V4);
        assert_eq!((m.l3_off, m.l4_off, m.l4_len), (14, 34, 20));
        assert_eq!(m.proto, ip_proto::TCP);
        assert_eq!(m.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(m.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((m.sport, m.dport), (40000, 80));
        assert_eq!(m.tcp_flags, super::super::tcp::flags::SYN);
        assert_eq!(m.ttl, 64);
        assert_eq!((m.l3_end(), m.ip_len(), m.l4_rel()), (54, 40, 20));
    }

    #[test]
    fn classifies_udp_icmp_arp_v6() {
        let Packet::Ip(m) = classify(&udp_v4(b"abc")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (m.proto, m.sport, m.dport, m.l4_len),
            (ip_proto::UDP, 5353, 53, 11)
        );

        let Packet::Ip(m) = classify(&icmp_v4()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (m.proto, m.sport, m.dport, m.icmp_type),
            (ip_proto::ICMP, 0, 0, 8)
        );

        assert_eq!(classify(&arp()), Ok(Packet::Arp));

        let Packet::Ip(m) = classify(&tcp_v6(b"x")).unwrap() else {
            panic!()
        };
        assert_eq!(m.family, IpFamily::V6);
        assert_eq!((m.l3_off, m.l4_off, m.l4_len), (14, 54, 21));
        assert_eq!(m.src, IpAddr::V6(Ipv6Addr::from(V6A)));
        assert_eq!((m.sport, m.dport, m.ttl), (40000, 443, 33));
        assert_eq!(m.tcp_flags, 0x12);

        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6A, V6B, 33)
            .icmpv6_echo_request(7, 8)
            .write(&mut v, b"ping6")
            .unwrap();
        let Packet::Ip(m) = classify(&v).unwrap() else {
            panic!()
        };
        assert_eq!(
            (m.proto, m.icmp_type, m.icmp_code),
            (ip_proto::ICMPV6, 128, 0)
        );
    }

    #[test]
    fn other_l4_passes_with_proto() {
        let mut f = udp_v4(b"");
        f[14 + 9] = 47; // GRE
        refix_v4(&mut f);
        let Packet::Ip(m) = classify(&f).unwrap() else {
            panic!()
        };
        assert_eq!((m.proto, m.sport, m.dport), (47, 0, 0));
    }

    #[test]
    fn every_drop_reason() {
        // Truncated: shorter than an Ethernet header
        assert_eq!(classify(&tcp_v4(b"")[..13]), Err(DropReason::Truncated));
        assert_eq!(classify(&[]), Err(DropReason::Truncated));

        // UnknownEtherType: VLAN-tagged and LLDP
        let mut f = tcp_v4(b"");
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(classify(&f), Err(DropReason::UnknownEtherType));
        f[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(classify(&f), Err(DropReason::UnknownEtherType));

        // BadArp: truncated, and a non-Ethernet hardware type
        assert_eq!(classify(&arp()[..41]), Err(DropReason::BadArp));
        let mut a = arp();
        a[15] = 6;
        assert_eq!(classify(&a), Err(DropReason::BadArp));

        // BadIpv4: checksum, version, IHL, total length beyond the frame, truncated
        let good = tcp_v4(b"");
        let mut f = good.clone();
        f[14 + 11] ^= 0xff;
        assert_eq!(classify(&f), Err(DropReason::BadIpv4));
        // A NIC that verified the checksum (rx offload) is trusted for it,
        // and only for it: a header too short is still refused.
        assert!(matches!(classify_rx(&f, true), Ok(Packet::Ip(_))));
        assert_eq!(classify_rx(&f, false), Err(DropReason::BadIpv4));
        assert_eq!(classify_rx(&good[..20], true), Err(DropReason::BadIpv4));
        let mut f = good.clone();
        f[14] = 0x55;
        assert_eq!(classify(&f), Err(DropReason::BadIpv4));
        let mut f = good.clone();
        f[14] = 0x43;
        refix_v4(&mut f);
        assert_eq!(classify(&f), Err(DropReason::BadIpv4));
        assert_eq!(classify(&good[..53]), Err(DropReason::BadIpv4));
        assert_eq!(classify(&good[..20]), Err(DropReason::BadIpv4));

        // BadIpv6: wrong version, payload beyond frame, ext header beyond payload
        let g6 = tcp_v6(b"");
        let mut f = g6.clone();
        f[14] = 0x40;
        assert_eq!(classify(&f), Err(DropReason::BadIpv6));
        assert_eq!(classify(&g6[..g6.len() - 1]), Err(DropReason::BadIpv6));
        assert_eq!(classify(&g6[..30]), Err(DropReason::BadIpv6));
        let mut f = g6.clone();
        f[14 + 6] = ip_proto::IPV6_OPTS;
        f[54 + 1] = 9; // 80-byte option header in a 20-byte payload
        assert_eq!(classify(&f), Err(DropReason::BadIpv6));

        // BadL4: TCP header truncated (IP length cut), data offset beyond segment,
        // UDP length beyond the datagram, ICMP shorter than 8
        let mut f = good.clone();
        f[14 + 3] = 39; // total length 39: 19 bytes of TCP
        refix_v4(&mut f);
        assert_eq!(classify(&f), Err(DropReason::BadL4));
        let mut f = good.clone();
        f[34 + 12] = 0x60; // data offset 24 > 20
        assert_eq!(classify(&f), Err(DropReason::BadL4));
        let mut f = udp_v4(b"abc");
        f[34 + 5] = 12; // UDP length 12 > 11
        assert_eq!(classify(&f), Err(DropReason::BadL4));
        let mut f = icmp_v4();
        f[14 + 3] = 20 + 7;
        refix_v4(&mut f);
        assert_eq!(classify(&f), Err(DropReason::BadL4));
        let mut f = g6.clone();
        f[54 + 12] = 0xf0;
        assert_eq!(classify(&f), Err(DropReason::BadL4));
    }

    /// `f` (an IPv4 frame) made fragment `ident` at `offset` bytes, with MF.
    fn frag_v4(f: &[u8], ident: u16, offset: u16, more: bool, total: u16) -> Vec<u8> {
        let mut f = f[..14 + usize::from(total)].to_vec();
        f[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
        f[14 + 4..14 + 6].copy_from_slice(&ident.to_be_bytes());
        let w = (offset / 8) | if more { 0x2000 } else { 0 };
        f[14 + 6..14 + 8].copy_from_slice(&w.to_be_bytes());
        refix_v4(&mut f);
        f
    }

    #[test]
    fn fragments() {
        // IPv4 first fragment: ports parsed, the UDP length may exceed it.
        let u = udp_v4(&[7; 100]);
        let m = match classify(&frag_v4(&u, 0x1234, 0, true, 20 + 48)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.frag, Some(Frag::First(0x1234)));
        assert_eq!((m.sport, m.dport, m.l4_len), (5353, 53, 48));
        assert!(m.has_l4());
        // ...and the later ones have none.
        let m = match classify(&frag_v4(&u, 0x1234, 48, false, 20 + 60)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.frag, Some(Frag::Rest(0x1234)));
        assert_eq!(
            (m.proto, m.sport, m.dport, m.l4_off, m.l4_len),
            (ip_proto::UDP, 0, 0, 34, 60)
        );
        assert!(!m.has_l4());
        // A whole datagram still must hold its UDP length.
        let mut f = frag_v4(&u, 1, 0, false, 20 + 48);
        refix_v4(&mut f);
        assert_eq!(classify(&f), Err(DropReason::BadL4));

        // Tiny: a first fragment that cuts the TCP or UDP header, a TCP
        // fragment at offset 8 (RFC 1858).
        let t = tcp_v4(&[1; 40]);
        assert_eq!(
            classify(&frag_v4(&t, 2, 0, true, 20 + 16)),
            Err(DropReason::FragTiny)
        );
        assert_eq!(
            classify(&frag_v4(&u, 2, 0, true, 20 + 4)),
            Err(DropReason::FragTiny)
        );
        assert_eq!(
            classify(&frag_v4(&t, 2, 8, true, 20 + 16)),
            Err(DropReason::FragTiny)
        );
        assert!(matches!(
            classify(&frag_v4(&u, 2, 8, true, 20 + 16)),
            Ok(Packet::Ip(_))
        ));
        assert!(matches!(
            classify(&frag_v4(&t, 2, 16, true, 20 + 16)),
            Ok(Packet::Ip(_))
        ));
        let m = match classify(&frag_v4(&t, 3, 0, true, 20 + 24)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (m.frag, m.dport, m.tcp_flags),
            (Some(Frag::First(3)), 80, 2)
        );
        // The fast path leaves every fragment to the full one.
        assert_eq!(fast_v4(&frag_v4(&u, 1, 0, true, 20 + 48), false), None);

        // IPv6: a fragment header with M set, offset 0 (first), then 8.
        let g6 = tcp_v6(&[0; 16]);
        let six = |offset: u16, more: bool| {
            let mut f = g6[..54].to_vec();
            f[14 + 5] += 8;
            f[14 + 6] = ip_proto::IPV6_FRAG;
            let w = offset | u16::from(more);
            f.extend_from_slice(&[ip_proto::TCP, 0]);
            f.extend_from_slice(&w.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 9]);
            f.extend_from_slice(&g6[54..]);
            f
        };
        let m = match classify(&six(0, true)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!((m.frag, m.dport, m.l4_off), (Some(Frag::First(9)), 443, 62));
        let m = match classify(&six(64, false)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!((m.frag, m.dport, m.l4_off), (Some(Frag::Rest(9)), 0, 62));
        assert_eq!(classify(&six(8, true)), Err(DropReason::FragTiny));
        // An atomic fragment (offset 0, no M) is a whole datagram.
        let m = match classify(&six(0, false)) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.frag, None);
    }

    #[test]
    fn classify_ip_on_inner_packet() {
        let f = tcp_v4(b"q");
        let m = classify_ip(&f, 14).unwrap();
        assert_eq!((m.l3_off, m.dport), (14, 80));
        assert_eq!(classify_ip(&f, 100), Err(DropReason::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..200),
                                        et in prop_oneof![Just([8u8, 0]), Just([0x86, 0xdd]), Just([8, 6])]) {
            let mut f = b;
            if f.len() >= 14 {
                f[12..14].copy_from_slice(&et);
            }
            let _ = classify(&f);
            if f.len() > 14 {
                // make a random IPv4/IPv6 header plausible so deeper layers are reached
                f[14] = if et == [0x86, 0xdd] { 0x60 } else { 0x45 };
                let _ = classify(&f);
                if f.len() >= 34 && et == [8, 0] {
                    refix_v4(&mut f);
                    let _ = classify(&f);
                }
            }
        }

        #[test]
        fn the_fast_path_agrees_with_the_full_one(which in 0usize..3, cut in 0usize..120,
                                                  flip in 0usize..120, bit in 0u8..8, good: bool,
                                                  payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Valid, truncated and bit-flipped frames: whatever the fast path
            // accepts, the full one accepts identically.
            let mut f = match which {
                0 => tcp_v4(&payload),
                1 => udp_v4(&payload),
                _ => icmp_v4(),
            };
            if flip < f.len() {
                f[flip] ^= 1 << bit;
            }
            f.truncate(cut.max(1).min(f.len()));
            for frame in [&tcp_v4(&payload)[..], &udp_v4(&payload)[..], &f[..]] {
                if let Some(m) = fast_v4(frame, good) {
                    let eth = EthernetFrame::new_checked(frame).unwrap();
                    prop_assert_eq!(eth.ethertype(), EtherType::IPV4);
                    prop_assert_eq!(classify_v4_with(frame, ethernet::HEADER_LEN, good), Ok(m));
                    // What the burst loop keys without testing it.
                    prop_assert!(matches!(m.proto, ip_proto::TCP | ip_proto::UDP));
                    prop_assert!(m.frag.is_none() && m.has_l4());
                    prop_assert_eq!(m.l3_off, ethernet::HEADER_LEN);
                }
            }
            // The untouched frames take the fast path.
            prop_assert!(fast_v4(&tcp_v4(&payload), false).is_some());
            prop_assert!(fast_v4(&udp_v4(&payload), false).is_some());
        }

        #[test]
        fn truncations_and_bitflips_never_panic(which in 0usize..5, cut in 0usize..120,
                                                flip in 0usize..120, bit in 0u8..8,
                                                payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let f = match which {
                0 => tcp_v4(&payload),
                1 => udp_v4(&payload),
                2 => tcp_v6(&payload),
                3 => icmp_v4(),
                _ => arp(),
            };
            let full = classify(&f);
            prop_assert!(full.is_ok());
            let cut = cut.min(f.len());
            let _ = classify(&f[..cut]);
            let mut g = f.clone();
            let i = flip % g.len();
            g[i] ^= 1 << bit;
            let _ = classify(&g);
        }
    }
}
