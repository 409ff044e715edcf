//! FULLNAT64 (DPVS's FNAT64): an IPv6 virtual service served by IPv4 real
//! servers. Requests are translated from IPv6 `CIP6:cport -> VIP6:vport` to IPv4
//! `LIP4:lport -> RIP4:rport`, replies from IPv4 back to IPv6, header by header
//! as in RFC 7915 (SIIT) for TCP and UDP: the IP header is replaced (extension
//! headers and IPv4 options are not carried over), traffic class <-> TOS, hop
//! limit <-> TTL, and the L4 checksum follows the pseudo-header's new addresses
//! and the new ports incrementally. An IPv4 UDP datagram without a checksum
//! gets a full one, as IPv6 requires.
//!
//! The IPv4 header the translator writes has DF set and identification 0 (no
//! fragmentation on the IPv4 side; RFC 7915 4.1 allows it); the caller decrements
//! the TTL / hop limit afterwards like for any forwarded packet. Fragments never
//! get here (`xmit` drops them: translating one needs the whole datagram). Only the byte shuffle lives here: choosing the
//! addresses is the connection table's job, the MTU check the caller's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::classify::{IpFamily, IpMeta};
use super::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::PacketBuf;
use crate::stats::DropReason;

/// Bytes an IPv6 header has over an option-less IPv4 header: what a reply
/// grows by on its way to the IPv6 client.
pub const GROWTH: usize = ipv6::HEADER_LEN - ipv4::MIN_HEADER_LEN;

/// IPv6 request -> IPv4: `src`:`sport` -> `dst`:`dport` replace the IPv6 ends.
/// Returns the metadata of the translated packet (same `l3_off`). On error the
/// frame is unchanged: `Unsupported` for protocols other than TCP/UDP or a
/// packet that is not IPv6, `Truncated`/`BadIpv6`/`BadL4` for a meta that does
/// not fit the bytes.
pub fn v6_to_v4<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
) -> Result<IpMeta, DropReason> {
    if meta.family != IpFamily::V6 {
        return Err(DropReason::Unsupported);
    }
    let (l3, end) = check_bounds(buf, meta, ipv6::HEADER_LEN, DropReason::BadIpv6)?;
    let payload_len = u16::try_from(meta.l4_len)
        .ok()
        .filter(|&n| usize::from(n) + ipv4::MIN_HEADER_LEN <= usize::from(u16::MAX))
        .ok_or(DropReason::Unsupported)?;
    let (old_src, old_dst, tc, hop) = {
        let ip = Ipv6Packet::new_unchecked(&buf.data()[l3..end]);
        (ip.src(), ip.dst(), ip.traffic_class(), ip.hop_limit())
    };
    let seg = &mut buf.data_mut()[meta.l4_off..end];
    let mut l4 = Segment::new(meta.proto, seg)?;
    let old = [&old_src.octets()[..], &old_dst.octets()[..]];
    let new = [&src.octets()[..], &dst.octets()[..]];
    l4.readdress(&old, &new, sport, dport);

    // The IPv6 header and its extensions (l4_rel >= 40) become 20 bytes.
    let shrink = meta.l4_rel() - ipv4::MIN_HEADER_LEN;
    let padding = buf.len() - end;
    let _ = buf.trim(padding);
    buf.data_mut().copy_within(0..l3, shrink);
    let _ = buf.adj(shrink);
    let data = buf.data_mut();
    EthernetFrame::new_unchecked(&mut data[..ETH_LEN]).set_ethertype(EtherType::IPV4);
    let repr = Ipv4Repr {
        src,
        dst,
        proto: meta.proto,
        ttl: hop,
        ident: 0,
        dont_frag: true,
        dscp_ecn: tc,
        payload_len,
    };
    repr.emit(&mut data[l3..]);
    Ok(IpMeta {
        l4_off: l3 + ipv4::MIN_HEADER_LEN,
        family: IpFamily::V4,
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        sport,
        dport,
        ..*meta
    })
}

/// IPv4 reply -> IPv6: `src`:`sport` -> `dst`:`dport` replace the IPv4 ends.
/// The packet grows by [`GROWTH`] bytes (less if it had IPv4 options). Errors
/// as [`v6_to_v4`], plus `NoMbuf` when the buffer has no headroom.
pub fn v4_to_v6<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
) -> Result<IpMeta, DropReason> {
    if meta.family != IpFamily::V4 {
        return Err(DropReason::Unsupported);
    }
    let (l3, end) = check_bounds(buf, meta, ipv4::MIN_HEADER_LEN, DropReason::BadIpv4)?;
    let payload_len = u16::try_from(meta.l4_len).map_err(|_| DropReason::Unsupported)?;
    let (old_src, old_dst, tos, ttl) = {
        let ip = Ipv4Packet::new_unchecked(&buf.data()[l3..end]);
        (ip.src(), ip.dst(), ip.dscp_ecn(), ip.ttl())
    };
    // Validate the L4 header before anything changes.
    Segment::new(meta.proto, &mut buf.data_mut()[meta.l4_off..end])?;
    let old_hdr = meta.l4_rel();
    let grow = ipv6::HEADER_LEN.saturating_sub(old_hdr);
    if grow > 0 && buf.prepend(grow).is_none() {
        return Err(DropReason::NoMbuf);
    }
    // Offsets in the buffer as it is now (`grow` more bytes in front).
    let (l4_off, end) = (meta.l4_off + grow, end + grow);
    let seg = &mut buf.data_mut()[l4_off..end];
    let mut l4 = Segment::new(meta.proto, seg)?;
    let old = [&old_src.octets()[..], &old_dst.octets()[..]];
    let new = [&src.octets()[..], &dst.octets()[..]];
    if l4.udp_without_checksum() {
        l4.set_ports(sport, dport);
        l4.fill_udp_checksum_v6(src, dst);
    } else {
        l4.readdress(&old, &new, sport, dport);
    }
    let padding = buf.len() - end;
    let _ = buf.trim(padding);
    let data = buf.data_mut();
    if grow > 0 {
        data.copy_within(grow..grow + l3, 0);
    } else {
        // IPv4 options made the header 40 bytes or more.
        let shrink = old_hdr - ipv6::HEADER_LEN;
        data.copy_within(0..l3, shrink);
        let _ = buf.adj(shrink);
    }
    let data = buf.data_mut();
    EthernetFrame::new_unchecked(&mut data[..ETH_LEN]).set_ethertype(EtherType::IPV6);
    let mut ip = Ipv6Packet::new_unchecked(&mut data[l3..l3 + ipv6::HEADER_LEN]);
    ip.set_ver_tc_flow(tos, 0);
    ip.set_payload_len(payload_len);
    ip.set_next_header(meta.proto);
    ip.set_hop_limit(ttl);
    ip.set_src(src);
    ip.set_dst(dst);
    Ok(IpMeta {
        l4_off: l3 + ipv6::HEADER_LEN,
        family: IpFamily::V6,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        sport,
        dport,
        ..*meta
    })
}

/// `(l3_off, l3_end)` when the meta fits the frame with an IP header of at
/// least `min_hdr` bytes.
fn check_bounds<B: PacketBuf + ?Sized>(
    buf: &B,
    meta: &IpMeta,
    min_hdr: usize,
    bad_ip: DropReason,
) -> Result<(usize, usize), DropReason> {
    let (l3, l4, end) = (meta.l3_off, meta.l4_off, meta.l3_end());
    if l3 < ETH_LEN || end > buf.len() || l4 < l3 {
        return Err(DropReason::Truncated);
    }
    if l4 - l3 < min_hdr {
        return Err(bad_ip);
    }
    Ok((l3, end))
}

/// The TCP or UDP header whose checksum and ports a translation changes.
enum Segment<'a> {
    Tcp(TcpPacket<&'a mut [u8]>),
    Udp(UdpPacket<&'a mut [u8]>),
}

impl<'a> Segment<'a> {
    fn new(proto: u8, seg: &'a mut [u8]) -> Result<Segment<'a>, DropReason> {
        match proto {
            ip_proto::TCP => Ok(Segment::Tcp(TcpPacket::new_checked(seg)?)),
            ip_proto::UDP => Ok(Segment::Udp(UdpPacket::new_checked(seg)?)),
            _ => Err(DropReason::Unsupported),
        }
    }

    fn udp_without_checksum(&self) -> bool {
        matches!(self, Segment::Udp(u) if u.checksum() == 0)
    }

    /// The pseudo-header's addresses `old` become `new` (the length and
    /// protocol words are the same in both families' pseudo-headers), then
    /// the ports.
    fn readdress(&mut self, old: &[&[u8]; 2], new: &[&[u8]; 2], sport: u16, dport: u16) {
        let csum = match self {
            Segment::Tcp(t) => t.checksum(),
            Segment::Udp(u) => u.checksum(),
        };
        let removed: u32 = old.iter().map(|a| checksum::sum(a)).sum();
        let added: u32 = new.iter().map(|a| checksum::sum(a)).sum();
        let s = u32::from(!csum) + u32::from(!checksum::fold(removed)) + added;
        let mut c = !checksum::fold(s);
        match self {
            Segment::Tcp(t) => t.set_checksum(c),
            Segment::Udp(u) => {
                // 0 means "no checksum" in UDP: send its other form.
                if c == 0 {
                    c = 0xffff;
                }
                u.set_checksum(c)
            }
        }
        self.set_ports_incr(sport, dport);
    }

    fn set_ports_incr(&mut self, sport: u16, dport: u16) {
        match self {
            Segment::Tcp(t) => {
                t.set_src_port_incr(sport);
                t.set_dst_port_incr(dport);
            }
            Segment::Udp(u) => {
                u.set_src_port_incr(sport);
                u.set_dst_port_incr(dport);
            }
        }
    }

    fn set_ports(&mut self, sport: u16, dport: u16) {
        if let Segment::Udp(u) = self {
            u.set_src_port(sport);
            u.set_dst_port(dport);
        }
    }

    fn fill_udp_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        if let Segment::Udp(u) = self {
            u.fill_checksum_v6(src, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{classify, Packet, VecBuf};
    use etherparse::{Ipv4Header, Ipv6Header, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const CIP6: [u8; 16] = [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const VIP6: [u8; 16] = [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const LIP: [u8; 4] = [192, 168, 0, 200];
    const RIP: [u8; 4] = [192, 168, 0, 11];

    fn meta(f: &[u8]) -> IpMeta {
        match classify(f).unwrap() {
            Packet::Ip(m) => m,
            _ => panic!("not IP"),
        }
    }

    fn tcp6(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(CIP6, VIP6, 50)
            .tcp(40000, 80, 1234, 65535)
            .syn()
            .write(&mut f, payload)
            .unwrap();
        f
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(RIP, LIP, 30)
            .udp(9000, 5000)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    enum Ip {
        V4(Ipv4Header),
        V6(Ipv6Header),
    }

    /// Parses the frame with etherparse and checks every checksum.
    fn verify(f: &[u8]) -> (Ip, u16, u16, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(f).expect("etherparse parses it");
        let net = p.net.clone().expect("IP");
        let (sport, dport, payload, ok) = match (&p.transport, &net) {
            (Some(TransportSlice::Tcp(t)), etherparse::NetSlice::Ipv4(ip)) => {
                let h = t.to_header();
                let c = h
                    .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                    .unwrap();
                (
                    h.source_port,
                    h.destination_port,
                    t.payload().to_vec(),
                    c == h.checksum,
                )
            }
            (Some(TransportSlice::Tcp(t)), etherparse::NetSlice::Ipv6(ip)) => {
                let h = t.to_header();
                let c = h
                    .calc_checksum_ipv6(&ip.header().to_header(), t.payload())
                    .unwrap();
                (
                    h.source_port,
                    h.destination_port,
                    t.payload().to_vec(),
                    c == h.checksum,
                )
            }
            (Some(TransportSlice::Udp(u)), etherparse::NetSlice::Ipv4(ip)) => {
                let h = u.to_header();
                let c = h
                    .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                    .unwrap();
                (
                    h.source_port,
                    h.destination_port,
                    u.payload().to_vec(),
                    c == h.checksum,
                )
            }
            (Some(TransportSlice::Udp(u)), etherparse::NetSlice::Ipv6(ip)) => {
                let h = u.to_header();
                let c = h
                    .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                    .unwrap();
                (
                    h.source_port,
                    h.destination_port,
                    u.payload().to_vec(),
                    c == h.checksum,
                )
            }
            _ => panic!("unexpected packet"),
        };
        assert!(ok, "L4 checksum wrong");
        let ip = match &net {
            etherparse::NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                Ip::V4(h)
            }
            etherparse::NetSlice::Ipv6(ip) => Ip::V6(ip.header().to_header()),
        };
        (ip, sport, dport, payload)
    }

    #[test]
    fn tcp_request_becomes_ipv4() {
        let f = tcp6(b"hello");
        let m = meta(&f);
        let mut b = VecBuf::new(&f);
        let n = v6_to_v4(&mut b, &m, LIP.into(), 5000, RIP.into(), 8080).unwrap();
        let out = b.data().to_vec();
        assert_eq!(out.len(), f.len() - 20);
        assert_eq!(&out[12..14], &[0x08, 0x00]);
        assert_eq!(meta(&out), n);
        let (net, sport, dport, payload) = verify(&out);
        let Ip::V4(ip) = net else { panic!("not IPv4") };
        assert_eq!((ip.source, ip.destination), (LIP, RIP));
        assert_eq!((ip.time_to_live, ip.dont_fragment), (50, true));
        assert_eq!(
            (sport, dport, payload.as_slice()),
            (5000, 8080, &b"hello"[..])
        );
    }

    #[test]
    fn udp_reply_becomes_ipv6() {
        let f = udp4(b"echo");
        let m = meta(&f);
        let mut b = VecBuf::new(&f);
        let n = v4_to_v6(&mut b, &m, VIP6.into(), 53, CIP6.into(), 40000).unwrap();
        let out = b.data().to_vec();
        assert_eq!(out.len(), f.len() + GROWTH);
        assert_eq!(meta(&out), n);
        let (net, sport, dport, payload) = verify(&out);
        let Ip::V6(ip) = net else { panic!("not IPv6") };
        assert_eq!((ip.source, ip.destination, ip.hop_limit), (VIP6, CIP6, 30));
        assert_eq!(
            (sport, dport, payload.as_slice()),
            (53, 40000, &b"echo"[..])
        );
    }

    #[test]
    fn udp_without_checksum_gets_one() {
        let mut f = udp4(b"no checksum");
        let m = meta(&f);
        f[m.l4_off + 6..m.l4_off + 8].copy_from_slice(&[0, 0]);
        let mut b = VecBuf::new(&f);
        v4_to_v6(&mut b, &m, VIP6.into(), 53, CIP6.into(), 40000).unwrap();
        let (_, _, _, payload) = verify(b.data());
        assert_eq!(payload, b"no checksum");
    }

    #[test]
    fn ipv4_options_and_padding_are_dropped() {
        // 24 bytes of options: a 44-byte header shrinks to IPv6's 40.
        let f = udp4(b"x");
        let mut g = f[..14].to_vec();
        let mut ip = f[14..34].to_vec();
        ip[0] = 0x4b;
        let total = u16::from_be_bytes([ip[2], ip[3]]) + 24;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&[&ip[..], &[1u8; 24][..]].concat());
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        g.extend_from_slice(&ip);
        g.extend_from_slice(&[1u8; 24]); // NOPs
        g.extend_from_slice(&f[34..]);
        g.extend_from_slice(&[0u8; 10]); // Ethernet padding
        let m = meta(&g);
        assert_eq!(m.l4_rel(), 44);
        let mut b = VecBuf::new(&g);
        v4_to_v6(&mut b, &m, VIP6.into(), 53, CIP6.into(), 40000).unwrap();
        assert_eq!(b.len(), 14 + 40 + 8 + 1);
        let (_, _, _, payload) = verify(b.data());
        assert_eq!(payload, b"x");
    }

    #[test]
    fn extension_headers_are_dropped() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(CIP6, VIP6, 50)
            .udp(40000, 53)
            .write(&mut f, b"q")
            .unwrap();
        // Insert an 8-byte hop-by-hop header.
        let mut g = f[..54].to_vec();
        g[14 + 6] = ip_proto::HOPOPT;
        let plen = u16::from_be_bytes([g[18], g[19]]) + 8;
        g[18..20].copy_from_slice(&plen.to_be_bytes());
        g.extend_from_slice(&[ip_proto::UDP, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[54..]);
        let m = meta(&g);
        assert_eq!(m.l4_rel(), 48);
        let mut b = VecBuf::new(&g);
        v6_to_v4(&mut b, &m, LIP.into(), 5000, RIP.into(), 9000).unwrap();
        assert_eq!(b.len(), 14 + 20 + 8 + 1);
        let (_, sport, dport, payload) = verify(b.data());
        assert_eq!((sport, dport, payload.as_slice()), (5000, 9000, &b"q"[..]));
    }

    #[test]
    fn errors_leave_the_frame_unchanged() {
        let f = udp4(b"x");
        let m = meta(&f);
        // No headroom for 20 more bytes.
        let mut b = VecBuf::with_headroom(&f, 4);
        assert_eq!(
            v4_to_v6(&mut b, &m, VIP6.into(), 1, CIP6.into(), 2),
            Err(DropReason::NoMbuf)
        );
        assert_eq!(b.data(), &f[..]);
        // Wrong family either way.
        assert_eq!(
            v6_to_v4(&mut b, &m, LIP.into(), 1, RIP.into(), 2),
            Err(DropReason::Unsupported)
        );
        let g = tcp6(b"");
        let m6 = meta(&g);
        let mut c = VecBuf::new(&g);
        assert_eq!(
            v4_to_v6(&mut c, &m6, VIP6.into(), 1, CIP6.into(), 2),
            Err(DropReason::Unsupported)
        );
        // A meta beyond the bytes.
        let mut short = VecBuf::new(&g[..g.len() - 4]);
        assert_eq!(
            v6_to_v4(&mut short, &m6, LIP.into(), 1, RIP.into(), 2),
            Err(DropReason::Truncated)
        );
        // ICMPv6 is not translated.
        let mut icmp = m6;
        icmp.proto = ip_proto::ICMPV6;
        assert_eq!(
            v6_to_v4(&mut c, &icmp, LIP.into(), 1, RIP.into(), 2),
            Err(DropReason::Unsupported)
        );
        assert_eq!(c.data(), &g[..]);
    }

    proptest! {
        #[test]
        fn round_trip_restores_payload_and_checksums(payload in proptest::collection::vec(any::<u8>(), 0..200),
                                                     tcp in any::<bool>(), ports in any::<[u16; 4]>(),
                                                     c6 in any::<[u8; 16]>(), v6 in any::<[u8; 16]>(),
                                                     l4 in any::<[u8; 4]>(), r4 in any::<[u8; 4]>()) {
            let mut f = Vec::new();
            let b = PacketBuilder::ethernet2(MAC, MAC).ipv6(c6, v6, 64);
            if tcp {
                b.tcp(ports[0], ports[1], 7, 100).ack(9).write(&mut f, &payload).unwrap();
            } else {
                b.udp(ports[0], ports[1]).write(&mut f, &payload).unwrap();
            }
            let m = meta(&f);
            let mut buf = VecBuf::new(&f);
            let m4 = v6_to_v4(&mut buf, &m, l4.into(), ports[2], r4.into(), ports[3]).unwrap();
            let (_, sp, dp, p4) = verify(buf.data());
            prop_assert_eq!((sp, dp), (ports[2], ports[3]));
            prop_assert_eq!(&p4, &payload);
            let back = v4_to_v6(&mut buf, &m4, c6.into(), ports[0], v6.into(), ports[1]).unwrap();
            prop_assert_eq!(back.l4_off, m.l4_off);
            let (_, _, _, p6) = verify(buf.data());
            prop_assert_eq!(&p6, &payload);
            // Back where it started, apart from TTL/DF-free fields.
            prop_assert_eq!(&buf.data()[m.l4_off..], &f[m.l4_off..]);
        }

        #[test]
        fn inconsistent_meta_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120),
                                          l3 in 0usize..80, l4 in 0usize..140, len in 0usize..140,
                                          proto in prop_oneof![Just(6u8), Just(17), Just(1)],
                                          six in any::<bool>()) {
            let family = if six { IpFamily::V6 } else { IpFamily::V4 };
            let a = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let m = IpMeta {
                l3_off: l3, l4_off: l4, l4_len: len, family, proto, src: a, dst: a,
                sport: 0, dport: 0, tcp_flags: 0, icmp_type: 0, icmp_code: 0, ttl: 0,
                frag: None,
            };
            let mut b = VecBuf::new(&bytes);
            let _ = v6_to_v4(&mut b, &m, LIP.into(), 1, RIP.into(), 2);
            let mut b = VecBuf::new(&bytes);
            let _ = v4_to_v6(&mut b, &m, VIP6.into(), 1, CIP6.into(), 2);
        }
    }
}
