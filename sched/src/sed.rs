//! Shortest expected delay (ip_vs_sed.c): the available dest with the smallest
//! `(active + 1) / weight`, compared by cross-multiplication; inactive connections
//! do not count. The first wins ties.

use std::sync::Arc;

use crate::{is_table, least_weighted, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestExpectedDelay;

/// `ip_vs_sed_dest_overhead`: active connections + 1.
pub(crate) fn sed_overhead(d: &Dest) -> u64 {
    u64::from(d.active_conns()) + 1
}

/// Nothing to precompute: every pick reads the live counters.
impl SchedTable for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(ShortestExpectedDelay)
    }
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<ShortestExpectedDelay>(table)
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        least_weighted(dests, sed_overhead)
    }
}
