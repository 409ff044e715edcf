//! The in-process DPDK harness shared by the dataplane's integration tests:
//! one EAL per test process (`--no-huge --no-pci`, a unique `--file-prefix`),
//! two ring-backed ports, and helpers to put frames into a port's rx ring and
//! read what the worker transmitted from its tx ring.
#![allow(dead_code)] // each test file uses its own subset

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dataplane::dpdk::eal::Eal;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::mempool::Mempool;
use dataplane::dpdk::ring::{port_from_ring_queues, Ring};
use dataplane::wire::PacketBuf;
use dataplane::*;

pub struct Env {
    _eal: Eal,
    pub pool: Mempool,
    /// Per port: (rx rings, tx rings), one per queue.
    pub rings: Vec<(Vec<Ring>, Vec<Ring>)>,
}

/// The process's EAL and ring ports `net_ring_<tag>0/1`, created on first use,
/// one rx/tx queue pair each. Tests lock it, so they run one at a time on the
/// one worker lcore.
pub fn env(tag: &str) -> &'static Mutex<Env> {
    static ENV: OnceLock<Mutex<Env>> = OnceLock::new();
    ENV.get_or_init(|| Mutex::new(new_env(tag, "0,1", 1)))
}

/// EAL on `lcores` (an `--lcores` list) and two ring ports of `queues` queue
/// pairs each: the test plays the NIC's RSS by picking each frame's rx ring.
pub fn new_env(tag: &str, lcores: &str, queues: usize) -> Env {
    let prefix = format!("dpvs-{tag}-{}", std::process::id());
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--lcores",
        lcores,
        "--file-prefix",
        &prefix,
        "--log-level",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let pool = Mempool::new(&format!("{tag}_pool"), 8191, 0, -1).expect("pool");
    let mut rings = Vec::new();
    for p in 0..2 {
        let rx: Vec<Ring> = (0..queues)
            .map(|q| Ring::new(&format!("{tag}_rx{p}_{q}"), 1024).unwrap())
            .collect();
        let tx: Vec<Ring> = (0..queues)
            .map(|q| Ring::new(&format!("{tag}_tx{p}_{q}"), 1024).unwrap())
            .collect();
        // The ethdev is named net_ring_<tag><p>.
        let rxr: Vec<&Ring> = rx.iter().collect();
        let txr: Vec<&Ring> = tx.iter().collect();
        port_from_ring_queues(&format!("{tag}{p}"), &rxr, &txr).unwrap();
        rings.push((rx, tx));
    }
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    Env {
        _eal: eal,
        pool,
        rings,
    }
}

/// Two ports (`dpdk0` client side, `dpdk1` server side) on the ring ethdevs.
pub fn spec(tag: &str) -> DataplaneSpec {
    DataplaneSpec {
        eal_args: vec![],
        ports: (0..2)
            .map(|i| PortSpec {
                name: format!("dpdk{i}"),
                device: format!("net_ring_{tag}{i}"),
                queues: 1,
                mtu: 0,
                steering: Steering::default(),
                kni: dataplane::KniMode::Off,
            })
            .collect(),
        worker_cores: vec![1],
        mbufs: 4095,
        conn_capacity: 4096,
        adaptive_poll: false,
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A weight-1 dest with no thresholds.
pub fn dest(addr: &str, port: u16, mode: ForwardMode) -> DestSpec {
    dataplane::testkit::dest(ip(addr), port, mode)
}

/// One service VIP 10.0.0.100:80 with `dests`, the client-side DIP, the VIP
/// and the server-side DIP as addresses.
pub fn config(proto: Proto, sched: &str, dests: Vec<DestSpec>) -> ConfigDesc {
    ConfigDesc {
        services: vec![ServiceSpec {
            key: ServiceKey {
                proto,
                vip: ip("10.0.0.100"),
                vport: 80,
            },
            scheduler: sched.into(),
            sched_flags: vec![],
            persistence: None,
            conn_timeout_s: None,
            ops: false,
            dests,
        }],
        addrs: vec![
            AddrSpec {
                port: "dpdk0".into(),
                addr: ip("10.0.0.1"),
                prefix_len: 24,
            },
            AddrSpec {
                port: "dpdk0".into(),
                addr: ip("10.0.0.100"),
                prefix_len: 32,
            },
            AddrSpec {
                port: "dpdk1".into(),
                addr: ip("192.168.0.1"),
                prefix_len: 24,
            },
        ],
        routes: vec![],
    }
}

/// An Ethernet/IPv4 ARP frame, padded to 60 bytes.
pub fn arp(
    op: u16,
    smac: [u8; 6],
    sip: [u8; 4],
    tmac: [u8; 6],
    tip: [u8; 4],
    dst: [u8; 6],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&smac);
    f.extend_from_slice(&sip);
    f.extend_from_slice(&tmac);
    f.extend_from_slice(&tip);
    f.resize(60, 0);
    f
}

pub fn inject(env: &Env, port: usize, frames: &[Vec<u8>]) {
    inject_q(env, port, 0, frames)
}

/// Put `frames` into rx queue `queue` of `port`, waiting while the ring is full.
pub fn inject_q(env: &Env, port: usize, queue: usize, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(256) {
        let mut left: Vec<Mbuf> = chunk
            .iter()
            .map(|f| {
                let mut m: Mbuf = env.pool.alloc().expect("mbuf");
                assert!(m.write_from(f));
                m
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !left.is_empty() && Instant::now() < deadline {
            left = env.rings[port].0[queue].enqueue(left);
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(left.is_empty(), "rx ring stays full");
    }
}

/// What `port` transmitted (any queue) until `n` frames came or 2 s passed.
pub fn collect(env: &Env, port: usize, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(take(env, port));
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

/// What `port` has transmitted so far (any queue), without waiting.
pub fn take(env: &Env, port: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for tx in &env.rings[port].1 {
        out.extend(tx.dequeue(256).iter().map(|m| m.data().to_vec()));
    }
    out
}

/// Let the worker settle, then throw away whatever is queued either way.
pub fn drain(env: &Env) {
    std::thread::sleep(Duration::from_millis(20));
    for (rx, tx) in &env.rings {
        for r in rx.iter().chain(tx) {
            drop(r.dequeue(4096));
        }
    }
}

/// An Ethernet/IPv4/TCP frame (sequence number 1000, window 64000).
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    syn: bool,
    ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let flags = match (syn, ack) {
        (true, true) => "SA",
        (true, false) => "S",
        (false, true) => "A",
        (false, false) => "",
    };
    dataplane::testkit::tcp(
        src_mac, dst_mac, src, sport, dst, dport, flags, 1000, payload,
    )
}

pub fn drops(dp: &Dataplane, r: DropReason) -> u64 {
    dp.stats()
        .drops
        .iter()
        .find(|(x, _)| *x == r)
        .map(|(_, n)| *n)
        .unwrap()
}
