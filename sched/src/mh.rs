//! Maglev hashing (ip_vs_mh.c, after Eisenbud et al., NSDI 2016): a lookup table of
//! prime size M (default [`MaglevTable::DEFAULT_SIZE`] = 65537) in which each dest
//! owns a share of the slots proportional to its weight. Each dest has a
//! permutation of the slots given by `offset = h1 % M` and `skip = h2 % (M - 1) + 1`
//! (two fixed-key SipHashes of its address and port); dests take turns claiming
//! their next free slot. As in ip_vs_mh.c, weights are divided by their gcd and
//! shifted right so the largest has at most `ilog2(M) / 2` bits; a dest then claims
//! `turns = (w / gcd) >> shift` (at least 1) slots per round. Removing one of N
//! dests remaps little more than the 1/N of flows that were on it.
//!
//! A flow's slot is `SipHash(KEY1, saddr [, sport with mh-port]) % M`. If the dest
//! there is unavailable: `None`, or with `mh-fallback` further slots are probed
//! (`mix64(hash + offset) % M` for offset = 1, 2, ..., at most M probes; the kernel
//! rehashes with SipHash instead, same idea, cheaper here). The table is laid out
//! from configured weights, so inhibited or overloaded dests keep their slots (a
//! health-check flap does not remap other flows, like the kernel's `last_weight`);
//! weight-0 dests get none.
//!
//! Kernel default M is 4093 (`CONFIG_IP_VS_MH_TAB_INDEX` 12); 65537 here gives
//! finer weight shares at 256 KiB per service, built once per configuration on
//! the control thread and shared by all workers (the cursor holds only the `Arc`).

use std::sync::Arc;

use crate::hash::{addr_port_hash, gcd, mix64, KEY1, KEY2};
use crate::{downcast, Dest, FlowKey, SchedTable, Scheduler};

const EMPTY: u32 = u32::MAX;

/// A built Maglev lookup table: slot -> dest index.
#[derive(Clone, Debug)]
pub struct MaglevTable {
    size: u32,
    entries: Vec<u32>,
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// The smallest prime >= `n` (and >= 2) that fits in u32 slots (at most 4294967291).
pub fn next_prime(n: u32) -> u32 {
    let mut p = n.max(2);
    while !is_prime(p) {
        p = match p.checked_add(1) {
            Some(q) => q,
            None => return 4_294_967_291,
        };
    }
    p
}

/// Probes tested per branch in [`next_free`] once the first probe failed.
const PROBE_GROUP: usize = 4;

/// (a + b) mod m for a, b < m without a branch: when t < m, t - m wraps above t.
#[inline]
fn add_mod(a: u64, b: u64, m: u64) -> u64 {
    let t = a + b;
    t.min(t.wrapping_sub(m))
}

/// The first free slot of the sequence `c, c + skip, c + 2 skip, ...` (mod `m`),
/// exactly the paper's probe loop; `skips[k]` is `(k + 1) * skip mod m`. While
/// the table is sparse the first probe usually wins (a well-predicted branch, so
/// the CPU runs ahead into the next claim). Later, mispredicted branches bound the
/// fill (the bitmap stays in L1), so four further slots are tested with one
/// branch and the first free one picked with bit arithmetic: ~10% faster for
/// many dests, and the same slot as probing one by one.
#[inline]
fn next_free(taken: &[u64], mut c: u64, skips: &[u32; PROBE_GROUP], m: u64) -> u64 {
    // `taken.len()` is a power of two: the mask lets the compiler drop bounds checks.
    let wmask = taken.len().wrapping_sub(1);
    let free = |c: u64| (!taken[(c >> 6) as usize & wmask] >> (c & 63)) & 1;
    if free(c) != 0 {
        return c;
    }
    loop {
        let mut slots = [0u64; PROBE_GROUP];
        let mut mask = 0u64;
        for k in 0..PROBE_GROUP {
            slots[k] = add_mod(c, u64::from(skips[k]), m);
            mask |= free(slots[k]) << k;
        }
        if mask != 0 {
            return slots[mask.trailing_zeros() as usize % PROBE_GROUP];
        }
        c = slots[PROBE_GROUP - 1];
    }
}

impl MaglevTable {
    /// IPVS-style default table size (a prime).
    pub const DEFAULT_SIZE: u32 = 65537;

    /// Build the table for `dests` with `size` slots, rounded up to a prime (a
    /// prime size makes every skip a full permutation). Weights are the configured
    /// ones; weight-0 dests get no slot. With no weighted dest every slot is empty.
    pub fn build(dests: &[Dest], size: u32) -> MaglevTable {
        let m = next_prime(size);
        let m64 = u64::from(m);
        let mut entries = vec![EMPTY; m as usize];

        let g = dests
            .iter()
            .map(|d| u64::from(d.weight))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        if g == 0 || dests.len() >= EMPTY as usize {
            return MaglevTable { size: m, entries };
        }
        let max = dests.iter().map(|d| u64::from(d.weight)).max().unwrap_or(0) / g;
        // ip_vs_mh_shift_weight: keep max turns within IP_VS_MH_TAB_BITS bits.
        let tab_bits = m.ilog2() / 2;
        let shift = (64 - max.leading_zeros()).saturating_sub(tab_bits);

        struct Setup {
            idx: u32,
            /// Next slot of this dest's permutation to try.
            perm: u32,
            /// `(k + 1) * skip mod m`: slots stay below 2^32.
            skips: [u32; PROBE_GROUP],
            turns: u32,
        }
        let mut setup: Vec<Setup> = dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.weight > 0)
            .map(|(i, d)| Setup {
                idx: i as u32,
                perm: (addr_port_hash(KEY1, &d.addr, d.port, 0) % m64) as u32,
                skips: {
                    let skip = if m64 > 1 {
                        addr_port_hash(KEY2, &d.addr, d.port, 0) % (m64 - 1) + 1
                    } else {
                        0
                    };
                    let mut acc = 0;
                    std::array::from_fn(|_| {
                        acc = add_mod(acc, skip, m64);
                        acc as u32
                    })
                },
                turns: ((u64::from(d.weight) / g) >> shift).clamp(1, u64::from(m)) as u32,
            })
            .collect();

        // Occupancy bitmap: 8 KiB for M = 65537, stays in L1 during the probes.
        let mut taken = vec![0u64; (m as usize).div_ceil(64).next_power_of_two()];
        let mut filled: u64 = 0;
        let wmask = taken.len() - 1;
        'fill: loop {
            for ds in setup.iter_mut() {
                for _ in 0..ds.turns {
                    let c = next_free(&taken, u64::from(ds.perm), &ds.skips, m64);
                    // The slot just claimed is taken: start the next claim one step on.
                    ds.perm = add_mod(c, u64::from(ds.skips[0]), m64) as u32;
                    taken[(c >> 6) as usize & wmask] |= 1 << (c & 63);
                    entries[c as usize] = ds.idx;
                    filled += 1;
                    if filled == m64 {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable { size: m, entries }
    }

    /// Number of slots (a prime).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The dest index in `slot` (taken modulo the size).
    pub fn slot(&self, slot: u64) -> Option<usize> {
        let e = self.entries[(slot % u64::from(self.size)) as usize];
        (e != EMPTY).then_some(e as usize)
    }

    /// The dest index of every slot, in slot order.
    pub fn entries(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.entries
            .iter()
            .map(|&e| (e != EMPTY).then_some(e as usize))
    }
}

/// mh's table: the [`MaglevTable`] plus the flow-key options.
#[derive(Debug)]
pub struct MaglevHashTable {
    table: MaglevTable,
    fallback: bool,
    port: bool,
}

impl MaglevHashTable {
    /// The table for `dests` with [`MaglevTable::DEFAULT_SIZE`] slots.
    pub fn new(fallback: bool, port: bool, dests: &[Dest]) -> MaglevHashTable {
        MaglevHashTable::with_size(fallback, port, dests, MaglevTable::DEFAULT_SIZE)
    }

    /// As `new` with another table size (rounded up to a prime).
    pub fn with_size(fallback: bool, port: bool, dests: &[Dest], size: u32) -> MaglevHashTable {
        MaglevHashTable {
            table: MaglevTable::build(dests, size),
            fallback,
            port,
        }
    }

    pub fn table(&self) -> &MaglevTable {
        &self.table
    }
}

impl SchedTable for MaglevHashTable {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(MaglevHash { table: self })
    }
}

/// mh's per-worker scheduler: just the shared table.
#[derive(Debug)]
pub struct MaglevHash {
    table: Arc<MaglevHashTable>,
}

impl Scheduler for MaglevHash {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let MaglevHashTable {
            table,
            fallback,
            port,
        } = &*self.table;
        let port = if *port { key.sport } else { 0 };
        let h = addr_port_hash(KEY1, &key.src, port, 0);
        let usable = |slot: u64| {
            table
                .slot(slot)
                .filter(|&i| dests.get(i).is_some_and(Dest::is_available))
        };
        table.slot(h)?;
        if let Some(i) = usable(h) {
            return Some(i);
        }
        if !fallback || !dests.iter().any(Dest::is_available) {
            return None;
        }
        (1..=u64::from(table.size)).find_map(|off| usable(mix64(h.wrapping_add(off))))
    }

    fn retable(&mut self, table: &Arc<dyn SchedTable>, _dests: &[Dest]) -> bool {
        let Some(t) = downcast(table) else {
            return false;
        };
        self.table = t;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_util::*;
    use proptest::prelude::*;

    fn counts(t: &MaglevTable, n: usize) -> Vec<u64> {
        let mut c = vec![0u64; n];
        for i in t.entries().flatten() {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn sizes_are_prime() {
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(4093), 4093);
        assert_eq!(next_prime(0), 2);
        assert_eq!(next_prime(u32::MAX), 4_294_967_291);
        let t = MaglevTable::build(&dests_with_weights(&[1, 2]), 100);
        assert_eq!(t.size(), 101);
        assert!(t.entries().all(|e| e.is_some()));
    }

    #[test]
    fn empty_and_all_zero_tables() {
        let t = MaglevTable::build(&[], 7);
        assert!(t.entries().all(|e| e.is_none()));
        let t = MaglevTable::build(&dests_with_weights(&[0, 0]), 7);
        assert!(t.entries().all(|e| e.is_none()));
    }

    #[test]
    fn build_1000_dests_timing() {
        let dests = dests_with_weights(&vec![1; 1000]);
        // Best of 20: the figure is the build cost, not the machine's other load.
        let per = (0..20)
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(MaglevTable::build(&dests, MaglevTable::DEFAULT_SIZE));
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        println!("maglev build: 1000 dests, M=65537: {per:?} per table");
    }

    /// The paper's fill loop, one probe at a time, as ip_vs_mh_populate writes it.
    fn naive_build(dests: &[Dest], m: u32) -> Vec<Option<usize>> {
        let m = u64::from(m);
        let g = dests
            .iter()
            .map(|d| u64::from(d.weight))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let mut table = vec![None; m as usize];
        if g == 0 {
            return table;
        }
        let max = dests.iter().map(|d| u64::from(d.weight)).max().unwrap() / g;
        let shift = (64 - max.leading_zeros()).saturating_sub((m as u32).ilog2() / 2);
        let mut ds: Vec<(usize, u64, u64, u64)> = dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.weight > 0)
            .map(|(i, d)| {
                let offset = addr_port_hash(KEY1, &d.addr, d.port, 0) % m;
                let skip = addr_port_hash(KEY2, &d.addr, d.port, 0) % (m - 1) + 1;
                (i, offset, skip, ((u64::from(d.weight) / g) >> shift).max(1))
            })
            .collect();
        let mut n = 0;
        loop {
            for (i, perm, skip, turns) in ds.iter_mut() {
                for _ in 0..*turns {
                    while table[*perm as usize].is_some() {
                        *perm = (*perm + *skip) % m;
                    }
                    table[*perm as usize] = Some(*i);
                    n += 1;
                    if n == m {
                        return table;
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The grouped probing builds exactly the table of the one-probe-at-a-time loop.
        #[test]
        fn grouped_probe_matches_paper_loop(weights in prop::collection::vec(0u32..300, 0..40), size in prop::sample::select(vec![2u32, 3, 251, 4093])) {
            let dests = dests_with_weights(&weights);
            let t = MaglevTable::build(&dests, size);
            let got: Vec<Option<usize>> = t.entries().collect();
            prop_assert_eq!(got, naive_build(&dests, size));
        }

        /// Each dest owns its weighted share of slots within 1% when
        /// M >= 100 x the total turns of a round.
        #[test]
        fn weighted_shares_within_one_percent(weights in prop::collection::vec(0u32..8, 1..60)) {
            let dests = dests_with_weights(&weights);
            let t = MaglevTable::build(&dests, MaglevTable::DEFAULT_SIZE);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let c = counts(&t, weights.len());
            for (i, &w) in weights.iter().enumerate() {
                if total == 0 || w == 0 {
                    prop_assert_eq!(c[i], 0);
                    continue;
                }
                let share = 65537.0 * w as f64 / total as f64;
                let err = (c[i] as f64 - share).abs() / share;
                prop_assert!(err <= 0.01, "dest {} weight {} owns {} of share {:.1}", i, w, c[i], share);
            }
        }

        /// Removing one of N equal dests moves, among slots that were not on it, at
        /// most 1/N + 2% of the table.
        #[test]
        fn removal_remaps_about_one_nth(n in 3usize..60, gone in 0usize..60) {
            let gone = gone % n;
            let dests = dests_with_weights(&vec![1; n]);
            let before = MaglevTable::build(&dests, MaglevTable::DEFAULT_SIZE);
            let mut rest = dests.clone();
            rest.remove(gone);
            let after = MaglevTable::build(&rest, MaglevTable::DEFAULT_SIZE);
            let id = |d: &Dest| (d.addr, d.port);
            let mut moved = 0u64;
            for (b, a) in before.entries().zip(after.entries()) {
                let (b, a) = (b.unwrap(), a.unwrap());
                if b != gone && id(&dests[b]) != id(&rest[a]) {
                    moved += 1;
                }
            }
            let frac = moved as f64 / 65537.0;
            prop_assert!(frac <= 1.0 / n as f64 + 0.02, "n {} moved {:.4}", n, frac);
        }

        /// A source maps to the same dest while the set is unchanged; with fallback a
        /// down dest's sources go elsewhere and the others stay.
        #[test]
        fn stable_and_fallback(n in 2usize..10, down in 0usize..10, seeds in prop::collection::vec(any::<u32>(), 1..30)) {
            let down = down % n;
            let mut dests = dests_with_weights(&vec![1; n]);
            let mut s = Arc::new(MaglevHashTable::with_size(true, false, &dests, 4093)).cursor(0, 1);
            let before: Vec<usize> = seeds.iter().map(|&x| s.schedule(&dests, &key(x)).unwrap()).collect();
            for (&x, &b) in seeds.iter().zip(&before) {
                let mut k = key(x);
                k.sport = k.sport.wrapping_add(99);
                prop_assert_eq!(s.schedule(&dests, &k), Some(b));
            }
            dests[down].weight = 0;
            for (&x, &b) in seeds.iter().zip(&before) {
                let after = s.schedule(&dests, &key(x)).unwrap();
                prop_assert!(after != down);
                if b != down { prop_assert_eq!(after, b); }
            }
        }
    }
}
