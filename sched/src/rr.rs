//! Round robin (ip_vs_rr.c): the next available dest after the last one picked,
//! wrapping; quiescent, inhibited and overloaded dests are skipped.
//!
//! The table is only the number of dests (the cycle the cursors spread over); the
//! cursor is the index picked last, one per worker. Worker `w` of `N` starts
//! after dest `w * n / N`, so a handful of connections spread over the workers
//! still reach different dests.
//!
//! Fairness across workers: each worker's cursor is fair on its own (over any `a`
//! consecutive picks of one worker, each of the `a` available dests is picked
//! once), so after `m` picks a worker has given each available dest `m / a`
//! rounded down or up, less than one away from its ideal share. Summed over `N`
//! workers, the global count of each dest differs from `total / a` by less than
//! `N`, whatever the order in which the workers' picks interleave (while the
//! dests and their availability stay the same).

use std::sync::Arc;

use crate::{is_table, spread, Dest, FlowKey, SchedTable, Scheduler};

/// rr's table: the number of dests it was compiled for.
#[derive(Debug)]
pub struct RoundRobinTable {
    n: usize,
}

impl RoundRobinTable {
    pub fn new(dests: &[Dest]) -> RoundRobinTable {
        RoundRobinTable { n: dests.len() }
    }
}

impl SchedTable for RoundRobinTable {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn cursor(self: Arc<Self>, worker: usize, nworkers: usize) -> Box<dyn Scheduler> {
        let start = spread(worker, nworkers, self.n as u128) as usize;
        Box::new(RoundRobin {
            last: start.checked_sub(1),
        })
    }
}

/// Round-robin cursor: the index picked last (`None` = list head, as `sched_data`).
#[derive(Debug, Default)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let mut i = self.last.map_or(0, |l| l + 1);
        if i >= n {
            // Past the end (`last` was the last dest, or the list shrank).
            i %= n;
        }
        for _ in 0..n {
            if dests[i].is_available() {
                self.last = Some(i);
                return Some(i);
            }
            // The wrap is a compare, not a division per dest.
            i += 1;
            if i == n {
                i = 0;
            }
        }
        None
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, dests: &[Dest]) -> bool {
        if !is_table::<RoundRobinTable>(table) {
            return false;
        }
        // As ip_vs_rr_del_dest: a cursor past the end goes back to the head.
        if self.last.is_some_and(|l| l >= dests.len()) {
            self.last = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use crate::{compile, SchedFlags};
    use proptest::prelude::*;

    fn rr(dests: &[Dest], worker: usize, nworkers: usize) -> Box<dyn Scheduler> {
        compile("rr", &SchedFlags::default(), dests)
            .unwrap()
            .cursor(worker, nworkers)
    }

    #[test]
    fn workers_start_spread() {
        let dests = dests_with_weights(&[1; 8]);
        let firsts: Vec<usize> = (0..4)
            .map(|w| rr(&dests, w, 4).schedule(&dests, &key(0)).unwrap())
            .collect();
        assert_eq!(firsts, vec![0, 2, 4, 6]);
        // More workers than dests: every dest is somebody's first pick.
        let mut firsts: Vec<usize> = (0..16)
            .map(|w| rr(&dests, w, 16).schedule(&dests, &key(0)).unwrap())
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn retable_keeps_the_position_and_clamps_past_the_end() {
        let dests = dests_with_weights(&[1; 5]);
        let mut s = rr(&dests, 0, 1);
        for _ in 0..3 {
            s.schedule(&dests, &key(0));
        }
        let same = compile("rr", &SchedFlags::default(), &dests).unwrap();
        assert!(s.retable(&same, &dests));
        assert_eq!(s.schedule(&dests, &key(0)), Some(3), "position kept");
        // Cursor on dest 3, which a shorter list no longer has: back to the head.
        let fewer = &dests[..3];
        let t = compile("rr", &SchedFlags::default(), fewer).unwrap();
        assert!(s.retable(&t, fewer));
        assert_eq!(s.schedule(fewer, &key(0)), Some(0));
        let other = compile("wrr", &SchedFlags::default(), fewer).unwrap();
        assert!(!s.retable(&other, fewer));
        assert_eq!(s.schedule(fewer, &key(0)), Some(1), "cursor untouched");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Over k full cycles every available dest is picked exactly k times, in order,
        /// and weight-0 dests never.
        #[test]
        fn cycles_evenly_and_skips_weight_zero(weights in prop::collection::vec(0u32..3, 1..12), k in 1usize..4) {
            let dests = dests_with_weights(&weights);
            let mut s = rr(&dests, 0, 1);
            let avail: Vec<usize> = (0..dests.len()).filter(|&i| weights[i] > 0).collect();
            let mut picks = Vec::new();
            for _ in 0..avail.len() * k {
                picks.push(s.schedule(&dests, &key(1)).unwrap());
            }
            let expect: Vec<usize> = avail.iter().copied().cycle().take(avail.len() * k).collect();
            prop_assert_eq!(picks, expect);
            if avail.is_empty() {
                prop_assert_eq!(s.schedule(&dests, &key(1)), None);
            }
        }

        /// N cursors over one table, picking in any interleaving: every available
        /// dest's global count stays less than N away from its ideal share.
        #[test]
        fn global_share_within_nworkers(weights in prop::collection::vec(0u32..3, 1..12),
                                        nworkers in 1usize..9,
                                        order in prop::collection::vec(any::<prop::sample::Index>(), 0..300)) {
            let dests = dests_with_weights(&weights);
            let table = compile("rr", &SchedFlags::default(), &dests).unwrap();
            let mut workers: Vec<Box<dyn Scheduler>> =
                (0..nworkers).map(|w| table.clone().cursor(w, nworkers)).collect();
            let avail = weights.iter().filter(|&&w| w > 0).count();
            let mut count = vec![0i64; dests.len()];
            let mut total = 0i64;
            for ix in &order {
                if let Some(i) = workers[ix.index(nworkers)].schedule(&dests, &key(0)) {
                    count[i] += 1;
                    total += 1;
                }
                for (i, &c) in count.iter().enumerate() {
                    if weights[i] == 0 {
                        prop_assert_eq!(c, 0);
                    } else {
                        // |c - total / avail| < N, in integers.
                        prop_assert!((c * avail as i64 - total).abs() < nworkers as i64 * avail as i64,
                            "dest {} count {} of {} over {} available, {} workers", i, c, total, avail, nworkers);
                    }
                }
            }
        }
    }
}
