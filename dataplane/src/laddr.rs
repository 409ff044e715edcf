//! FULLNAT local addresses and ports (what DPVS's `sa_pool.c` does).
//!
//! Each worker owns a free list of local ports per local address (LIP): a new
//! connection pops one, an expired connection pushes it back; allocation
//! never probes the connection table. Which ports a worker may hand out
//! depends on how replies reach it on the LIP's port ([`Filter`]):
//!
//! - partitioned: `port % nworkers == worker`, so the worker owning a reply
//!   (RIP:rport -> LIP:lport) is computable from `lport` alone and the
//!   hand-over brings the reply to it. O(1).
//! - RSS pre-calculation: the NIC's Toeplitz hash of the reply tuple, through
//!   its redirection table, must land on the worker's own queue. Every worker
//!   keeps every port of the range (two workers may hold the same LIP:lport
//!   toward different real servers: the reply tuples differ, and each lands
//!   on its holder's queue); a pick walks the free list until a port fits,
//!   about `nworkers` tries with an even table.
//!
//! Lists are FIFO, so a released port is reused as late as possible (the
//! real server may still hold it in TIME_WAIT).
//!
//! Nothing here touches packets or the configuration snapshot.

use std::collections::VecDeque;

use crate::snapshot::ConfigMap;
use std::net::IpAddr;

use crate::rss::{ReplyBase, RssSteer};

/// Free-list entries a pick examines at most per LIP under RSS
/// pre-calculation (times the worker count): bounds the work when a skewed
/// redirection table leaves a worker few ports.
const PROBES_PER_WORKER: usize = 32;

/// Which of a LIP's ports this worker may hand out.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    /// `port % nworkers == worker`.
    Partition,
    /// Replies hashed by the NIC to `queue`: the reply tuple's hash so far
    /// (everything but the local port), and the port's RSS.
    Rss {
        steer: &'a RssSteer,
        base: ReplyBase,
        queue: u16,
    },
}

/// The worker that owns local port `port` among `nworkers`.
#[inline]
pub fn owner(port: u16, nworkers: usize) -> usize {
    usize::from(port) % nworkers.max(1)
}

/// One LIP's ports on one worker.
struct Pool {
    range: (u16, u16),
    /// Holds only this worker's partition (else every port of the range).
    partitioned: bool,
    free: VecDeque<u16>,
    /// Bit per port: handed out and not yet returned (guards double release).
    in_use: Vec<u64>,
}

impl Pool {
    fn is_used(&self, p: u16) -> bool {
        self.in_use[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }
    fn set_used(&mut self, p: u16, on: bool) {
        let w = &mut self.in_use[usize::from(p) / 64];
        if on {
            *w |= 1 << (p % 64);
        } else {
            *w &= !(1 << (p % 64));
        }
    }
}

/// A worker's local ports, per LIP.
pub struct LocalPorts {
    worker: usize,
    nworkers: usize,
    pools: ConfigMap<IpAddr, Pool>,
    /// Round robin over a service's LIPs.
    next: usize,
}

impl LocalPorts {
    pub fn new(worker: usize, nworkers: usize) -> LocalPorts {
        LocalPorts {
            worker,
            nworkers: nworkers.max(1),
            pools: ConfigMap::default(),
            next: 0,
        }
    }

    fn pool(&mut self, lip: IpAddr, range: (u16, u16), partitioned: bool) -> &mut Pool {
        let (worker, n) = (self.worker, self.nworkers);
        let build = |in_use: Vec<u64>| {
            let mut p = Pool {
                range,
                partitioned,
                free: VecDeque::new(),
                in_use,
            };
            let (lo, hi) = range;
            let free: VecDeque<u16> = (lo..=hi)
                .filter(|&x| (!partitioned || owner(x, n) == worker) && !p.is_used(x))
                .collect();
            p.free = free;
            p
        };
        let pool = self
            .pools
            .entry(lip)
            .or_insert_with(|| build(vec![0; 1024]));
        if pool.range != range || pool.partitioned != partitioned {
            // New range: ports still held by connections stay out of the list.
            let in_use = std::mem::take(&mut pool.in_use);
            *pool = build(in_use);
        }
        pool
    }

    /// Build `lip`'s pool now (a no-op when it exists with this range and
    /// kind), so the first connection through it allocates nothing.
    pub fn prepare(&mut self, lip: IpAddr, range: (u16, u16), partitioned: bool) {
        self.pool(lip, range, partitioned);
    }

    /// A free (LIP, port) from `lips`, round robin over the addresses, that
    /// `filter` (per LIP) lets this worker hand out; `None` when no address
    /// has one.
    pub fn alloc<'a>(
        &mut self,
        lips: &[IpAddr],
        range: (u16, u16),
        mut filter: impl FnMut(IpAddr) -> Filter<'a>,
    ) -> Option<(IpAddr, u16)> {
        let n = lips.len();
        let probes = PROBES_PER_WORKER * self.nworkers;
        for i in 0..n {
            let lip = lips[(self.next + i) % n];
            let f = filter(lip);
            let pool = self.pool(lip, range, matches!(f, Filter::Partition));
            let got = match f {
                // Ports reserved by connection sync are skipped here.
                Filter::Partition => loop {
                    match pool.free.pop_front() {
                        Some(p) if pool.is_used(p) => continue,
                        other => break other,
                    }
                },
                Filter::Rss { steer, base, queue } => {
                    // Ports that do not fit go to the back: another reply
                    // tuple (other RIP) may take them.
                    let mut found = None;
                    for _ in 0..probes.min(pool.free.len()) {
                        let Some(p) = pool.free.pop_front() else {
                            break;
                        };
                        if pool.is_used(p) {
                            continue;
                        }
                        if steer.lport_ok(base, p, queue) {
                            found = Some(p);
                            break;
                        }
                        pool.free.push_back(p);
                    }
                    found
                }
            };
            if let Some(p) = got {
                pool.set_used(p, true);
                self.next = (self.next + i + 1) % n;
                return Some((lip, p));
            }
        }
        None
    }

    /// Marks `port` of `lip` taken by a connection this worker did not
    /// allocate (one installed by connection sync): `alloc` skips it until
    /// it is released. A port already taken stays so.
    pub fn reserve(&mut self, lip: IpAddr, port: u16, range: (u16, u16), partitioned: bool) {
        // It stays in the free list; `alloc` drops it when it comes by.
        self.pool(lip, range, partitioned).set_used(port, true);
    }

    /// Gives `port` of `lip` back. Ports not handed out here are ignored.
    pub fn release(&mut self, lip: IpAddr, port: u16) {
        let Some(pool) = self.pools.get_mut(&lip) else {
            return;
        };
        if !pool.is_used(port) {
            return;
        }
        pool.set_used(port, false);
        let (lo, hi) = pool.range;
        if (lo..=hi).contains(&port) {
            pool.free.push_back(port);
        }
    }

    /// Free ports of `lip` on this worker (0 for an address never used).
    pub fn free(&self, lip: IpAddr) -> usize {
        self.pools.get(&lip).map_or(0, |p| p.free.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn part(_: IpAddr) -> Filter<'static> {
        Filter::Partition
    }

    #[test]
    fn ports_are_partitioned_by_worker() {
        for w in 0..3 {
            let mut lp = LocalPorts::new(w, 3);
            let mut got = Vec::new();
            while let Some((_, p)) = lp.alloc(&[ip("10.1.0.1")], (1000, 1099), part) {
                got.push(p);
            }
            assert!(got.iter().all(|&p| owner(p, 3) == w));
            assert_eq!(
                got.len(),
                (1000..=1099).filter(|p| p % 3 == w as u16).count()
            );
            let mut u = got.clone();
            u.sort();
            u.dedup();
            assert_eq!(u.len(), got.len(), "no port handed out twice");
        }
    }

    #[test]
    fn exhaustion_release_and_round_robin() {
        let (a, b) = (ip("10.1.0.1"), ip("10.1.0.2"));
        let mut lp = LocalPorts::new(0, 1);
        let r = (2000, 2001);
        let x = lp.alloc(&[a, b], r, part).unwrap();
        let y = lp.alloc(&[a, b], r, part).unwrap();
        assert_ne!(x.0, y.0, "round robin over LIPs");
        let mut all = vec![x, y];
        all.extend(std::iter::from_fn(|| lp.alloc(&[a, b], r, part)));
        assert_eq!(all.len(), 4);
        assert_eq!(lp.alloc(&[a, b], r, part), None, "exhausted");
        lp.release(x.0, x.1);
        lp.release(x.0, x.1); // double release ignored
        assert_eq!(lp.free(x.0), 1);
        assert_eq!(lp.alloc(&[a, b], r, part), Some(x));
        assert_eq!(lp.alloc(&[a, b], r, part), None);
        lp.release(ip("10.9.9.9"), 5); // unknown: ignored
        lp.release(a, 3000); // never handed out: ignored
        assert_eq!(lp.free(a), 0);
    }

    #[test]
    fn released_ports_are_reused_last() {
        let a = ip("10.1.0.1");
        let mut lp = LocalPorts::new(0, 1);
        let r = (100, 103);
        let first = lp.alloc(&[a], r, part).unwrap().1;
        lp.release(a, first);
        let next: Vec<u16> = std::iter::from_fn(|| lp.alloc(&[a], r, part).map(|x| x.1)).collect();
        assert_eq!(next, vec![101, 102, 103, 100]);
    }

    #[test]
    fn range_change_keeps_held_ports_out() {
        let a = ip("10.1.0.1");
        let mut lp = LocalPorts::new(0, 1);
        let held = lp.alloc(&[a], (100, 101), part).unwrap().1;
        let mut got: Vec<u16> =
            std::iter::from_fn(|| lp.alloc(&[a], (100, 102), part).map(|x| x.1)).collect();
        got.sort();
        assert!(!got.contains(&held));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn rss_picks_only_ports_whose_reply_lands_on_the_worker_queue() {
        use crate::rss::{vectors, Reta, Toeplitz};
        let steer = RssSteer::new(
            Toeplitz::new(&vectors::KEY).unwrap(),
            Reta::round_robin(128, 4).unwrap(),
        );
        let (lip, rip) = (ip("10.1.0.1"), ip("192.168.0.11"));
        let base = steer.reply_base(rip, 8080, lip).unwrap();
        let mut taken = std::collections::HashSet::new();
        for w in 0..4u16 {
            let mut lp = LocalPorts::new(usize::from(w), 4);
            let rss = |_| Filter::Rss {
                steer: &steer,
                base,
                queue: w,
            };
            let got: Vec<u16> =
                std::iter::from_fn(|| lp.alloc(&[lip], (2000, 2999), rss).map(|x| x.1)).collect();
            assert!(got.len() > 150, "about a quarter of 1000: {}", got.len());
            for p in &got {
                assert_eq!(steer.reply_queue(rip, 8080, lip, *p), Some(w));
                assert!(taken.insert(*p), "two workers never share a reply tuple");
            }
        }
        assert_eq!(
            taken.len(),
            1000,
            "every port of the range is some worker's"
        );
    }
}
