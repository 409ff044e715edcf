//! Forwarding methods (what `ip_vs_xmit.c` does) and the output path.
//!
//! NAT rewrites the destination of requests and the source of replies; FULLNAT
//! rewrites both ends both ways (client -> LIP, VIP -> RIP) and tells the real
//! server the client's address in a TOA option or a Proxy Protocol header
//! (`fnat`); DR only readdresses the Ethernet frame to the real server; TUN
//! wraps the packet in IPIP (or IPv6-in-IPv6) from the DIP to the RIP. Output
//! looks up the route and the next hop's MAC; a packet whose neighbour is
//! unknown waits in the worker's bounded pending queue while an ARP request
//! (IPv6: a neighbour solicitation) goes out.
//!
//! A fragment takes the same path (`crate::frag`): the first one is noted in
//! the fragment table, a later one gets only the IP-level part of its mode
//! (addresses, TTL, encapsulation); nothing that changes a segment's length
//! (TOA, Proxy Protocol) or needs the whole of it (FULLNAT64) runs on one.

use std::net::IpAddr;

use conntrack::{ConnId, Direction};

use crate::config::ForwardMode;
use crate::core::Core;
use crate::core::{mode_from_flags, tcp_flag};
use crate::events::Event;
use crate::fnat::{self, SeqState};
use crate::frag::Target;
use crate::io::Io;
use crate::neigh::{pack_hop, unpack_hop, Pending};
use crate::route::NextHop;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::synproxy;
use crate::wire::{
    icmp, icmpv6, ip_proto, ipip, nat, nat64, toa, IpFamily, IpMeta, Ipv4Packet, PacketBuf,
    TcpPacket,
};

const ETH_HLEN: usize = 14;

/// Real servers whose TUN route a worker keeps (`Core::tun_routes`); the
/// cache starts over when full.
pub(crate) const TUN_ROUTES_MAX: usize = 4096;

/// A TUN connection's reply direction never passes the director (the real
/// server answers the client itself), so its reply hop word carries the
/// index of the connection's entry in `Core::tun_dips` instead, tagged
/// with this bit (a next hop's word has bit 63).
const TUN_ROUTE: u64 = 1 << 62;

/// Slots of `Core::dest_hops` (direct-mapped by dest id).
pub(crate) const DEST_HOPS: usize = 64;

/// The slot of `Core::dest_hops` after the dests' (`DEST_HOPS` of them):
/// the last gateway a connection's first packet resolved a MAC for, keyed
/// by (port, gateway) under the hops epoch (`DestHop::dest` holds the port,
/// `rip` the gateway). A connection's first reply goes to its client, most
/// often through the same gateway as the last one's: its route is looked up
/// (the client's address), the gateway's neighbour entry not again.
pub(crate) const GATEWAY_HOP: usize = DEST_HOPS;

/// A request's next hop toward a real server, shared by every connection
/// to it: resolved by the first connection, reused by the next ones while
/// routes and neighbours are unchanged (`epoch`, the hops epoch), so a new
/// connection skips the route and neighbour lookups. `rip` guards against
/// another dest with the same slot; `connected`: the real server is on a
/// connected network (what DR requires).
#[derive(Clone, Copy)]
pub(crate) struct DestHop {
    dest: u32,
    epoch: u32,
    hop: u64,
    rip: IpAddr,
    connected: bool,
}

impl DestHop {
    pub(crate) const NONE: DestHop = DestHop {
        dest: 0,
        // 0 is never a hops epoch.
        epoch: 0,
        hop: 0,
        rip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        connected: false,
    };

    #[inline]
    fn get(&self, dest: u32, rip: IpAddr, epoch: u32, connected_only: bool) -> Option<u64> {
        let ok = self.epoch == epoch
            && self.dest == dest
            && self.rip == rip
            && (self.connected || !connected_only);
        ok.then_some(self.hop)
    }
}

/// TOA option length for the client's address family.
pub(crate) fn toa_len(client: IpAddr) -> usize {
    if client.is_ipv4() {
        toa::LEN_V4
    } else {
        toa::LEN_V6
    }
}

/// MTU of the port toward the real server `rip`: that of the next hop the
/// connection cached under `epoch`, else the route's.
fn fnat_mtu(snap: &Snapshot, f: &Flow, epoch: u32, rip: IpAddr) -> usize {
    match f.hop(Direction::Original, epoch) {
        Some((port, _)) => snap.ports.get(port).map_or(1500, |p| usize::from(p.mtu)),
        None => mtu_toward(snap, rip),
    }
}

/// IP MTU of the port the route toward `dst` leaves by (1500 without one).
fn mtu_toward(snap: &Snapshot, dst: IpAddr) -> usize {
    snap.routes
        .lookup(dst)
        .and_then(|h| snap.ports.get(h.port))
        .map_or(1500, |p| usize::from(p.mtu))
}

/// What xmit needs of a connection on every packet, copied out of the
/// table. Not the keys (addresses and ports of both directions): a mode
/// reads the ones it rewrites with from the table (`ConnTable::key`), DR
/// none while its next hop is cached.
#[derive(Clone, Copy)]
pub(crate) struct Flow {
    mode: ForwardMode,
    pub(crate) dest: u32,
    service: u32,
    /// FULLNAT TCP: the sequence state (`fnat`).
    seq: SeqState,
    /// The connection's flags (mode, SYN proxy state) and the SYN proxy's
    /// sequence offset (`synproxy`).
    flags: u8,
    sp_delta: u32,
    /// Each direction's next hop, if resolved under `hops_epoch`.
    hops: [u64; 2],
    hops_epoch: u32,
}

impl Flow {
    /// What xmit needs of connection `c`, read once per packet.
    #[inline]
    pub(crate) fn of(c: &conntrack::Conn) -> Flow {
        Flow {
            mode: mode_from_flags(c.flags()),
            dest: c.dest(),
            service: c.service(),
            seq: SeqState::from_user(c.user),
            flags: c.flags(),
            sp_delta: c.user32,
            hops: c.hops,
            hops_epoch: c.hops_epoch,
        }
    }

    /// The connection's flags (mode, SYN proxy state).
    #[inline]
    pub(crate) fn flags(&self) -> u8 {
        self.flags
    }

    /// The next hop (port index, MAC) direction `dir` resolved, if it did
    /// under `epoch`.
    #[inline]
    fn hop(&self, dir: Direction, epoch: u32) -> Option<(usize, [u8; 6])> {
        if self.hops_epoch != epoch {
            return None;
        }
        unpack_hop(self.hops[dir as usize])
    }

    /// TUN: the index in `Core::tun_dips` of the DIP and MTU toward the
    /// real server, if the connection noted it under `epoch`.
    #[inline]
    fn tun_route(&self, epoch: u32) -> Option<usize> {
        let w = self.hops[Direction::Reply as usize];
        if self.hops_epoch != epoch || w >> 62 != TUN_ROUTE >> 62 {
            return None;
        }
        Some((w & u64::from(u32::MAX)) as usize)
    }
}

/// What [`Core::xmit_fnat`]'s one pass needs of the connection's keys, as
/// wire bytes ([`FnatKeys::ends`]; `None`: a key is IPv6).
struct FnatKeys<'a> {
    conns: &'a conntrack::ConnTable,
    id: ConnId,
    dir: Direction,
    seq: SeqState,
    rst: bool,
}

impl FnatKeys<'_> {
    #[inline(always)]
    fn ends(self) -> Option<nat::FnatEnds> {
        let (orig, reply) = self.conns.keys(self.id);
        let ((c4, v4), (r4, l4)) = (orig.v4_octets()?, reply.v4_octets()?);
        let (first, src, dst) = match self.dir {
            Direction::Original => (
                self.seq.first_seq().filter(|_| !self.rst),
                (l4, reply.dport()),
                (r4, reply.sport()),
            ),
            Direction::Reply => (None, (v4, orig.dport()), (c4, orig.sport())),
        };
        Some(nat::FnatEnds {
            first,
            client: (c4, orig.sport()),
            src,
            dst,
        })
    }
}

impl<I: Io> Core<I> {
    /// Forward a packet of tracked connection `id` in direction `dir`; `f` is
    /// what the connection holds (`Flow::of`). Inlined where it is called
    /// (the established path: `Core::handle_tracked` in the burst loop) as a
    /// dispatch by mode: DR and NAT (`xmit_nat`) forward in place, FULLNAT
    /// and TUN (`xmit_fnat`, `xmit_tun`: larger, with their own frames) out
    /// of line; a fragment or a SYN-proxied segment takes `xmit_prelude`
    /// first, out of line.
    #[inline(always)]
    pub(crate) fn xmit(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) {
        if meta.frag.is_some() || f.flags & synproxy::SP_OPEN != 0 {
            self.xmit_prelude(&mut m, meta, id, dir, f.flags, f.sp_delta);
        }
        match (f.mode, dir) {
            (ForwardMode::Nat, _) => self.xmit_nat(snap, m, meta, id, dir, f),
            (ForwardMode::FullNat, _) => self.xmit_fnat(snap, m, meta, id, dir, f),
            // DR: the frame goes to the real server unchanged but for its MAC.
            (ForwardMode::Dr, Direction::Original) => {
                let len = m.len();
                self.xmit_out(snap, m, meta, false, len, id, dir, f)
            }
            (ForwardMode::Tun, Direction::Original) => self.xmit_tun(snap, m, meta, id, f),
            _ => self.count_drop(DropReason::Unsupported),
        }
    }

    /// [`Core::xmit`]'s rare first steps: a fragment noted in the fragment
    /// table, a SYN-proxied connection's sequence numbers shifted.
    #[inline(never)]
    fn xmit_prelude(
        &mut self,
        m: &mut I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        flags: u8,
        sp_delta: u32,
    ) {
        if meta.frag.is_some() {
            self.frag_note(meta, Target::Conn(id, dir));
        }
        if flags & synproxy::SP_OPEN != 0 && meta.proto == ip_proto::TCP && meta.has_l4() {
            if let Some(seg) = m.data_mut().get_mut(meta.l4_off..meta.l3_end()) {
                match dir {
                    Direction::Original => synproxy::ack_in(seg, sp_delta),
                    Direction::Reply => {
                        synproxy::seq_out(seg, sp_delta, synproxy::flags_wscale(flags))
                    }
                };
            }
        }
    }

    /// NAT, either direction: requests get the real server's address and
    /// port as destination, replies the VIP's as source; the rewrite
    /// decrements the TTL in the same pass.
    #[inline(always)]
    fn xmit_nat(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) {
        let len = m.len();
        match dir {
            Direction::Original => {
                let reply = self.conns.key(id, Direction::Reply);
                let ip = &mut m.data_mut()[meta.l3_off..];
                let done = match reply.v4_octets() {
                    // IPv4 keys: their wire bytes, no `IpAddr`.
                    Some((r4, _)) if meta.family == IpFamily::V4 => {
                        nat::rewrite_fwd_v4_dst_classified(ip, meta, (r4, reply.sport()))
                    }
                    _ => nat::rewrite_fwd(ip, meta, None, Some((reply.src(), reply.sport()))),
                };
                if let Err(r) = done {
                    return self.count_drop(r);
                }
            }
            Direction::Reply => {
                let orig = self.conns.key(id, Direction::Original);
                let ip = &mut m.data_mut()[meta.l3_off..];
                let done = match orig.v4_octets() {
                    Some((_, v4)) if meta.family == IpFamily::V4 => {
                        nat::rewrite_fwd_v4_src_classified(ip, meta, (v4, orig.dport()))
                    }
                    _ => nat::rewrite_fwd(ip, meta, Some((orig.dst(), orig.dport())), None),
                };
                if let Err(r) = done {
                    return self.count_drop(r);
                }
            }
        }
        self.xmit_out(snap, m, meta, false, len, id, dir, f)
    }

    /// What every mode but TUN ends with: the TTL decremented if the
    /// rewrite did not (`dec_ttl`), the traffic counted (`len`: the frame's
    /// length as received), out to the next hop.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn xmit_out(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        meta: &IpMeta,
        dec_ttl: bool,
        len: usize,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) {
        if dec_ttl {
            if let Err(r) = nat::dec_ttl(&mut m.data_mut()[meta.l3_off..], meta) {
                return self.count_drop(r);
            }
        }
        self.count_traffic(snap, f, dir, len - ETH_HLEN);
        self.output_conn(snap, m, f.mode == ForwardMode::Dr, id, dir, f);
    }

    /// FULLNAT, either direction. The common segment in one pass
    /// ([`nat::fnat_v4`]): IPv4 TCP with IPv4 keys, not a SYN, no Proxy
    /// Protocol, the connection's next hop that way known; TOA in it if due.
    /// Anything else (or that segment when the one pass declines it: TCP
    /// options or no room with TOA due, TTL expiring, ...) takes
    /// [`Core::xmit_fnat_other`].
    #[inline(never)]
    fn xmit_fnat(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) {
        let len = m.len();
        let mut fast = None;
        let hop = f.hop(dir, self.hops_epoch);
        if meta.tcp_flags & tcp_flag::SYN == 0 && f.seq.no_pp() {
            if let Some((port, mac)) = hop {
                if let Some(p) = snap.ports.get(port) {
                    fast = self
                        .fnat_one_pass(&mut m, meta, id, dir, f, (p, mac))
                        .map(|done| (done, port, p));
                }
            }
        }
        // `output_conn` (`send_to`) with the next hop read once: the one
        // pass wrote the link header.
        let (port, p) = match fast {
            Some((done, port, p)) => {
                if done == nat::FnatIn::Toa {
                    self.shared.events[self.index].bump(Event::ToaInserted);
                }
                (port, p)
            }
            None => {
                if !self.xmit_fnat_other(snap, &mut m, *meta, id, dir, f) {
                    return;
                }
                let Some((port, mac)) = f.hop(dir, self.hops_epoch) else {
                    self.count_traffic(snap, f, dir, len - ETH_HLEN);
                    return self.output_conn_resolve(snap, m, false, id, dir, f.dest);
                };
                let p = &snap.ports[port];
                if let Some(h) = m.data_mut().first_chunk_mut::<12>() {
                    h[..6].copy_from_slice(&mac);
                    h[6..].copy_from_slice(&p.mac);
                }
                (port, p)
            }
        };
        self.count_traffic(snap, f, dir, len - ETH_HLEN);
        if m.len() > usize::from(p.mtu) + ETH_HLEN {
            // It came in on a port with a larger MTU; no fragmenting here.
            return self.count_drop(DropReason::OverMtu);
        }
        self.io.send(port, m);
    }

    /// [`Core::xmit_fnat`]'s one pass ([`nat::fnat_v4_with`]) with the
    /// connection's keys as wire bytes, to the next hop `port`'s `mac`
    /// (the link header written in the pass); `None`: not its case (IPv6
    /// keys, or the one pass declined), nothing changed.
    #[inline(always)]
    fn fnat_one_pass(
        &mut self,
        m: &mut I::Buf,
        meta: &IpMeta,
        id: ConnId,
        dir: Direction,
        f: &Flow,
        (p, mac): (&crate::snapshot::PortInfo, [u8; 6]),
    ) -> Option<nat::FnatIn> {
        let ends = FnatKeys {
            conns: &self.conns,
            id,
            dir,
            seq: f.seq,
            rst: meta.tcp_flags & tcp_flag::RST != 0,
        };
        let ends = ends.ends()?;
        let mtu = || usize::from(p.mtu);
        nat::fnat_v4_with(m, meta, ends, mtu, Some((mac, p.mac)))
    }

    /// [`Core::xmit_fnat`] in general: the segment may change shape (TOA,
    /// Proxy Protocol, NAT64), so it works on its own copy of the metadata.
    /// `true`: rewritten, its TTL decremented, for the caller to count and
    /// send; `false`: to be dropped (counted).
    #[inline(never)]
    fn xmit_fnat_other(
        &mut self,
        snap: &Snapshot,
        m: &mut I::Buf,
        mut meta: IpMeta,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) -> bool {
        // `dec_ttl`: the TTL still to decrement (NAT64; the same-family
        // rewrite did it). Each direction reads the key it rewrites with
        // (the other end's); a request's TCP extras read the original key
        // only when they need it.
        let dec_ttl = match dir {
            Direction::Original => {
                let reply = self.conns.key(id, Direction::Reply);
                if meta.proto == ip_proto::TCP && meta.has_l4() {
                    if let Err(r) = self.fnat_tcp_in(snap, m, &mut meta, f, id, &reply) {
                        self.count_drop(r);
                        return false;
                    }
                }
                let done = match reply.v4_octets() {
                    // Both ends IPv4 (the common case): the keys' wire bytes.
                    Some((r4, l4)) if meta.family == IpFamily::V4 => {
                        let ip = &mut m.data_mut()[meta.l3_off..];
                        let (lip, rip) = ((l4, reply.dport()), (r4, reply.sport()));
                        nat::rewrite_fwd_v4(ip, &meta, lip, rip).map(|()| false)
                    }
                    _ => self.fnat_in_other(m, &mut meta, &reply),
                };
                match done {
                    Ok(dec_ttl) => dec_ttl,
                    Err(e) => {
                        self.count_drop(e);
                        return false;
                    }
                }
            }
            Direction::Reply => {
                let orig = self.conns.key(id, Direction::Original);
                if meta.proto == ip_proto::TCP && meta.has_l4() {
                    self.fnat_tcp_out(m, &meta, f, id, &orig);
                }
                let done = match orig.v4_octets() {
                    Some((c4, v4)) if meta.family == IpFamily::V4 => {
                        let ip = &mut m.data_mut()[meta.l3_off..];
                        let (vip, cip) = ((v4, orig.dport()), (c4, orig.sport()));
                        nat::rewrite_fwd_v4(ip, &meta, vip, cip).map(|()| false)
                    }
                    _ => self.fnat_out_other(snap, m, &mut meta, &orig),
                };
                match done {
                    Ok(dec_ttl) => dec_ttl,
                    Err(e) => {
                        self.count_drop(e);
                        return false;
                    }
                }
            }
        };
        if dec_ttl {
            if let Err(r) = nat::dec_ttl(&mut m.data_mut()[meta.l3_off..], &meta) {
                self.count_drop(r);
                return false;
            }
        }
        true
    }

    /// [`Core::xmit_fnat`]'s request rewrite when the packet or a key is
    /// IPv6: FULLNAT64 (IPv6 client, IPv4 real server: `meta` becomes the
    /// IPv4 packet's) or the same-family rewrite. `Ok(true)`: the TTL is
    /// still to decrement (NAT64); `Err`: drop with that reason.
    #[inline(never)]
    fn fnat_in_other(
        &mut self,
        m: &mut I::Buf,
        meta: &mut IpMeta,
        reply: &conntrack::FlowKey,
    ) -> Result<bool, DropReason> {
        let (r, l) = (reply.src(), reply.dst());
        match (l, r) {
            (IpAddr::V4(l4), IpAddr::V4(r4)) if meta.family == IpFamily::V6 => {
                // FULLNAT64: the IPv6 request goes to an IPv4 real server.
                if meta.frag.is_some() {
                    return Err(DropReason::FragUnsupported);
                }
                *meta = nat64::v6_to_v4(m, meta, l4, reply.dport(), r4, reply.sport())?;
                Ok(true)
            }
            _ => {
                let ip = &mut m.data_mut()[meta.l3_off..];
                let (lip, rip) = ((l, reply.dport()), (r, reply.sport()));
                nat::rewrite_fwd(ip, meta, Some(lip), Some(rip)).map(|()| false)
            }
        }
    }

    /// [`Core::xmit_fnat`]'s reply rewrite when the packet or a key is
    /// IPv6: FULLNAT64 (an IPv4 reply to an IPv6 client, 20 bytes longer:
    /// too big for the MTU toward the client, it is dropped, with
    /// fragmentation-needed to the real server if DF is set) or the
    /// same-family rewrite. As [`Core::fnat_in_other`].
    #[inline(never)]
    fn fnat_out_other(
        &mut self,
        snap: &Snapshot,
        m: &mut I::Buf,
        meta: &mut IpMeta,
        orig: &conntrack::FlowKey,
    ) -> Result<bool, DropReason> {
        let (c, v) = (orig.src(), orig.dst());
        match (v, c) {
            (IpAddr::V6(v6), IpAddr::V6(c6)) if meta.family == IpFamily::V4 => {
                if meta.frag.is_some() {
                    return Err(DropReason::FragUnsupported);
                }
                let mtu = mtu_toward(snap, c);
                if meta.ip_len() + nat64::GROWTH > mtu {
                    let df = Ipv4Packet::new_unchecked(&m.data()[meta.l3_off..]).dont_frag();
                    if df {
                        self.send_frag_needed(snap, m, meta, (mtu - nat64::GROWTH) as u16);
                    }
                    return Err(DropReason::FragNeeded);
                }
                *meta = nat64::v4_to_v6(m, meta, v6, orig.dport(), c6, orig.sport())?;
                Ok(true)
            }
            _ => {
                let ip = &mut m.data_mut()[meta.l3_off..];
                let (vip, cip) = ((v, orig.dport()), (c, orig.sport()));
                nat::rewrite_fwd(ip, meta, Some(vip), Some(cip)).map(|()| false)
            }
        }
    }

    /// [`Core::output`] for a packet of connection `id` in direction `dir`:
    /// the next hop (port, MAC) that direction resolved last is reused while
    /// routes and neighbours are unchanged (`hops_epoch`), so established
    /// packets skip the route and neighbour lookups. Otherwise the route
    /// toward the far end: the real server for requests (RIP; also TUN's
    /// outer destination), the client for replies.
    #[inline(always)]
    fn output_conn(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        connected_only: bool,
        id: ConnId,
        dir: Direction,
        f: &Flow,
    ) {
        if let Some((port, mac)) = f.hop(dir, self.hops_epoch) {
            return self.send_to(snap, m, port, mac);
        }
        self.output_conn_resolve(snap, m, connected_only, id, dir, f.dest)
    }

    /// [`Core::output_conn`] for a direction with no next hop under this
    /// epoch (a connection's first packet that way): resolved (for a
    /// request, shared with the other connections to its real server,
    /// `dest_hops`) and noted on the connection. Out of line: established
    /// packets never come here.
    #[inline(never)]
    fn output_conn_resolve(
        &mut self,
        snap: &Snapshot,
        m: I::Buf,
        connected_only: bool,
        id: ConnId,
        dir: Direction,
        dest: u32,
    ) {
        let d = dir as usize;
        let epoch = self.hops_epoch;
        let dst = match dir {
            Direction::Original => self.conns.key(id, Direction::Reply).src(),
            Direction::Reply => self.conns.key(id, Direction::Original).src(),
        };
        // Requests: the real server's hop, if another connection to it
        // resolved it under this epoch.
        let slot = dest as usize % DEST_HOPS;
        let shared = match dir {
            Direction::Original => self.dest_hops[slot].get(dest, dst, epoch, connected_only),
            Direction::Reply => None,
        };
        let packed = match shared {
            Some(w) => w,
            None => {
                let Some(hop) = snap.routes.lookup(dst) else {
                    return self.count_drop(DropReason::NoRoute);
                };
                let connected = hop.gateway == dst;
                if connected_only && !connected {
                    return self.count_drop(DropReason::NoRoute);
                }
                // The neighbour table is unchanged within the epoch: the
                // gateway's MAC as the last resolution found it.
                let gw =
                    self.dest_hops[GATEWAY_HOP].get(hop.port as u32, hop.gateway, epoch, false);
                let w = match gw {
                    Some(w) => w,
                    None => {
                        let Some(mac) =
                            self.neigh.lookup(&self.shared.neigh, hop.port, hop.gateway)
                        else {
                            return self.output_via(snap, m, hop);
                        };
                        let w = pack_hop(hop.port, mac);
                        self.dest_hops[GATEWAY_HOP] = DestHop {
                            dest: hop.port as u32,
                            epoch,
                            hop: w,
                            rip: hop.gateway,
                            connected: true,
                        };
                        w
                    }
                };
                if dir == Direction::Original {
                    self.dest_hops[slot] = DestHop {
                        dest,
                        epoch,
                        hop: w,
                        rip: dst,
                        connected,
                    };
                }
                w
            }
        };
        if let Some(c) = self.conns.get_mut(id) {
            if c.hops_epoch != epoch {
                // Both directions were resolved under an older epoch.
                c.hops = [0; 2];
                c.hops_epoch = epoch;
            }
            c.hops[d] = packed;
        }
        let Some((port, mac)) = unpack_hop(packed) else {
            return self.count_drop(DropReason::NoRoute);
        };
        self.send_to(snap, m, port, mac)
    }

    /// TUN: IPIP from the DIP toward the RS to the RIP around the untouched
    /// packet; for an IPv6 real server IPv6-in-IPv6 (RFC 2473) from the DIP6.
    /// Too big for the egress MTU with the 20 / 40 extra bytes: with DF set
    /// (always, for IPv6) the client gets ICMP fragmentation-needed / ICMPv6
    /// packet-too-big with the MTU that fits; either way the packet is dropped
    /// (`frag_needed`; no fragmentation here).
    ///
    /// The common packet in one pass ([`ipip::encap_ipip_v4`]): IPv4 to an
    /// IPv4 real server whose DIP the connection noted, within the MTU;
    /// anything else through [`Core::xmit_tun_other`].
    #[inline(never)]
    fn xmit_tun(&mut self, snap: &Snapshot, mut m: I::Buf, meta: &IpMeta, id: ConnId, f: &Flow) {
        let len = m.len();
        let mut done = false;
        if let Some(&(IpAddr::V4(dip), mtu)) = f
            .tun_route(self.hops_epoch)
            .and_then(|i| self.tun_dips.get(i))
        {
            if let Some((rip, _)) = self.conns.key(id, Direction::Reply).v4_octets() {
                done = ipip::encap_ipip_v4(&mut m, meta, dip.octets(), rip, mtu).is_some();
            }
        }
        if !done && !self.xmit_tun_other(snap, &mut m, meta, id, f) {
            return;
        }
        self.count_traffic(snap, f, Direction::Original, len - ETH_HLEN);
        self.output_conn(snap, m, false, id, Direction::Original, f);
    }

    /// [`Core::xmit_tun`] in general. `true`: encapsulated, for the caller
    /// to count and send; `false`: to be dropped (counted).
    #[inline(never)]
    fn xmit_tun_other(
        &mut self,
        snap: &Snapshot,
        m: &mut I::Buf,
        meta: &IpMeta,
        id: ConnId,
        f: &Flow,
    ) -> bool {
        let rip = self.conns.key(id, Direction::Reply).src();
        let Some((dip, mtu)) = self.tun_route(snap, id, f, rip) else {
            self.count_drop(DropReason::NoRoute);
            return false;
        };
        let (df, ident) = match meta.family {
            crate::wire::IpFamily::V4 => {
                let ip = crate::wire::Ipv4Packet::new_unchecked(&m.data()[meta.l3_off..]);
                (ip.dont_frag(), ip.ident())
            }
            // IPv6 routers never fragment: too big is always an error to the sender.
            crate::wire::IpFamily::V6 => (true, 0),
        };
        let overhead = match rip {
            IpAddr::V4(_) => ipip::OVERHEAD,
            IpAddr::V6(_) => ipip::OVERHEAD_V6,
        };
        if meta.ip_len() + overhead > mtu {
            if df {
                self.send_frag_needed(snap, m, meta, mtu.saturating_sub(overhead) as u16);
            }
            self.count_drop(DropReason::FragNeeded);
            return false;
        }
        let done = match (dip, rip) {
            (IpAddr::V4(d), IpAddr::V4(r)) => ipip::encap_ipip(m, meta, d, r, ident),
            (IpAddr::V6(d), IpAddr::V6(r)) => ipip::encap_ip6(m, meta, d, r),
            _ => Err(DropReason::Unsupported),
        };
        if let Err(r) = done {
            self.count_drop(r);
            return false;
        }
        true
    }

    /// TUN: the DIP (source of the outer header) and the egress MTU toward
    /// real server `rip` of connection `id`. Worked out once per real server
    /// (a route lookup and a scan of the local addresses) and kept while
    /// routes, addresses and neighbours are unchanged (`hops_epoch`); the
    /// connection notes where, so its later packets skip the hash lookup.
    fn tun_route(
        &mut self,
        snap: &Snapshot,
        id: ConnId,
        f: &Flow,
        rip: IpAddr,
    ) -> Option<(IpAddr, usize)> {
        if let Some(i) = f.tun_route(self.hops_epoch) {
            if let Some(&v) = self.tun_dips.get(i) {
                return Some(v);
            }
        }
        if self.tun_routes_epoch != self.hops_epoch {
            self.tun_routes.clear();
            self.tun_dips.clear();
            self.tun_routes_epoch = self.hops_epoch;
        }
        let i = match self.tun_routes.get(&rip) {
            Some(&i) => i as usize,
            None => {
                if self.tun_dips.len() >= TUN_ROUTES_MAX {
                    // Start over; no connection may keep an index into the
                    // old entries, so every cached hop goes with them.
                    self.new_hops_epoch();
                    self.tun_routes.clear();
                    self.tun_dips.clear();
                    self.tun_routes_epoch = self.hops_epoch;
                }
                let hop = snap.routes.lookup(rip)?;
                let dip = crate::core::dip_via(snap, hop, rip)?;
                let mtu = snap
                    .ports
                    .get(hop.port)
                    .map_or(1500, |p| usize::from(p.mtu));
                self.tun_dips.push((dip, mtu));
                self.tun_routes
                    .insert(rip, (self.tun_dips.len() - 1) as u32);
                self.tun_dips.len() - 1
            }
        };
        let epoch = self.hops_epoch;
        if let Some(c) = self.conns.get_mut(id) {
            if c.hops_epoch != epoch {
                c.hops = [0; 2];
                c.hops_epoch = epoch;
            }
            c.hops[Direction::Reply as usize] = TUN_ROUTE | i as u64;
        }
        self.tun_dips.get(i).copied()
    }

    /// ICMP fragmentation-needed (IPv4) or ICMPv6 packet-too-big (IPv6) from
    /// the packet's destination (the VIP) back to its source, announcing `mtu`.
    fn send_frag_needed(&mut self, snap: &Snapshot, m: &I::Buf, meta: &IpMeta, mtu: u16) {
        let Some(orig) = m.data().get(meta.l3_off..meta.l3_end()) else {
            return;
        };
        let mut frame = [0u8; 14 + icmpv6::MAX_ERROR_LEN];
        let n = match (meta.dst, meta.src) {
            (IpAddr::V4(vip), IpAddr::V4(_)) => icmp::build_frag_needed(&mut frame, orig, vip, mtu),
            (IpAddr::V6(vip), IpAddr::V6(_)) => {
                icmpv6::build_packet_too_big(&mut frame, orig, vip, u32::from(mtu))
            }
            _ => 0,
        };
        if n == 0 {
            return;
        }
        let Some(mut out) = self.io.alloc() else {
            return;
        };
        if out.write_from(&frame[..n]) {
            self.output(snap, out, meta.src, false);
        }
    }

    /// `--stats` traffic, gathered per burst and dest (`flush_traffic`).
    #[inline(always)]
    fn count_traffic(&mut self, snap: &Snapshot, f: &Flow, dir: Direction, bytes: usize) {
        let inbound = dir == Direction::Original;
        if !self.traffic.add(f.dest, f.service, inbound, bytes) {
            self.flush_traffic(snap);
            self.traffic.add(f.dest, f.service, inbound, bytes);
        }
    }

    /// Add the burst's traffic to the shared counters: one hash lookup per
    /// dest; the dest entry carries its service's counters, and a conn whose
    /// dest was removed still counts on its service.
    pub(crate) fn flush_traffic(&mut self, snap: &Snapshot) {
        let w = self.index;
        for e in self.traffic.drain() {
            if let Some(d) = snap.dests.get(&e.dest) {
                d.traffic.add(w, &e);
                d.service_traffic.add(w, &e);
            } else if let Some(s) = snap.services_by_id.get(&e.service) {
                s.traffic.add(w, &e);
            }
        }
    }

    /// FULLNAT client -> RS TCP extras before the rewrite. SYN: MSS clamp for
    /// TOA, or the connection marked for Proxy Protocol if its service has it.
    /// Then either the Proxy Protocol header and sequence shift (`fnat`), or
    /// TOA in the segment carrying the client's first data sequence number
    /// (the handshake's ACK, its retransmissions, or the first data); never
    /// both, as DPVS. `Err`: drop the segment with that reason.
    /// `reply`: the connection's reply key (the original one is read where
    /// needed).
    fn fnat_tcp_in(
        &mut self,
        snap: &Snapshot,
        m: &mut I::Buf,
        meta: &mut IpMeta,
        f: &Flow,
        id: ConnId,
        reply: &conntrack::FlowKey,
    ) -> Result<(), DropReason> {
        let pp_len = f.seq.pp_len();
        if meta.tcp_flags & tcp_flag::SYN != 0 {
            // Every SYN (re)starts the client's sequence space, as DPVS's
            // tcp_in_init_seq: a retransmission changes nothing, a new
            // connection reusing a tracked tuple must not keep a stale shift.
            let isn = m
                .data()
                .get(meta.l4_off..meta.l3_end())
                .and_then(|seg| TcpPacket::new_checked(seg).ok())
                .map(|t| t.seq_number());
            let orig = self.conns.key(id, Direction::Original);
            let mut seq = f.seq;
            if let (Some(isn), 0) = (isn, meta.tcp_flags & tcp_flag::ACK) {
                let pp = snap
                    .services_by_id
                    .get(&f.service)
                    .and_then(|s| s.proxy_protocol);
                seq = SeqState::on_client_syn_with(isn, pp, || orig.to_tuple());
                if seq != f.seq {
                    self.set_seq(id, seq);
                }
            }
            // With Proxy Protocol RS -> client segments do not grow: no clamp.
            if seq.pp_len() == 0 {
                self.clamp_mss(m, meta, toa_len(orig.src()));
            }
            return Ok(());
        }
        if pp_len != 0 {
            let mut seq = f.seq;
            let orig = self.conns.key(id, Direction::Original);
            // The route toward the RS is looked up only when the header goes in.
            return match fnat::pp_in(m, meta, &mut seq, &orig.to_tuple(), || {
                fnat_mtu(snap, f, self.hops_epoch, reply.src())
            }) {
                Ok(fnat::InOutcome::Inserted { first }) => {
                    if first {
                        self.shared.events[self.index].bump(Event::ProxyProtocolSent);
                        self.set_seq(id, seq);
                    }
                    Ok(())
                }
                Ok(fnat::InOutcome::FragmentShifted) => {
                    self.shared.events[self.index].bump(Event::FragNotExtended);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(DropReason::FragNeeded) => {
                    // The client resends smaller after ICMP (IPv4, DF set).
                    let df = meta.family == crate::wire::IpFamily::V4
                        && crate::wire::Ipv4Packet::new_unchecked(&m.data()[meta.l3_off..])
                            .dont_frag();
                    if df {
                        let room = fnat_mtu(snap, f, self.hops_epoch, reply.src())
                            .saturating_sub(pp_len)
                            .clamp(68, usize::from(u16::MAX));
                        self.send_frag_needed(snap, m, meta, room as u16);
                    }
                    Err(DropReason::FragNeeded)
                }
                Err(e) => Err(e),
            };
        }
        let Some(first) = f.seq.first_seq() else {
            return Ok(());
        };
        if meta.tcp_flags & tcp_flag::RST != 0 {
            return Ok(());
        }
        // The sequence number read in place (a whole TCP header, as
        // `TcpPacket::new_checked` checks).
        let seq = match m.data().get(meta.l4_off..meta.l3_end()) {
            Some(seg) if TcpPacket::new_checked(seg).is_ok() => match seg.get(4..8) {
                Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        if seq != first {
            return Ok(());
        }
        if meta.frag.is_some() {
            // A fragment never grows (the handshake's ACK normally took TOA).
            self.shared.events[self.index].bump(Event::FragNotExtended);
            return Ok(());
        }
        let mtu = fnat_mtu(snap, f, self.hops_epoch, reply.src());
        let orig = self.conns.key(id, Direction::Original);
        let ev = match toa::insert(m, meta, orig.src(), orig.sport(), mtu) {
            toa::Outcome::Inserted(_) => Event::ToaInserted,
            toa::Outcome::NoRoom => Event::ToaNoRoom,
        };
        self.shared.events[self.index].bump(ev);
        Ok(())
    }

    /// FULLNAT RS -> client TCP extras before the rewrite: MSS clamp in the
    /// SYN-ACK (by the TOA or Proxy Protocol header length), and with Proxy
    /// Protocol the acknowledgement / SACK shift.
    /// `orig`: the connection's original key.
    fn fnat_tcp_out(
        &mut self,
        m: &mut I::Buf,
        meta: &IpMeta,
        f: &Flow,
        id: ConnId,
        orig: &conntrack::FlowKey,
    ) {
        let pp_len = f.seq.pp_len();
        if meta.tcp_flags & tcp_flag::SYN != 0 {
            let by = if pp_len != 0 {
                pp_len
            } else {
                toa_len(orig.src())
            };
            self.clamp_mss(m, meta, by);
        }
        if pp_len == 0 {
            return;
        }
        let mut seq = f.seq;
        if let Some(seg) = m.data_mut().get_mut(meta.l4_off..meta.l3_end()) {
            fnat::pp_out(seg, &mut seq);
        }
        if seq != f.seq {
            self.set_seq(id, seq);
        }
    }

    /// Keep a FULLNAT connection's new sequence state.
    fn set_seq(&mut self, id: ConnId, seq: SeqState) {
        if let Some(c) = self.conns.get_mut(id) {
            c.user = seq.user();
        }
    }

    /// Lowers the MSS of a FULLNAT SYN / SYN-ACK by `by` bytes.
    fn clamp_mss(&mut self, m: &mut I::Buf, meta: &IpMeta, by: usize) {
        let (a, b) = (meta.l4_off, meta.l3_end());
        let Some(seg) = m.data_mut().get_mut(a..b) else {
            return;
        };
        if toa::clamp_mss(seg, by as u16) {
            self.shared.events[self.index].bump(Event::MssClamped);
        }
    }

    /// Route `m` (an Ethernet frame) toward `dst` and send it, or park it
    /// until the next hop's MAC is known. `connected_only`: the destination
    /// must be on a directly connected network (DR).
    pub(crate) fn output(&mut self, snap: &Snapshot, m: I::Buf, dst: IpAddr, connected_only: bool) {
        let Some(hop) = snap.routes.lookup(dst) else {
            return self.count_drop(DropReason::NoRoute);
        };
        if connected_only && hop.gateway != dst {
            return self.count_drop(DropReason::NoRoute);
        }
        self.output_via(snap, m, hop);
    }

    /// [`Worker::output`] when the route is already known.
    pub(crate) fn output_via(&mut self, snap: &Snapshot, m: I::Buf, hop: NextHop) {
        match self.neigh.lookup(&self.shared.neigh, hop.port, hop.gateway) {
            Some(mac) => self.send_to(snap, m, hop.port, mac),
            None => {
                let p = Pending {
                    mbuf: m,
                    port: hop.port,
                    gateway: hop.gateway,
                    since_ms: self.now_ms,
                };
                if self.pending.push(p).is_err() {
                    self.count_drop(DropReason::NeighQueueFull);
                }
                if self.pending.should_request(hop.gateway, self.now_ms) {
                    self.send_arp_request(snap, hop.port, hop.gateway);
                }
            }
        }
    }

    /// Address the frame from our port to `mac` and queue it for tx.
    #[inline(always)]
    pub(crate) fn send_to(&mut self, snap: &Snapshot, mut m: I::Buf, port: usize, mac: [u8; 6]) {
        let p = &snap.ports[port];
        if m.len() > usize::from(p.mtu) + ETH_HLEN {
            // It came in on a port with a larger MTU; no fragmenting here.
            return self.count_drop(DropReason::OverMtu);
        }
        let our = p.mac;
        // Every frame here has its Ethernet header (classified, or built).
        if let Some(h) = m.data_mut().first_chunk_mut::<12>() {
            h[..6].copy_from_slice(&mac);
            h[6..].copy_from_slice(&our);
        }
        self.io.send(port, m);
    }

    /// Send parked packets whose neighbour answered; drop the ones that waited too long.
    pub fn flush_pending(&mut self, snap: &Snapshot) {
        let (table, view) = (&self.shared.neigh, &mut self.neigh);
        let (ready, expired) = self
            .pending
            .drain(self.now_ms, |port, ip| view.lookup(table, port, ip));
        for (p, mac) in ready {
            self.send_to(snap, p.mbuf, p.port, mac);
        }
        for _ in expired {
            self.count_drop(DropReason::NeighUnresolved);
        }
    }
}
