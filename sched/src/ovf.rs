//! Weighted overflow (ip_vs_ovf.c): all new connections go to the available dest
//! with the highest weight until its active connections exceed its weight, then
//! overflow to the next highest; the first in the list wins ties. Only active
//! connections count (as in the kernel, so it suits TCP better than UDP), and
//! weight is a connection budget, not a share. A dest is skipped when it is
//! unavailable (quiescent, inhibited or over its thresholds, this crate's rules
//! for the kernel's `IP_VS_DEST_F_OVERLOAD` and weight 0) or when
//! `activeconns > weight`.

use std::sync::Arc;

use crate::{is_table, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedOverflow;

/// Nothing to precompute: active connections move with every pick.
impl SchedTable for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(WeightedOverflow)
    }
}

impl Scheduler for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, d) in dests.iter().enumerate() {
            let w = d.effective_weight();
            if !d.is_available() || d.active_conns() > w {
                continue;
            }
            if best.is_none_or(|(_, hw)| w > hw) {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<WeightedOverflow>(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;

    #[test]
    fn fills_the_heaviest_then_overflows() {
        let dests = dests_with_weights(&[2, 5, 5, 3]);
        let mut s = WeightedOverflow;
        // Dest 1 (first of the two 5s) takes connections while active <= 5: six.
        for active in 0..=5 {
            dests[1].counters.set(active, 0);
            assert_eq!(s.schedule(&dests, &key(0)), Some(1), "active {active}");
        }
        // Then dest 2 (the other 5), then 3, then 0.
        dests[1].counters.set(6, 0);
        assert_eq!(s.schedule(&dests, &key(0)), Some(2));
        dests[2].counters.set(6, 0);
        assert_eq!(s.schedule(&dests, &key(0)), Some(3));
        dests[3].counters.set(4, 0);
        assert_eq!(s.schedule(&dests, &key(0)), Some(0));
        // Inactive connections do not count.
        dests[0].counters.set(0, 1000);
        assert_eq!(s.schedule(&dests, &key(0)), Some(0));
        // Everybody over budget: nobody.
        dests[0].counters.set(3, 0);
        assert_eq!(s.schedule(&dests, &key(0)), None);
        // A connection on dest 1 ends: back to it.
        dests[1].counters.set(5, 0);
        assert_eq!(s.schedule(&dests, &key(0)), Some(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The pick is the first of the highest-weight available dests within their
        /// budget; None exactly when there is no such dest.
        #[test]
        fn highest_weight_within_budget(spec in prop::collection::vec((0u32..6, 0u32..8, any::<bool>()), 0..10)) {
            let weights: Vec<u32> = spec.iter().map(|s| s.0).collect();
            let mut dests = dests_with_weights(&weights);
            for (d, &(_, active, inhibited)) in dests.iter_mut().zip(&spec) {
                d.counters.set(active, 7);
                d.inhibited = inhibited;
            }
            let ok: Vec<usize> = (0..dests.len())
                .filter(|&i| !spec[i].2 && spec[i].0 > 0 && spec[i].1 <= spec[i].0)
                .collect();
            let top = ok.iter().map(|&i| spec[i].0).max();
            let expect = ok.iter().copied().find(|&i| Some(spec[i].0) == top);
            prop_assert_eq!(WeightedOverflow.schedule(&dests, &key(0)), expect);
        }
    }
}
