//! Never queue (ip_vs_nq.c): the first available dest with no active connection,
//! else shortest expected delay, `(active + 1) / weight`.

use crate::sed::sed_overhead;
use std::sync::Arc;

use crate::{is_table, Dest, FlowKey, SchedTable, Scheduler};

/// Both the (empty) table and the cursor: the pick depends only on the dests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NeverQueue;

/// Nothing to precompute: every pick reads the live counters.
impl SchedTable for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(NeverQueue)
    }
}

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<NeverQueue>(table)
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        let mut least: Option<(usize, u64, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.is_available() {
                continue;
            }
            if d.active_conns() == 0 {
                return Some(i);
            }
            let (doh, dw) = (sed_overhead(d), u64::from(d.effective_weight()));
            if least.is_none_or(|(_, loh, lw)| {
                u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
            }) {
                least = Some((i, doh, dw));
            }
        }
        least.map(|(i, _, _)| i)
    }
}
