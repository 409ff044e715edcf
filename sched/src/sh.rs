//! Source hashing (ip_vs_sh.c): 256 buckets (`IP_VS_SH_TAB_BITS` = 8) filled with
//! the dests in list order, each dest taking `weight` consecutive buckets before the
//! next one (so a dest with weight >= 256 fills the table, as in the kernel). A flow
//! goes to bucket `hash_32(fold(saddr) + sport, 8)`, with `sport` 0 unless
//! `sh-port`. If that dest is unavailable: `None`, or with `sh-fallback` the walk
//! `(ihash + offset) % 256` of ip_vs_sh_get_fallback, rehashing each offset.
//!
//! The table is laid out from configured weights; an inhibited or overloaded dest
//! keeps its buckets (a health-check flap does not remap other sources) and is only
//! skipped at lookup. Dests with weight 0 get one bucket each, as in the kernel,
//! where lookups find them unavailable. The buckets and flags are the table,
//! shared by all workers; the cursor holds nothing else.

use std::sync::Arc;

use crate::dh::{TAB_BITS, TAB_SIZE};
use crate::hash::{addr_fold, hash_32};
use crate::{downcast, Dest, FlowKey, SchedTable, Scheduler};

/// sh's table: bucket -> dest index, and the flags.
#[derive(Debug)]
pub struct SourceHashTable {
    buckets: Vec<Option<usize>>,
    fallback: bool,
    port: bool,
}

impl SourceHashTable {
    /// `ip_vs_sh_reassign`.
    pub fn new(fallback: bool, port: bool, dests: &[Dest]) -> SourceHashTable {
        let mut buckets = vec![None; TAB_SIZE];
        let mut p = 0;
        let mut d_count: u64 = 0;
        if !dests.is_empty() {
            for slot in buckets.iter_mut() {
                *slot = Some(p);
                d_count += 1;
                if d_count >= u64::from(dests[p].weight) {
                    p = (p + 1) % dests.len();
                    d_count = 0;
                }
            }
        }
        SourceHashTable {
            buckets,
            fallback,
            port,
        }
    }

    /// `ip_vs_sh_hashkey`: `(offset + hash_32(port + fold(addr), 8)) & 255`.
    fn bucket(fold: u32, port: u16, offset: usize) -> usize {
        (offset + hash_32(u32::from(port).wrapping_add(fold), TAB_BITS) as usize) & (TAB_SIZE - 1)
    }
}

impl SchedTable for SourceHashTable {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(SourceHash { table: self })
    }
}

/// sh's per-worker scheduler: just the shared table.
#[derive(Debug)]
pub struct SourceHash {
    table: Arc<SourceHashTable>,
}

impl Scheduler for SourceHash {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let t = &*self.table;
        let fold = addr_fold(&key.src);
        let port = if t.port { key.sport } else { 0 };
        let usable =
            |b: usize| t.buckets[b].filter(|&i| dests.get(i).is_some_and(Dest::is_available));
        let ihash = SourceHashTable::bucket(fold, port, 0);
        t.buckets[ihash]?;
        if let Some(i) = usable(ihash) {
            return Some(i);
        }
        if !t.fallback {
            return None;
        }
        (0..TAB_SIZE).find_map(|offset| {
            usable(SourceHashTable::bucket(
                fold,
                port,
                (offset + ihash) % TAB_SIZE,
            ))
        })
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

    fn sh(fallback: bool, dests: &[Dest]) -> Box<dyn Scheduler> {
        Arc::new(SourceHashTable::new(fallback, false, dests)).cursor(0, 1)
    }

    #[test]
    fn buckets_follow_weights() {
        let dests = dests_with_weights(&[3, 1]);
        let t = SourceHashTable::new(false, false, &dests);
        let zeros = t.buckets.iter().filter(|b| **b == Some(0)).count();
        assert_eq!(zeros, 192);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A source maps to the same dest while the set is unchanged; with sh-port the
        /// port takes part, without it it does not.
        #[test]
        fn same_source_same_dest(weights in prop::collection::vec(1u32..5, 1..8), seeds in prop::collection::vec(any::<u32>(), 1..30)) {
            let dests = dests_with_weights(&weights);
            let mut s = sh(false, &dests);
            for &seed in &seeds {
                let mut k = key(seed);
                let first = s.schedule(&dests, &k).unwrap();
                for _ in 0..3 {
                    k.sport = k.sport.wrapping_add(4567);
                    prop_assert_eq!(s.schedule(&dests, &k), Some(first));
                }
            }
        }

        /// Without fallback a source whose dest is down is refused; with fallback it
        /// gets another available dest, and sources on live dests do not move.
        #[test]
        fn fallback_moves_only_sources_of_the_failed_dest(n in 2usize..8, down in 0usize..8, seeds in prop::collection::vec(any::<u32>(), 1..40)) {
            let down = down % n;
            let mut dests = dests_with_weights(&vec![1; n]);
            let mut plain = sh(false, &dests);
            let mut fb = sh(true, &dests);
            let before: Vec<usize> = seeds.iter().map(|&s| fb.schedule(&dests, &key(s)).unwrap()).collect();
            dests[down].inhibited = true;
            for (&s, &b) in seeds.iter().zip(&before) {
                let after = fb.schedule(&dests, &key(s)).unwrap();
                prop_assert!(after != down);
                if b != down {
                    prop_assert_eq!(after, b);
                    prop_assert_eq!(plain.schedule(&dests, &key(s)), Some(b));
                } else {
                    prop_assert_eq!(plain.schedule(&dests, &key(s)), None);
                }
            }
        }
    }
}
