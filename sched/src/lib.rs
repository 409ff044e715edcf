//! Schedulers of the director, one module per algorithm as in LVS (`ip_vs_rr.c`,
//! `ip_vs_wrr.c`, ...): rr wrr lc wlc sed nq lblc lblcr dh sh mh conhash fo.
//!
//! This crate is pure and deterministic: no DPDK, no I/O, no clocks, no threads.
//! Each worker builds its own scheduler per service ([`build`]) and calls it with
//! `&mut self`; the only state shared across workers is the per-dest connection
//! counters ([`DestCounters`], Relaxed atomics). Hashing schedulers use fixed hashes
//! ([`hash`]) so every worker and every process picks the same dest for a flow.
//! Semantics follow the Linux kernel's IPVS (net/netfilter/ipvs/ip_vs_*.c); each
//! module says where it differs. No scheduler gives a new connection to a dest that
//! is quiescent (weight 0), inhibited (failed health check) or overloaded
//! (thresholds), and none panics on any input.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;

pub mod conhash;
pub mod dest;
pub mod dh;
pub mod fo;
pub mod hash;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod nq;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod wlc;
pub mod wrr;

pub use dest::{Dest, DestCounters};

/// The flow a new connection is scheduled for (the client's request direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// Client address (CIP).
    pub src: IpAddr,
    pub sport: u16,
    /// Virtual address the client connected to (VIP).
    pub dst: IpAddr,
    pub dport: u16,
}

impl FlowKey {
    pub fn new(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> FlowKey {
        FlowKey {
            proto,
            src,
            sport,
            dst,
            dport,
        }
    }
}

/// Scheduler flags (`ipvsadm -b`). Flags that do not apply to the chosen scheduler
/// are ignored, as the kernel does.
///
/// The kernel has three generic bits: `flag-1` is sh-fallback/mh-fallback, `flag-2`
/// is sh-port/mh-port, `flag-3` has no meaning in IPVS and is kept for round trips.
/// conhash keys by source address by default; `conhash-sport` adds the source port,
/// `conhash-5tuple` hashes the whole 5-tuple (wins if both are given).
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct SchedFlags {
    /// sh: if the hashed dest is unavailable, walk the table to another one.
    pub sh_fallback: bool,
    /// sh: hash the source port too.
    pub sh_port: bool,
    /// mh: if the looked-up dest is unavailable, probe other table slots.
    pub mh_fallback: bool,
    /// mh: hash the source port too.
    pub mh_port: bool,
    /// conhash: key by source address and source port.
    pub conhash_by_sport: bool,
    /// conhash: key by the full 5-tuple (proto, src, sport, dst, dport).
    pub conhash_by_5tuple: bool,
    /// `flag-3`: accepted like ipvsadm does; no scheduler uses it.
    pub flag3: bool,
}

/// Every flag name [`SchedFlags::parse`] accepts.
pub const SCHED_FLAG_NAMES: &[&str] = &[
    "sh-fallback",
    "sh-port",
    "mh-fallback",
    "mh-port",
    "conhash-sport",
    "conhash-5tuple",
    "flag-1",
    "flag-2",
    "flag-3",
];

impl SchedFlags {
    /// Parse flag names as ipvsadm spells them. Names are trimmed; empty entries are
    /// skipped. An unknown name is an error naming it.
    pub fn parse(list: &[String]) -> Result<SchedFlags, SchedError> {
        let mut f = SchedFlags::default();
        for raw in list {
            match raw.trim() {
                "" => {}
                "sh-fallback" => f.sh_fallback = true,
                "sh-port" => f.sh_port = true,
                "mh-fallback" => f.mh_fallback = true,
                "mh-port" => f.mh_port = true,
                "conhash-sport" => f.conhash_by_sport = true,
                "conhash-5tuple" => f.conhash_by_5tuple = true,
                // IP_VS_SVC_F_SCHED1: SH_FALLBACK and MH_FALLBACK share the bit.
                "flag-1" => {
                    f.sh_fallback = true;
                    f.mh_fallback = true;
                }
                // IP_VS_SVC_F_SCHED2: SH_PORT and MH_PORT share the bit.
                "flag-2" => {
                    f.sh_port = true;
                    f.mh_port = true;
                }
                "flag-3" => f.flag3 = true,
                other => return Err(SchedError::BadFlag(other.to_string())),
            }
        }
        Ok(f)
    }

    /// Parse a comma-separated list, as given to `ipvsadm -b`.
    pub fn parse_str(s: &str) -> Result<SchedFlags, SchedError> {
        let list: Vec<String> = s.split(',').map(str::to_string).collect();
        SchedFlags::parse(&list)
    }

    /// The names of the set flags that mean something to `sched`, for display
    /// (ipvsadm lists e.g. `sh-fallback,sh-port` after the scheduler name).
    pub fn names(&self, sched: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        match sched {
            "sh" => {
                if self.sh_fallback {
                    v.push("sh-fallback");
                }
                if self.sh_port {
                    v.push("sh-port");
                }
            }
            "mh" => {
                if self.mh_fallback {
                    v.push("mh-fallback");
                }
                if self.mh_port {
                    v.push("mh-port");
                }
            }
            "conhash" => {
                if self.conhash_by_5tuple {
                    v.push("conhash-5tuple");
                } else if self.conhash_by_sport {
                    v.push("conhash-sport");
                }
            }
            _ => {
                if self.sh_fallback || self.mh_fallback {
                    v.push("flag-1");
                }
                if self.sh_port || self.mh_port {
                    v.push("flag-2");
                }
            }
        }
        if self.flag3 {
            v.push("flag-3");
        }
        v
    }
}

/// Why a scheduler could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// No scheduler of this name.
    Unknown(String),
    /// No scheduler flag of this name.
    BadFlag(String),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::Unknown(name) => write!(
                f,
                "unknown scheduler '{name}' (known: {})",
                SCHEDULERS.join(", ")
            ),
            SchedError::BadFlag(name) => write!(
                f,
                "unknown scheduler flag '{name}' (known: {})",
                SCHED_FLAG_NAMES.join(", ")
            ),
        }
    }
}

impl std::error::Error for SchedError {}

/// One scheduling algorithm's per-worker state for one service.
pub trait Scheduler: Send {
    /// The ipvsadm name ("rr", "wlc", ...).
    fn name(&self) -> &'static str;

    /// The dest set or a weight changed (a new configuration snapshot). Rebuilds
    /// tables (wrr gcd/max, dh/sh buckets, mh lookup table, conhash ring).
    fn update(&mut self, dests: &[Dest]);

    /// Pick an index into `dests` for a new connection, or `None` if no dest is
    /// usable. `dests` should be the slice last given to `update`; if it is not,
    /// no index out of range is returned and nothing panics, but picks follow the
    /// old tables until `update` is called.
    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize>;

    /// Tell time-aware schedulers the time, in seconds from any fixed origin. Only
    /// lblc and lblcr use it, to expire their per-destination-address tables as the
    /// kernel does with jiffies; call it now and then (e.g. once a second). Without
    /// it their tables never age but stay size-bounded.
    fn advance(&mut self, _now_secs: u64) {}
}

/// Every scheduler name [`build`] accepts, in ipvsadm's spelling.
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "conhash", "fo",
];

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHEDULER: &str = "wlc";

/// Build the scheduler `name` with `flags` for `dests` (calls `update` once).
pub fn build(
    name: &str,
    flags: &SchedFlags,
    dests: &[Dest],
) -> Result<Box<dyn Scheduler>, SchedError> {
    let mut s: Box<dyn Scheduler> = match name {
        "rr" => Box::new(rr::RoundRobin::new()),
        "wrr" => Box::new(wrr::WeightedRoundRobin::new()),
        "lc" => Box::new(lc::LeastConn),
        "wlc" => Box::new(wlc::WeightedLeastConn),
        "sed" => Box::new(sed::ShortestExpectedDelay),
        "nq" => Box::new(nq::NeverQueue),
        "lblc" => Box::new(lblc::Lblc::new()),
        "lblcr" => Box::new(lblcr::Lblcr::new()),
        "dh" => Box::new(dh::DestHash::new()),
        "sh" => Box::new(sh::SourceHash::new(flags.sh_fallback, flags.sh_port)),
        "mh" => Box::new(mh::MaglevHash::new(flags.mh_fallback, flags.mh_port)),
        "conhash" => Box::new(conhash::ConHash::new(conhash::HashTarget::from_flags(
            flags,
        ))),
        "fo" => Box::new(fo::WeightedFailover),
        other => return Err(SchedError::Unknown(other.to_string())),
    };
    s.update(dests);
    Ok(s)
}

/// Weighted least-load pick shared by wlc, sed, lblc and lblcr: the first available
/// dest, then any later available dest whose `overhead / weight` is strictly
/// smaller, compared by cross-multiplication in u128 (IPVS's `loh * dw > doh * lw`).
pub(crate) fn least_weighted(dests: &[Dest], overhead: impl Fn(&Dest) -> u64) -> Option<usize> {
    let mut least: Option<(usize, u64, u64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.is_available() {
            continue;
        }
        let (doh, dw) = (overhead(d), u64::from(d.effective_weight()));
        match least {
            None => least = Some((i, doh, dw)),
            Some((_, loh, lw)) => {
                if u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw) {
                    least = Some((i, doh, dw));
                }
            }
        }
    }
    least.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_every_name_and_reject_unknown() {
        for name in SCHEDULERS {
            let s = build(name, &SchedFlags::default(), &[]).unwrap();
            assert_eq!(s.name(), *name);
        }
        let err = build("foo", &SchedFlags::default(), &[]).err().unwrap();
        assert_eq!(err, SchedError::Unknown("foo".into()));
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown scheduler 'foo' (known: rr, wrr, lc,"),
            "{msg}"
        );
    }

    #[test]
    fn flags_parse_names_and_aliases() {
        let f = SchedFlags::parse_str("sh-fallback, sh-port").unwrap();
        assert!(f.sh_fallback && f.sh_port && !f.mh_fallback);
        let f = SchedFlags::parse_str("flag-1,flag-2,flag-3").unwrap();
        assert!(f.sh_fallback && f.mh_fallback && f.sh_port && f.mh_port && f.flag3);
        assert_eq!(f.names("mh"), vec!["mh-fallback", "mh-port", "flag-3"]);
        assert_eq!(SchedFlags::parse(&[]).unwrap(), SchedFlags::default());
        let err = SchedFlags::parse_str("sh-port,bogus").unwrap_err();
        assert_eq!(err, SchedError::BadFlag("bogus".into()));
        assert!(err.to_string().contains("'bogus'"));
    }
}

#[cfg(test)]
pub(crate) mod tests_util {
    use super::*;
    use std::net::Ipv4Addr;

    /// Dest i is 10.0.(i/256).(i%256):80 with the given weight.
    pub fn dests_with_weights(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Dest::new(
                    IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)),
                    80,
                    w,
                )
            })
            .collect()
    }

    /// A TCP flow from client 192.168.x.y:(1024 + n) to 1.1.1.1:80.
    pub fn key(n: u32) -> FlowKey {
        let b = n.to_be_bytes();
        FlowKey::new(
            6,
            IpAddr::V4(Ipv4Addr::new(192, b[1], b[2], b[3])),
            1024u16.wrapping_add(n as u16),
            IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
            80,
        )
    }
}
