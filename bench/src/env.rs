//! The in-process DPDK environment of the pipeline bench: EAL on two cores
//! (generator on the main lcore 0, the worker on lcore 1), a generator mbuf pool,
//! and two ring-backed ports (client side `dpdk0`, server side `dpdk1`), plus the
//! generator's pump that feeds the rx rings and drains the tx rings.

use std::time::{Duration, Instant};

use dataplane::dpdk::eal::Eal;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::mempool::Mempool;
use dataplane::dpdk::ring::{port_from_rings, Ring};
use dataplane::wire::PacketBuf;
use dataplane::{DataplaneSpec, PortSpec};

use crate::frames::Frames;

/// Entries per ring: bounds the packets in flight toward and from the worker.
const RING_SIZE: u32 = 4096;
const GEN_BURST: usize = 32;
/// Packets in flight at most: below the tx ring's room, so a generator that is
/// briefly descheduled (shared core) never makes the worker drop on a full ring.
const WINDOW: u64 = (RING_SIZE as u64) * 3 / 4;

/// Client side and server side.
pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

pub struct Env {
    pub pool: Mempool,
    /// (rx, tx) per port, seen from the director: we enqueue into rx, dequeue from tx.
    pub rings: Vec<(Ring, Ring)>,
    /// Spare mbufs the generator reuses (outputs of the right length).
    stash: Vec<Mbuf>,
    prefix: String,
    _eal: Eal,
}

/// Remove EAL's runtime directory of a file prefix.
pub fn remove_runtime_dir(prefix: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

impl Env {
    pub fn init() -> Result<Env, String> {
        let prefix = format!("dpvs-bench-{}", std::process::id());
        let args: Vec<String> = [
            "--no-huge",
            "--no-pci",
            "-m",
            "1024",
            "-l",
            "0,1",
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
            let mut rings = Vec::new();
            for i in 0..2 {
                let rx = Ring::new(&format!("b_rx{i}"), RING_SIZE)?;
                let tx = Ring::new(&format!("b_tx{i}"), RING_SIZE)?;
                port_from_rings(&format!("b{i}"), &rx, &tx)?;
                rings.push((rx, tx));
            }
            Ok::<_, String>((pool, rings))
        })();
        let (pool, rings) = match res {
            Ok(v) => v,
            Err(e) => {
                drop(eal);
                remove_runtime_dir(&prefix);
                return Err(e);
            }
        };
        Ok(Env {
            pool,
            rings,
            stash: Vec::new(),
            prefix,
            _eal: eal,
        })
    }

    /// The dataplane spec for these ports: one worker on lcore 1.
    pub fn spec(&self, conn_capacity: u32, adaptive_poll: bool) -> DataplaneSpec {
        DataplaneSpec {
            eal_args: vec![],
            ports: (0..2)
                .map(|i| PortSpec {
                    name: format!("dpdk{i}"),
                    device: format!("net_ring_b{i}"),
                    queues: 1,
                    mtu: 0,
                    steering: dataplane::Steering::default(),
                })
                .collect(),
            worker_cores: vec![1],
            mbufs: 8191,
            conn_capacity,
            adaptive_poll,
        }
    }

    /// Inject frames once (slow path: ARP, probes).
    pub fn inject(&mut self, port: usize, frames: &[Vec<u8>]) -> Result<(), String> {
        let mut v = Vec::new();
        for f in frames {
            let mut m = self.pool.alloc().ok_or("generator pool empty")?;
            if !m.write_from(f) {
                return Err("frame does not fit an mbuf".into());
            }
            v.push(m);
        }
        let left = self.rings[port].0.enqueue(v);
        if !left.is_empty() {
            return Err("rx ring full".into());
        }
        Ok(())
    }

    /// Everything the director sent on `port` within `wait`, as bytes.
    pub fn collect(&mut self, port: usize, want: usize, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < want && Instant::now() < deadline {
            let got = self.rings[port].1.dequeue(64);
            if got.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
            }
            out.extend(got.into_iter().map(|m| m.data().to_vec()));
        }
        out
    }

    /// Throw away whatever is queued on the tx rings.
    pub fn drain(&mut self) {
        for (_, tx) in &self.rings {
            loop {
                let v = tx.dequeue(256);
                if v.is_empty() {
                    break;
                }
            }
        }
    }

    /// Count (and free) what still comes out of `port` until `stall` passes with nothing.
    pub fn drain_outputs(&mut self, port: usize, stall: Duration) -> u64 {
        let mut n = 0u64;
        let mut last = Instant::now();
        while last.elapsed() < stall {
            let v = self.rings[port].1.dequeue(64);
            if !v.is_empty() {
                n += v.len() as u64;
                last = Instant::now();
            }
        }
        n
    }

    fn take_mbufs(&mut self, n: usize, flen: usize, out: &mut Vec<Mbuf>) {
        while out.len() < n {
            match self.stash.pop() {
                Some(m) if m.len() == flen => out.push(m),
                Some(m) => drop(m),
                None => {
                    if let Some(v) = self.pool.alloc_bulk(n - out.len()) {
                        out.extend(v);
                    }
                    return;
                }
            }
        }
    }

    /// Feed `count` frames (cycling through `frames`, starting at `first`) into
    /// `in_port`'s rx ring and take what the worker sends on `out_port`, calling
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
        let t0 = Instant::now();
        let n = frames.len().max(1);
        let flen = frames.get(0).len();
        let mut next = first % n;
        let (mut sent, mut recv, mut other) = (0u64, 0u64, 0u64);
        let mut burst: Vec<Mbuf> = Vec::with_capacity(GEN_BURST);
        let mut last_progress = Instant::now();
        let mut loops = 0u32;
        loop {
            if sent < count && sent.saturating_sub(recv) < WINDOW {
                let want = (count - sent)
                    .min(GEN_BURST as u64)
                    .min(WINDOW - sent.saturating_sub(recv)) as usize;
                self.take_mbufs(want, flen, &mut burst);
                for m in burst.iter_mut() {
                    let f = frames.get(next);
                    if m.len() == f.len() {
                        m.data_mut().copy_from_slice(f);
                    } else {
                        m.write_from(f);
                    }
                    next += 1;
                    if next == n {
                        next = 0;
                    }
                }
                let k = burst.len();
                let left = self.rings[in_port].0.enqueue(std::mem::take(&mut burst));
                let done = k - left.len();
                sent += done as u64;
                // Frames that did not fit are re-sent next round.
                next = (next + n - left.len() % n) % n;
                burst = left;
            }
            let out = self.rings[out_port].1.dequeue(64);
            if !out.is_empty() || sent == 0 {
                last_progress = Instant::now();
            }
            for m in out {
                on_out(recv, m.data());
                recv += 1;
                self.stash.push(m);
            }
            if out_port != in_port || recv == 0 {
                let o = self.rings[1 - out_port].1.dequeue(64);
                other += o.len() as u64;
            }
            if recv >= count {
                break;
            }
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(64) {
                let now = Instant::now();
                if now.duration_since(t0) > cap {
                    break;
                }
                if now.duration_since(last_progress) > stall {
                    break;
                }
            }
        }
        let elapsed = t0.elapsed();
        let timed = recv;
        // Stopped by the time cap: what is still in flight is not lost.
        let mut last = Instant::now();
        while recv < sent && last.elapsed() < stall {
            let out = self.rings[out_port].1.dequeue(64);
            if !out.is_empty() {
                last = Instant::now();
            }
            for m in out {
                on_out(recv, m.data());
                recv += 1;
                self.stash.push(m);
            }
        }
        self.stash.append(&mut burst);
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

/// What one pump did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pumped {
    pub sent: u64,
    pub recv: u64,
    /// Of `recv`, those that came out within `elapsed` (the rest drained after).
    pub timed: u64,
    /// Frames that came out of the other port (ARP, misrouted).
    #[allow(dead_code)]
    pub other: u64,
    pub elapsed: Duration,
}

impl Pumped {
    pub fn mpps(&self) -> f64 {
        self.timed as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}
