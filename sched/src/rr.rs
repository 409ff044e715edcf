//! Round robin (ip_vs_rr.c): the next available dest after the last one picked,
//! wrapping; quiescent, inhibited and overloaded dests are skipped.

use crate::{Dest, FlowKey, Scheduler};

/// Round-robin cursor: the index picked last (`None` = list head, as `sched_data`).
#[derive(Debug, Default)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn update(&mut self, dests: &[Dest]) {
        // As ip_vs_rr_del_dest: a cursor past the end goes back to the head.
        if self.last.is_some_and(|l| l >= dests.len()) {
            self.last = None;
        }
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let start = self.last.map_or(0, |l| (l + 1) % n);
        for k in 0..n {
            let i = (start + k) % n;
            if dests[i].is_available() {
                self.last = Some(i);
                return Some(i);
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Over k full cycles every available dest is picked exactly k times, in order,
        /// and weight-0 dests never.
        #[test]
        fn cycles_evenly_and_skips_weight_zero(weights in prop::collection::vec(0u32..3, 1..12), k in 1usize..4) {
            let dests = dests_with_weights(&weights);
            let mut s = RoundRobin::new();
            s.update(&dests);
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
    }
}
