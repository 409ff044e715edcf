//! Configuration churn: established NAT traffic while another thread applies
//! a new configuration 100 times a second (other services come and go, the
//! one under test stays); every packet sent must come out.
//!
//! With several workers (`churn2`) the configuration also carries a large
//! `mh` service whose weights change on every apply, so its Maglev table is
//! rebuilt on the control thread each time, and new connections to it arrive
//! all along, so every worker keeps scheduling over freshly published tables.
//! No worker may build a scheduler table itself (`sched_tables_built`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::{ForwardMode, ServiceSpec};
use serde::{Deserialize, Serialize};

use crate::env::{Env, Load, CLIENT, SERVER};
use crate::frames::{self, flag, Frames};
use crate::pipeline::{client_seg, config, dest, open_flows, service, start, Sampler, NRS};

/// The `mh` service's port, and the port base of its dests (each real
/// server many times over, on ports 9000 + j / NRS).
const MH_VPORT: u16 = 2000;
const MH_RPORT: u16 = 9000;
/// New connections to the `mh` service: distinct clients, from flow index
/// `MH_FLOW_BASE` on (far from the established flows).
const MH_FLOWS: u32 = 1 << 17;
const MH_FLOW_BASE: u32 = 2_000_000;
/// One frame in this many is a new connection to the `mh` service.
const MH_EVERY: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Churn {
    pub applies: u64,
    pub seconds: f64,
    pub sent: u64,
    pub forwarded: u64,
    pub lost: u64,
    pub mpps: f64,
    pub apply_errors: u64,
    /// Workers of the run (0 in reports from before several workers: 1).
    pub workers: usize,
    /// Dests of the churned `mh` service (0: none).
    pub mh_dests: usize,
    /// Connections the `mh` service scheduled during the run.
    pub mh_conns: u64,
    /// Per worker: scheduler tables its thread built (must stay 0).
    pub sched_tables_built: Vec<u64>,
    /// Workers back off when idle (they share CPUs with the generator).
    pub adaptive_poll: bool,
    /// Per worker: packets received from its queues / handed to another worker.
    pub rx: Vec<u64>,
    pub handed_over: Vec<u64>,
}

/// What churns besides the 12 services that come and go.
#[derive(Debug, Clone, Copy)]
pub struct ChurnOpts {
    pub workers: usize,
    /// An `mh` service with this many dests, one weight changed per apply.
    pub mh_dests: usize,
}

/// The configuration of apply number `k`.
fn churned(k: u32, mh_dests: usize) -> Vec<ServiceSpec> {
    let mut extra: Vec<ServiceSpec> = (0..12u16)
        .filter(|j| !(u32::from(*j) + k).is_multiple_of(3))
        .map(|j| {
            let w = 1 + (k + u32::from(j)) % 5;
            let mut d = vec![dest([192, 168, 0, 50 + j as u8], 9000, ForwardMode::Nat, w)];
            if k.is_multiple_of(2) {
                d.push(dest([192, 168, 0, 80 + j as u8], 9000, ForwardMode::Nat, 1));
            }
            service(1000 + j, if k.is_multiple_of(2) { "wrr" } else { "rr" }, d)
        })
        .collect();
    if mh_dests > 0 {
        let heavy = k as usize % mh_dests;
        let dests = (0..mh_dests)
            .map(|j| {
                let port = MH_RPORT + (j / NRS) as u16;
                let w = if j == heavy { 2 } else { 1 };
                dest(frames::rs(j % NRS).0, port, ForwardMode::Nat, w)
            })
            .collect();
        extra.push(service(MH_VPORT, "mh", dests));
    }
    extra
}

pub fn churn(env: &mut Env, flows: u32, seconds: f64, opts: ChurnOpts) -> Result<Churn, String> {
    env.use_workers(opts.workers)?;
    let mh = opts.mh_dests > 0;
    let cap = flows * 2 + 4096 + if mh { 2 * MH_FLOWS } else { 0 };
    let adaptive = env.shares_cpus();
    let r = Arc::new(start(env, ForwardMode::Nat, cap, adaptive)?);
    open_flows(env, &r, flows, Duration::from_secs(10), "churn")?;
    // The first churned configuration is in place before traffic to it starts.
    r.dp.apply(&config(ForwardMode::Nat, churned(0, opts.mh_dests)))
        .map_err(|e| format!("churn: first apply: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let applies = Arc::new(AtomicU64::new(1));
    let errors = Arc::new(AtomicU64::new(0));
    let th = {
        let (r, stop, applies, errors) = (r.clone(), stop.clone(), applies.clone(), errors.clone());
        std::thread::spawn(move || {
            let mut k = 1u32;
            let period = Duration::from_millis(10);
            let mut next = Instant::now() + period;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                next += period;
                let desc = config(ForwardMode::Nat, churned(k, opts.mh_dests));
                if r.dp.apply(&desc).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                applies.fetch_add(1, Ordering::Relaxed);
                k = k.wrapping_add(1);
            }
        })
    };
    let ack = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::ACK, 1001, 5001, 0)
    });
    let mh_syn = Frames::build(if mh { MH_FLOWS as usize } else { 1 }, |i| {
        let s = client_seg(&r, MH_FLOW_BASE + i as u32, flag::SYN, 1000, 0, 0);
        frames::Seg {
            dport: MH_VPORT,
            ..s
        }
    });
    let mut load = Load::one(&ack, CLIENT);
    if mh {
        load.inputs.push((&mh_syn, CLIENT));
        load.pattern = vec![0; MH_EVERY - 1];
        load.pattern.push(1);
    }
    let mut s = Sampler::new(&r, 509);
    let mut s_mh = Sampler::new(&r, 61);
    s_mh.expect.dport = None;
    let t0 = Instant::now();
    let p = env.pump_load(
        &load,
        0,
        [false, true],
        u64::MAX / 2,
        Duration::from_secs_f64(seconds),
        Duration::from_millis(300),
        |i, _, f| match frames::quick(f) {
            Some(q) if q.dport != frames::RPORT => s_mh.see(i, f),
            _ => s.see(i, f),
        },
    );
    // Whatever is still in flight comes out now.
    let tail = env.drain_outputs(SERVER, Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = th.join();
    let secs = t0.elapsed().as_secs_f64();
    s.errors.extend(s_mh.errors);
    if !s.errors.is_empty() {
        return Err(format!("churn: wrong output: {:?}", s.errors));
    }
    let forwarded = p.recv + tail;
    let st = r.dp.stats();
    let res = Churn {
        applies: applies.load(Ordering::Relaxed),
        seconds: secs,
        sent: p.sent,
        forwarded,
        lost: p.sent.saturating_sub(forwarded),
        mpps: p.mpps(),
        apply_errors: errors.load(Ordering::Relaxed),
        workers: opts.workers,
        adaptive_poll: adaptive,
        mh_dests: opts.mh_dests,
        mh_conns: st
            .services
            .iter()
            .find(|s| s.key.vport == MH_VPORT)
            .map_or(0, |s| s.traffic.conns),
        sched_tables_built: st.workers.iter().map(|w| w.sched_tables_built).collect(),
        rx: st.workers.iter().map(|w| w.rx_packets).collect(),
        handed_over: st.workers.iter().map(|w| w.handed_over).collect(),
    };
    if res.sched_tables_built.iter().any(|&n| n != 0) {
        return Err(format!(
            "churn: workers built scheduler tables themselves: {:?}",
            res.sched_tables_built
        ));
    }
    if mh && res.mh_conns == 0 {
        return Err("churn: the mh service scheduled no connection".into());
    }
    Ok(res)
}
