//! ICMPv6 view (RFC 4443) and the in-place echo reply for our IPv6 addresses.
//!
//! Neighbour discovery (solicitation/advertisement) belongs to the neighbour code;
//! this file only reads and writes message bytes.

use std::net::Ipv6Addr;

use super::checksum;
use super::ip_proto;
use super::ipv6::{self, Ipv6Packet};
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const REST: usize = 8;
}

/// Every ICMPv6 message has at least the 4-byte header and a 4-byte body.
pub const HEADER_LEN: usize = field::REST;

/// ICMPv6 message types.
pub mod msg_type {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// A view over an ICMPv6 message (the upper-layer bytes of an IPv6 packet).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` if it holds 8 bytes (header and first body word); else `BadL4`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(DropReason::BadL4);
        }
        Ok(Icmpv6Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::ECHO_SEQ)
    }

    /// Error messages (types below 128) quote the offending packet.
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::REST..]
    }

    /// `true` if the checksum over the IPv6 pseudo header and message is right.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::l4_checksum(
            checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len),
            b,
        ) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets type and code and updates the checksum incrementally.
    pub fn set_type_code_incr(&mut self, t: u8, c: u8) {
        let old = u16::from_be_bytes([self.msg_type(), self.msg_code()]);
        let sum = checksum::update16(self.checksum(), old, u16::from_be_bytes([t, c]));
        self.buffer.as_mut()[field::TYPE] = t;
        self.buffer.as_mut()[field::CODE] = c;
        self.set_checksum(sum);
    }

    /// Accounts for a pseudo-header address change (16 bytes each).
    pub fn update_checksum_addr(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Recomputes the checksum from scratch.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let c = checksum::l4_checksum(
            checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len),
            b,
        );
        self.set_checksum(c);
    }
}

/// Turns an ICMPv6 echo request (the slice starts at the IPv6 header; bytes past
/// the payload length are ignored) into the echo reply, in place: type 128 -> 129,
/// addresses swapped (the pseudo-header sum does not change), hop limit reset to 64.
///
/// The caller has checked the destination is one of our unicast addresses.
/// Returns `false` and leaves the packet unchanged if it is not a well-formed,
/// unfragmented echo request with a valid checksum.
pub fn echo_reply_in_place(ip_packet: &mut [u8]) -> bool {
    let Ok(ip) = Ipv6Packet::new_checked(&*ip_packet) else {
        return false;
    };
    let (src, dst, end) = (ip.src(), ip.dst(), ip.total_len());
    let Ok(upper) = ipv6::skip_ext_headers(&ip_packet[..end]) else {
        return false;
    };
    if upper.next_header != ip_proto::ICMPV6 || upper.frag.is_some() {
        return false;
    }
    {
        let Ok(mut icmp) = Icmpv6Packet::new_checked(&mut ip_packet[upper.l4_off..end]) else {
            return false;
        };
        if icmp.msg_type() != msg_type::ECHO_REQUEST
            || icmp.msg_code() != 0
            || !icmp.verify_checksum(src, dst)
        {
            return false;
        }
        icmp.set_type_code_incr(msg_type::ECHO_REPLY, 0);
    }
    let mut ip = Ipv6Packet::new_unchecked(ip_packet);
    ip.set_src(dst);
    ip.set_dst(src);
    ip.set_hop_limit(ipv6::DEFAULT_HOP_LIMIT);
    true
}

/// ICMPv6 errors are at most the IPv6 minimum MTU long (RFC 4443 2.4 (c)).
pub const MAX_ERROR_LEN: usize = 1280;

/// Builds, into `out` (an Ethernet frame; MACs left zero for the sender to
/// fill), an ICMPv6 packet-too-big (type 2 code 0, RFC 4443 3.2) from `src` to
/// the sender of `orig` (the offending IPv6 packet, from its header; bytes after
/// its payload length ignored) announcing `mtu`. Quotes as much of `orig` as
/// fits in 1280 bytes. Returns the frame length, or 0 if `orig` is not an IPv6
/// packet or `out` is too short.
pub fn build_packet_too_big(out: &mut [u8], orig: &[u8], src: Ipv6Addr, mtu: u32) -> usize {
    const ETH: usize = 14;
    let Ok(ip) = Ipv6Packet::new_checked(orig) else {
        return 0;
    };
    let quote = ip
        .total_len()
        .min(MAX_ERROR_LEN - ipv6::HEADER_LEN - HEADER_LEN);
    let icmp_len = HEADER_LEN + quote;
    let frame_len = ETH + ipv6::HEADER_LEN + icmp_len;
    let Some(out) = out.get_mut(..frame_len) else {
        return 0;
    };
    let dst = ip.src();
    out[..12].fill(0);
    out[12..14].copy_from_slice(&[0x86, 0xdd]);
    {
        let mut h = Ipv6Packet::new_unchecked(&mut out[ETH..ETH + ipv6::HEADER_LEN]);
        h.set_ver_tc_flow(0, 0);
        h.set_payload_len(icmp_len as u16);
        h.set_next_header(ip_proto::ICMPV6);
        h.set_hop_limit(ipv6::DEFAULT_HOP_LIMIT);
        h.set_src(src);
        h.set_dst(dst);
    }
    let m = &mut out[ETH + ipv6::HEADER_LEN..];
    m[..4].copy_from_slice(&[msg_type::PACKET_TOO_BIG, 0, 0, 0]);
    m[4..8].copy_from_slice(&mtu.to_be_bytes());
    m[HEADER_LEN..].copy_from_slice(&orig[..quote]);
    let c = checksum::l4_checksum(
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, icmp_len as u32),
        m,
    );
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frame_len
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
    const B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];

    fn request() -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ipv6(A, B, 20)
            .icmpv6_echo_request(0x77, 3)
            .write(&mut v, b"ping6 payload")
            .unwrap();
        v
    }

    #[test]
    fn echo_reply_v6() {
        let req = request();
        let i = Icmpv6Packet::new_checked(&req[40..]).unwrap();
        assert!(i.verify_checksum(Ipv6Addr::from(A), Ipv6Addr::from(B)));
        assert_eq!((i.echo_ident(), i.echo_seq()), (0x77, 3));
        let mut p = req.clone();
        assert!(echo_reply_in_place(&mut p));
        let (h, rest) = etherparse::Ipv6Header::from_slice(&p).unwrap();
        assert_eq!((h.source, h.destination, h.hop_limit), (B, A, 64));
        let s = etherparse::Icmpv6Slice::from_slice(rest).unwrap();
        assert_eq!(
            s.icmp_type(),
            etherparse::Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x77, seq: 3 })
        );
        assert_eq!(s.payload(), b"ping6 payload");
        let expect = s.icmp_type().calc_checksum(B, A, s.payload()).unwrap();
        assert_eq!(s.checksum(), expect);

        // not a request any more
        assert!(!echo_reply_in_place(&mut p.clone()));
        let mut bad = req.clone();
        bad[50] ^= 1;
        assert!(!echo_reply_in_place(&mut bad));
        assert!(!echo_reply_in_place(&mut req.clone()[..47]));
    }

    #[test]
    fn packet_too_big_quotes_the_packet() {
        let mut big = Vec::new();
        etherparse::PacketBuilder::ipv6(A, B, 60)
            .tcp(40000, 80, 7, 1000)
            .write(&mut big, &[0x61; 1440])
            .unwrap();
        assert_eq!(big.len(), 1500);
        let vip = Ipv6Addr::from(B);
        let mut out = [0u8; 14 + MAX_ERROR_LEN];
        let n = build_packet_too_big(&mut out, &big, vip, 1460);
        assert_eq!(n, 14 + 1280, "capped at the IPv6 minimum MTU");
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        let h = etherparse::PacketHeaders::from_ethernet_slice(&out[..n]).unwrap();
        let Some(etherparse::NetHeaders::Ipv6(ip, _)) = h.net else {
            panic!()
        };
        assert_eq!(
            (ip.source, ip.destination),
            (B, A),
            "from the VIP to the client"
        );
        assert_eq!(usize::from(ip.payload_length), 1240);
        let Some(etherparse::TransportHeader::Icmpv6(icmp)) = h.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type,
            etherparse::Icmpv6Type::PacketTooBig { mtu: 1460 }
        );
        let quoted = h.payload.slice();
        assert_eq!(quoted, &big[..1232]);
        let expect = icmp.icmp_type.calc_checksum(B, A, quoted).unwrap();
        assert_eq!(icmp.checksum, expect);

        // A small packet is quoted whole; garbage gives nothing.
        let n = build_packet_too_big(&mut out, &request(), vip, 1280);
        assert_eq!(n, 14 + 40 + 8 + request().len());
        assert_eq!(build_packet_too_big(&mut out, &[0x45; 60], vip, 1280), 0);
        assert_eq!(build_packet_too_big(&mut out[..100], &big, vip, 1280), 0);
    }
}
