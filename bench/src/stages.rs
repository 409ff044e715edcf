//! Where each nanosecond of an established packet goes, per mode: the LVS
//! core run without EAL on byte buffers (`Core<StageIo>` over
//! `wire::VecBuf`), on the same frames, configuration and next hops as the
//! pipeline's established runs, timed whole and by stage:
//!
//! - classify: Ethernet/IP/L4 parsing and the tuple (`wire::classify`);
//! - lookup: the connection lookup, burst-wise (`ConnTable::lookup_burst`);
//! - rewrite: the rest of the core (connection state, the mode's rewrite,
//!   checksums, TTL, next hop, counters): the whole core minus the two above;
//! - output: the pipeline's ns/packet minus the whole core: the PMD's rx and
//!   tx, mbuf handling and the worker loop around the core.
//!
//! Refilling the buffers between rounds is timed on its own and subtracted.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrayvec::ArrayVec;
use conntrack::Tuple;
use dataplane::core::{Arrival, Core, CoreConfig, BURST};
use dataplane::io::Io;
use dataplane::owner::{Owners, PortSteer};
use dataplane::shared::Shared;
use dataplane::snapshot::{Compiler, PortInfo, Snapshot};
use dataplane::wire::{classify, Packet, VecBuf};
use dataplane::ForwardMode;
use serde::{Deserialize, Serialize};

use crate::frames::{self, flag, Frames, Seg};
use crate::pipeline::{self, mode_name, v4, NRS};

const MAC: [[u8; 6]; 2] = [[0x02, 0xd0, 0, 0, 0, 0], [0x02, 0xd0, 0, 0, 0, 1]];

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Stages {
    pub mode: String,
    pub flows: u32,
    pub classify_ns: Option<f64>,
    pub lookup_ns: Option<f64>,
    pub rewrite_ns: Option<f64>,
    /// The whole core (classify + lookup + rewrite).
    pub core_ns: Option<f64>,
    /// The pipeline's established figure for the same mode and flows.
    pub pipeline_ns: Option<f64>,
    pub output_ns: Option<f64>,
    /// A SYN of a flow the table has not seen: scheduled, both tuples
    /// inserted, forwarded (the core alone, as `core_ns`).
    pub new_conn_ns: Option<f64>,
    pub note: String,
}

/// Most new connections one new-connection run opens.
const NEW_CONN_MAX: u64 = 200_000;

/// ns per SYN of `n` new flows through a fresh core, best of `repeats`.
pub fn new_conns(mode: ForwardMode, n: u64, repeats: usize) -> Result<f64, String> {
    let n = n
        .clamp(BURST as u64, NEW_CONN_MAX)
        .next_multiple_of(BURST as u64);
    let syn = Frames::build(n as usize, |i| seg(i as u32, flag::SYN, 1000, 0));
    let mut best_s = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let (mut core, snap) = core(mode, n as u32)?;
        let refill = rounds(&mut core, &snap, &syn, n, false);
        let whole = rounds(&mut core, &snap, &syn, n, true);
        if core.conns.len() as u64 != n || core.io.sent != n {
            return Err(format!(
                "{}: {} SYNs made {} connections and {} packets out",
                mode_name(mode),
                n,
                core.conns.len(),
                core.io.sent
            ));
        }
        best_s = best_s.min(whole - refill);
    }
    Ok(best_s.max(0.0) * 1e9 / n as f64)
}

/// The core's I/O: forwarded buffers are kept for the next round.
#[derive(Default)]
struct StageIo {
    out: Vec<VecBuf>,
    sent: u64,
}

impl Io for StageIo {
    type Buf = VecBuf;
    fn send(&mut self, _port: usize, m: VecBuf) {
        self.sent += 1;
        self.out.push(m);
    }
    fn alloc(&mut self) -> Option<VecBuf> {
        Some(self.out.pop().unwrap_or_else(|| VecBuf::new(&[])))
    }
    fn hand_over(&mut self, _to: usize, _m: VecBuf, _port: usize) {}
}

fn seg(i: u32, flags: u8, seq: u32, ack: u32) -> Seg {
    pipeline::client_seg_to(MAC[0], i, flags, seq, ack, 0)
}

/// A core on the pipeline's configuration for `mode`, neighbours known.
fn core(mode: ForwardMode, flows: u32) -> Result<(Core<StageIo>, Arc<Snapshot>), String> {
    let desc = pipeline::config(mode, vec![]);
    let ports: Vec<PortInfo> = (0..2)
        .map(|i| PortInfo {
            name: format!("dpdk{i}"),
            id: i as u16,
            mac: MAC[i],
            mtu: 1500,
        })
        .collect();
    let snap = Compiler::default().compile_ext(&desc, &pipeline::ext(&desc, mode), &ports)?;
    let owners = Owners::new(1, vec![PortSteer::Handover, PortSteer::Handover]);
    let shared = Arc::new(Shared::new(snap, owners));
    shared.neigh.learn(0, v4(frames::GW_IP), frames::GW_MAC, 0);
    for i in 0..NRS {
        let (ip, mac) = frames::rs(i);
        shared.neigh.learn(1, v4(ip), mac, 0);
    }
    let cfg = CoreConfig {
        index: 0,
        conn_capacity: flows * 2 + 4096,
        hash_seed: 0x9e37_79b9,
        advise: conntrack::no_advice,
    };
    let snap = shared.snapshot.load_full();
    let mut core = Core::new(cfg, shared, StageIo::default());
    core.now_ms = 1000;
    core.on_snapshot(&snap);
    core.io.out.clear();
    core.io.sent = 0; // gratuitous ARPs
    Ok((core, snap))
}

/// Run `frames` through the core `packets` times in bursts; with `run` false
/// only refill the buffers. Seconds taken.
fn rounds(
    core: &mut Core<StageIo>,
    snap: &Snapshot,
    frames: &Frames,
    packets: u64,
    run: bool,
) -> f64 {
    let n = frames.len();
    let mut k = 0usize;
    let mut done = 0u64;
    let t = Instant::now();
    while done < packets {
        let mut b: ArrayVec<VecBuf, BURST> = ArrayVec::new();
        while !b.is_full() {
            let mut v = core.io.out.pop().unwrap_or_else(|| VecBuf::new(&[]));
            v.refill(frames.get(k));
            k += 1;
            if k == n {
                k = 0;
            }
            b.push(v);
        }
        if run {
            core.handle_burst(snap, &mut b, Arrival::Port(0));
        } else {
            core.io.out.extend(black_box(&mut b).drain(..));
        }
        done += BURST as u64;
    }
    t.elapsed().as_secs_f64()
}

fn best(repeats: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..repeats.max(1))
        .map(|_| f())
        .fold(f64::INFINITY, f64::min)
}

/// Stage figures of `mode` with `flows` established flows, `packets` per
/// timed run (best of `repeats`); `pipeline_ns` from the pipeline's run.
pub fn measure(
    mode: ForwardMode,
    flows: u32,
    packets: u64,
    repeats: usize,
    pipeline_ns: Option<f64>,
) -> Result<Stages, String> {
    let mut res = Stages {
        mode: mode_name(mode).into(),
        flows,
        pipeline_ns,
        ..Default::default()
    };
    let (mut core, snap) = core(mode, flows)?;
    let syn = Frames::build(flows as usize, |i| seg(i as u32, flag::SYN, 1000, 0));
    rounds(&mut core, &snap, &syn, u64::from(flows), true);
    if core.conns.len() < flows as usize {
        return Err(format!(
            "{}: {} of {flows} connections after the SYNs",
            res.mode,
            core.conns.len()
        ));
    }
    let ack = Frames::build(flows as usize, |i| seg(i as u32, flag::ACK, 1001, 5001));
    // Warm-up, and every ACK must come out.
    core.io.sent = 0;
    let warm = u64::from(flows).max(100_000).next_multiple_of(BURST as u64);
    rounds(&mut core, &snap, &ack, warm, true);
    if core.io.sent != warm {
        return Err(format!(
            "{}: {} of {warm} established packets forwarded",
            res.mode, core.io.sent
        ));
    }
    let refill = best(repeats, || rounds(&mut core, &snap, &ack, packets, false));
    let whole = best(repeats, || rounds(&mut core, &snap, &ack, packets, true));
    let classified = best(repeats, || {
        let t = Instant::now();
        let mut k = 0usize;
        for _ in 0..packets {
            let p = classify(ack.get(k));
            if let Ok(Packet::Ip(m)) = p {
                black_box(Tuple::new(m.proto, m.src, m.sport, m.dst, m.dport));
            }
            k += 1;
            if k == ack.len() {
                k = 0;
            }
        }
        t.elapsed().as_secs_f64()
    });
    let tuples: Vec<Tuple> = (0..ack.len())
        .filter_map(|k| match classify(ack.get(k)) {
            Ok(Packet::Ip(m)) => Some(Tuple::new(m.proto, m.src, m.sport, m.dst, m.dport)),
            _ => None,
        })
        .collect();
    let looked = best(repeats, || {
        let t = Instant::now();
        let mut found = [None; BURST];
        let mut done = 0u64;
        while done < packets {
            for c in tuples.chunks(BURST) {
                core.conns.lookup_burst(c, &mut found[..c.len()]);
                black_box(&found);
                done += c.len() as u64;
            }
        }
        t.elapsed().as_secs_f64()
    });
    let ns = |s: f64| s * 1e9 / packets as f64;
    let core_ns = ns(whole - refill).max(0.0);
    let (c, l) = (ns(classified), ns(looked));
    res.classify_ns = Some(c);
    res.lookup_ns = Some(l);
    res.core_ns = Some(core_ns);
    res.rewrite_ns = Some((core_ns - c - l).max(0.0));
    res.output_ns = pipeline_ns.map(|p| (p - core_ns).max(0.0));
    Ok(res)
}

/// One line for the terminal.
pub fn line(s: &Stages) -> String {
    let f = |v: Option<f64>| v.map_or("NA".into(), |x| format!("{x:.1}"));
    format!(
        "stages {} {} flows: classify {} + lookup {} + rewrite {} = core {} ns/pkt; output {} (pipeline {}); new connection {} ns",
        s.mode,
        s.flows,
        f(s.classify_ns),
        f(s.lookup_ns),
        f(s.rewrite_ns),
        f(s.core_ns),
        f(s.output_ns),
        f(s.pipeline_ns),
        f(s.new_conn_ns)
    )
}
