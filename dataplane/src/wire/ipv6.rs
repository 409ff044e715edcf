//! IPv6 fixed header view (RFC 8200) and the walk over extension headers to the
//! upper-layer header.
//!
//! IPv6 has no header checksum, so rewrites here are plain stores; the L4 checksum
//! over the pseudo header is `nat`'s concern. The extension walk is bounded (at most
//! [`MAX_EXT_HEADERS`] headers) and checks every length before reading.

use std::net::Ipv6Addr;

use super::classify::Frag;
use super::ip_proto;
use crate::stats::DropReason;

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Hop limit the director puts on packets it originates.
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// Most extension headers [`skip_ext_headers`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view over an IPv6 packet (fixed header and payload).
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` if it holds a version-6 header and the payload length fits in
    /// the buffer (which may be longer: Ethernet padding). Otherwise `BadIpv6`.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN || b[0] >> 4 != 6 {
            return Err(DropReason::BadIpv6);
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if HEADER_LEN + plen > b.len() {
            return Err(DropReason::BadIpv6);
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Bytes after the fixed header (extension headers included).
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fixed header plus payload: where the packet ends in the buffer.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC.start)
    }

    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST.start)
    }

    /// The payload (extension headers and upper layer), padding excluded.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Writes version 6, traffic class and flow label.
    pub fn set_ver_tc_flow(&mut self, tc: u8, flow: u32) {
        let w = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Decrements the hop limit; a packet arriving with 0 or 1 must not be
    /// forwarded: returns `false` and leaves it unchanged.
    pub fn dec_hop_limit(&mut self) -> bool {
        let h = self.hop_limit();
        if h <= 1 {
            return false;
        }
        self.set_hop_limit(h - 1);
        true
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Protocol of the upper layer (TCP, UDP, ICMPv6, ...; or ESP/AH/no-next-header,
    /// where the walk stops).
    pub next_header: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header
    /// (for a non-first fragment: of its data, after the fragment header).
    pub l4_off: usize,
    /// A fragment header with M set or a non-zero offset was seen: which
    /// fragment this is and the identification (an atomic fragment, offset 0
    /// without M, is no fragment: RFC 6946).
    pub frag: Option<Frag>,
    /// The fragment offset in bytes (0 when not a fragment).
    pub frag_offset: u16,
}

/// Walks the extension headers (hop-by-hop, routing, destination options,
/// fragment) of `packet`, which starts at the IPv6 header and ends at its payload
/// length (padding excluded: pass `&buf[..p.total_len()]`).
///
/// Stops at the first header that is not one of those four. A non-first fragment
/// stops the walk too (what follows is not a header; `next_header` is the
/// fragment header's). `BadIpv6` if a header runs past the packet or there
/// are more than [`MAX_EXT_HEADERS`].
pub fn skip_ext_headers(packet: &[u8]) -> Result<UpperLayer, DropReason> {
    let p = Ipv6Packet::new_checked(packet)?;
    let end = p.total_len();
    let mut next = p.next_header();
    let mut off = HEADER_LEN;
    let (mut frag, mut frag_offset) = (None, 0);
    for _ in 0..MAX_EXT_HEADERS {
        let len = match next {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                let Some(h) = packet.get(off..off + 2).filter(|_| off + 2 <= end) else {
                    return Err(DropReason::BadIpv6);
                };
                (usize::from(h[1]) + 1) * 8
            }
            ip_proto::IPV6_FRAG => 8,
            _ => {
                return Ok(UpperLayer {
                    next_header: next,
                    l4_off: off,
                    frag,
                    frag_offset,
                })
            }
        };
        if off + len > end {
            return Err(DropReason::BadIpv6);
        }
        let h = &packet[off..off + len];
        let this = next;
        next = h[0];
        off += len;
        if this == ip_proto::IPV6_FRAG {
            let w = u16::from_be_bytes([h[2], h[3]]);
            let (offset, more) = (w & 0xfff8, w & 1 != 0);
            let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            if offset != 0 {
                return Ok(UpperLayer {
                    next_header: next,
                    l4_off: off,
                    frag: Some(Frag::Rest(id)),
                    frag_offset: offset,
                });
            }
            if more {
                frag = Some(Frag::First(id));
                frag_offset = 0;
            }
        }
    }
    match next {
        ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS | ip_proto::IPV6_FRAG => {
            Err(DropReason::BadIpv6)
        }
        _ => Ok(UpperLayer {
            next_header: next,
            l4_off: off,
            frag,
            frag_offset,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn header(next: u8, plen: u16) -> Vec<u8> {
        let mut v = vec![0x60, 0x12, 0x34, 0x56];
        v.extend_from_slice(&plen.to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&SRC);
        v.extend_from_slice(&DST);
        v
    }

    #[test]
    fn parses_fixed_header() {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ipv6(SRC, DST, 47)
            .udp(1, 2)
            .write(&mut v, b"hi")
            .unwrap();
        v.extend_from_slice(&[0; 3]); // padding
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.payload_len(), 10);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.hop_limit(), 47);
        assert_eq!(p.src(), Ipv6Addr::from(SRC));
        assert_eq!(p.dst(), Ipv6Addr::from(DST));
        assert_eq!(p.payload().len(), 10);
        assert_eq!(
            skip_ext_headers(&v[..p.total_len()]),
            Ok(UpperLayer {
                next_header: ip_proto::UDP,
                l4_off: 40,
                frag: None,
                frag_offset: 0,
            })
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let v = header(ip_proto::TCP, 0);
        assert_eq!(
            Ipv6Packet::new_checked(&v[..39]).err(),
            Some(DropReason::BadIpv6)
        );
        let mut w = v.clone();
        w[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&w[..]).err(),
            Some(DropReason::BadIpv6)
        );
        let w = header(ip_proto::TCP, 1);
        assert_eq!(
            Ipv6Packet::new_checked(&w[..]).err(),
            Some(DropReason::BadIpv6)
        );
    }

    #[test]
    fn walks_extension_headers() {
        // hop-by-hop (8) -> dest opts (16) -> fragment (first, MF) -> TCP
        let mut v = header(ip_proto::HOPOPT, 8 + 16 + 8 + 20);
        v.extend_from_slice(&[ip_proto::IPV6_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        v.extend_from_slice(&[ip_proto::IPV6_FRAG, 1, 1, 12, 0, 0, 0, 0]);
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[ip_proto::TCP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        v.extend_from_slice(&[0; 20]);
        let u = skip_ext_headers(&v).unwrap();
        assert_eq!(
            u,
            UpperLayer {
                next_header: ip_proto::TCP,
                l4_off: 72,
                frag: Some(Frag::First(0xdead_beef)),
                frag_offset: 0,
            }
        );

        // a non-first fragment stops at the fragment header
        let mut nf = v.clone();
        nf[66] = 0x01;
        nf[67] = 0x00;
        let u = skip_ext_headers(&nf).unwrap();
        assert_eq!(
            (u.l4_off, u.frag, u.frag_offset),
            (72, Some(Frag::Rest(0xdead_beef)), 256)
        );

        // an atomic fragment (offset 0, no MF) is not a fragment
        let mut at = v.clone();
        at[67] = 0;
        assert_eq!(skip_ext_headers(&at).unwrap().frag, None);

        // extension header longer than the payload
        let mut long = v.clone();
        long[41] = 200;
        assert_eq!(skip_ext_headers(&long), Err(DropReason::BadIpv6));
        // truncated inside the payload length
        let mut short = header(ip_proto::HOPOPT, 1);
        short.push(ip_proto::TCP);
        assert_eq!(skip_ext_headers(&short), Err(DropReason::BadIpv6));
    }

    #[test]
    fn too_many_extension_headers() {
        let n = MAX_EXT_HEADERS + 1;
        let mut v = header(ip_proto::IPV6_OPTS, (n * 8) as u16);
        for i in 0..n {
            let next = if i + 1 == n {
                ip_proto::TCP
            } else {
                ip_proto::IPV6_OPTS
            };
            v.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(skip_ext_headers(&v), Err(DropReason::BadIpv6));
        let mut ok = header(ip_proto::IPV6_OPTS, (MAX_EXT_HEADERS * 8) as u16);
        for i in 0..MAX_EXT_HEADERS {
            let next = if i + 1 == MAX_EXT_HEADERS {
                ip_proto::TCP
            } else {
                ip_proto::IPV6_OPTS
            };
            ok.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            skip_ext_headers(&ok).unwrap().l4_off,
            40 + MAX_EXT_HEADERS * 8
        );
    }
}
