//! Consistent hashing on a ring (DPVS ip_vs_conhash.c): each dest places virtual
//! nodes on a 64-bit ring, [`REPLICAS`] per unit of gcd-reduced weight (scaled down
//! so the ring stays within [`MAX_RING`] nodes); a flow goes to the first node
//! clockwise from its hash whose dest is available, so a down dest's flows spread
//! over its ring neighbours and nobody else's flows move.
//!
//! Node positions are `SipHash(KEY2, dest addr, dest port, replica)`. The flow hash
//! is `SipHash(KEY1, ...)` of, by [`HashTarget`]:
//! the source address (default, DPVS's `sip`), the source address and port
//! (`conhash-sport`), or the 5-tuple (`conhash-5tuple`; wins if both flags are set).
//! The ring is laid out from configured weights, so an inhibited or overloaded dest
//! keeps its nodes and is only skipped; weight-0 dests have none. The ring is the
//! table, shared by all workers; the cursor holds nothing else.

use std::sync::Arc;

use crate::hash::{addr_port_hash, five_tuple_hash, gcd, KEY1, KEY2};
use crate::{downcast, Dest, FlowKey, SchedFlags, SchedTable, Scheduler};

/// Virtual nodes per unit of (gcd-reduced) weight, as DPVS's `REPLICA`.
pub const REPLICAS: u64 = 160;
/// Upper bound on ring nodes; larger weight sums are scaled down.
pub const MAX_RING: u64 = 1 << 20;

/// What a flow is keyed by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashTarget {
    /// Source address (default).
    #[default]
    SourceAddr,
    /// Source address and port (`conhash-sport`).
    SourceAddrPort,
    /// proto, src, sport, dst, dport (`conhash-5tuple`).
    FiveTuple,
}

impl HashTarget {
    pub fn from_flags(f: &SchedFlags) -> HashTarget {
        if f.conhash_by_5tuple {
            HashTarget::FiveTuple
        } else if f.conhash_by_sport {
            HashTarget::SourceAddrPort
        } else {
            HashTarget::SourceAddr
        }
    }

    pub fn hash(self, key: &FlowKey) -> u64 {
        match self {
            HashTarget::SourceAddr => addr_port_hash(KEY1, &key.src, 0, 0),
            HashTarget::SourceAddrPort => addr_port_hash(KEY1, &key.src, key.sport, 0),
            HashTarget::FiveTuple => {
                five_tuple_hash(KEY1, key.proto, &key.src, key.sport, &key.dst, key.dport)
            }
        }
    }
}

/// conhash's table: the ring and what flows are keyed by.
#[derive(Debug, Default)]
pub struct ConHashTable {
    /// (position, dest index), sorted by position.
    ring: Vec<(u64, u32)>,
    target: HashTarget,
}

impl ConHashTable {
    pub fn new(target: HashTarget, dests: &[Dest]) -> ConHashTable {
        ConHashTable {
            ring: ring(dests),
            target,
        }
    }

    /// Number of virtual nodes on the ring.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }
}

/// The sorted ring of virtual nodes for `dests`.
fn ring(dests: &[Dest]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    let g = dests
        .iter()
        .map(|d| u64::from(d.weight))
        .filter(|&w| w > 0)
        .fold(0, gcd);
    if g == 0 || dests.len() > u32::MAX as usize {
        return ring;
    }
    let units: u64 = dests.iter().map(|d| u64::from(d.weight) / g).sum();
    // Scale so units * REPLICAS <= MAX_RING (every weighted dest keeps >= 1 node).
    let per_unit = (MAX_RING / units.max(1)).clamp(1, REPLICAS);
    for (i, d) in dests.iter().enumerate() {
        if d.weight == 0 {
            continue;
        }
        let nodes = ((u64::from(d.weight) / g).saturating_mul(per_unit)).clamp(1, MAX_RING);
        for r in 0..nodes {
            ring.push((addr_port_hash(KEY2, &d.addr, d.port, r as u32), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

impl SchedTable for ConHashTable {
    fn name(&self) -> &'static str {
        "conhash"
    }

    fn cursor(self: Arc<Self>, _worker: usize, _nworkers: usize) -> Box<dyn Scheduler> {
        Box::new(ConHash { table: self })
    }
}

/// conhash's per-worker scheduler: just the shared ring.
#[derive(Debug)]
pub struct ConHash {
    table: Arc<ConHashTable>,
}

impl Scheduler for ConHash {
    fn name(&self) -> &'static str {
        "conhash"
    }

    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize> {
        let ring = &self.table.ring;
        if ring.is_empty() || !dests.iter().any(Dest::is_available) {
            return None;
        }
        let h = self.table.target.hash(key);
        let start = ring.partition_point(|&(pos, _)| pos < h);
        let n = ring.len();
        (0..n)
            .map(|k| ring[(start + k) % n].1 as usize)
            .find(|&i| dests.get(i).is_some_and(Dest::is_available))
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

    #[test]
    fn nodes_proportional_to_weight() {
        let dests = dests_with_weights(&[2, 4, 0]);
        let t = Arc::new(ConHashTable::new(HashTarget::SourceAddr, &dests));
        assert_eq!(t.ring_len(), 3 * REPLICAS as usize);
        let mut s = t.cursor(0, 1);
        let mut c = [0u32; 3];
        for x in 0..30_000 {
            c[s.schedule(&dests, &key(x)).unwrap()] += 1;
        }
        assert_eq!(c[2], 0);
        let ratio = f64::from(c[1]) / f64::from(c[0]);
        assert!((1.6..2.5).contains(&ratio), "{c:?}");
    }

    #[test]
    fn flags_choose_target() {
        let f = SchedFlags::parse_str("conhash-sport").unwrap();
        assert_eq!(HashTarget::from_flags(&f), HashTarget::SourceAddrPort);
        let f = SchedFlags::parse_str("conhash-sport,conhash-5tuple").unwrap();
        assert_eq!(HashTarget::from_flags(&f), HashTarget::FiveTuple);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same source goes to the same dest (any port by default); when a dest
        /// goes down only its flows move.
        #[test]
        fn stable_and_minimal_disruption(n in 2usize..10, down in 0usize..10, seeds in prop::collection::vec(any::<u32>(), 1..40)) {
            let down = down % n;
            let mut dests = dests_with_weights(&vec![3; n]);
            let mut s = Arc::new(ConHashTable::new(HashTarget::SourceAddr, &dests)).cursor(0, 1);
            let before: Vec<usize> = seeds.iter().map(|&x| s.schedule(&dests, &key(x)).unwrap()).collect();
            for (&x, &b) in seeds.iter().zip(&before) {
                let mut k = key(x);
                k.sport = k.sport.wrapping_add(7);
                prop_assert_eq!(s.schedule(&dests, &k), Some(b));
            }
            dests[down].inhibited = true;
            for (&x, &b) in seeds.iter().zip(&before) {
                let a = s.schedule(&dests, &key(x)).unwrap();
                prop_assert!(a != down);
                if b != down { prop_assert_eq!(a, b); }
            }
        }
    }
}
