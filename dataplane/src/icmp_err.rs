//! ICMP errors about tracked connections (what `ip_vs_out_icmp`,
//! `ip_vs_in_icmp` and `ip_vs_nat_icmp` do in IPVS, and DPVS's FULLNAT variant):
//! an unreachable, time exceeded, parameter problem or fragmentation needed /
//! packet too big that quotes a packet the director forwarded is translated,
//! quoted packet included, and sent on to the other side of the connection.
//!
//! The quoted packet is one the director sent, so its reversed tuple is a
//! tuple the connection table knows:
//! - found as the reply tuple: the quote went to the real server (NAT: CIP ->
//!   RIP, FULLNAT: LIP -> RIP) and the error came from the server side; it goes
//!   to the client as the client's own packet to the VIP would have been quoted.
//! - found as the original tuple: the quote was a reply to the client (VIP ->
//!   CIP) and the error came from the client side; it goes to the real server
//!   as its own reply would have been quoted.
//!
//! The error must be addressed to the quoted packet's sender (RFC 792/4443), or
//! it is `bad_icmp_inner`. Errors matching no connection are `icmp_no_conn`.
//! For DR and TUN only the client side's errors make sense (the RS sent the
//! quoted reply itself, from the VIP): they go to the RS unchanged, by the
//! connection's method, as IPVS does.
//! The connection's state and timer are not touched, and the MTU of a
//! fragmentation-needed / packet-too-big is passed on unchanged (see
//! docs/architecture.md, "ICMP errors").

use std::net::IpAddr;

use conntrack::{ConnId, Direction, Tuple};

use crate::config::ForwardMode;
use crate::core::Core;
use crate::core::{mode_from_flags, Rx};
use crate::io::Io;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::icmp_err::{self, Translation};
use crate::wire::{ip_proto, nat, IpMeta, PacketBuf};

impl<I: Io> Core<I> {
    /// An ICMP/ICMPv6 error (`icmp_err::is_error`).
    /// The connection is looked up by the quoted packet, reversed; a miss whose
    /// owner is another worker is handed to it.
    pub(crate) fn handle_icmp_error(
        &mut self,
        snap: &Snapshot,
        mut m: I::Buf,
        at: Rx,
        meta: IpMeta,
    ) {
        let e = match icmp_err::parse(m.data(), &meta) {
            Ok(e) => e,
            Err(r) => return self.count_drop(r),
        };
        if e.src != meta.dst {
            return self.count_drop(DropReason::BadIcmpInner);
        }
        if !matches!(e.proto, ip_proto::TCP | ip_proto::UDP) {
            return self.count_drop(DropReason::IcmpNoConn);
        }
        let reversed = Tuple {
            proto: e.proto,
            src: e.dst,
            sport: e.dport,
            dst: e.src,
            dport: e.sport,
        };
        let Some((id, dir)) = self.conns.lookup(&reversed) else {
            if let Err(m) = self.handed_to_owner(snap, m, at, &reversed) {
                // About a flow of the director's own (its kernel's)?
                self.up_or_drop(m, at.port(), DropReason::IcmpNoConn);
            }
            return;
        };
        let quoted_seq = e.quoted_seq(m.data());
        let (t, next) = match self.icmp_translation(id, dir, meta.src, quoted_seq) {
            Ok(Action::Translate(t, next)) => (t, next),
            // DR/TUN, as IPVS's `ip_vs_icmp_xmit`: the RS sent the quoted reply
            // from the VIP itself, so the error goes to it unchanged by the
            // connection's own method.
            Ok(Action::Forward(id)) => {
                let Some(f) = self.conns.get(id).map(crate::xmit::Flow::of) else {
                    return self.count_drop(DropReason::IcmpNoConn);
                };
                return self.xmit(snap, m, &meta, id, Direction::Original, &f);
            }
            Err(r) => return self.count_drop(r),
        };
        let end = meta.l3_end();
        let Some(frame) = m.data_mut().get_mut(..end) else {
            return self.count_drop(DropReason::Truncated);
        };
        if let Err(r) = icmp_err::translate(frame, &e, &t) {
            return self.count_drop(r);
        }
        if let Err(r) = nat::dec_ttl(&mut m.data_mut()[meta.l3_off..], &meta) {
            return self.count_drop(r);
        }
        self.shared.events[self.index].bump(crate::events::Event::IcmpTranslated);
        self.output(snap, m, next, false);
    }

    /// The rewrite of an error about connection `id` (the quote matched its
    /// `dir` tuple) and where it goes next.
    fn icmp_translation(
        &self,
        id: ConnId,
        dir: Direction,
        outer_src: IpAddr,
        quoted_seq: u32,
    ) -> Result<Action, DropReason> {
        let c = self.conns.get(id).ok_or(DropReason::IcmpNoConn)?;
        let (o, r) = (c.original(), c.reply());
        let from_rs = outer_src == r.src;
        let (t, next) = match (mode_from_flags(c.flags()), dir) {
            // Quote CIP:cport -> RIP:rport: to the client, as from the VIP when
            // the RS itself complains (a router keeps its own address).
            (ForwardMode::Nat, Direction::Reply) => (
                Translation {
                    outer_src: from_rs.then_some(o.dst),
                    inner_dst: Some((o.dst, o.dport)),
                    ..Default::default()
                },
                o.src,
            ),
            // Quote LIP:lport -> RIP:rport: the client never saw the LIP, so
            // both outer addresses change (as DPVS does).
            // With Proxy Protocol the quoted sequence number is shifted back.
            (ForwardMode::FullNat, Direction::Reply) => (
                Translation {
                    outer_src: Some(o.dst),
                    outer_dst: Some(o.src),
                    inner_src: Some((o.src, o.sport)),
                    inner_dst: Some((o.dst, o.dport)),
                    inner_seq_sub: crate::fnat::SeqState::from_user(c.user).seq_shift(quoted_seq),
                },
                o.src,
            ),
            // Quote VIP:vport -> CIP:cport (a reply): to the RS, addressed as
            // its own reply was.
            (ForwardMode::Nat, Direction::Original) => (
                Translation {
                    outer_dst: Some(r.src),
                    inner_src: Some((r.src, r.sport)),
                    ..Default::default()
                },
                r.src,
            ),
            // The RS knows only LIP:lport: the error comes from the LIP.
            (ForwardMode::FullNat, Direction::Original) => (
                Translation {
                    outer_src: Some(r.dst),
                    outer_dst: Some(r.src),
                    inner_src: Some((r.src, r.sport)),
                    inner_dst: Some((r.dst, r.dport)),
                    ..Default::default()
                },
                r.src,
            ),
            (ForwardMode::Dr | ForwardMode::Tun, Direction::Original) => {
                return Ok(Action::Forward(id))
            }
            // The director never sends a DR/TUN packet addressed to the RIP.
            (ForwardMode::Dr | ForwardMode::Tun, Direction::Reply) => {
                return Err(DropReason::Unsupported)
            }
        };
        Ok(Action::Translate(t, next))
    }
}

/// What becomes of an ICMP error of a connection.
enum Action {
    /// Rewrite as said and send toward the address.
    Translate(Translation, IpAddr),
    /// Forward unchanged by the connection's method (DR, TUN).
    Forward(ConnId),
}
