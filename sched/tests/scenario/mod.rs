//! A deterministic workload for the golden test: dest sets with every kind of
//! unusable dest, connection counters moving between picks, configuration
//! snapshots (dests leaving, joining, reweighted, inhibited) and the clock moving.
//! It knows nothing of the scheduler API, so the same steps could drive the
//! pre-split `build`/`update` schedulers that recorded `golden/picks.txt` and the
//! table/cursor split that must reproduce them.

use sched::{Dest, FlowKey};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One step of a run.
pub enum Step {
    /// Schedule a new connection for this flow and record the pick.
    Pick(FlowKey),
    /// A new configuration snapshot; counters of dests that stay are shared.
    Config(Vec<Dest>),
    /// The clock, in seconds.
    Advance(u64),
}

/// SplitMix64: enough randomness for a fixed workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WEIGHTS: &[u32] = &[0, 1, 1, 2, 2, 3, 3, 5, 8, 12, 40];

fn dest(rng: &mut Rng, id: u32) -> Dest {
    let addr = if id % 3 == 2 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, id as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 2, (id >> 8) as u8, id as u8))
    };
    let mut d = Dest::new(
        addr,
        8000 + (id % 3) as u16,
        WEIGHTS[rng.below(WEIGHTS.len() as u64) as usize],
    );
    match rng.below(8) {
        0 => d.inhibited = true,
        1 => d = d.with_thresholds(1 + rng.below(12) as u32, rng.below(4) as u32),
        _ => {}
    }
    d.counters.set(rng.below(12) as u32, rng.below(12) as u32);
    d
}

fn flow(rng: &mut Rng) -> FlowKey {
    // A small pool of clients and VIPs so hashes and lblc bindings repeat.
    let c = rng.below(24) as u32;
    FlowKey::new(
        if c.is_multiple_of(5) { 17 } else { 6 },
        IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + c * 7919)),
        1024 + rng.below(4) as u16,
        IpAddr::V4(Ipv4Addr::new(1, 1, 1, rng.below(4) as u8)),
        80,
    )
}

/// Every dest observes its counters once, as the dataplane's accounting would, so
/// the overload flag's hysteresis depends on the workload only, not on how often a
/// scheduler happens to look.
fn observe(dests: &[Dest]) {
    for d in dests {
        d.is_overloaded();
    }
}

/// The connection just scheduled to `dests[i]` counts against it (as the
/// dataplane's accounting does), so the least-load schedulers move on.
pub fn connected(dests: &[Dest], i: usize, n: usize) {
    let c = &dests[i].counters;
    if n.is_multiple_of(3) {
        c.set(dests[i].active_conns(), dests[i].inactive_conns() + 1);
    } else {
        c.set(dests[i].active_conns() + 1, dests[i].inactive_conns());
    }
    observe(dests);
}

/// The initial dest set and the steps of run `seed`.
pub fn run(seed: u64, picks: usize) -> (Vec<Dest>, Vec<Step>) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
    let mut next_id = 0u32;
    let mut cur: Vec<Dest> = (0..1 + rng.below(10))
        .map(|_| {
            next_id += 1;
            dest(&mut rng, next_id)
        })
        .collect();
    observe(&cur);
    let initial = cur.clone();
    let mut steps = Vec::new();
    let mut now = 0u64;
    let mut done = 0;
    while done < picks {
        match rng.below(40) {
            0..=4 if !cur.is_empty() => {
                // Connections end: a dest's counts fall.
                let i = rng.below(cur.len() as u64) as usize;
                let d = &cur[i];
                d.counters.set(d.active_conns() / 2, d.inactive_conns() / 3);
                observe(&cur);
            }
            10 => {
                let mut next: Vec<Dest> = cur.clone();
                match rng.below(5) {
                    0 if !next.is_empty() => {
                        next.remove(rng.below(next.len() as u64) as usize);
                    }
                    1 => {
                        next_id += 1;
                        let d = dest(&mut rng, next_id);
                        let at = rng.below(next.len() as u64 + 1) as usize;
                        next.insert(at, d);
                    }
                    2 if !next.is_empty() => {
                        let i = rng.below(next.len() as u64) as usize;
                        next[i].weight = WEIGHTS[rng.below(WEIGHTS.len() as u64) as usize];
                    }
                    3 if !next.is_empty() => {
                        let i = rng.below(next.len() as u64) as usize;
                        next[i].inhibited = !next[i].inhibited;
                    }
                    _ => {
                        // Same dests, reversed: bindings by address must follow.
                        next.reverse();
                    }
                }
                // Cloned dests share their counters (an Arc), as snapshots do.
                observe(&next);
                cur = next.clone();
                steps.push(Step::Config(next));
            }
            11 => {
                now += rng.below(2 * 24 * 3600);
                steps.push(Step::Advance(now));
            }
            _ => {
                steps.push(Step::Pick(flow(&mut rng)));
                done += 1;
            }
        }
    }
    (initial, steps)
}

/// The (scheduler, flags) pairs recorded: flags only where they mean something.
pub fn configs() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = [
        "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "fo",
    ]
    .iter()
    .map(|&n| (n, ""))
    .collect();
    for f in ["", "sh-fallback", "sh-port,sh-fallback"] {
        v.push(("sh", f));
    }
    for f in ["", "mh-fallback", "mh-port,mh-fallback"] {
        v.push(("mh", f));
    }
    for f in ["", "conhash-sport", "conhash-5tuple"] {
        v.push(("conhash", f));
    }
    v
}

/// Seeds of the recorded runs.
pub const SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
/// Picks per run.
pub const PICKS: usize = 200;

/// A line of the golden file: `name flags seed: picks` (`-` for None).
pub fn line(name: &str, flags: &str, seed: u64, picks: &[Option<usize>]) -> String {
    let p: Vec<String> = picks
        .iter()
        .map(|p| p.map_or_else(|| "-".to_string(), |i| i.to_string()))
        .collect();
    format!("{name} [{flags}] {seed}: {}", p.join(","))
}
