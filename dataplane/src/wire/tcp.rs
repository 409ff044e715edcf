//! TCP segment view (RFC 9293): ports, sequence numbers, flags, data offset and the
//! checksum, with port/sequence setters that update the checksum incrementally.
//!
//! The view's buffer must be exactly the segment (the IP payload, bounded by the IP
//! length), because the checksum covers it whole. Connection state belongs to
//! `conntrack`; options (MSS, TOA) are only exposed as bytes here.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip_proto;
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// TCP flag bits as they sit in byte 13 of the header.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view over a TCP segment (header, options, payload).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` if it holds a whole TCP header: at least 20 bytes, data offset
    /// at least 5 words and within the segment. Otherwise `BadL4`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(DropReason::BadL4);
        }
        let hl = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if hl < MIN_HEADER_LEN || hl > b.len() {
            return Err(DropReason::BadL4);
        }
        Ok(TcpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline(always)]
    fn u32_at(&self, r: std::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[r];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK)
    }

    /// Data offset in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] >> 4
    }

    /// Header length in bytes (options included).
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The flag byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn urgent(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Segment length (header and payload) as the pseudo header counts it.
    pub fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// `true` if the checksum over the IPv4 pseudo header and the segment is right.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u16::try_from(b.len()) else {
            return false;
        };
        checksum::l4_checksum(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len), b) == 0
    }

    /// `true` if the checksum over the IPv6 pseudo header and the segment is right.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::l4_checksum(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len), b) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    fn set_u32(&mut self, r: std::ops::Range<usize>, v: u32) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, p: u16) {
        self.set_u16(field::SRC_PORT, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        self.set_u16(field::DST_PORT, p);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        self.set_u32(field::SEQ, v);
    }

    pub fn set_ack_number(&mut self, v: u32) {
        self.set_u32(field::ACK, v);
    }

    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    pub fn set_window(&mut self, v: u16) {
        self.set_u16(field::WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Sets the source port and updates the checksum incrementally.
    pub fn set_src_port_incr(&mut self, p: u16) {
        let c = checksum::update16(self.checksum(), self.src_port(), p);
        self.set_checksum(c);
        self.set_src_port(p);
    }

    /// Sets the destination port and updates the checksum incrementally.
    pub fn set_dst_port_incr(&mut self, p: u16) {
        let c = checksum::update16(self.checksum(), self.dst_port(), p);
        self.set_checksum(c);
        self.set_dst_port(p);
    }

    /// Sets the sequence number and updates the checksum incrementally (FULLNAT
    /// sequence offsets, SYN proxy).
    pub fn set_seq_number_incr(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.seq_number(), v);
        self.set_checksum(c);
        self.set_seq_number(v);
    }

    /// Sets the acknowledgment number and updates the checksum incrementally.
    pub fn set_ack_number_incr(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.ack_number(), v);
        self.set_checksum(c);
        self.set_ack_number(v);
    }

    /// Accounts in the checksum for a pseudo-header address change from `old` to
    /// `new` (both 4 or both 16 bytes) made in the IP header.
    pub fn update_checksum_addr(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Recomputes the checksum from scratch for an IPv4 pseudo header.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        let c = checksum::l4_checksum(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len), b);
        self.set_checksum(c);
    }

    /// Recomputes the checksum from scratch for an IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let c = checksum::l4_checksum(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len), b);
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..hl]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// Option kinds the dataplane reads or writes (RFC 9293, 7323, 2018).
pub mod opt {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// Edit the header of TCP segment `seg` (exactly the segment) in place with
/// `edit`, which gets the header (options included) and says whether it
/// changed anything; the checksum is then updated from the header's sums
/// before and after, so fields at any alignment (options) are handled.
/// `false` (and unchanged) for a segment shorter than its header.
pub fn edit_header(seg: &mut [u8], edit: impl FnOnce(&mut [u8]) -> bool) -> bool {
    let Ok(t) = TcpPacket::new_checked(&*seg) else {
        return false;
    };
    let hl = t.header_len();
    let csum = t.checksum();
    // The header starts at an even offset of the segment: whole-header sums
    // with the checksum field zeroed.
    let sum_of = |h: &[u8]| {
        let mut b = [0u8; 60];
        b[..hl].copy_from_slice(&h[..hl]);
        b[16] = 0;
        b[17] = 0;
        checksum::sum(&b[..hl])
    };
    let before = sum_of(seg);
    if !edit(&mut seg[..hl]) {
        return false;
    }
    let s = u32::from(!csum) + u32::from(!checksum::fold(before)) + sum_of(seg);
    seg[16..18].copy_from_slice(&(!checksum::fold(s)).to_be_bytes());
    true
}

/// Map every SACK block edge in the options of TCP header `hdr` (as
/// [`edit_header`] lends it) through `f`; `true` if one changed. The
/// checksum is the caller's ([`edit_header`]).
pub fn map_sack_edges(hdr: &mut [u8], f: impl Fn(u32) -> u32) -> bool {
    let mut changed = false;
    let mut i = MIN_HEADER_LEN;
    while i < hdr.len() {
        match hdr[i] {
            opt::EOL => break,
            opt::NOP => i += 1,
            kind => {
                let Some(&l) = hdr.get(i + 1) else { break };
                let l = usize::from(l);
                if l < 2 || i + l > hdr.len() {
                    break;
                }
                if kind == opt::SACK && l >= 10 && (l - 2) % 8 == 0 {
                    for e in (i + 2..i + l).step_by(4) {
                        let v = u32::from_be_bytes([hdr[e], hdr[e + 1], hdr[e + 2], hdr[e + 3]]);
                        let nv = f(v);
                        if nv != v {
                            hdr[e..e + 4].copy_from_slice(&nv.to_be_bytes());
                            changed = true;
                        }
                    }
                }
                i += l;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// An IPv4 TCP SYN with an MSS option, built by etherparse; returns the segment.
    fn syn_segment() -> Vec<u8> {
        let mut out = Vec::new();
        let mut h = etherparse::TcpHeader::new(40000, 80, 0x0102_0304, 64240);
        h.syn = true;
        h.set_options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64)
            .tcp_header(h)
            .write(&mut out, b"hello")
            .unwrap();
        out.split_off(20)
    }

    #[test]
    fn parses_segment() {
        let s = syn_segment();
        let t = TcpPacket::new_checked(&s[..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 0x0102_0304);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.options(), &[2, 4, 0x05, 0xb4]);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst());
        assert_eq!(t.flags(), flags::SYN);
        assert_eq!(t.window(), 64240);
        assert_eq!(t.payload(), b"hello");
        assert!(t.verify_checksum_v4(SRC, DST));
        assert!(!t.verify_checksum_v4(SRC, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn rejects_bad_headers() {
        let s = syn_segment();
        assert_eq!(
            TcpPacket::new_checked(&s[..19]).err(),
            Some(DropReason::BadL4)
        );
        // data offset 6 words but only 20 bytes
        assert_eq!(
            TcpPacket::new_checked(&s[..23]).err(),
            Some(DropReason::BadL4)
        );
        let mut d = s.clone();
        d[12] = 0x40; // data offset 4
        assert_eq!(
            TcpPacket::new_checked(&d[..]).err(),
            Some(DropReason::BadL4)
        );
        d[12] = 0xf0; // 60 bytes > 29
        assert_eq!(
            TcpPacket::new_checked(&d[..]).err(),
            Some(DropReason::BadL4)
        );
    }

    #[test]
    fn incremental_setters_keep_checksum() {
        let mut s = syn_segment();
        let mut t = TcpPacket::new_checked(&mut s[..]).unwrap();
        t.set_src_port_incr(1);
        t.set_dst_port_incr(65535);
        t.set_seq_number_incr(0xffff_0000);
        t.set_ack_number_incr(7);
        assert!(t.verify_checksum_v4(SRC, DST));
        let new_dst = Ipv4Addr::new(192, 168, 9, 9);
        t.update_checksum_addr(&DST.octets(), &new_dst.octets());
        assert!(t.verify_checksum_v4(SRC, new_dst));
        let c = t.checksum();
        t.fill_checksum_v4(SRC, new_dst);
        assert!(t.verify_checksum_v4(SRC, new_dst));
        assert!(
            c == t.checksum()
                || (c, t.checksum()) == (0, 0xffff)
                || (c, t.checksum()) == (0xffff, 0)
        );
    }
}
