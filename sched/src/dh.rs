//! Destination hashing (ip_vs_dh.c): 256 buckets (`IP_VS_DH_TAB_BITS` = 8) filled
//! round robin with the dests, ignoring weights; a flow goes to bucket
//! `hash_32(fold(daddr), 8)` (the kernel's multiplicative hash over the VIP or, for
//! transparent caches, the origin server address). If that dest is unavailable
//! there is no fallback: the connection is refused, as in the kernel.
//!
//! Dests with configured weight > 0 share the buckets; an inhibited dest keeps its
//! buckets (so a health-check flap does not remap other flows) but gets no flows.
//! The buckets are the table, shared by all workers; the cursor holds nothing else.

use std::sync::Arc;

use crate::hash::{addr_fold, hash_32};
use crate::{downcast, Dest, FlowKey, SchedTable, Scheduler};

pub(crate) const TAB_BITS: u32 = 8;
pub(crate) const TAB_SIZE: usize = 1 << TAB_BITS;

/// dh's table: bucket -> dest index.
#[derive(Debug)]
pub struct DestHashTable {
    buckets: Vec<Option<usize>>,
}

impl DestHashTable {
    /// `ip_vs_dh_reassign`, over the dests with configured weight > 0.
    pub fn new(dests: &[Dest]) -> DestHashTable {
        let members: Vec<usize> = (0..dests.len()).filter(|&i| dests[i].weight > 0).collect();
        let buckets = (0..TAB_SIZE)
            .map(|b| (!members.is_empty()).then(|| members[b % members.len()]))
            .collect();
        DestHashTable { buckets }
    }
}

impl SchedTable for DestHashTable {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(DestHash { table: self })
    }
}

/// dh's per-worker scheduler: just the shared table.
#[derive(Debug)]
pub struct DestHash {
    table: Arc<DestHashTable>,
}

impl Scheduler for DestHash {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let b = hash_32(addr_fold(&key.dst), TAB_BITS) as usize;
        let i = (*self.table.buckets.get(b)?)?;
        dests.get(i).filter(|d| d.is_available()).map(|_| i)
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        let Some(t) = downcast(table) else {
            return false;
        };
        self.table = t;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same destination address maps to the same dest while the set is
        /// unchanged, whatever the source; every member dest receives some address.
        #[test]
        fn same_daddr_same_dest(weights in prop::collection::vec(1u32..5, 1..8), seeds in prop::collection::vec(any::<u32>(), 1..30)) {
            let dests = dests_with_weights(&weights);
            let mut s = Arc::new(DestHashTable::new(&dests)).cursor(0, 1);
            for &seed in &seeds {
                let mut k = key(seed);
                k.dst = IpAddr::V4(Ipv4Addr::from(seed));
                let first = s.schedule(&dests, &k).unwrap();
                k.src = IpAddr::V4(Ipv4Addr::from(seed.wrapping_mul(7)));
                k.sport = k.sport.wrapping_add(1);
                prop_assert_eq!(s.schedule(&dests, &k), Some(first));
            }
            let mut hit = vec![false; dests.len()];
            for a in 0..4096u32 {
                let mut k = key(0);
                k.dst = IpAddr::V4(Ipv4Addr::from(a << 8));
                hit[s.schedule(&dests, &k).unwrap()] = true;
            }
            prop_assert!(hit.iter().all(|&h| h));
        }
    }
}
