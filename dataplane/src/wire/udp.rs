//! UDP datagram view (RFC 768): ports, length and checksum, with port setters that
//! update the checksum incrementally.
//!
//! The one UDP rule this file owns: over IPv4 a zero checksum means "none" and must
//! stay zero after a rewrite, and a computed checksum of zero is sent as `0xffff`.
//! The view's buffer is the IP payload; the datagram is bounded by the UDP length.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip_proto;
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = 8;

/// A view over a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` if it holds a UDP header whose length field is at least 8 and
    /// within the buffer. Otherwise `BadL4`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DropReason::BadL4);
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len < HEADER_LEN || len > b.len() {
            return Err(DropReason::BadL4);
        }
        Ok(UdpPacket { buffer })
    }

    /// Wraps `buffer` if it holds a UDP header whose length field is at least
    /// 8: the first fragment of a datagram, which holds the header and only
    /// part of the rest. Only the header may be read and written then (ports,
    /// incremental checksum updates). Otherwise `BadL4`.
    pub fn new_checked_header(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN || usize::from(u16::from_be_bytes([b[4], b[5]])) < HEADER_LEN {
            return Err(DropReason::BadL4);
        }
        Ok(UdpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header and payload.
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    pub fn payload(&self) -> &[u8] {
        &self.datagram()[HEADER_LEN..]
    }

    /// `true` if the checksum is right over the IPv4 pseudo header, or absent (0).
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len());
        checksum::l4_checksum(pseudo, self.datagram()) == 0
    }

    /// `true` if the checksum is right over the IPv6 pseudo header (where it is
    /// mandatory: zero fails).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        checksum::l4_checksum(pseudo, self.datagram()) == 0
    }
}

/// A rewritten checksum: zero stays zero (none), a zero result is sent as all ones.
fn rewritten(old: u16, new: u16) -> u16 {
    match (old, new) {
        (0, _) => 0,
        (_, 0) => 0xffff,
        (_, c) => c,
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, p: u16) {
        self.set_u16(field::SRC_PORT, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        self.set_u16(field::DST_PORT, p);
    }

    pub fn set_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    fn incr16(&mut self, old: u16, new: u16) {
        let c = self.checksum();
        self.set_checksum(rewritten(c, checksum::update16(c, old, new)));
    }

    /// Sets the source port; updates a present checksum incrementally.
    pub fn set_src_port_incr(&mut self, p: u16) {
        self.incr16(self.src_port(), p);
        self.set_src_port(p);
    }

    /// Sets the destination port; updates a present checksum incrementally.
    pub fn set_dst_port_incr(&mut self, p: u16) {
        self.incr16(self.dst_port(), p);
        self.set_dst_port(p);
    }

    /// Accounts for a pseudo-header address change (both 4 or both 16 bytes);
    /// a zero (absent) checksum stays zero.
    pub fn update_checksum_addr(&mut self, old: &[u8], new: &[u8]) {
        let c = self.checksum();
        self.set_checksum(rewritten(c, checksum::update_addr(c, old, new)));
    }

    fn fill(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(pseudo, self.datagram());
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes the checksum from scratch for an IPv4 pseudo header.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        self.fill(checksum::pseudo_header_v4(src, dst, ip_proto::UDP, len));
    }

    /// Computes the checksum from scratch for an IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let len = u32::from(self.len());
        self.fill(checksum::pseudo_header_v6(src, dst, ip_proto::UDP, len));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64)
            .udp(5353, 53)
            .write(&mut out, payload)
            .unwrap();
        out.split_off(20)
    }

    #[test]
    fn parses_datagram() {
        let d = datagram(b"query");
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (5353, 53, 13));
        assert_eq!(u.payload(), b"query");
        assert!(u.verify_checksum_v4(SRC, DST));
        assert!(!u.verify_checksum_v4(DST, DST));
        // trailing bytes past the UDP length are not part of it
        let mut padded = d.clone();
        padded.extend_from_slice(&[0xaa; 6]);
        let u = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(u.payload(), b"query");
        assert!(u.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn rejects_bad_lengths() {
        let d = datagram(b"query");
        assert_eq!(
            UdpPacket::new_checked(&d[..7]).err(),
            Some(DropReason::BadL4)
        );
        assert_eq!(
            UdpPacket::new_checked(&d[..12]).err(),
            Some(DropReason::BadL4)
        );
        let mut s = d.clone();
        s[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&s[..]).err(),
            Some(DropReason::BadL4)
        );
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut d = datagram(b"x");
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.set_checksum(0);
        u.set_dst_port_incr(8053);
        u.update_checksum_addr(&DST.octets(), &[1, 2, 3, 4]);
        assert_eq!(u.checksum(), 0);
        assert!(u.verify_checksum_v4(SRC, Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a source port whose rewrite makes the checksum sum to zero.
        let mut d = datagram(b"");
        let c = UdpPacket::new_checked(&d[..]).unwrap().checksum();
        let sport = UdpPacket::new_checked(&d[..]).unwrap().src_port();
        // eqn 3 result is 0 when ~c + ~old + new folds to 0xffff: new = c + old.
        let target = checksum::fold(u32::from(c) + u32::from(sport));
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.set_src_port_incr(target);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(SRC, DST));
    }
}
