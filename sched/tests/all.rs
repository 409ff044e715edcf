//! Properties every scheduler must have, through the public API only, and the
//! least-load schedulers against brute-force references of their formulas.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sched::{compile, Dest, FlowKey, SchedFlags, Scheduler, SCHEDULERS};

/// Worker 0's scheduler `name` over a table compiled for `dests`.
fn build(name: &str, flags: &SchedFlags, dests: &[Dest]) -> Box<dyn Scheduler> {
    compile(name, flags, dests).unwrap().cursor(0, 1)
}

/// How a generated dest is made unusable (or not).
#[derive(Clone, Copy, Debug)]
enum State {
    Ok,
    Quiescent,
    Inhibited,
    Overloaded,
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        3 => Just(State::Ok),
        1 => Just(State::Quiescent),
        1 => Just(State::Inhibited),
        1 => Just(State::Overloaded),
    ]
}

fn make(i: usize, weight: u32, st: State, active: u32, inactive: u32) -> Dest {
    let addr = if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, i as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16))
    };
    let mut d = Dest::new(addr, 8000 + i as u16, weight.max(1));
    d.counters.set(active, inactive);
    match st {
        State::Ok => {}
        State::Quiescent => d.weight = 0,
        State::Inhibited => d.inhibited = true,
        State::Overloaded => {
            d.u_threshold = 1;
            d.counters.set(active.max(1), inactive);
        }
    }
    d
}

fn flow(x: u32) -> FlowKey {
    FlowKey::new(
        if x.is_multiple_of(3) { 17 } else { 6 },
        IpAddr::V4(Ipv4Addr::from(x.wrapping_mul(2_654_435_761))),
        (x % 60000) as u16 + 1024,
        IpAddr::V4(Ipv4Addr::new(1, 1, 1, (x % 4) as u8)),
        80,
    )
}

fn all_flags() -> Vec<SchedFlags> {
    vec![
        SchedFlags::default(),
        SchedFlags::parse_str("sh-fallback,sh-port,mh-fallback,mh-port,conhash-sport").unwrap(),
        SchedFlags::parse_str("conhash-5tuple").unwrap(),
    ]
}

proptest! {
    // Each case builds every scheduler, mh's 65537-slot table included: keep it lean.
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// No scheduler ever hands a new connection to a quiescent, inhibited or
    /// overloaded dest, and all return None when every dest is such.
    #[test]
    fn never_picks_unusable(spec in prop::collection::vec((1u32..10, state(), 0u32..20, 0u32..20), 0..12),
                            flows in prop::collection::vec(any::<u32>(), 1..24),
                            worker in 0usize..4) {
        let dests: Vec<Dest> = spec.iter().enumerate().map(|(i, &(w, st, a, ia))| make(i, w, st, a, ia)).collect();
        let any_usable = dests.iter().any(|d| d.is_available());
        // ovf refuses when every usable dest is over its budget (active > weight).
        let any_within_budget = dests.iter().any(|d| d.is_available() && d.active_conns() <= d.weight);
        for flags in all_flags() {
            for name in SCHEDULERS {
                let mut s = compile(name, &flags, &dests).unwrap().cursor(worker, 4);
                for &x in &flows {
                    let got = s.schedule(&dests, &flow(x));
                    if let Some(i) = got {
                        prop_assert!(i < dests.len(), "{} returned {} of {}", name, i, dests.len());
                        prop_assert!(dests[i].is_available(), "{} picked unusable dest {} {:?}", name, i, spec[i]);
                    } else {
                        // Only hash tables without fallback may refuse while something
                        // is usable (dh has no fallback at all).
                        let may_refuse = *name == "dh"
                            || (*name == "sh" && !flags.sh_fallback)
                            || (*name == "mh" && !flags.mh_fallback)
                            || (*name == "ovf" && !any_within_budget);
                        prop_assert!(may_refuse || !any_usable, "{} returned None with a usable dest", name);
                    }
                }
            }
        }
    }

    /// The same flow keeps its dest while the set is unchanged (hashing schedulers),
    /// across workers of one table and across independently compiled tables (as
    /// separate processes would).
    #[test]
    fn hashing_is_deterministic_across_instances(weights in prop::collection::vec(1u32..6, 1..10),
                                                 flows in prop::collection::vec(any::<u32>(), 1..24)) {
        let dests: Vec<Dest> = weights.iter().enumerate().map(|(i, &w)| make(i, w, State::Ok, 0, 0)).collect();
        for name in ["dh", "sh", "mh", "conhash"] {
            let table = compile(name, &SchedFlags::default(), &dests).unwrap();
            let mut a = table.clone().cursor(0, 3);
            let mut b = table.cursor(2, 3);
            let mut c = build(name, &SchedFlags::default(), &dests);
            for &x in &flows {
                let first = a.schedule(&dests, &flow(x));
                prop_assert!(first.is_some());
                prop_assert_eq!(a.schedule(&dests, &flow(x)), first);
                prop_assert_eq!(b.schedule(&dests, &flow(x)), first);
                prop_assert_eq!(c.schedule(&dests, &flow(x)), first);
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// lc, wlc, sed, nq, fo and ovf pick what a brute-force reading of their
    /// formula picks (the first of equals).
    #[test]
    fn least_load_matches_reference(spec in prop::collection::vec((0u32..1000, state(), 0u32..50, 0u32..50), 1..12),
                                    huge in any::<bool>()) {
        let dests: Vec<Dest> = spec.iter().enumerate().map(|(i, &(w, st, a, ia))| {
            let w = if huge { u32::MAX - w } else { w };
            let (a, ia) = if huge { (u32::MAX - a, u32::MAX - ia) } else { (a, ia) };
            make(i, w, st, a, ia)
        }).collect();
        let usable: Vec<usize> = (0..dests.len()).filter(|&i| dests[i].is_available()).collect();
        let act = |i: usize| u128::from(dests[i].active_conns());
        let inact = |i: usize| u128::from(dests[i].inactive_conns());
        let w = |i: usize| u128::from(dests[i].effective_weight());
        // argmin over `usable` of num(i)/w(i) by exact rational comparison; first wins.
        let argmin = |num: &dyn Fn(usize) -> u128, weighted: bool| -> Option<usize> {
            let mut best: Option<usize> = None;
            for &i in &usable {
                best = match best {
                    None => Some(i),
                    Some(b) => {
                        let better = if weighted { num(i) * w(b) < num(b) * w(i) } else { num(i) < num(b) };
                        Some(if better { i } else { b })
                    }
                };
            }
            best
        };
        let lc = argmin(&|i| act(i) * 256 + inact(i), false);
        let wlc = argmin(&|i| act(i) * 256 + inact(i), true);
        let sed = argmin(&|i| act(i) + 1, true);
        let nq = usable.iter().copied().find(|&i| act(i) == 0).or(sed);
        let fo = usable.iter().copied().fold(None, |b: Option<usize>, i| match b {
            Some(b) if w(b) >= w(i) => Some(b),
            _ => Some(i),
        });
        let ovf = usable.iter().copied().filter(|&i| act(i) <= w(i)).fold(None, |b: Option<usize>, i| match b {
            Some(b) if w(b) >= w(i) => Some(b),
            _ => Some(i),
        });
        let key = flow(1);
        for (name, expect) in [("lc", lc), ("wlc", wlc), ("sed", sed), ("nq", nq), ("fo", fo), ("ovf", ovf)] {
            let mut s = build(name, &SchedFlags::default(), &dests);
            prop_assert_eq!(s.schedule(&dests, &key), expect, "{}", name);
        }
    }
}

#[test]
fn empty_and_all_zero_sets_give_none() {
    let zero: Vec<Dest> = (0..4).map(|i| make(i, 1, State::Quiescent, 0, 0)).collect();
    for name in SCHEDULERS {
        for flags in all_flags() {
            let mut s = build(name, &flags, &[]);
            assert_eq!(s.schedule(&[], &flow(1)), None, "{name} on empty set");
            let mut s = build(name, &flags, &zero);
            assert_eq!(s.schedule(&zero, &flow(1)), None, "{name} on all-zero set");
            s.advance(1_000_000);
            assert_eq!(s.schedule(&zero, &flow(2)), None, "{name} after advance");
        }
    }
}

/// `dests` other than the table's (a caller bug) never give an out-of-range
/// index or a panic, whichever way they differ and for any worker.
#[test]
fn dests_other_than_the_tables_do_not_panic() {
    let big: Vec<Dest> = (0..8).map(|i| make(i, 3, State::Ok, 0, 0)).collect();
    let small = &big[..2];
    let flags = SchedFlags::parse_str("flag-1").unwrap();
    for name in SCHEDULERS {
        for (compiled, given) in [(&big[..], small), (small, &big[..]), (&[][..], &big[..])] {
            let table = compile(name, &flags, compiled).unwrap();
            for w in 0..3 {
                let mut s = table.clone().cursor(w, 3);
                for x in 0..50 {
                    if let Some(i) = s.schedule(given, &flow(x)) {
                        assert!(i < given.len(), "{name}");
                    }
                }
                assert!(s.retable(&table, given));
                s.schedule(given, &flow(1));
            }
        }
    }
}
