//! Least connection (ip_vs_lc.c): the available dest with the smallest overhead
//! `active * 256 + inactive`; the first one wins ties. Weights only gate
//! availability (weight 0 gets nothing) and do not scale the load.

use crate::{Dest, FlowKey, Scheduler};

#[derive(Debug, Default)]
pub struct LeastConn;

impl Scheduler for LeastConn {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn update(&mut self, _dests: &[Dest]) {}

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
