//! The director's dataplane: a safe layer over DPDK and the packet pipeline.
//!
//! `control` (dpvsd) starts it with [`Dataplane::start`], hands it configuration
//! descriptions with [`Dataplane::apply`] (compiled into an immutable snapshot the
//! workers load once per loop), and reads counters and connections back.
//! Packet views live in `wire`; the LVS core (`core`, generic over its `io`)
//! runs on them; both are unit-tested without EAL. `worker` is the DPDK shell
//! around the core, `dpdk` the only home of `unsafe`.

pub mod acl;
pub mod config;
pub mod core;
pub mod counters;
pub mod dpdk;
pub mod events;
pub mod flowrules;
pub mod fnat;
pub mod frag;
pub mod handover;
pub mod host;
pub mod icmp_err;
pub mod io;
pub mod kni;
pub mod laddr;
pub mod neigh;
pub mod owner;
pub mod route;
pub mod rss;
pub mod shared;
pub mod snapshot;
pub mod stats;
pub mod sync;
pub mod synproxy;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;
pub mod worker;
pub mod xmit;

mod dataplane;

pub use dataplane::{is_pci, with_core_list, Dataplane};

use std::fmt;

pub use config::{
    AclSpec, AddrSpec, ConfigDesc, DestSpec, ExtDesc, ForwardMode, LocalAddrSpec, Persistence,
    Proto, ProxyProtocol, RouteSpec, ServiceKey, ServiceSpec,
};
pub use stats::{
    AclDrops, ConnEntry, DestStats, DropReason, MempoolStats, PortStats, ServiceStats, Stats,
    TrafficStats, WorkerStats,
};

/// One DPDK port as the config file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Name used by addresses and routes (`dpdk0`).
    pub name: String,
    /// vdev spec (`net_af_packet0,iface=lb0`) or PCI address (`0000:03:00.0`).
    pub device: String,
    /// rx/tx queues; must be >= the number of workers (one pair per worker).
    pub queues: u16,
    pub mtu: u16,
    /// How replies find their worker on this port.
    pub steering: Steering,
    /// A kernel interface (TAP or virtio-user named after the port) for the
    /// exception path (`crate::kni`).
    pub kni: KniMode,
}

/// Whether a port gets a kernel interface (docs/kni.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KniMode {
    /// None (`kni = false`; the default for vdev ports, which sit on a
    /// kernel interface already or on none).
    #[default]
    Off,
    /// `kni = true`: the dataplane does not start without it.
    On,
    /// The default for a PCI port: made when it can be; a failure is logged
    /// and the port runs without one.
    Auto,
}

/// How packets of a connection reach the worker that owns it, on one port
/// (docs/architecture.md, "Ownership and steering"). The hand-over between
/// workers always backs it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Steering {
    /// RSS pre-calculation where the port's RSS is readable and hashes
    /// TCP/UDP ports; else rte_flow rules where the PMD validates them (and
    /// the worker count is a power of two); else the hand-over alone.
    #[default]
    Auto,
    /// RSS pre-calculation, or refuse to start.
    Rss,
    /// rte_flow rules sending each worker's slice of local ports to its
    /// queue, or refuse to start.
    Flow,
    /// The hand-over alone.
    Handover,
    /// The frames arrive already spread over the port's queues by a Toeplitz
    /// RSS with this key and redirection table (ring or memif ports fed by a
    /// software distributor: tests and `dpvs-bench`).
    SoftRss { key: Vec<u8>, reta: Vec<u16> },
}

impl Steering {
    /// The name dpvs.toml uses.
    pub fn name(&self) -> &'static str {
        match self {
            Steering::Auto => "auto",
            Steering::Rss => "rss",
            Steering::Flow => "flow",
            Steering::Handover => "handover",
            Steering::SoftRss { .. } => "soft-rss",
        }
    }
}

/// What it takes to bring the dataplane up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneSpec {
    /// EAL arguments (without argv[0]).
    pub eal_args: Vec<String>,
    pub ports: Vec<PortSpec>,
    /// Worker lcore ids. Must be enabled in the EAL core list; must not be the main lcore.
    pub worker_cores: Vec<u32>,
    /// mbufs in the pool (per socket).
    pub mbufs: u32,
    /// Connections per worker table.
    pub conn_capacity: u32,
    /// Back off with short pauses after a run of empty polls (shared hosts).
    pub adaptive_poll: bool,
}

impl Default for DataplaneSpec {
    fn default() -> Self {
        DataplaneSpec {
            eal_args: Vec::new(),
            ports: Vec::new(),
            worker_cores: vec![1],
            mbufs: 8191,
            conn_capacity: 1 << 20,
            adaptive_poll: false,
        }
    }
}

/// A problem bringing the dataplane up or applying configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneError {
    /// EAL initialisation failed (message says why: hugepages, core list, ...).
    Eal(String),
    /// A port could not be created, configured or started.
    Port { port: String, reason: String },
    /// Worker lcores invalid.
    Workers(String),
    /// Configuration rejected; names the item and the problem.
    Config(String),
}

impl fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataplaneError::Eal(m) => write!(f, "EAL initialisation failed: {m}"),
            DataplaneError::Port { port, reason } => write!(f, "port {port}: {reason}"),
            DataplaneError::Workers(m) => write!(f, "workers: {m}"),
            DataplaneError::Config(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DataplaneError {}
