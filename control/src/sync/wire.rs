//! IPVS's sync protocol, version 1, as the kernel's `ip_vs_sync.c` sends
//! and reads it, with this project's extensions as optional parameters
//! (docs/ha.md "The wire format").
//!
//! A message (one UDP datagram, multicast to 224.0.0.81:8848 by default):
//!
//! ```text
//! header   0 | syncid | size (u16, whole message) | count | version 1 | 0 (u16)
//! conn     type (0 IPv4, 1 IPv6) | protocol | version 0 : size (u16, 4+12 bits)
//!          flags (u32) | state (u16) | cport | vport | dport (u16 each)
//!          fwmark (u32) | timeout (u32, s) | caddr | vaddr | daddr (4 or 16 B)
//!          parameters: type (u8) | length (u8) | data, the whole padded to 4 B
//! ```
//!
//! Parameters with bit 0x40 set (IPVS_OPT_F_PARAM) are optional: a receiver
//! that does not know one skips it (kernel IPVS does), so kernel backups read
//! these messages for the NAT, DR and TUN connections they can handle.
//! Extensions (optional parameters):
//!
//! - 0x48 local address: the FULLNAT LIP (4 or 16 B) and local port (2 B);
//! - 0x49 connection state: this implementation's per-connection state
//!   (FULLNAT sequence offset and TOA / Proxy Protocol progress: 8 B; the SYN
//!   proxy's offset: 4 B; flag bits: 1 B).
//!
//! Persistence templates are records with `IP_VS_CONN_F_TEMPLATE` (0x1000),
//! the client's masked address and port 0, state 0, as IPVS sends them.
//!
//! FULLNAT64 mixes families in one connection: the record is then IPv6 and
//! the IPv4 real server's address is written IPv4-mapped (`::ffff:a.b.c.d`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use conntrack::TcpState;
use dataplane::sync::{ConnExt, SyncConn};
use dataplane::ForwardMode;

/// The UDP payload a message may fill on a 1500-byte MTU link.
pub const MAX_MESSAGE: usize = 1500 - 20 - 8;

const HEADER: usize = 8;
const VERSION: u8 = 1;
const TYPE_INET6: u8 = 1;
const CONN_V4: usize = 36;
const CONN_V6: usize = 72;

/// `IP_VS_CONN_F_*`: forwarding method (low 3 bits) and inactive flag.
const F_MASQ: u32 = 0;
const F_TUNNEL: u32 = 2;
const F_DROUTE: u32 = 3;
/// DPVS's FULLNAT method number.
const F_FULLNAT: u32 = 5;
const F_FWD_MASK: u32 = 7;
const F_INACTIVE: u32 = 0x0100;
/// Flags IPVS never syncs meaningfully for a connection: a template, one
/// packet scheduling.
const F_TEMPLATE: u32 = 0x1000;

const OPT_F_PARAM: u8 = 0x40;
const OPT_LOCAL: u8 = OPT_F_PARAM | 8;
const OPT_STATE: u8 = OPT_F_PARAM | 9;
const STATE_LEN: usize = 13;

/// Why a message was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its header or than it says.
    Truncated,
    /// Not version 1 (version 0 or garbage).
    Version,
    /// The size in the header is not the datagram's.
    Size,
    /// Another sync id than the one this backup follows.
    OtherSyncId,
}

impl Error {
    pub fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Version => "version",
            Error::Size => "size",
            Error::OtherSyncId => "other_syncid",
        }
    }
}

/// The messages carrying `conns` for sync id `syncid`, each at most
/// `max_len` bytes and 255 connections.
pub fn encode(syncid: u8, conns: &[SyncConn], max_len: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut msg = Vec::new();
    let mut count = 0u8;
    let mut rec = Vec::with_capacity(128);
    for c in conns {
        rec.clear();
        encode_conn(c, &mut rec);
        let pad = (4 - msg.len() % 4) % 4;
        if !msg.is_empty() && (msg.len() + pad + rec.len() > max_len || count == u8::MAX) {
            out.push(finish(std::mem::take(&mut msg), count));
            count = 0;
        }
        if msg.is_empty() {
            msg.extend_from_slice(&[0, syncid, 0, 0, 0, VERSION, 0, 0]);
        } else {
            msg.resize(msg.len() + pad, 0);
        }
        msg.extend_from_slice(&rec);
        count += 1;
    }
    if !msg.is_empty() {
        out.push(finish(msg, count));
    }
    out
}

fn finish(mut msg: Vec<u8>, count: u8) -> Vec<u8> {
    let size = msg.len() as u16;
    msg[2..4].copy_from_slice(&size.to_be_bytes());
    msg[4] = count;
    msg
}

fn encode_conn(c: &SyncConn, out: &mut Vec<u8>) {
    let v6 = c.client.0.is_ipv6() || c.vip.0.is_ipv6();
    let mut flags = if c.template { F_TEMPLATE } else { 0 };
    flags |= match c.mode {
        ForwardMode::Nat => F_MASQ,
        ForwardMode::FullNat => F_FULLNAT,
        ForwardMode::Dr => F_DROUTE,
        ForwardMode::Tun => F_TUNNEL,
    };
    if c.proto == conntrack::PROTO_TCP && c.state != TcpState::Established && !c.template {
        flags |= F_INACTIVE;
    }
    let state = match c.state {
        _ if c.template => 0,
        TcpState::Udp => 0,
        s => s as u16,
    };
    out.push(if v6 { TYPE_INET6 } else { 0 });
    out.push(c.proto);
    out.extend_from_slice(&[0, 0]); // version 0 and size, below
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&state.to_be_bytes());
    out.extend_from_slice(&c.client.1.to_be_bytes());
    out.extend_from_slice(&c.vip.1.to_be_bytes());
    out.extend_from_slice(&c.dest.1.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // fwmark
    out.extend_from_slice(&c.timeout_s.to_be_bytes());
    for a in [c.client.0, c.vip.0, c.dest.0] {
        put_addr(out, a, v6);
    }
    if let Some((lip, lport)) = c.local {
        let len = if lip.is_ipv6() { 18 } else { 6 };
        out.extend_from_slice(&[OPT_LOCAL, len]);
        put_addr(out, lip, lip.is_ipv6());
        out.extend_from_slice(&lport.to_be_bytes());
    }
    if c.ext != ConnExt::default() {
        out.extend_from_slice(&[OPT_STATE, STATE_LEN as u8]);
        out.extend_from_slice(&c.ext.user.to_be_bytes());
        out.extend_from_slice(&c.ext.user32.to_be_bytes());
        out.push(c.ext.flags);
    }
    let size = out.len() as u16;
    out[2..4].copy_from_slice(&size.to_be_bytes());
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr, v6: bool) {
    match (a, v6) {
        (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), _) => out.extend_from_slice(&a.octets()),
    }
}

/// What one message held: the connections read, and how many records
/// were skipped (another protocol, a template, an unknown mandatory
/// parameter, a malformed record).
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub conns: Vec<SyncConn>,
    pub skipped: usize,
}

/// Reads a message; `syncid` 0 takes every sync id (as IPVS's backup).
pub fn decode(buf: &[u8], syncid: u8) -> Result<Decoded, Error> {
    if buf.len() < HEADER {
        return Err(Error::Truncated);
    }
    if buf[0] != 0 || buf[5] != VERSION || buf[6..8] != [0, 0] {
        return Err(Error::Version);
    }
    if usize::from(u16::from_be_bytes([buf[2], buf[3]])) != buf.len() {
        return Err(Error::Size);
    }
    if syncid != 0 && buf[1] != syncid {
        return Err(Error::OtherSyncId);
    }
    let mut d = Decoded::default();
    let mut at = HEADER;
    for _ in 0..buf[4] {
        let Some(head) = buf.get(at..at + 4) else {
            return Err(Error::Truncated);
        };
        let ver_size = u16::from_be_bytes([head[2], head[3]]);
        let size = usize::from(ver_size & 0x0fff);
        if ver_size >> 12 != 0 {
            return Err(Error::Version);
        }
        let Some(rec) = buf.get(at..at + size) else {
            return Err(Error::Truncated);
        };
        match decode_conn(rec) {
            Some(c) => d.conns.push(c),
            None => d.skipped += 1,
        }
        at += (size + 3) & !3;
    }
    Ok(d)
}

fn decode_conn(rec: &[u8]) -> Option<SyncConn> {
    let v6 = match rec.first()? {
        0 => false,
        t if t & TYPE_INET6 != 0 => true,
        _ => return None,
    };
    let fixed = if v6 { CONN_V6 } else { CONN_V4 };
    if rec.len() < fixed {
        return None;
    }
    let u16_at = |i: usize| u16::from_be_bytes([rec[i], rec[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
    let proto = rec[1];
    let flags = u32_at(4);
    let template = flags & F_TEMPLATE != 0;
    let mode = match flags & F_FWD_MASK {
        F_MASQ => ForwardMode::Nat,
        F_FULLNAT => ForwardMode::FullNat,
        F_DROUTE => ForwardMode::Dr,
        F_TUNNEL => ForwardMode::Tun,
        _ => return None,
    };
    // A template's state is 0 (IPVS reads any other as 0 too).
    let state = match (proto, u16_at(8)) {
        (conntrack::PROTO_TCP | conntrack::PROTO_UDP, _) if template => TcpState::None,
        (conntrack::PROTO_UDP, 0) => TcpState::Udp,
        (conntrack::PROTO_TCP, s) => tcp_state(s)?,
        _ => return None,
    };
    let alen = if v6 { 16 } else { 4 };
    let addr = |i: usize| get_addr(&rec[i..i + alen]);
    let mut c = SyncConn {
        proto,
        mode,
        state,
        client: (addr(24), u16_at(10)),
        vip: (addr(24 + alen), u16_at(12)),
        dest: (addr(24 + 2 * alen), u16_at(14)),
        local: None,
        timeout_s: u32_at(20),
        ext: ConnExt::default(),
        template,
    };
    let mut p = &rec[fixed..];
    while !p.is_empty() {
        let [ty, len, rest @ ..] = p else {
            return None;
        };
        let len = usize::from(*len);
        if len == 0 || rest.len() < len {
            return None;
        }
        let data = &rest[..len];
        match *ty {
            OPT_LOCAL if len == 6 || len == 18 => {
                let a = get_addr(&data[..len - 2]);
                c.local = Some((a, u16::from_be_bytes([data[len - 2], data[len - 1]])));
            }
            OPT_STATE if len == STATE_LEN => {
                c.ext = ConnExt {
                    user: u64::from_be_bytes(data[..8].try_into().ok()?),
                    user32: u32::from_be_bytes(data[8..12].try_into().ok()?),
                    flags: data[12],
                };
            }
            t if t & OPT_F_PARAM != 0 => {}
            // IPVS's sequence data (1) and persistence engine data (2, 3)
            // are not this implementation's: a connection that needs them
            // cannot be installed.
            _ => return None,
        }
        p = &rest[len..];
    }
    if mode == ForwardMode::FullNat && c.local.is_none() && !template {
        return None;
    }
    Some(c)
}

fn tcp_state(s: u16) -> Option<TcpState> {
    Some(match s {
        0 => TcpState::None,
        1 => TcpState::Established,
        2 => TcpState::SynSent,
        3 => TcpState::SynRecv,
        4 => TcpState::FinWait,
        5 => TcpState::TimeWait,
        6 => TcpState::Close,
        7 => TcpState::CloseWait,
        8 => TcpState::LastAck,
        9 => TcpState::Listen,
        10 => TcpState::SynAck,
        _ => return None,
    })
}

/// A 4- or 16-byte address; IPv4-mapped IPv6 reads as IPv4.
fn get_addr(b: &[u8]) -> IpAddr {
    match b.len() {
        4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        _ => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let a = Ipv6Addr::from(o);
            match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u16) -> SyncConn {
        SyncConn {
            proto: conntrack::PROTO_TCP,
            mode: ForwardMode::Nat,
            state: TcpState::Established,
            client: ("10.0.0.2".parse().unwrap(), 40000 + i),
            vip: ("10.0.0.100".parse().unwrap(), 80),
            dest: ("192.168.0.11".parse().unwrap(), 8080),
            local: None,
            timeout_s: 900,
            ext: ConnExt::default(),
            template: false,
        }
    }

    /// A NAT connection as kernel IPVS writes it (ip_vs_sync_conn, version
    /// 1), byte for byte.
    #[test]
    fn a_nat_connection_is_the_kernels_layout() {
        let m = encode(7, &[conn(0)], MAX_MESSAGE);
        assert_eq!(m.len(), 1);
        #[rustfmt::skip]
        let want: [u8; 8 + 36] = [
            0, 7, 0, 44, 1, 1, 0, 0,
            0, 6, 0, 36,
            0, 0, 0, 0,
            0, 1, 0x9c, 0x40,
            0, 80, 0x1f, 0x90,
            0, 0, 0, 0,
            0, 0, 3, 0x84,
            10, 0, 0, 2, 10, 0, 0, 100, 192, 168, 0, 11,
        ];
        assert_eq!(m[0], want);
        assert_eq!(decode(&m[0], 7).unwrap().conns, [conn(0)]);
        assert_eq!(decode(&m[0], 0).unwrap().conns, [conn(0)], "0 takes any");
        assert_eq!(decode(&m[0], 8), Err(Error::OtherSyncId));
    }

    #[test]
    fn fullnat_ipv6_and_fullnat64_round_trip() {
        let mut f = conn(1);
        f.mode = ForwardMode::FullNat;
        f.state = TcpState::FinWait;
        f.local = Some(("192.168.0.200".parse().unwrap(), 5001));
        f.ext = ConnExt {
            user: 0x0102_0304_0506_0708,
            user32: 0xdead_beef,
            flags: 0x1d,
        };
        let mut six = conn(2);
        six.client.0 = "fd00:10::2".parse().unwrap();
        six.vip.0 = "fd00:10::100".parse().unwrap();
        six.dest.0 = "fd00:192::11".parse().unwrap();
        six.proto = conntrack::PROTO_UDP;
        six.state = TcpState::Udp;
        let mut f64 = six;
        f64.proto = conntrack::PROTO_TCP;
        f64.state = TcpState::SynRecv;
        f64.mode = ForwardMode::FullNat;
        f64.local = Some(("192.168.0.200".parse().unwrap(), 5002));
        let mut t = conn(4);
        t.template = true;
        t.state = TcpState::None;
        t.client = ("10.0.0.0".parse().unwrap(), 0);
        t.mode = ForwardMode::FullNat;
        t.timeout_s = 300;
        let all = [f, six, f64, conn(3), t];
        let m = encode(1, &all, MAX_MESSAGE);
        assert_eq!(m.len(), 1);
        let d = decode(&m[0], 1).unwrap();
        assert_eq!(d.conns, all);
        assert_eq!(d.skipped, 0);
        // Records after a padded one start on 4-byte boundaries.
        assert_eq!(m[0].len() % 4, 0);
    }

    #[test]
    fn messages_split_at_the_size_limit_and_255_connections() {
        let many: Vec<SyncConn> = (0..600).map(conn).collect();
        let m = encode(1, &many, MAX_MESSAGE);
        assert!(m.iter().all(|x| x.len() <= MAX_MESSAGE));
        assert_eq!(m[0][4], ((MAX_MESSAGE - 8) / 36) as u8, "40 per 1472 B");
        let back: Vec<SyncConn> = m.iter().flat_map(|x| decode(x, 1).unwrap().conns).collect();
        assert_eq!(back, many);
        let m = encode(1, &many, 65_000);
        assert_eq!(m[0][4], 255);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn bad_messages_are_refused_and_bad_records_skipped() {
        let mut m = encode(1, &[conn(0), conn(1)], MAX_MESSAGE).remove(0);
        assert_eq!(decode(&m[..7], 1), Err(Error::Truncated));
        assert_eq!(decode(&m[..40], 1), Err(Error::Size));
        let mut v0 = m.clone();
        v0[5] = 0;
        assert_eq!(decode(&v0, 1), Err(Error::Version));
        // An unknown optional parameter is skipped, an unknown mandatory one
        // (IPVS's sequence data) skips its record.
        let mut with_opt = m[8..8 + 36].to_vec();
        with_opt.extend_from_slice(&[OPT_F_PARAM | 20, 2, 9, 9]);
        with_opt[3] = 40;
        let mut seq = m[8..8 + 36].to_vec();
        seq.extend_from_slice(&[1, 2, 9, 9]);
        seq[3] = 40;
        let mut msg = vec![0, 1, 0, 0, 2, 1, 0, 0];
        msg.extend_from_slice(&with_opt);
        msg.extend_from_slice(&seq);
        let n = msg.len() as u16;
        msg[2..4].copy_from_slice(&n.to_be_bytes());
        let d = decode(&msg, 1).unwrap();
        assert_eq!((d.conns.len(), d.skipped), (1, 1));
        // A count past the records' end.
        m[4] = 3;
        assert_eq!(decode(&m, 1), Err(Error::Truncated));
    }
}
