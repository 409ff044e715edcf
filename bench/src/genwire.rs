//! The pure parts of `dpvs-bench gen`: the probe payload (magic, flow, sequence,
//! timestamp), data frames, the real-server reflection, ARP, the checks applied
//! to what comes back from the director, and percentile math.
//!
//! Nothing here touches DPDK or a clock: the generator loop (gen.rs) passes
//! bytes and times in, so every rule is a unit test.

use std::net::Ipv4Addr;

use dataplane::ForwardMode;

use crate::frames::{self, flag, Expect, Seg};

/// Probe payload: magic, flow index, per-run sequence, send time (ns).
pub const MAGIC: [u8; 4] = *b"DPVG";
pub const PAYLOAD_LEN: usize = 24;
/// The client's initial sequence number; its first data segment carries ISN + 1.
pub const CLIENT_ISN: u32 = 1000;
pub const SERVER_ISN: u32 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub flow: u32,
    pub seq: u64,
    pub ts_ns: u64,
}

impl Payload {
    pub fn bytes(&self) -> [u8; PAYLOAD_LEN] {
        let mut b = [0u8; PAYLOAD_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.flow.to_be_bytes());
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.ts_ns.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Option<Payload> {
        if b.len() < PAYLOAD_LEN || b[0..4] != MAGIC {
            return None;
        }
        Some(Payload {
            flow: u32::from_be_bytes(b[4..8].try_into().ok()?),
            seq: u64::from_be_bytes(b[8..16].try_into().ok()?),
            ts_ns: u64::from_be_bytes(b[16..24].try_into().ok()?),
        })
    }
}

/// What the generator knows about the service under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub mode: ForwardMode,
    pub vport: u16,
    /// The real servers' port (the VIP's port for DR and TUN).
    pub rport: u16,
    /// Director MACs: client-side port, server-side port.
    pub dir_mac: [[u8; 6]; 2],
    /// Real servers 192.168.0.11 .. (frames::rs).
    pub nrs: usize,
}

impl Target {
    pub fn new(mode: ForwardMode, vport: u16, dir_mac: [[u8; 6]; 2], nrs: usize) -> Target {
        let rport = match mode {
            ForwardMode::Dr | ForwardMode::Tun => vport,
            _ => frames::RPORT,
        };
        Target {
            mode,
            vport,
            rport,
            dir_mac,
            nrs,
        }
    }

    /// Whether replies come back through the director (round trip) or the
    /// real-server side is the end of the path (DR, TUN: one way).
    pub fn round_trip(&self) -> bool {
        matches!(self.mode, ForwardMode::Nat | ForwardMode::FullNat)
    }

    fn rs_index_of_ip(&self, ip: [u8; 4]) -> Option<usize> {
        (0..self.nrs).find(|&i| frames::rs(i).0 == ip)
    }

    fn rs_index_of_mac(&self, mac: &[u8]) -> Option<usize> {
        (0..self.nrs).find(|&i| frames::rs(i).1[..] == *mac)
    }
}

/// Client segment of flow `flow` toward the VIP.
pub fn client_seg(t: &Target, flow: u32, flags: u8, seq: u32, payload: usize) -> Seg {
    let (cip, cport) = frames::client(flow);
    Seg {
        src_mac: frames::GW_MAC,
        dst_mac: t.dir_mac[0],
        src: cip,
        sport: cport,
        dst: frames::VIP,
        dport: t.vport,
        flags,
        seq,
        ack: if flags & flag::ACK != 0 {
            SERVER_ISN + 1
        } else {
            0
        },
        payload,
    }
}

/// A client data segment carrying `p`; returns the frame length.
pub fn write_data(t: &Target, p: &Payload, tcp_seq: u32, out: &mut [u8]) -> usize {
    let s = client_seg(t, p.flow, flag::PSH | flag::ACK, tcp_seq, PAYLOAD_LEN);
    frames::write_with(&s, Some(&p.bytes()), out)
}

/// Length of a data frame (for sizing buffers).
pub fn data_len() -> usize {
    54 + PAYLOAD_LEN
}

/// Offsets of the TCP header and payload inside an IPv4 frame, looking through
/// one IP-in-IP header: (inner IPv4 offset, TCP offset, payload range end).
fn tcp_offsets(f: &[u8]) -> Option<(usize, usize, usize)> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let mut ip = 14;
    if f.get(ip)? >> 4 != 4 {
        return None;
    }
    if *f.get(ip + 9)? == 4 {
        ip += usize::from(f[ip] & 0x0f) * 4;
        if f.get(ip)? >> 4 != 4 {
            return None;
        }
    }
    if *f.get(ip + 9)? != 6 {
        return None;
    }
    let ihl = usize::from(f[ip] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([*f.get(ip + 2)?, *f.get(ip + 3)?]));
    let l4 = ip + ihl;
    let end = ip + tot;
    if ihl < 20 || end > f.len() || l4 + 20 > end {
        return None;
    }
    Some((ip, l4, end))
}

/// The TCP payload of an IPv4 (or IP-in-IP) frame.
pub fn tcp_payload(f: &[u8]) -> Option<&[u8]> {
    let (_, l4, end) = tcp_offsets(f)?;
    let doff = usize::from(f[l4 + 12] >> 4) * 4;
    f.get(l4 + doff..end)
}

fn tcp_seq(f: &[u8]) -> Option<u32> {
    let (_, l4, _) = tcp_offsets(f)?;
    Some(u32::from_be_bytes(f.get(l4 + 4..l4 + 8)?.try_into().ok()?))
}

/// The inner (TUN) or only IPv4 header's source and TCP source port.
fn inner_src(f: &[u8]) -> Option<([u8; 4], u16)> {
    let (ip, l4, _) = tcp_offsets(f)?;
    Some((
        f.get(ip + 12..ip + 16)?.try_into().ok()?,
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
    ))
}

/// What a real server answers to a segment it received (a SYN gets a SYN-ACK,
/// anything with a payload the same payload back), with swapped MACs,
/// addresses and ports, as a real server's stack would. TCP options of the
/// request (TOA) are not echoed. Returns the frame length, None if `f` is not
/// a plain IPv4/TCP segment.
pub fn reflect(f: &[u8], out: &mut [u8]) -> Option<usize> {
    let q = frames::quick(f)?;
    if f[23] != 6 {
        return None;
    }
    let payload = tcp_payload(f)?;
    let seq = tcp_seq(f)?;
    let syn = q.flags & flag::SYN != 0;
    let s = Seg {
        src_mac: f[0..6].try_into().ok()?,
        dst_mac: f[6..12].try_into().ok()?,
        src: q.dst,
        sport: q.dport,
        dst: q.src,
        dport: q.sport,
        flags: if syn {
            flag::SYN | flag::ACK
        } else {
            flag::PSH | flag::ACK
        },
        seq: if syn { SERVER_ISN } else { SERVER_ISN + 1 },
        ack: seq
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(syn)),
        payload: payload.len(),
    };
    if out.len() < frames::frame_len(&s) {
        return None;
    }
    Some(frames::write_with(&s, Some(payload), out))
}

/// What the real-server side must see from the director for this mode.
pub fn expect_request(t: &Target) -> Expect {
    let rips: Vec<[u8; 4]> = (0..t.nrs).map(|i| frames::rs(i).0).collect();
    let base = Expect {
        dst_mac: None,
        src_mac: Some(t.dir_mac[1]),
        dst_ips: rips,
        dport: Some(t.rport),
        src_is_client: true,
        src_ip: None,
        sport: None,
        ttl: Some(frames::TTL - 1),
        ipip: false,
        toa: false,
    };
    match t.mode {
        ForwardMode::Nat => base,
        ForwardMode::FullNat => Expect {
            src_is_client: false,
            ..base
        },
        ForwardMode::Dr => Expect {
            dst_ips: vec![frames::VIP],
            ttl: Some(frames::TTL),
            ..base
        },
        ForwardMode::Tun => Expect {
            ttl: None,
            ipip: true,
            ..base
        },
    }
}

/// What the client side must see: from VIP:vport to the client, to the gateway.
pub fn expect_reply(t: &Target) -> Expect {
    Expect {
        dst_mac: Some(frames::GW_MAC),
        src_mac: Some(t.dir_mac[0]),
        dst_ips: vec![],
        dport: None,
        src_is_client: false,
        src_ip: Some(frames::VIP),
        sport: Some(t.vport),
        ttl: Some(frames::TTL - 1),
        ipip: false,
        toa: false,
    }
}

/// Check a frame the director sent to the real-server side. `full` adds the
/// independent parse (etherparse: checksums, TTL, every address); the cheap
/// part (RS MAC and address agree, payload flow matches the client address or
/// the TOA) runs on every frame. Returns the payload (None for a SYN).
pub fn check_request(
    f: &[u8],
    t: &Target,
    exp: &Expect,
    full: bool,
) -> Result<Option<Payload>, String> {
    if full {
        frames::check(f, exp)?;
    }
    let q = frames::quick(f).ok_or("not IPv4/TCP")?;
    let rs = t
        .rs_index_of_mac(&f[0..6])
        .ok_or_else(|| format!("dst MAC {:02x?} is no real server", &f[0..6]))?;
    if f[6..12] != t.dir_mac[1] {
        return Err("src MAC is not the director's server-side port".into());
    }
    // The address the frame is routed to must be that MAC's (DR keeps the VIP).
    let routed: [u8; 4] = f[30..34].try_into().map_err(|_| "short")?;
    if t.mode == ForwardMode::Dr {
        if routed != frames::VIP {
            return Err(format!("DR: dst {} is not the VIP", Ipv4Addr::from(routed)));
        }
    } else if t.rs_index_of_ip(routed) != Some(rs) {
        return Err(format!(
            "dst {} does not belong to the MAC's real server",
            Ipv4Addr::from(routed)
        ));
    }
    if q.dport != t.rport {
        return Err(format!("dport {} want {}", q.dport, t.rport));
    }
    let payload = tcp_payload(f).ok_or("bad TCP offsets")?;
    if payload.is_empty() {
        return Ok(None);
    }
    let p = Payload::parse(payload).ok_or("payload is not a probe")?;
    let want = frames::client(p.flow);
    if t.mode == ForwardMode::FullNat {
        if frames::flow_of(q.src, q.sport).is_some() {
            return Err("FULLNAT: the client address reached the real server".into());
        }
        let first = tcp_seq(f) == Some(CLIENT_ISN + 1);
        match (frames::toa(f), first) {
            (Some(toa), _) if toa != want => {
                return Err(format!(
                    "TOA {}:{} is not the client {}:{}",
                    Ipv4Addr::from(toa.0),
                    toa.1,
                    Ipv4Addr::from(want.0),
                    want.1
                ))
            }
            (None, true) => return Err("FULLNAT: no TOA on the first data segment".into()),
            _ => {}
        }
    } else if inner_src(f) != Some(want) {
        return Err(format!("payload of flow {} from another client", p.flow));
    }
    Ok(Some(p))
}

/// Check a frame the director sent to the client side (NAT, FULLNAT replies).
/// Returns the payload (None for a SYN-ACK) and the flow it was addressed to.
pub fn check_reply(f: &[u8], exp: &Expect, full: bool) -> Result<(Option<Payload>, u32), String> {
    if full {
        frames::check(f, exp)?;
    }
    let q = frames::quick(f).ok_or("not IPv4/TCP")?;
    if f[0..6] != frames::GW_MAC {
        return Err("dst MAC is not the gateway's".into());
    }
    if q.src != frames::VIP || Some(q.sport) != exp.sport {
        return Err(format!(
            "src {}:{} is not the VIP",
            Ipv4Addr::from(q.src),
            q.sport
        ));
    }
    let flow = frames::flow_of(q.dst, q.dport)
        .ok_or_else(|| format!("dst {}:{} is not a client", Ipv4Addr::from(q.dst), q.dport))?;
    let payload = tcp_payload(f).ok_or("bad TCP offsets")?;
    if payload.is_empty() {
        return Ok((None, flow));
    }
    let p = Payload::parse(payload).ok_or("payload is not a probe")?;
    if p.flow != flow {
        return Err(format!(
            "payload of flow {} delivered to flow {flow}",
            p.flow
        ));
    }
    Ok((Some(p), flow))
}

pub const ETH_ARP: [u8; 2] = [0x08, 0x06];

/// An ARP packet (op 1 request, 2 reply), padded to 60 bytes.
pub fn arp(op: u8, smac: [u8; 6], sip: [u8; 4], tmac: [u8; 6], tip: [u8; 4]) -> [u8; 60] {
    let mut f = [0u8; 60];
    let dst = if op == 1 { [0xff; 6] } else { tmac };
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&ETH_ARP);
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, op]);
    f[22..28].copy_from_slice(&smac);
    f[28..32].copy_from_slice(&sip);
    f[32..38].copy_from_slice(&tmac);
    f[38..42].copy_from_slice(&tip);
    f
}

/// The fields of an IPv4-over-Ethernet ARP packet the generator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u8,
    pub smac: [u8; 6],
    pub sip: [u8; 4],
    pub tip: [u8; 4],
}

pub fn parse_arp(f: &[u8]) -> Option<Arp> {
    if f.len() < 42 || f[12..14] != ETH_ARP || f[14..21] != [0, 1, 0x08, 0, 6, 4, 0] {
        return None;
    }
    Some(Arp {
        op: f[21],
        smac: f[22..28].try_into().ok()?,
        sip: f[28..32].try_into().ok()?,
        tip: f[38..42].try_into().ok()?,
    })
}

/// The reply to an ARP request for an address `owner` maps to a MAC.
pub fn answer_arp(f: &[u8], owner: impl Fn([u8; 4]) -> Option<[u8; 6]>) -> Option<[u8; 60]> {
    let a = parse_arp(f)?;
    if a.op != 1 {
        return None;
    }
    let mac = owner(a.tip)?;
    Some(arp(2, mac, a.tip, a.smac, a.sip))
}

/// Nearest-rank percentile of sorted values (q in 0..=1); None when empty.
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const DMAC0: [u8; 6] = [2, 0, 0, 0, 0xd0, 0];
    const DMAC1: [u8; 6] = [2, 0, 0, 0, 0xd0, 1];

    fn target(mode: ForwardMode) -> Target {
        Target::new(mode, 80, [DMAC0, DMAC1], 4)
    }

    fn data(t: &Target, flow: u32, tcp_seq: u32) -> Vec<u8> {
        let p = Payload {
            flow,
            seq: 77,
            ts_ns: 123_456_789,
        };
        let mut b = vec![0u8; 128];
        let n = write_data(t, &p, tcp_seq, &mut b);
        b.truncate(n);
        b
    }

    /// What a NAT director does to a request: rewrite dst to RS `i`, MACs, TTL.
    fn nat_forward(f: &[u8], i: usize, sport: Option<([u8; 4], u16)>) -> Vec<u8> {
        let q = frames::quick(f).unwrap();
        let (rip, rmac) = frames::rs(i);
        let (src, sp) = sport.unwrap_or((q.src, q.sport));
        let s = Seg {
            src_mac: DMAC1,
            dst_mac: rmac,
            src,
            sport: sp,
            dst: rip,
            dport: frames::RPORT,
            flags: q.flags,
            seq: tcp_seq(f).unwrap(),
            ack: SERVER_ISN + 1,
            payload: PAYLOAD_LEN,
        };
        let mut b = vec![0u8; 128];
        let n = frames::write_with(&s, Some(tcp_payload(f).unwrap()), &mut b);
        b[22] = frames::TTL - 1;
        // Re-fix the IP checksum after the TTL change.
        b[24..26].copy_from_slice(&[0, 0]);
        let c = frames::csum_fold(frames::csum_add(0, &b[14..34]));
        b[24..26].copy_from_slice(&c.to_be_bytes());
        b.truncate(n);
        b
    }

    #[test]
    fn data_frames_parse_with_valid_checksums_and_carry_the_payload() {
        let t = target(ForwardMode::Nat);
        let f = data(&t, 4242, CLIENT_ISN + 1);
        assert_eq!(f.len(), data_len());
        let e = Expect {
            dst_mac: Some(DMAC0),
            src_mac: Some(frames::GW_MAC),
            dst_ips: vec![frames::VIP],
            dport: Some(80),
            src_is_client: true,
            src_ip: None,
            sport: None,
            ttl: Some(frames::TTL),
            ipip: false,
            toa: false,
        };
        frames::check(&f, &e).unwrap();
        let p = Payload::parse(tcp_payload(&f).unwrap()).unwrap();
        assert_eq!((p.flow, p.seq, p.ts_ns), (4242, 77, 123_456_789));
        let (cip, cport) = frames::client(4242);
        let parsed = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = parsed.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), cip);
        let Some(TransportSlice::Tcp(tcp)) = parsed.transport else {
            panic!("not TCP")
        };
        assert_eq!(tcp.source_port(), cport);
        assert_eq!(tcp.sequence_number(), CLIENT_ISN + 1);
    }

    #[test]
    fn nat_request_passes_and_wrong_bytes_are_caught() {
        let t = target(ForwardMode::Nat);
        let e = expect_request(&t);
        let out = nat_forward(&data(&t, 7, CLIENT_ISN + 1), 2, None);
        let p = check_request(&out, &t, &e, true).unwrap().unwrap();
        assert_eq!(p.flow, 7);
        // A flipped payload byte: the TCP checksum no longer matches.
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(check_request(&bad, &t, &e, true)
            .unwrap_err()
            .contains("checksum"));
        // MAC of RS 1 but address of RS 2.
        let mut bad = out.clone();
        bad[0..6].copy_from_slice(&frames::rs(1).1);
        assert!(check_request(&bad, &t, &e, false).is_err());
        // The payload says flow 7 but the frame comes from flow 8's client.
        let other = nat_forward(&data(&t, 7, CLIENT_ISN + 1), 2, Some(frames::client(8)));
        assert!(check_request(&other, &t, &e, true)
            .unwrap_err()
            .contains("another client"));
        // Wrong real-server port.
        let mut bad = out.clone();
        bad[36..38].copy_from_slice(&81u16.to_be_bytes());
        assert!(check_request(&bad, &t, &e, false).is_err());
    }

    #[test]
    fn fullnat_first_data_segment_needs_the_clients_toa() {
        let t = target(ForwardMode::FullNat);
        let e = expect_request(&t);
        let lip = Some((frames::DIP_SERVER, 40000));
        let out = nat_forward(&data(&t, 9, CLIENT_ISN + 1), 0, lip);
        assert!(check_request(&out, &t, &e, true)
            .unwrap_err()
            .contains("no TOA"));
        // A later segment needs none.
        let later = nat_forward(&data(&t, 9, CLIENT_ISN + 25), 0, lip);
        assert_eq!(
            check_request(&later, &t, &e, true).unwrap().unwrap().flow,
            9
        );
        // The client address leaking to the server is an error in FULLNAT.
        let leak = nat_forward(&data(&t, 9, CLIENT_ISN + 25), 0, None);
        assert!(check_request(&leak, &t, &e, false).is_err());
    }

    #[test]
    fn reflection_swaps_everything_and_comes_back_as_a_valid_reply() {
        let t = target(ForwardMode::Nat);
        let req = nat_forward(&data(&t, 11, CLIENT_ISN + 1), 3, None);
        let mut b = [0u8; 128];
        let n = reflect(&req, &mut b).unwrap();
        let r = &b[..n];
        let (rip, rmac) = frames::rs(3);
        let (cip, cport) = frames::client(11);
        assert_eq!(&r[0..6], &DMAC1);
        assert_eq!(&r[6..12], &rmac);
        let q = frames::quick(r).unwrap();
        assert_eq!(
            (q.src, q.sport, q.dst, q.dport),
            (rip, frames::RPORT, cip, cport)
        );
        assert_eq!(q.flags, flag::PSH | flag::ACK);
        let e = Expect {
            dst_mac: Some(DMAC1),
            src_mac: Some(rmac),
            dst_ips: vec![cip],
            dport: Some(cport),
            src_is_client: false,
            src_ip: Some(rip),
            sport: Some(frames::RPORT),
            ttl: Some(frames::TTL),
            ipip: false,
            toa: false,
        };
        frames::check(r, &e).unwrap();
        assert_eq!(Payload::parse(tcp_payload(r).unwrap()).unwrap().flow, 11);
        // What the director makes of it (src back to VIP:80) passes check_reply.
        let s = Seg {
            src_mac: DMAC0,
            dst_mac: frames::GW_MAC,
            src: frames::VIP,
            sport: 80,
            dst: cip,
            dport: cport,
            flags: q.flags,
            seq: SERVER_ISN + 1,
            ack: 0,
            payload: PAYLOAD_LEN,
        };
        let mut c = [0u8; 128];
        let n = frames::write_with(&s, Some(tcp_payload(r).unwrap()), &mut c);
        let ex = expect_reply(&t);
        let mut ok = c[..n].to_vec();
        ok[22] = frames::TTL - 1;
        ok[24..26].copy_from_slice(&[0, 0]);
        let ck = frames::csum_fold(frames::csum_add(0, &ok[14..34]));
        ok[24..26].copy_from_slice(&ck.to_be_bytes());
        let (p, flow) = check_reply(&ok, &ex, true).unwrap();
        assert_eq!((p.unwrap().flow, flow), (11, 11));
        // Delivered to the wrong client: caught without the full parse.
        let s2 = Seg {
            dst: frames::client(12).0,
            dport: frames::client(12).1,
            ..s
        };
        let n = frames::write_with(&s2, Some(tcp_payload(r).unwrap()), &mut c);
        assert!(check_reply(&c[..n], &ex, false)
            .unwrap_err()
            .contains("delivered to flow 12"));
        // A SYN is answered with a SYN-ACK acknowledging ISN + 1.
        let syn = frames::write(
            &Seg {
                flags: flag::SYN,
                seq: CLIENT_ISN,
                payload: 0,
                ..client_seg(&t, 5, flag::SYN, CLIENT_ISN, 0)
            },
            &mut c,
        );
        let n = reflect(&c[..syn], &mut b).unwrap();
        let tcp = etherparse::TcpSlice::from_slice(&b[34..n]).unwrap();
        assert!(tcp.syn() && tcp.ack());
        assert_eq!(tcp.acknowledgment_number(), CLIENT_ISN + 1);
    }

    #[test]
    fn arp_requests_for_owned_addresses_get_answers() {
        let req = arp(1, DMAC1, frames::DIP_SERVER, [0; 6], frames::rs(2).0);
        let owner = |ip: [u8; 4]| (0..4).map(frames::rs).find(|r| r.0 == ip).map(|r| r.1);
        let rep = answer_arp(&req, owner).unwrap();
        let a = parse_arp(&rep).unwrap();
        assert_eq!(
            (a.op, a.smac, a.sip, a.tip),
            (2, frames::rs(2).1, frames::rs(2).0, frames::DIP_SERVER)
        );
        assert_eq!(&rep[0..6], &DMAC1);
        let other = arp(1, DMAC1, frames::DIP_SERVER, [0; 6], [192, 168, 0, 99]);
        assert!(answer_arp(&other, owner).is_none());
        assert!(
            answer_arp(&rep, owner).is_none(),
            "replies are not answered"
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        let w = [10, 20, 30, 40];
        assert_eq!(percentile(&w, 0.25), Some(10));
        assert_eq!(percentile(&w, 0.26), Some(20));
    }
}
