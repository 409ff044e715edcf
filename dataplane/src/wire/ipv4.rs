//! IPv4 header view (RFC 791): validation at the edge, getters, and the setters the
//! forwarding methods need, each keeping the header checksum right incrementally
//! (RFC 1624) so a rewrite never sums the whole header again.
//!
//! Owns the IP header only; L4 checksums that cover the pseudo header are updated by
//! `nat`, and the TUN outer header is written by [`Ipv4Repr::emit`].

use std::net::Ipv4Addr;

use super::checksum;
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// TTL the director puts on packets it originates (replies, tunnels).
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet (header and payload).
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` if it holds a valid IPv4 header: version 4, IHL >= 5, header
    /// within total length, total length within the buffer, header checksum right.
    /// The buffer may be longer than the total length (Ethernet padding).
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_checked_no_csum(buffer)?;
        if !p.verify_checksum() {
            return Err(DropReason::BadIpv4);
        }
        Ok(p)
    }

    /// [`Ipv4Packet::new_checked`] without the checksum test, for ports whose NIC
    /// verified it already (rx checksum offload).
    pub fn new_checked_no_csum(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN || b[field::VER_IHL] >> 4 != 4 {
            return Err(DropReason::BadIpv4);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if header_len < MIN_HEADER_LEN || total_len < header_len || total_len > b.len() {
            return Err(DropReason::BadIpv4);
        }
        Ok(Ipv4Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (options included).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header and payload) in bytes.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram (MF set or offset non-zero).
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn proto(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// `true` if the header (options included) sums to all ones.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        match b.first_chunk::<MIN_HEADER_LEN>() {
            Some(h) if self.ihl() == 5 => header_sum_ok(h),
            _ => checksum::verify(&b[..self.header_len()]),
        }
    }

    /// The options bytes (empty for IHL 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The L4 bytes: from the end of the header to the total length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

/// Whether an option-less IPv4 header's checksum is right: its five 32-bit
/// words summed at once (the usual header; `checksum::verify` for the rest).
#[inline]
pub fn header_sum_ok(h: &[u8; MIN_HEADER_LEN]) -> bool {
    // Read little-endian: the one's complement sum of byte-swapped words is
    // the byte-swapped sum (RFC 1071), and all ones reads the same either
    // way, so no swap per word.
    let w = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    super::checksum::fold64(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    fn incr(&mut self, old: u16, new: u16) {
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    pub fn set_version_ihl(&mut self, ihl: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (ihl & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        self.set_u16(field::IDENT, v);
    }

    /// Sets DF, clears MF and the offset.
    pub fn set_dont_frag_only(&mut self, df: bool) {
        self.set_u16(field::FLG_OFF, if df { FLAG_DF } else { 0 });
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_proto(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Sets the source address without touching the checksum.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address without touching the checksum.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Sets the source address and updates the header checksum incrementally.
    pub fn set_src_incr(&mut self, a: Ipv4Addr) {
        let c = checksum::update_addr(self.checksum(), &self.src().octets(), &a.octets());
        self.set_checksum(c);
        self.set_src(a);
    }

    /// Sets the destination address and updates the header checksum incrementally.
    pub fn set_dst_incr(&mut self, a: Ipv4Addr) {
        let c = checksum::update_addr(self.checksum(), &self.dst().octets(), &a.octets());
        self.set_checksum(c);
        self.set_dst(a);
    }

    /// Sets the TTL and updates the header checksum incrementally.
    pub fn set_ttl_incr(&mut self, ttl: u8) {
        let old = u16::from_be_bytes([self.ttl(), self.proto()]);
        let new = u16::from_be_bytes([ttl, self.proto()]);
        self.set_ttl(ttl);
        self.incr(old, new);
    }

    /// Decrements the TTL as a router does. A packet arriving with TTL 0 or 1 must
    /// not be forwarded: returns `false` and leaves it unchanged.
    pub fn dec_ttl(&mut self) -> bool {
        let ttl = self.ttl();
        if ttl <= 1 {
            return false;
        }
        self.set_ttl_incr(ttl - 1);
        true
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..len]);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// The fields of an option-less IPv4 header the director originates (TUN outer
/// header, ICMP errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub dscp_ecn: u8,
    /// L4 bytes following the header.
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Writes a 20-byte header with a valid checksum into the front of `buf`.
    /// Returns `false` if `buf` is shorter or the total length would not fit in u16.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> bool {
        let Some(total) = self.payload_len.checked_add(MIN_HEADER_LEN as u16) else {
            return false;
        };
        let Some(h) = buf.first_chunk_mut::<MIN_HEADER_LEN>() else {
            return false;
        };
        // Five 32-bit words, the checksum from their sum folded (2^16 is 1
        // in one's complement, so the words need not be split in halves):
        // no bounds check or byte store per field (tunnels emit one per
        // packet).
        let fo = if self.dont_frag { FLAG_DF } else { 0 };
        let (src, dst) = (u32::from(self.src), u32::from(self.dst));
        let w0 = 0x4500_0000 | u32::from(self.dscp_ecn) << 16 | u32::from(total);
        let w1 = u32::from(self.ident) << 16 | u32::from(fo);
        let w2 = u32::from(self.ttl) << 24 | u32::from(self.proto) << 16;
        let sum = [w0, w1, w2, src, dst].map(u64::from).iter().sum::<u64>();
        let w2 = w2 | u32::from(!checksum::fold64(sum));
        for (i, w) in [w0, w1, w2, src, dst].into_iter().enumerate() {
            h[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.2 -> 10.0.0.1, TCP, ttl 64, DF, total length 40, ident 0x1c46.
    static HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x0a, 0x88, 10, 0, 0, 2, 10, 0,
        0, 1,
    ];

    fn packet() -> [u8; 40] {
        let mut p = [0u8; 40];
        p[..20].copy_from_slice(&HEADER);
        p
    }

    fn etherparse_checksum_ok(b: &[u8]) -> bool {
        let h = etherparse::Ipv4HeaderSlice::from_slice(b)
            .unwrap()
            .to_header();
        h.calc_header_checksum() == h.header_checksum
    }

    #[test]
    fn parses_header() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.ihl(), 5);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.proto(), 6);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.payload().len(), 20);
        assert!(etherparse_checksum_ok(&b));
    }

    #[test]
    fn rejects_bad_headers() {
        let b = packet();
        let bad = |f: &dyn Fn(&mut [u8; 40]), len: usize| {
            let mut c = b;
            f(&mut c);
            Ipv4Packet::new_checked(&c[..len]).err()
        };
        assert_eq!(bad(&|_| {}, 39), Some(DropReason::BadIpv4)); // total > buffer
        assert_eq!(bad(&|_| {}, 19), Some(DropReason::BadIpv4));
        assert_eq!(bad(&|c| c[0] = 0x65, 40), Some(DropReason::BadIpv4)); // version
        assert_eq!(bad(&|c| c[0] = 0x44, 40), Some(DropReason::BadIpv4)); // IHL 4
        assert_eq!(bad(&|c| c[3] = 19, 40), Some(DropReason::BadIpv4)); // total < header
        assert_eq!(bad(&|c| c[11] ^= 1, 40), Some(DropReason::BadIpv4)); // checksum
        let mut c = b;
        c[11] ^= 1;
        assert!(Ipv4Packet::new_checked_no_csum(&c[..]).is_ok());
        // padding after total length is fine
        let mut long = [0u8; 60];
        long[..40].copy_from_slice(&b);
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).unwrap().payload().len(),
            20
        );
    }

    #[test]
    fn header_checksum_check_agrees_with_the_plain_sum() {
        // The five-word check of option-less headers against RFC 1071's sum,
        // over random headers (right and wrong checksums) with IHL 5 to 15.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000 {
            let mut b = [0u8; 60];
            for v in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x as u8;
            }
            let ihl = 5 + (i % 11) as u8;
            b[0] = 0x40 | ihl;
            let hl = usize::from(ihl) * 4;
            if i % 2 == 0 {
                b[10] = 0;
                b[11] = 0;
                let c = checksum::checksum(&b[..hl]);
                b[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let p = Ipv4Packet::new_unchecked(&b[..]);
            assert_eq!(
                p.verify_checksum(),
                checksum::verify(&b[..hl]),
                "{:?}",
                &b[..hl]
            );
        }
    }

    #[test]
    fn fragments() {
        for (w, frag) in [
            (0x4000u16, false),
            (0x2000, true),
            (0x0001, true),
            (0, false),
        ] {
            let mut b = packet();
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            p.set_u16(field::FLG_OFF, w);
            assert_eq!(p.is_fragment(), frag, "{w:#x}");
        }
    }

    #[test]
    fn incremental_setters_keep_checksum() {
        let mut b = packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_dst_incr(Ipv4Addr::new(192, 168, 100, 7));
        p.set_src_incr(Ipv4Addr::new(172, 16, 255, 254));
        assert!(p.dec_ttl());
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(c, p.checksum());
        assert_eq!(p.ttl(), 63);
        assert!(etherparse_checksum_ok(&b));

        let mut b = packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl_incr(1);
        assert!(!p.dec_ttl());
        assert_eq!(p.ttl(), 1);
        assert!(p.verify_checksum());
    }

    #[test]
    fn emits_header() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            proto: 6,
            ttl: 64,
            ident: 0x1c46,
            dont_frag: true,
            dscp_ecn: 0,
            payload_len: 20,
        };
        let mut b = [0u8; 20];
        assert!(r.emit(&mut b));
        assert_eq!(b, HEADER);
        assert!(!r.emit(&mut b[..19]));
    }

    proptest::proptest! {
        /// The header's checksum from its five words' sum folded is the
        /// checksum of its bytes, whatever carries the fields make.
        #[test]
        fn emitted_headers_verify(src in proptest::num::u32::ANY, dst in proptest::num::u32::ANY,
                                  proto in proptest::num::u8::ANY, ttl in proptest::num::u8::ANY,
                                  ident in proptest::num::u16::ANY, dont_frag in proptest::bool::ANY,
                                  dscp_ecn in proptest::num::u8::ANY, payload_len in 0u16..65_000) {
            let r = Ipv4Repr {
                src: Ipv4Addr::from(src),
                dst: Ipv4Addr::from(dst),
                proto,
                ttl,
                ident,
                dont_frag,
                dscp_ecn,
                payload_len,
            };
            let mut b = [0u8; 20];
            proptest::prop_assert!(r.emit(&mut b));
            proptest::prop_assert!(checksum::verify(&b));
        }
    }
}
