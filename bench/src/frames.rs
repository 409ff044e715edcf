//! Test traffic: the addressing plan of the pipeline bench, a fast IPv4/TCP frame
//! writer for the generator, and the checks applied to what the director sends.
//!
//! Frames are written by hand (no allocation, checksums computed here) so the
//! generator stays far ahead of the worker; what comes out is checked with
//! etherparse, an independent parser, so a rewrite bug fails the run.

use std::net::Ipv4Addr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// MAC of the client-side gateway (every client sits behind it).
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const GW_IP: [u8; 4] = [10, 0, 0, 2];
pub const DIP_CLIENT: [u8; 4] = [10, 0, 0, 1];
pub const VIP: [u8; 4] = [10, 0, 0, 100];
pub const VPORT: u16 = 80;
pub const DIP_SERVER: [u8; 4] = [192, 168, 0, 1];
/// A local address for FULLNAT (LIP), on the server-side port.
pub const LIP: [u8; 4] = [192, 168, 0, 200];
pub const RPORT: u16 = 8080;
pub const TTL: u8 = 64;

/// Client flows per client address (source ports 10000..60000).
const PORTS_PER_CLIENT: u32 = 50_000;
const CPORT_BASE: u16 = 10_000;
/// Clients are 100.64.0.0/10 (behind the gateway).
const CLIENT_BASE: u32 = 0x6440_0000;

pub mod flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Real server `i` (0-based): address and MAC.
pub fn rs(i: usize) -> ([u8; 4], [u8; 6]) {
    (
        [192, 168, 0, 11 + i as u8],
        [0x02, 0, 0, 0, 1, 0x11 + i as u8],
    )
}

/// Client address and port of flow `i`.
pub fn client(i: u32) -> ([u8; 4], u16) {
    let ip = CLIENT_BASE + i / PORTS_PER_CLIENT;
    let port = CPORT_BASE + (i % PORTS_PER_CLIENT) as u16;
    (ip.to_be_bytes(), port)
}

/// Flow index of a client address and port, if it is one.
pub fn flow_of(ip: [u8; 4], port: u16) -> Option<u32> {
    let a = u32::from_be_bytes(ip).checked_sub(CLIENT_BASE)?;
    let p = port.checked_sub(CPORT_BASE)? as u32;
    // Clients are 100.64.0.0/10; anything above is not one.
    if a >= 1 << 22 || p >= PORTS_PER_CLIENT {
        return None;
    }
    a.checked_mul(PORTS_PER_CLIENT)?.checked_add(p)
}

/// One IPv4/TCP segment to write.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: usize,
}

impl Seg {
    /// The fields a [`Template`] leaves out.
    pub fn addrs(&self) -> Addrs {
        Addrs {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
        }
    }
}

/// Minimum Ethernet frame without FCS: a "64-byte" frame on the wire.
pub const ETH_MIN: usize = 60;

/// Length of the frame `s` produces.
pub fn frame_len(s: &Seg) -> usize {
    (54 + s.payload).max(ETH_MIN)
}

pub fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = it.remainder() {
        sum += u32::from(*x) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Write `s` into `out` (at least `frame_len(s)` bytes); returns the length.
/// The payload is a filler pattern.
pub fn write(s: &Seg, out: &mut [u8]) -> usize {
    write_with(s, None, out)
}

/// Write `s` with the given payload bytes (`payload.len()` must be `s.payload`).
pub fn write_with(s: &Seg, payload: Option<&[u8]>, out: &mut [u8]) -> usize {
    let len = frame_len(s);
    let f = &mut out[..len];
    f.fill(0);
    f[0..6].copy_from_slice(&s.dst_mac);
    f[6..12].copy_from_slice(&s.src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let tot = (40 + s.payload) as u16;
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = TTL;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&s.src);
        ip[16..20].copy_from_slice(&s.dst);
        let c = csum_fold(csum_add(0, ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    {
        let tcp = &mut f[34..54 + s.payload];
        tcp[0..2].copy_from_slice(&s.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&s.dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&s.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&s.ack.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = s.flags;
        tcp[14..16].copy_from_slice(&64000u16.to_be_bytes());
        match payload {
            Some(p) => tcp[20..].copy_from_slice(p),
            None => {
                for (i, b) in tcp[20..].iter_mut().enumerate() {
                    *b = b'a' + (i % 26) as u8;
                }
            }
        }
        let mut sum = csum_add(0, &s.src);
        sum = csum_add(sum, &s.dst);
        sum += 6 + u32::from(20 + s.payload as u16);
        let c = csum_fold(csum_add(sum, tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
    len
}

/// A set of frames of one length, back to back (1 M frames = one allocation).
pub struct Frames {
    buf: Vec<u8>,
    flen: usize,
}

impl Frames {
    pub fn build(n: usize, mut seg: impl FnMut(usize) -> Seg) -> Frames {
        let first = seg(0);
        let flen = frame_len(&first);
        let mut buf = vec![0u8; n * flen];
        for (i, chunk) in buf.chunks_exact_mut(flen).enumerate() {
            let s = if i == 0 { first } else { seg(i) };
            debug_assert_eq!(frame_len(&s), flen);
            write(&s, chunk);
        }
        Frames { buf, flen }
    }

    /// `n` frames of `flen` bytes, all zero, to write with [`Frames::set_from`].
    pub fn zeroed(n: usize, flen: usize) -> Frames {
        Frames {
            buf: vec![0u8; n * flen],
            flen,
        }
    }

    /// Write `t` with the addresses of `a` as frame `i`; `t` must make
    /// frames of this set's length.
    pub fn set_from(&mut self, i: usize, t: &Template, a: &Addrs) {
        debug_assert_eq!(t.bytes.len(), self.flen);
        let flen = self.flen;
        t.write(a, &mut self.buf[i * flen..(i + 1) * flen]);
    }

    pub fn len(&self) -> usize {
        self.buf.len() / self.flen.max(1)
    }

    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.buf[i * self.flen..(i + 1) * self.flen]
    }
}

/// The fields a [`Template`] leaves out: MACs, IP addresses and ports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Addrs {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
}

/// One segment's frame written without its [`Addrs`], as a traffic
/// generator's template: frames that differ only in those are a copy and
/// a few stores, their checksums the template's sums plus the fields' words
/// (what [`write`] gives for the same segment, without its per-byte work).
pub struct Template {
    bytes: Vec<u8>,
    /// IPv4 header sum, addresses and checksum zero.
    ip_sum: u32,
    /// TCP sum with its pseudo-header, addresses, ports and checksum zero.
    tcp_sum: u32,
}

impl Template {
    /// The frame of `s`, whose MACs, addresses and ports are ignored.
    pub fn new(s: &Seg) -> Template {
        let s = Seg {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src: [0; 4],
            sport: 0,
            dst: [0; 4],
            dport: 0,
            ..*s
        };
        let mut bytes = vec![0u8; frame_len(&s)];
        write(&s, &mut bytes);
        bytes[24..26].fill(0);
        bytes[50..52].fill(0);
        let ip_sum = csum_add(0, &bytes[14..34]);
        let tcp_sum = csum_add(
            6 + u32::from(20 + s.payload as u16),
            &bytes[34..54 + s.payload],
        );
        Template {
            bytes,
            ip_sum,
            tcp_sum,
        }
    }

    /// Bytes of the frames this template writes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The frame with the addresses of `a` into `out` (the template's length).
    pub fn write(&self, a: &Addrs, out: &mut [u8]) {
        out.copy_from_slice(&self.bytes);
        out[0..6].copy_from_slice(&a.dst_mac);
        out[6..12].copy_from_slice(&a.src_mac);
        out[26..30].copy_from_slice(&a.src);
        out[30..34].copy_from_slice(&a.dst);
        let addrs = csum_add(csum_add(0, &a.src), &a.dst);
        out[24..26].copy_from_slice(&csum_fold(self.ip_sum + addrs).to_be_bytes());
        out[34..36].copy_from_slice(&a.sport.to_be_bytes());
        out[36..38].copy_from_slice(&a.dport.to_be_bytes());
        let ports = u32::from(a.sport) + u32::from(a.dport);
        out[50..52].copy_from_slice(&csum_fold(self.tcp_sum + addrs + ports).to_be_bytes());
    }
}

/// The addresses of one IPv4/TCP frame at fixed offsets (no options before L4),
/// read without a full parse: for matching outputs to flows on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quick {
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
}

pub fn quick(f: &[u8]) -> Option<Quick> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let proto = f[23];
    // IP-in-IP (TUN): look at the inner header.
    if proto == 4 {
        let inner = &f[l4..];
        let mut fake = Vec::with_capacity(14 + inner.len());
        fake.extend_from_slice(&f[..14]);
        fake.extend_from_slice(inner);
        return quick(&fake);
    }
    if proto != 6 || f.len() < l4 + 14 {
        return None;
    }
    Some(Quick {
        src: f[26..30].try_into().ok()?,
        dst: f[30..34].try_into().ok()?,
        sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        flags: f[l4 + 13],
        seq: u32::from_be_bytes(f[l4 + 4..l4 + 8].try_into().ok()?),
        ack: u32::from_be_bytes(f[l4 + 8..l4 + 12].try_into().ok()?),
    })
}

/// What a checked frame must look like.
#[derive(Debug, Clone)]
pub struct Expect {
    pub dst_mac: Option<[u8; 6]>,
    pub src_mac: Option<[u8; 6]>,
    /// Outer IPv4 destination must be one of these.
    pub dst_ips: Vec<[u8; 4]>,
    pub dport: Option<u16>,
    /// Source must be a client address (NAT, DR), or this exact one.
    pub src_is_client: bool,
    pub src_ip: Option<[u8; 4]>,
    pub sport: Option<u16>,
    pub ttl: Option<u8>,
    /// IP-in-IP: outer header around the original segment (TUN).
    pub ipip: bool,
    /// A TOA option (kind 254) carrying the client's address must be present (FULLNAT SYN).
    pub toa: bool,
}

/// Check one output frame with etherparse; `Err` says what is wrong.
pub fn check(f: &[u8], e: &Expect) -> Result<(), String> {
    if let Some(m) = e.dst_mac {
        if f.get(0..6) != Some(&m[..]) {
            return Err(format!(
                "dst MAC {:02x?}, want {m:02x?}",
                &f[..6.min(f.len())]
            ));
        }
    }
    if let Some(m) = e.src_mac {
        if f.get(6..12) != Some(&m[..]) {
            return Err("src MAC is not the egress port's".into());
        }
    }
    let p = SlicedPacket::from_ethernet(f).map_err(|err| format!("does not parse: {err}"))?;
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        return Err("not IPv4".into());
    };
    let h = ip4.header().to_header();
    if h.header_checksum != h.calc_header_checksum() {
        return Err("bad IPv4 header checksum".into());
    }
    if !e.dst_ips.is_empty() && !e.dst_ips.contains(&h.destination) {
        return Err(format!("dst {}", Ipv4Addr::from(h.destination)));
    }
    if let Some(t) = e.ttl {
        if h.time_to_live != t {
            return Err(format!("TTL {} want {t}", h.time_to_live));
        }
    }
    // For TUN the inner packet is what the client sent.
    let (ih, tcp) = if e.ipip {
        if h.protocol != etherparse::IpNumber::IPV4 {
            return Err("TUN: outer protocol is not IPIP".into());
        }
        let inner = &f[14 + h.header_len()..];
        let ip = etherparse::Ipv4Slice::from_slice(inner).map_err(|e| format!("inner: {e}"))?;
        let ih = ip.header().to_header();
        if ih.header_checksum != ih.calc_header_checksum() {
            return Err("bad inner IPv4 checksum".into());
        }
        let t = etherparse::TcpSlice::from_slice(ip.payload().payload)
            .map_err(|e| format!("inner TCP: {e}"))?;
        (ih, t)
    } else {
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            return Err("not TCP".into());
        };
        (h.clone(), t.clone())
    };
    let th = tcp.to_header();
    let want = th
        .calc_checksum_ipv4(&ih, tcp.payload())
        .map_err(|e| format!("checksum: {e}"))?;
    if th.checksum != want {
        return Err("bad TCP checksum".into());
    }
    if let Some(d) = e.dport {
        if tcp.destination_port() != d {
            return Err(format!("dport {} want {d}", tcp.destination_port()));
        }
    }
    if e.src_is_client && flow_of(ih.source, tcp.source_port()).is_none() {
        return Err(format!(
            "src {}:{} is not a client",
            Ipv4Addr::from(ih.source),
            tcp.source_port()
        ));
    }
    if let Some(s) = e.src_ip {
        if ih.source != s {
            return Err(format!("src {}", Ipv4Addr::from(ih.source)));
        }
    }
    if let Some(s) = e.sport {
        if tcp.source_port() != s {
            return Err(format!("sport {} want {s}", tcp.source_port()));
        }
    }
    if e.toa && toa(f).is_none() {
        return Err("FULLNAT: no TOA option".into());
    }
    Ok(())
}

/// Client address and port carried in a TOA option (kind 254, len 8), if any.
pub fn toa(f: &[u8]) -> Option<([u8; 4], u16)> {
    let ihl = usize::from(*f.get(14)? & 0x0f) * 4;
    let l4 = 14 + ihl;
    let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
    let opts = f.get(l4 + 20..l4 + doff)?;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 254 && len == 8 {
                    let port = u16::from_be_bytes([opts[i + 2], opts[i + 3]]);
                    let ip = opts.get(i + 4..i + 8)?.try_into().ok()?;
                    return Some((ip, port));
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_frames_parse_with_valid_checksums() {
        let (cip, cport) = client(123_456);
        let s = Seg {
            src_mac: GW_MAC,
            dst_mac: [2, 0, 0, 0, 0, 9],
            src: cip,
            sport: cport,
            dst: VIP,
            dport: VPORT,
            flags: flag::SYN,
            seq: 1000,
            ack: 0,
            payload: 0,
        };
        let mut b = [0u8; 128];
        let n = write(&s, &mut b);
        assert_eq!(n, ETH_MIN);
        let e = Expect {
            dst_mac: None,
            src_mac: Some(GW_MAC),
            dst_ips: vec![VIP],
            dport: Some(VPORT),
            src_is_client: true,
            src_ip: None,
            sport: None,
            ttl: Some(TTL),
            ipip: false,
            toa: false,
        };
        check(&b[..n], &e).unwrap();
        let q = quick(&b[..n]).unwrap();
        assert_eq!(flow_of(q.src, q.sport), Some(123_456));
        assert_eq!(flow_of(DIP_SERVER, 40_000), None, "no overflow, no client");
        assert_eq!(flow_of([255; 4], 65_535), None);
        let s2 = Seg { payload: 16, ..s };
        let n = write(&s2, &mut b);
        assert_eq!(n, 70);
        check(&b[..n], &e).unwrap();
        b[40] ^= 1;
        assert!(check(&b[..n], &e).is_err(), "a flipped byte is caught");
    }

    #[test]
    fn a_template_writes_what_write_does() {
        for (i, payload) in [(1u32, 0usize), (70_000, 16), (4_000_000, 0)] {
            let (cip, cport) = client(i);
            let s = Seg {
                src_mac: [2, 0, 0, 0, 0, 7],
                dst_mac: [2, 0, 0, 0, 0, 9],
                src: [192, 168, 0, 12],
                sport: 0xfffe,
                dst: cip,
                dport: cport,
                flags: flag::PSH | flag::ACK,
                seq: 5001,
                ack: 1017,
                payload,
            };
            let mut want = vec![0u8; frame_len(&s)];
            write(&s, &mut want);
            let a = s.addrs();
            // Built from a segment of other addresses: they are left out.
            let t = Template::new(&Seg {
                src: [9; 4],
                dport: 7,
                ..s
            });
            let mut got = vec![0xeeu8; want.len()];
            t.write(&a, &mut got);
            assert_eq!(got, want, "flow {i}, payload {payload}");
        }
    }
}
