//! Shortest expected delay (ip_vs_sed.c): the available dest with the smallest
//! `(active + 1) / weight`, compared by cross-multiplication; inactive connections
//! do not count. The first wins ties.

use crate::{least_weighted, Dest, FlowKey, Scheduler};

#[derive(Debug, Default)]
pub struct ShortestExpectedDelay;

/// `ip_vs_sed_dest_overhead`: active connections + 1.
pub(crate) fn sed_overhead(d: &Dest) -> u64 {
    u64::from(d.active_conns()) + 1
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        least_weighted(dests, sed_overhead)
    }
}
