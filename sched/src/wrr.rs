//! Weighted round robin (ip_vs_wrr.c): the interleaved sequence driven by a current
//! weight `cw` that steps down by the gcd of the weights from `mw = max - (gcd - 1)`
//! each time the cursor passes the list head; a dest is picked when its weight is
//! `>= cw`. Over one cycle of `sum(weights) / gcd` picks each dest is picked exactly
//! `weight / gcd` times.
//!
//! The table holds what the kernel recomputes in `ip_vs_wrr_dest_changed` (gcd,
//! `mw`) plus the gcd-reduced weights sorted, from which a cursor finds its
//! starting phase; the cursor is the kernel's mark (`cl`, `cw`). Worker `w` of `N`
//! starts at phase `w * cycle / N` of the cycle (the state after that many picks
//! from the head), found by a binary search over the rounds instead of walking.
//!
//! Fairness across workers: with the dests and their availability unchanged, the
//! picks of one cursor are periodic with period `C = sum(weights) / gcd`, from
//! whatever phase it starts, so any `C` consecutive picks of one worker give dest
//! `d` exactly `v_d = weight_d / gcd`. After `m` picks a worker's count of `d` is
//! therefore less than `v_d` away from its ideal share `m * v_d / C` (and exactly
//! on it when `m` is a whole number of cycles). Summed over `N` workers, in any
//! interleaving, the global count of `d` is less than `N * v_d` away from
//! `total * v_d / C`. Unlike rr this bound grows with the reduced weight: the
//! kernel's sequence front-loads heavy dests within a cycle (weights 4, 4, 1, 1
//! start 0, 1, 0, 1, 0, 1), and no worker can see what the others picked.
//!
//! Difference from the kernel: when the heaviest dests are unavailable (overloaded
//! or inhibited without a new snapshot), rounds in which no available dest can
//! qualify are skipped arithmetically instead of being walked one by one, so a
//! pick is O(n) even with huge weights. The resulting sequence is the same.

use std::sync::Arc;

use crate::hash::gcd;
use crate::{downcast, spread, Dest, FlowKey, SchedTable, Scheduler};

/// wrr's table: the gcd and max weight of the configuration, and the reduced
/// weights a cursor needs to start at a given phase.
#[derive(Debug)]
pub struct WeightedRoundRobinTable {
    /// gcd of the positive effective weights (1 if none).
    di: i64,
    /// Maximum weight minus (gcd - 1); 0 or less if no dest has a weight.
    mw: i64,
    /// Effective weight / gcd of each dest, in list order.
    reduced: Vec<u64>,
    /// The positive reduced weights, largest first.
    sorted: Vec<u64>,
    /// `prefix[k]`: sum of the `k` largest reduced weights; the last is the cycle.
    prefix: Vec<u128>,
}

impl WeightedRoundRobinTable {
    pub fn new(dests: &[Dest]) -> WeightedRoundRobinTable {
        let weights: Vec<u64> = dests
            .iter()
            .map(|d| u64::from(d.effective_weight()))
            .collect();
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let di = if g == 0 { 1 } else { g };
        let max = weights.iter().copied().max().unwrap_or(0);
        let reduced: Vec<u64> = weights.iter().map(|&w| w / di).collect();
        let mut sorted: Vec<u64> = reduced.iter().copied().filter(|&v| v > 0).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let mut prefix = Vec::with_capacity(sorted.len() + 1);
        let mut sum = 0u128;
        prefix.push(0);
        for &v in &sorted {
            sum += u128::from(v);
            prefix.push(sum);
        }
        WeightedRoundRobinTable {
            di: di as i64,
            mw: max as i64 - (di as i64 - 1),
            reduced,
            sorted,
            prefix,
        }
    }

    /// Picks in one cycle: sum of weights / gcd.
    pub fn cycle(&self) -> u128 {
        self.prefix.last().copied().unwrap_or(0)
    }

    /// Picks made in the rounds from the top down to round `level` (reduced
    /// weights: round `level` picks every dest with `v >= level`).
    fn picks_down_to(&self, level: u64) -> u128 {
        let k = self.sorted.partition_point(|&v| v >= level);
        self.prefix[k] - k as u128 * u128::from(level.saturating_sub(1))
    }

    /// The mark (`cl`, `cw`) after `p` picks from the head (`p` below the cycle),
    /// all dests available: O(log(max weight) * log n) to find the round, O(n) to
    /// find the dest.
    fn mark_at(&self, p: u128) -> (Option<usize>, i64) {
        let Some(&top) = self.sorted.first() else {
            return (None, self.mw);
        };
        // Largest level whose rounds from the top hold more than p picks.
        let (mut lo, mut hi) = (1u64, top + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.picks_down_to(mid) > p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let level = lo;
        let done = p - self.picks_down_to(level + 1);
        // After `done` picks of this round the mark is on the done-th qualifying dest.
        let cl = done.checked_sub(1).and_then(|nth| {
            self.reduced
                .iter()
                .enumerate()
                .filter(|&(_, &v)| v >= level)
                .nth(nth as usize)
                .map(|(i, _)| i)
        });
        let cw = (level as i64 - 1) * self.di + 1;
        (cl, cw)
    }
}

impl SchedTable for WeightedRoundRobinTable {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn cursor(self: Arc<Self>, worker: usize, nworkers: usize) -> Box<dyn Scheduler> {
        let (cl, cw) = self.mark_at(spread(worker, nworkers, self.cycle()));
        Box::new(WeightedRoundRobin {
            cl,
            cw,
            mw: self.mw,
            di: self.di,
        })
    }
}

/// wrr's cursor: the kernel's mark, plus the table's two scalars it steps with.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Dest picked last; `None` is the list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i64,
    /// The table's `mw` and gcd.
    mw: i64,
    di: i64,
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let n = dests.len();
        let max_avail = dests
            .iter()
            .filter(|d| d.is_available())
            .map(|d| i64::from(d.effective_weight()))
            .max()?;
        let mut pos = self.cl.filter(|&p| p < n);
        // A partial round from the cursor, the head, then one full round suffice:
        // after the head cw <= max_avail, so the full round finds a dest.
        for _ in 0..2 * n + 2 {
            let next = pos.map_or(0, |p| p + 1);
            if next >= n {
                pos = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                }
                if self.cw > max_avail {
                    // Skip the rounds where nobody available qualifies.
                    let k = (self.cw - max_avail + self.di - 1) / self.di;
                    self.cw -= k * self.di;
                    if self.cw <= 0 {
                        self.cw = max_avail;
                    }
                }
                continue;
            }
            pos = Some(next);
            let d = &dests[next];
            if i64::from(d.effective_weight()) >= self.cw && d.is_available() {
                self.cl = pos;
                return Some(next);
            }
        }
        None
    }

    /// As `ip_vs_wrr_dest_changed`: cursor to the head, the new gcd and max
    /// weight, and `cw` kept if still valid (re-aligned to the new gcd grid).
    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        let Some(t) = downcast::<WeightedRoundRobinTable>(table) else {
            return false;
        };
        self.di = t.di;
        self.mw = t.mw;
        self.cl = None;
        if self.cw > self.mw || self.cw <= 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
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

    fn wrr(dests: &[Dest], worker: usize, nworkers: usize) -> Box<dyn Scheduler> {
        compile("wrr", &SchedFlags::default(), dests)
            .unwrap()
            .cursor(worker, nworkers)
    }

    fn picks(s: &mut dyn Scheduler, dests: &[Dest], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| s.schedule(dests, &key(0)).unwrap())
            .collect()
    }

    #[test]
    fn kernel_sequence_for_4_3_2() {
        // ip_vs_wrr.c's comment example: weights a=4, b=3, c=2 give aababcabc.
        let dests = dests_with_weights(&[4, 3, 2]);
        let mut s = wrr(&dests, 0, 1);
        assert_eq!(picks(&mut *s, &dests, 9), vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn workers_start_at_their_phase_of_the_cycle() {
        // Nine workers over a cycle of nine: worker w starts at the w-th pick of
        // aababcabc and then follows the cycle from there.
        let dests = dests_with_weights(&[4, 3, 2]);
        let cycle = [0, 0, 1, 0, 1, 2, 0, 1, 2];
        for w in 0..9 {
            let mut s = wrr(&dests, w, 9);
            let expect: Vec<usize> = (0..18).map(|k| cycle[(w + k) % 9]).collect();
            assert_eq!(picks(&mut *s, &dests, 18), expect, "worker {w}");
        }
        // Three workers: phases 0, 3 and 6.
        let firsts: Vec<usize> = (0..3)
            .map(|w| wrr(&dests, w, 3).schedule(&dests, &key(0)).unwrap())
            .collect();
        assert_eq!(firsts, vec![0, 0, 0]);
        let seconds: Vec<Vec<usize>> = (0..3)
            .map(|w| picks(&mut *wrr(&dests, w, 3), &dests, 3))
            .collect();
        assert_eq!(seconds, vec![vec![0, 0, 1], vec![0, 1, 2], vec![0, 1, 2]]);
    }

    #[test]
    fn huge_weights_with_heaviest_overloaded_do_not_spin() {
        let mut dests = dests_with_weights(&[u32::MAX, 1, 2]);
        dests[0] = dests[0].clone().with_thresholds(1, 0);
        dests[0].counters.set(5, 0);
        let mut s = wrr(&dests, 0, 1);
        let seq = picks(&mut *s, &dests, 6);
        assert!(seq.iter().all(|&i| i != 0));
        assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 4);
        // Huge weights also start spread, found without walking the rounds.
        for w in 0..7 {
            let mut s = wrr(&dests, w, 7);
            assert!(matches!(s.schedule(&dests, &key(0)), Some(1 | 2)));
        }
    }

    #[test]
    fn retable_keeps_cw_and_realigns_to_the_new_gcd() {
        let dests = dests_with_weights(&[4, 3, 2]);
        let mut s = wrr(&dests, 0, 1);
        assert_eq!(picks(&mut *s, &dests, 3), vec![0, 0, 1]); // now in round cw = 3
        let t = compile("wrr", &SchedFlags::default(), &dests).unwrap();
        assert!(s.retable(&t, &dests));
        // Back to the head, still in round 3: a b (then round 2: a b c).
        assert_eq!(picks(&mut *s, &dests, 5), vec![0, 1, 0, 1, 2]);
        // Weights 6, 4: gcd 2, mw 5; cw 2 re-aligns to 3 (the grid 5, 3, 1).
        let even = dests_with_weights(&[6, 4]);
        let t = compile("wrr", &SchedFlags::default(), &even).unwrap();
        assert!(s.retable(&t, &even));
        assert_eq!(picks(&mut *s, &even, 5), vec![0, 1, 0, 1, 0]);
        let rr = compile("rr", &SchedFlags::default(), &even).unwrap();
        assert!(!s.retable(&rr, &even));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// sum(weights) picks hand each dest exactly its weight.
        #[test]
        fn exact_ratio_over_a_cycle(weights in prop::collection::vec(0u32..20, 1..10)) {
            let dests = dests_with_weights(&weights);
            let mut s = wrr(&dests, 0, 1);
            let total: u32 = weights.iter().sum();
            let mut count = vec![0u32; weights.len()];
            for _ in 0..total {
                count[s.schedule(&dests, &key(0)).unwrap()] += 1;
            }
            prop_assert_eq!(&count, &weights);
            if total == 0 {
                prop_assert_eq!(s.schedule(&dests, &key(0)), None);
            }
        }

        /// A cursor started at any phase follows the same cycle as worker 0,
        /// shifted: its picks are worker 0's from that phase on.
        #[test]
        fn every_phase_is_a_shift_of_the_cycle(weights in prop::collection::vec(0u32..7, 1..8),
                                               worker in 0usize..64, nworkers in 1usize..64) {
            let dests = dests_with_weights(&weights);
            let table = WeightedRoundRobinTable::new(&dests);
            let c = table.cycle() as usize;
            prop_assume!(c > 0);
            let phase = spread(worker, nworkers, c as u128) as usize;
            let reference = picks(&mut *wrr(&dests, 0, 1), &dests, phase + 2 * c);
            let shifted = picks(&mut *wrr(&dests, worker, nworkers), &dests, 2 * c);
            prop_assert_eq!(&shifted[..], &reference[phase..]);
        }

        /// N cursors over one table, picking in any interleaving: dest d's global
        /// count stays less than N * weight_d / gcd away from its ideal share.
        #[test]
        fn global_share_within_nworkers_reduced_weights(weights in prop::collection::vec(0u32..6, 1..8),
                                                        scale in 1u32..4,
                                                        nworkers in 1usize..9,
                                                        order in prop::collection::vec(any::<prop::sample::Index>(), 0..300)) {
            let weights: Vec<u32> = weights.iter().map(|w| w * scale).collect();
            let dests = dests_with_weights(&weights);
            let table = compile("wrr", &SchedFlags::default(), &dests).unwrap();
            let mut workers: Vec<Box<dyn Scheduler>> =
                (0..nworkers).map(|w| table.clone().cursor(w, nworkers)).collect();
            let g = weights.iter().map(|&w| u64::from(w)).fold(0, gcd).max(1) as i64;
            let v: Vec<i64> = weights.iter().map(|&w| i64::from(w) / g).collect();
            let cycle: i64 = v.iter().sum();
            let mut count = vec![0i64; dests.len()];
            let mut total = 0i64;
            for ix in &order {
                if let Some(i) = workers[ix.index(nworkers)].schedule(&dests, &key(0)) {
                    count[i] += 1;
                    total += 1;
                }
                for (i, &c) in count.iter().enumerate() {
                    // |c - total * v / cycle| < N * v, in integers.
                    prop_assert!((c * cycle - total * v[i]).abs() < nworkers as i64 * v[i] * cycle || (v[i] == 0 && c == 0),
                        "dest {} weight {} count {} of {}, {} workers", i, weights[i], c, total, nworkers);
                }
            }
        }
    }
}
