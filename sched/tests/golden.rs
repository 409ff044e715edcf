//! Golden picks: every scheduler, driven through the fixed workload of
//! [`scenario`], must pick exactly what `golden/picks.txt` records. The file was
//! recorded from the schedulers as they were before the table/cursor split (each
//! worker building its own tables with `build` and `update`), so this is the proof
//! that the split changed who builds the tables, not which dest a flow gets.
//!
//! Regenerate (`SCHED_GOLDEN_WRITE=1 cargo test -p dpvs-sched --test golden`) only
//! for a deliberate change of picks, and say which in the commit.

mod scenario;

use scenario::Step;
use sched::{build, SchedFlags};

/// One run of the workload; returns the picks.
fn replay(name: &str, flags: &str, seed: u64) -> Vec<Option<usize>> {
    let f = SchedFlags::parse_str(flags).unwrap();
    let (initial, steps) = scenario::run(seed, scenario::PICKS);
    let mut s = build(name, &f, &initial).unwrap();
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
                s.update(&d);
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
        assert_eq!(got, want);
    }
}
