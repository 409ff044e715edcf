//! The in-process DPDK environment of the pipeline bench: EAL with the
//! generator on the main lcore 0 and worker lcores 1..=N, a generator mbuf
//! pool, and ring-backed ports (client side `dpdk0`, server side `dpdk1`),
//! plus the generator's pump that feeds the rx rings and drains the tx rings.
//!
//! One worker uses a pair of one-queue ports. Several workers use a pair of
//! ports with one rx/tx ring per queue (queue i is worker i's), and the
//! generator plays the NIC: it puts every frame on the rx queue a Toeplitz RSS
//! over the frame's own 5-tuple picks ([`SoftRss`]), with the key and
//! redirection table the dataplane is told about (`Steering::SoftRss`).

use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dataplane::dpdk::eal::Eal;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::mempool::Mempool;
use dataplane::dpdk::ring::{port_from_ring_queues, Ring};
use dataplane::rss::{Reta, Toeplitz};
use dataplane::wire::PacketBuf;
use dataplane::{DataplaneSpec, PortSpec, Steering};

use crate::frames::{self, Frames};

/// Entries per ring: bounds the packets in flight toward and from the worker.
const RING_SIZE: u32 = 4096;
const GEN_BURST: usize = 32;
/// Packets in flight at most with one worker: below the tx ring's room, so a
/// generator that is briefly descheduled (shared core) never makes the
/// worker drop on a full ring.
const WINDOW: u64 = (RING_SIZE as u64) * 3 / 4;
/// With several workers: below a hand-over ring's room
/// (`dataplane::handover::RING_SIZE`), so a descheduled owner never makes
/// another worker drop on a full hand-over ring.
const WINDOW_WORKERS: u64 = 30 * GEN_BURST as u64;

/// Client side and server side.
pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

/// The RSS key the generator hashes with: Microsoft's verification key
/// ("Verifying the RSS Hash Calculation"), the one most PMDs default to.
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
/// Redirection table entries (what most 10/25G NICs have), round robin over the queues.
pub const RETA_SIZE: usize = 128;

/// The NIC's receive-side scaling, in software: Toeplitz over (src, dst,
/// sport, dport) of an IPv4 TCP frame, then the redirection table.
pub struct SoftRss {
    toeplitz: Toeplitz,
    reta: Reta,
}

impl SoftRss {
    pub fn new(queues: u16) -> Result<SoftRss, String> {
        Ok(SoftRss {
            toeplitz: Toeplitz::new(&RSS_KEY).map_err(|e| e.to_string())?,
            reta: Reta::round_robin(RETA_SIZE, queues).map_err(|e| e.to_string())?,
        })
    }

    /// What the dataplane is told about a port this RSS feeds.
    pub fn steering(&self) -> Steering {
        Steering::SoftRss {
            key: RSS_KEY.to_vec(),
            reta: self.reta.entries().to_vec(),
        }
    }

    /// The rx queue of a frame (queue 0 for anything but IPv4 TCP, as a NIC
    /// without a hash for it would do).
    pub fn queue(&self, f: &[u8]) -> u16 {
        match frames::quick(f) {
            Some(q) => self.queue_of(q.src, q.dst, q.sport, q.dport),
            None => 0,
        }
    }

    pub fn queue_of(&self, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> u16 {
        let h = self.toeplitz.hash_v4(src.into(), dst.into(), sport, dport);
        self.reta.queue_of(h)
    }
}

/// The two ring ports (client side, server side) with `queues` queue pairs each.
struct PortSet {
    queues: usize,
    /// ethdev names (`net_ring_<name>`), by port.
    devices: [String; 2],
    /// Per port: rx rings (we enqueue), tx rings (we dequeue), one per queue.
    rx: [Vec<Ring>; 2],
    tx: [Vec<Ring>; 2],
    rss: Option<SoftRss>,
}

impl PortSet {
    fn new(tag: &str, queues: usize) -> Result<PortSet, String> {
        let mut rx: [Vec<Ring>; 2] = Default::default();
        let mut tx: [Vec<Ring>; 2] = Default::default();
        let mut devices: [String; 2] = Default::default();
        for p in 0..2 {
            // The one-queue rings keep their historical names.
            let q_name = |dir: &str, q: usize| {
                if queues == 1 {
                    format!("{tag}_{dir}{p}")
                } else {
                    format!("{tag}_{dir}{p}_{q}")
                }
            };
            for q in 0..queues {
                rx[p].push(Ring::new(&q_name("rx", q), RING_SIZE)?);
                tx[p].push(Ring::new(&q_name("tx", q), RING_SIZE)?);
            }
            let name = format!("{tag}{p}");
            let rxr: Vec<&Ring> = rx[p].iter().collect();
            let txr: Vec<&Ring> = tx[p].iter().collect();
            port_from_ring_queues(&name, &rxr, &txr)?;
            devices[p] = format!("net_ring_{name}");
        }
        let rss = if queues > 1 {
            Some(SoftRss::new(queues as u16)?)
        } else {
            None
        };
        Ok(PortSet {
            queues,
            devices,
            rx,
            tx,
            rss,
        })
    }
}

pub struct Env {
    pub pool: Mempool,
    /// Port sets by queue count; `cur` is the one the next dataplane uses.
    sets: Vec<PortSet>,
    cur: usize,
    /// Worker lcores the EAL has (1..=max workers).
    max_workers: usize,
    /// `--lcores` as given to the EAL.
    pub lcores: String,
    /// The CPU of each lcore.
    cpus: Vec<u32>,
    /// Spare mbufs the generator reuses (outputs whose start did not move).
    stash: Vec<Mbuf>,
    /// The headroom of a fresh mbuf of `pool`.
    headroom: u16,
    prefix: String,
    _eal: Eal,
}

/// Remove EAL's runtime directory of a file prefix.
pub fn remove_runtime_dir(prefix: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

/// CPUs this process may run on (taskset / cgroup), lowest first.
fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            cpus.extend(a..=b);
        }
    }
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        cpus.extend(0..n);
    }
    cpus
}

/// The EAL `--lcores` value for the generator (lcore 0) and `workers` worker
/// lcores: lcore i on the i-th allowed CPU, wrapping around when there are
/// fewer CPUs than lcores. On 2 CPUs and 2 workers: `0@0,1@1,2@0` (worker 0
/// alone on CPU 1 as in the one-worker runs; worker 1 shares CPU 0 with the
/// generator).
pub fn lcore_map(workers: usize, cpus: &[u32]) -> String {
    let cpus = if cpus.is_empty() { &[0][..] } else { cpus };
    (0..=workers)
        .map(|l| format!("{l}@{}", cpus[l % cpus.len()]))
        .collect::<Vec<_>>()
        .join(",")
}

impl Env {
    /// EAL with the generator on lcore 0 and `max_workers` worker lcores.
    pub fn init(max_workers: usize) -> Result<Env, String> {
        let max_workers = max_workers.max(1);
        let prefix = format!("dpvs-bench-{}", std::process::id());
        let allowed = allowed_cpus();
        let lcores = lcore_map(max_workers, &allowed);
        let cpus = (0..=max_workers)
            .map(|l| allowed.get(l % allowed.len().max(1)).copied().unwrap_or(0))
            .collect();
        let args: Vec<String> = [
            "--no-huge",
            "--no-pci",
            "-m",
            "1024",
            "--lcores",
            &lcores,
            "--file-prefix",
            &prefix,
            "--log-level",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let eal = Eal::init(&args).inspect_err(|_| remove_runtime_dir(&prefix))?;
        let res = (|| {
            let pool = Mempool::new("bench_gen_pool", 32767, 256, -1)?;
            let one = PortSet::new("b", 1)?;
            Ok::<_, String>((pool, one))
        })();
        let (pool, one) = match res {
            Ok(v) => v,
            Err(e) => {
                drop(eal);
                remove_runtime_dir(&prefix);
                return Err(e);
            }
        };
        // A fresh mbuf's headroom: what a reusable output still has.
        let headroom = pool.alloc().map_or(128, |m| m.headroom());
        Ok(Env {
            pool,
            headroom,
            sets: vec![one],
            cur: 0,
            max_workers,
            lcores,
            cpus,
            stash: Vec::new(),
            prefix,
            _eal: eal,
        })
    }

    /// Use `n` workers (and ports with `n` queues) for the next dataplane.
    pub fn use_workers(&mut self, n: usize) -> Result<(), String> {
        if n == 0 || n > self.max_workers {
            return Err(format!(
                "{n} workers: this run has worker lcores for 1..={} (--workers)",
                self.max_workers
            ));
        }
        self.cur = match self.sets.iter().position(|s| s.queues == n) {
            Some(i) => i,
            None => {
                self.sets.push(PortSet::new(&format!("q{n}_"), n)?);
                self.sets.len() - 1
            }
        };
        Ok(())
    }

    pub fn workers(&self) -> usize {
        self.set().queues
    }

    /// Whether the generator and the current workers (lcores 0..=n) have
    /// fewer CPUs than lcores: then a busy-polling worker holds a CPU the
    /// generator or another worker needs for its whole time slice, and the
    /// runs use `adaptive_poll` (as dpvsd is run on such a host).
    pub fn shares_cpus(&self) -> bool {
        let mut used: Vec<u32> = self.cpus[..=self.workers()].to_vec();
        used.sort_unstable();
        used.dedup();
        used.len() <= self.workers()
    }

    fn set(&self) -> &PortSet {
        &self.sets[self.cur]
    }

    /// The generator's RSS for the current ports (None with one queue).
    pub fn rss(&self) -> Option<&SoftRss> {
        self.set().rss.as_ref()
    }

    /// The dataplane spec for the current ports: workers on lcores 1..=n,
    /// both ports with `steering`.
    pub fn spec_with(
        &self,
        conn_capacity: u32,
        adaptive_poll: bool,
        steering: Steering,
    ) -> DataplaneSpec {
        let set = self.set();
        let n = set.queues as u16;
        DataplaneSpec {
            eal_args: vec![],
            ports: (0..2)
                .map(|i| PortSpec {
                    name: format!("dpdk{i}"),
                    device: set.devices[i].clone(),
                    queues: n,
                    mtu: 0,
                    steering: steering.clone(),
                    kni: dataplane::KniMode::Off,
                })
                .collect(),
            worker_cores: (1..=u32::from(n)).collect(),
            mbufs: 8191,
            conn_capacity,
            adaptive_poll,
        }
    }

    /// The dataplane spec for the current ports, default steering (with
    /// several queues: the generator's soft RSS).
    pub fn spec(&self, conn_capacity: u32, adaptive_poll: bool) -> DataplaneSpec {
        let steering = self.rss().map_or(Steering::default(), SoftRss::steering);
        self.spec_with(conn_capacity, adaptive_poll, steering)
    }

    /// Inject frames once on queue 0 (slow path: ARP, probes).
    pub fn inject(&mut self, port: usize, frames: &[Vec<u8>]) -> Result<(), String> {
        let mut v = Vec::new();
        for f in frames {
            let mut m = self.pool.alloc().ok_or("generator pool empty")?;
            if !m.write_from(f) {
                return Err("frame does not fit an mbuf".into());
            }
            v.push(m);
        }
        let left = self.sets[self.cur].rx[port][0].enqueue(v);
        if !left.is_empty() {
            return Err("rx ring full".into());
        }
        Ok(())
    }

    /// Everything the director sent on `port` (any queue) within `wait`, as bytes.
    pub fn collect(&mut self, port: usize, want: usize, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < want && Instant::now() < deadline {
            let mut got = 0;
            for tx in &self.sets[self.cur].tx[port] {
                let v = tx.dequeue(64);
                got += v.len();
                out.extend(v.into_iter().map(|m| m.data().to_vec()));
            }
            if got == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        out
    }

    /// Throw away whatever is queued on the tx rings.
    pub fn drain(&mut self) {
        for tx in self.sets[self.cur].tx.iter().flatten() {
            while !tx.dequeue(256).is_empty() {}
        }
    }

    /// Throw away frames left on the rx rings. Only while no dataplane runs:
    /// the worker is those rings' single consumer.
    pub fn drain_rx(&mut self) {
        for rx in self.sets[self.cur].rx.iter().flatten() {
            while !rx.dequeue(256).is_empty() {}
        }
    }

    /// Count (and free) what still comes out of `port` until `stall` passes with nothing.
    pub fn drain_outputs(&mut self, port: usize, stall: Duration) -> u64 {
        let mut n = 0u64;
        let mut last = Instant::now();
        while last.elapsed() < stall {
            for tx in &self.sets[self.cur].tx[port] {
                let v = tx.dequeue(64);
                if !v.is_empty() {
                    n += v.len() as u64;
                    last = Instant::now();
                }
            }
        }
        n
    }

    /// An mbuf for a frame: a spare output (overwritten in place; the pump
    /// rewrites its length when it differs) or a fresh one. Outputs whose
    /// start moved are freed: a rewrite that grew the frame at its front
    /// (IPIP, TOA before a long payload) moved it into the headroom, which
    /// reusing it would lose a little more each round.
    fn take_mbuf(&mut self) -> Option<Mbuf> {
        while let Some(m) = self.stash.pop() {
            if m.headroom() == self.headroom {
                return Some(m);
            }
        }
        if let Some(v) = self.pool.alloc_bulk(GEN_BURST) {
            self.stash.extend(v);
            return self.stash.pop();
        }
        self.pool.alloc()
    }

    /// Feed `count` frames (cycling through `frames`, starting at `first`) into
    /// `in_port`'s rx rings and take what the worker sends on `out_port`, calling
    /// `on_out(i, frame)` for each output (i counts outputs). Stops at `count`
    /// outputs, at `cap`, or when nothing arrived for `stall` after all was sent.
    #[allow(clippy::too_many_arguments)]
    pub fn pump(
        &mut self,
        frames: &Frames,
        first: usize,
        in_port: usize,
        out_port: usize,
        count: u64,
        cap: Duration,
        stall: Duration,
        mut on_out: impl FnMut(u64, &[u8]),
    ) -> Pumped {
        let load = Load::one(frames, in_port);
        let outs = [out_port == CLIENT, out_port == SERVER];
        self.pump_load(&load, first, outs, count, cap, stall, |i, _, f| {
            on_out(i, f)
        })
    }

    /// The general pump: frames of every input of `load`, interleaved by its
    /// pattern, each on its port and on the rx queue RSS (or `load.queue`)
    /// picks; outputs of the ports `outs` marks are counted and passed to
    /// `on_out(i, port, frame)`, those of the other port only counted.
    #[allow(clippy::too_many_arguments)]
    pub fn pump_load(
        &mut self,
        load: &Load,
        first: usize,
        outs: [bool; 2],
        count: u64,
        cap: Duration,
        stall: Duration,
        mut on_out: impl FnMut(u64, usize, &[u8]),
    ) -> Pumped {
        let nq = self.workers();
        // The NIC's choice for every frame, worked out before the clock starts.
        let lanes: Vec<Vec<u8>> = load
            .inputs
            .iter()
            .map(|(f, _)| match (load.queue, self.rss()) {
                (Some(q), _) => vec![q as u8; f.len()],
                (None, Some(rss)) => (0..f.len()).map(|i| rss.queue(f.get(i)) as u8).collect(),
                // One queue: nothing to work out (an empty list is queue 0).
                (None, None) => Vec::new(),
            })
            .collect();
        let window = if nq > 1 { WINDOW_WORKERS } else { WINDOW };
        let t0 = Instant::now();
        let mut next: Vec<usize> = load
            .inputs
            .iter()
            .map(|(f, _)| first % f.len().max(1))
            .collect();
        let mut slot = 0usize;
        let (mut sent, mut recv, mut other) = (0u64, 0u64, 0u64);
        // Per (port, queue): frames written, not yet taken by the rx ring.
        let mut bursts: Vec<ArrayVec<Mbuf, GEN_BURST>> =
            (0..2 * nq).map(|_| ArrayVec::new()).collect();
        let mut pending = 0usize;
        let mut out: ArrayVec<Mbuf, 64> = ArrayVec::new();
        let mut last_progress = Instant::now();
        let mut loops = 0u32;
        loop {
            let mut moved = 0usize;
            if pending == 0 && sent < count && sent.saturating_sub(recv) < window {
                let want = (count - sent)
                    .min(GEN_BURST as u64)
                    .min(window - sent.saturating_sub(recv)) as usize;
                for _ in 0..want {
                    let Some(mut m) = self.take_mbuf() else {
                        break;
                    };
                    let input = usize::from(load.pattern[slot]);
                    slot += 1;
                    if slot == load.pattern.len() {
                        slot = 0;
                    }
                    let (frames, port) = load.inputs[input];
                    let k = next[input];
                    next[input] = if k + 1 == frames.len() { 0 } else { k + 1 };
                    let f = frames.get(k);
                    if m.len() == f.len() {
                        m.data_mut().copy_from_slice(f);
                    } else {
                        m.write_from(f);
                    }
                    let lane = lanes[input].get(k).map_or(0, |&q| usize::from(q));
                    bursts[port * nq + lane].push(m);
                    pending += 1;
                }
            }
            if pending > 0 {
                // What a ring does not take now is offered again next round.
                for (lane, b) in bursts.iter_mut().enumerate() {
                    if !b.is_empty() {
                        let done = self.sets[self.cur].rx[lane / nq][lane % nq].enqueue_burst(b);
                        sent += done as u64;
                        pending -= done;
                        moved += done;
                    }
                }
            }
            for (port, &counted) in outs.iter().enumerate() {
                for q in 0..nq {
                    let n = self.sets[self.cur].tx[port][q].dequeue_burst(&mut out);
                    if n == 0 {
                        continue;
                    }
                    moved += n;
                    for m in out.drain(..) {
                        if counted {
                            on_out(recv, port, m.data());
                            recv += 1;
                        } else {
                            other += 1;
                        }
                        self.stash.push(m);
                    }
                }
            }
            if moved > 0 || sent == 0 {
                last_progress = Instant::now();
            }
            if recv >= count {
                break;
            }
            // On a CPU shared with a worker, give it the core while nothing moves.
            if moved == 0 && nq > 1 {
                std::thread::yield_now();
            }
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(64) {
                let now = Instant::now();
                if now.duration_since(t0) > cap || now.duration_since(last_progress) > stall {
                    break;
                }
            }
        }
        let elapsed = t0.elapsed();
        let timed = recv;
        // Stopped by the time cap: what is still in flight is not lost.
        let mut last = Instant::now();
        while recv < sent && last.elapsed() < stall {
            for port in (0..2).filter(|&p| outs[p]) {
                for q in 0..nq {
                    if self.sets[self.cur].tx[port][q].dequeue_burst(&mut out) > 0 {
                        last = Instant::now();
                    }
                    for m in out.drain(..) {
                        on_out(recv, port, m.data());
                        recv += 1;
                        self.stash.push(m);
                    }
                }
            }
        }
        for b in &mut bursts {
            self.stash.extend(b.drain(..));
        }
        Pumped {
            sent,
            recv,
            timed,
            other,
            elapsed,
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stash.clear();
        remove_runtime_dir(&self.prefix);
    }
}

/// What the generator sends: inputs (frames and the port they arrive on),
/// interleaved by `pattern` (input index per slot, cycled).
pub struct Load<'a> {
    pub inputs: Vec<(&'a Frames, usize)>,
    pub pattern: Vec<u8>,
    /// Every frame on this rx queue instead of where RSS puts it.
    pub queue: Option<u16>,
}

impl<'a> Load<'a> {
    pub fn one(frames: &'a Frames, port: usize) -> Load<'a> {
        Load {
            inputs: vec![(frames, port)],
            pattern: vec![0],
            queue: None,
        }
    }
}

/// What one pump did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pumped {
    pub sent: u64,
    pub recv: u64,
    /// Of `recv`, those that came out within `elapsed` (the rest drained after).
    pub timed: u64,
    /// Frames that came out of a port not counted as output (ARP, misrouted).
    #[allow(dead_code)]
    pub other: u64,
    pub elapsed: Duration,
}

impl Pumped {
    pub fn mpps(&self) -> f64 {
        self.timed as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_rss_matches_the_published_toeplitz_vectors() {
        // Microsoft's "Verifying the RSS Hash Calculation", IPv4 with ports.
        let t = Toeplitz::new(&RSS_KEY).unwrap();
        let h = t.hash_v4(
            [66, 9, 149, 187].into(),
            [161, 142, 100, 80].into(),
            2794,
            1766,
        );
        assert_eq!(h, 0x51cc_c178);
        let h = t.hash_v4(
            [199, 92, 111, 2].into(),
            [65, 69, 140, 83].into(),
            14230,
            4739,
        );
        assert_eq!(h, 0xc626_b0ea);
        // RETA round robin over 2 queues: the low bit of the hash decides.
        let rss = SoftRss::new(2).unwrap();
        assert_eq!(
            rss.queue_of([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766),
            (0x51cc_c178u32 % 128 % 2) as u16
        );
    }

    #[test]
    fn lcores_wrap_over_the_allowed_cpus() {
        assert_eq!(lcore_map(1, &[0, 1]), "0@0,1@1");
        assert_eq!(lcore_map(2, &[0, 1]), "0@0,1@1,2@0");
        assert_eq!(lcore_map(4, &[2, 3, 4, 5, 6]), "0@2,1@3,2@4,3@5,4@6");
        assert_eq!(lcore_map(2, &[]), "0@0,1@0,2@0");
    }
}
