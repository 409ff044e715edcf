//! Golden picks: every scheduler, driven through the fixed workload of
//! [`scenario`], must pick exactly what `golden/picks.txt` records. The file was
//! recorded from the schedulers as they were before the table/cursor split (each
//! worker building its own tables with `build` and `update`), so this is the proof
//! that the split changed who builds the tables, not which dest a flow gets: a
//! cursor (worker 0 of 1) over a compiled table, moved to each new snapshot's
//! table with `retable`, picks what the old scheduler picked after `update`.
//!
//! Regenerate (`SCHED_GOLDEN_WRITE=1 cargo test -p dpvs-sched --test golden`) only
//! for a deliberate change of picks, and say which in the commit.

mod scenario;

use scenario::Step;
use sched::{compile, SchedFlags};

/// One run of the workload; returns the picks.
fn replay(name: &str, flags: &str, seed: u64) -> Vec<Option<usize>> {
    let f = SchedFlags::parse_str(flags).unwrap();
    let (initial, steps) = scenario::run(seed, scenario::PICKS);
    let mut s = compile(name, &f, &initial).unwrap().cursor(0, 1);
    let mut dests = initial;
    let mut picks = Vec::new();
    for st in steps {
        match st {
            Step::Pick(k) => {
                let got = s.schedule(&dests, &k);
                if let Some(i) = got {
                    scenario::connected(&dests, i, picks.len());
                }
                picks.push(got);
            }
            Step::Config(d) => {
                let t = compile(name, &f, &d).unwrap();
                assert!(s.retable(&t, &d), "{name}: same kind");
                dests = d;
            }
            Step::Advance(t) => s.advance(t),
        }
    }
    picks
}

#[test]
fn picks_match_the_recorded_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/picks.txt");
    let mut lines = Vec::new();
    for (name, flags) in scenario::configs() {
        for &seed in scenario::SEEDS {
            lines.push(scenario::line(
                name,
                flags,
                seed,
                &replay(name, flags, seed),
            ));
        }
    }
    if std::env::var_os("SCHED_GOLDEN_WRITE").is_some() {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(path).unwrap();
    let recorded: Vec<&str> = recorded.lines().collect();
    assert_eq!(recorded.len(), lines.len(), "runs recorded vs replayed");
    for (want, got) in recorded.iter().zip(&lines) {
        if got != want {
            let (head, picks) = want.split_once(": ").unwrap_or((want, ""));
            let (_, got_picks) = got.split_once(": ").unwrap_or((got, ""));
            let k = picks
                .split(',')
                .zip(got_picks.split(','))
                .position(|(a, b)| a != b);
            panic!("{head}: first differing pick {k:?}\nrecorded {want}\nreplayed {got}");
        }
    }
}
