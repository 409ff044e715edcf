//! What handing a packet to another worker costs, two ways.
//!
//! **Ring path** ([`ring_cost`]): the hand-over itself between two lcores on
//! different CPUs, as the dataplane does it: bursts of 32 mbufs through an
//! SPSC `Ring` with `enqueue_burst` (the receiving worker, on the main lcore
//! here, after writing the mbuf's port as `Worker::hand_over` does) and
//! `dequeue_burst` (the owner, on worker lcore 1), the owner then reading the
//! mbuf and the packet's first cache line and writing the TTL, as its
//! classify and rewrite would. Each side times its own calls with the TSC, so
//! the figure is CPU time spent per packet, not the throughput of the pair;
//! the mbufs come back on a second ring outside the timed sections.
//!
//! **In the pipeline** ([`pipeline`]): NAT flows all owned by worker 0 (the
//! worker with a CPU of its own, as in the one-worker runs), their requests
//! put on worker 0's own rx queue (no hand-over: the one-worker path) or on
//! worker 1's (every packet received by worker 1 and handed over),
//! alternately. The difference in time per packet is what 100 % hand-over
//! costs the pipeline's throughput on this machine: the owner's extra work,
//! and, where there are fewer CPUs than lcores, worker 1 sharing its CPU with
//! the generator. An upper bound there, not a per-packet CPU cost.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dataplane::dpdk::lcore;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::mempool::Mempool;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::{rdtsc, tsc_hz};
use dataplane::owner::{OwnerKey, Owners, PortSteer};
use dataplane::wire::PacketBuf;
use dataplane::ForwardMode;
use serde::{Deserialize, Serialize};

use crate::env::{Env, Load, CLIENT};
use crate::frames::{self, flag, Frames};
use crate::pipeline::{check_loss, client_seg, start, Sampler};

const BURST: usize = 32;
/// Mbufs circulating between the two lcores.
const IN_FLIGHT: usize = 512;
/// The owner's lcore in the ring test (the producer is the main lcore 0).
const OWNER_LCORE: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RingCost {
    pub packets: u64,
    pub burst: usize,
    /// Sender: `enqueue_burst`, per packet.
    pub enqueue_ns: f64,
    /// Owner: `dequeue_burst`, per packet.
    pub dequeue_ns: f64,
    /// Owner: first read of the mbuf and the packet (lines the sender's CPU
    /// wrote or read last) and the TTL write, per packet.
    pub touch_ns: f64,
    /// The three together: the hand-over's CPU time per packet.
    pub ns_per_packet: f64,
    /// Wall time per packet of the whole transfer (the pair's throughput).
    pub wall_ns_per_packet: f64,
    pub lcores: String,
    /// `ns_per_packet` of every run; the best one is reported.
    pub runs: Vec<f64>,
    /// One cache line from one lcore to the other (half a ping-pong round
    /// trip), measured before the best run: what every line the hand-over
    /// moves costs on this pair of CPUs.
    pub line_ns: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PipelineCost {
    pub flows: u32,
    /// Requests on the owner's own queue / on the other worker's queue.
    pub local_mpps: f64,
    pub handed_mpps: f64,
    pub local_runs: Vec<f64>,
    pub handed_runs: Vec<f64>,
    /// Share of packets handed over in each (0 and 1 when it went as planned).
    pub local_share: f64,
    pub handed_share: f64,
    /// 1000 / handed_mpps - 1000 / local_mpps.
    pub delta_ns: f64,
    pub adaptive_poll: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Handover {
    pub ring: Option<RingCost>,
    pub pipeline: Option<PipelineCost>,
}

impl Handover {
    /// The key figure: the ring path's CPU time per packet.
    pub fn ns(&self) -> Option<f64> {
        self.ring.as_ref().map(|r| r.ns_per_packet)
    }
}

/// The ring path between the main lcore and worker lcore 1 (no dataplane
/// may be running): the least disturbed of `repeats` runs of `packets`.
pub fn ring_cost(packets: u64, repeats: usize) -> Result<RingCost, String> {
    let mut best: Option<RingCost> = None;
    let mut runs = Vec::new();
    for _ in 0..repeats.max(1) {
        let line_ns = line_transfer(100_000)?;
        let r = RingCost {
            line_ns,
            ..ring_once(packets)?
        };
        runs.push(r.ns_per_packet);
        if best
            .as_ref()
            .is_none_or(|b| r.ns_per_packet < b.ns_per_packet)
        {
            best = Some(r);
        }
    }
    let mut best = best.ok_or("hand-over bench: no run")?;
    best.runs = runs;
    Ok(best)
}

/// Half the round trip of a cache line between the main lcore and the
/// owner lcore: each side waits for the other's value, then writes its own.
fn line_transfer(rounds: u64) -> Result<f64, String> {
    let line = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (line, stop) = (line.clone(), stop.clone());
        lcore::launch(OWNER_LCORE, move || {
            for i in 0..rounds {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    if stop.load(Ordering::Relaxed) {
                        return -1;
                    }
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
            0
        })?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let t0 = Instant::now();
    let mut done = 0;
    'rounds: for i in 0..rounds {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            if i % 1024 == 0 && Instant::now() > deadline {
                break 'rounds;
            }
            std::hint::spin_loop();
        }
        done += 1;
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    lcore::wait(OWNER_LCORE);
    if done < rounds {
        return Err(format!(
            "hand-over bench: cache-line ping-pong stalled after {done} rounds"
        ));
    }
    Ok(elapsed.as_nanos() as f64 / rounds as f64 / 2.0)
}

fn ring_once(packets: u64) -> Result<RingCost, String> {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = RUNS.fetch_add(1, Ordering::Relaxed);
    let pool = Mempool::new(&format!("hob_pool{tag}"), 2047, 0, -1)?;
    let fwd = Arc::new(Ring::new(&format!("hob_fwd{tag}"), 1024)?);
    let back = Arc::new(Ring::new(&format!("hob_ret{tag}"), 1024)?);
    let done = Arc::new(AtomicBool::new(false));
    // Owner's totals: dequeue cycles, touch cycles, packets.
    let totals: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let frame = {
        let mut b = [0u8; 64];
        let n = frames::write(
            &frames::Seg {
                src_mac: frames::GW_MAC,
                dst_mac: [2, 0, 0, 0, 0, 1],
                src: [100, 64, 0, 1],
                sport: 10_000,
                dst: frames::VIP,
                dport: frames::VPORT,
                flags: flag::ACK,
                seq: 1,
                ack: 1,
                payload: 0,
            },
            &mut b,
        );
        b[..n].to_vec()
    };
    let mut free: Vec<Mbuf> = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let mut m = pool.alloc().ok_or("hand-over bench: pool empty")?;
        m.write_from(&frame);
        free.push(m);
    }
    {
        let (fwd, back, done, totals) = (fwd.clone(), back.clone(), done.clone(), totals.clone());
        lcore::launch(OWNER_LCORE, move || {
            let mut b: ArrayVec<Mbuf, BURST> = ArrayVec::new();
            let (mut deq, mut touch, mut pkts) = (0u64, 0u64, 0u64);
            let mut x = 0u8;
            loop {
                let t0 = rdtsc();
                let n = fwd.dequeue_burst(&mut b);
                let t1 = rdtsc();
                if n == 0 {
                    if done.load(Ordering::Acquire) && fwd.count() == 0 {
                        break;
                    }
                    continue;
                }
                deq += t1 - t0;
                for m in b.iter_mut() {
                    x ^= m.port() as u8;
                    let d = m.data_mut();
                    x ^= d[0] ^ d[12] ^ d[30];
                    d[22] = d[22].wrapping_sub(1);
                }
                touch += rdtsc() - t1;
                pkts += n as u64;
                while !b.is_empty() {
                    back.enqueue_burst(&mut b);
                }
            }
            black_box(x);
            totals[0].store(deq, Ordering::Relaxed);
            totals[1].store(touch, Ordering::Relaxed);
            totals[2].store(pkts, Ordering::Release);
            0
        })?;
    }
    let mut b: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut returned: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let (mut enq, mut sent) = (0u64, 0u64);
    let mut x = 0u8;
    let t_start = Instant::now();
    while sent < packets {
        while back.dequeue_burst(&mut returned) > 0 {
            free.extend(returned.drain(..));
        }
        while !b.is_full() {
            let Some(mut m) = free.pop() else { break };
            // The receiving worker read the packet (classify) and records
            // the port it came in on.
            x ^= m.data()[23];
            m.set_port(0);
            b.push(m);
        }
        if b.is_empty() {
            continue;
        }
        let t0 = rdtsc();
        let n = fwd.enqueue_burst(&mut b);
        let t1 = rdtsc();
        if n > 0 {
            enq += t1 - t0;
            sent += n as u64;
        }
    }
    done.store(true, Ordering::Release);
    let rc = lcore::wait(OWNER_LCORE);
    let wall = t_start.elapsed();
    black_box(x);
    drop(b);
    drop(free);
    while back.dequeue_burst(&mut returned) > 0 {
        returned.clear();
    }
    if rc != 0 {
        return Err(format!("hand-over bench: the owner lcore returned {rc}"));
    }
    let got = totals[2].load(Ordering::Acquire);
    if got != sent {
        return Err(format!("hand-over bench: {sent} sent, {got} received"));
    }
    let ns = |cycles: u64| cycles as f64 * 1e9 / tsc_hz().max(1) as f64 / sent.max(1) as f64;
    let (enqueue_ns, dequeue_ns, touch_ns) = (
        ns(enq),
        ns(totals[0].load(Ordering::Relaxed)),
        ns(totals[1].load(Ordering::Relaxed)),
    );
    Ok(RingCost {
        packets: sent,
        burst: BURST,
        enqueue_ns,
        dequeue_ns,
        touch_ns,
        ns_per_packet: enqueue_ns + dequeue_ns + touch_ns,
        wall_ns_per_packet: wall.as_nanos() as f64 / sent.max(1) as f64,
        lcores: format!("0 -> {OWNER_LCORE}"),
        runs: Vec::new(),
        line_ns: 0.0,
    })
}

/// NAT requests of flows worker 0 owns, on worker 0's queue and on worker
/// 1's, alternately; best run of each.
pub fn pipeline(
    env: &mut Env,
    flows: u32,
    packets: u64,
    repeats: usize,
) -> Result<PipelineCost, String> {
    // The worker with a CPU of its own (lcore 1; the generator shares CPU
    // 0 with worker 1 on a 2-CPU machine).
    const OWNER: usize = 0;
    env.use_workers(2)?;
    let owners = Owners::new(2, vec![PortSteer::Handover, PortSteer::Handover]);
    let mine: Vec<u32> = (0u32..)
        .filter(|&i| {
            let (ip, port) = frames::client(i);
            owners.of_client(OwnerKey::ClientPort, IpAddr::from(ip), port) == OWNER
        })
        .take(flows as usize)
        .collect();
    let adaptive = env.shares_cpus();
    let r = start(env, ForwardMode::Nat, flows * 2 + 4096, adaptive)?;
    let syn = Frames::build(mine.len(), |i| {
        client_seg(&r, mine[i], flag::SYN, 1000, 0, 0)
    });
    let ack = Frames::build(mine.len(), |i| {
        client_seg(&r, mine[i], flag::ACK, 1001, 5001, 0)
    });
    let mut s = Sampler::new(&r, 1021);
    let mut res = PipelineCost {
        flows,
        adaptive_poll: adaptive,
        ..Default::default()
    };
    let mut load = Load::one(&syn, CLIENT);
    load.queue = Some(OWNER as u16);
    let p = env.pump_load(
        &load,
        0,
        [false, true],
        u64::from(flows),
        Duration::from_secs(10),
        Duration::from_millis(300),
        |_, _, _| {},
    );
    check_loss(&r, "hand-over SYN phase", &p)?;
    let mut shares = [(0u64, 0u64); 2];
    for rep in 0..=repeats {
        for (k, queue) in [OWNER, 1 - OWNER].into_iter().enumerate() {
            let mut load = Load::one(&ack, CLIENT);
            load.queue = Some(queue as u16);
            let before = r.dp.stats().workers;
            let p = env.pump_load(
                &load,
                0,
                [false, true],
                packets,
                Duration::from_secs(4),
                Duration::from_millis(300),
                |i, _, f| s.see(i, f),
            );
            check_loss(&r, "hand-over run", &p)?;
            let after = r.dp.stats().workers;
            // The first round warms up.
            if rep == 0 {
                continue;
            }
            let sum = |f: fn(&dataplane::WorkerStats) -> u64| {
                after.iter().map(f).sum::<u64>() - before.iter().map(f).sum::<u64>()
            };
            shares[k].0 += sum(|w| w.handed_over);
            shares[k].1 += sum(|w| w.rx_packets);
            if k == 0 {
                res.local_runs.push(p.mpps());
            } else {
                res.handed_runs.push(p.mpps());
            }
        }
    }
    if !s.errors.is_empty() {
        return Err(format!("hand-over run: wrong output: {:?}", s.errors));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    res.local_mpps = best(&res.local_runs);
    res.handed_mpps = best(&res.handed_runs);
    let share = |(h, rx): (u64, u64)| h as f64 / rx.max(1) as f64;
    res.local_share = share(shares[0]);
    res.handed_share = share(shares[1]);
    if res.local_share != 0.0 || res.handed_share < 0.99 {
        return Err(format!(
            "hand-over run: {:.3} handed over on the owner's queue, {:.3} on the other's (want 0 and 1)",
            res.local_share, res.handed_share
        ));
    }
    if res.local_mpps > 0.0 && res.handed_mpps > 0.0 {
        res.delta_ns = 1000.0 / res.handed_mpps - 1000.0 / res.local_mpps;
    }
    env.use_workers(1)?;
    Ok(res)
}
