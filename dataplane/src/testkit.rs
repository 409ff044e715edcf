//! The LVS core on byte buffers, without EAL, for the core's tests
//! (`dataplane/tests/core.rs`) and the fuzz targets (`fuzz/`): a test
//! [`Io`] that records what the core sent, handed over or passed up, one
//! addressing plan, a [`Lab`] (a core on a compiled snapshot with the client
//! and real servers' MACs known), and frame builders over etherparse.
//!
//! Behind the `testkit` feature, never on in dpvsd: nothing here is on the
//! packet path, and it may allocate and panic as tests do.

use std::net::IpAddr;
use std::sync::Arc;

use arrayvec::ArrayVec;
use etherparse::PacketBuilder;

use crate::core::{Arrival, Core, CoreConfig, BURST};
use crate::io::Io;
use crate::owner::{Owners, PortSteer};
use crate::shared::Shared;
use crate::snapshot::{Compiler, PortInfo, Snapshot};
use crate::stats::DropReason;
use crate::wire::{PacketBuf, VecBuf};
use crate::{
    AddrSpec, ConfigDesc, DestSpec, ExtDesc, ForwardMode, LocalAddrSpec, Proto, ServiceKey,
    ServiceSpec,
};

/// The director's ports' MACs: `dpdk0` (clients), `dpdk1` (real servers).
pub const MAC0: [u8; 6] = [0x02, 0xd0, 0, 0, 0, 0];
pub const MAC1: [u8; 6] = [0x02, 0xd0, 0, 0, 0, 1];
/// The client's (or its gateway's) MAC, and the real servers'.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x11];
pub const CIP: [u8; 4] = [10, 0, 0, 2];
pub const VIP: [u8; 4] = [10, 0, 0, 100];
/// The director's own address on the client side.
pub const DIP_CLIENT: [u8; 4] = [10, 0, 0, 1];
pub const RIP: [u8; 4] = [192, 168, 0, 11];
pub const RIP2: [u8; 4] = [192, 168, 0, 12];
/// The director's address on the real servers' side.
pub const DIP: [u8; 4] = [192, 168, 0, 1];
/// The FULLNAT local address.
pub const LIP: [u8; 4] = [192, 168, 0, 200];

/// Where the core put a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Sent on port index `.0`.
    Sent(usize),
    /// Handed over to worker `.0`.
    Handed(usize),
    /// Up to the kernel interface of port index `.0`.
    Kernel(usize),
}

/// The core's I/O as vectors: what it sent, per port; what it handed over;
/// what went up to the kernel interfaces.
#[derive(Default)]
pub struct TestIo {
    pub sent: Vec<(usize, Vec<u8>)>,
    /// (to worker, frame, arrival port).
    pub handed: Vec<(usize, Vec<u8>, usize)>,
    /// `alloc` fails (no mbuf left).
    pub no_buffers: bool,
    /// `Some`: the ports have kernel interfaces; what went up to them.
    pub kernel: Option<Vec<(usize, Vec<u8>)>>,
    /// Every buffer out of the core, in order, with its tag
    /// ([`VecBuf::tagged`]; 0 for buffers the core allocated).
    pub trail: Vec<(Out, u32)>,
    /// Buffers `alloc` gave the core.
    pub allocs: usize,
}

impl Io for TestIo {
    type Buf = VecBuf;
    fn send(&mut self, port: usize, m: VecBuf) {
        self.trail.push((Out::Sent(port), m.tag()));
        self.sent.push((port, m.data().to_vec()));
    }
    fn alloc(&mut self) -> Option<VecBuf> {
        if self.no_buffers {
            return None;
        }
        self.allocs += 1;
        Some(VecBuf::new(&[]))
    }
    fn hand_over(&mut self, to: usize, m: VecBuf, port: usize) {
        self.trail.push((Out::Handed(to), m.tag()));
        self.handed.push((to, m.data().to_vec(), port));
    }
    fn to_kernel(&mut self, port: usize, m: VecBuf) -> Result<(), VecBuf> {
        match &mut self.kernel {
            Some(k) => {
                self.trail.push((Out::Kernel(port), m.tag()));
                k.push((port, m.data().to_vec()));
                Ok(())
            }
            None => Err(m),
        }
    }
}

pub fn ip(a: impl Into<IpAddr>) -> IpAddr {
    a.into()
}

/// `dpdk0` and `dpdk1` with [`MAC0`] and [`MAC1`], MTU 1500.
pub fn ports() -> Vec<PortInfo> {
    [MAC0, MAC1]
        .iter()
        .enumerate()
        .map(|(i, mac)| PortInfo {
            name: format!("dpdk{i}"),
            id: i as u16,
            mac: *mac,
            mtu: 1500,
        })
        .collect()
}

/// A port address.
pub fn addr(port: &str, a: impl Into<IpAddr>, prefix_len: u8) -> AddrSpec {
    AddrSpec {
        port: port.into(),
        addr: a.into(),
        prefix_len,
    }
}

/// A weight-1 dest with no thresholds.
pub fn dest(a: impl Into<IpAddr>, port: u16, mode: ForwardMode) -> DestSpec {
    DestSpec {
        addr: a.into(),
        port,
        weight: 1,
        mode,
        u_threshold: 0,
        l_threshold: 0,
        inhibited: false,
    }
}

/// An rr service with `dests`.
pub fn service(key: ServiceKey, dests: Vec<DestSpec>) -> ServiceSpec {
    ServiceSpec {
        key,
        scheduler: "rr".into(),
        sched_flags: vec![],
        persistence: None,
        conn_timeout_s: None,
        ops: false,
        dests,
    }
}

/// VIP:80 -> RIP:8080 (DR/TUN: RIP:80) in `mode`, the usual addresses, LIP
/// for FULLNAT.
pub fn desc(mode: ForwardMode, proto: Proto) -> (ConfigDesc, ExtDesc) {
    let key = ServiceKey {
        proto,
        vip: ip(VIP),
        vport: 80,
    };
    let rport = if matches!(mode, ForwardMode::Dr | ForwardMode::Tun) {
        80
    } else {
        8080
    };
    let desc = ConfigDesc {
        services: vec![service(key, vec![dest(RIP, rport, mode)])],
        addrs: vec![
            addr("dpdk0", DIP_CLIENT, 24),
            addr("dpdk0", VIP, 32),
            addr("dpdk1", DIP, 24),
        ],
        routes: vec![],
    };
    let ext = ExtDesc {
        laddrs: if mode == ForwardMode::FullNat {
            vec![LocalAddrSpec {
                service: key,
                addr: ip(LIP),
                port: "dpdk1".into(),
            }]
        } else {
            vec![]
        },
        ..Default::default()
    };
    (desc, ext)
}

/// A core (worker `index` of `n`) on a compiled snapshot, with the client's
/// and the real servers' MACs known; its clock at 1 s.
pub struct Lab {
    pub core: Core<TestIo>,
    pub snap: Arc<Snapshot>,
    /// Keeps service and dest ids stable across [`Lab::apply`].
    compiler: Compiler,
}

impl Lab {
    pub fn new(mode: ForwardMode, proto: Proto) -> Lab {
        Lab::with_workers(mode, proto, 0, 1)
    }

    pub fn with_workers(mode: ForwardMode, proto: Proto, index: usize, n: usize) -> Lab {
        let (d, e) = desc(mode, proto);
        Lab::with_desc(&d, &e, index, n)
    }

    /// A lab on any configuration; panics if it does not compile.
    pub fn with_desc(d: &ConfigDesc, e: &ExtDesc, index: usize, n: usize) -> Lab {
        let mut compiler = Compiler::default();
        let snap = compiler.compile_ext(d, e, &ports()).expect("config");
        let owners = Owners::new(n, vec![PortSteer::Handover, PortSteer::Handover]);
        let mut shared = Shared::new(snap, owners);
        // A fixed SYN-cookie secret: runs (and fuzz inputs) repeat exactly.
        shared.syn_secret = crate::synproxy::Secret::new([0x5eed, 0xc00c1e]);
        let shared = Arc::new(shared);
        shared.neigh.learn(0, ip(CIP), CLIENT_MAC, 0);
        shared.neigh.learn(1, ip(RIP), RS_MAC, 0);
        shared.neigh.learn(1, ip(RIP2), RS_MAC, 0);
        let cfg = CoreConfig {
            index,
            conn_capacity: 1024,
            hash_seed: 7,
            advise: conntrack::no_advice,
        };
        let snap = shared.snapshot.load_full();
        let mut core = Core::new(cfg, shared, TestIo::default());
        core.now_ms = 1000;
        core.on_snapshot(&snap);
        core.io.sent.clear(); // gratuitous ARPs
        core.io.trail.clear();
        Lab {
            core,
            snap,
            compiler,
        }
    }

    /// A new configuration, as `Dataplane::apply_ext` publishes it; the
    /// worker meets it before its next burst, and runs its timers once.
    pub fn apply(&mut self, d: &ConfigDesc, e: &ExtDesc) {
        let snap = self.compiler.compile_ext(d, e, &ports()).expect("config");
        self.core.shared.snapshot.store(Arc::new(snap));
        self.snap = self.core.shared.snapshot.load_full();
        self.core.on_snapshot(&self.snap.clone());
        self.core.expire(&self.snap.clone());
    }

    /// Feed `frames` as one burst received on `port`; what the core sent.
    pub fn rx(&mut self, port: usize, frames: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
        let mut b: ArrayVec<VecBuf, BURST> = frames.iter().map(|f| VecBuf::new(f)).collect();
        self.core
            .handle_burst(&self.snap.clone(), &mut b, Arrival::Port(port));
        std::mem::take(&mut self.core.io.sent)
    }

    /// This worker's drops of reason `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.core.shared.counters[self.core.index].drops(r)
    }

    /// This worker's drops, all reasons.
    pub fn all_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.drops(r)).sum()
    }

    /// `n` UDP connections from the client (ports 10000 on), in bursts of 30.
    pub fn udp_flows(&mut self, n: u16) {
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| udp(CLIENT_MAC, MAC0, CIP, 10000 + i, VIP, 80))
            .collect();
        for burst in frames.chunks(30) {
            self.rx(0, burst);
        }
        assert_eq!(self.core.conns.len(), usize::from(n));
    }
}

/// An Ethernet/IP/TCP frame (IPv4 or IPv6 as the addresses are), TTL / hop
/// limit 64, window 64000; `flags` has `S`, `A` (acknowledging 1), `R`, `F`,
/// `P`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: impl Into<IpAddr>,
    sport: u16,
    dst: impl Into<IpAddr>,
    dport: u16,
    flags: &str,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_step(smac, dmac, src.into(), dst.into()).tcp(sport, dport, seq, 64000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'R' => b.rst(),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("frame");
    v
}

/// An Ethernet/IP/UDP frame (IPv4 or IPv6 as the addresses are) with
/// payload `hello`, TTL / hop limit 64.
pub fn udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: impl Into<IpAddr>,
    sport: u16,
    dst: impl Into<IpAddr>,
    dport: u16,
) -> Vec<u8> {
    let mut v = Vec::new();
    ip_step(smac, dmac, src.into(), dst.into())
        .udp(sport, dport)
        .write(&mut v, b"hello")
        .expect("frame");
    v
}

/// Ethernet and the IP header of `src`'s family; panics on mixed families.
fn ip_step(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(smac, dmac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("{src} and {dst} are of two families"),
    }
}
