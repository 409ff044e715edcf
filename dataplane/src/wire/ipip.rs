//! IP-in-IP encapsulation for the TUN forwarding method: an outer IPv4 header
//! DIP -> RIP (RFC 2003; IPv6 in IPv4 as protocol 41), or an outer IPv6 header
//! (RFC 2473; next header 41 for IPv6-in-IPv6, 4 for IPv4 in IPv6), in front of
//! the untouched client packet.
//!
//! Owns only the byte shuffle on a [`PacketBuf`]; choosing DIP/RIP, the MTU check
//! (the outer packet is 20 or 40 bytes longer) and the next-hop MAC are the caller's.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::classify::{IpFamily, IpMeta};
use super::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::ipv6::{self, Ipv6Packet};
use super::PacketBuf;
use crate::stats::DropReason;

/// Bytes an encapsulation in IPv4 adds.
pub const OVERHEAD: usize = ipv4::MIN_HEADER_LEN;
/// Bytes an encapsulation in IPv6 adds.
pub const OVERHEAD_V6: usize = ipv6::HEADER_LEN;

/// Wraps the IP packet `meta` describes (Ethernet frame in `buf`, IP at
/// `meta.l3_off`) in an outer IPv4 header `outer_src -> outer_dst`, keeping the
/// link header in front (EtherType set to IPv4; the caller rewrites the MACs).
/// Ethernet padding after the inner packet is dropped. The outer header copies
/// DSCP/ECN and DF from an inner IPv4 header, has TTL 64 and identification `ident`.
///
/// After it, the outer IP header is at `meta.l3_off` and the inner at
/// `meta.l3_off + 20`. `Unsupported` if the outer packet would exceed 65535 bytes,
/// `NoMbuf` if the buffer has no headroom for 20 bytes; the frame is unchanged then.
///
/// Kept out of line with the header's emit inlined here (the other way
/// round costs TUN ~25 instructions per packet, callgrind).
#[inline(never)]
pub fn encap_ipip<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    ident: u16,
) -> Result<(), DropReason> {
    let end = meta.l3_end();
    let (l3, len) = (meta.l3_off, buf.len());
    if l3 < ETH_LEN || end > len || l3 > end {
        return Err(DropReason::Truncated);
    }
    let inner_len = end - l3;
    let payload_len = u16::try_from(inner_len)
        .ok()
        .filter(|&n| usize::from(n) + OVERHEAD <= usize::from(u16::MAX))
        .ok_or(DropReason::Unsupported)?;
    let (proto, dscp_ecn, dont_frag) = match meta.family {
        IpFamily::V4 => {
            if inner_len < ipv4::MIN_HEADER_LEN {
                return Err(DropReason::BadIpv4);
            }
            let ip = Ipv4Packet::new_unchecked(&buf.data()[l3..end]);
            (ip_proto::IPIP, ip.dscp_ecn(), ip.dont_frag())
        }
        IpFamily::V6 => (ip_proto::IPV6, 0, false),
    };
    if buf.prepend(OVERHEAD).is_none() {
        return Err(DropReason::NoMbuf);
    }
    // Drop the padding only once nothing can fail any more.
    let _ = buf.trim(len - end);
    let data = buf.data_mut();
    data.copy_within(OVERHEAD..OVERHEAD + l3, 0);
    EthernetFrame::new_unchecked(&mut data[..ETH_LEN]).set_ethertype(EtherType::IPV4);
    let repr = Ipv4Repr {
        src: outer_src,
        dst: outer_dst,
        proto,
        ttl: ipv4::DEFAULT_TTL,
        ident,
        dont_frag,
        dscp_ecn,
        payload_len,
    };
    repr.emit(&mut data[l3..]);
    Ok(())
}

/// [`encap_ipip`] with the caller's MTU check in one pass for the common
/// frame: untagged (the IPv4 packet at offset 14), the outer header from
/// the inner one's DSCP/ECN, DF and identification (what TUN gives
/// `encap_ipip`), the outer packet within `mtu` (and 65535) bytes, the
/// 14-byte link header moved as a fixed-size block. `outer_src`,
/// `outer_dst`: wire-order addresses. The same bytes as `encap_ipip`;
/// `None`: not that case (an IPv6 or tagged packet, one too big for `mtu`,
/// no headroom, ...), nothing changed.
pub fn encap_ipip_v4<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
    mtu: usize,
) -> Option<()> {
    const L3: usize = ETH_LEN;
    if meta.family != IpFamily::V4 || meta.l3_off != L3 {
        return None;
    }
    let end = meta.l3_end();
    let inner_len = end.checked_sub(L3)?;
    if inner_len + OVERHEAD > mtu.min(usize::from(u16::MAX)) {
        return None;
    }
    let h = buf
        .data()
        .get(..end)?
        .first_chunk::<{ L3 + ipv4::MIN_HEADER_LEN }>()?;
    let ip = &h[L3..];
    let (dscp_ecn, ident, dont_frag) =
        (ip[1], u16::from_be_bytes([ip[4], ip[5]]), ip[6] & 0x40 != 0);
    let pad = buf.len() - end;
    buf.prepend(OVERHEAD)?;
    let _ = buf.trim(pad);
    let h = buf.data_mut().first_chunk_mut::<{ L3 + OVERHEAD }>()?;
    h.copy_within(OVERHEAD.., 0);
    h[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    // `Ipv4Repr::emit`'s words, written here so that they are inlined:
    // five 32-bit words, the checksum from their sum folded.
    let total = (inner_len + OVERHEAD) as u32;
    let w0 = 0x4500_0000 | u32::from(dscp_ecn) << 16 | total;
    let w1 = u32::from(ident) << 16 | if dont_frag { 0x4000 } else { 0 };
    let w2 = u32::from(ipv4::DEFAULT_TTL) << 24 | u32::from(ip_proto::IPIP) << 16;
    let (src, dst) = (u32::from_be_bytes(outer_src), u32::from_be_bytes(outer_dst));
    let sum = [w0, w1, w2, src, dst].map(u64::from).iter().sum::<u64>();
    let w2 = w2 | u32::from(!checksum::fold64(sum));
    for (i, w) in [w0, w1, w2, src, dst].into_iter().enumerate() {
        h[L3 + 4 * i..L3 + 4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    Some(())
}

/// Wraps the IP packet `meta` describes in an outer IPv6 header `outer_src ->
/// outer_dst` (RFC 2473), like [`encap_ipip`]: link header kept in front
/// (EtherType set to IPv6), padding dropped, next header 41 (IPv6 inner) or 4
/// (IPv4 inner), hop limit 64, traffic class copied from the inner header, no
/// flow label. After it the inner packet is at `meta.l3_off + 40`. `Unsupported`
/// if the inner packet exceeds 65535 bytes, `NoMbuf` without 40 bytes of
/// headroom; the frame is unchanged then.
pub fn encap_ip6<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    outer_src: Ipv6Addr,
    outer_dst: Ipv6Addr,
) -> Result<(), DropReason> {
    let end = meta.l3_end();
    let (l3, len) = (meta.l3_off, buf.len());
    if l3 < ETH_LEN || end > len || l3 > end {
        return Err(DropReason::Truncated);
    }
    let payload_len = u16::try_from(end - l3).map_err(|_| DropReason::Unsupported)?;
    let (proto, tclass) = match meta.family {
        IpFamily::V4 => {
            if end - l3 < ipv4::MIN_HEADER_LEN {
                return Err(DropReason::BadIpv4);
            }
            let ip = Ipv4Packet::new_unchecked(&buf.data()[l3..end]);
            (ip_proto::IPIP, ip.dscp_ecn())
        }
        IpFamily::V6 => {
            if end - l3 < ipv6::HEADER_LEN {
                return Err(DropReason::BadIpv6);
            }
            let ip = Ipv6Packet::new_unchecked(&buf.data()[l3..end]);
            (ip_proto::IPV6, ip.traffic_class())
        }
    };
    if buf.prepend(OVERHEAD_V6).is_none() {
        return Err(DropReason::NoMbuf);
    }
    let _ = buf.trim(len - end);
    let data = buf.data_mut();
    data.copy_within(OVERHEAD_V6..OVERHEAD_V6 + l3, 0);
    EthernetFrame::new_unchecked(&mut data[..ETH_LEN]).set_ethertype(EtherType::IPV6);
    let mut ip = Ipv6Packet::new_unchecked(&mut data[l3..l3 + OVERHEAD_V6]);
    ip.set_ver_tc_flow(tclass, 0);
    ip.set_payload_len(payload_len);
    ip.set_next_header(proto);
    ip.set_hop_limit(ipv6::DEFAULT_HOP_LIMIT);
    ip.set_src(outer_src);
    ip.set_dst(outer_dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, classify_ip, Packet};
    use crate::wire::VecBuf;
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const DIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 21);

    fn meta(f: &[u8]) -> IpMeta {
        match classify(f) {
            Ok(Packet::Ip(m)) => m,
            o => panic!("{o:?}"),
        }
    }

    /// [`encap_ipip_v4`] against what it stands for (the MTU check, then
    /// [`encap_ipip`] with the inner identification) on random packets:
    /// DSCP/ECN, DF, identification, TTL, length, padding, the MTU and the
    /// headroom. Where it takes the packet, the same bytes; where it
    /// declines, nothing changed.
    #[test]
    fn one_pass_ipip_is_encap_ipip() {
        use proptest::prelude::*;
        let case = (
            (any::<u8>(), any::<u16>(), any::<bool>(), any::<u8>()),
            (0usize..64, any::<bool>(), 0usize..200, 0usize..40),
        );
        proptest!(|(((tos, ident, df, ttl), (plen, pad, mtu, headroom)) in case)| {
            let mut f = Vec::new();
            let payload: Vec<u8> = (0..plen).map(|i| i as u8).collect();
            PacketBuilder::ethernet2(MAC, MAC)
                .ipv4([198, 51, 100, 7], [203, 0, 113, 10], ttl.max(1))
                .tcp(40000, 80, 1, 1000)
                .write(&mut f, &payload)
                .unwrap();
            f[15] = tos;
            f[18..20].copy_from_slice(&ident.to_be_bytes());
            f[20] = if df { 0x40 } else { 0 };
            Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
            if pad && f.len() < 60 {
                f.resize(60, 0xee);
            }
            let m = meta(&f);
            let mut got = VecBuf::with_headroom(&f, headroom);
            let done = encap_ipip_v4(&mut got, &m, DIP.octets(), RIP.octets(), mtu);
            let fits = m.ip_len() + OVERHEAD <= mtu;
            let mut want = VecBuf::with_headroom(&f, headroom);
            let encapped = fits && encap_ipip(&mut want, &m, DIP, RIP, ident).is_ok();
            match done {
                Some(()) => {
                    prop_assert!(encapped);
                    prop_assert_eq!(got.data(), want.data());
                }
                None => {
                    prop_assert!(!encapped);
                    prop_assert_eq!(got.data(), &f[..]);
                }
            }
        });
    }

    #[test]
    fn encaps_ipv4_keeping_inner_bytes() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 60)
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write(&mut f, b"")
            .unwrap();
        let inner = f[14..].to_vec();
        f.extend_from_slice(&[0xee; 6]); // padding to 60
        let m = meta(&f);
        let mut b = VecBuf::new(&f);
        encap_ipip(&mut b, &m, DIP, RIP, 7).unwrap();
        let out = b.data();
        assert_eq!(out.len(), 14 + 20 + inner.len());
        assert_eq!(&out[..12], &f[..12]);
        assert_eq!(&out[34..], &inner[..]);

        let h = PacketHeaders::from_ethernet_slice(out).unwrap();
        let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
            panic!()
        };
        assert_eq!((ip.source, ip.destination), (DIP.octets(), RIP.octets()));
        assert_eq!(ip.protocol, etherparse::IpNumber::IPV4);
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(
            (ip.time_to_live, ip.identification, ip.dont_fragment),
            (64, 7, true)
        );

        let outer = meta(out);
        assert_eq!(
            (outer.proto, outer.l4_off, outer.l4_len),
            (ip_proto::IPIP, 34, 40)
        );
        let mut again = classify_ip(out, 34).unwrap();
        again.l3_off -= 20;
        again.l4_off -= 20;
        assert_eq!(again, m);
    }

    #[test]
    fn encaps_ipv6_as_proto_41() {
        let a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(a, a, 60)
            .udp(1, 2)
            .write(&mut f, b"six")
            .unwrap();
        let m = meta(&f);
        let mut b = VecBuf::new(&f);
        encap_ipip(&mut b, &m, DIP, RIP, 0).unwrap();
        let outer = meta(b.data());
        assert_eq!((outer.family, outer.proto), (IpFamily::V4, ip_proto::IPV6));
        assert_eq!(&b.data()[12..14], &[0x08, 0x00]);
        assert_eq!(&b.data()[34..], &f[14..]);
    }

    #[test]
    fn no_headroom_leaves_frame_unchanged() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 60)
            .udp(1, 2)
            .write(&mut f, b"")
            .unwrap();
        f.extend_from_slice(&[0; 18]);
        let m = meta(&f);
        let mut b = VecBuf::with_headroom(&f, 10);
        assert_eq!(encap_ipip(&mut b, &m, DIP, RIP, 0), Err(DropReason::NoMbuf));
        assert_eq!(b.data(), &f[..]);
    }

    #[test]
    fn encaps_ipv6_in_ipv6() {
        let c: [u8; 16] = "fd00:10::2".parse::<Ipv6Addr>().unwrap().octets();
        let v: [u8; 16] = "fd00:10::100".parse::<Ipv6Addr>().unwrap().octets();
        let dip: Ipv6Addr = "fd00:192::1".parse().unwrap();
        let rip: Ipv6Addr = "fd00:192::11".parse().unwrap();
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(c, v, 60)
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write(&mut f, b"")
            .unwrap();
        f[15] = 0xb8; // traffic class 0x0b: copied to the outer header
        let inner = f[14..].to_vec();
        f.extend_from_slice(&[0xee; 4]);
        let m = meta(&f);
        let mut b = VecBuf::new(&f);
        encap_ip6(&mut b, &m, dip, rip).unwrap();
        let out = b.data();
        assert_eq!(out.len(), 14 + 40 + inner.len());
        assert_eq!(&out[..12], &f[..12]);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        assert_eq!(&out[54..], &inner[..], "inner packet untouched");

        let h = PacketHeaders::from_ethernet_slice(out).unwrap();
        let Some(NetHeaders::Ipv6(ip, _)) = h.net else {
            panic!()
        };
        assert_eq!((ip.source, ip.destination), (dip.octets(), rip.octets()));
        assert_eq!(ip.next_header, etherparse::IpNumber::IPV6);
        assert_eq!((ip.hop_limit, ip.traffic_class), (64, 0x0b));
        assert_eq!(usize::from(ip.payload_length), inner.len());
        // The inner packet re-parses with a valid TCP checksum.
        let i = PacketHeaders::from_ip_slice(&out[54..]).unwrap();
        let (Some(NetHeaders::Ipv6(iip, _)), Some(etherparse::TransportHeader::Tcp(t))) =
            (i.net, i.transport)
        else {
            panic!()
        };
        assert_eq!(t.checksum, t.calc_checksum_ipv6(&iip, &[]).unwrap());

        let outer = meta(out);
        assert_eq!(
            (outer.family, outer.proto, outer.l4_off),
            (IpFamily::V6, ip_proto::IPV6, 54)
        );
    }

    #[test]
    fn encaps_ipv4_in_ipv6_and_refuses_without_headroom() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 60)
            .udp(1, 2)
            .write(&mut f, b"x")
            .unwrap();
        let m = meta(&f);
        let a: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut b = VecBuf::new(&f);
        encap_ip6(&mut b, &m, a, a).unwrap();
        assert_eq!(meta(b.data()).proto, ip_proto::IPIP);
        let mut b = VecBuf::with_headroom(&f, 39);
        assert_eq!(encap_ip6(&mut b, &m, a, a), Err(DropReason::NoMbuf));
        assert_eq!(b.data(), &f[..]);
    }
}
