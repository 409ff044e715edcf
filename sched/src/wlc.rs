//! Weighted least connection (ip_vs_wlc.c), ipvsadm's default: the available dest
//! with the smallest `(active * 256 + inactive) / weight`, compared by
//! cross-multiplication (`loh * dw > doh * lw`, here in u128); the first wins ties.

use std::sync::Arc;

use crate::{is_table, least_weighted, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedLeastConn;

/// Nothing to precompute: every pick reads the live counters.
impl SchedTable for WeightedLeastConn {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(WeightedLeastConn)
    }
}

impl Scheduler for WeightedLeastConn {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<WeightedLeastConn>(table)
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        least_weighted(dests, Dest::conn_overhead)
    }
}
