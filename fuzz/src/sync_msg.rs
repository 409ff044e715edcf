//! A connection sync message as it arrives from the network (docs/ha.md):
//! anyone on the sync segment can send one, so it is hostile input.
//!
//! Checked on every input: it is read or refused, never a panic; what is
//! read writes back to the same records; installing them on a backup's
//! worker (the lab with every mode, `crate::modes`) keeps each connection in
//! its real server's ActiveConn / InActConn exactly once, and once they
//! have all timed out the table and those counters are empty again.


use control::sync::wire;

use crate::modes::{self, Options};

pub fn run(data: &[u8]) {
    let Ok(d) = wire::decode(data, 0) else {
        return;
    };
    let again: Vec<_> = wire::encode(0, &d.conns, 65_000)
        .iter()
        .flat_map(|m| wire::decode(m, 0).expect("our own message reads").conns)
        .collect();
    assert_eq!(again, d.conns, "records changed through encode/decode");

    let mut lab = modes::lab(Options(0));
    let snap = lab.snap.clone();
    for c in &d.conns {
        let _ = lab.core.sync_install(&snap, c);
    }
    let counted = || -> u64 {
        snap.dests
            .values()
            .map(|d| {
                let (active, inactive) = d.counters.conns();
                u64::from(active) + u64::from(inactive)
            })
            .sum()
    };
    assert_eq!(
        counted(),
        lab.core.conns.len() as u64,
        "ActiveConn + InActConn is not the connections installed"
    );
    // Two days on; expiry is bounded per call, so call it until done.
    lab.core.now_ms += 2 * 86_400_000;
    for _ in 0..100 {
        if lab.core.conns.is_empty() {
            break;
        }
        lab.core.now_ms += 1;
        lab.core.expire(&snap);
    }
    assert_eq!(
        lab.core.conns.len(),
        0,
        "connections outlived every timeout"
    );
    assert_eq!(counted(), 0, "counters left after every connection went");
}
