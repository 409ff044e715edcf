//! Weighted failover (ip_vs_fo.c): always the available dest with the highest
//! weight; the first one in the list wins ties. Lower-weight dests are standbys.

use crate::{Dest, FlowKey, Scheduler};

#[derive(Debug, Default)]
pub struct WeightedFailover;

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&mut self, _dests: &[Dest]) {}

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
