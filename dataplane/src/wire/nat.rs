//! The address and port rewrites of the NAT and FULLNAT forwarding methods, done in
//! place with incremental checksum updates (RFC 1624): the IPv4 header checksum and
//! the TCP/UDP (and ICMPv6) checksum, whose pseudo header covers the addresses.
//!
//! Works on the IP packet as [`classify`](super::classify) described it; picking
//! the new addresses is the connection table's job. Address families must match
//! (no NAT64 here). ICMPv4 has no pseudo header, so only the IP header changes for
//! it; the port arguments are ignored for protocols without ports.
//!
//! Fragments: the first one carries the L4 header, whose checksum covers the
//! whole datagram, and an incremental update stays right for it (only the
//! header is read: the rest of the segment is in later fragments); a later
//! fragment has no L4 header, so only its IP header changes.

use std::net::IpAddr;

use super::classify::{IpFamily, IpMeta};
use super::icmpv6::Icmpv6Packet;
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{tcp, toa, PacketBuf};
use crate::stats::DropReason;

/// Which end of the packet a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

/// Request side of NAT: `dst VIP:vport -> RIP:rport`.
///
/// `ip_packet` starts at the IP header (`&mut frame[meta.l3_off..]`; padding after
/// the IP end is allowed). `Unsupported` if `new_dst` is of the other family.
pub fn rewrite_dst(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    new_dst: IpAddr,
    new_dport: u16,
) -> Result<(), DropReason> {
    rewrite(ip_packet, meta, &[(End::Dst, new_dst, new_dport)], false)
}

/// Reply side of NAT: `src RIP:rport -> VIP:vport`. See [`rewrite_dst`].
pub fn rewrite_src(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    new_src: IpAddr,
    new_sport: u16,
) -> Result<(), DropReason> {
    rewrite(ip_packet, meta, &[(End::Src, new_src, new_sport)], false)
}

/// Both ends at once (FULLNAT: `CIP:cport -> LIP:lport` and `VIP:vport ->
/// RIP:rport` on requests, the reverse on replies). See [`rewrite_dst`].
pub fn rewrite_both(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    new_src: IpAddr,
    new_sport: u16,
    new_dst: IpAddr,
    new_dport: u16,
) -> Result<(), DropReason> {
    rewrite(
        ip_packet,
        meta,
        &[
            (End::Src, new_src, new_sport),
            (End::Dst, new_dst, new_dport),
        ],
        false,
    )
}

/// What a forwarded NAT/FULLNAT packet gets: each given end rewritten (`src`,
/// `dst`: the new address and port; `None` keeps that end) and the TTL (hop
/// limit) decremented. For IPv4 TCP/UDP in one pass, the TTL word joining
/// the IP header's checksum delta; otherwise the rewrite, then [`dec_ttl`].
/// Errors as those two in turn (`TtlExceeded`: the packet is to be dropped).
pub fn rewrite_fwd(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    src: Option<(IpAddr, u16)>,
    dst: Option<(IpAddr, u16)>,
) -> Result<(), DropReason> {
    let src = src.map(|(a, p)| (End::Src, a, p));
    let dst = dst.map(|(a, p)| (End::Dst, a, p));
    match (src, dst) {
        (Some(s), Some(d)) => rewrite(ip_packet, meta, &[s, d], true),
        (Some(c), None) | (None, Some(c)) => rewrite(ip_packet, meta, &[c], true),
        (None, None) => dec_ttl(ip_packet, meta),
    }
}

/// [`rewrite_fwd`] of both ends of an IPv4 packet, the new addresses as
/// the header holds them (FULLNAT with IPv4 connection keys: no `IpAddr`
/// built, no per-change family check). The same bytes and errors as
/// `rewrite_fwd(ip_packet, meta, Some(src), Some(dst))` with those
/// addresses; an IPv6 packet is `Unsupported`, as there.
#[inline(always)]
pub fn rewrite_fwd_v4(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
) -> Result<(), DropReason> {
    fwd_v4(
        ip_packet,
        meta,
        &[(End::Src, src.0, src.1), (End::Dst, dst.0, dst.1)],
    )
}

/// [`rewrite_fwd_v4`] of the source only (NAT replies: RIP -> VIP).
pub fn rewrite_fwd_v4_src(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    src: ([u8; 4], u16),
) -> Result<(), DropReason> {
    fwd_v4(ip_packet, meta, &[(End::Src, src.0, src.1)])
}

/// [`rewrite_fwd_v4`] of the destination only (NAT requests: VIP -> RIP).
pub fn rewrite_fwd_v4_dst(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    dst: ([u8; 4], u16),
) -> Result<(), DropReason> {
    fwd_v4(ip_packet, meta, &[(End::Dst, dst.0, dst.1)])
}

/// The packet path's [`rewrite_fwd_v4_dst`]: `meta` is
/// [`classify`](super::classify)'s for these bytes, so the checks it made
/// (the TCP header length, the UDP length against the IP payload) are not
/// made again. The same bytes and errors as `rewrite_fwd_v4_dst` for such a
/// meta; for one that does not fit the bytes the result is unspecified but
/// never a panic (the header, ports and checksum are still taken
/// bounds-checked).
pub fn rewrite_fwd_v4_dst_classified(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    dst: ([u8; 4], u16),
) -> Result<(), DropReason> {
    fwd_v4_classified(ip_packet, meta, &[(End::Dst, dst.0, dst.1)], |ip, m| {
        rewrite_fwd_v4_dst(ip, m, dst)
    })
}

/// The packet path's [`rewrite_fwd_v4_src`]; see
/// [`rewrite_fwd_v4_dst_classified`].
pub fn rewrite_fwd_v4_src_classified(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    src: ([u8; 4], u16),
) -> Result<(), DropReason> {
    fwd_v4_classified(ip_packet, meta, &[(End::Src, src.0, src.1)], |ip, m| {
        rewrite_fwd_v4_src(ip, m, src)
    })
}

/// [`fwd_v4`] trusting the classifier's L4 checks: IPv4 TCP/UDP straight
/// to [`rewrite_v4_views`], anything else through `checked` (the checked
/// entry of the same changes, called rather than inlined here).
#[inline(always)]
fn fwd_v4_classified(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    changes: &[(End, [u8; 4], u16)],
    checked: impl FnOnce(&mut [u8], &IpMeta) -> Result<(), DropReason>,
) -> Result<(), DropReason> {
    if meta.family == IpFamily::V4
        && meta.has_l4()
        && matches!(meta.proto, ip_proto::TCP | ip_proto::UDP)
    {
        let l4_rel = meta.l4_off.wrapping_sub(meta.l3_off);
        let (hdr, seg) = ip_packet
            .split_at_mut_checked(l4_rel)
            .ok_or(DropReason::BadIpv4)?;
        return rewrite_v4_views(hdr, seg, meta.proto, changes, true);
    }
    checked(ip_packet, meta)
}

/// The wire-form entries: IPv4 TCP/UDP in one pass, anything else through
/// [`rewrite_fwd`].
#[inline(always)]
fn fwd_v4(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    changes: &[(End, [u8; 4], u16)],
) -> Result<(), DropReason> {
    if meta.family == IpFamily::V4
        && meta.has_l4()
        && matches!(meta.proto, ip_proto::TCP | ip_proto::UDP)
    {
        let (hdr, seg) = split(ip_packet, meta)?;
        return rewrite_v4(hdr, seg, meta.proto, meta.frag.is_none(), changes, true);
    }
    let (mut src, mut dst) = (None, None);
    for &(end, a, p) in changes {
        let c = Some((IpAddr::V4(a.into()), p));
        match end {
            End::Src => src = c,
            End::Dst => dst = c,
        }
    }
    rewrite_fwd(ip_packet, meta, src, dst)
}

/// Decrements the IPv4 TTL (with the header checksum) or the IPv6 hop limit.
/// `TtlExceeded` (packet unchanged) if it arrived with 0 or 1.
pub fn dec_ttl(ip_packet: &mut [u8], meta: &IpMeta) -> Result<(), DropReason> {
    let ok = match meta.family {
        IpFamily::V4 => {
            if ip_packet.len() < ipv4::MIN_HEADER_LEN {
                return Err(DropReason::BadIpv4);
            }
            Ipv4Packet::new_unchecked(ip_packet).dec_ttl()
        }
        IpFamily::V6 => {
            if ip_packet.len() < ipv6::HEADER_LEN {
                return Err(DropReason::BadIpv6);
            }
            Ipv6Packet::new_unchecked(ip_packet).dec_hop_limit()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::TtlExceeded)
    }
}

/// Splits the IP packet into (IP header(s), L4 segment) as `meta` says, checking
/// every length so a meta that does not fit the bytes is an error, not a panic.
fn split<'a>(
    ip_packet: &'a mut [u8],
    meta: &IpMeta,
) -> Result<(&'a mut [u8], &'a mut [u8]), DropReason> {
    let (bad_ip, min_hdr) = match meta.family {
        IpFamily::V4 => (DropReason::BadIpv4, ipv4::MIN_HEADER_LEN),
        IpFamily::V6 => (DropReason::BadIpv6, ipv6::HEADER_LEN),
    };
    let l4_rel = meta.l4_off.checked_sub(meta.l3_off).ok_or(bad_ip)?;
    if l4_rel < min_hdr || l4_rel > ip_packet.len() {
        return Err(bad_ip);
    }
    let (hdr, rest) = ip_packet.split_at_mut(l4_rel);
    let l4 = rest.get_mut(..meta.l4_len).ok_or(DropReason::BadL4)?;
    Ok((hdr, l4))
}

/// The rewrite of `changes`; with `ttl` the TTL / hop limit decremented too.
fn rewrite(
    ip_packet: &mut [u8],
    meta: &IpMeta,
    changes: &[(End, IpAddr, u16)],
    ttl: bool,
) -> Result<(), DropReason> {
    if changes
        .iter()
        .any(|(_, a, _)| a.is_ipv4() != (meta.family == IpFamily::V4))
    {
        return Err(DropReason::Unsupported);
    }
    let (hdr, seg) = split(ip_packet, meta)?;
    let l4_present = meta.has_l4();
    if l4_present
        && meta.family == IpFamily::V4
        && matches!(meta.proto, ip_proto::TCP | ip_proto::UDP)
    {
        // At most two changes (both ends); families were checked above.
        let mut wire = [(End::Src, [0u8; 4], 0u16); 2];
        let n = changes.len().min(2);
        for (w, &(end, addr, port)) in wire.iter_mut().zip(changes) {
            let IpAddr::V4(a) = addr else {
                return Err(DropReason::Unsupported);
            };
            *w = (end, a.octets(), port);
        }
        return rewrite_v4(hdr, seg, meta.proto, meta.frag.is_none(), &wire[..n], ttl);
    }
    // Validate the L4 header before touching anything, so an error leaves the
    // packet as it was.
    let mut l4 = if l4_present {
        L4::new(meta.proto, meta.family, seg, meta.frag.is_none())?
    } else {
        L4::None
    };
    for &(end, addr, port) in changes {
        let (old, new): ([u8; 16], [u8; 16]);
        let n = match (meta.family, addr) {
            (IpFamily::V4, IpAddr::V4(a)) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut *hdr);
                let o = match end {
                    End::Src => ip.src(),
                    End::Dst => ip.dst(),
                };
                match end {
                    End::Src => ip.set_src_incr(a),
                    End::Dst => ip.set_dst_incr(a),
                }
                old = to16(&o.octets());
                new = to16(&a.octets());
                4
            }
            (IpFamily::V6, IpAddr::V6(a)) => {
                let mut ip = Ipv6Packet::new_unchecked(&mut *hdr);
                let o = match end {
                    End::Src => ip.src(),
                    End::Dst => ip.dst(),
                };
                match end {
                    End::Src => ip.set_src(a),
                    End::Dst => ip.set_dst(a),
                }
                old = o.octets();
                new = a.octets();
                16
            }
            _ => return Err(DropReason::Unsupported),
        };
        l4.update(end, &old[..n], &new[..n], port);
    }
    if ttl {
        return dec_ttl(ip_packet, meta);
    }
    Ok(())
}

/// The IPv4 TCP/UDP case of [`rewrite`] in one pass: every changed address
/// and port goes into one checksum delta per header (RFC 1624), applied
/// once to the IP header checksum and once to the L4 checksum. Families
/// were checked by the caller. `whole`: not a first fragment (see
/// [`udp_view`]). `ttl`: the TTL decremented too, its word in the same
/// delta (`TtlExceeded`, nothing changed, if it arrived with 0 or 1).
/// Inlined into each entry, so a constant list of changes unrolls.
#[inline(always)]
fn rewrite_v4(
    hdr: &mut [u8],
    seg: &mut [u8],
    proto: u8,
    whole: bool,
    changes: &[(End, [u8; 4], u16)],
    ttl: bool,
) -> Result<(), DropReason> {
    // Validate the L4 header before touching anything.
    if proto == ip_proto::TCP {
        TcpPacket::new_checked(&*seg)?;
    } else {
        udp_view(&*seg, whole)?;
    }
    rewrite_v4_views(hdr, seg, proto, changes, ttl)
}

/// The arithmetic of [`rewrite_v4`], its L4 header validated by the caller
/// (or by the classifier: [`fwd_v4_classified`]). `hdr`: the IP header;
/// `seg`: the TCP/UDP segment from its header on (`proto` says which).
/// Taking a view out of range is `BadIpv4` / `BadL4`, nothing changed.
#[inline(always)]
fn rewrite_v4_views(
    hdr: &mut [u8],
    seg: &mut [u8],
    proto: u8,
    changes: &[(End, [u8; 4], u16)],
    ttl: bool,
) -> Result<(), DropReason> {
    let csum_at = if proto == ip_proto::TCP { 16 } else { 6 };
    // Fixed-size views of the header's 20 bytes, the ports and the L4
    // checksum, all taken before anything changes, so no index below needs
    // a bounds check.
    let h: &mut [u8; 20] = hdr.first_chunk_mut().ok_or(DropReason::BadIpv4)?;
    let l4 = seg.get_mut(..csum_at + 2).ok_or(DropReason::BadL4)?;
    let (ports, rest) = l4.split_first_chunk_mut::<4>().ok_or(DropReason::BadL4)?;
    let c: &mut [u8; 2] = rest.last_chunk_mut().ok_or(DropReason::BadL4)?;
    let ttl_d = if ttl {
        if h[8] <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        // The TTL shares its word with the protocol byte.
        let old = u16::from_le_bytes([h[8], h[9]]);
        h[8] -= 1;
        u64::from(!old) + u64::from(u16::from_le_bytes([h[8], h[9]]))
    } else {
        0
    };
    let (ip_d, l4_d) = v4_deltas(h, ports, changes);
    let ip_d = ip_d + ttl_d;
    // Every word read little-endian, the checksums too: one's complement
    // sums commute with the byte swap (RFC 1071), so no swap per word.
    let ipc = apply_delta(u16::from_le_bytes([h[10], h[11]]), ip_d);
    h[10..12].copy_from_slice(&ipc.to_le_bytes());
    let new = l4_csum(proto, u16::from_le_bytes([c[0], c[1]]), l4_d);
    c.copy_from_slice(&new.to_le_bytes());
    Ok(())
}

/// FULLNAT's rewrite of both ends of an IPv4 TCP segment, the TTL
/// decremented, over fixed views: `ip` the 20-byte IP header (no options),
/// `tcp` the TCP header's first 20 bytes. The caller checked the TTL (2 or
/// more) and the header lengths. `ip_extra` / `tcp_extra`: RFC 1624 sums of
/// other changes the caller made to either header (words read
/// little-endian, as [`rewrite_v4_views`]), joined to the same single
/// update of each checksum: the bytes of those changes' own updates
/// followed by [`rewrite_fwd_v4`]'s.
#[inline(always)]
pub(super) fn fnat_v4_fixed(
    ip: &mut [u8; 20],
    tcp: &mut [u8; 20],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ip_extra: u64,
    tcp_extra: u64,
) {
    // The TTL shares its word with the protocol byte; read little-endian
    // the TTL is the word's low byte, 2 or more: the word goes down by
    // exactly 1, and `!old + (old - 1)` is 0xfffe whatever the word.
    ip[8] = ip[8].wrapping_sub(1);
    const TTL_D: u64 = 0xfffe;
    // Both addresses (`!old + new` of a 32-bit word is its two halves'
    // at once: 2^16 is 1 in one's complement); `w32`: `!old`.
    let w32 = |b: &[u8]| u64::from(!u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (old_s, old_d) = (w32(&ip[12..16]), w32(&ip[16..20]));
    let (new_s, new_d) = (u32::from_le_bytes(src.0), u32::from_le_bytes(dst.0));
    ip[12..16].copy_from_slice(&src.0);
    ip[16..20].copy_from_slice(&dst.0);
    let addr_d = old_s + old_d + u64::from(new_s) + u64::from(new_d);
    // Both ports as one 32-bit word, in wire order.
    let old_p = w32(&tcp[..4]);
    let new_p = u32::from(src.1.swap_bytes()) | u32::from(dst.1.swap_bytes()) << 16;
    tcp[..4].copy_from_slice(&new_p.to_le_bytes());
    let ipc = apply_delta(
        u16::from_le_bytes([ip[10], ip[11]]),
        addr_d + TTL_D + ip_extra,
    );
    ip[10..12].copy_from_slice(&ipc.to_le_bytes());
    let c = apply_delta(
        u16::from_le_bytes([tcp[16], tcp[17]]),
        addr_d + old_p + u64::from(new_p) + tcp_extra,
    );
    tcp[16..18].copy_from_slice(&c.to_le_bytes());
}

/// What [`fnat_v4`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FnatIn {
    /// TOA inserted (8 bytes: the segment grew by that much) and the
    /// segment rewritten.
    Toa,
    /// The segment rewritten (no TOA due).
    Rewritten,
}

/// A FULLNAT TCP segment's rewrite in one pass for the common frame: IPv4
/// at fixed offsets (untagged, no IP options, as the classifier's fast case
/// saw it), whole, TTL above 1. If its sequence number is `first` (a
/// request with the client's first data sequence number: TOA is due) the
/// TCP header must have no options and the packet room within `mtu` for the
/// 8-byte TOA of `client` (wire-order address, port); then the option goes
/// in as [`toa::insert`] puts it. Either way both ends are rewritten (`src`,
/// `dst`: wire-order address and port) and the TTL decremented as
/// [`rewrite_fwd_v4`] does, every change
/// in one update of each checksum: the same bytes as `toa::insert` then
/// `rewrite_fwd_v4`. `meta` is not updated (the caller does not read it
/// again). `None`: not that case (or no headroom), nothing changed.
pub fn fnat_v4<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    first: Option<u32>,
    client: ([u8; 4], u16),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    mtu: usize,
) -> Option<FnatIn> {
    let ends = FnatEnds {
        first,
        client,
        src,
        dst,
    };
    fnat_v4_with(buf, meta, ends, || mtu, None)
}

/// [`fnat_v4`]'s view of the connection: the client's first data sequence
/// number if TOA may be due, the client (for TOA) and the new ends, as wire
/// bytes (address, port).
#[derive(Debug, Clone, Copy)]
pub struct FnatEnds {
    pub first: Option<u32>,
    pub client: ([u8; 4], u16),
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
}

/// [`fnat_v4`] as the dataplane calls it: the MTU asked for only when TOA
/// is due, and with `macs`
/// (destination, source) the link header's addresses written too (what
/// sending to the next hop writes), in the same pass over the frame.
#[inline(always)]
pub fn fnat_v4_with<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &IpMeta,
    ends: FnatEnds,
    mtu: impl FnOnce() -> usize,
    macs: Option<([u8; 6], [u8; 6])>,
) -> Option<FnatIn> {
    const D: usize = toa::LEN_V4;
    const L3: usize = 14;
    const L4: usize = L3 + 20;
    if meta.family != IpFamily::V4
        || meta.proto != ip_proto::TCP
        || meta.frag.is_some()
        || meta.l3_off != L3
        || meta.l4_off != L4
    {
        return None;
    }
    let (end, seg_len) = (meta.l3_end(), meta.l4_len);
    // One borrow of the frame for the checks and the common rewrite.
    let h = buf
        .data_mut()
        .get_mut(..end)?
        .first_chunk_mut::<{ toa::FIXED_V4 }>()?;
    // What `TcpPacket::new_checked` and the TTL check of the rewrite ask.
    let hl = usize::from(h[L4 + 12] >> 4) * 4;
    if hl < tcp::MIN_HEADER_LEN || hl > seg_len || h[L3 + 8] <= 1 {
        return None;
    }
    let FnatEnds {
        first,
        client,
        src,
        dst,
    } = ends;
    let seq = u32::from_be_bytes([h[L4 + 4], h[L4 + 5], h[L4 + 6], h[L4 + 7]]);
    if first != Some(seq) {
        if let Some((to, from)) = macs {
            h[..6].copy_from_slice(&to);
            h[6..12].copy_from_slice(&from);
        }
        let (ip, tcp) = fixed_views(h);
        fnat_v4_fixed(ip, tcp, src, dst, 0, 0);
        return Some(FnatIn::Rewritten);
    }
    if hl != tcp::MIN_HEADER_LEN || meta.ip_len() + D > mtu().min(usize::from(u16::MAX)) {
        return None;
    }
    if !toa::open_gap(buf, toa::FIXED_V4, end, D) {
        return None;
    }
    // The frame is `end + D` bytes now.
    let h = buf.data_mut().first_chunk_mut::<{ toa::FIXED_V4 + D }>()?;
    if let Some((to, from)) = macs {
        h[..6].copy_from_slice(&to);
        h[6..12].copy_from_slice(&from);
    }
    let toa = toa::option_v4(client.0.into(), client.1);
    h[toa::FIXED_V4..].copy_from_slice(&toa);
    let (ip, tcp) = fixed_views(h);
    // The IP total length (in wire order), grown by the option.
    let total = u16::from_le_bytes([ip[2], ip[3]]);
    let grown = total.swap_bytes().wrapping_add(D as u16).swap_bytes();
    ip[2..4].copy_from_slice(&grown.to_le_bytes());
    let ip_d = u64::from(!total) + u64::from(grown);
    // The data offset, the option's words, the pseudo header's length.
    let (w12_new, tcp_d) =
        toa::plain_v4_delta(u16::from_le_bytes([tcp[12], tcp[13]]), &toa, seg_len);
    tcp[12..14].copy_from_slice(&w12_new.to_le_bytes());
    fnat_v4_fixed(ip, tcp, src, dst, ip_d, u64::from(tcp_d));
    Some(FnatIn::Toa)
}

/// The IP header and the TCP header's first 20 bytes of an untagged frame
/// with an option-less IPv4 header.
#[inline(always)]
fn fixed_views<const N: usize>(h: &mut [u8; N]) -> (&mut [u8; 20], &mut [u8; 20]) {
    let (_, rest) = h.split_at_mut(14);
    let (ip, rest) = rest.split_at_mut(20);
    (
        ip.try_into().expect("N >= 54"),
        rest.first_chunk_mut::<20>().expect("N >= 54"),
    )
}

/// Writes every change into the header and the ports; the RFC 1624 sums
/// (`!old + new` of each changed 16-bit word) for the IP header and the L4
/// checksum, of the words read little-endian (applied to checksums read
/// the same way: see [`rewrite_v4`]).
#[inline(always)]
fn v4_deltas(h: &mut [u8; 20], l4: &mut [u8; 4], changes: &[(End, [u8; 4], u16)]) -> (u64, u64) {
    let (mut ip_d, mut l4_d) = (0u64, 0u64);
    for &(end, a, port) in changes {
        let (a_off, p_off) = match end {
            End::Src => (12, 0),
            End::Dst => (16, 2),
        };
        let old = u32::from_le_bytes([h[a_off], h[a_off + 1], h[a_off + 2], h[a_off + 3]]);
        let new = u32::from_le_bytes(a);
        // `!old + new` of the address's two words at once: a 32-bit word
        // is its two halves' sum in one's complement (2^16 is 1).
        let d = u64::from(!old) + u64::from(new);
        h[a_off..a_off + 4].copy_from_slice(&a);
        let old_p = u16::from_le_bytes([l4[p_off], l4[p_off + 1]]);
        let new_p = port.to_be_bytes();
        l4[p_off..p_off + 2].copy_from_slice(&new_p);
        ip_d += d;
        l4_d += d + u64::from(!old_p) + u64::from(u16::from_le_bytes(new_p));
    }
    (ip_d, l4_d)
}

/// `checksum` with the unfolded RFC 1624 sum `d` applied.
#[inline]
fn apply_delta(checksum: u16, d: u64) -> u16 {
    !super::checksum::fold64(u64::from(!checksum) + d)
}

/// The new TCP/UDP checksum: UDP without a checksum keeps none, and a
/// computed 0 is sent as all ones.
#[inline(always)]
fn l4_csum(proto: u8, old: u16, d: u64) -> u16 {
    match (proto, old) {
        (ip_proto::UDP, 0) => 0,
        (ip_proto::UDP, _) => match apply_delta(old, d) {
            0 => 0xffff,
            c => c,
        },
        _ => apply_delta(old, d),
    }
}

fn to16(a: &[u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(a);
    b
}

/// The L4 header whose checksum a rewrite must follow.
enum L4<'a> {
    Tcp(TcpPacket<&'a mut [u8]>),
    Udp(UdpPacket<&'a mut [u8]>),
    Icmpv6(Icmpv6Packet<&'a mut [u8]>),
    /// ICMPv4 and protocols we do not know: nothing covers the addresses.
    None,
}

/// A UDP view of `seg`: the whole datagram (`whole`), or only its header
/// (a first fragment: the UDP length covers later fragments too).
fn udp_view<T: AsRef<[u8]>>(seg: T, whole: bool) -> Result<UdpPacket<T>, DropReason> {
    if whole {
        UdpPacket::new_checked(seg)
    } else {
        UdpPacket::new_checked_header(seg)
    }
}

impl<'a> L4<'a> {
    fn new(
        proto: u8,
        family: IpFamily,
        seg: &'a mut [u8],
        whole: bool,
    ) -> Result<L4<'a>, DropReason> {
        Ok(match (proto, family) {
            (ip_proto::TCP, _) => L4::Tcp(TcpPacket::new_checked(seg)?),
            (ip_proto::UDP, _) => L4::Udp(udp_view(seg, whole)?),
            (ip_proto::ICMPV6, IpFamily::V6) => L4::Icmpv6(Icmpv6Packet::new_checked(seg)?),
            _ => L4::None,
        })
    }

    fn update(&mut self, end: End, old: &[u8], new: &[u8], port: u16) {
        match self {
            L4::Tcp(t) => {
                t.update_checksum_addr(old, new);
                match end {
                    End::Src => t.set_src_port_incr(port),
                    End::Dst => t.set_dst_port_incr(port),
                }
            }
            L4::Udp(u) => {
                u.update_checksum_addr(old, new);
                match end {
                    End::Src => u.set_src_port_incr(port),
                    End::Dst => u.set_dst_port_incr(port),
                }
            }
            L4::Icmpv6(i) => i.update_checksum_addr(old, new),
            L4::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, Frag, Packet};
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[derive(Debug, Clone, Copy)]
    enum L4Kind {
        Tcp,
        Udp,
    }

    fn build(
        kind: L4Kind,
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut v = Vec::new();
        let eth = PacketBuilder::ethernet2(MAC, MAC);
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        };
        match kind {
            L4Kind::Tcp => ip
                .tcp(sport, dport, 0x1122_3344, 4096)
                .ack(0x5566_7788)
                .psh()
                .write(&mut v, payload),
            L4Kind::Udp => ip.udp(sport, dport).write(&mut v, payload),
        }
        .unwrap();
        v
    }

    fn meta_of(f: &[u8]) -> IpMeta {
        match classify(f) {
            Ok(Packet::Ip(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Re-parses with etherparse and checks addresses, ports, and that every
    /// checksum equals etherparse's own computation.
    fn check(f: &[u8], src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) {
        let h = PacketHeaders::from_ethernet_slice(f).unwrap();
        let pl = h.payload.slice();
        assert_eq!(pl, payload);
        let t = h.transport.unwrap();
        match h.net.unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                assert_eq!(IpAddr::V4(Ipv4Addr::from(ip.source)), src);
                assert_eq!(IpAddr::V4(Ipv4Addr::from(ip.destination)), dst);
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                match t {
                    TransportHeader::Tcp(t) => {
                        assert_eq!((t.source_port, t.destination_port), (sport, dport));
                        assert_eq!(t.checksum, t.calc_checksum_ipv4(&ip, pl).unwrap());
                    }
                    TransportHeader::Udp(u) => {
                        assert_eq!((u.source_port, u.destination_port), (sport, dport));
                        assert_eq!(u.checksum, u.calc_checksum_ipv4(&ip, pl).unwrap());
                    }
                    _ => unreachable!(),
                }
            }
            NetHeaders::Ipv6(ip, _) => {
                assert_eq!(IpAddr::V6(Ipv6Addr::from(ip.source)), src);
                assert_eq!(IpAddr::V6(Ipv6Addr::from(ip.destination)), dst);
                match t {
                    TransportHeader::Tcp(t) => {
                        assert_eq!((t.source_port, t.destination_port), (sport, dport));
                        assert_eq!(t.checksum, t.calc_checksum_ipv6(&ip, pl).unwrap());
                    }
                    TransportHeader::Udp(u) => {
                        assert_eq!((u.source_port, u.destination_port), (sport, dport));
                        assert_eq!(u.checksum, u.calc_checksum_ipv6(&ip, pl).unwrap());
                    }
                    _ => unreachable!(),
                }
            }
        }
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(a: [u8; 16]) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(a))
    }

    const CIP: [u8; 4] = [198, 51, 100, 7];
    const VIP: [u8; 4] = [203, 0, 113, 10];
    const RIP: [u8; 4] = [10, 1, 0, 21];

    #[test]
    fn nat_v4_tcp_and_udp_both_directions() {
        for kind in [L4Kind::Tcp, L4Kind::Udp] {
            // request: CIP:40000 -> VIP:80 becomes CIP:40000 -> RIP:8080
            let mut f = build(kind, v4(CIP), v4(VIP), 40000, 80, b"GET / HTTP/1.0\r\n\r\n");
            let m = meta_of(&f);
            rewrite_dst(&mut f[m.l3_off..], &m, v4(RIP), 8080).unwrap();
            check(&f, v4(CIP), v4(RIP), 40000, 8080, b"GET / HTTP/1.0\r\n\r\n");
            assert_eq!(meta_of(&f).dport, 8080);

            // reply: RIP:8080 -> CIP:40000 becomes VIP:80 -> CIP:40000
            let mut f = build(kind, v4(RIP), v4(CIP), 8080, 40000, b"HTTP/1.0 200 OK");
            let m = meta_of(&f);
            rewrite_src(&mut f[m.l3_off..], &m, v4(VIP), 80).unwrap();
            check(&f, v4(VIP), v4(CIP), 80, 40000, b"HTTP/1.0 200 OK");

            // fullnat: CIP:40000 -> VIP:80 becomes LIP:5000 -> RIP:8080
            let lip = [10, 1, 0, 1];
            let mut f = build(kind, v4(CIP), v4(VIP), 40000, 80, b"x");
            let m = meta_of(&f);
            rewrite_both(&mut f[m.l3_off..], &m, v4(lip), 5000, v4(RIP), 8080).unwrap();
            check(&f, v4(lip), v4(RIP), 5000, 8080, b"x");
        }
    }

    #[test]
    fn nat_v6_tcp_and_udp() {
        let c = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        let vip = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let rip = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21];
        for kind in [L4Kind::Tcp, L4Kind::Udp] {
            let mut f = build(kind, v6(c), v6(vip), 40000, 443, b"hello");
            let m = meta_of(&f);
            rewrite_dst(&mut f[m.l3_off..], &m, v6(rip), 8443).unwrap();
            check(&f, v6(c), v6(rip), 40000, 8443, b"hello");
            let m = meta_of(&f);
            rewrite_src(&mut f[m.l3_off..], &m, v6(vip), 443).unwrap();
            check(&f, v6(vip), v6(rip), 443, 8443, b"hello");
        }
    }

    #[test]
    fn udp_without_checksum_keeps_zero() {
        let mut f = build(L4Kind::Udp, v4(CIP), v4(VIP), 5353, 53, b"q");
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        let m = meta_of(&f);
        rewrite_dst(&mut f[m.l3_off..], &m, v4(RIP), 5300).unwrap();
        let u = UdpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!((u.checksum(), u.dst_port()), (0, 5300));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.dst(), Ipv4Addr::from(RIP));
    }

    #[test]
    fn padding_after_ip_end_is_untouched() {
        let mut f = build(L4Kind::Tcp, v4(CIP), v4(VIP), 1, 2, b"");
        f.extend_from_slice(&[0xa5; 6]);
        let m = meta_of(&f);
        rewrite_dst(&mut f[m.l3_off..], &m, v4(RIP), 3).unwrap();
        assert_eq!(&f[54..], &[0xa5; 6]);
        f.truncate(54);
        check(&f, v4(CIP), v4(RIP), 1, 3, b"");
    }

    #[test]
    fn icmp_rewrite_changes_only_ip() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(CIP, VIP, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut f, b"abc")
            .unwrap();
        let before = f.clone();
        let m = meta_of(&f);
        rewrite_dst(&mut f[m.l3_off..], &m, v4(RIP), 999).unwrap();
        assert_eq!(f[34..], before[34..]);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.dst(), Ipv4Addr::from(RIP));
    }

    #[test]
    fn rewrite_fwd_is_the_rewrite_then_dec_ttl() {
        let c6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let r6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let frames = [
            (build(L4Kind::Tcp, v4(CIP), v4(VIP), 1, 2, b"abc"), v4(RIP)),
            (build(L4Kind::Udp, v4(CIP), v4(VIP), 1, 2, b"abcd"), v4(RIP)),
            (build(L4Kind::Tcp, v6(c6), v6(c6), 1, 2, b"x"), v6(r6)),
        ];
        for (f, rip) in frames {
            let m = meta_of(&f);
            for (src, dst) in [
                (None, Some((rip, 8080))),
                (Some((rip, 81)), None),
                (Some((rip, 81)), Some((rip, 8080))),
            ] {
                let (mut one, mut two) = (f.clone(), f.clone());
                rewrite_fwd(&mut one[14..], &m, src, dst).unwrap();
                let ip = &mut two[14..];
                match (src, dst) {
                    (Some((s, sp)), Some((d, dp))) => rewrite_both(ip, &m, s, sp, d, dp),
                    (Some((s, sp)), None) => rewrite_src(ip, &m, s, sp),
                    (None, Some((d, dp))) => rewrite_dst(ip, &m, d, dp),
                    (None, None) => Ok(()),
                }
                .unwrap();
                dec_ttl(&mut two[14..], &m).unwrap();
                assert_eq!(one, two);
            }
            // Arriving with TTL 1: not forwarded.
            let mut g = f.clone();
            let mut m1 = m;
            m1.ttl = 1;
            match m.family {
                IpFamily::V4 => Ipv4Packet::new_unchecked(&mut g[14..]).set_ttl_incr(1),
                IpFamily::V6 => g[14 + 7] = 1,
            }
            assert_eq!(
                rewrite_fwd(&mut g[14..], &m1, None, Some((rip, 1))),
                Err(DropReason::TtlExceeded)
            );
        }
    }

    /// The wire-form entry writes what the `IpAddr` one does, and fails as
    /// it does: TTL 1, a truncated segment, an IPv6 packet, a later fragment.
    #[test]
    fn rewrite_fwd_v4_is_rewrite_fwd() {
        let c6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let frames = [
            build(L4Kind::Tcp, v4(CIP), v4(VIP), 1, 2, b"abc"),
            build(L4Kind::Udp, v4(CIP), v4(VIP), 1, 2, b"abcd"),
            build(L4Kind::Udp, v4(CIP), v4(VIP), 1, 2, b""),
            build(L4Kind::Tcp, v6(c6), v6(c6), 1, 2, b"x"),
        ];
        let (s, d) = (([192, 0, 2, 7], 81), (RIP, 8080));
        let v4p = |(a, p): ([u8; 4], u16)| Some((v4(a), p));
        for f in frames {
            let m = meta_of(&f);
            let mut ttl1 = f.clone();
            let mut m1 = m;
            m1.ttl = 1;
            if m.family == IpFamily::V4 {
                Ipv4Packet::new_unchecked(&mut ttl1[14..]).set_ttl_incr(1);
            }
            let mut later = m;
            later.frag = Some(Frag::Rest(7));
            let mut short = m;
            short.l4_len += 40;
            for (frame, meta) in [(&f, m), (&ttl1, m1), (&f, later), (&f, short)] {
                let (mut one, mut two) = (frame.clone(), frame.clone());
                let a = rewrite_fwd_v4(&mut one[14..], &meta, s, d);
                let b = rewrite_fwd(&mut two[14..], &meta, v4p(s), v4p(d));
                assert_eq!(a, b);
                assert_eq!(one, two);
                let (mut one, mut two) = (frame.clone(), frame.clone());
                let a = rewrite_fwd_v4_src(&mut one[14..], &meta, s);
                let b = rewrite_fwd(&mut two[14..], &meta, v4p(s), None);
                assert_eq!(a, b);
                assert_eq!(one, two);
                let (mut one, mut two) = (frame.clone(), frame.clone());
                let a = rewrite_fwd_v4_dst(&mut one[14..], &meta, d);
                let b = rewrite_fwd(&mut two[14..], &meta, None, v4p(d));
                assert_eq!(a, b);
                assert_eq!(one, two);
                // The packet path's entries, for a meta that fits the bytes
                // (all but `short`): the same as the checked ones.
                if meta.l4_len == m.l4_len {
                    let (mut one, mut two) = (frame.clone(), frame.clone());
                    let a = rewrite_fwd_v4_src_classified(&mut one[14..], &meta, s);
                    let b = rewrite_fwd_v4_src(&mut two[14..], &meta, s);
                    assert_eq!(a, b);
                    assert_eq!(one, two);
                    let (mut one, mut two) = (frame.clone(), frame.clone());
                    let a = rewrite_fwd_v4_dst_classified(&mut one[14..], &meta, d);
                    let b = rewrite_fwd_v4_dst(&mut two[14..], &meta, d);
                    assert_eq!(a, b);
                    assert_eq!(one, two);
                }
            }
            if m.family == IpFamily::V4 {
                assert_eq!(rewrite_fwd_v4(&mut f.clone()[14..], &m, s, d), Ok(()));
                assert_eq!(rewrite_fwd_v4_src(&mut f.clone()[14..], &m, s), Ok(()));
                assert_eq!(rewrite_fwd_v4_dst(&mut f.clone()[14..], &m, d), Ok(()));
            }
        }
    }

    #[test]
    fn errors() {
        let mut f = build(L4Kind::Tcp, v4(CIP), v4(VIP), 1, 2, b"abc");
        let m = meta_of(&f);
        let before = f.clone();
        let six = v6([0; 16]);
        assert_eq!(
            rewrite_dst(&mut f[14..], &m, six, 1),
            Err(DropReason::Unsupported)
        );
        assert_eq!(
            rewrite_dst(&mut f[14..50], &m, v4(RIP), 1),
            Err(DropReason::BadL4)
        );
        assert_eq!(
            rewrite_dst(&mut f[14..30], &m, v4(RIP), 1),
            Err(DropReason::BadIpv4)
        );
        let mut bad = m;
        bad.l4_off = 20;
        assert_eq!(
            rewrite_src(&mut f[14..], &bad, v4(RIP), 1),
            Err(DropReason::BadIpv4)
        );
        assert_eq!(f, before);

        let mut g = f.clone();
        let mut m1 = m;
        m1.ttl = 1;
        Ipv4Packet::new_unchecked(&mut g[14..]).set_ttl_incr(1);
        let g_before = g.clone();
        assert_eq!(dec_ttl(&mut g[14..], &m1), Err(DropReason::TtlExceeded));
        assert_eq!(g, g_before);
        dec_ttl(&mut f[14..], &m).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);

        let c6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut h = build(L4Kind::Udp, v6(c6), v6(c6), 1, 2, b"");
        let m6 = meta_of(&h);
        dec_ttl(&mut h[14..], &m6).unwrap();
        assert_eq!(Ipv6Packet::new_checked(&h[14..]).unwrap().hop_limit(), 63);
        h[14 + 7] = 1;
        assert_eq!(dec_ttl(&mut h[14..], &m6), Err(DropReason::TtlExceeded));
    }

    fn arb_v4() -> impl Strategy<Value = IpAddr> + Clone {
        any::<[u8; 4]>().prop_map(v4)
    }

    fn arb_v6() -> impl Strategy<Value = IpAddr> + Clone {
        any::<[u8; 16]>().prop_map(v6)
    }

    fn arb_case(
        addr: impl Strategy<Value = IpAddr> + Clone,
    ) -> impl Strategy<Value = (bool, [IpAddr; 4], [u16; 4], Vec<u8>, u8)> {
        (
            any::<bool>(),
            [addr.clone(), addr.clone(), addr.clone(), addr],
            any::<[u16; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            0u8..3,
        )
    }

    fn run_case(tcp: bool, a: [IpAddr; 4], p: [u16; 4], payload: &[u8], which: u8) {
        let kind = if tcp { L4Kind::Tcp } else { L4Kind::Udp };
        let mut f = build(kind, a[0], a[1], p[0], p[1], payload);
        let m = meta_of(&f);
        let ip = &mut f[m.l3_off..];
        let (s, sp, d, dp) = match which {
            0 => {
                rewrite_dst(ip, &m, a[3], p[3]).unwrap();
                (a[0], p[0], a[3], p[3])
            }
            1 => {
                rewrite_src(ip, &m, a[2], p[2]).unwrap();
                (a[2], p[2], a[1], p[1])
            }
            _ => {
                rewrite_both(ip, &m, a[2], p[2], a[3], p[3]).unwrap();
                (a[2], p[2], a[3], p[3])
            }
        };
        check(&f, s, d, sp, dp, payload);
        // and our own verifiers agree
        let m2 = meta_of(&f);
        let seg = &f[m2.l4_off..m2.l3_end()];
        match (s, d, tcp) {
            (IpAddr::V4(s), IpAddr::V4(d), true) => assert!(TcpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v4(s, d)),
            (IpAddr::V4(s), IpAddr::V4(d), false) => assert!(UdpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v4(s, d)),
            (IpAddr::V6(s), IpAddr::V6(d), true) => assert!(TcpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v6(s, d)),
            (IpAddr::V6(s), IpAddr::V6(d), false) => assert!(UdpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v6(s, d)),
            _ => unreachable!(),
        }
    }

    proptest! {
        #[test]
        fn inconsistent_meta_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120),
                                          l3 in 0usize..80, l4 in 0usize..140, len in 0usize..140,
                                          proto in prop_oneof![Just(6u8), Just(17), Just(58), Just(1)],
                                          six in any::<bool>(), which in 0u8..6,
                                          frag in prop_oneof![Just(None), Just(Some(Frag::First(1))), Just(Some(Frag::Rest(1)))]) {
            let (family, a) = if six { (IpFamily::V6, v6([1; 16])) } else { (IpFamily::V4, v4([1; 4])) };
            let m = IpMeta {
                l3_off: l3, l4_off: l4, l4_len: len, family, proto, src: a, dst: a,
                sport: 0, dport: 0, tcp_flags: 0, icmp_type: 0, icmp_code: 0, ttl: 0,
                frag,
            };
            let mut b = bytes;
            let _ = match which {
                0 => rewrite_dst(&mut b, &m, a, 1),
                1 => rewrite_src(&mut b, &m, a, 1),
                2 => rewrite_both(&mut b, &m, a, 1, a, 2),
                3 => rewrite_fwd_v4_dst_classified(&mut b, &m, ([1; 4], 1)),
                4 => rewrite_fwd_v4_src_classified(&mut b, &m, ([1; 4], 1)),
                _ => dec_ttl(&mut b, &m),
            };
        }

        #[test]
        fn random_v4_rewrites_verify((tcp, a, p, payload, which) in arb_case(arb_v4())) {
            run_case(tcp, a, p, &payload, which);
        }

        #[test]
        fn random_v6_rewrites_verify((tcp, a, p, payload, which) in arb_case(arb_v6())) {
            run_case(tcp, a, p, &payload, which);
        }
    }
}
