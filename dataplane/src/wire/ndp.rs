//! IPv6 neighbour discovery messages (RFC 4861 sections 4.3, 4.4, 7.1): reading a
//! neighbour solicitation or advertisement with the validity checks a host must
//! apply, and building the two messages the director sends (a solicitation for a
//! next hop, an advertisement for one of its own addresses).
//!
//! Owns only bytes. Which addresses are ours, the neighbour table and the pending
//! queue are the host path's (`host.rs`). Nothing here allocates or panics on
//! packet content.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::{self, EtherType, MacAddr};
use super::icmpv6::msg_type;
use super::ip_proto;
use super::ipv6::{self, Ipv6Packet};
use crate::stats::DropReason;

/// Hop limit every NDP message is sent with and must arrive with (RFC 4861 7.1).
pub const HOP_LIMIT: u8 = 255;
/// ICMPv6 header (4) + reserved/flags (4) + target (16).
pub const BODY_LEN: usize = 24;
/// Source / target link-layer address option for Ethernet: type, length 1, MAC.
pub const LLADDR_OPT_LEN: usize = 8;
/// Frame length of what [`build_solicit`] and [`build_advert`] write.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + BODY_LEN + LLADDR_OPT_LEN;

/// Option types.
pub mod opt {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
}

/// NA flag bits in the first byte after the checksum.
pub mod flag {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// Which of the two messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Solicit,
    Advert,
}

/// A valid neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ndp {
    pub kind: Kind,
    /// IPv6 source and destination of the carrying packet.
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The address being asked about / announced.
    pub target: Ipv6Addr,
    /// NA flags (R, S, O); 0 for a solicitation.
    pub flags: u8,
    /// Source link-layer option of an NS, target link-layer option of an NA.
    pub lladdr: Option<[u8; 6]>,
}

/// Parses the NS or NA in `ip_packet` (starting at the IPv6 header; bytes past
/// its payload length ignored) whose ICMPv6 header is `l4_rel` bytes in.
///
/// `Ok(None)`: a valid ICMPv6 message that is neither NS nor NA. `Err(BadNdp)`
/// when an NS/NA fails a check of RFC 4861 7.1.1 / 7.1.2: hop limit 255,
/// checksum, code 0, at least 24 bytes, target not multicast, every option
/// with a non-zero length inside the message, NS from the unspecified address
/// only to a solicited-node group and without a source link-layer option, NA
/// to a multicast group without the solicited flag.
pub fn parse(ip_packet: &[u8], l4_rel: usize) -> Result<Option<Ndp>, DropReason> {
    let ip = Ipv6Packet::new_checked(ip_packet)?;
    let end = ip.total_len();
    let msg = ip_packet
        .get(l4_rel..end)
        .filter(|m| m.len() >= 8)
        .ok_or(DropReason::BadL4)?;
    let kind = match msg[0] {
        msg_type::NEIGHBOR_SOLICIT => Kind::Solicit,
        msg_type::NEIGHBOR_ADVERT => Kind::Advert,
        _ => return Ok(None),
    };
    let bad = Err(DropReason::BadNdp);
    if ip.hop_limit() != HOP_LIMIT || msg[1] != 0 || msg.len() < BODY_LEN {
        return bad;
    }
    let (src, dst) = (ip.src(), ip.dst());
    let Ok(len) = u32::try_from(msg.len()) else {
        return bad;
    };
    if checksum::l4_checksum(
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len),
        msg,
    ) != 0
    {
        return bad;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&msg[8..24]);
    let target = Ipv6Addr::from(t);
    if target.is_multicast() {
        return bad;
    }
    let want = match kind {
        Kind::Solicit => opt::SOURCE_LLADDR,
        Kind::Advert => opt::TARGET_LLADDR,
    };
    let mut lladdr = None;
    let mut opts = &msg[BODY_LEN..];
    while !opts.is_empty() {
        let n = opts.get(1).map_or(0, |&l| usize::from(l) * 8);
        if n == 0 || n > opts.len() {
            return bad;
        }
        if opts[0] == want && n >= LLADDR_OPT_LEN {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&opts[2..8]);
            lladdr = Some(mac);
        }
        opts = &opts[n..];
    }
    let flags = match kind {
        Kind::Solicit => {
            if src.is_unspecified() && (!is_solicited_node(dst) || lladdr.is_some()) {
                return bad;
            }
            0
        }
        Kind::Advert => {
            let f = msg[4] & (flag::ROUTER | flag::SOLICITED | flag::OVERRIDE);
            if dst.is_multicast() && f & flag::SOLICITED != 0 {
                return bad;
            }
            f
        }
    };
    Ok(Some(Ndp {
        kind,
        src,
        dst,
        target,
        flags,
        lladdr,
    }))
}

/// `ff02::1:ffXX:XXXX`: the solicited-node multicast group of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

fn is_solicited_node(a: Ipv6Addr) -> bool {
    a.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// `33:33:` + the low 32 bits of multicast group `a` (RFC 2464 7).
pub fn multicast_mac(a: Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// All-nodes multicast group, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Writes a whole NDP frame: Ethernet, IPv6 (hop limit 255), the 24-byte body
/// (`first` = type, flags byte, `target`) and one link-layer option `opt_type`
/// carrying `mac`. Returns [`FRAME_LEN`], or 0 if `out` is too short.
#[allow(clippy::too_many_arguments)]
fn build(
    out: &mut [u8],
    eth_dst: MacAddr,
    mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg: u8,
    flags: u8,
    target: Ipv6Addr,
    opt_type: u8,
) -> usize {
    let Some(out) = out.get_mut(..FRAME_LEN) else {
        return 0;
    };
    out.fill(0);
    if !ethernet::write_header(out, eth_dst, mac, EtherType::IPV6) {
        return 0;
    }
    let l3 = ethernet::HEADER_LEN;
    let icmp_len = BODY_LEN + LLADDR_OPT_LEN;
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut out[l3..l3 + ipv6::HEADER_LEN]);
        ip.set_ver_tc_flow(0, 0);
        ip.set_payload_len(icmp_len as u16);
        ip.set_next_header(ip_proto::ICMPV6);
        ip.set_hop_limit(HOP_LIMIT);
        ip.set_src(src);
        ip.set_dst(dst);
    }
    let m = &mut out[l3 + ipv6::HEADER_LEN..];
    m[0] = msg;
    m[4] = flags;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = opt_type;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac.0);
    let c = checksum::l4_checksum(
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, icmp_len as u32),
        m,
    );
    m[2..4].copy_from_slice(&c.to_be_bytes());
    FRAME_LEN
}

/// A multicast neighbour solicitation for `target` from our `src` address and
/// `mac` on that port, to `target`'s solicited-node group, with our source
/// link-layer address. Returns the frame length or 0.
pub fn build_solicit(out: &mut [u8], mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> usize {
    let group = solicited_node(target);
    build(
        out,
        multicast_mac(group),
        mac,
        src,
        group,
        msg_type::NEIGHBOR_SOLICIT,
        0,
        target,
        opt::SOURCE_LLADDR,
    )
}

/// A neighbour advertisement of our address `target` at `mac`, from `target` to
/// `dst` (Ethernet `eth_dst`), flags `flags`, with the target link-layer option.
pub fn build_advert(
    out: &mut [u8],
    mac: MacAddr,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: MacAddr,
    flags: u8,
) -> usize {
    build(
        out,
        eth_dst,
        mac,
        target,
        dst,
        msg_type::NEIGHBOR_ADVERT,
        flags,
        target,
        opt::TARGET_LLADDR,
    )
}

/// The answer to a valid solicitation `ns` for our address: solicited and
/// override flags to its sender, or, for duplicate address detection (sender
/// unspecified), unsolicited to all nodes (RFC 4861 7.2.4). `eth_src` is the
/// solicitation's Ethernet source, used when it carries no link-layer option.
pub fn build_reply(out: &mut [u8], mac: MacAddr, ns: &Ndp, eth_src: MacAddr) -> usize {
    if ns.src.is_unspecified() {
        build_advert(
            out,
            mac,
            ns.target,
            ALL_NODES,
            multicast_mac(ALL_NODES),
            flag::OVERRIDE,
        )
    } else {
        let to = ns.lladdr.map_or(eth_src, MacAddr);
        build_advert(
            out,
            mac,
            ns.target,
            ns.src,
            to,
            flag::SOLICITED | flag::OVERRIDE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Type, NetHeaders, PacketHeaders, TransportHeader};

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x22]);
    const DIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x192, 0, 0, 0, 0, 0, 1);
    const RIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x192, 0, 0, 0, 0, 0xab, 0x1211);

    /// Re-parses `f` with etherparse; (ICMPv6 type, whole ICMPv6 bytes, ip header).
    fn reparse(f: &[u8]) -> (Icmpv6Type, Vec<u8>, etherparse::Ipv6Header) {
        let h = PacketHeaders::from_ethernet_slice(f).unwrap();
        let Some(NetHeaders::Ipv6(ip, _)) = h.net else {
            panic!("not ipv6")
        };
        let Some(TransportHeader::Icmpv6(icmp)) = h.transport else {
            panic!("not icmpv6")
        };
        let payload = h.payload.slice().to_vec();
        let expect = icmp
            .icmp_type
            .calc_checksum(ip.source, ip.destination, &payload)
            .unwrap();
        assert_eq!(icmp.checksum, expect, "ICMPv6 checksum");
        let mut whole = icmp.to_bytes().to_vec();
        whole.extend_from_slice(&payload);
        (icmp.icmp_type, whole, ip)
    }

    #[test]
    fn solicitation_bytes() {
        let mut f = [0u8; 100];
        let n = build_solicit(&mut f, MAC, DIP, RIP);
        assert_eq!(n, 86);
        let f = &f[..n];
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0xab, 0x12, 0x11]);
        assert_eq!(&f[6..12], &MAC.0);
        let (ty, body, ip) = reparse(f);
        assert_eq!(
            ty,
            Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                bytes5to8: [0; 4]
            }
        );
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(ip.source, DIP.octets());
        assert_eq!(
            Ipv6Addr::from(ip.destination),
            "ff02::1:ffab:1211".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(&body[8..24], &RIP.octets());
        assert_eq!(&body[24..32], &[1, 1, 2, 0, 0, 0, 0, 0x11]);

        // Our own parser accepts it and reads the option.
        let ns = parse(&f[14..], 40).unwrap().unwrap();
        assert_eq!(
            (ns.kind, ns.target, ns.lladdr),
            (Kind::Solicit, RIP, Some(MAC.0))
        );
    }

    #[test]
    fn reply_to_solicitation() {
        let mut s = [0u8; FRAME_LEN];
        build_solicit(&mut s, PEER, RIP, DIP);
        let ns = parse(&s[14..], 40).unwrap().unwrap();
        let mut f = [0u8; FRAME_LEN];
        let n = build_reply(&mut f, MAC, &ns, PEER);
        assert_eq!(n, FRAME_LEN);
        assert_eq!(&f[..6], &PEER.0, "unicast back to the solicitor");
        let (ty, body, ip) = reparse(&f);
        assert_eq!(
            ty,
            Icmpv6Type::Unknown {
                type_u8: 136,
                code_u8: 0,
                bytes5to8: [0x60, 0, 0, 0]
            }
        );
        assert_eq!(
            (ip.source, ip.destination, ip.hop_limit),
            (DIP.octets(), RIP.octets(), 255)
        );
        assert_eq!(&body[8..24], &DIP.octets());
        assert_eq!(&body[24..32], &[2, 1, 2, 0, 0, 0, 0, 0x11], "target lladdr");
        let na = parse(&f[14..], 40).unwrap().unwrap();
        assert_eq!(na.kind, Kind::Advert);
        assert_eq!(na.flags, flag::SOLICITED | flag::OVERRIDE);
        assert_eq!(na.lladdr, Some(MAC.0));

        // Duplicate address detection: to all nodes, not solicited.
        let dad = Ndp {
            src: Ipv6Addr::UNSPECIFIED,
            lladdr: None,
            ..ns
        };
        build_reply(&mut f, MAC, &dad, PEER);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let na = parse(&f[14..], 40).unwrap().unwrap();
        assert_eq!((na.dst, na.flags), (ALL_NODES, flag::OVERRIDE));
    }

    #[test]
    fn unsolicited_advert_to_all_nodes() {
        let mut f = [0u8; FRAME_LEN];
        let n = build_advert(
            &mut f,
            MAC,
            DIP,
            ALL_NODES,
            multicast_mac(ALL_NODES),
            flag::OVERRIDE,
        );
        let (_, body, ip) = reparse(&f[..n]);
        assert_eq!(ip.destination, ALL_NODES.octets());
        assert_eq!(body[4], 0x20);
    }

    /// A kernel-like NS built by hand, then broken one way at a time.
    #[test]
    fn validity_checks() {
        let mut good = [0u8; FRAME_LEN];
        build_solicit(&mut good, PEER, RIP, DIP);
        let ip = |f: &[u8]| f[14..].to_vec();
        assert!(parse(&ip(&good), 40).unwrap().is_some());
        let refill = |f: &mut [u8]| {
            let (src, dst) = {
                let p = Ipv6Packet::new_unchecked(&f[14..]);
                (p.src(), p.dst())
            };
            let len = f.len() - 54;
            f[56] = 0;
            f[57] = 0;
            let c = checksum::l4_checksum(
                checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len as u32),
                &f[54..],
            );
            f[56..58].copy_from_slice(&c.to_be_bytes());
        };
        let bad = |f: &[u8]| parse(&f[14..], 40);

        let mut hop = good;
        hop[21] = 64;
        assert_eq!(bad(&hop), Err(DropReason::BadNdp), "hop limit");
        let mut code = good;
        code[55] = 1;
        refill(&mut code);
        assert_eq!(bad(&code), Err(DropReason::BadNdp), "code");
        let mut sum = good;
        sum[60] ^= 0xff;
        assert_eq!(bad(&sum), Err(DropReason::BadNdp), "checksum");
        let mut mcast = good;
        mcast[62] = 0xff;
        refill(&mut mcast);
        assert_eq!(bad(&mcast), Err(DropReason::BadNdp), "multicast target");
        let mut zero_opt = good;
        zero_opt[79] = 0;
        refill(&mut zero_opt);
        assert_eq!(bad(&zero_opt), Err(DropReason::BadNdp), "option length 0");
        let mut long_opt = good;
        long_opt[79] = 2;
        refill(&mut long_opt);
        assert_eq!(
            bad(&long_opt),
            Err(DropReason::BadNdp),
            "option past the end"
        );
        // DAD probe with an SLLA option
        let mut dad = good;
        dad[22..38].fill(0);
        refill(&mut dad);
        assert_eq!(
            bad(&dad),
            Err(DropReason::BadNdp),
            "unspecified source with SLLA"
        );
        // short body: only 16 bytes of ICMPv6
        let mut short = good[..14 + 40 + 16].to_vec();
        short[18..20].copy_from_slice(&16u16.to_be_bytes());
        refill(&mut short);
        assert_eq!(bad(&short), Err(DropReason::BadNdp), "length");
        // NA to a multicast group with S set
        let mut na = [0u8; FRAME_LEN];
        build_advert(
            &mut na,
            MAC,
            DIP,
            ALL_NODES,
            multicast_mac(ALL_NODES),
            flag::SOLICITED,
        );
        assert_eq!(bad(&na), Err(DropReason::BadNdp), "multicast solicited NA");
        // Not NDP: an echo request is left alone
        let mut echo = good;
        echo[54] = msg_type::ECHO_REQUEST;
        assert_eq!(bad(&echo), Ok(None));
        // Truncated ICMPv6 / payload length beyond the buffer
        assert!(parse(&good[14..60], 40).is_err());
    }

    proptest::proptest! {
        /// Whatever the bytes and the offset, parsing never panics.
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            l4 in 0usize..130,
        ) {
            let _ = parse(&bytes, l4);
        }

        /// Any single-bit change of a valid solicitation is either still valid
        /// NDP, not NDP, or refused with a reason: never a panic.
        #[test]
        fn bitflips_of_a_solicitation(at in 0usize..(FRAME_LEN - 14), bit in 0u8..8) {
            let mut f = [0u8; FRAME_LEN];
            build_solicit(&mut f, PEER, RIP, DIP);
            f[14 + at] ^= 1 << bit;
            let _ = parse(&f[14..], 40);
        }
    }
}
