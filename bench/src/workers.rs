//! Several workers: established flows in both directions (requests and the
//! real servers' replies) through one or more workers, the generator
//! spreading every frame over the rx queues of the port it arrives on by a
//! software Toeplitz RSS over the frame's own 5-tuple, as a NIC does
//! (`env::SoftRss`). Measures forwarded packets per second and the share of
//! packets a worker received but had to hand to the connection's owner.
//!
//! Next to the measured share the run predicts it from the frames alone: the
//! rx queue RSS picks for each frame against the owner
//! `dataplane::owner::Owners` computes for it. A packet is handed over
//! exactly when the two differ, so the two figures must agree.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use conntrack::Tuple;
use dataplane::owner::{OwnerKey, Owners, PortSteer};
use dataplane::rss::{Reta, RssSteer, Toeplitz};
use dataplane::{ForwardMode, Steering, WorkerStats};
use serde::{Deserialize, Serialize};

use crate::env::{Env, Load, SoftRss, CLIENT, RETA_SIZE, RSS_KEY, SERVER};
use crate::frames::{self, flag, Frames};
use crate::pipeline::{
    check_loss, client_seg, expect_reply, mode_name, nonzero_drops, server_seg, start_spec,
    Sampler, ServerView,
};

/// Client ISNs: flow i opens with `ISN_BASE + i * ISN_STEP`, so every
/// output names its flow by its sequence (requests) or acknowledgement
/// (replies) number, whatever the director did to addresses and ports.
const ISN_BASE: u32 = 1_000_000;
const ISN_STEP: u32 = 16;
/// The real servers' ISN.
const RS_ISN: u32 = 5000;

fn isn(i: u32) -> u32 {
    ISN_BASE + i * ISN_STEP
}

/// How FULLNAT replies find their worker on the server-side port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// RSS pre-calculation: the dataplane knows the generator's RSS
    /// (`Steering::SoftRss`) and picks local ports whose replies it
    /// delivers to the owner's queue.
    Rss,
    /// None: local ports partitioned by worker, replies handed over.
    Handover,
}

impl Steer {
    pub fn name(self) -> &'static str {
        match self {
            Steer::Rss => "soft-rss",
            Steer::Handover => "handover",
        }
    }
}

/// One worker's share of a run (counter deltas over the timed runs).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct WorkerDelta {
    pub rx: u64,
    pub tx: u64,
    pub handed_over: u64,
    pub handover_in: u64,
    pub conns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WorkersRun {
    pub mode: String,
    pub workers: usize,
    /// "soft-rss" or "handover" (both ports); "" with one worker.
    pub steering: String,
    pub flows: u32,
    /// Packets forwarded per second, requests and replies together.
    pub mpps: Option<f64>,
    pub ns_per_packet: Option<f64>,
    pub runs: Vec<f64>,
    /// Over the timed runs: packets received from rx queues, and of those
    /// handed to another worker.
    pub rx: u64,
    pub handed_over: u64,
    pub handover_share: Option<f64>,
    /// The share RSS and the owner function imply, per direction.
    pub predicted_request_share: f64,
    pub predicted_reply_share: f64,
    pub per_worker: Vec<WorkerDelta>,
    pub sampled: u64,
    pub adaptive_poll: bool,
}

fn delta(a: &[WorkerStats], b: &[WorkerStats]) -> Vec<WorkerDelta> {
    a.iter()
        .zip(b)
        .map(|(a, b)| WorkerDelta {
            rx: b.rx_packets - a.rx_packets,
            tx: b.tx_packets - a.tx_packets,
            handed_over: b.handed_over - a.handed_over,
            handover_in: b.handover_in - a.handover_in,
            conns: b.conns,
        })
        .collect()
}

/// Checks a sample of replies: addresses, checksums, and that each went to
/// the client whose flow its acknowledgement number names.
struct ReplyCheck {
    every: u64,
    expect: frames::Expect,
    flows: u32,
    checked: u64,
    errors: Vec<String>,
}

impl ReplyCheck {
    fn see(&mut self, i: u64, f: &[u8]) {
        if !i.is_multiple_of(self.every) {
            return;
        }
        self.checked += 1;
        let err = frames::check(f, &self.expect).err().or_else(|| {
            let q = frames::quick(f)?;
            let flow = q.ack.wrapping_sub(ISN_BASE + 1) / ISN_STEP;
            if flow >= self.flows || isn(flow) + 1 != q.ack {
                return Some(format!("reply ack {} names no flow", q.ack));
            }
            let (cip, cport) = frames::client(flow);
            (q.dst != cip || q.dport != cport).then(|| {
                format!(
                    "reply of flow {flow} went to {:?}:{}, not {cip:?}:{cport}",
                    q.dst, q.dport
                )
            })
        });
        if let Some(e) = err {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
    }
}

/// The flow of a forwarded request (by its sequence number) and the
/// connection as the real server sees it.
fn server_view(f: &[u8], flows: u32, mode: ForwardMode) -> Result<(u32, ServerView), String> {
    let q = frames::quick(f).ok_or("request out: not TCP/IPv4")?;
    let flow = q.seq.wrapping_sub(ISN_BASE) / ISN_STEP;
    if flow >= flows || isn(flow) != q.seq {
        return Err(format!("request out: seq {} names no flow", q.seq));
    }
    if mode == ForwardMode::Nat && frames::flow_of(q.src, q.sport) != Some(flow) {
        return Err(format!("NAT request of flow {flow} changed its client"));
    }
    let mac: [u8; 6] = f[0..6].try_into().map_err(|_| "short frame")?;
    Ok((flow, (q.dst, q.dport, q.src, q.sport, mac)))
}

/// The owner function of a dataplane with `n` workers and this steering,
/// as `dataplane::owner` defines it (port 0 client side, 1 server side).
fn owners(n: usize, steer: Steer) -> Result<Owners, String> {
    let port = if steer == Steer::Rss && n > 1 {
        let t = Toeplitz::new(&RSS_KEY).map_err(|e| e.to_string())?;
        let reta = Reta::round_robin(RETA_SIZE, n as u16).map_err(|e| e.to_string())?;
        PortSteer::Rss(Arc::new(RssSteer::new(t, reta)))
    } else {
        PortSteer::Handover
    };
    Ok(Owners::new(n, vec![port.clone(), port]))
}

/// Fraction of `frames` (on `port`) whose RSS queue is not their owner's.
fn predicted(
    rss: Option<&SoftRss>,
    frames: &Frames,
    owner: impl Fn(&frames::Quick) -> usize,
) -> f64 {
    let Some(rss) = rss else {
        return 0.0;
    };
    let n = frames.len();
    let moved = (0..n)
        .filter(|&i| {
            let f = frames.get(i);
            frames::quick(f).is_some_and(|q| usize::from(rss.queue(f)) != owner(&q))
        })
        .count();
    moved as f64 / n.max(1) as f64
}

fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
    Tuple {
        proto: 6,
        src: IpAddr::from(src),
        sport,
        dst: IpAddr::from(dst),
        dport,
    }
}

/// Established flows through `n` workers: SYN, SYN-ACK, then client ACKs
/// and server ACKs interleaved; the best of `repeats` runs of `packets`.
pub fn established(
    env: &mut Env,
    mode: ForwardMode,
    n: usize,
    steer: Steer,
    flows: u32,
    packets: u64,
    repeats: usize,
) -> Result<WorkersRun, String> {
    env.use_workers(n)?;
    let adaptive_poll = env.shares_cpus();
    let name = format!(
        "{} {n} worker(s){}",
        mode_name(mode),
        if n > 1 {
            format!(" {}", steer.name())
        } else {
            String::new()
        }
    );
    let steering = match (n, steer) {
        (1, _) => Steering::default(),
        (_, Steer::Handover) => Steering::Handover,
        (_, Steer::Rss) => env.rss().map_or(Steering::Handover, SoftRss::steering),
    };
    let cap = flows * 2 + 4096;
    let spec = env.spec_with(cap, adaptive_poll, steering);
    let r = start_spec(env, mode, &spec)?;
    let mut res = WorkersRun {
        mode: mode_name(mode).into(),
        workers: n,
        steering: if n > 1 {
            steer.name().into()
        } else {
            String::new()
        },
        flows,
        adaptive_poll,
        ..Default::default()
    };
    // 1. SYNs: each flow's server view from what the real server receives.
    let syn = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::SYN, isn(i as u32), 0, 0)
    });
    let mut s = Sampler::new(&r, 61);
    s.expect.toa = false;
    let mut views: Vec<Option<ServerView>> = vec![None; flows as usize];
    let mut err: Option<String> = None;
    let p = env.pump(
        &syn,
        0,
        CLIENT,
        SERVER,
        u64::from(flows),
        Duration::from_secs(10),
        Duration::from_millis(300),
        |i, f| {
            s.see(i, f);
            match server_view(f, flows, mode) {
                Ok((flow, v)) => views[flow as usize] = Some(v),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        },
    );
    check_loss(&r, &format!("{name} SYN phase"), &p)?;
    if let Some(e) = err {
        return Err(format!("{name}: {e}"));
    }
    let views: Vec<ServerView> = views
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(format!("{name}: a SYN came out twice, another never"))?;
    // 2. SYN-ACKs back to the clients.
    let mut rc = ReplyCheck {
        every: 61,
        expect: expect_reply(&r),
        flows,
        checked: 0,
        errors: Vec::new(),
    };
    let synack = Frames::build(flows as usize, |i| {
        server_seg(
            &r,
            &views[i],
            flag::SYN | flag::ACK,
            RS_ISN,
            isn(i as u32) + 1,
            0,
        )
    });
    let p = env.pump(
        &synack,
        0,
        SERVER,
        CLIENT,
        u64::from(flows),
        Duration::from_secs(10),
        Duration::from_millis(300),
        |i, f| rc.see(i, f),
    );
    check_loss(&r, &format!("{name} SYN-ACK phase"), &p)?;
    // 3. Established: a client ACK, a server ACK, flow after flow.
    let req = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::ACK, isn(i as u32) + 1, RS_ISN + 1, 0)
    });
    let rep = Frames::build(flows as usize, |i| {
        server_seg(&r, &views[i], flag::ACK, RS_ISN + 1, isn(i as u32) + 1, 0)
    });
    let load = Load {
        inputs: vec![(&req, CLIENT), (&rep, SERVER)],
        pattern: vec![0, 1],
        queue: None,
    };
    // Every client ACK carries the first data sequence number: FULLNAT adds
    // the TOA to each, as in the one-worker established run.
    s.expect.toa = mode == ForwardMode::FullNat;
    s.every = 1021;
    rc.every = 1021;
    let mut see = |i: u64, port: usize, f: &[u8]| {
        if port == SERVER {
            s.see(i, f)
        } else {
            rc.see(i, f)
        }
    };
    let warm = env.pump_load(
        &load,
        0,
        [true, true],
        u64::from(flows).clamp(100_000, 2_000_000) * 2,
        Duration::from_secs(5),
        Duration::from_millis(300),
        &mut see,
    );
    check_loss(&r, &format!("{name} warm-up"), &warm)?;
    let before = r.dp.stats().workers;
    for _ in 0..repeats {
        let p = env.pump_load(
            &load,
            0,
            [true, true],
            packets,
            Duration::from_secs(4),
            Duration::from_millis(300),
            &mut see,
        );
        check_loss(&r, &name, &p)?;
        res.runs.push(p.mpps());
    }
    let after = r.dp.stats().workers;
    s.errors.extend(rc.errors);
    if !s.errors.is_empty() {
        return Err(format!("{name}: wrong output: {:?}", s.errors));
    }
    let drops = nonzero_drops(&r.dp);
    if !drops.is_empty() {
        return Err(format!("{name}: drops {drops:?}"));
    }
    res.per_worker = delta(&before, &after);
    res.rx = res.per_worker.iter().map(|w| w.rx).sum();
    res.handed_over = res.per_worker.iter().map(|w| w.handed_over).sum();
    res.handover_share = (res.rx > 0).then(|| res.handed_over as f64 / res.rx as f64);
    let best = res.runs.iter().cloned().fold(0.0, f64::max);
    res.mpps = Some(best);
    res.ns_per_packet = Some(1000.0 / best);
    res.sampled = s.checked + rc.checked;
    // What RSS and the owner function imply.
    let own = owners(n, steer)?;
    // The service's key as the snapshot compiler gives it: services without
    // NAT real servers are keyed by their flow.
    let key = match mode {
        ForwardMode::Nat => OwnerKey::ClientPort,
        _ => OwnerKey::Flow,
    };
    res.predicted_request_share = predicted(env.rss(), &req, |q| {
        own.of_request(CLIENT, key, &tuple(q.src, q.sport, q.dst, q.dport))
    });
    res.predicted_reply_share = predicted(env.rss(), &rep, |q| match mode {
        ForwardMode::FullNat => own.of_lport(SERVER, &tuple(q.src, q.sport, q.dst, q.dport)),
        _ => own.of_client(key, IpAddr::from(q.dst), q.dport),
    });
    Ok(res)
}

/// Every run of the scenario: FULLNAT and NAT over each worker count;
/// FULLNAT with more than one worker both with RSS pre-calculation and
/// without.
pub fn all(
    env: &mut Env,
    counts: &[usize],
    flows: u32,
    packets: u64,
    repeats: usize,
) -> Result<Vec<WorkersRun>, String> {
    let mut out = Vec::new();
    for mode in [ForwardMode::FullNat, ForwardMode::Nat] {
        for &n in counts {
            let steers: &[Steer] = if mode == ForwardMode::FullNat && n > 1 {
                &[Steer::Rss, Steer::Handover]
            } else {
                &[Steer::Rss]
            };
            for &steer in steers {
                eprintln!(
                    "pipeline: {} established, {flows} flows, {n} worker(s){}",
                    mode_name(mode),
                    if n > 1 {
                        format!(", {}", steer.name())
                    } else {
                        String::new()
                    }
                );
                out.push(established(env, mode, n, steer, flows, packets, repeats)?);
            }
        }
    }
    env.use_workers(1)?;
    Ok(out)
}
