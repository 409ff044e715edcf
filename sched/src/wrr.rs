//! Weighted round robin (ip_vs_wrr.c): the interleaved sequence driven by a current
//! weight `cw` that steps down by the gcd of the weights from `mw = max - (gcd - 1)`
//! each time the cursor passes the list head; a dest is picked when its weight is
//! `>= cw`. Over one cycle of `sum(weights) / gcd` picks each dest is picked exactly
//! `weight / gcd` times.
//!
//! Difference from the kernel: when the heaviest dests are unavailable (overloaded
//! or inhibited without a new snapshot), rounds in which no available dest can
//! qualify are skipped arithmetically instead of being walked one by one, so a
//! pick is O(n) even with huge weights. The resulting sequence is the same.

use crate::hash::gcd;
use crate::{Dest, FlowKey, Scheduler};

#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Dest picked last; `None` is the list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i64,
    /// Maximum weight minus (gcd - 1).
    mw: i64,
    /// gcd of the positive weights (1 if none).
    di: i64,
    /// Number of dests at the last update.
    n: usize,
}

impl WeightedRoundRobin {
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin {
            di: 1,
            ..Default::default()
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    /// As `ip_vs_wrr_dest_changed`: cursor to the head, new gcd and max weight,
    /// and `cw` kept if still valid (re-aligned to the new gcd grid).
    fn update(&mut self, dests: &[Dest]) {
        let g = dests
            .iter()
            .map(|d| u64::from(d.effective_weight()))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let max = dests
            .iter()
            .map(|d| i64::from(d.effective_weight()))
            .max()
            .unwrap_or(0);
        self.di = if g == 0 { 1 } else { g as i64 };
        self.mw = max - (self.di - 1);
        self.cl = None;
        self.n = dests.len();
        if self.cw > self.mw || self.cw <= 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let n = dests.len();
        let max_avail = dests
            .iter()
            .filter(|d| d.is_available())
            .map(|d| i64::from(d.effective_weight()))
            .max()?;
        if n != self.n || self.mw <= 0 {
            self.update(dests);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_sequence_for_4_3_2() {
        // ip_vs_wrr.c's comment example: weights a=4, b=3, c=2 give aababcabc.
        let dests = dests_with_weights(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::new();
        s.update(&dests);
        let seq: Vec<usize> = (0..9)
            .map(|_| s.schedule(&dests, &key(0)).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn huge_weights_with_heaviest_overloaded_do_not_spin() {
        let mut dests = dests_with_weights(&[u32::MAX, 1, 2]);
        dests[0] = dests[0].clone().with_thresholds(1, 0);
        dests[0].counters.set(5, 0);
        let mut s = WeightedRoundRobin::new();
        s.update(&dests);
        let seq: Vec<usize> = (0..6)
            .map(|_| s.schedule(&dests, &key(0)).unwrap())
            .collect();
        assert!(seq.iter().all(|&i| i != 0));
        assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// sum(weights) picks hand each dest exactly its weight.
        #[test]
        fn exact_ratio_over_a_cycle(weights in prop::collection::vec(0u32..20, 1..10)) {
            let dests = dests_with_weights(&weights);
            let mut s = WeightedRoundRobin::new();
            s.update(&dests);
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
    }
}
