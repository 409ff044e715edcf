//! Proxy Protocol headers (haproxy's `proxy-protocol.txt`, versions 1 and 2).
//!
//! A FULLNAT director hides the client's address from the real server; with
//! Proxy Protocol it prepends a header naming the client and the VIP to the
//! client's byte stream, which nginx (`listen ... proxy_protocol`) and haproxy
//! (`accept-proxy`) read natively. This module only builds the header bytes,
//! into a caller's stack buffer: no allocation, no parsing of packets. Putting
//! them into a TCP stream (and shifting sequence numbers) is `fnat`'s job.

use std::fmt::Write;
use std::net::IpAddr;

use crate::config::ProxyProtocol;

/// Longest header built here: a v1 TCP6 line with two full-length IPv6
/// addresses and five-digit ports is 104 bytes; the spec bounds v1 at 107.
pub const MAX_LEN: usize = 108;
/// The 12-byte v2 signature (`\r\n\r\n\0\r\nQUIT\n`).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// v2 header length with IPv4 addresses (16 fixed + 12 address bytes).
pub const V2_LEN_V4: usize = 28;
/// v2 header length with IPv6 addresses (16 fixed + 36 address bytes).
pub const V2_LEN_V6: usize = 52;

/// Version 2, command PROXY (the connection was relayed on a client's behalf).
const V2_VER_CMD_PROXY: u8 = 0x21;
/// Version 2, command LOCAL (no addresses; the receiver uses the real ones).
const V2_VER_CMD_LOCAL: u8 = 0x20;

/// Transport the header announces (v1 only knows TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The client side (`src`) and the address it connected to (`dst`, the VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// A header: bytes in a fixed buffer and how many of them are used.
#[derive(Clone, Copy)]
pub struct Header {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Header {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Header({:?})", self.as_bytes())
    }
}

/// `fmt::Write` into a fixed byte slice; fails instead of growing.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.at + s.len();
        let dst = self.buf.get_mut(self.at..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

/// The header of `version` for `ep` over `transport`. v1 describes TCP
/// only: for UDP it says `UNKNOWN` (the caller should not ask; services
/// with v1 must be TCP). Addresses of different families (cannot happen for
/// a client and its VIP) give v1 `UNKNOWN` / v2 `LOCAL`.
pub fn build(version: ProxyProtocol, transport: Transport, ep: &Endpoints) -> Header {
    match version {
        ProxyProtocol::V1 => v1(transport, ep),
        ProxyProtocol::V2 => v2(transport, ep),
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (TCP6 for IPv6).
pub fn v1(transport: Transport, ep: &Endpoints) -> Header {
    let mut h = Header {
        buf: [0; MAX_LEN],
        len: 0,
    };
    let fam = match (transport, ep.src, ep.dst) {
        (Transport::Tcp, IpAddr::V4(_), IpAddr::V4(_)) => Some("TCP4"),
        (Transport::Tcp, IpAddr::V6(_), IpAddr::V6(_)) => Some("TCP6"),
        _ => None,
    };
    let mut c = Cursor {
        buf: &mut h.buf,
        at: 0,
    };
    // The longest line fits MAX_LEN, so these writes cannot fail.
    let r = match fam {
        Some(fam) => write!(
            c,
            "PROXY {fam} {} {} {} {}\r\n",
            ep.src, ep.dst, ep.sport, ep.dport
        ),
        None => c.write_str("PROXY UNKNOWN\r\n"),
    };
    h.len = if r.is_ok() { c.at } else { 0 };
    h
}

/// The 16-byte v2 preamble, then addresses and ports in network order.
pub fn v2(transport: Transport, ep: &Endpoints) -> Header {
    let mut h = Header {
        buf: [0; MAX_LEN],
        len: 0,
    };
    let b = &mut h.buf;
    b[..12].copy_from_slice(&V2_SIGNATURE);
    let proto = match transport {
        Transport::Tcp => 0x1,
        Transport::Udp => 0x2,
    };
    let addr_len = match (ep.src, ep.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b[12] = V2_VER_CMD_PROXY;
            b[13] = 0x10 | proto;
            b[16..20].copy_from_slice(&s.octets());
            b[20..24].copy_from_slice(&d.octets());
            b[24..26].copy_from_slice(&ep.sport.to_be_bytes());
            b[26..28].copy_from_slice(&ep.dport.to_be_bytes());
            12
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b[12] = V2_VER_CMD_PROXY;
            b[13] = 0x20 | proto;
            b[16..32].copy_from_slice(&s.octets());
            b[32..48].copy_from_slice(&d.octets());
            b[48..50].copy_from_slice(&ep.sport.to_be_bytes());
            b[50..52].copy_from_slice(&ep.dport.to_be_bytes());
            36
        }
        _ => {
            b[12] = V2_VER_CMD_LOCAL;
            b[13] = 0x00;
            0
        }
    };
    b[14..16].copy_from_slice(&(addr_len as u16).to_be_bytes());
    h.len = 16 + addr_len;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ep(src: &str, sport: u16, dst: &str, dport: u16) -> Endpoints {
        Endpoints {
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
        }
    }

    #[test]
    fn v1_tcp4_as_the_spec_example() {
        // proxy-protocol.txt section 2.1: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        let h = v1(
            Transport::Tcp,
            &ep("192.168.0.1", 56324, "192.168.0.11", 443),
        );
        assert_eq!(
            h.as_bytes(),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn v1_tcp6_and_the_longest_line() {
        let h = v1(Transport::Tcp, &ep("2001:db8::1", 1, "2001:db8::2", 80));
        assert_eq!(h.as_bytes(), b"PROXY TCP6 2001:db8::1 2001:db8::2 1 80\r\n");
        let all = Ipv6Addr::from([0xffff; 8]);
        let e = Endpoints {
            src: all.into(),
            sport: 65535,
            dst: all.into(),
            dport: 65535,
        };
        let h = v1(Transport::Tcp, &e);
        assert_eq!(h.len(), 104);
        assert!(h.len() <= 107, "spec: a v1 header is at most 107 bytes");
        assert!(h.as_bytes().ends_with(b" 65535 65535\r\n"));
        let v4 = Ipv4Addr::new(255, 255, 255, 255);
        let e = Endpoints {
            src: v4.into(),
            sport: 65535,
            dst: v4.into(),
            dport: 65535,
        };
        assert_eq!(v1(Transport::Tcp, &e).len(), 56, "spec: TCP4 worst case");
    }

    #[test]
    fn v1_unknown_for_what_it_cannot_describe() {
        let h = v1(Transport::Udp, &ep("10.0.0.1", 1, "10.0.0.2", 2));
        assert_eq!(h.as_bytes(), b"PROXY UNKNOWN\r\n");
        let h = v1(Transport::Tcp, &ep("10.0.0.1", 1, "::1", 2));
        assert_eq!(h.as_bytes(), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_tcp4_byte_exact() {
        let h = v2(Transport::Tcp, &ep("10.0.0.2", 40000, "10.0.0.100", 80));
        let want: [u8; 28] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
            0x0a, // signature
            0x21, // version 2, PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0c, // 12 address bytes
            10, 0, 0, 2, // source address
            10, 0, 0, 100, // destination address
            0x9c, 0x40, // source port 40000
            0x00, 0x50, // destination port 80
        ];
        assert_eq!(h.as_bytes(), &want);
        assert_eq!(h.len(), V2_LEN_V4);
    }

    #[test]
    fn v2_udp4_tcp6_udp6_byte_exact() {
        let h = v2(Transport::Udp, &ep("10.0.0.2", 53, "10.0.0.100", 53));
        assert_eq!(&h.as_bytes()[12..16], &[0x21, 0x12, 0x00, 0x0c]);

        let h = v2(
            Transport::Tcp,
            &ep("2001:db8::7", 443, "2001:db8::64", 8443),
        );
        assert_eq!(h.len(), V2_LEN_V6);
        let b = h.as_bytes();
        assert_eq!(&b[..12], &V2_SIGNATURE);
        assert_eq!(&b[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0x20, 0x01]);
        src[2..4].copy_from_slice(&[0x0d, 0xb8]);
        src[15] = 7;
        assert_eq!(&b[16..32], &src);
        src[15] = 0x64;
        assert_eq!(&b[32..48], &src);
        assert_eq!(&b[48..52], &[0x01, 0xbb, 0x20, 0xfb]);

        let h = v2(Transport::Udp, &ep("::1", 1, "::2", 2));
        assert_eq!(&h.as_bytes()[12..16], &[0x21, 0x22, 0x00, 0x24]);
    }

    #[test]
    fn v2_local_for_mixed_families() {
        let h = v2(Transport::Tcp, &ep("10.0.0.1", 1, "::1", 2));
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(h.as_bytes(), &want[..]);
    }

    #[test]
    fn build_picks_the_version() {
        let e = ep("10.0.0.2", 40000, "10.0.0.100", 80);
        assert_eq!(
            build(ProxyProtocol::V1, Transport::Tcp, &e).as_bytes()[..6],
            *b"PROXY "
        );
        assert_eq!(build(ProxyProtocol::V2, Transport::Tcp, &e).len(), 28);
    }
}
