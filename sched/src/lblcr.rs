//! Locality-based least connection with replication (ip_vs_lblcr.c): each
//! destination address is bound to a *set* of dests. A flow goes to the set member
//! with the least `overhead / weight` (wlc over the set); if there is none, or it is
//! lblc-overloaded (`active > weight` while a dest at under half load exists), wlc
//! over all dests picks one and it joins the set. When a set has more than one
//! member and has not changed for [`EXPIRATION_SECS`] (kernel `lblcr_expiration`,
//! 24 h), its most loaded member leaves it.
//!
//! Time comes only through [`Scheduler::advance`], and table ageing and the size
//! bound are as in [`crate::lblc`]. Set members are named by address and port; a
//! member that left the service drops out of its set at the set's next lookup.
//! As in lblc the sets are runtime state in each worker's cursor ([`Lblcr`]), the
//! table ([`LblcrTable`]) is empty, and a new snapshot keeps every set.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::lblc::{
    evict_half, find_dest, lblc_overloaded, Clock, CHECK_PERIOD_SECS, ENTRY_TIMEOUT_SECS, HARD_MAX,
    TABLE_MAX,
};
use crate::{is_table, least_weighted, Dest, FlowKey, SchedTable, Scheduler};

pub const EXPIRATION_SECS: u64 = 24 * 60 * 60;

#[derive(Debug)]
struct Entry {
    /// Members: (address, port) and an index hint into the current dests.
    set: Vec<((IpAddr, u16), usize)>,
    lastmod: u64,
    lastuse: u64,
    seq: u64,
}

/// lblcr's table: nothing is a function of the configuration alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct LblcrTable;

impl SchedTable for LblcrTable {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(Lblcr::new())
    }
}

/// lblcr's cursor: this worker's destination-address sets and clock.
#[derive(Debug, Default)]
pub struct Lblcr {
    table: HashMap<IpAddr, Entry>,
    clock: Clock,
}

impl Lblcr {
    pub fn new() -> Lblcr {
        Lblcr::default()
    }

    /// Number of destination addresses bound.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The dest indexes bound to `daddr`, in join order.
    pub fn set_of(&self, dests: &[Dest], daddr: &IpAddr) -> Vec<usize> {
        self.table.get(daddr).map_or_else(Vec::new, |e| {
            e.set
                .iter()
                .filter_map(|&(id, h)| find_dest(dests, id, h))
                .collect()
        })
    }
}

/// `ip_vs_dest_set_min`: wlc among the available members (indexes into `dests`).
fn set_min(dests: &[Dest], members: &[usize]) -> Option<usize> {
    let mut least: Option<(usize, u64, u64)> = None;
    for &i in members {
        let d = &dests[i];
        if !d.is_available() {
            continue;
        }
        let (doh, dw) = (d.conn_overhead(), u64::from(d.effective_weight()));
        if least.is_none_or(|(_, loh, lw)| {
            u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
        }) {
            least = Some((i, doh, dw));
        }
    }
    least.map(|(i, _, _)| i)
}

/// `ip_vs_dest_set_max`: the member with weight > 0 and the most `overhead / weight`.
fn set_max(dests: &[Dest], members: &[usize]) -> Option<usize> {
    let mut most: Option<(usize, u64, u64)> = None;
    for &i in members {
        let d = &dests[i];
        let dw = u64::from(d.effective_weight());
        if dw == 0 {
            continue;
        }
        let doh = d.conn_overhead();
        if most.is_none_or(|(_, moh, mw)| {
            u128::from(moh) * u128::from(dw) < u128::from(doh) * u128::from(mw)
        }) {
            most = Some((i, doh, dw));
        }
    }
    most.map(|(i, _, _)| i)
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let seq = self.clock.tick();
        let now = self.clock.now;
        if let Some(e) = self.table.get_mut(&key.dst) {
            e.lastuse = now;
            e.seq = seq;
            e.set.retain_mut(|(id, h)| match find_dest(dests, *id, *h) {
                Some(i) => {
                    *h = i;
                    true
                }
                None => false,
            });
            let members: Vec<usize> = e.set.iter().map(|&(_, h)| h).collect();
            let min = set_min(dests, &members);
            if e.set.len() > 1 && now.saturating_sub(e.lastmod) > EXPIRATION_SECS {
                if let Some(m) = set_max(dests, &members) {
                    e.set.retain(|&(_, h)| h != m);
                    e.lastmod = now;
                }
            }
            if let Some(i) = min.filter(|&i| !lblc_overloaded(&dests[i], dests)) {
                return Some(i);
            }
            let i = least_weighted(dests, Dest::conn_overhead)?;
            if !e.set.iter().any(|&(_, h)| h == i) {
                e.set.push(((dests[i].addr, dests[i].port), i));
                e.lastmod = now;
            }
            return Some(i);
        }
        let i = least_weighted(dests, Dest::conn_overhead)?;
        if self.table.len() >= HARD_MAX {
            evict_half(&mut self.table, |e| e.seq);
        }
        self.table.insert(
            key.dst,
            Entry {
                set: vec![((dests[i].addr, dests[i].port), i)],
                lastmod: now,
                lastuse: now,
                seq,
            },
        );
        Some(i)
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<LblcrTable>(table)
    }

    fn advance(&mut self, now_secs: u64) {
        self.clock.now = now_secs;
        if now_secs.saturating_sub(self.clock.last_check) >= CHECK_PERIOD_SECS {
            self.clock.last_check = now_secs;
            self.table
                .retain(|_, e| now_secs.saturating_sub(e.lastuse) < crate::lblc::EXPIRATION_SECS);
        }
        if self.table.len() > TABLE_MAX {
            self.table
                .retain(|_, e| now_secs.saturating_sub(e.lastuse) < ENTRY_TIMEOUT_SECS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn to(daddr: u32) -> FlowKey {
        let mut k = key(daddr);
        k.dst = IpAddr::V4(Ipv4Addr::from(daddr));
        k
    }

    #[test]
    fn set_grows_under_overload_and_shrinks_after_expiration() {
        let dests = dests_with_weights(&[10, 10, 10]);
        let mut s = Lblcr::new();
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        dests[0].counters.set(11, 0); // over weight, peers at half load
        assert_eq!(s.schedule(&dests, &to(1)), Some(1));
        assert_eq!(s.set_of(&dests, &to(1).dst), vec![0, 1]);
        // Least loaded member is picked while it is not overloaded.
        dests[1].counters.set(3, 0);
        dests[0].counters.set(2, 0);
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        // After the expiration the most loaded member (1) leaves the set.
        dests[1].counters.set(8, 0);
        s.advance(EXPIRATION_SECS / 2);
        assert_eq!(
            s.schedule(&dests, &to(1)),
            Some(0),
            "a use keeps the entry alive"
        );
        assert_eq!(
            s.set_of(&dests, &to(1).dst),
            vec![0, 1],
            "set not expired yet"
        );
        s.advance(EXPIRATION_SECS + 1);
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        assert_eq!(s.set_of(&dests, &to(1).dst), vec![0]);
    }

    #[test]
    fn retable_keeps_sets_and_drops_departed_members_at_lookup() {
        let dests = dests_with_weights(&[10, 10, 10]);
        let mut s = Lblcr::new();
        assert_eq!(s.schedule(&dests, &to(1)), Some(0));
        dests[0].counters.set(11, 0);
        assert_eq!(s.schedule(&dests, &to(1)), Some(1));
        // New snapshot without dest 1 and with dest 0 moved to the end.
        let next = vec![dests[2].clone(), dests[0].clone()];
        let t = crate::compile("lblcr", &crate::SchedFlags::default(), &next).unwrap();
        assert!(s.retable(&t, &next));
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.set_of(&next, &to(1).dst),
            vec![1],
            "dest 0, at its new index"
        );
        dests[0].counters.set(3, 0);
        assert_eq!(s.schedule(&next, &to(1)), Some(1));
        let lblc = crate::compile("lblc", &crate::SchedFlags::default(), &next).unwrap();
        assert!(!s.retable(&lblc, &next));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The pick is the set's wlc minimum unless that is missing or lblc-overloaded,
        /// then wlc over all dests, which joins the set.
        #[test]
        fn follows_overload_rule(weights in prop::collection::vec(0u32..6, 1..6),
                                 actives in prop::collection::vec(0u32..12, 6),
                                 daddrs in prop::collection::vec(0u32..4, 1..20)) {
            let dests = dests_with_weights(&weights);
            let mut s = Lblcr::new();
            for (step, &a) in daddrs.iter().enumerate() {
                for (i, d) in dests.iter().enumerate() {
                    d.counters.set(actives[(i + step) % actives.len()], 0);
                }
                let set = s.set_of(&dests, &to(a).dst);
                let keep = set_min(&dests, &set).filter(|&m| !lblc_overloaded(&dests[m], &dests));
                let expect = keep.or_else(|| least_weighted(&dests, Dest::conn_overhead));
                let got = s.schedule(&dests, &to(a));
                prop_assert_eq!(got, expect);
                if let Some(g) = got {
                    prop_assert!(s.set_of(&dests, &to(a).dst).contains(&g));
                }
            }
        }
    }
}
