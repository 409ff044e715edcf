//! ARP for Ethernet/IPv4 (RFC 826): the 28-byte packet view, the in-place reply to a
//! request for one of our addresses, and request/gratuitous frame builders.
//!
//! Deciding whether a request targets one of our addresses, and the neighbour table,
//! belong to the pipeline; this file only reads and writes bytes.

use std::net::Ipv4Addr;

use super::ethernet::{self, EtherType, EthernetFrame, MacAddr};
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of an ARP frame with its Ethernet header (before padding to 60).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// ARP operation codes.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// A view over an Ethernet/IPv4 ARP packet (after the Ethernet header).
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` if it is a whole Ethernet/IPv4 ARP packet; anything else
    /// (other hardware or protocol types, short) is `BadArp`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN
            || b[field::HTYPE] != [0, 1]
            || b[field::PTYPE] != [0x08, 0x00]
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(DropReason::BadArp);
        }
        Ok(ArpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn operation(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::OPER];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn is_request(&self) -> bool {
        self.operation() == op::REQUEST
    }

    pub fn is_reply(&self) -> bool {
        self.operation() == op::REPLY
    }

    pub fn sender_mac(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SHA.start)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SPA.start)
    }

    pub fn target_mac(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::THA.start)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::TPA.start)
    }

    /// Sender and target protocol address are the same: a gratuitous ARP
    /// (announcement), which updates neighbours but asks nothing.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    MacAddr([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 header fields (htype, ptype, hlen, plen).
    pub fn set_eth_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&[0, 1]);
        b[field::PTYPE].copy_from_slice(&[0x08, 0x00]);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    pub fn set_operation(&mut self, op: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&op.to_be_bytes());
    }

    pub fn set_sender_mac(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }

    pub fn set_sender_ip(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    pub fn set_target_mac(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }

    pub fn set_target_ip(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

/// Turns an ARP request frame (Ethernet header included) into our reply, in place:
/// the target becomes the requester, the sender becomes `our_mac` with the address
/// that was asked for, and the Ethernet header goes back to the requester.
///
/// The caller has already checked that the target IP is ours. Returns `false` and
/// leaves the frame unchanged if it is not a valid ARP request.
pub fn reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> bool {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return false;
    };
    if eth.ethertype() != EtherType::ARP {
        return false;
    }
    let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
        return false;
    };
    if !arp.is_request() {
        return false;
    }
    let (req_mac, req_ip, asked_ip) = (arp.sender_mac(), arp.sender_ip(), arp.target_ip());
    arp.set_operation(op::REPLY);
    arp.set_target_mac(req_mac);
    arp.set_target_ip(req_ip);
    arp.set_sender_mac(our_mac);
    arp.set_sender_ip(asked_ip);
    eth.set_dst_addr(req_mac);
    eth.set_src_addr(our_mac);
    true
}

fn build(buf: &mut [u8], src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> usize {
    let Some(frame) = buf.get_mut(..FRAME_LEN) else {
        return 0;
    };
    ethernet::write_header(frame, MacAddr::BROADCAST, src_mac, EtherType::ARP);
    let mut arp = ArpPacket::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    arp.set_eth_ipv4();
    arp.set_operation(op::REQUEST);
    arp.set_sender_mac(src_mac);
    arp.set_sender_ip(src_ip);
    arp.set_target_mac(MacAddr::ZERO);
    arp.set_target_ip(target_ip);
    FRAME_LEN
}

/// Writes a broadcast ARP request "who has `target_ip`, tell `src_ip`" into `buf`.
/// Returns the frame length (42; the NIC pads to 60), or 0 if `buf` is shorter.
pub fn build_request(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> usize {
    build(buf, src_mac, src_ip, target_ip)
}

/// Writes a gratuitous ARP (a broadcast request for our own address, RFC 5227
/// announcement) so neighbours learn that `ip` is at `mac` (VIP takeover).
/// Returns the frame length (42), or 0 if `buf` is shorter.
pub fn build_gratuitous(buf: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> usize {
    build(buf, mac, ip, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    const OUR_MAC: MacAddr = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);

    // who has 10.0.0.1? tell 10.0.0.2 (02:11:22:33:44:55), padded to 60 bytes.
    static REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 2, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 1, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    static REPLY: [u8; 60] = [
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 10, 0, 0, 1, //
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 2, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn parses_request() {
        let arp = ArpPacket::new_checked(&REQUEST[14..]).unwrap();
        assert!(arp.is_request() && !arp.is_gratuitous());
        assert_eq!(arp.sender_mac(), MacAddr(CLIENT_MAC));
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(arp.target_mac(), MacAddr::ZERO);
    }

    #[test]
    fn reply_bytes_exact() {
        let mut f = REQUEST;
        assert!(reply_in_place(&mut f, OUR_MAC));
        assert_eq!(f, REPLY);
        // etherparse 0.16 has no ARP parser; check the Ethernet header with it.
        let (e, _) = etherparse::Ethernet2Header::from_slice(&f).unwrap();
        assert_eq!(e.destination, CLIENT_MAC);
        assert_eq!(e.source, OUR_MAC.0);
        assert_eq!(e.ether_type, etherparse::EtherType::ARP);
    }

    #[test]
    fn reply_refuses_non_requests() {
        let mut f = REPLY;
        assert!(!reply_in_place(&mut f, OUR_MAC));
        assert_eq!(f, REPLY);
        let mut short = REQUEST;
        assert!(!reply_in_place(&mut short[..41], OUR_MAC));
        let mut ipv4 = REQUEST;
        ipv4[13] = 0x00;
        assert!(!reply_in_place(&mut ipv4, OUR_MAC));
        let mut bad_hlen = REQUEST;
        bad_hlen[18] = 8;
        assert!(!reply_in_place(&mut bad_hlen, OUR_MAC));
        assert_eq!(bad_hlen[21], 1);
    }

    #[test]
    fn request_bytes_exact() {
        let mut b = [0u8; 64];
        let n = build_request(
            &mut b,
            MacAddr(CLIENT_MAC),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        assert_eq!(n, 42);
        assert_eq!(b[..42], REQUEST[..42]);
        assert_eq!(
            build_request(
                &mut b[..41],
                OUR_MAC,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST
            ),
            0
        );
    }

    #[test]
    fn gratuitous_bytes_exact() {
        let mut b = [0u8; 42];
        assert_eq!(
            build_gratuitous(&mut b, OUR_MAC, Ipv4Addr::new(192, 168, 1, 10)),
            42
        );
        let expect: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 192, 168, 1, 10, //
            0, 0, 0, 0, 0, 0, 192, 168, 1, 10,
        ];
        assert_eq!(b, expect);
        assert!(ArpPacket::new_checked(&b[14..]).unwrap().is_gratuitous());
    }
}
