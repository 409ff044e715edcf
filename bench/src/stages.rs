//! Where each nanosecond of an established packet goes, per mode: the LVS
//! core run without EAL on byte buffers (`Core<StageIo>` over
//! `wire::VecBuf`), on the same frames, configuration and next hops as the
//! pipeline's established runs, timed whole and by stage:
//!
//! - classify: Ethernet/IP/L4 parsing and the tuple (`wire::classify`);
//! - lookup: the connection lookup, burst-wise, prefetching as the core's
//!   (`ConnTable::lookup_burst_prefetched` of the tuples' keys);
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
use conntrack::{FlowKey, Tuple};
use dataplane::core::{Arrival, Core, CoreConfig, BURST};
use dataplane::events::Event;
use dataplane::io::Io;
use dataplane::owner::{Owners, PortSteer};
use dataplane::shared::Shared;
use dataplane::snapshot::{Compiler, PortInfo, Snapshot};
use dataplane::wire::{classify, Packet, PacketBuf, VecBuf};
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
    /// FULLNAT: the core with the handshake's ACK replayed, TOA inserted
    /// in every packet (the other figures replay segments past the first
    /// data, which carry none).
    pub toa_core_ns: Option<f64>,
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

/// Most connections one whole-connection run opens.
const WHOLE_CONN_MAX: u64 = 400_000;
/// Connections per wave of the whole-connection run (as the pipeline's cps).
const WAVE: u32 = 2048;

/// ns per whole TCP connection of `n` new flows through a fresh core, best of
/// `repeats`: the pipeline's cps exchange (`pipeline::cps`) on the core alone,
/// in waves of 2 048 connections, each step a burst-wise pass over the wave:
/// client SYN, server SYN-ACK, client ACK, request, reply, client FIN,
/// server FIN, client ACK; the server side answers through the reply tuple
/// the core produced (what its SYN came out as). Then the clock jumps past
/// every timeout and `Core::expire` frees the connections. Every packet
/// must come out toward its side, and every connection must be made and
/// freed. NAT and FULLNAT only (DR and TUN replies bypass the director).
/// Only `Core::handle_burst` and `Core::expire` are timed (under callgrind:
/// `--toggle-collect` of `Core::handle_burst` and of `expire_once`).
pub fn whole_conns(mode: ForwardMode, n: u64, repeats: usize) -> Result<f64, String> {
    if !matches!(mode, ForwardMode::Nat | ForwardMode::FullNat) {
        return Err(format!(
            "{}: replies bypass the director; whole connections are NAT and FULLNAT only",
            mode_name(mode)
        ));
    }
    let n = n
        .clamp(BURST as u64, WHOLE_CONN_MAX)
        .next_multiple_of(BURST as u64) as u32;
    let mut best_s = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let (mut core, snap) = core(mode, n)?;
        let mut secs = 0.0;
        let mut base = 0u32;
        while base < n {
            let w = WAVE.min(n - base);
            secs += whole_wave(&mut core, &snap, base, w)
                .map_err(|e| format!("{} whole connections at {base}: {e}", mode_name(mode)))?;
            base += w;
        }
        let made = snap
            .services_by_id
            .values()
            .map(|s| s.traffic.sum().conns)
            .sum::<u64>();
        if core.conns.len() != n as usize || made != u64::from(n) {
            return Err(format!(
                "{}: {} connections after {n} whole connections ({made} counted)",
                mode_name(mode),
                core.conns.len()
            ));
        }
        // The end: past every state's timeout, the wheel frees them all.
        core.now_ms += 3_600_000;
        let t = Instant::now();
        let mut calls = 0u32;
        while !core.conns.is_empty() && calls < 1_000_000 {
            expire_once(&mut core, &snap);
            core.now_ms += 1;
            calls += 1;
        }
        secs += t.elapsed().as_secs_f64();
        if !core.conns.is_empty() {
            return Err(format!(
                "{}: {} connections left after expiry",
                mode_name(mode),
                core.conns.len()
            ));
        }
        best_s = best_s.min(secs);
    }
    Ok(best_s * 1e9 / f64::from(n))
}

/// `Core::expire`, never inlined: what callgrind's `--toggle-collect`
/// counts of the connections' end.
#[inline(never)]
fn expire_once(core: &mut Core<StageIo>, snap: &Snapshot) {
    core.expire(snap);
}

/// One wave of `w` connections from client flow `base` on: the 8 steps.
/// Seconds spent in the core.
fn whole_wave(core: &mut Core<StageIo>, snap: &Snapshot, base: u32, w: u32) -> Result<f64, String> {
    const REQ: usize = 16;
    let c = |i: usize, flags, seq, ack, pl| {
        pipeline::client_seg_to(MAC[0], base + i as u32, flags, seq, ack, pl)
    };
    let n = w as usize;
    let fullnat = core
        .shared
        .snapshot
        .load()
        .services_by_id
        .values()
        .any(|s| s.meta.iter().any(|m| m.mode == ForwardMode::FullNat));
    let mut secs = 0.0;
    // 1. SYN: each connection's server view from what came out toward its
    // real server (one core forwards in order: the k-th SYN out is the k-th in).
    let mut views: Vec<pipeline::ServerView> = Vec::with_capacity(n);
    let syn = Frames::build(n, |i| c(i, flag::SYN, 1000, 0, 0));
    secs += pass(core, snap, &syn, 0, &mut |k, b| {
        let q = frames::quick(b).ok_or("SYN out: not TCP/IPv4")?;
        if !fullnat && frames::flow_of(q.src, q.sport) != Some(base + k as u32) {
            return Err("SYN out: not the client's, or out of order".into());
        }
        let mac = (0..NRS)
            .map(frames::rs)
            .find(|r| r.0 == q.dst)
            .ok_or("SYN out: not to a real server")?
            .1;
        if q.dport != frames::RPORT {
            return Err("SYN out: not to the real server's port".into());
        }
        views.push((q.dst, q.dport, q.src, q.sport, mac));
        Ok(())
    })?;
    let s = |i: usize, flags, seq, ack, pl| {
        pipeline::server_seg_to(MAC[1], &views[i], flags, seq, ack, pl)
    };
    let to_server = |k: usize, b: &[u8]| -> Result<(), String> {
        let q = frames::quick(b).ok_or("request out: not TCP/IPv4")?;
        if (q.dst, q.dport) != (views[k].0, views[k].1) {
            return Err("request out: not to its real server".into());
        }
        Ok(())
    };
    let to_client = |k: usize, b: &[u8]| -> Result<(), String> {
        let q = frames::quick(b).ok_or("reply out: not TCP/IPv4")?;
        if (q.src, q.sport, q.dst, q.dport)
            != (
                frames::VIP,
                frames::VPORT,
                frames::client(base + k as u32).0,
                frames::client(base + k as u32).1,
            )
        {
            return Err("reply out: not from the VIP to its client".into());
        }
        Ok(())
    };
    type Step = (u8, bool, u32, u32, usize);
    // (flags, from the client, seq, ack, payload)
    const STEPS: [Step; 7] = [
        (flag::SYN | flag::ACK, false, 5000, 1001, 0),
        (flag::ACK, true, 1001, 5001, 0),
        (flag::PSH | flag::ACK, true, 1001, 5001, REQ),
        (flag::PSH | flag::ACK, false, 5001, 1017, REQ),
        (flag::FIN | flag::ACK, true, 1017, 5017, 0),
        (flag::FIN | flag::ACK, false, 5017, 1018, 0),
        (flag::ACK, true, 1018, 5018, 0),
    ];
    for (flags, client, seq, ack, pl) in STEPS {
        let (f, port) = if client {
            (Frames::build(n, |i| c(i, flags, seq, ack, pl)), 0)
        } else {
            (Frames::build(n, |i| s(i, flags, seq, ack, pl)), 1)
        };
        let check: &OutCheck<'_> = if client { &to_server } else { &to_client };
        secs += pass(core, snap, &f, port, &mut |k, b| check(k, b))?;
    }
    Ok(secs)
}

/// A check of the `k`-th packet out of a pass.
type OutCheck<'a> = dyn Fn(usize, &[u8]) -> Result<(), String> + 'a;
type OutCheckMut<'a> = dyn FnMut(usize, &[u8]) -> Result<(), String> + 'a;

/// `frames` through the core once, in bursts, as received on port `port`;
/// every one must come out, `check`ed with its index. Seconds in the core.
fn pass(
    core: &mut Core<StageIo>,
    snap: &Snapshot,
    frames: &Frames,
    port: usize,
    check: &mut OutCheckMut<'_>,
) -> Result<f64, String> {
    let mut secs = 0.0;
    let mut k = 0usize;
    while k < frames.len() {
        let mut b: ArrayVec<VecBuf, BURST> = ArrayVec::new();
        while !b.is_full() && k + b.len() < frames.len() {
            let mut v = core.io.out.pop().unwrap_or_else(|| VecBuf::new(&[]));
            v.refill(frames.get(k + b.len()));
            b.push(v);
        }
        let got = b.len();
        let (sent, kept) = (core.io.sent, core.io.out.len());
        let t = Instant::now();
        core.handle_burst(snap, &mut b, Arrival::Port(port));
        secs += t.elapsed().as_secs_f64();
        if core.io.sent - sent != got as u64 || core.io.out.len() - kept != got {
            return Err(format!("{} of {got} packets came out", core.io.sent - sent));
        }
        for (j, m) in core.io.out[kept..].iter().enumerate() {
            check(k + j, m.data())?;
        }
        k += got;
    }
    Ok(secs)
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
        // As a worker's (huge pages where the table is 2 MiB or more: at
        // `--flows 1000000`, not at 1 k).
        advise: dataplane::dpdk::advise_hugepages,
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
/// FULLNAT also times the core with TOA on every packet (`toa_core_ns`).
pub fn measure(
    mode: ForwardMode,
    flows: u32,
    packets: u64,
    repeats: usize,
    pipeline_ns: Option<f64>,
) -> Result<Stages, String> {
    let mut res = measure_seg(mode, flows, packets, repeats, pipeline_ns, false)?;
    if mode == ForwardMode::FullNat {
        res.toa_core_ns = measure_seg(mode, flows, packets, repeats, None, true)?.core_ns;
    }
    Ok(res)
}

/// [`measure`] with the established packets either past the first data
/// (`toa_every` false: what every figure but `toa_core_ns` replays) or the
/// handshake's ACK again and again (FULLNAT: TOA on every packet).
pub fn measure_seg(
    mode: ForwardMode,
    flows: u32,
    packets: u64,
    repeats: usize,
    pipeline_ns: Option<f64>,
    toa_every: bool,
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
    // The handshake's ACK once per flow (FULLNAT: TOA on each), then the
    // replayed segment: past the first data as the pipeline's established
    // runs (`pipeline::STEADY_SEQ`), or with `toa_every` the handshake's
    // ACK again (FULLNAT: TOA on every packet, the worst case).
    let first = Frames::build(flows as usize, |i| {
        seg(i as u32, flag::ACK, pipeline::FIRST_DATA_SEQ, 5001)
    });
    core.io.sent = 0;
    rounds(&mut core, &snap, &first, u64::from(flows), true);
    let ack = if toa_every {
        first
    } else {
        Frames::build(flows as usize, |i| {
            seg(
                i as u32,
                flag::ACK,
                pipeline::STEADY_SEQ,
                pipeline::STEADY_ACK,
            )
        })
    };
    // Warm-up, and every ACK must come out (with TOA exactly when replayed
    // at the first data sequence number).
    core.io.sent = 0;
    let toa_before = core.shared.events[0].get(Event::ToaInserted);
    let warm = u64::from(flows).max(100_000).next_multiple_of(BURST as u64);
    rounds(&mut core, &snap, &ack, warm, true);
    if core.io.sent != warm {
        return Err(format!(
            "{}: {} of {warm} established packets forwarded",
            res.mode, core.io.sent
        ));
    }
    let toas = core.shared.events[0].get(Event::ToaInserted) - toa_before;
    let want = if toa_every && mode == ForwardMode::FullNat {
        warm
    } else {
        0
    };
    if toas != want {
        return Err(format!(
            "{}: {toas} TOA options inserted in {warm} established packets, {want} expected",
            res.mode
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
        let mut places = [conntrack::KeyPlace::default(); BURST];
        let mut done = 0u64;
        while done < packets {
            for c in tuples.chunks(BURST) {
                // As the core's: the tuples' keys, prefetching.
                let keys: ArrayVec<FlowKey, BURST> = c.iter().map(FlowKey::from_tuple).collect();
                core.conns.lookup_burst_prefetched(
                    &keys,
                    &mut found[..c.len()],
                    &mut places,
                    dataplane::dpdk::prefetch,
                );
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
        "stages {} {} flows: classify {} + lookup {} + rewrite {} = core {} ns/pkt; output {} (pipeline {}); new connection {} ns{}",
        s.mode,
        s.flows,
        f(s.classify_ns),
        f(s.lookup_ns),
        f(s.rewrite_ns),
        f(s.core_ns),
        f(s.output_ns),
        f(s.pipeline_ns),
        f(s.new_conn_ns),
        match s.toa_core_ns {
            Some(t) => format!("; core with TOA in every packet {t:.1} ns"),
            None => String::new(),
        }
    )
}
