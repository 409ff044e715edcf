//! Which worker owns a connection: the owner function.
//!
//! A connection belongs to one worker, which keeps it in its own table and
//! handles every packet of it in both directions. A packet that misses the
//! receiving worker's table is either new, or belongs to another worker; the
//! owner function tells which, from the packet alone, and gives the same
//! answer for both directions of a connection:
//!
//! | packet | owner by |
//! |---|---|
//! | to a service (VIP:vport), any mode | the client: CIP:cport, or the client's persistence net |
//! | a NAT reply, RIP:rport -> CIP:cport (not to an address of ours) | the client, keyed as its service keys it |
//! | a FULLNAT reply, RIP:rport -> LIP:lport (to an address of ours) | the local port: the worker that handed it out |
//!
//! The local port's owner is what the allocating worker chose it for: on a
//! port with software-visible RSS (the NIC's Toeplitz key and redirection
//! table are known) the worker whose queue RSS delivers the reply to, so the
//! reply needs no hand-over at all; elsewhere `lport % nworkers`
//! ([`crate::laddr::owner`]).
//!
//! Persistence: every connection of a persistent service's client net is owned
//! by one worker (keyed by the masked client address), so that worker's
//! template table alone decides where the client goes. A NAT reply carries no
//! service, so the compiler gives every service that shares a NAT real server
//! (proto, RIP, rport) with a persistent one the same key (the coarsest mask
//! of the group), and a reply looks its key up by its source.
//!
//! Nothing here touches packets, tables or another worker: it is arithmetic
//! over the configuration snapshot.

use conntrack::Tuple;
use std::net::IpAddr;

use crate::snapshot::Snapshot;

/// How a service's connections are keyed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerKey {
    /// The client address and port (spreads one client's connections).
    ClientPort,
    /// The client address masked to this prefix length (persistence).
    ClientNet(u8),
}

/// How replies to FULLNAT local ports reach their worker on one port.
#[derive(Clone)]
pub enum LportSteer {
    /// Nothing steers: the port's local ports are partitioned,
    /// `lport % nworkers`, and the hand-over brings each reply to its owner.
    Partition,
}

impl LportSteer {
    pub fn name(&self) -> &'static str {
        match self {
            LportSteer::Partition => "hand-over",
        }
    }
}

/// The owner function of a running dataplane: fixed at start (worker count,
/// each port's steering); the per-service keys come from the snapshot.
pub struct Owners {
    pub nworkers: usize,
    /// By port index.
    pub ports: Vec<LportSteer>,
}

impl Owners {
    pub fn new(nworkers: usize, ports: Vec<LportSteer>) -> Owners {
        Owners {
            nworkers: nworkers.max(1),
            ports,
        }
    }

    /// The worker of a client endpoint under `key`.
    #[inline]
    pub fn of_client(&self, key: OwnerKey, addr: IpAddr, port: u16) -> usize {
        let h = match key {
            OwnerKey::ClientPort => mix(addr, port),
            OwnerKey::ClientNet(len) => mix(crate::route::mask(addr, len), 0),
        };
        reduce(h, self.nworkers)
    }

    /// The worker that handed out the local port of a FULLNAT reply
    /// `t` (RIP:rport -> LIP:lport) arriving on port index `port`.
    #[inline]
    pub fn of_lport(&self, port: usize, t: &Tuple) -> usize {
        let _ = port;
        crate::laddr::owner(t.dport, self.nworkers)
    }

    /// Whether worker `w` may hand out local port `lport` of `lip` for a
    /// connection to `rip:rport` whose replies arrive on port index `port`.
    #[inline]
    pub fn lport_is_for(
        &self,
        w: usize,
        port: usize,
        rip: IpAddr,
        rport: u16,
        lip: IpAddr,
        lport: u16,
    ) -> bool {
        let t = Tuple {
            proto: 0,
            src: rip,
            sport: rport,
            dst: lip,
            dport: lport,
        };
        self.of_lport(port, &t) == w
    }

    /// The owner of the connection a TCP/UDP packet with tuple `t`, arriving on
    /// port index `port`, belongs to (or would open).
    pub fn of_tuple(&self, snap: &Snapshot, port: usize, t: &Tuple) -> usize {
        if self.nworkers == 1 {
            return 0;
        }
        if let Some(svc) = snap.service(t.proto, t.dst, t.dport) {
            return self.of_client(svc.owner_key, t.src, t.sport);
        }
        if snap.is_local(t.dst) {
            return self.of_lport(port, t);
        }
        let key = snap
            .nat_owner_keys
            .get(&(t.proto, t.src, t.sport))
            .copied()
            .unwrap_or(OwnerKey::ClientPort);
        self.of_client(key, t.dst, t.dport)
    }
}

/// A fixed 64-bit mix of an endpoint (splitmix64's finaliser): the same in
/// every worker and every process.
#[inline]
fn mix(addr: IpAddr, port: u16) -> u64 {
    let a = match addr {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
        }
    };
    let mut h = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(port);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `h` onto `0..n` (multiply-shift: no division).
#[inline]
fn reduce(h: u64, n: usize) -> usize {
    (((h >> 32) * n as u64) >> 32) as usize
}
