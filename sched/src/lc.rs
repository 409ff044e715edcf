//! Least connection (ip_vs_lc.c): the available dest with the smallest overhead
//! `active * 256 + inactive`; the first one wins ties. Weights only gate
//! availability (weight 0 gets nothing) and do not scale the load.

use std::sync::Arc;

use crate::{is_table, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastConn;

/// Nothing to precompute: every pick reads the live counters.
impl SchedTable for LeastConn {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(LeastConn)
    }
}

impl Scheduler for LeastConn {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<LeastConn>(table)
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.is_available() {
                continue;
            }
            let doh = d.conn_overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}
