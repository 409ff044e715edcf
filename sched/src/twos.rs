//! Weighted random twos choice (ip_vs_twos.c, the "power of two choices"): two
//! dests are drawn at random, each with probability proportional to its weight,
//! and the one with the lower `overhead / weight` wins (overhead as
//! `ip_vs_dest_conn_overhead`, `active * 256 + inactive`), compared as the kernel
//! does, `weight2 * overhead1 > weight1 * overhead2` (here in u128); the first
//! draw wins ties. Unavailable dests (quiescent, inhibited, over thresholds) take
//! no part in the draw.
//!
//! As in the kernel each draw is below `total_weight + 1` and walks the dests
//! subtracting weights until it reaches 0 or less, so the first available dest
//! has one extra chance in `total_weight + 1` (negligible unless weights are
//! small).
//!
//! The randomness is the only state: a SplitMix64 generator in each worker's
//! cursor, seeded from a fixed constant and the worker index, so workers draw
//! different sequences and tests are reproducible. The table is empty (the total
//! weight depends on availability, known only at pick time).

use std::sync::Arc;

use crate::hash::mix64;
use crate::{is_table, Dest, FlowKey, SchedTable, Scheduler};

/// Seed of worker 0's generator (any constant; fixed for reproducibility).
const SEED: u64 = 0x7477_6f73_5eed_0001;
/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// twos' table: nothing is a function of the configuration alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct TwosTable;

impl SchedTable for TwosTable {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn cursor(self: Arc<Self>, worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(Twos::seeded(worker as u64))
    }
}

/// twos' cursor: this worker's random state.
#[derive(Debug, Clone)]
pub struct Twos {
    state: u64,
}

impl Twos {
    /// A cursor whose draws are fixed by `seed` (the worker index in `cursor`).
    pub fn seeded(seed: u64) -> Twos {
        Twos {
            state: mix64(SEED ^ seed.wrapping_mul(GAMMA)),
        }
    }

    /// SplitMix64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..bound` (`bound` > 0) by multiply-shift: the bias, below
    /// `bound / 2^64`, is far under anything a load balancer could notice.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// The twos pick given a source of draws (`draw(bound)` uniform in `0..bound`).
pub(crate) fn choose(dests: &[Dest], mut draw: impl FnMut(u64) -> u64) -> Option<usize> {
    let total = dests
        .iter()
        .filter(|d| d.is_available())
        .fold(0u64, |t, d| {
            t.saturating_add(u64::from(d.effective_weight()))
        });
    if total == 0 {
        return None;
    }
    let bound = total.saturating_add(1);
    let (r1, r2) = (draw(bound), draw(bound));
    let (mut c1, mut c2, mut last) = (None, None, None);
    let mut cum = 0u64;
    for (i, d) in dests.iter().enumerate() {
        if !d.is_available() {
            continue;
        }
        cum = cum.saturating_add(u64::from(d.effective_weight()));
        last = Some(i);
        if c1.is_none() && cum >= r1 {
            c1 = Some(i);
        }
        if c2.is_none() && cum >= r2 {
            c2 = Some(i);
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    // Both draws land unless another worker's connections overloaded a dest
    // between the two walks; then fall back to what is available now.
    let first = c1.or(c2).or(last)?;
    let Some(second) = c2 else {
        return Some(first);
    };
    let load = |i: usize| {
        let d: &Dest = &dests[i];
        (
            u128::from(d.conn_overhead()),
            u128::from(d.effective_weight()),
        )
    };
    let ((oh1, w1), (oh2, w2)) = (load(first), load(second));
    Some(if w2 * oh1 > w1 * oh2 { second } else { first })
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(&mut self, dests: &[Dest], _key: &FlowKey) -> Option<usize> {
        choose(dests, |bound| self.below(bound))
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        is_table::<TwosTable>(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;

    /// Pick counts over `n` schedules of a cursor seeded with `seed`.
    fn shares(dests: &[Dest], seed: u64, n: u32) -> Vec<u32> {
        let mut s = Twos::seeded(seed);
        let mut c = vec![0u32; dests.len()];
        for _ in 0..n {
            c[s.schedule(dests, &key(0)).unwrap()] += 1;
        }
        c
    }

    fn assert_shares(c: &[u32], expect: &[f64], n: u32) {
        for (i, (&got, &p)) in c.iter().zip(expect).enumerate() {
            let share = f64::from(got) / f64::from(n);
            assert!(
                (share - p).abs() < 0.01,
                "dest {i}: {share:.4} vs {p:.4} ({c:?})"
            );
        }
    }

    #[test]
    fn equal_loads_share_by_weight() {
        let n = 200_000;
        // Idle dests: the first draw always stands; kernel odds (w + first) / (T + 1).
        let dests = dests_with_weights(&[1, 2, 3, 4]);
        let expect: Vec<f64> = [2.0, 2.0, 3.0, 4.0].iter().map(|w| w / 11.0).collect();
        assert_shares(&shares(&dests, 1, n), &expect, n);
        // Larger weights, loads proportional to weight: the extra chance vanishes.
        let dests = dests_with_weights(&[100, 200, 300, 0, 400]);
        for d in &dests {
            d.counters.set(d.weight / 10, d.weight / 5);
        }
        let expect = [0.1, 0.2, 0.3, 0.0, 0.4];
        assert_shares(&shares(&dests, 2, n), &expect, n);
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let dests = dests_with_weights(&[1, 1]);
        dests[1].counters.set(10, 0);
        // Draws 0 and 1 land on dest 0, 2 on dest 1 (total 2, bound 3).
        for (r1, r2, expect) in [(2, 0, 0), (0, 2, 0), (1, 1, 0), (2, 2, 1)] {
            let mut draws = [r1, r2].into_iter();
            let got = choose(&dests, |b| {
                assert_eq!(b, 3);
                draws.next().unwrap()
            });
            assert_eq!(got, Some(expect), "draws {r1} {r2}");
        }
        // So the loaded dest gets only (1/3)^2 of new connections.
        let c = shares(&dests, 3, 90_000);
        assert!((9_000..11_000).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn workers_draw_differently_and_reproducibly() {
        let dests = dests_with_weights(&[1; 16]);
        let run = |w: usize| -> Vec<usize> {
            let mut s = Arc::new(TwosTable).cursor(w, 4);
            (0..32)
                .map(|_| s.schedule(&dests, &key(0)).unwrap())
                .collect()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(0), run(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Never an unavailable dest; None only when nothing is available; and for
        /// any two draws, the drawn dest with the lower overhead / weight (first
        /// draw on ties), found by a brute-force reading of the walk.
        #[test]
        fn picks_the_better_of_the_two_drawn(spec in prop::collection::vec((0u32..6, 0u32..5, 0u32..5, any::<bool>()), 0..10),
                                             r1 in any::<u64>(), r2 in any::<u64>()) {
            let weights: Vec<u32> = spec.iter().map(|s| s.0).collect();
            let mut dests = dests_with_weights(&weights);
            for (d, &(_, a, ia, inhibited)) in dests.iter_mut().zip(&spec) {
                d.counters.set(a, ia);
                d.inhibited = inhibited;
            }
            let avail: Vec<usize> = (0..dests.len()).filter(|&i| dests[i].is_available()).collect();
            let total: u64 = avail.iter().map(|&i| u64::from(weights[i])).sum();
            let mut draws = [r1, r2].into_iter();
            let got = choose(&dests, |b| draws.next().unwrap() % b);
            if total == 0 {
                prop_assert_eq!(got, None);
                return Ok(());
            }
            // The dest a draw r lands on: the first whose running weight sum reaches r.
            let lands = |r: u64| {
                let mut cum = 0;
                avail.iter().copied().find(|&i| { cum += u64::from(weights[i]); cum >= r }).unwrap()
            };
            let (a, b) = (lands(r1 % (total + 1)), lands(r2 % (total + 1)));
            let cost = |i: usize| (u128::from(dests[i].conn_overhead()), u128::from(weights[i]));
            let ((oa, wa), (ob, wb)) = (cost(a), cost(b));
            let expect = if ob * wa < oa * wb { b } else { a };
            prop_assert_eq!(got, Some(expect));
            prop_assert!(dests[expect].is_available());
        }
    }
}
