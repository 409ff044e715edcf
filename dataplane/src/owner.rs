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
//! | to a service (VIP:vport) with NAT real servers | the client: CIP:cport, or the client's persistence net |
//! | to a service without NAT real servers (FULLNAT, DR, TUN) | its own flow: the queue the port's RSS gives it where that is known, else the client as above |
//! | a NAT reply, RIP:rport -> CIP:cport (not to an address of ours) | the client, keyed as its service keys it |
//! | a FULLNAT reply, RIP:rport -> LIP:lport (to an address of ours) | the local port: the worker that handed it out |
//!
//! The local port's owner is what the allocating worker chose it for: on a
//! port with software-visible RSS (the NIC's Toeplitz key and redirection
//! table are known) the worker whose queue RSS delivers the reply to, so the
//! reply needs no hand-over at all; elsewhere `lport % nworkers`
//! ([`crate::laddr::owner`]). A request of a service without NAT real servers
//! is owned, on such a port, by the worker whose queue RSS delivers it to, so
//! with RSS FULLNAT, DR and TUN need no hand-over in either direction. NAT
//! cannot: its reply does not carry the VIP, so both directions key on the
//! client endpoint, which RSS does not hash alone.
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

use std::net::IpAddr;
use std::sync::Arc;

use conntrack::Tuple;

use crate::laddr::Filter;
use crate::rss::RssSteer;
use crate::snapshot::Snapshot;

/// How a service's connections are keyed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerKey {
    /// The request's own flow: the queue the ingress port's RSS gives it
    /// where known, else as `ClientPort` (services without NAT real servers
    /// nor persistence: nothing but the request direction needs the key).
    Flow,
    /// The client address and port (spreads one client's connections).
    ClientPort,
    /// The client address masked to this prefix length (persistence).
    ClientNet(u8),
}

/// How packets reach the worker owning their connection on one port.
#[derive(Clone)]
pub enum PortSteer {
    /// Nothing steers: local ports are partitioned, `lport % nworkers`, and
    /// the hand-over brings each packet to its owner.
    Handover,
    /// The port's RSS is known (read from the NIC, or given for ports fed by
    /// a software distributor; queue i is worker i's): a worker picks local
    /// ports whose reply tuple RSS delivers to its own queue, and requests
    /// keyed by their flow are owned by the queue RSS gives them.
    Rss(Arc<RssSteer>),
    /// rte_flow rules send each worker's slice of local ports (the hand-over's
    /// partition) to its queue (`crate::flowrules`); requests as `Handover`.
    Flow,
}

impl PortSteer {
    pub fn name(&self) -> &'static str {
        match self {
            PortSteer::Handover => "hand-over",
            PortSteer::Rss(_) => "rss-precalc",
            PortSteer::Flow => "rte-flow",
        }
    }
}

/// The owner function of a running dataplane: fixed at start (worker count,
/// each port's steering); the per-service keys come from the snapshot.
pub struct Owners {
    pub nworkers: usize,
    /// By port index.
    pub ports: Vec<PortSteer>,
}

impl Owners {
    pub fn new(nworkers: usize, ports: Vec<PortSteer>) -> Owners {
        Owners {
            nworkers: nworkers.max(1),
            ports,
        }
    }

    /// The worker of a client endpoint under `key` (`Flow` as `ClientPort`).
    #[inline]
    pub fn of_client(&self, key: OwnerKey, addr: IpAddr, port: u16) -> usize {
        let h = match key {
            OwnerKey::Flow | OwnerKey::ClientPort => mix(addr, port),
            OwnerKey::ClientNet(len) => mix(crate::route::mask(addr, len), 0),
        };
        reduce(h, self.nworkers)
    }

    /// The owner of a request `t` (CIP:cport -> VIP:vport) to a service keyed
    /// by `key`, arriving on port index `port`.
    #[inline]
    pub fn of_request(&self, port: usize, key: OwnerKey, t: &Tuple) -> usize {
        if key == OwnerKey::Flow {
            if let Some(PortSteer::Rss(rss)) = self.ports.get(port) {
                if let Some(q) = rss.reply_queue(t.src, t.sport, t.dst, t.dport) {
                    return usize::from(q) % self.nworkers;
                }
            }
        }
        self.of_client(key, t.src, t.sport)
    }

    /// The worker that handed out the local port of a FULLNAT reply
    /// `t` (RIP:rport -> LIP:lport) arriving on port index `port`.
    #[inline]
    pub fn of_lport(&self, port: usize, t: &Tuple) -> usize {
        if let Some(PortSteer::Rss(rss)) = self.ports.get(port) {
            if let Some(q) = rss.reply_queue(t.src, t.sport, t.dst, t.dport) {
                return usize::from(q) % self.nworkers;
            }
        }
        crate::laddr::owner(t.dport, self.nworkers)
    }

    /// Which local ports of `lip` worker `w` may hand out for a connection to
    /// `rip:rport` whose replies arrive on port index `port`: the inverse of
    /// [`Owners::of_lport`].
    #[inline]
    /// Whether local ports on port index `port` are picked by its RSS (each
    /// worker's pool then holds every port of the range) rather than by the
    /// partition.
    pub fn lports_by_rss(&self, port: usize) -> bool {
        matches!(self.ports.get(port), Some(PortSteer::Rss(_)))
    }

    pub fn lport_filter(
        &self,
        w: usize,
        port: usize,
        rip: IpAddr,
        rport: u16,
        lip: IpAddr,
    ) -> Filter<'_> {
        if let Some(PortSteer::Rss(steer)) = self.ports.get(port) {
            if let Some(base) = steer.reply_base(rip, rport, lip) {
                return Filter::Rss {
                    steer,
                    base,
                    queue: w as u16,
                };
            }
        }
        Filter::Partition
    }

    /// The owner of the connection a TCP/UDP packet with tuple `t`, arriving on
    /// port index `port`, belongs to (or would open).
    pub fn of_tuple(&self, snap: &Snapshot, port: usize, t: &Tuple) -> usize {
        if self.nworkers == 1 {
            return 0;
        }
        if let Some(svc) = snap.service(t.proto, t.dst, t.dport) {
            return self.of_request(port, svc.owner_key, t);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use crate::laddr::LocalPorts;
    use crate::rss::{vectors, Reta, Toeplitz};
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(vport: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: ip("10.0.0.100"),
            vport,
        }
    }

    fn dest(addr: &str, port: u16, mode: ForwardMode) -> DestSpec {
        DestSpec {
            addr: ip(addr),
            port,
            weight: 1,
            mode,
            u_threshold: 0,
            l_threshold: 0,
            inhibited: false,
        }
    }

    fn service(vport: u16, persistence: Option<u8>, dests: Vec<DestSpec>) -> ServiceSpec {
        ServiceSpec {
            key: key(vport),
            scheduler: "rr".into(),
            sched_flags: vec![],
            persistence: persistence.map(|m| Persistence {
                timeout_s: 300,
                netmask_len: m,
            }),
            conn_timeout_s: None,
            ops: false,
            dests,
        }
    }

    /// :80 NAT; :443 NAT persistent /24 sharing rs1:8443 with :8443 (not
    /// persistent itself); :90 FULLNAT through a LIP.
    fn snapshot() -> Snapshot {
        let nat = ForwardMode::Nat;
        let desc = ConfigDesc {
            services: vec![
                service(80, None, vec![dest("192.168.0.11", 8080, nat)]),
                service(443, Some(24), vec![dest("192.168.0.11", 8443, nat)]),
                service(
                    8443,
                    None,
                    vec![
                        dest("192.168.0.11", 8443, nat),
                        dest("192.168.0.12", 8443, nat),
                    ],
                ),
                service(
                    90,
                    None,
                    vec![dest("192.168.0.12", 9090, ForwardMode::FullNat)],
                ),
            ],
            addrs: vec![
                AddrSpec {
                    port: "dpdk0".into(),
                    addr: ip("10.0.0.1"),
                    prefix_len: 24,
                },
                AddrSpec {
                    port: "dpdk1".into(),
                    addr: ip("192.168.0.1"),
                    prefix_len: 24,
                },
            ],
            routes: vec![],
        };
        let ext = ExtDesc {
            laddrs: vec![LocalAddrSpec {
                service: key(90),
                addr: ip("192.168.0.200"),
                port: "dpdk1".into(),
            }],
            ..Default::default()
        };
        crate::snapshot::compile_for_test(&desc, &ext)
    }

    #[test]
    fn services_sharing_a_nat_server_with_a_persistent_one_key_by_its_net() {
        let snap = snapshot();
        let k = |vport| snap.service(6, ip("10.0.0.100"), vport).unwrap().owner_key;
        assert_eq!(k(80), OwnerKey::ClientPort);
        assert_eq!(k(443), OwnerKey::ClientNet(24));
        assert_eq!(
            k(8443),
            OwnerKey::ClientNet(24),
            "shares rs1:8443 with :443"
        );
        assert_eq!(k(90), OwnerKey::Flow, "FULLNAT only: keyed by its flow");
        assert_eq!(
            snap.nat_owner_keys.get(&(6, ip("192.168.0.12"), 8443)),
            Some(&OwnerKey::ClientNet(24))
        );
        assert_eq!(
            snap.nat_owner_keys.get(&(6, ip("192.168.0.11"), 8080)),
            None
        );
    }

    fn tuple(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple {
            proto: 6,
            src,
            sport,
            dst,
            dport,
        }
    }

    proptest! {
        /// Whoever receives either direction computes the same owner; the
        /// FULLNAT owner hands out a local port whose reply comes back to it,
        /// by partition or by RSS; a persistent client net has one owner.
        #[test]
        fn both_directions_of_every_connection_have_one_owner(
            n in 1usize..9,
            rss in any::<bool>(),
            reta_seed in any::<u64>(),
            clients in prop::collection::vec((any::<u32>(), 1024u16..65535), 1..40),
        ) {
            let snap = snapshot();
            let steer = if rss {
                let mut x = reta_seed | 1;
                let table: Vec<u16> = (0..128)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % n as u64) as u16
                    })
                    .collect();
                PortSteer::Rss(Arc::new(RssSteer::new(
                    Toeplitz::new(&vectors::KEY).unwrap(),
                    Reta::new(table).unwrap(),
                )))
            } else {
                PortSteer::Handover
            };
            let owners = Owners::new(n, vec![steer.clone(), steer]);
            let vip = ip("10.0.0.100");
            let mut lports: Vec<LocalPorts> = (0..n).map(|w| LocalPorts::new(w, n)).collect();
            for (a, cport) in clients {
                let cip = IpAddr::V4(a.into());
                // NAT: request on the client port (0), reply on the server port (1).
                for (vport, rip, rport) in [
                    (80, "192.168.0.11", 8080),
                    (443, "192.168.0.11", 8443),
                    (8443, "192.168.0.12", 8443),
                ] {
                    let w = owners.of_tuple(&snap, 0, &tuple(cip, cport, vip, vport));
                    prop_assert!(w < n);
                    let r = owners.of_tuple(&snap, 1, &tuple(ip(rip), rport, cip, cport));
                    prop_assert_eq!(w, r, "NAT :{} reply owner", vport);
                }
                // Persistence: every port of the client's /24 has one owner.
                let other = IpAddr::V4((a ^ 0xff).into());
                prop_assert_eq!(
                    owners.of_tuple(&snap, 0, &tuple(cip, cport, vip, 443)),
                    owners.of_tuple(&snap, 0, &tuple(other, cport ^ 0x5555, vip, 443))
                );
                // FULLNAT: keyed by the request's flow (its RSS queue where
                // the port's RSS is known); the owner's local port brings the
                // reply back to it.
                let w = owners.of_tuple(&snap, 0, &tuple(cip, cport, vip, 90));
                if let PortSteer::Rss(rss) = &owners.ports[0] {
                    let q = rss.reply_queue(cip, cport, vip, 90).unwrap();
                    prop_assert_eq!(w, usize::from(q) % n, "the queue RSS gives the request");
                }
                let (rip, lip) = (ip("192.168.0.12"), ip("192.168.0.200"));
                let got = lports[w].alloc(&[lip], (1024, 65535), |l| {
                    owners.lport_filter(w, 1, rip, 9090, l)
                });
                let (_, lport) = got.expect("a local port");
                prop_assert_eq!(owners.of_tuple(&snap, 1, &tuple(rip, 9090, lip, lport)), w);
            }
        }
    }
}
