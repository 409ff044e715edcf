//! SYN proxy (DPVS's synproxy, `dpvsctl -A|-E ... -j enable`): the director
//! answers a client's SYN itself with a SYN cookie and keeps nothing; only
//! when the client's ACK returns a valid cookie does a connection exist, and
//! only then does the real server see a SYN. A flood of spoofed SYNs costs a
//! SYN-ACK each and leaves no state.
//!
//! The handshake, as DPVS does it:
//!
//! 1. client SYN (no connection): a SYN-ACK with sequence number = the
//!    cookie goes back; nothing is kept.
//! 2. client ACK (no connection): `ack - 1` must be a cookie made for this
//!    4-tuple and `seq - 1` within the last two 64 s slots. Then the
//!    connection is scheduled and created ("waiting": [`SP`] without
//!    [`SP_OPEN`], the cookie in `Conn.user32`), the ACK is kept, and a SYN
//!    with the client's own initial sequence number and the options the
//!    cookie carried goes to the real server through the normal path (NAT or
//!    FULLNAT rewrite, TOA, MSS clamp).
//! 3. The real server's SYN-ACK (not forwarded): the offset between its
//!    initial sequence number and the cookie goes into `Conn.user32`, its
//!    window scale into the flags ([`SP_OPEN`]), and the client segments kept
//!    meanwhile (the ACK, and data that followed it: up to [`HELD_MAX`]) go
//!    on to it, acknowledging its SYN.
//! 4. From then on every client segment's acknowledgement number and SACK
//!    edges move into the real server's sequence space, and every server
//!    segment's sequence number back into the cookie's; server windows are
//!    rescaled from the server's window scale to the one the director
//!    advertised ([`ADV_WSCALE`]).
//!
//! The cookie (32 bits) is `slot:2 | mss:3 | wscale:4 | sack:1 | mac:22`:
//! the low two bits of the 64 s time slot, the client's MSS as an index into
//! [`MSS_TABLE`] (rounded down), its window scale (15 = none) and whether it
//! offered SACK, and 22 bits of SipHash-2-4 over the 4-tuple, the client's
//! initial sequence number, those option bits and the slot, keyed with a key
//! derived from the director's random secret and the slot number (a new key
//! every 64 s). A guessed ACK passes with probability 2^-22.
//!
//! What is lost: TCP timestamps (neither the SYN-ACK nor the SYN to the
//! real server carries them, so the connection runs without PAWS and RTT
//! timestamps), MSS values between table entries (rounded down), and a
//! window scale the client wants above what the real server uses only costs
//! precision in the server's rescaled windows. This module is pure byte work
//! on frames and segments; the core glue is in `Core::synproxy_*`.

use std::hash::Hasher;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use conntrack::{ConnId, Direction};
use siphasher::sip::SipHasher24;

use crate::core::{tcp_flag, Core, Rx};
use crate::events::Event;
use crate::io::Io;
use crate::snapshot::{Service, Snapshot};
use crate::stats::DropReason;
use crate::wire::tcp::{self, opt};
use crate::wire::{checksum, classify_rx, ip_proto, IpMeta, Packet, PacketBuf, TcpPacket};

/// One time slot of the cookie's clock; cookies of this slot and the one
/// before are accepted (64 to 128 s).
pub const SLOT_MS: u64 = 64_000;
/// The window scale the director offers clients that offer one: what Linux
/// picks for common buffer sizes, so most servers' windows pass unchanged.
pub const ADV_WSCALE: u8 = 7;
/// The MSS values a cookie can carry (3 bits); a client's MSS is rounded
/// down to one of them (below the first: the first, as Linux).
pub const MSS_TABLE: [u16; 8] = [536, 1220, 1360, 1400, 1440, 1452, 1460, 8960];
/// Client segments kept per waiting connection until the real server answers.
pub const HELD_MAX: usize = 3;
/// Waiting connections a worker keeps segments for: beyond it a valid ACK is
/// refused (`synproxy_busy`) and the client's next segment tries again.
pub const WAITING_MAX: usize = 4096;

/// `Conn.flags` bit: a SYN-proxied connection.
pub const SP: u8 = 0x04;
/// `Conn.flags` bit: the real server answered; `Conn.user32` is the sequence
/// offset (server ISN - cookie), no longer the cookie.
pub const SP_OPEN: u8 = 0x08;
/// `Conn.flags` bits 4-7: the real server's window scale + 1 (0: windows are
/// not rescaled, the client offered no window scaling).
const WS_SHIFT: u32 = 4;

const WS_NONE: u32 = 15;
const MAC_BITS: u32 = 22;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// The TCP options of a client's SYN that the cookie carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynOpts {
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack: bool,
}

impl SynOpts {
    /// The options of SYN segment `seg` (exactly the segment); a missing MSS
    /// is RFC 9293's default for the family.
    pub fn of_syn(seg: &[u8], v6: bool) -> SynOpts {
        let mut o = SynOpts {
            mss: if v6 { 1220 } else { 536 },
            wscale: None,
            sack: false,
        };
        let Ok(t) = TcpPacket::new_checked(seg) else {
            return o;
        };
        let opts = t.options();
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                opt::EOL => break,
                opt::NOP => i += 1,
                kind => {
                    let Some(&l) = opts.get(i + 1) else { break };
                    let l = usize::from(l);
                    if l < 2 || i + l > opts.len() {
                        break;
                    }
                    match (kind, l) {
                        (opt::MSS, 4) => o.mss = u16::from_be_bytes([opts[i + 2], opts[i + 3]]),
                        (opt::WSCALE, 3) => o.wscale = Some(opts[i + 2].min(14)),
                        (opt::SACK_PERM, 2) => o.sack = true,
                        _ => {}
                    }
                    i += l;
                }
            }
        }
        o
    }

    /// The 8 bits a cookie keeps; the MSS rounded down to the table.
    fn bits(self) -> u32 {
        let mss = MSS_TABLE.iter().rposition(|&m| m <= self.mss).unwrap_or(0) as u32;
        let ws = self.wscale.map_or(WS_NONE, |w| u32::from(w.min(14)));
        (mss << 5) | (ws << 1) | u32::from(self.sack)
    }

    fn from_bits(b: u32) -> SynOpts {
        let ws = (b >> 1) & 0xf;
        SynOpts {
            mss: MSS_TABLE[(b >> 5) as usize & 7],
            wscale: (ws != WS_NONE).then_some(ws as u8),
            sack: b & 1 != 0,
        }
    }

    /// What cookie `c` says, without checking it (a connection already
    /// proved it).
    pub fn of_cookie(c: u32) -> SynOpts {
        SynOpts::from_bits((c >> MAC_BITS) & 0xff)
    }
}

/// The director's cookie secret: random at start, shared by the workers
/// (a worker checks the ACKs of the SYNs it answered, but a restart of one
/// worker must not matter). Each slot's key is derived from it.
#[derive(Clone, Copy)]
pub struct Secret([u64; 2]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The endpoints a cookie is bound to, as the client's segments carry them.
#[derive(Debug, Clone, Copy)]
pub struct FourTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl FourTuple {
    pub fn of(meta: &IpMeta) -> FourTuple {
        FourTuple {
            src: meta.src,
            dst: meta.dst,
            sport: meta.sport,
            dport: meta.dport,
        }
    }
}

fn write_addr(h: &mut SipHasher24, a: IpAddr) {
    match a {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
}

impl Secret {
    pub fn new(k: [u64; 2]) -> Secret {
        Secret(k)
    }

    /// A secret from the system's randomness.
    pub fn random() -> Secret {
        Secret([crate::shared::random_u64(), crate::shared::random_u64()])
    }

    fn mac(&self, slot: u64, t: &FourTuple, isn: u32, bits: u32) -> u32 {
        // The slot's key: SipHash of the slot number under the secret.
        let mut k = SipHasher24::new_with_keys(self.0[0], self.0[1]);
        k.write_u64(slot);
        let k0 = k.finish();
        k.write_u8(1);
        let k1 = k.finish();
        let mut h = SipHasher24::new_with_keys(k0, k1);
        write_addr(&mut h, t.src);
        write_addr(&mut h, t.dst);
        h.write_u16(t.sport);
        h.write_u16(t.dport);
        h.write_u32(isn);
        h.write_u32(bits);
        h.finish() as u32 & MAC_MASK
    }

    /// The cookie for a SYN with initial sequence number `isn` and options
    /// `o`, at `now_ms`.
    pub fn cookie(&self, now_ms: u64, t: &FourTuple, isn: u32, o: SynOpts) -> u32 {
        let slot = now_ms / SLOT_MS;
        let bits = o.bits();
        ((slot as u32 & 3) << 30) | (bits << MAC_BITS) | self.mac(slot, t, isn, bits)
    }

    /// The options cookie `c` carries if it was made for `t` and `isn` in
    /// this slot or the one before; `None` for anything else.
    pub fn check(&self, now_ms: u64, t: &FourTuple, isn: u32, c: u32) -> Option<SynOpts> {
        let now = now_ms / SLOT_MS;
        let bits = (c >> MAC_BITS) & 0xff;
        [now, now.wrapping_sub(1)]
            .into_iter()
            .filter(|&s| s as u32 & 3 == c >> 30)
            .any(|s| self.mac(s, t, isn, bits) == c & MAC_MASK)
            .then(|| SynOpts::from_bits(bits))
    }
}

/// Longest frame built here: Ethernet with a VLAN tag, IPv6, TCP with
/// MSS, window scale and SACK-permitted.
const FRAME_MAX: usize = 18 + 40 + 20 + 12;

/// A TCP segment to build: the fields that differ between the SYN-ACK to
/// the client and the SYN to the real server.
struct Seg {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: SynOpts,
}

/// Write `l2` (the Ethernet header, VLAN tag included), an option-less IP
/// header and segment `s` (no payload) into `out`; the length written, or 0
/// for mixed address families.
fn build(out: &mut [u8; FRAME_MAX], l2: &[u8], s: &Seg) -> usize {
    let l3 = l2.len();
    out[..l3].copy_from_slice(l2);
    // Options: MSS, then NOP + window scale, then NOP NOP + SACK-permitted.
    let mut o = [0u8; 12];
    o[..4].copy_from_slice(&[opt::MSS, 4, (s.opts.mss >> 8) as u8, s.opts.mss as u8]);
    let mut ol = 4;
    if let Some(w) = s.opts.wscale {
        o[ol..ol + 4].copy_from_slice(&[opt::NOP, opt::WSCALE, 3, w]);
        ol += 4;
    }
    if s.opts.sack {
        o[ol..ol + 4].copy_from_slice(&[opt::NOP, opt::NOP, opt::SACK_PERM, 2]);
        ol += 4;
    }
    let tl = 20 + ol;
    let l4 = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let ip = &mut out[l3..l3 + 20];
            ip.fill(0);
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + tl) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = ip_proto::TCP;
            ip[12..16].copy_from_slice(&a.octets());
            ip[16..20].copy_from_slice(&b.octets());
            let c = checksum::checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            l3 + 20
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let ip = &mut out[l3..l3 + 40];
            ip.fill(0);
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tl as u16).to_be_bytes());
            ip[6] = ip_proto::TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&a.octets());
            ip[24..40].copy_from_slice(&b.octets());
            l3 + 40
        }
        _ => return 0,
    };
    let seg = &mut out[l4..l4 + tl];
    seg.fill(0);
    seg[20..tl].copy_from_slice(&o[..ol]);
    let mut t = TcpPacket::new_unchecked(seg);
    t.set_src_port(s.sport);
    t.set_dst_port(s.dport);
    t.set_seq_number(s.seq);
    t.set_ack_number(s.ack);
    t.into_inner()[12] = ((tl / 4) as u8) << 4;
    let mut t = TcpPacket::new_unchecked(&mut out[l4..l4 + tl]);
    t.set_flags(s.flags);
    t.set_window(s.window);
    match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => t.fill_checksum_v4(a, b),
        (IpAddr::V6(a), IpAddr::V6(b)) => t.fill_checksum_v6(a, b),
        _ => {}
    }
    l4 + tl
}

/// Client -> real server, once open: the acknowledgement number and SACK
/// edges of segment `seg` (exactly the segment) move by `delta` into the
/// server's sequence space. `true` if it changed.
pub fn ack_in(seg: &mut [u8], delta: u32) -> bool {
    if delta == 0 {
        return false;
    }
    tcp::edit_header(seg, |h| {
        if h[13] & tcp_flag::ACK == 0 {
            return false;
        }
        let a = u32::from_be_bytes([h[8], h[9], h[10], h[11]]).wrapping_add(delta);
        h[8..12].copy_from_slice(&a.to_be_bytes());
        tcp::map_sack_edges(h, |v| v.wrapping_add(delta));
        true
    })
}

/// Real server -> client, once open: the sequence number of segment `seg`
/// moves back by `delta` into the cookie's space, and the window is
/// rescaled from the server's `ws` (`None`: no rescaling) to
/// [`ADV_WSCALE`]. `true` if it changed.
pub fn seq_out(seg: &mut [u8], delta: u32, ws: Option<u8>) -> bool {
    tcp::edit_header(seg, |h| {
        let mut changed = false;
        if delta != 0 {
            let s = u32::from_be_bytes([h[4], h[5], h[6], h[7]]).wrapping_sub(delta);
            h[4..8].copy_from_slice(&s.to_be_bytes());
            changed = true;
        }
        // SYN segments' windows are never scaled.
        if let (Some(ws), false) = (ws, h[13] & tcp_flag::SYN != 0) {
            if ws != ADV_WSCALE {
                let w = u32::from(u16::from_be_bytes([h[14], h[15]]));
                let real = u64::from(w) << ws;
                let nw = (real >> ADV_WSCALE).min(0xffff) as u16;
                h[14..16].copy_from_slice(&nw.to_be_bytes());
                changed |= u32::from(nw) != w;
            }
        }
        changed
    })
}

/// The window scale a waiting connection's flags carry (`None`: windows are
/// not rescaled).
pub fn flags_wscale(flags: u8) -> Option<u8> {
    match u32::from(flags) >> WS_SHIFT {
        0 => None,
        w => Some(w as u8 - 1),
    }
}

/// Client segments kept for one waiting connection: the frames, their
/// metadata and the port each came in on, with the cookie that tells them
/// from those of an earlier connection in the same slot.
pub struct Held<B> {
    cookie: u32,
    pkts: ArrayVec<(B, IpMeta, usize), HELD_MAX>,
}

impl<I: Io> Core<I> {
    /// A TCP segment for a SYN-proxied service that matches no connection:
    /// a SYN is answered with a cookie, an ACK carrying a valid one opens
    /// the connection; anything else is dropped.
    pub(crate) fn synproxy_new(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        at: Rx,
        meta: IpMeta,
        tuple: conntrack::Tuple,
        svc: &std::sync::Arc<Service>,
    ) {
        let f = meta.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN);
        let Some(seg) = m.data().get(meta.l4_off..meta.l3_end()) else {
            return self.count_drop(DropReason::BadL4);
        };
        let Ok(t) = TcpPacket::new_checked(seg) else {
            return self.count_drop(DropReason::BadL4);
        };
        let ends = FourTuple::of(&meta);
        let v6 = meta.dst.is_ipv6();
        if f == tcp_flag::SYN {
            // A service at its connection limit sends no cookie: the
            // client's SYN is refused as a SYN to its real servers would be.
            if self.over_conn_limit(svc) {
                return;
            }
            let port = at.port();
            let opts = SynOpts::of_syn(seg, v6);
            let cookie = self
                .shared
                .syn_secret
                .cookie(self.now_ms, &ends, t.seq_number(), opts);
            // What the client may send: the port's MTU less the headers, less
            // TOA's room when a FULLNAT real server may take the connection.
            let mtu = snap.ports.get(port).map_or(1500, |p| usize::from(p.mtu));
            let toa = if svc
                .meta
                .iter()
                .any(|d| d.mode == crate::config::ForwardMode::FullNat)
            {
                crate::xmit::toa_len(meta.src)
            } else {
                0
            };
            let mss = mtu
                .saturating_sub(if v6 { 60 } else { 40 } + toa)
                .clamp(536, 0xffff) as u16;
            let reply = Seg {
                src: meta.dst,
                dst: meta.src,
                sport: meta.dport,
                dport: meta.sport,
                seq: cookie,
                ack: t.seq_number().wrapping_add(1),
                flags: tcp_flag::SYN | tcp_flag::ACK,
                window: 0xffff,
                opts: SynOpts {
                    mss,
                    wscale: opts.wscale.map(|_| ADV_WSCALE),
                    sack: opts.sack,
                },
            };
            let mut frame = [0u8; FRAME_MAX];
            let n = build(&mut frame, &m.data()[..meta.l3_off], &reply);
            let mut client_mac = [0u8; 6];
            client_mac.copy_from_slice(&m.data()[6..12]);
            if n == 0 || !m.write_from(&frame[..n]) {
                return self.count_drop(DropReason::NoMbuf);
            }
            self.shared.events[self.index].bump(Event::SynproxySynAck);
            return self.send_to(snap, m, port, client_mac);
        }
        if f != tcp_flag::ACK {
            return self.count_drop(DropReason::NoConnection);
        }
        let (isn, cookie) = (
            t.seq_number().wrapping_sub(1),
            t.ack_number().wrapping_sub(1),
        );
        if self
            .shared
            .syn_secret
            .check(self.now_ms, &ends, isn, cookie)
            .is_none()
        {
            return self.count_drop(DropReason::SynproxyBadCookie);
        }
        if self.sp_held.len() >= WAITING_MAX {
            return self.count_drop(DropReason::SynproxyBusy);
        }
        let place = self.conns.place_of(&tuple);
        let Some(id) = self.open_conn(snap, &meta, tuple, place, svc) else {
            return;
        };
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let mode = crate::core::mode_from_flags(c.flags());
        if !matches!(
            mode,
            crate::config::ForwardMode::Nat | crate::config::ForwardMode::FullNat
        ) {
            // Replies that bypass the director never show the server's
            // SYN-ACK: the control plane refuses such real servers.
            self.forget_conn(snap, id, true);
            return self.count_drop(DropReason::Unsupported);
        }
        c.user32 = cookie;
        let flags = c.flags() | SP;
        self.conns.set_flags(id, flags);
        // The connection starts as if the client's SYN had just passed.
        let tr = self.conns.on_packet(
            id,
            Direction::Original,
            crate::core::conntrack_flags(tcp_flag::SYN),
            self.now_ms,
        );
        self.account_transition(snap, self.conns.get(id).map_or(0, |c| c.dest()), tr);
        let mut held = Held {
            cookie,
            pkts: ArrayVec::new(),
        };
        let syn = self.syn_to_server(m.data(), &meta, isn, cookie);
        held.pkts.push((m, meta, at.port()));
        self.sp_held.insert(id, held);
        self.shared.events[self.index].bump(Event::SynproxyOpened);
        if let Some((syn, syn_meta)) = syn {
            self.xmit_conn(snap, syn, &syn_meta, id, Direction::Original);
        }
    }

    /// The SYN a waiting connection sends the real server (through the
    /// normal path, as if from the client), built from client segment
    /// `frame` and the cookie's options.
    fn syn_to_server(
        &mut self,
        frame: &[u8],
        meta: &IpMeta,
        isn: u32,
        cookie: u32,
    ) -> Option<(I::Buf, IpMeta)> {
        let seg = frame.get(meta.l4_off..meta.l3_end())?;
        let t = TcpPacket::new_checked(seg).ok()?;
        let opts = SynOpts::of_cookie(cookie);
        // The client's window (scaled by its own shift), unscaled as a SYN's is.
        let window = (u32::from(t.window()) << opts.wscale.unwrap_or(0)).min(0xffff) as u16;
        let s = Seg {
            src: meta.src,
            dst: meta.dst,
            sport: meta.sport,
            dport: meta.dport,
            seq: isn,
            ack: 0,
            flags: tcp_flag::SYN,
            window,
            opts,
        };
        let mut out_frame = [0u8; FRAME_MAX];
        let n = build(&mut out_frame, &frame[..meta.l3_off], &s);
        // Not a drop: the client's segment waits and comes again.
        let Some(mut out) = self.io.alloc() else {
            self.shared.events[self.index].bump(Event::SynproxyNoMbuf);
            return None;
        };
        if n == 0 || !out.write_from(&out_frame[..n]) {
            self.shared.events[self.index].bump(Event::SynproxyNoMbuf);
            return None;
        }
        match classify_rx(out.data(), false) {
            Ok(Packet::Ip(meta)) => Some((out, meta)),
            _ => None,
        }
    }

    /// A segment of a waiting SYN-proxied connection (`Conn.flags` has
    /// [`SP`] but not [`SP_OPEN`]).
    pub(crate) fn synproxy_waiting(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        at: Rx,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
    ) {
        let Some(c) = self.conns.get(id) else {
            return self.count_drop(DropReason::NoConnection);
        };
        let (cookie, flags) = (c.user32, c.flags());
        let seg = m.data().get(meta.l4_off..meta.l3_end());
        let Some(t) = seg.and_then(|s| TcpPacket::new_checked(s).ok()) else {
            return self.count_drop(DropReason::BadL4);
        };
        let (seq, tf) = (t.seq_number(), meta.tcp_flags);
        if dir == Direction::Original {
            if tf & tcp_flag::RST != 0 {
                // The client gave up: so does the director; the server's
                // half-open connection times out.
                if let Some(h) = self.sp_held.remove(&id) {
                    self.drop_held(h);
                }
                self.forget_conn(snap, id, true);
                return self.count_drop(DropReason::NoConnection);
            }
            let held = self.sp_held.entry(id).or_insert(Held {
                cookie,
                pkts: ArrayVec::new(),
            });
            if held.cookie != cookie {
                // Left from an earlier connection in this slot.
                let stale = std::mem::replace(
                    held,
                    Held {
                        cookie,
                        pkts: ArrayVec::new(),
                    },
                );
                let n = stale.pkts.len() as u64;
                self.shared.counters[self.index].drop_n(DropReason::SynproxyWaiting, n);
                return self.synproxy_waiting(snap, m, at, meta, id, dir);
            }
            if !held.pkts.is_full() {
                held.pkts.push((m, *meta, at.port()));
                return;
            }
            // The client retransmits: the server's answer (or our SYN) was
            // lost. Send the SYN again, built from the first segment kept
            // (the ACK: its seq is the client's ISN + 1).
            self.count_drop(DropReason::SynproxyWaiting);
            // Out of the map while the SYN is built from it (no copy).
            let Some(h) = self.sp_held.remove(&id) else {
                return;
            };
            let (first, first_meta, _) = &h.pkts[0];
            let syn = first
                .data()
                .get(first_meta.l4_off..first_meta.l3_end())
                .and_then(|s| TcpPacket::new_checked(s).ok())
                .and_then(|t| {
                    let isn = t.seq_number().wrapping_sub(1);
                    self.syn_to_server(first.data(), first_meta, isn, cookie)
                });
            self.sp_held.insert(id, h);
            if let Some((syn, sm)) = syn {
                self.xmit_conn(snap, syn, &sm, id, Direction::Original);
            }
            return;
        }
        let mut held = match self.sp_held.remove(&id) {
            Some(h) if h.cookie == cookie => Some(h),
            Some(stale) => {
                self.drop_held(stale);
                None
            }
            None => None,
        };
        // RST first (as a TCP in SYN-SENT): a SYN-ACK with RST set refuses
        // the connection too, and the segments kept are counted.
        let ws = if tf & tcp_flag::RST != 0 {
            // Refused: the client gets the RST in its own sequence space.
            if let Some(h) = held.take() {
                self.drop_held(h);
            }
            if let Some(c) = self.conns.get_mut(id) {
                c.user32 = seq.wrapping_sub(cookie.wrapping_add(1));
            }
            None
        } else if tf & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN | tcp_flag::ACK {
            // The server's answer: the offset, its window scale.
            let opts = SynOpts::of_syn(seg.unwrap_or_default(), meta.src.is_ipv6());
            let offered = SynOpts::of_cookie(cookie).wscale.is_some();
            if let Some(c) = self.conns.get_mut(id) {
                c.user32 = seq.wrapping_sub(cookie);
            }
            offered.then(|| opts.wscale.unwrap_or(0))
        } else {
            if let Some(h) = held {
                self.sp_held.insert(id, h);
            }
            return self.count_drop(DropReason::NoConnection);
        };
        let ws_bits = ws.map_or(0, |w| (w.min(14) + 1) << WS_SHIFT);
        self.conns.set_flags(id, (flags & 0x0f) | SP_OPEN | ws_bits);
        self.passive_evidence(snap, id, dir, tf);
        let tr = self
            .conns
            .on_packet(id, dir, crate::core::conntrack_flags(tf), self.now_ms);
        self.account_transition(snap, c_dest(self, id), tr);
        self.sync_note(snap, id, true);
        if tf & tcp_flag::RST != 0 {
            return self.xmit_conn(snap, m, meta, id, dir);
        }
        // The SYN-ACK stays here; what the client sent goes on, now
        // acknowledging the server's SYN.
        drop(m);
        for (p, pm, port) in held.map(|h| h.pkts).unwrap_or_default() {
            self.handle_tracked(snap, p, Rx::Handed(port), &pm, id, Direction::Original);
        }
    }

    /// Drop (and count) the segments kept for connections that are gone:
    /// timed out while their real server stayed silent.
    pub(crate) fn synproxy_sweep(&mut self) {
        let (conns, counters) = (&self.conns, &self.shared.counters[self.index]);
        self.sp_held.retain(|id, h| {
            let live = conns
                .get(*id)
                .is_some_and(|c| c.flags() & (SP | SP_OPEN) == SP && c.user32 == h.cookie);
            if !live {
                counters.drop_n(DropReason::SynproxyWaiting, h.pkts.len() as u64);
            }
            live
        });
    }

    /// Client segments kept for a connection that will not open: counted.
    fn drop_held(&self, h: Held<I::Buf>) {
        let n = h.pkts.len() as u64;
        self.shared.counters[self.index].drop_n(DropReason::SynproxyWaiting, n);
    }
}

fn c_dest<I: Io>(core: &Core<I>, id: ConnId) -> u32 {
    core.conns.get(id).map_or(0, |c| c.dest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ends() -> FourTuple {
        FourTuple {
            src: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            sport: 40000,
            dport: 80,
        }
    }

    const OPTS: SynOpts = SynOpts {
        mss: 1460,
        wscale: Some(9),
        sack: true,
    };

    #[test]
    fn cookie_round_trip_and_age() {
        let s = Secret::new([1, 2]);
        let now = 10 * SLOT_MS + 5;
        let c = s.cookie(now, &ends(), 1000, OPTS);
        assert_eq!(s.check(now, &ends(), 1000, c), Some(OPTS));
        // Still good in the next slot, not in the one after.
        assert_eq!(s.check(now + SLOT_MS, &ends(), 1000, c), Some(OPTS));
        assert_eq!(s.check(now + 2 * SLOT_MS, &ends(), 1000, c), None);
        // Bound to the ISN, the tuple, the options and the secret.
        assert_eq!(s.check(now, &ends(), 1001, c), None);
        let mut other = ends();
        other.sport += 1;
        assert_eq!(s.check(now, &other, 1000, c), None);
        assert_eq!(s.check(now, &ends(), 1000, c ^ (1 << 23)), None);
        assert_eq!(Secret::new([1, 3]).check(now, &ends(), 1000, c), None);
    }

    #[test]
    fn guessed_cookies_fail() {
        let s = Secret::new([7, 8]);
        let now = 3 * SLOT_MS;
        let real = s.cookie(now, &ends(), 5, OPTS);
        let passed = (0..200_000u32)
            .filter(|&g| g != real && s.check(now, &ends(), 5, g).is_some())
            .count();
        // 2^-22 each: 200 000 guesses pass about 0.05 times.
        assert!(passed <= 2, "{passed} guesses passed");
    }

    #[test]
    fn mss_rounds_down_and_options_survive() {
        for (mss, want) in [
            (1460, 1460),
            (1459, 1452),
            (9000, 8960),
            (100, 536),
            (1300, 1220),
        ] {
            let o = SynOpts {
                mss,
                wscale: None,
                sack: false,
            };
            assert_eq!(SynOpts::from_bits(o.bits()).mss, want, "mss {mss}");
        }
        assert_eq!(SynOpts::from_bits(OPTS.bits()), OPTS);
    }

    fn seg_with(seq: u32, ack: u32, flags: u8, window: u16, sack: Option<(u32, u32)>) -> Vec<u8> {
        let mut h = etherparse::TcpHeader::new(80, 40000, seq, window);
        h.acknowledgment_number = ack;
        h.ack = flags & tcp_flag::ACK != 0;
        h.syn = flags & tcp_flag::SYN != 0;
        if let Some((a, b)) = sack {
            h.set_options(&[
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::SelectiveAcknowledgement((a, b), [None; 3]),
            ])
            .unwrap();
        }
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp_header(h)
            .write(&mut out, b"xy")
            .unwrap();
        out[20..].to_vec()
    }

    fn csum_ok(seg: &[u8]) -> bool {
        TcpPacket::new_unchecked(seg)
            .verify_checksum_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
    }

    #[test]
    fn translation_moves_ack_sack_seq_and_window() {
        let mut s = seg_with(5, 1000, tcp_flag::ACK, 100, Some((1100, 1200)));
        assert!(ack_in(&mut s, 50));
        let t = TcpPacket::new_unchecked(&s[..]);
        assert_eq!(t.ack_number(), 1050);
        let h = etherparse::TcpHeader::from_slice(&s).unwrap().0;
        assert!(
            format!("{:?}", h.options).contains("1150"),
            "{:?}",
            h.options
        );
        assert!(csum_ok(&s));

        let mut s = seg_with(1000, 5, tcp_flag::ACK, 100, None);
        // Server scale 9, advertised 7: the window field grows 4x.
        assert!(seq_out(&mut s, 50, Some(9)));
        let t = TcpPacket::new_unchecked(&s[..]);
        assert_eq!((t.seq_number(), t.window()), (950, 400));
        assert!(csum_ok(&s));
        // Server scale 0: a 65535 window is 511 at scale 7.
        let mut s = seg_with(1000, 5, tcp_flag::ACK, 0xffff, None);
        seq_out(&mut s, 0, Some(0));
        assert_eq!(TcpPacket::new_unchecked(&s[..]).window(), 511);
        assert!(csum_ok(&s));
        // A segment without ACK keeps its acknowledgement field.
        let mut s = seg_with(1000, 7, tcp_flag::SYN, 100, None);
        assert!(!ack_in(&mut s, 9));
    }

    #[test]
    fn syn_options_parsed() {
        let mut h = etherparse::TcpHeader::new(40000, 80, 1, 100);
        h.syn = true;
        h.set_options(&[
            etherparse::TcpOptionElement::MaximumSegmentSize(1400),
            etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::WindowScale(20),
        ])
        .unwrap();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .tcp_header(h)
            .write(&mut out, &[])
            .unwrap();
        let o = SynOpts::of_syn(&out[20..], false);
        assert_eq!(
            o,
            SynOpts {
                mss: 1400,
                wscale: Some(14),
                sack: true
            }
        );
        assert_eq!(SynOpts::of_syn(&out[20..40], true).mss, 1220);
    }
}
