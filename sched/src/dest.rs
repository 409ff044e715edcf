//! What a scheduler sees of one real server: its address, configured weight,
//! thresholds and health, plus the connection counters that every worker shares.
//!
//! The counters are the only cross-worker state in this crate (Relaxed atomics, as
//! IPVS reads `activeconns`/`inactconns` without locks). The overload flag follows
//! IPVS `IP_VS_DEST_F_OVERLOAD`: set when `active + inactive >= u_threshold`, cleared
//! below `l_threshold`, or below 3/4 of `u_threshold` when no lower threshold is set.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Connection counters of one dest, shared by all workers (Relaxed atomics).
#[derive(Debug, Default)]
pub struct DestCounters {
    /// IPVS `activeconns` (established, or otherwise "active") and
    /// `inactconns` (SYN_RECV, FIN_WAIT, UDP ...) in one word, `active *
    /// 2^32 + inactive`, each half a signed 32-bit count: a state change
    /// (one up, the other down) is one atomic add, not two read-modify-
    /// writes; a count taken below zero (counters reset under live
    /// connections) borrows and reads as 0 until given back.
    conns: AtomicU64,
    /// Persistence templates pointing at this dest, IPVS `persistconns`.
    pub persistent: AtomicU32,
    /// Sticky overload flag with hysteresis, maintained by [`Dest::is_overloaded`].
    pub overloaded: AtomicBool,
    /// The passive health check's evidence (NAT/FULLNAT TCP, where replies
    /// come through the director): client SYNs the real server left
    /// unanswered (a retransmitted SYN, or a RST to it)...
    pub syn_unanswered: AtomicU64,
    /// ...and SYN-ACKs it sent.
    pub syn_answered: AtomicU64,
}

impl DestCounters {
    /// Fresh counters, all zero, not overloaded.
    pub fn new() -> DestCounters {
        DestCounters::default()
    }

    /// Set the active and inactive counts (tests, and resynchronisation
    /// after a sum); each at most `i32::MAX`.
    pub fn set(&self, active: u32, inactive: u32) {
        let c = |n: u32| n.min(i32::MAX as u32) as i32;
        self.conns.store(pack(c(active), c(inactive)), Relaxed);
    }

    /// Add `active` to the active count and `inactive` to the inactive one,
    /// in one atomic add.
    #[inline]
    pub fn add(&self, active: i32, inactive: i32) {
        self.conns.fetch_add(pack(active, inactive), Relaxed);
    }

    /// The (active, inactive) counts, each read as 0 while below zero.
    #[inline]
    pub fn conns(&self) -> (u32, u32) {
        let v = self.conns.load(Relaxed) as i64;
        let inactive = v as i32;
        let active = (v.wrapping_sub(i64::from(inactive)) >> 32) as i32;
        (active.max(0) as u32, inactive.max(0) as u32)
    }
}

/// `active * 2^32 + inactive`, wrapping: the sum of two packed pairs is
/// the packed sum of the pairs.
#[inline]
fn pack(active: i32, inactive: i32) -> u64 {
    (i64::from(active) << 32).wrapping_add(i64::from(inactive)) as u64
}

/// One real server as a scheduler sees it.
#[derive(Clone, Debug)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    /// Configured weight; 0 = quiescent (keeps its connections, gets no new ones).
    pub weight: u32,
    /// Upper connection threshold (`ipvsadm -x`); 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`ipvsadm -y`); 0 = none (3/4 of upper applies).
    pub l_threshold: u32,
    /// Health check failed: behaves as weight 0 until restored.
    pub inhibited: bool,
    pub counters: Arc<DestCounters>,
}

impl Dest {
    /// A dest with no thresholds, not inhibited, and fresh counters.
    pub fn new(addr: IpAddr, port: u16, weight: u32) -> Dest {
        Dest {
            addr,
            port,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            inhibited: false,
            counters: Arc::new(DestCounters::new()),
        }
    }

    /// Builder: set upper and lower connection thresholds.
    pub fn with_thresholds(mut self, upper: u32, lower: u32) -> Dest {
        self.u_threshold = upper;
        self.l_threshold = lower;
        self
    }

    /// Builder: share existing counters (the same dest in a new configuration snapshot).
    pub fn with_counters(mut self, counters: Arc<DestCounters>) -> Dest {
        self.counters = counters;
        self
    }

    pub fn active_conns(&self) -> u32 {
        self.counters.conns().0
    }

    pub fn inactive_conns(&self) -> u32 {
        self.counters.conns().1
    }

    pub fn persistent_conns(&self) -> u32 {
        self.counters.persistent.load(Relaxed)
    }

    /// The weight schedulers use: the configured weight, or 0 while inhibited.
    pub fn effective_weight(&self) -> u32 {
        if self.inhibited {
            0
        } else {
            self.weight
        }
    }

    /// IPVS overload rule with hysteresis (`ip_vs_dest_totalconns` and
    /// `IP_VS_DEST_F_OVERLOAD` in ip_vs_conn.c): overloaded once
    /// `active + inactive >= u_threshold` (when set); the flag then stays until the
    /// total falls below `l_threshold`, or, when `l_threshold` is 0, below 3/4 of
    /// `u_threshold`. Without thresholds a dest is never overloaded. Updates the
    /// shared flag (only when it changes, to keep the cache line quiet).
    pub fn is_overloaded(&self) -> bool {
        let upper = u64::from(self.u_threshold);
        let was = self.counters.overloaded.load(Relaxed);
        if upper == 0 && !was {
            // No upper threshold and not flagged: it stays so (what the
            // rule below gives), without reading the connection counts.
            return false;
        }
        let (active, inactive) = self.counters.conns();
        let total = u64::from(active) + u64::from(inactive);
        let lower = u64::from(self.l_threshold);
        let now = if upper != 0 && total >= upper {
            true
        } else if !was {
            false
        } else if lower != 0 {
            total >= lower
        } else if upper != 0 {
            total * 4 >= upper * 3
        } else {
            false
        };
        if now != was {
            self.counters.overloaded.store(now, Relaxed);
        }
        now
    }

    /// Usable for new connections: effective weight > 0 and not overloaded.
    pub fn is_available(&self) -> bool {
        self.effective_weight() > 0 && !self.is_overloaded()
    }

    /// IPVS `ip_vs_dest_conn_overhead`: `active * 256 + inactive` (u64, no overflow).
    pub fn conn_overhead(&self) -> u64 {
        let (active, inactive) = self.counters.conns();
        (u64::from(active) << 8) + u64::from(inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn dest(u: u32, l: u32) -> Dest {
        Dest::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80, 1).with_thresholds(u, l)
    }

    #[test]
    fn hysteresis_with_lower_threshold() {
        let d = dest(10, 5);
        d.counters.set(9, 0);
        assert!(!d.is_overloaded());
        d.counters.set(6, 4);
        assert!(d.is_overloaded(), "10 >= u_threshold 10");
        d.counters.set(5, 0);
        assert!(d.is_overloaded(), "5 is not below l_threshold 5");
        assert!(!d.is_available());
        d.counters.set(4, 0);
        assert!(!d.is_overloaded(), "4 < l_threshold 5 clears");
        d.counters.set(9, 0);
        assert!(!d.is_overloaded(), "rising again below upper stays clear");
        assert!(d.is_available());
    }

    #[test]
    fn hysteresis_three_quarters_without_lower() {
        let d = dest(100, 0);
        d.counters.set(100, 0);
        assert!(d.is_overloaded());
        d.counters.set(75, 0);
        assert!(d.is_overloaded(), "75*4 >= 100*3 keeps the flag");
        d.counters.set(74, 0);
        assert!(!d.is_overloaded());
    }

    #[test]
    fn no_thresholds_never_overloaded_and_flag_cleared() {
        let d = dest(0, 0);
        d.counters.overloaded.store(true, Relaxed);
        d.counters.set(u32::MAX, u32::MAX);
        assert!(!d.is_overloaded());
        assert!(!d.counters.overloaded.load(Relaxed));
    }

    #[test]
    fn counts_move_in_one_add_and_read_zero_below_zero() {
        let c = DestCounters::new();
        c.add(0, 1);
        c.add(0, 1);
        assert_eq!(c.conns(), (0, 2));
        c.add(1, -1);
        assert_eq!(c.conns(), (1, 1));
        c.add(-1, 1);
        c.add(0, -1);
        assert_eq!(c.conns(), (0, 1));
        // Below zero: read as 0, and the borrow is given back.
        c.add(-1, 0);
        c.add(0, -2);
        assert_eq!(c.conns(), (0, 0));
        c.add(1, 1);
        assert_eq!(c.conns(), (0, 0));
        c.add(1, 1);
        assert_eq!(c.conns(), (1, 1));
        c.set(u32::MAX, 7);
        assert_eq!(c.conns(), (i32::MAX as u32, 7));
        c.add(0, -7);
        c.add(-(i32::MAX), 3);
        assert_eq!(c.conns(), (0, 3));
    }

    #[test]
    fn inhibited_and_quiescent_are_unavailable() {
        let mut d = dest(0, 0);
        assert!(d.is_available());
        d.inhibited = true;
        assert_eq!(d.effective_weight(), 0);
        assert!(!d.is_available());
        d.inhibited = false;
        d.weight = 0;
        assert!(!d.is_available());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Walk the total up and down; the flag must match a reference state machine.
        #[test]
        fn hysteresis_matches_reference(u in 0u32..50, l in 0u32..50,
                                        totals in prop::collection::vec(0u32..80, 1..40)) {
            let d = dest(u, l);
            let mut flag = false;
            for t in totals {
                d.counters.set(t / 2, t - t / 2);
                if u != 0 && t >= u {
                    flag = true;
                } else if flag {
                    let clear = if l != 0 { t < l } else if u != 0 { t * 4 < u * 3 } else { true };
                    if clear { flag = false; }
                }
                prop_assert_eq!(d.is_overloaded(), flag, "total {} u {} l {}", t, u, l);
            }
        }
    }
}
