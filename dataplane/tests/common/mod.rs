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
use dataplane::dpdk::ring::{port_from_rings, Ring};
use dataplane::wire::PacketBuf;
use dataplane::*;

pub struct Env {
    _eal: Eal,
    pub pool: Mempool,
    /// (rx, tx) per port.
    pub rings: Vec<(Ring, Ring)>,
}

/// The process's EAL and ring ports `net_ring_<tag>0/1`, created on first use.
/// Tests lock it, so they run one at a time on the one worker lcore.
pub fn env(tag: &str) -> &'static Mutex<Env> {
    static ENV: OnceLock<Mutex<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let prefix = format!("dpvs-{tag}-{}", std::process::id());
        let args: Vec<String> = [
            "--no-huge",
            "--no-pci",
            "-m",
            "256",
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
        let eal = Eal::init(&args).expect("EAL init");
        let pool = Mempool::new(&format!("{tag}_pool"), 4095, 0, -1).expect("pool");
        let mut rings = Vec::new();
        for i in 0..2 {
            let rx = Ring::new(&format!("{tag}_rx{i}"), 1024).unwrap();
            let tx = Ring::new(&format!("{tag}_tx{i}"), 1024).unwrap();
            // The ethdev is named net_ring_<tag><i>.
            port_from_rings(&format!("{tag}{i}"), &rx, &tx).unwrap();
            rings.push((rx, tx));
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        Mutex::new(Env {
            _eal: eal,
            pool,
            rings,
        })
    })
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
    DestSpec {
        addr: ip(addr),
        port,
        weight: 1,
        mode,
        u_threshold: 0,
        l_threshold: 0,
        inhibited: false,
    }
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
    let mut v = Vec::new();
    for f in frames {
        let mut m: Mbuf = env.pool.alloc().expect("mbuf");
        assert!(m.write_from(f));
        v.push(m);
    }
    assert!(env.rings[port].0.enqueue(v).is_empty());
}

/// Wait until `n` frames came out of `port` (or 2 s passed).
pub fn collect(env: &Env, port: usize, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        for m in env.rings[port].1.dequeue(64) {
            out.push(m.data().to_vec());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

/// Let the worker settle, then throw away whatever it transmitted.
pub fn drain(env: &Env) {
    std::thread::sleep(Duration::from_millis(20));
    for (_, tx) in &env.rings {
        drop(tx.dequeue(1024));
    }
}

pub fn drops(dp: &Dataplane, r: DropReason) -> u64 {
    dp.stats()
        .drops
        .iter()
        .find(|(x, _)| *x == r)
        .map(|(_, n)| *n)
        .unwrap()
}
