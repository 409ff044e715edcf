//! TCP Option Address (TOA) and MSS clamping for FULLNAT.
//!
//! FULLNAT hides the client's address from the real server; DPVS and the
//! `toa` kernel module carry it in TCP option kind 254: length 8 with the
//! client's port and IPv4 address (length 20 with an IPv6 address). The
//! director inserts it into the client's first ACK / data segment. There must
//! be room: the TCP header grows by the option (at most 60 bytes), so when it
//! is full, NOPs are squeezed out and then the timestamp option dropped; if it
//! still does not fit (or the segment would exceed the MTU) the segment goes on
//! without TOA. The MSS in SYN and SYN-ACK is lowered by the option's length so
//! that a full-sized client segment plus TOA still fits the path.
//!
//! Works on a whole Ethernet frame in a [`PacketBuf`] (the header bytes are
//! shifted into the headroom); addresses and ports are not rewritten here.

use std::net::IpAddr;

use super::checksum;
use super::classify::{IpFamily, IpMeta};
use super::ip_proto;
use super::ipv4::Ipv4Packet;
use super::ipv6::Ipv6Packet;
use super::tcp::{TcpPacket, MIN_HEADER_LEN};
use super::PacketBuf;

/// TOA option kind (DPVS `TCPOPT_ADDR`).
pub const KIND: u8 = 254;
/// TOA length with an IPv4 client address.
pub const LEN_V4: usize = 8;
/// TOA length with an IPv6 client address.
pub const LEN_V6: usize = 20;
/// Most option bytes a TCP header holds.
const MAX_OPTIONS: usize = 40;

use super::tcp::opt::{EOL as OPT_EOL, MSS as OPT_MSS, NOP as OPT_NOP, TIMESTAMP as OPT_TIMESTAMP};

/// What [`insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Inserted; the TCP header (and packet) grew by this many bytes (may be
    /// less than the option's length, or negative, when options were dropped).
    Inserted(isize),
    /// No room (or not a TCP segment we can extend): the frame is unchanged.
    NoRoom,
}

/// The TOA option bytes for `client`.
pub fn option(client: IpAddr, port: u16) -> ([u8; LEN_V6], usize) {
    let mut o = [0u8; LEN_V6];
    o[0] = KIND;
    o[2..4].copy_from_slice(&port.to_be_bytes());
    let len = match client {
        IpAddr::V4(a) => {
            o[4..8].copy_from_slice(&a.octets());
            LEN_V4
        }
        IpAddr::V6(a) => {
            o[4..20].copy_from_slice(&a.octets());
            LEN_V6
        }
    };
    o[1] = len as u8;
    (o, len)
}

/// The options of `opts` rebuilt with `toa` appended: as they are if that fits,
/// else without NOPs, else also without the timestamp. Returns the new options
/// (padded with NOPs to a multiple of 4) and their length, or `None`.
fn rebuild(opts: &[u8], toa: &[u8], budget: usize) -> Option<([u8; MAX_OPTIONS], usize)> {
    let mut out = [0u8; MAX_OPTIONS];
    if opts.len() + toa.len() <= budget {
        out[..opts.len()].copy_from_slice(opts);
        out[opts.len()..opts.len() + toa.len()].copy_from_slice(toa);
        return Some((out, opts.len() + toa.len()));
    }
    for drop_ts in [false, true] {
        let mut n = 0;
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                OPT_EOL => break,
                OPT_NOP => i += 1,
                kind => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 || i + len > opts.len() {
                        return None; // malformed: leave the segment alone
                    }
                    if !(drop_ts && kind == OPT_TIMESTAMP) {
                        out[n..n + len].copy_from_slice(&opts[i..i + len]);
                        n += len;
                    }
                    i += len;
                }
            }
        }
        while n % 4 != 0 {
            out[n] = OPT_NOP;
            n += 1;
        }
        if n + toa.len() <= budget {
            out[n..n + toa.len()].copy_from_slice(toa);
            return Some((out, n + toa.len()));
        }
    }
    None
}

/// Inserts TOA for `client:port` into the TCP segment `meta` describes (frame in
/// `buf`), keeping the IP packet within `mtu` bytes. Fixes the IP total/payload
/// length, the IPv4 header checksum, the TCP data offset and the TCP checksum
/// (incrementally, so a bad checksum stays bad). On success `meta.l4_len` is
/// updated. Ethernet padding after the IP packet is removed.
pub fn insert<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &mut IpMeta,
    client: IpAddr,
    port: u16,
    mtu: usize,
) -> Outcome {
    if meta.proto != ip_proto::TCP {
        return Outcome::NoRoom;
    }
    if let (IpFamily::V4, IpAddr::V4(c)) = (meta.family, client) {
        if let Some(o) = insert_v4_fixed(buf, meta, c, port, mtu) {
            return o;
        }
    }
    let (l4, end) = (meta.l4_off, meta.l3_end());
    let Some(seg) = buf.data().get(l4..end) else {
        return Outcome::NoRoom;
    };
    let Ok(t) = TcpPacket::new_checked(seg) else {
        return Outcome::NoRoom;
    };
    let hl = t.header_len();
    if let (IpFamily::V4, IpAddr::V4(c), MIN_HEADER_LEN) = (meta.family, client, hl) {
        if meta.ip_len() + LEN_V4 <= mtu.min(usize::from(u16::MAX)) {
            return insert_v4_plain(buf, meta, c, port);
        }
    }
    let (toa, toa_len) = option(client, port);
    let toa = &toa[..toa_len];
    // The IP packet may grow by at most this much.
    let room = mtu.saturating_sub(meta.ip_len());
    let old_opts_len = hl - MIN_HEADER_LEN;
    let budget = MAX_OPTIONS.min(old_opts_len + room);
    let Some((new_opts, new_len)) = rebuild(t.options(), toa, budget) else {
        return Outcome::NoRoom;
    };
    let delta = new_len as isize - old_opts_len as isize;
    let seg_len = meta.l4_len;
    let new_seg_len = (seg_len as isize + delta) as usize;
    let Ok(new_seg_len16) = u16::try_from(new_seg_len) else {
        return Outcome::NoRoom;
    };
    let new_ip_len = (meta.ip_len() as isize + delta) as usize;
    if meta.family == IpFamily::V4 && new_ip_len > usize::from(u16::MAX) {
        return Outcome::NoRoom;
    }

    // TCP checksum: options replaced, data offset word changed, pseudo-header
    // length changed. Options start at an even offset and keep a multiple-of-4
    // length, so the payload's word alignment is unchanged.
    let w12_old = u16::from_be_bytes([seg[12], seg[13]]);
    let w12_new = (((new_len + MIN_HEADER_LEN) / 4) as u16) << 12 | (w12_old & 0x0fff);
    let mut s = u32::from(!t.checksum());
    s += u32::from(!checksum::fold(checksum::sum(t.options())));
    s += checksum::sum(&new_opts[..new_len]);
    s += u32::from(!w12_old) + u32::from(w12_new);
    match meta.family {
        IpFamily::V4 => s += u32::from(!(seg_len as u16)) + u32::from(new_seg_len16),
        IpFamily::V6 => {
            // 32-bit upper-layer length in the IPv6 pseudo header; segments here
            // are below 64 KiB, so only the low word changes.
            s += u32::from(!(seg_len as u16)) + u32::from(new_seg_len16)
        }
    }
    let new_csum = !checksum::fold(s);

    // Nothing can fail from here on but the headroom.
    let pad = buf.len() - end;
    let fixed = l4 + MIN_HEADER_LEN; // Ethernet, IP and the fixed TCP header
    if delta > 0 {
        let d = delta as usize;
        if buf.prepend(d).is_none() {
            return Outcome::NoRoom;
        }
        let _ = buf.trim(pad);
        let data = buf.data_mut();
        data.copy_within(d..d + fixed, 0);
        data[fixed..fixed + new_len].copy_from_slice(&new_opts[..new_len]);
    } else {
        let d = (-delta) as usize;
        let _ = buf.trim(pad);
        let data = buf.data_mut();
        data.copy_within(0..fixed, d);
        data[d + fixed..d + fixed + new_len].copy_from_slice(&new_opts[..new_len]);
        let _ = buf.adj(d);
    }
    finish(buf.data_mut(), meta, w12_new, new_csum, delta)
}

/// Once the options are in place (the header grew or shrank by `delta`): the
/// TCP data offset word and checksum, the IP length (with the IPv4 header
/// checksum), and `meta`.
fn finish(data: &mut [u8], meta: &mut IpMeta, w12: u16, tcp_csum: u16, delta: isize) -> Outcome {
    let (l3, l4) = (meta.l3_off, meta.l4_off);
    data[l4 + 12..l4 + 14].copy_from_slice(&w12.to_be_bytes());
    data[l4 + 16..l4 + 18].copy_from_slice(&tcp_csum.to_be_bytes());
    match meta.family {
        IpFamily::V4 => {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
            let old = ip.total_len();
            let new = (i32::from(old) + delta as i32) as u16;
            let c = checksum::update16(ip.checksum(), old, new);
            ip.set_total_len(new);
            ip.set_checksum(c);
        }
        IpFamily::V6 => {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[l3..]);
            let pl = (i32::from(ip.payload_len()) + delta as i32) as u16;
            ip.set_payload_len(pl);
        }
    }
    meta.l4_len = (meta.l4_len as isize + delta) as usize;
    Outcome::Inserted(delta)
}

/// [`insert`]'s common case in one pass: an IPv4 segment without TCP options
/// (the handshake's ACK from most stacks) and room for the 8-byte option. The
/// caller checked the family, the header length and the room.
fn insert_v4_plain<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &mut IpMeta,
    client: std::net::Ipv4Addr,
    port: u16,
) -> Outcome {
    const D: usize = LEN_V4;
    let (l4, end) = (meta.l4_off, meta.l3_end());
    let toa = option_v4(client, port);
    let fixed = l4 + MIN_HEADER_LEN; // Ethernet, IP and the fixed TCP header
    if !open_gap(buf, fixed, end, D) {
        return Outcome::NoRoom;
    }
    let data = buf.data_mut();
    data[fixed..fixed + D].copy_from_slice(&toa);
    let Some(tcp) = data[l4..].first_chunk::<MIN_HEADER_LEN>() else {
        return Outcome::NoRoom; // never: the segment had a whole header
    };
    let (w12, csum) = plain_v4_sums(tcp, &toa, meta.l4_len);
    finish(data, meta, w12.swap_bytes(), csum.swap_bytes(), D as isize)
}

/// Longest tail [`open_gap`] moves up (a longer one stays put and the bytes
/// before the gap move back instead).
const GAP_TAIL_MAX: usize = 64;

/// Open a `d`-byte gap at `at` in a frame whose packet ends at `end` (the
/// Ethernet padding past it dropped): the frame becomes `end + d` bytes,
/// `at..at + d` the gap (its content unspecified), what was before `at`
/// and from `at` on unchanged around it. A short tail (none in the
/// handshake's ACK, which takes TOA) moves up into the padding and the
/// tailroom, and the headers stay; otherwise the headers move back into the
/// headroom, whose cache line nothing has touched yet (the moved headers'
/// stores wait for it, and every load of them behind). `false`, and the
/// frame unchanged, if neither has room. The caller checked `at <= end <=
/// buf.len()` (a whole TCP header inside the packet, inside the frame).
#[inline(always)]
pub(super) fn open_gap<B: PacketBuf + ?Sized>(
    buf: &mut B,
    at: usize,
    end: usize,
    d: usize,
) -> bool {
    let (len, want) = (buf.len(), end + d);
    debug_assert!(
        at <= end && end <= len,
        "open_gap({at}, {end}) in {len} bytes"
    );
    if end - at <= GAP_TAIL_MAX {
        let grown = if len >= want {
            buf.trim(len - want)
        } else {
            buf.append(want - len).is_some()
        };
        if grown {
            if end > at {
                buf.data_mut().copy_within(at..end, at + d);
            }
            return true;
        }
    }
    if buf.prepend(d).is_none() {
        return false;
    }
    let _ = buf.trim(len - end);
    buf.data_mut().copy_within(d..d + at, 0);
    true
}

/// The 8-byte TOA option for an IPv4 client.
pub(super) fn option_v4(client: std::net::Ipv4Addr, port: u16) -> [u8; LEN_V4] {
    let (c, p) = (client.octets(), port.to_be_bytes());
    [KIND, LEN_V4 as u8, p[0], p[1], c[0], c[1], c[2], c[3]]
}

/// For `toa` put after the option-less TCP header `tcp` of a `seg_len`-byte
/// segment: the new data offset word and TCP checksum (see
/// [`plain_v4_delta`]), both little-endian (write them with `to_le_bytes`).
#[inline(always)]
fn plain_v4_sums(tcp: &[u8; MIN_HEADER_LEN], toa: &[u8; LEN_V4], seg_len: usize) -> (u16, u16) {
    let w12_old = u16::from_le_bytes([tcp[12], tcp[13]]);
    let (w12_new, delta) = plain_v4_delta(w12_old, toa, seg_len);
    let sum = u32::from(!u16::from_le_bytes([tcp[16], tcp[17]])) + delta;
    (w12_new, !checksum::fold(sum))
}

/// For `toa` put after an option-less TCP header whose data offset word
/// (bytes 12-13, read little-endian) is `w12_old`, in a `seg_len`-byte
/// segment: the new data offset word, and the TCP checksum's sum of `!old +
/// new` (RFC 1624) over the option's words, the data offset word and the
/// pseudo header's length, to add to the complemented old checksum. Every
/// word read little-endian and the results in that form: one's complement
/// sums commute with the byte swap (RFC 1071), so no swap per word; only
/// the length, an integer, is swapped into wire order. Shared by TOA's
/// insertion and FULLNAT's one pass (`nat::fnat_v4`).
#[inline(always)]
pub(super) fn plain_v4_delta(w12_old: u16, toa: &[u8; LEN_V4], seg_len: usize) -> (u16, u32) {
    let w = |i: usize| u32::from(u16::from_le_bytes([toa[i], toa[i + 1]]));
    let w12_old = u32::from(w12_old);
    // The data offset is the high nibble of byte 12, the low byte here.
    let w12_new = (((MIN_HEADER_LEN + LEN_V4) / 4) as u32) << 4 | (w12_old & 0xff0f);
    let wire = |n: usize| u32::from((n as u16).swap_bytes());
    let delta = w(0)
        + w(2)
        + w(4)
        + w(6)
        + (!w12_old & 0xffff)
        + w12_new
        + (!wire(seg_len) & 0xffff)
        + wire(seg_len + LEN_V4);
    (w12_new as u16, delta)
}

/// The first bytes of an untagged frame with an option-less IPv4 header and
/// an option-less TCP header: what the common case moves by the option.
pub(super) const FIXED_V4: usize = 14 + 20 + MIN_HEADER_LEN;

/// [`insert_v4_plain`] over fixed offsets, for the frames the classifier's
/// fast case sees (untagged, IPv4 header without options) with a TCP header
/// without options and room for the option within `mtu`: one 54-byte move
/// and the checksums from the option's words, no bounds check per field.
/// `None`: not that shape, [`insert`]'s general path decides.
fn insert_v4_fixed<B: PacketBuf + ?Sized>(
    buf: &mut B,
    meta: &mut IpMeta,
    client: std::net::Ipv4Addr,
    port: u16,
    mtu: usize,
) -> Option<Outcome> {
    const D: usize = LEN_V4;
    const L3: usize = 14;
    const L4: usize = L3 + 20;
    if meta.l3_off != L3 || meta.l4_off != L4 {
        return None;
    }
    let (end, seg_len) = (meta.l3_end(), meta.l4_len);
    let h = buf.data().get(..end)?.first_chunk::<FIXED_V4>()?;
    if usize::from(h[L4 + 12] >> 4) * 4 != MIN_HEADER_LEN
        || meta.ip_len() + D > mtu.min(usize::from(u16::MAX))
    {
        return None;
    }
    if !open_gap(buf, FIXED_V4, end, D) {
        return Some(Outcome::NoRoom);
    }
    // The frame is `end + D` bytes now.
    let h = buf.data_mut().first_chunk_mut::<{ FIXED_V4 + D }>()?;
    let toa = option_v4(client, port);
    h[FIXED_V4..].copy_from_slice(&toa);
    let tcp: [u8; MIN_HEADER_LEN] = h[L4..FIXED_V4].try_into().ok()?;
    let (w12, csum) = plain_v4_sums(&tcp, &toa, seg_len);
    h[L4 + 12..L4 + 14].copy_from_slice(&w12.to_le_bytes());
    h[L4 + 16..L4 + 18].copy_from_slice(&csum.to_le_bytes());
    // IPv4 total length, and its header checksum: the checksum read and
    // written little-endian like the sums above, the length in wire order.
    let w = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let total = w(L3 + 2);
    let grown = (total.swap_bytes() + D as u16).swap_bytes();
    let ipc = checksum::update16(w(L3 + 10), total, grown);
    h[L3 + 2..L3 + 4].copy_from_slice(&grown.to_le_bytes());
    h[L3 + 10..L3 + 12].copy_from_slice(&ipc.to_le_bytes());
    meta.l4_len = seg_len + D;
    Some(Outcome::Inserted(D as isize))
}

/// Lowers the MSS option of the TCP segment `seg` (exactly the segment) by
/// `by`, updating the checksum. `true` if an MSS option was found and lowered.
pub fn clamp_mss(seg: &mut [u8], by: u16) -> bool {
    let Ok(mut t) = TcpPacket::new_checked(&mut *seg) else {
        return false;
    };
    let mut at = None;
    {
        let o = t.options();
        let mut i = 0;
        while i < o.len() {
            match o[i] {
                OPT_EOL => break,
                OPT_NOP => i += 1,
                kind => {
                    let Some(&len) = o.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > o.len() {
                        break;
                    }
                    if kind == OPT_MSS && len == 4 {
                        at = Some(i);
                        break;
                    }
                    i += len;
                }
            }
        }
    }
    let Some(i) = at else { return false };
    let o = t.options();
    // The MSS value (option bytes i+2..i+4) in whole 16-bit words of the
    // header: options start at an even offset, so words start at even `i`.
    let (lo, hi) = ((i + 2) & !1, (i + 5) & !1);
    let mut before = [0u8; 6];
    before[..hi - lo].copy_from_slice(&o[lo..hi]);
    let mss = u16::from_be_bytes([o[i + 2], o[i + 3]]);
    let new = mss.saturating_sub(by).max(536);
    if new >= mss {
        return false;
    }
    let csum = t.checksum();
    let opts = t.options_mut();
    opts[i + 2..i + 4].copy_from_slice(&new.to_be_bytes());
    let mut after = [0u8; 6];
    after[..hi - lo].copy_from_slice(&opts[lo..hi]);
    let (before, after) = (&before[..hi - lo], &after[..hi - lo]);
    t.set_checksum(checksum::update_addr(csum, before, after));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, Packet};
    use crate::wire::VecBuf;
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};
    use std::net::Ipv4Addr;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const CIP: [u8; 4] = [10, 0, 0, 2];
    const VIP: [u8; 4] = [10, 0, 0, 100];

    fn frame(opts: &[TcpOptionElement], payload: &[u8], pad_to: usize) -> Vec<u8> {
        let mut h = etherparse::TcpHeader::new(40000, 80, 1001, 64000);
        h.ack = true;
        h.acknowledgment_number = 5001;
        h.set_options(opts).unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(CIP, VIP, 64)
            .tcp_header(h)
            .write(&mut v, payload)
            .unwrap();
        if v.len() < pad_to {
            v.resize(pad_to, 0xee);
        }
        v
    }

    /// A frame whose TCP options are `raw` (a multiple of 4 bytes) as given.
    fn raw_frame(raw: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut f = frame(&[], b"", 0)[..54].to_vec();
        f.extend_from_slice(raw);
        f.extend_from_slice(payload);
        let ip_len = (f.len() - 14) as u16;
        f[14 + 2..14 + 4].copy_from_slice(&ip_len.to_be_bytes());
        f[14 + 20 + 12] = (((20 + raw.len()) / 4) as u8) << 4;
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        TcpPacket::new_unchecked(&mut f[34..])
            .fill_checksum_v4(Ipv4Addr::from(CIP), Ipv4Addr::from(VIP));
        f
    }

    fn meta(f: &[u8]) -> IpMeta {
        match classify(f) {
            Ok(Packet::Ip(m)) => m,
            o => panic!("{o:?}"),
        }
    }

    /// Every checksum right per etherparse; returns the TCP options and payload.
    fn verify(f: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let h = PacketHeaders::from_ethernet_slice(f).unwrap();
        let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
            panic!()
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IP checksum");
        assert_eq!(usize::from(ip.total_len), f.len() - 14, "IP length");
        let Some(TransportHeader::Tcp(t)) = &h.transport else {
            panic!()
        };
        let pl = h.payload.slice();
        assert_eq!(
            t.checksum,
            t.calc_checksum_ipv4(ip, pl).unwrap(),
            "TCP checksum"
        );
        (t.options.as_slice().to_vec(), pl.to_vec())
    }

    const TOA_BYTES: [u8; 8] = [254, 8, 0x9c, 0x40, 10, 0, 0, 2];

    #[test]
    fn option_bytes_as_the_toa_module_reads_them() {
        let (o, n) = option(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40000);
        assert_eq!(&o[..n], &TOA_BYTES);
        let (o, n) = option("2001:db8::7".parse().unwrap(), 443);
        assert_eq!(n, 20);
        assert_eq!(&o[..4], &[254, 20, 1, 0xbb]);
        assert_eq!(&o[4..6], &[0x20, 0x01]);
        assert_eq!(o[19], 7);
    }

    #[test]
    fn inserted_into_an_ack_with_timestamps_and_padding() {
        let ts = TcpOptionElement::Timestamp(0x11223344, 0x55667788);
        let f = frame(
            &[TcpOptionElement::Noop, TcpOptionElement::Noop, ts],
            b"",
            60,
        );
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        let out = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, 1500);
        assert_eq!(out, Outcome::Inserted(8));
        let (opts, pl) = verify(b.data());
        assert_eq!(&opts[..12], &f[54..66], "existing options kept in place");
        assert_eq!(&opts[12..], &TOA_BYTES);
        assert!(pl.is_empty());
        assert_eq!(&b.data()[..14], &f[..14], "Ethernet header moved along");
        assert_eq!(m.l4_len, 20 + 12 + 8);
        assert_eq!(meta(b.data()), m);
    }

    #[test]
    fn inserted_into_a_data_segment_keeps_the_payload() {
        let body = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let f = frame(&[], body, 0);
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        assert_eq!(
            insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, 1500),
            Outcome::Inserted(8)
        );
        let (opts, pl) = verify(b.data());
        assert_eq!(opts, TOA_BYTES);
        assert_eq!(pl, body);
    }

    #[test]
    fn inserted_into_a_padded_ack_without_options_drops_the_padding() {
        // The common case (insert_v4_plain): a bare 54-byte ACK padded to the
        // Ethernet minimum, and the MTU boundary on both sides.
        let f = frame(&[], b"", 60);
        assert_eq!(f.len(), 60);
        for (mtu, fits) in [(48, true), (47, false)] {
            let mut m = meta(&f);
            let mut b = VecBuf::new(&f);
            let got = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, mtu);
            if !fits {
                assert_eq!(got, Outcome::NoRoom);
                assert_eq!(b.data(), &f[..], "unchanged");
                continue;
            }
            assert_eq!(got, Outcome::Inserted(8));
            assert_eq!(b.data().len(), 54 + 8, "padding gone");
            let (opts, pl) = verify(b.data());
            assert_eq!(opts, TOA_BYTES);
            assert!(pl.is_empty());
            assert_eq!(meta(b.data()), m);
        }
    }

    #[test]
    fn fixed_offsets_and_the_general_plain_path_agree() {
        // `insert` takes the fixed-offset path for these frames; the
        // offset-generic one (VLAN tags, IP options) must write the same.
        for (payload, pad) in [(&b""[..], 60), (&b"GET / HTTP/1.1\r\n\r\n"[..], 0)] {
            let f = frame(&[], payload, pad);
            let (mut m1, mut m2) = (meta(&f), meta(&f));
            let (mut b1, mut b2) = (VecBuf::new(&f), VecBuf::new(&f));
            let c = Ipv4Addr::from(CIP);
            assert_eq!(
                insert(&mut b1, &mut m1, IpAddr::V4(c), 40000, 1500),
                Outcome::Inserted(8)
            );
            assert_eq!(
                insert_v4_plain(&mut b2, &mut m2, c, 40000),
                Outcome::Inserted(8)
            );
            assert_eq!(b1.data(), b2.data());
            assert_eq!(m1, m2);
            verify(b1.data());
        }
    }

    #[test]
    fn full_header_drops_nops_then_timestamp() {
        use TcpOptionElement::*;
        // 40 option bytes: MSS(4) NOP NOP TS(10) NOP NOP SACKperm(2)... pad to 40 with NOPs
        let ts = Timestamp(1, 2);
        let mut opts = vec![MaximumSegmentSize(1460), Noop, Noop, ts.clone()];
        opts.extend(std::iter::repeat_n(Noop, 24));
        let f = frame(&opts, b"data", 0);
        assert_eq!(f[14 + 20 + 12] >> 4, 15, "60-byte TCP header");
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        let out = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, 1500);
        // MSS(4) + TS(10) = 14 -> pad 16, + 8 = 24: shrinks by 16
        assert_eq!(out, Outcome::Inserted(-16));
        let (o, pl) = verify(b.data());
        assert_eq!(&o[..4], &[2, 4, 0x05, 0xb4]);
        assert_eq!(o[4], 8, "timestamp kept");
        assert_eq!(&o[16..], &TOA_BYTES);
        assert_eq!(pl, b"data");

        // MSS + TS + a 26-byte unknown option: 40 bytes, no NOPs; only dropping
        // the timestamp makes room.
        let mut big = [0u8; 26];
        big[0] = 99;
        big[1] = 26;
        let mut raw = vec![2, 4, 0x05, 0xb4, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        raw.extend_from_slice(&big);
        let f2 = raw_frame(&raw, b"");
        let mut m = meta(&f2);
        let mut b = VecBuf::new(&f2);
        let out = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, 1500);
        // 4 + 26 = 30 -> pad 32, + 8 = 40: same length
        assert_eq!(out, Outcome::Inserted(0), "TS dropped");
        let (o, _) = verify(b.data());
        assert_eq!(&o[4..30], &big);
        assert_eq!(&o[o.len() - 8..], &TOA_BYTES);
    }

    #[test]
    fn no_room_leaves_the_frame_alone() {
        // 40 bytes of one unknown option: nothing to drop.
        let mut opt = vec![99u8, 40];
        opt.resize(40, 0);
        let f = raw_frame(&opt, b"");
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        assert_eq!(
            insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 1, 1500),
            Outcome::NoRoom
        );
        assert_eq!(b.data(), &f[..]);

        // MTU: a full-sized segment has no room for 8 more bytes.
        let f = frame(&[], &[7u8; 1460], 0);
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        assert_eq!(
            insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 1, 1500),
            Outcome::NoRoom
        );
        assert_eq!(b.data(), &f[..]);

        // No headroom, and a payload too long to move up instead.
        let f = frame(&[], &[7u8; 65], 0);
        let mut m = meta(&f);
        let mut b = VecBuf::with_headroom(&f, 4);
        assert_eq!(
            insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 1, 1500),
            Outcome::NoRoom
        );
        assert_eq!(b.data(), &f[..]);
    }

    /// A short payload moves up and the headers stay (no headroom needed); a
    /// longer one stays and the headers move back: the same bytes either way.
    #[test]
    fn short_payloads_move_up_long_ones_stay() {
        for (plen, pad) in [(0, 60), (0, 0), (1, 60), (64, 0), (65, 0), (300, 0)] {
            let payload: Vec<u8> = (0..plen).map(|i| i as u8).collect();
            let f = frame(&[], &payload, pad);
            let mut m = meta(&f);
            let mut b = VecBuf::new(&f);
            let out = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, 1500);
            assert_eq!(out, Outcome::Inserted(8), "payload {plen}");
            let (o, p) = verify(b.data());
            assert_eq!(&o[..], &option_v4(CIP.into(), 40000)[..], "payload {plen}");
            assert_eq!(p, payload, "payload {plen}");
            assert_eq!(b.len(), 54 + 8 + plen, "padding dropped, payload {plen}");
            // Without headroom: only a short payload can move up.
            let mut m = meta(&f);
            let mut tight = VecBuf::with_headroom(&f, 0);
            let out = insert(&mut tight, &mut m, IpAddr::V4(CIP.into()), 40000, 1500);
            if plen <= 64 {
                assert_eq!(tight.data(), b.data(), "payload {plen}");
            } else {
                assert_eq!(out, Outcome::NoRoom, "payload {plen}");
            }
        }
    }

    #[test]
    fn mss_clamped_with_checksum() {
        use TcpOptionElement::*;
        for opts in [
            vec![MaximumSegmentSize(1460)],
            vec![Noop, MaximumSegmentSize(1460), Noop, Noop, Noop],
            vec![Noop, Noop, Timestamp(1, 2), MaximumSegmentSize(1460)],
        ] {
            let mut f = frame(&opts, b"", 0);
            assert!(clamp_mss(&mut f[34..], 8));
            let (o, _) = verify(&f);
            let at = o.windows(2).position(|w| w == [2, 4]).unwrap();
            assert_eq!(&o[at + 2..at + 4], &1452u16.to_be_bytes());
        }
        let mut f = frame(&[], b"", 0);
        assert!(!clamp_mss(&mut f[34..], 8), "no MSS option");
    }

    #[test]
    fn random_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(opts in proptest::collection::vec(any::<u8>(), 0..=40usize), mtu in 0usize..2000)| {
            let n = opts.len() / 4 * 4;
            let f = raw_frame(&opts[..n], b"payload");
            let mut m = meta(&f);
            let mut b = VecBuf::new(&f);
            if let Outcome::Inserted(_) = insert(&mut b, &mut m, IpAddr::V4(CIP.into()), 40000, mtu) {
                let (o, pl) = verify(b.data());
                prop_assert_eq!(&o[o.len() - 8..], &TOA_BYTES[..]);
                prop_assert_eq!(pl, b"payload".to_vec());
                // Never grown past the MTU (a packet already beyond it may only
                // have had its options squeezed, not grown).
                prop_assert!(b.data().len() - 14 <= mtu.max(f.len() - 14));
            } else {
                prop_assert_eq!(b.data(), &f[..]);
            }
            let mut g = f.clone();
            let _ = clamp_mss(&mut g[34..], 8);
        });
    }

    /// [`fnat_v4`] against what it stands for: [`insert`] when TOA is due,
    /// then [`rewrite_fwd_v4`](crate::wire::nat::rewrite_fwd_v4), on random
    /// segments (options or not, payload, padding, TTL, checksums good or
    /// bad, the MTU, the headroom, TOA due or not). Where it takes the
    /// segment, the same bytes; where it declines, nothing changed. And
    /// [`nat::fnat_v4_with`] with the link header's addresses: the same bytes
    /// but those.
    #[test]
    fn one_pass_fnat_is_insert_then_rewrite() {
        use crate::wire::nat::{self, fnat_v4, FnatIn};
        use proptest::prelude::*;
        let case = (
            (0usize..4, 0usize..100, any::<bool>(), 0usize..20),
            (any::<u8>(), any::<[u8; 2]>(), any::<[u8; 2]>()),
            (
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>(),
            ),
            (any::<[u8; 4]>(), any::<u16>(), 0u8..3, 0usize..1600),
        );
        proptest!(|(((nops, plen, pad, headroom), (ttl, ipc, tcpc), (s4, sp, d4, dp), (c4, cp, due, mtu)) in case)| {
            let opts = vec![TcpOptionElement::Noop; nops * 4];
            let payload: Vec<u8> = (0..plen).map(|i| i as u8).collect();
            let mut f = frame(&opts, &payload, if pad { 60 } else { 0 });
            let m = meta(&f);
            f[14 + 8] = ttl;
            f[14 + 10..14 + 12].copy_from_slice(&ipc);
            f[34 + 16..34 + 18].copy_from_slice(&tcpc);
            let seq = u32::from_be_bytes(f[38..42].try_into().unwrap());
            let first = match due {
                0 => None,
                1 => Some(seq),
                _ => Some(seq.wrapping_add(1)),
            };
            let (src, dst, client) = ((s4, sp), (d4, dp), (c4, cp));
            let mut got = VecBuf::with_headroom(&f, headroom);
            let done = fnat_v4(&mut got, &m, first, client, src, dst, mtu);
            // The dataplane's form: the same, the link header's addresses
            // written too (where it takes the segment).
            let macs = ([0xa0 ^ ttl; 6], [0x5c ^ ipc[0]; 6]);
            let ends = nat::FnatEnds { first, client, src, dst };
            let mut with = VecBuf::with_headroom(&f, headroom);
            prop_assert_eq!(nat::fnat_v4_with(&mut with, &m, ends, || mtu, Some(macs)), done);
            let mut linked = got.data().to_vec();
            if done.is_some() {
                linked[..6].copy_from_slice(&macs.0);
                linked[6..12].copy_from_slice(&macs.1);
            }
            prop_assert_eq!(with.data(), &linked[..]);
            let mut want = VecBuf::with_headroom(&f, headroom);
            let mut wm = m;
            let toa = first == Some(seq);
            let inserted = toa
                && insert(&mut want, &mut wm, IpAddr::V4(c4.into()), cp, mtu) == Outcome::Inserted(8);
            let rewritten = nat::rewrite_fwd_v4(&mut want.data_mut()[14..], &wm, src, dst);
            match done {
                Some(FnatIn::Toa) => {
                    prop_assert!(toa && inserted && rewritten.is_ok());
                    prop_assert_eq!(got.data(), want.data());
                }
                Some(FnatIn::Rewritten) => {
                    prop_assert!(!toa && rewritten.is_ok());
                    prop_assert_eq!(got.data(), want.data());
                }
                None => {
                    prop_assert_eq!(got.data(), &f[..]);
                    // Declined only for what it does not do in one pass.
                    prop_assert!(ttl <= 1 || (toa && (nops != 0 || !inserted)));
                }
            }
        });
    }

    /// FULLNAT66: an IPv6 client gets the 20-byte form (port, 16-byte
    /// address) in an IPv6 segment, payload length and TCP checksum right.
    #[test]
    fn inserted_for_an_ipv6_client_is_twenty_bytes() {
        let cip: std::net::Ipv6Addr = "fd00:10::2".parse().unwrap();
        let vip: std::net::Ipv6Addr = "fd00:10::100".parse().unwrap();
        let mut h = etherparse::TcpHeader::new(40000, 80, 1001, 64000);
        h.ack = true;
        h.acknowledgment_number = 5001;
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(cip.octets(), vip.octets(), 64)
            .tcp_header(h)
            .write(&mut f, b"data")
            .unwrap();
        let mut m = meta(&f);
        let mut b = VecBuf::new(&f);
        let out = insert(&mut b, &mut m, IpAddr::V6(cip), 40000, 1500);
        assert_eq!(out, Outcome::Inserted(LEN_V6 as isize));
        let p = PacketHeaders::from_ethernet_slice(b.data()).unwrap();
        let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
            panic!()
        };
        assert_eq!(usize::from(ip.payload_length), 20 + 20 + 4);
        let Some(TransportHeader::Tcp(t)) = &p.transport else {
            panic!()
        };
        let pl = p.payload.slice();
        assert_eq!(pl, b"data");
        assert_eq!(
            t.checksum,
            t.calc_checksum_ipv6(ip, pl).unwrap(),
            "TCP checksum"
        );
        let opts = t.options.as_slice();
        assert_eq!(&opts[..4], &[254, 20, 0x9c, 0x40]);
        assert_eq!(&opts[4..20], &cip.octets());
        assert_eq!(meta(b.data()), m);
    }
}
