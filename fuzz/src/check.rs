//! What every run of the core must keep, whatever the frames: checked on
//! what its [`TestIo`](dataplane::testkit::TestIo) saw, with etherparse and
//! a checksum written here (independent of `dataplane::wire`).
//!
//! - Each input frame leaves the core once at most (sent, handed over, or up
//!   to the kernel), and every input that does not is counted under exactly
//!   one `DropReason`; the only exceptions are ARP replies and neighbour
//!   advertisements, which are consumed by learning.
//! - A frame handed over or passed up to the kernel is the input, unchanged.
//! - A transmitted frame leaves from its port's MAC; an IPv4 or IPv6 one
//!   re-parses with etherparse (when its input did), has a valid IPv4 header
//!   checksum, a TTL / hop limit no higher than the input's (the inner
//!   packet's for TUN; the director's own answers excepted), and a valid
//!   TCP/UDP/ICMP checksum when the input's was valid.

use std::collections::HashSet;

use dataplane::testkit::{Lab, Out};
use dataplane::wire::VecBuf;
use etherparse::{NetSlice, SlicedPacket};

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];
const ETH_ARP: [u8; 2] = [0x08, 0x06];

/// What the checks need of an IP packet, from etherparse.
#[derive(Debug, Clone, Copy)]
pub struct IpFacts {
    /// TTL or hop limit.
    pub hop: u8,
    /// The payload's protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Whether the L4 checksum is right; `None` when not known (fragment,
    /// other protocol, header cut short).
    pub l4_ok: Option<bool>,
    /// The IPv4 header checksum is right (always true for IPv6).
    pub ip_csum_ok: bool,
    /// ICMP / ICMPv6 type, if one.
    pub icmp_type: Option<u8>,
    /// TCP flags, if a TCP header is there.
    pub tcp_flags: Option<u8>,
}

/// One input frame and what it was.
struct Input {
    frame: Vec<u8>,
    /// Parsed by etherparse.
    facts: Option<IpFacts>,
    /// An ARP reply or a neighbour advertisement (learnt from), or a TCP
    /// SYN-ACK (the SYN proxy answers a real server's itself): may be
    /// consumed.
    consumable: bool,
    /// Arrived handed over by another worker.
    handed_in: bool,
}

/// The inputs of a run, tagged 1, 2, ... in order.
pub struct Checker {
    inputs: Vec<Input>,
    drops_before: u64,
}

impl Checker {
    /// Start counting on `lab` as it is now.
    pub fn new(lab: &Lab) -> Checker {
        Checker {
            inputs: Vec::new(),
            drops_before: lab.all_drops(),
        }
    }

    /// Record input `frame` and give its tagged buffer.
    pub fn input(&mut self, frame: &[u8], handed_in: bool) -> VecBuf {
        let facts = facts(frame);
        let syn_ack = matches!(
            SlicedPacket::from_ethernet(frame).map(|p| p.transport),
            Ok(Some(etherparse::TransportSlice::Tcp(t))) if t.syn() && t.ack()
        );
        let consumable = (frame.get(12..14) == Some(&ETH_ARP)
            && frame.get(20..22) == Some(&[0, 2]))
            || matches!(facts, Some(f) if f.icmp_type == Some(136) && f.proto == 58)
            || syn_ack;
        self.inputs.push(Input {
            frame: frame.to_vec(),
            facts,
            consumable,
            handed_in,
        });
        VecBuf::tagged(frame, self.inputs.len() as u32)
    }

    /// Let every parked packet time out or leave, then check the run. Panics
    /// with what broke.
    pub fn finish(self, lab: &mut Lab) {
        lab.core.now_ms += 10_000;
        let snap = lab.snap.clone();
        lab.core.flush_pending(&snap);
        // Connections the SYN proxy opened whose real server never answered
        // time out (SYN_RECV, 30 s); the client segments they kept are
        // dropped and counted then.
        lab.core.now_ms += 30_000;
        for _ in 0..300 {
            lab.core.now_ms += 1;
            lab.core.expire(&snap);
        }
        assert!(
            lab.core.pending.queue.is_empty(),
            "packets still parked after their timeout"
        );
        let io = &lab.core.io;
        let (mut sent, mut handed, mut kernel) =
            (io.sent.iter(), io.handed.iter(), io.kernel.iter().flatten());
        let mut seen = HashSet::new();
        let mut untagged_out = 0usize;
        for &(out, tag) in &io.trail {
            let input = (tag != 0).then(|| &self.inputs[tag as usize - 1]);
            if tag == 0 {
                untagged_out += 1;
            } else {
                assert!(seen.insert(tag), "input {tag} left the core twice");
            }
            match out {
                Out::Sent(port) => {
                    let (p, f) = sent.next().expect("a sent frame per trail entry");
                    assert_eq!(*p, port);
                    check_sent(lab, port, f, input.map(|i| (&i.frame[..], i.facts)));
                }
                Out::Handed(to) => {
                    let (w, f, _) = handed.next().expect("a handed frame per trail entry");
                    assert_eq!(*w, to);
                    assert!(
                        to != lab.core.index && to < lab.core.nworkers(),
                        "handed to worker {to}"
                    );
                    if let Some(i) = input {
                        assert!(!i.handed_in, "a handed-over packet handed on");
                        assert_eq!(f, &i.frame, "handed over changed");
                    }
                }
                Out::Kernel(port) => {
                    let (p, f) = kernel.next().expect("a kernel frame per trail entry");
                    assert_eq!(*p, port);
                    if let Some(i) = input {
                        assert_eq!(f, &i.frame, "passed up changed");
                    }
                }
            }
        }
        let inputs = self.inputs.len() as u64;
        let out = seen.len() as u64;
        let consumed = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(i, x)| x.consumable && !seen.contains(&(*i as u32 + 1)))
            .count() as u64;
        // Buffers the core allocated itself (ARP requests, ICMP errors) may
        // be dropped and counted too.
        let own_lost = io.allocs.saturating_sub(untagged_out) as u64;
        let drops = lab.all_drops() - self.drops_before;
        let (lo, hi) = (inputs - out - consumed, inputs - out + own_lost);
        assert!(
            (lo..=hi).contains(&drops),
            "{inputs} inputs, {out} out, {consumed} consumed, {own_lost} own buffers lost: \
             {drops} drops counted, not in {lo}..={hi}"
        );
    }
}

/// The checks on one transmitted frame; `input`: the frame it was made of.
fn check_sent(lab: &Lab, port: usize, f: &[u8], input: Option<(&[u8], Option<IpFacts>)>) {
    assert!(f.len() >= 14, "a runt frame sent: {f:02x?}");
    assert_eq!(
        &f[6..12],
        &lab.snap.ports[port].mac,
        "sent from another MAC than the port's"
    );
    let et = [f[12], f[13]];
    if et == ETH_ARP {
        assert!(f.len() >= 42, "a short ARP frame");
        return;
    }
    if et != ETH_IPV4 && et != ETH_IPV6 {
        return;
    }
    let out = facts(f);
    let in_facts = input.and_then(|(_, x)| x);
    let Some(out) = out else {
        // The director's own frames, and what it made of one etherparse
        // reads, must read.
        assert!(
            input.is_some() && in_facts.is_none(),
            "sent an IP frame etherparse rejects: {:?}\n{f:02x?}",
            SlicedPacket::from_ethernet(f).err()
        );
        return;
    };
    assert!(out.ip_csum_ok, "bad IPv4 header checksum sent: {f:02x?}");
    // Through a tunnel: the packet is the inner one.
    let inner = tunnelled(f, in_facts.map(|x| x.proto));
    if let Some(i) = inner {
        assert!(
            i.ip_csum_ok,
            "bad inner IPv4 header checksum sent: {f:02x?}"
        );
    }
    let pkt = inner.unwrap_or(out);
    // The director's own answers start a new TTL: echo replies, neighbour
    // advertisements, and the SYN proxy's SYN-ACK to a client's SYN.
    let syn_ack_to_syn = out.tcp_flags.map(|f| f & 0x12) == Some(0x12)
        && in_facts.and_then(|i| i.tcp_flags).map(|f| f & 0x12) == Some(0x02);
    let own_answer = (matches!(out.icmp_type, Some(0) | Some(129) | Some(136))
        && matches!(out.proto, 1 | 58))
        || syn_ack_to_syn;
    match in_facts {
        Some(i) if !own_answer => {
            assert!(
                pkt.hop <= i.hop,
                "TTL / hop limit went up: {} -> {}\nin  {:02x?}\nout {f:02x?}",
                i.hop,
                pkt.hop,
                input.map(|x| x.0).unwrap_or_default()
            );
            if i.l4_ok == Some(true) {
                assert_ne!(
                    pkt.l4_ok,
                    Some(false),
                    "a valid L4 checksum made invalid\nin  {:02x?}\nout {f:02x?}",
                    input.map(|x| x.0).unwrap_or_default()
                );
            }
        }
        Some(i) if i.l4_ok == Some(true) => {
            assert_ne!(
                out.l4_ok,
                Some(false),
                "an answer with a bad checksum: {f:02x?}"
            );
        }
        Some(_) => {}
        // The director's own: right checksums.
        None if input.is_none() => {
            assert_ne!(
                out.l4_ok,
                Some(false),
                "own frame with a bad checksum: {f:02x?}"
            )
        }
        None => {}
    }
}

/// The inner packet of an IPIP / IPv6-in-IPv6 frame the director made (the
/// input was not itself one).
fn tunnelled(f: &[u8], input_proto: Option<u8>) -> Option<IpFacts> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let payload = match &p.net {
        Some(NetSlice::Ipv4(s)) => s.payload(),
        Some(NetSlice::Ipv6(s)) => s.payload(),
        None => return None,
    };
    let proto = payload.ip_number.0;
    if !matches!(proto, 4 | 41) || input_proto == Some(proto) {
        return None;
    }
    let inner = SlicedPacket::from_ip(payload.payload).ok()?;
    net_facts(&inner)
}

/// What etherparse reads of an Ethernet frame's IP packet; `None` when it
/// rejects the frame or it is not IP.
fn tcp_flags(proto: u8, fragmented: bool, l4: &[u8]) -> Option<u8> {
    (proto == 6 && !fragmented)
        .then(|| l4.get(13).copied())
        .flatten()
}

pub fn facts(f: &[u8]) -> Option<IpFacts> {
    net_facts(&SlicedPacket::from_ethernet(f).ok()?)
}

fn net_facts(p: &SlicedPacket) -> Option<IpFacts> {
    match p.net.as_ref()? {
        NetSlice::Ipv4(s) => {
            let h = s.header();
            let pl = s.payload();
            let hdr = h.slice();
            Some(IpFacts {
                hop: h.ttl(),
                proto: pl.ip_number.0,
                l4_ok: (!pl.fragmented)
                    .then(|| l4_ok(&h.source(), &h.destination(), pl.ip_number.0, pl.payload))
                    .flatten(),
                ip_csum_ok: fold(sum(0, hdr)) == 0,
                icmp_type: (pl.ip_number.0 == 1)
                    .then(|| pl.payload.first().copied())
                    .flatten(),
                tcp_flags: tcp_flags(pl.ip_number.0, pl.fragmented, pl.payload),
            })
        }
        NetSlice::Ipv6(s) => {
            let h = s.header();
            let pl = s.payload();
            Some(IpFacts {
                hop: h.hop_limit(),
                proto: pl.ip_number.0,
                // A payload length of 0 is read by etherparse as a jumbogram
                // running to the end of the frame; the director (no Jumbo
                // Payload option, RFC 2675) reads it as no payload, so there
                // is no L4 checksum for it to keep (found by the wire
                // target: AH then TCP after a payload length of 0).
                l4_ok: (!pl.fragmented && h.payload_length() != 0)
                    .then(|| l4_ok(&h.source(), &h.destination(), pl.ip_number.0, pl.payload))
                    .flatten(),
                ip_csum_ok: true,
                icmp_type: (pl.ip_number.0 == 58)
                    .then(|| pl.payload.first().copied())
                    .flatten(),
                tcp_flags: tcp_flags(pl.ip_number.0, pl.fragmented, pl.payload),
            })
        }
    }
}

/// Whether a TCP/UDP/ICMP/ICMPv6 checksum is right; `None` for other
/// protocols (ICMPv6 outside IPv6 included) or a header cut short.
fn l4_ok(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> Option<bool> {
    let v6 = src.len() == 16;
    let min = match proto {
        6 => 20,
        17 => 8,
        1 => 4,
        // ICMPv6 only in IPv6: over IPv4, protocol 58 has no defined
        // checksum (the NAT rewrite leaves it alone; found by the wire
        // target).
        58 if v6 => 4,
        _ => return None,
    };
    if seg.len() < min {
        return None;
    }
    if proto == 17 && seg[6..8] == [0, 0] {
        // IPv4: no checksum. IPv6: a zero checksum is invalid (RFC 8200
        // 8.1), whatever the sum; the director leaves it zero and the real
        // server drops it (found by the wire target).
        return Some(!v6);
    }
    // UDP's own length says what its checksum covers (RFC 768); bytes after
    // it in the IP payload are not the datagram's.
    let seg = if proto == 17 {
        let len = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
        seg.get(..len).filter(|_| len >= 8)?
    } else {
        seg
    };
    let mut s = sum(0, seg);
    if proto != 1 {
        s = sum(s, src);
        s = sum(s, dst);
        s += u32::from(proto);
        s += seg.len() as u32 & 0xffff;
        s += (seg.len() as u32) >> 16;
    }
    Some(fold(s) == 0)
}

/// One's complement sum of `b` as 16-bit big-endian words, added to `s`.
fn sum(mut s: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = it.remainder() {
        s += u32::from(*x) << 8;
    }
    s
}

/// The folded complement: 0 when a sum over data with its checksum is right.
fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Source address and port of a TCP/UDP frame.
pub fn l4_source(f: &[u8]) -> Option<(std::net::IpAddr, u16)> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let src = match p.net.as_ref()? {
        NetSlice::Ipv4(s) => std::net::IpAddr::from(s.header().source()),
        NetSlice::Ipv6(s) => std::net::IpAddr::from(s.header().source()),
    };
    let port = match p.transport.as_ref()? {
        etherparse::TransportSlice::Tcp(t) => t.source_port(),
        etherparse::TransportSlice::Udp(u) => u.source_port(),
        _ => return None,
    };
    Some((src, port))
}
