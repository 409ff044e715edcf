//! Weighted least connection (ip_vs_wlc.c), ipvsadm's default: the available dest
//! with the smallest `(active * 256 + inactive) / weight`, compared by
//! cross-multiplication (`loh * dw > doh * lw`, here in u128); the first wins ties.

use crate::{least_weighted, Dest, FlowKey, Scheduler};

#[derive(Debug, Default)]
pub struct WeightedLeastConn;

impl Scheduler for WeightedLeastConn {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        least_weighted(dests, Dest::conn_overhead)
    }
}
