//! What the fuzz targets share: the configuration with every mode
//! ([`modes`]), the invariants checked on what the core did ([`check`]), the
//! input formats, and the drivers each target is one call to. Seeds are
//! written by `examples/seeds.rs` (docs/fuzzing.md).
//!
//! Input formats (every byte string is a valid input):
//!
//! - `pipeline`: `[options][frame selector][frame ...]`: one frame.
//! - `pipeline_seq`: `[options]` then records `[frame selector][len: u16 BE]
//!   [len bytes]` (a length past the end takes the rest): frames in order,
//!   in bursts, with the clock moving between them.
//! - `wire`: `[selector][frame ...]`.
//! - `sync_msg`: a connection sync datagram ([`sync_msg`]).
//!
//! The options byte is [`modes::Options`]; a frame selector is [`Sel`].

pub mod check;
pub mod modes;
pub mod sync_msg;
pub mod wire;

use arrayvec::ArrayVec;
use dataplane::core::{Arrival, BURST};
use dataplane::testkit::Lab;
use dataplane::wire::VecBuf;

use check::Checker;
use modes::Options;

/// A frame selector byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sel(pub u8);

impl Sel {
    /// Received on port 1 (the real servers' side); else port 0.
    pub const PORT1: u8 = 0x01;
    /// Handed over by another worker rather than received from the NIC.
    pub const HANDED: u8 = 0x02;
    /// The burst ends after this frame.
    pub const END_BURST: u8 = 0x04;
    /// The high nibble moves the clock before the frame, by [`Sel::ADVANCE_MS`].
    pub const ADVANCE_MS: [u64; 16] = [
        0, 1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 60_000, 120_000, 300_000, 900_000,
        3_600_000, 7_200_000, 86_400_000,
    ];

    pub fn port(self) -> usize {
        usize::from(self.0 & Self::PORT1 != 0)
    }
    pub fn handed(self) -> bool {
        self.0 & Self::HANDED != 0
    }
    pub fn end_burst(self) -> bool {
        self.0 & Self::END_BURST != 0
    }
    pub fn advance_ms(self) -> u64 {
        Self::ADVANCE_MS[usize::from(self.0 >> 4)]
    }
}

/// Splits a `pipeline_seq` input (after its options byte) into records.
pub fn records(mut data: &[u8]) -> Vec<(Sel, &[u8])> {
    let mut out = Vec::new();
    while let [sel, rest @ ..] = data {
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (0, &[][..]),
        };
        let len = len.min(rest.len());
        out.push((Sel(*sel), &rest[..len]));
        data = &rest[len..];
    }
    out
}

/// The inverse of [`records`], with `options` in front (the seed writer).
pub fn encode(options: u8, recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![options];
    for (sel, f) in recs {
        v.push(*sel);
        v.extend_from_slice(&(f.len() as u16).to_be_bytes());
        v.extend_from_slice(f);
    }
    v
}

/// The `pipeline` target: one frame through a fresh core.
pub fn pipeline(data: &[u8]) {
    let [options, sel, frame @ ..] = data else {
        return;
    };
    run(Options(*options), &[(Sel(*sel | Sel::END_BURST), frame)]);
}

/// The `pipeline_seq` target: frames in bursts through one core.
pub fn pipeline_seq(data: &[u8]) {
    let [options, rest @ ..] = data else {
        return;
    };
    // Long sequences find little more and slow every run down.
    let recs = records(rest);
    run(Options(*options), &recs[..recs.len().min(256)]);
}

/// Feed `frames` to a lab set up by `options`, as the worker loop would:
/// bursts of frames from one port (or handed over), the parked packets and
/// expiry handled after each burst; then check the invariants.
pub fn run(options: Options, frames: &[(Sel, &[u8])]) {
    let mut lab = modes::lab(options);
    let mut checker = Checker::new(&lab);
    let mut burst: ArrayVec<VecBuf, BURST> = ArrayVec::new();
    let mut ports: ArrayVec<usize, BURST> = ArrayVec::new();
    let mut from: Option<(usize, bool)> = None;
    for &(sel, frame) in frames {
        let here = (sel.port(), sel.handed());
        if sel.advance_ms() > 0 || from.is_some_and(|f| f != here) || burst.is_full() {
            flush(&mut lab, &mut burst, &mut ports, from);
        }
        if sel.advance_ms() > 0 {
            lab.core.now_ms += sel.advance_ms();
            let snap = lab.snap.clone();
            lab.core.flush_pending(&snap);
            lab.core.expire(&snap);
            lab.core.housekeeping();
        }
        from = Some(here);
        burst.push(checker.input(frame, sel.handed()));
        ports.push(sel.port());
        if sel.end_burst() {
            flush(&mut lab, &mut burst, &mut ports, from);
        }
    }
    flush(&mut lab, &mut burst, &mut ports, from);
    checker.finish(&mut lab);
}

fn flush(
    lab: &mut Lab,
    burst: &mut ArrayVec<VecBuf, BURST>,
    ports: &mut ArrayVec<usize, BURST>,
    from: Option<(usize, bool)>,
) {
    let Some((port, handed)) = from else { return };
    if burst.is_empty() {
        return;
    }
    let snap = lab.snap.clone();
    let arrival = if handed {
        Arrival::Handed(ports)
    } else {
        Arrival::Port(port)
    };
    lab.core.handle_burst(&snap, burst, arrival);
    burst.clear();
    ports.clear();
    lab.core.flush_pending(&snap);
    lab.core.expire(&snap);
}
