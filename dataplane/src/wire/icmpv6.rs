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
    if upper.next_header != ip_proto::ICMPV6 || upper.is_fragment {
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
}
