//! ICMPv4 view (RFC 792) and the in-place echo reply the director sends for its
//! own addresses.
//!
//! Translating ICMP errors that quote a NATed connection belongs to the pipeline
//! (it needs the connection); this file only reads and writes the message bytes.

use super::checksum;
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet};
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

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::REST;

/// ICMPv4 message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// A view over an ICMPv4 message (the IP payload).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` if it holds the 8-byte header; otherwise `BadL4`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(DropReason::BadL4);
        }
        Ok(Icmpv4Packet { buffer })
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

    /// Identifier of an echo request/reply.
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Sequence number of an echo request/reply.
    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::ECHO_SEQ)
    }

    /// `true` if the error types that quote an offending packet (unreachable,
    /// time exceeded, parameter problem, redirect).
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DEST_UNREACH
                | msg_type::REDIRECT
                | msg_type::TIME_EXCEEDED
                | msg_type::PARAM_PROBLEM
        )
    }

    /// Bytes after the 8-byte header: echo data, or the quoted IP packet of an error.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::REST..]
    }

    /// `true` if the message sums to all ones (ICMPv4 has no pseudo header).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets type and code and updates the checksum incrementally.
    pub fn set_type_code_incr(&mut self, t: u8, c: u8) {
        let old = u16::from_be_bytes([self.msg_type(), self.msg_code()]);
        let new = u16::from_be_bytes([t, c]);
        let sum = checksum::update16(self.checksum(), old, new);
        self.set_msg_type(t);
        self.set_msg_code(c);
        self.set_checksum(sum);
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::REST..]
    }
}

/// Turns an IPv4 ICMP echo request (the slice starts at the IP header; bytes past
/// the IP total length are ignored) into the echo reply, in place: type 8 -> 0,
/// source and destination swapped, TTL reset to 64, both checksums updated
/// incrementally. The payload is untouched.
///
/// Returns `false` and leaves the packet unchanged if it is not a well-formed,
/// unfragmented echo request with valid IP and ICMP checksums.
pub fn echo_reply_in_place(ip_packet: &mut [u8]) -> bool {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *ip_packet) else {
        return false;
    };
    if ip.proto() != ip_proto::ICMP || ip.is_fragment() {
        return false;
    }
    {
        let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
            return false;
        };
        if icmp.msg_type() != msg_type::ECHO_REQUEST
            || icmp.msg_code() != 0
            || !icmp.verify_checksum()
        {
            return false;
        }
        icmp.set_type_code_incr(msg_type::ECHO_REPLY, 0);
    }
    // Swapping the addresses leaves the header sum unchanged.
    let (src, dst) = (ip.src(), ip.dst());
    ip.set_src(dst);
    ip.set_dst(src);
    ip.set_ttl_incr(ipv4::DEFAULT_TTL);
    true
}

/// Longest ICMP error message the director builds (IP header, ICMP header and
/// the quoted packet), within the 576 bytes every host accepts (RFC 1812).
pub const MAX_ERROR_LEN: usize = 576;

/// Builds, into `out` (an Ethernet frame; MACs left zero for the sender to
/// fill), an ICMP destination-unreachable / fragmentation-needed (type 3 code
/// 4, RFC 1191) from `src` to the sender of `orig` (the offending IPv4 packet,
/// from its header; bytes after its total length ignored) announcing
/// `next_hop_mtu`. Quotes as much of `orig` as fits in 576 bytes. Returns the
/// frame length, or 0 if `orig` is not a valid IPv4 packet or `out` too short.
pub fn build_frag_needed(
    out: &mut [u8],
    orig: &[u8],
    src: std::net::Ipv4Addr,
    next_hop_mtu: u16,
) -> usize {
    const ETH: usize = 14;
    let Ok(ip) = Ipv4Packet::new_checked_no_csum(orig) else {
        return 0;
    };
    let total = usize::from(ip.total_len());
    let quote = total.min(MAX_ERROR_LEN - ipv4::MIN_HEADER_LEN - HEADER_LEN);
    let icmp_len = HEADER_LEN + quote;
    let frame_len = ETH + ipv4::MIN_HEADER_LEN + icmp_len;
    if out.len() < frame_len {
        return 0;
    }
    out[..12].fill(0);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let repr = ipv4::Ipv4Repr {
        src,
        dst: ip.src(),
        proto: ip_proto::ICMP,
        ttl: ipv4::DEFAULT_TTL,
        ident: 0,
        dont_frag: false,
        dscp_ecn: 0,
        payload_len: icmp_len as u16,
    };
    if !repr.emit(&mut out[ETH..]) {
        return 0;
    }
    let m = &mut out[ETH + ipv4::MIN_HEADER_LEN..frame_len];
    m[..HEADER_LEN].copy_from_slice(&[msg_type::DEST_UNREACH, 4, 0, 0, 0, 0, 0, 0]);
    m[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    m[HEADER_LEN..].copy_from_slice(&orig[..quote]);
    let c = checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frame_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // 10.0.0.2 -> 10.0.0.1 echo request id 0x1234 seq 1 "abcdefgh", ttl 63, built
    // by etherparse, followed by 4 bytes of Ethernet padding.
    fn request() -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 63)
            .icmpv4_echo_request(0x1234, 1)
            .write(&mut out, b"abcdefgh")
            .unwrap();
        out.extend_from_slice(&[0; 4]);
        out
    }

    #[test]
    fn echo_reply_bytes() {
        let req = request();
        let mut p = req.clone();
        assert!(echo_reply_in_place(&mut p));
        let (h, rest) = etherparse::Ipv4Header::from_slice(&p).unwrap();
        assert_eq!(h.source, [10, 0, 0, 1]);
        assert_eq!(h.destination, [10, 0, 0, 2]);
        assert_eq!(h.time_to_live, 64);
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        let icmp = etherparse::Icmpv4Slice::from_slice(&rest[..16]).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 1 })
        );
        assert_eq!(icmp.payload(), b"abcdefgh");
        assert!(Icmpv4Packet::new_checked(&rest[..16])
            .unwrap()
            .verify_checksum());
        let hdr = icmp.header();
        assert_eq!(hdr.checksum, hdr.icmp_type.calc_checksum(icmp.payload()));
        // only type, checksum, addresses, ttl and IP checksum changed
        let diff: Vec<usize> = (0..p.len()).filter(|&i| p[i] != req[i]).collect();
        assert!(
            diff.iter()
                .all(|&i| matches!(i, 8 | 10 | 11 | 12..=19 | 20 | 22 | 23)),
            "{diff:?}"
        );
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn echo_reply_refuses_others() {
        let req = request();
        for (i, v) in [(20usize, 0u8), (21, 1), (9, 17), (6, 0x20), (30, 0xff)] {
            let mut p = req.clone();
            p[i] = v;
            // keep the IP header valid where the test is about ICMP
            if i < 20 {
                let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
                ip.fill_checksum();
            }
            let before = p.clone();
            assert!(!echo_reply_in_place(&mut p), "byte {i}");
            assert_eq!(p, before);
        }
        assert!(!echo_reply_in_place(&mut req.clone()[..27]));
    }

    #[test]
    fn frag_needed_quotes_the_packet() {
        let mut orig = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 100], 64)
            .tcp(40000, 80, 1, 1000)
            .write(&mut orig, &[0x55; 1000])
            .unwrap();
        let mut out = [0u8; 600];
        let n = build_frag_needed(&mut out, &orig, Ipv4Addr::new(10, 0, 0, 100), 1480);
        assert_eq!(n, 14 + 576);
        let h = etherparse::PacketHeaders::from_ethernet_slice(&out[..n]).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = &h.net else {
            panic!()
        };
        assert_eq!(
            (ip.source, ip.destination),
            ([10, 0, 0, 100], [10, 0, 0, 2])
        );
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let Some(etherparse::TransportHeader::Icmpv4(i)) = &h.transport else {
            panic!()
        };
        assert_eq!(
            i.icmp_type,
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1480
                }
            )
        );
        assert_eq!(i.checksum, i.icmp_type.calc_checksum(h.payload.slice()));
        assert_eq!(
            &h.payload.slice()[..28],
            &orig[..28],
            "quotes the header and ports"
        );
        assert_eq!(
            build_frag_needed(&mut out[..100], &orig, Ipv4Addr::LOCALHOST, 1),
            0
        );
        assert_eq!(
            build_frag_needed(&mut out, &orig[..10], Ipv4Addr::LOCALHOST, 1),
            0
        );
    }
}
