//! Weighted failover (ip_vs_fo.c): always the available dest with the highest
//! weight; the first one in the list wins ties. Lower-weight dests are standbys.

use std::sync::Arc;

use crate::{is_table, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedFailover;

/// Nothing to precompute: overload comes and goes between snapshots, so the
/// highest available weight is found per pick.
impl SchedTable for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(WeightedFailover)
    }
}

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<WeightedFailover>(table)
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, d) in dests.iter().enumerate() {
            let w = d.effective_weight();
            if best.is_none_or(|(_, hw)| w > hw) && d.is_available() {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }
}
