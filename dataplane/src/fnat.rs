//! FULLNAT TCP stream edits: the Proxy Protocol header in front of the
//! client's first byte, and the sequence/acknowledgement shift it causes for
//! the rest of the connection (DPVS's `fnat_seq.delta`).
//!
//! The header takes sequence numbers `S .. S+len` in the real server's view of
//! the client stream, where `S` is the client's ISN + 1. It rides on every
//! client segment whose sequence number is `S` until the real server has
//! acknowledged it: normally the handshake's ACK (so servers that speak first
//! get it at once), and again on a retransmission of that ACK or on the first
//! data segment if they pass the director before the server's ACK does. The
//! bytes and their place are always the same, so a server that got them twice
//! just sees a duplicate. Every other client segment at or after `S` moves by
//! `+len`; acknowledgement numbers and SACK blocks from the server move by
//! `-len` (an acknowledgement inside the header maps to `S`: nothing of the
//! client's own data is acknowledged yet).
//!
//! The per-connection state is a [`SeqState`], which this module alone lays
//! out in the connection's opaque `user` word (conntrack keeps it for us):
//! the client's first data sequence number `S` (what TOA is inserted at, too)
//! and the Proxy Protocol header's length, version and progress. Pure byte
//! work on a [`PacketBuf`]: no allocation, no logging; checksums are updated
//! incrementally, so a segment that arrived with a bad checksum leaves with a
//! bad one.

use conntrack::Tuple;

use crate::config::ProxyProtocol;
use crate::stats::DropReason;
use crate::wire::proxy_proto::{self, Endpoints, Header, Transport};
use crate::wire::{checksum, tcp, IpFamily, IpMeta, Ipv4Packet, Ipv6Packet, PacketBuf, TcpPacket};

/// Bit 63: the client's first data sequence number (low 32 bits) is known.
const SEQ_KNOWN: u64 = 1 << 63;
const LEN_SHIFT: u32 = 32;
const LEN_MASK: u64 = 0xff << LEN_SHIFT;
const VER_SHIFT: u32 = 40;
const VER_MASK: u64 = 0x3 << VER_SHIFT;
/// The real server acknowledged the whole header: no more insertions.
const ACKED: u64 = 1 << 42;
/// `ProxyProtocolSent` was counted for this connection.
const COUNTED: u64 = 1 << 43;

/// A FULLNAT TCP connection's sequence state: the client's first data
/// sequence number (ISN + 1) once its SYN was seen, and the Proxy Protocol
/// header the connection carries, if any. Stored in `Conn.user`
/// ([`SeqState::from_user`], [`SeqState::user`]); 0 is "nothing known yet".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqState(u64);

impl SeqState {
    /// The state kept in a connection's `user` word.
    #[inline]
    pub fn from_user(user: u64) -> SeqState {
        SeqState(user)
    }

    /// The word to keep in the connection's `user`.
    #[inline]
    pub fn user(self) -> u64 {
        self.0
    }

    /// The state a client SYN with initial sequence number `isn` starts
    /// (every SYN restarts it, as DPVS's `tcp_in_init_seq`), carrying a
    /// `pp` header for connection `orig` if the service has one.
    pub fn on_client_syn(isn: u32, pp: Option<ProxyProtocol>, orig: &Tuple) -> SeqState {
        SeqState::on_client_syn_with(isn, pp, || *orig)
    }

    /// [`SeqState::on_client_syn`] with the connection's tuple built only
    /// when the service has Proxy Protocol (the header's length needs it).
    #[inline]
    pub fn on_client_syn_with(
        isn: u32,
        pp: Option<ProxyProtocol>,
        orig: impl FnOnce() -> Tuple,
    ) -> SeqState {
        let s = SeqState(SEQ_KNOWN | u64::from(isn.wrapping_add(1)));
        match pp {
            Some(v) => s.with_proxy_protocol(v, &orig()),
            None => s,
        }
    }

    /// Marked to carry a `version` header. Idempotent; needs the first
    /// sequence number.
    pub fn with_proxy_protocol(self, version: ProxyProtocol, orig: &Tuple) -> SeqState {
        let user = self.0;
        if user & SEQ_KNOWN == 0 || user & LEN_MASK != 0 {
            return self;
        }
        let len = header(version, orig).len() as u64;
        let ver = match version {
            ProxyProtocol::V1 => 1,
            ProxyProtocol::V2 => 2,
        };
        SeqState(user | (len << LEN_SHIFT) & LEN_MASK | (ver << VER_SHIFT))
    }

    /// The client's first data sequence number `S`, once its SYN was seen.
    #[inline]
    pub fn first_seq(self) -> Option<u32> {
        (self.0 & SEQ_KNOWN != 0).then_some(self.0 as u32)
    }

    /// No header length noted: then [`SeqState::pp_len`] is 0 (a length is
    /// only ever noted with the first sequence number; a word that has one
    /// without it, which a peer's sync could bring, answers `false` here and
    /// 0 there). One test of the word, for the established path's check.
    #[inline]
    pub fn no_pp(self) -> bool {
        self.0 & LEN_MASK == 0
    }

    /// Header length of the connection; 0 = no Proxy Protocol, no shifting.
    #[inline]
    pub fn pp_len(self) -> usize {
        if self.0 & SEQ_KNOWN == 0 {
            return 0;
        }
        ((self.0 & LEN_MASK) >> LEN_SHIFT) as usize
    }

    /// Version of the connection's header (fixed at its SYN).
    pub fn pp_version(self) -> Option<ProxyProtocol> {
        match (self.0 & VER_MASK) >> VER_SHIFT {
            1 => Some(ProxyProtocol::V1),
            2 => Some(ProxyProtocol::V2),
            _ => None,
        }
    }

    /// How much the director added to client sequence number `seq` (as the
    /// real server saw it) on the way in: the header length for the bytes
    /// after the first data sequence number `S`, nothing for the SYN's ISN and
    /// for `S` itself (the header is inserted there). For ICMP errors quoting
    /// a segment.
    pub fn seq_shift(self, seq: u32) -> u32 {
        let len = self.pp_len() as u32;
        let first = self.0 as u32;
        if len != 0 && (seq.wrapping_sub(first) as i32) > 0 {
            len
        } else {
            0
        }
    }
}

#[cfg(test)]
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The header a connection whose original direction is `orig` sends.
pub fn header(version: ProxyProtocol, orig: &Tuple) -> Header {
    let ep = Endpoints {
        src: orig.src,
        sport: orig.sport,
        dst: orig.dst,
        dport: orig.dport,
    };
    proxy_proto::build(version, Transport::Tcp, &ep)
}

/// What [`pp_in`] did to a client segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InOutcome {
    /// Not a segment of the shifted stream (SYN, before `S`, no Proxy Protocol).
    Untouched,
    /// Sequence number moved by the header length.
    Shifted,
    /// Header inserted in front of the payload; `first`: the first time for
    /// this connection (count it).
    Inserted { first: bool },
    /// A first fragment that would have carried the header: shifted instead,
    /// as if the header had gone ahead of it (on the handshake's ACK, as it
    /// normally does). A fragment never grows.
    FragmentShifted,
}

/// Client -> real server: insert the header or shift the sequence number of
/// the TCP segment `meta` describes (whole frame in `buf`), before the
/// FULLNAT address rewrite. `st` is the connection's state (updated on
/// insertion). The IP packet must stay within `mtu()` (asked only when the
/// header goes in): if the header does not fit, `Err(FragNeeded)` and the frame
/// is unchanged.
pub fn pp_in<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &mut IpMeta,
    st: &mut SeqState,
    orig: &Tuple,
    mtu: impl FnOnce() -> usize,
) -> Result<InOutcome, DropReason> {
    let len = st.pp_len();
    let Some(version) = st.pp_version() else {
        return Ok(InOutcome::Untouched);
    };
    if len == 0 {
        return Ok(InOutcome::Untouched);
    }
    let (l4, end) = (meta.l4_off, meta.l3_end());
    let seg = buf.data().get(l4..end).ok_or(DropReason::BadL4)?;
    let t = TcpPacket::new_checked(seg)?;
    let (seq, flags) = (t.seq_number(), t.flags());
    let first = st.0 as u32;
    let d = seq.wrapping_sub(first) as i32;
    if flags & SYN != 0 || d < 0 {
        return Ok(InOutcome::Untouched);
    }
    let insert = d == 0 && flags & RST == 0 && flags & ACK != 0 && st.0 & ACKED == 0;
    if !insert || meta.frag.is_some() {
        let new = seq.wrapping_add(len as u32);
        let c = checksum::update32(t.checksum(), seq, new);
        let mut t = TcpPacket::new_unchecked(&mut buf.data_mut()[l4..end]);
        t.set_seq_number(new);
        t.set_checksum(c);
        return Ok(if insert {
            InOutcome::FragmentShifted
        } else {
            InOutcome::Shifted
        });
    }
    let hdr = header(version, orig);
    if hdr.len() != len {
        return Err(DropReason::Unsupported); // cannot happen: same tuple, same bytes
    }
    if meta.ip_len() + len > mtu() {
        return Err(DropReason::FragNeeded);
    }
    let hl = t.header_len();
    let seg_len = meta.l4_len;
    let new_seg_len = seg_len + len;
    if new_seg_len > usize::from(u16::MAX) {
        return Err(DropReason::FragNeeded);
    }
    // Checksum: pseudo-header length changes; the header's bytes are added at
    // an even offset (TCP header lengths are multiples of 4); the payload moves
    // by `len`, which with an odd `len` swaps the bytes of its 16-bit words
    // (RFC 1071 byte-order independence: its sum is byte-swapped).
    let mut s = u32::from(!t.checksum());
    s += u32::from(!(seg_len as u16)) + new_seg_len as u32;
    s += checksum::sum(hdr.as_bytes());
    if len % 2 == 1 {
        let p = checksum::fold(checksum::sum(t.payload()));
        s += u32::from(!p) + u32::from(p.swap_bytes());
    }
    let new_csum = !checksum::fold(s);

    let pad = buf.len() - end;
    let pl_off = l4 + hl;
    let _ = buf.trim(pad);
    if buf.prepend(len).is_some() {
        let data = buf.data_mut();
        data.copy_within(len..len + pl_off, 0);
        data[pl_off..pl_off + len].copy_from_slice(hdr.as_bytes());
    } else if buf.append(len).is_some() {
        let data = buf.data_mut();
        data.copy_within(pl_off..end, pl_off + len);
        data[pl_off..pl_off + len].copy_from_slice(hdr.as_bytes());
    } else {
        return Err(DropReason::NoMbuf);
    }
    let data = buf.data_mut();
    data[l4 + 16..l4 + 18].copy_from_slice(&new_csum.to_be_bytes());
    let l3 = meta.l3_off;
    match meta.family {
        IpFamily::V4 => {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
            let old = ip.total_len();
            let new = old.wrapping_add(len as u16);
            let c = checksum::update16(ip.checksum(), old, new);
            ip.set_total_len(new);
            ip.set_checksum(c);
        }
        IpFamily::V6 => {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[l3..]);
            let pl = ip.payload_len().wrapping_add(len as u16);
            ip.set_payload_len(pl);
        }
    }
    meta.l4_len = new_seg_len;
    let first_time = st.0 & COUNTED == 0;
    st.0 |= COUNTED;
    Ok(InOutcome::Inserted { first: first_time })
}

/// Real server -> client: moves the acknowledgement number and SACK blocks
/// of the TCP segment `seg` (exactly the segment) back by the header length.
/// Marks the header acknowledged in `st`. `true` if the segment changed.
pub fn pp_out(seg: &mut [u8], st: &mut SeqState) -> bool {
    let len = st.pp_len() as u32;
    if len == 0 {
        return false;
    }
    let Ok(t) = TcpPacket::new_checked(&*seg) else {
        return false;
    };
    if t.flags() & ACK == 0 {
        return false;
    }
    let first = st.0 as u32;
    let map = |v: u32| -> u32 {
        let d = v.wrapping_sub(first) as i32;
        if d <= 0 {
            v
        } else if (d as u32) < len {
            first
        } else {
            v.wrapping_sub(len)
        }
    };
    if (t.ack_number().wrapping_sub(first) as i32) >= len as i32 {
        st.0 |= ACKED;
    }
    tcp::edit_header(seg, |h| {
        let ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let na = map(ack);
        h[8..12].copy_from_slice(&na.to_be_bytes());
        tcp::map_sack_edges(h, map) | (na != ack)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, Packet};
    use crate::wire::VecBuf;
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};
    use std::net::IpAddr;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const CIP: [u8; 4] = [10, 0, 0, 2];
    const VIP: [u8; 4] = [10, 0, 0, 100];
    const RIP: [u8; 4] = [192, 168, 100, 2];
    const LIP: [u8; 4] = [192, 168, 100, 254];
    const ISN: u32 = 0xffff_ff00; // wraps during the connection
    const RS_ISN: u32 = 7000;

    fn orig(sport: u16) -> Tuple {
        Tuple {
            proto: 6,
            src: IpAddr::from(CIP),
            sport,
            dst: IpAddr::from(VIP),
            dport: 80,
        }
    }

    fn user(version: ProxyProtocol, sport: u16) -> SeqState {
        SeqState::on_client_syn(ISN, Some(version), &orig(sport))
    }

    /// State with first data sequence number `first` and no Proxy Protocol.
    fn known(first: u32) -> SeqState {
        SeqState::on_client_syn(first.wrapping_sub(1), None, &orig(1))
    }

    #[test]
    fn seq_shift_for_quoted_segments() {
        let u = user(ProxyProtocol::V1, 40000);
        let len = u.pp_len() as u32;
        assert!(len > 0);
        let first = ISN.wrapping_add(1);
        assert_eq!(u.seq_shift(ISN), 0, "the SYN");
        assert_eq!(u.seq_shift(first), 0, "the segment carrying the header");
        assert_eq!(u.seq_shift(first.wrapping_add(1 + len)), len);
        assert_eq!(
            u.seq_shift(first.wrapping_add(100_000)),
            len,
            "across the wrap"
        );
        assert_eq!(known(first).seq_shift(first + 5), 0, "no PP");
    }

    struct Seg<'a> {
        seq: u32,
        ack: u32,
        flags: u8,
        opts: &'a [TcpOptionElement],
        payload: &'a [u8],
    }

    fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, s: &Seg) -> Vec<u8> {
        let mut h = etherparse::TcpHeader::new(sport, dport, s.seq, 64000);
        h.syn = s.flags & SYN != 0;
        h.ack = s.flags & ACK != 0;
        h.fin = s.flags & FIN != 0;
        h.rst = s.flags & RST != 0;
        h.acknowledgment_number = s.ack;
        h.set_options(s.opts).unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(src, dst, 64)
            .tcp_header(h)
            .write(&mut v, s.payload)
            .unwrap();
        v
    }

    fn meta(f: &[u8]) -> IpMeta {
        match classify(f) {
            Ok(Packet::Ip(m)) => m,
            o => panic!("{o:?}"),
        }
    }

    /// Re-parses with etherparse, checks every checksum; (tcp header, payload).
    fn verify(f: &[u8]) -> (etherparse::TcpHeader, Vec<u8>) {
        let h = PacketHeaders::from_ethernet_slice(f).unwrap();
        let pl = h.payload.slice().to_vec();
        let tcp = match &h.transport {
            Some(TransportHeader::Tcp(t)) => t.clone(),
            o => panic!("{o:?}"),
        };
        match &h.net {
            Some(NetHeaders::Ipv4(ip, _)) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IP checksum");
                assert_eq!(usize::from(ip.total_len), f.len() - 14, "IP length");
                assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(ip, &pl).unwrap(),
                    "TCP checksum"
                );
            }
            Some(NetHeaders::Ipv6(ip, _)) => {
                assert_eq!(usize::from(ip.payload_length), f.len() - 54, "IPv6 length");
                assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv6(ip, &pl).unwrap(),
                    "TCP checksum"
                );
            }
            o => panic!("{o:?}"),
        }
        (tcp, pl)
    }

    /// Client -> director segment through `pp_in`.
    fn client(
        u: &mut SeqState,
        sport: u16,
        s: &Seg,
        mtu: usize,
    ) -> (Result<InOutcome, DropReason>, Vec<u8>) {
        let f = tcp_frame(CIP, sport, VIP, 80, s);
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        let r = pp_in(&mut b, &mut m, u, &orig(sport), || mtu);
        if r.is_ok() {
            assert_eq!(meta(b.data()), m, "meta follows the frame");
        }
        (r, b.data().to_vec())
    }

    /// Real server -> director segment through `pp_out`.
    fn server(u: &mut SeqState, s: &Seg) -> (bool, Vec<u8>) {
        let mut f = tcp_frame(RIP, 80, LIP, 5000, s);
        let changed = pp_out(&mut f[34..], u);
        (changed, f)
    }

    fn sack(blocks: &[(u32, u32)]) -> TcpOptionElement {
        let mut b = [(0u32, 0u32); 3];
        b[..blocks.len().min(3)].copy_from_slice(&blocks[..blocks.len().min(3)]);
        TcpOptionElement::SelectiveAcknowledgement(b[0], {
            let mut rest = [None; 3];
            for (i, x) in blocks.iter().skip(1).enumerate() {
                rest[i] = Some(*x);
            }
            rest
        })
    }

    #[test]
    fn state_bits_beside_toa() {
        let u0 = known(1234);
        assert_eq!(u0.pp_len(), 0);
        assert_eq!(u0.pp_version(), None);
        let u = u0.with_proxy_protocol(ProxyProtocol::V2, &orig(40000));
        assert_eq!(u.pp_len(), 28);
        assert_eq!(u.pp_version(), Some(ProxyProtocol::V2));
        assert_eq!(u.first_seq(), Some(1234), "TOA's sequence number kept");
        assert_eq!(
            SeqState::from_user(u.user()),
            u,
            "round trip through Conn.user"
        );
        assert_eq!(
            u.with_proxy_protocol(ProxyProtocol::V1, &orig(40000)),
            u,
            "idempotent"
        );
        assert_eq!(
            SeqState::default().with_proxy_protocol(ProxyProtocol::V1, &orig(1)),
            SeqState::default(),
            "needs the ISN"
        );
        let u = u0.with_proxy_protocol(ProxyProtocol::V1, &orig(40000));
        assert_eq!(
            u.pp_len(),
            b"PROXY TCP4 10.0.0.2 10.0.0.100 40000 80\r\n".len()
        );
    }

    /// The client's first data segment (sequence number ISN + 1) from port
    /// 40000, acknowledging 1.
    fn first_data(payload: &[u8]) -> Vec<u8> {
        let s = Seg {
            seq: ISN.wrapping_add(1),
            ack: 1,
            flags: ACK,
            opts: &[],
            payload,
        };
        tcp_frame(CIP, 40000, VIP, 80, &s)
    }

    #[test]
    fn a_first_fragment_is_shifted_never_grown() {
        let mut u = user(ProxyProtocol::V2, 40000);
        let len = u.pp_len() as u32;
        let s = ISN.wrapping_add(1);
        let f = first_data(&[b'x'; 100]);
        // The same segment as the first fragment of a larger one.
        let mut m = meta(&f);
        m.frag = Some(crate::wire::Frag::First(7));
        let mut b = VecBuf::new(&f);
        let r = pp_in(&mut b, &mut m, &mut u, &orig(40000), || 1500);
        assert_eq!(r, Ok(InOutcome::FragmentShifted));
        assert_eq!(b.len(), f.len(), "not grown");
        let (tcp, _) = verify(b.data());
        assert_eq!(tcp.sequence_number, s.wrapping_add(len));
    }

    #[test]
    fn whole_connection_consistent_both_ways() {
        for (version, sport) in [
            (ProxyProtocol::V1, 40000), // odd header length
            (ProxyProtocol::V1, 4000),  // even
            (ProxyProtocol::V2, 40000),
        ] {
            let mut u = user(version, sport);
            let hdr = header(version, &orig(sport));
            let len = hdr.len() as u32;
            let s = ISN.wrapping_add(1);
            let r1 = RS_ISN + 1;

            // SYN: untouched.
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: ISN,
                    ack: 0,
                    flags: SYN,
                    opts: &[],
                    payload: b"",
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Untouched));
            assert_eq!(verify(&f).0.sequence_number, ISN);

            // SYN-ACK: acks S, unchanged.
            let (ch, f) = server(
                &mut u,
                &Seg {
                    seq: RS_ISN,
                    ack: s,
                    flags: SYN | ACK,
                    opts: &[],
                    payload: b"",
                },
            );
            assert!(!ch);
            assert_eq!(verify(&f).0.acknowledgment_number, s);

            // Handshake ACK: carries the header at S.
            let ts = [
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(1, 2),
            ];
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: s,
                    ack: r1,
                    flags: ACK,
                    opts: &ts,
                    payload: b"",
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Inserted { first: true }));
            let (t, pl) = verify(&f);
            assert_eq!(t.sequence_number, s);
            assert_eq!(pl, hdr.as_bytes());

            // First data before the server's ACK: header again, same place.
            let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n!"; // odd length
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: s,
                    ack: r1,
                    flags: ACK,
                    opts: &ts,
                    payload: get,
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Inserted { first: false }));
            let (t, pl) = verify(&f);
            assert_eq!(t.sequence_number, s);
            assert_eq!(&pl[..hdr.len()], hdr.as_bytes());
            assert_eq!(&pl[hdr.len()..], get);

            // Server acks part of the header only: the client sees S.
            let (_, f) = server(
                &mut u,
                &Seg {
                    seq: r1,
                    ack: s.wrapping_add(3),
                    flags: ACK,
                    opts: &[],
                    payload: b"",
                },
            );
            assert_eq!(verify(&f).0.acknowledgment_number, s);

            // Server acks the header and 5 request bytes, SACKs 10..20 (and a
            // D-SACK inside the header, which collapses to an empty block).
            let blocks = [
                (s.wrapping_add(len + 10), s.wrapping_add(len + 20)),
                (s.wrapping_add(1), s.wrapping_add(len)),
            ];
            let (ch, f) = server(
                &mut u,
                &Seg {
                    seq: r1,
                    ack: s.wrapping_add(len + 5),
                    flags: ACK,
                    opts: &[sack(&blocks)],
                    payload: b"HTTP/1.1 200 OK\r\n",
                },
            );
            assert!(ch);
            let (t, pl) = verify(&f);
            assert_eq!(t.acknowledgment_number, s.wrapping_add(5));
            assert_eq!(pl, b"HTTP/1.1 200 OK\r\n", "server data untouched");
            let o = t.options.as_slice();
            let at = o.iter().position(|&b| b == tcp::opt::SACK).unwrap();
            let be = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            assert_eq!(
                (be(at + 2), be(at + 6)),
                (s.wrapping_add(10), s.wrapping_add(20))
            );
            assert_eq!((be(at + 10), be(at + 14)), (s, s));

            // Retransmission of the first data after the header was acked:
            // shifted, no header (the server has it).
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: s,
                    ack: r1 + 17,
                    flags: ACK,
                    opts: &ts,
                    payload: get,
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Shifted));
            let (t, pl) = verify(&f);
            assert_eq!(t.sequence_number, s.wrapping_add(len));
            assert_eq!(pl, get);
            assert_eq!(
                t.acknowledgment_number,
                r1 + 17,
                "client's ack is not shifted"
            );

            // A full-sized later segment fits as it is.
            let big = [b'x'; 1448];
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: s.wrapping_add(30),
                    ack: r1 + 17,
                    flags: ACK,
                    opts: &ts,
                    payload: &big,
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Shifted));
            assert_eq!(verify(&f).0.sequence_number, s.wrapping_add(30 + len));

            // Client FIN, server FIN-ACK, client last ACK.
            let fin_seq = s.wrapping_add(30 + 1448);
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: fin_seq,
                    ack: r1 + 17,
                    flags: FIN | ACK,
                    opts: &[],
                    payload: b"",
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Shifted));
            assert_eq!(verify(&f).0.sequence_number, fin_seq.wrapping_add(len));
            let (_, f) = server(
                &mut u,
                &Seg {
                    seq: r1 + 17,
                    ack: fin_seq.wrapping_add(len + 1),
                    flags: FIN | ACK,
                    opts: &[],
                    payload: b"",
                },
            );
            assert_eq!(verify(&f).0.acknowledgment_number, fin_seq.wrapping_add(1));
            let (r, f) = client(
                &mut u,
                sport,
                &Seg {
                    seq: fin_seq.wrapping_add(1),
                    ack: r1 + 18,
                    flags: ACK,
                    opts: &[],
                    payload: b"",
                },
                1500,
            );
            assert_eq!(r, Ok(InOutcome::Shifted));
            assert_eq!(verify(&f).0.sequence_number, fin_seq.wrapping_add(1 + len));
        }
    }

    #[test]
    fn too_big_for_the_mtu_with_the_header() {
        let mut u = user(ProxyProtocol::V2, 40000);
        let s = ISN.wrapping_add(1);
        let big = [b'x'; 1460];
        let seg = Seg {
            seq: s,
            ack: 1,
            flags: ACK,
            opts: &[],
            payload: &big,
        };
        let (r, f) = client(&mut u, 40000, &seg, 1500);
        assert_eq!(r, Err(DropReason::FragNeeded));
        assert_eq!(f, tcp_frame(CIP, 40000, VIP, 80, &seg), "unchanged");
        // With room it goes, and the header was not counted before.
        let (r, _) = client(&mut u, 40000, &seg, 1600);
        assert_eq!(r, Ok(InOutcome::Inserted { first: true }));
    }

    #[test]
    fn rst_and_keepalive_are_not_given_the_header() {
        let mut u = user(ProxyProtocol::V1, 40000);
        let len = u.pp_len() as u32;
        let s = ISN.wrapping_add(1);
        let (r, f) = client(
            &mut u,
            40000,
            &Seg {
                seq: s,
                ack: 1,
                flags: RST | ACK,
                opts: &[],
                payload: b"",
            },
            1500,
        );
        assert_eq!(r, Ok(InOutcome::Shifted));
        assert_eq!(verify(&f).0.sequence_number, s.wrapping_add(len));
        let (r, _) = client(
            &mut u,
            40000,
            &Seg {
                seq: ISN,
                ack: 1,
                flags: ACK,
                opts: &[],
                payload: b"",
            },
            1500,
        );
        assert_eq!(r, Ok(InOutcome::Untouched), "keepalive probe at S-1");
    }

    #[test]
    fn no_headroom_uses_the_tail() {
        let mut u = user(ProxyProtocol::V1, 40000);
        let hdr = header(ProxyProtocol::V1, &orig(40000));
        let f = first_data(b"abc");
        let mut m = meta(&f);
        let mut b = VecBuf::with_headroom(&f, 0);
        let r = pp_in(&mut b, &mut m, &mut u, &orig(40000), || 1500);
        assert_eq!(r, Ok(InOutcome::Inserted { first: true }));
        let (_, pl) = verify(b.data());
        assert_eq!(&pl[..hdr.len()], hdr.as_bytes());
        assert_eq!(&pl[hdr.len()..], b"abc");
    }

    #[test]
    fn ipv6_header_inserted_with_checksum() {
        let c6: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let v6: std::net::Ipv6Addr = "2001:db8::64".parse().unwrap();
        let o = Tuple {
            proto: 6,
            src: c6.into(),
            sport: 40001,
            dst: v6.into(),
            dport: 80,
        };
        for version in [ProxyProtocol::V1, ProxyProtocol::V2] {
            let mut u = known(100).with_proxy_protocol(version, &o);
            let mut h = etherparse::TcpHeader::new(40001, 80, 100, 1000);
            h.ack = true;
            let mut f = Vec::new();
            PacketBuilder::ethernet2(MAC, MAC)
                .ipv6(c6.octets(), v6.octets(), 64)
                .tcp_header(h)
                .write(&mut f, b"hello")
                .unwrap();
            let mut m = meta(&f);
            let mut b = VecBuf::new(&f);
            assert_eq!(
                pp_in(&mut b, &mut m, &mut u, &o, || 1500),
                Ok(InOutcome::Inserted { first: true })
            );
            let (_, pl) = verify(b.data());
            let hdr = header(version, &o);
            assert_eq!(&pl[..hdr.len()], hdr.as_bytes());
            assert_eq!(&pl[hdr.len()..], b"hello");
        }
    }

    #[test]
    fn not_a_pp_connection_is_left_alone() {
        let mut u = known(5);
        let (r, _) = client(
            &mut u,
            1,
            &Seg {
                seq: 5,
                ack: 1,
                flags: ACK,
                opts: &[],
                payload: b"x",
            },
            1500,
        );
        assert_eq!(r, Ok(InOutcome::Untouched));
        let (ch, _) = server(
            &mut u,
            &Seg {
                seq: 1,
                ack: 9,
                flags: ACK,
                opts: &[],
                payload: b"",
            },
        );
        assert!(!ch);
    }

    /// Any order of client segments (retransmissions, overlaps, reordering)
    /// and server ACKs: what the server reassembles by sequence number is the
    /// header followed by the client's bytes, never a conflicting byte, and
    /// each server ACK maps back to the same point in the client's stream.
    #[test]
    fn random_connection_reassembles_consistently() {
        use proptest::prelude::*;
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
        proptest!(|(segs in proptest::collection::vec((0usize..3000, 0usize..1400, any::<bool>()), 1..40),
                    v2 in any::<bool>())| {
            let version = if v2 { ProxyProtocol::V2 } else { ProxyProtocol::V1 };
            let mut u = user(version, 40000);
            let hdr = header(version, &orig(40000));
            let len = hdr.len();
            let s = ISN.wrapping_add(1);
            // Server's view: byte at stream offset i (from S).
            let mut rs: Vec<Option<u8>> = vec![None; len + data.len()];
            let mut rcv_nxt = 0usize;
            // The handshake ACK first, as a client always sends it.
            let mut all = vec![(0usize, 0usize, false)];
            all.extend(segs);
            for (off, n, ack_now) in all {
                let n = n.min(data.len() - off);
                let seg = Seg { seq: s.wrapping_add(off as u32), ack: 1, flags: ACK, opts: &[], payload: &data[off..off + n] };
                let (r, f) = client(&mut u, 40000, &seg, 1500);
                prop_assert!(r.is_ok());
                let (t, pl) = verify(&f);
                let at = t.sequence_number.wrapping_sub(s) as usize;
                for (i, b) in pl.iter().enumerate() {
                    let slot = &mut rs[at + i];
                    prop_assert!(slot.is_none() || *slot == Some(*b), "conflicting byte at {}", at + i);
                    *slot = Some(*b);
                }
                while rcv_nxt < rs.len() && rs[rcv_nxt].is_some() {
                    rcv_nxt += 1;
                }
                if ack_now {
                    let (_, f) = server(&mut u, &Seg { seq: 1, ack: s.wrapping_add(rcv_nxt as u32), flags: ACK, opts: &[], payload: b"" });
                    let a = verify(&f).0.acknowledgment_number.wrapping_sub(s) as usize;
                    prop_assert_eq!(a, rcv_nxt.saturating_sub(len));
                }
            }
            for (i, b) in hdr.as_bytes().iter().enumerate() {
                prop_assert_eq!(rs[i], Some(*b));
            }
            for (i, b) in rs[len..].iter().enumerate() {
                if let Some(b) = b {
                    prop_assert_eq!(*b, data[i]);
                }
            }
        });
    }
}
