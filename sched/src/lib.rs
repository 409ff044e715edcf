//! Schedulers of the director, one module per algorithm as in LVS (`ip_vs_rr.c`,
//! `ip_vs_wrr.c`, ...): rr wrr lc wlc sed nq lblc lblcr dh sh mh conhash fo ovf
//! twos.
//!
//! Every scheduler is split in two, so that no worker ever builds a table:
//!
//! * a **table** ([`SchedTable`]): everything that is a pure function of the
//!   configuration (dests, weights, flags): wrr's gcd and maximum weight, the
//!   dh/sh buckets, the 65537-slot Maglev table, the conhash ring. [`compile`]
//!   builds it once per configuration snapshot on the control thread; it is
//!   immutable and shared by all workers through an `Arc`;
//! * a **cursor** ([`Scheduler`]), one per worker and service: the small mutable
//!   state a pick moves (rr's last index, wrr's current weight, lblc/lblcr's
//!   per-destination-address bindings, twos' random state) plus its `Arc` of the
//!   table. [`SchedTable::cursor`] makes one in O(1) (wrr: O(dests)), and
//!   [`Scheduler::retable`] moves it to the next snapshot's table keeping what
//!   the kernel keeps. [`tables_built_on_this_thread`] counts `compile` calls per
//!   thread so the dataplane can check that its workers never call it.
//!
//! This crate is pure and deterministic: no DPDK, no I/O, no clocks, no threads.
//! Besides the tables, the only state shared across workers is the per-dest
//! connection counters ([`DestCounters`], Relaxed atomics). Hashing schedulers use
//! fixed hashes ([`hash`]) so every worker and every process picks the same dest
//! for a flow; rr and wrr cursors start spread over their cycle, one phase per
//! worker, and stay fair per worker (bounds in [`rr`] and [`wrr`]). Semantics
//! follow the Linux kernel's IPVS (net/netfilter/ipvs/ip_vs_*.c); each module says
//! where it differs. No scheduler gives a new connection to a dest that is
//! quiescent (weight 0), inhibited (failed health check) or overloaded
//! (thresholds), and none panics on any input.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

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
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
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

/// A scheduler's immutable part for one service: everything that is a pure
/// function of the configuration (dests, weights, flags), such as wrr's gcd and
/// maximum weight, the dh/sh buckets, the Maglev table or the conhash ring.
///
/// Built by [`compile`] on the control thread, once per configuration snapshot,
/// and shared by every worker through the `Arc`. [`Any`] (hence `'static`) is a
/// supertrait so that [`Scheduler::retable`] can tell its own kind of table.
pub trait SchedTable: Any + Send + Sync {
    /// The ipvsadm name ("rr", "wlc", ...).
    fn name(&self) -> &'static str;

    /// A fresh per-worker scheduler over this table for worker `worker` of
    /// `nworkers` (out-of-range values are taken modulo, 0 workers as 1). Never
    /// builds a table: O(1), or O(number of dests) for wrr's starting phase. rr
    /// and wrr cursors of different workers start spread over the cycle (worker
    /// `w` at phase `w * cycle / nworkers`), so a few connections over many
    /// workers do not all land on dest 0.
    fn cursor(self: Arc<Self>, worker: usize, nworkers: usize) -> Box<dyn Scheduler>;
}

impl fmt::Debug for dyn SchedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedTable")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// One worker's scheduler for one service: the shared [`SchedTable`] plus this
/// worker's cursor (rr's last pick, wrr's current weight, lblc/lblcr's bindings,
/// twos' random state). Only the worker that owns it calls it, with `&mut self`.
pub trait Scheduler: Send {
    /// The ipvsadm name ("rr", "wlc", ...).
    fn name(&self) -> &'static str;

    /// Pick an index into `dests` for a new connection, or `None` if no dest is
    /// usable. `dests` should be the slice the table was compiled from; if it is
    /// not, no index out of range is returned and nothing panics, but picks follow
    /// the table.
    fn schedule(&mut self, dests: &[Dest], key: &FlowKey) -> Option<usize>;

    /// Switch to `table`, a new table for the same service (a new configuration
    /// snapshot whose dests are `dests`), keeping what the cursor can keep: rr's
    /// position (clamped as `ip_vs_rr_del_dest`), wrr's current weight (as
    /// `ip_vs_wrr_dest_changed`), lblc/lblcr's bindings (as the kernel keeps them),
    /// twos' random state. Returns `false`, leaving the cursor as it was, if
    /// `table` belongs to another scheduler; the caller then calls
    /// [`SchedTable::cursor`]. Never builds a table.
    fn retable(&mut self, table: &Arc<dyn SchedTable>, dests: &[Dest]) -> bool;

    /// Tell time-aware schedulers the time, in seconds from any fixed origin. Only
    /// lblc and lblcr use it, to expire their per-destination-address tables as the
    /// kernel does with jiffies; call it now and then (e.g. once a second). Without
    /// it their tables never age but stay size-bounded.
    fn advance(&mut self, _now_secs: u64) {}
}

/// Every scheduler name [`compile`] accepts, in ipvsadm's spelling.
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "conhash", "fo",
    "ovf", "twos",
];

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHEDULER: &str = "wlc";

thread_local! {
    /// Tables `compile` built on this thread (see [`tables_built_on_this_thread`]).
    static TABLES_BUILT: Cell<u64> = const { Cell::new(0) };
}

/// Validate `name` and build its table for `flags` and `dests`: all the work
/// that depends only on the configuration happens here, on the caller's (the
/// control) thread. Flags that do not apply to `name` are ignored.
pub fn compile(
    name: &str,
    flags: &SchedFlags,
    dests: &[Dest],
) -> Result<Arc<dyn SchedTable>, SchedError> {
    let table: Arc<dyn SchedTable> = match name {
        "rr" => Arc::new(rr::RoundRobinTable::new(dests)),
        "wrr" => Arc::new(wrr::WeightedRoundRobinTable::new(dests)),
        "lc" => Arc::new(lc::LeastConn),
        "wlc" => Arc::new(wlc::WeightedLeastConn),
        "sed" => Arc::new(sed::ShortestExpectedDelay),
        "nq" => Arc::new(nq::NeverQueue),
        "lblc" => Arc::new(lblc::LblcTable),
        "lblcr" => Arc::new(lblcr::LblcrTable),
        "dh" => Arc::new(dh::DestHashTable::new(dests)),
        "sh" => Arc::new(sh::SourceHashTable::new(
            flags.sh_fallback,
            flags.sh_port,
            dests,
        )),
        "mh" => Arc::new(mh::MaglevHashTable::new(
            flags.mh_fallback,
            flags.mh_port,
            dests,
        )),
        "conhash" => Arc::new(conhash::ConHashTable::new(
            conhash::HashTarget::from_flags(flags),
            dests,
        )),
        "fo" => Arc::new(fo::WeightedFailover),
        "ovf" => Arc::new(ovf::WeightedOverflow),
        "twos" => Arc::new(twos::TwosTable),
        other => return Err(SchedError::Unknown(other.to_string())),
    };
    TABLES_BUILT.with(|n| n.set(n.get() + 1));
    Ok(table)
}

/// How many scheduler tables [`compile`] built on the calling thread so far
/// (a thread-local count), so the dataplane can prove its workers never build one.
pub fn tables_built_on_this_thread() -> u64 {
    TABLES_BUILT.with(Cell::get)
}

/// `table` as the concrete table type `T`, if it is one (for `retable`).
pub(crate) fn downcast<T: SchedTable>(table: &Arc<dyn SchedTable>) -> Option<Arc<T>> {
    let any: Arc<dyn Any + Send + Sync> = table.clone();
    any.downcast::<T>().ok()
}

/// Whether `table` is of the concrete type `T` (for stateless `retable`).
pub(crate) fn is_table<T: SchedTable>(table: &Arc<dyn SchedTable>) -> bool {
    let any: &dyn Any = table.as_ref();
    any.is::<T>()
}

/// The starting phase of worker `worker` of `nworkers` in a cycle of `len` picks:
/// `worker * len / nworkers`, always below `len` (0 when `len` is 0).
pub(crate) fn spread(worker: usize, nworkers: usize, len: u128) -> u128 {
    let nw = nworkers.max(1) as u128;
    let w = worker as u128 % nw;
    // w < nw <= 2^64 and len fits 96 bits in practice; saturate rather than panic.
    (w.saturating_mul(len) / nw).min(len.saturating_sub(1))
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
    fn compile_every_name_and_reject_unknown() {
        for name in SCHEDULERS {
            let t = compile(name, &SchedFlags::default(), &[]).unwrap();
            assert_eq!(t.name(), *name);
            assert_eq!(t.cursor(0, 1).name(), *name);
        }
        let err = compile("foo", &SchedFlags::default(), &[]).err().unwrap();
        assert_eq!(err, SchedError::Unknown("foo".into()));
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown scheduler 'foo' (known: rr, wrr, lc,"),
            "{msg}"
        );
    }

    /// Only `compile` builds tables: cursors, retables, picks and time do not,
    /// which is what lets the dataplane prove its workers never build one.
    #[test]
    fn only_compile_builds_tables() {
        let dests = tests_util::dests_with_weights(&[1, 2, 3, 0, 5]);
        let flags = SchedFlags::parse_str("flag-1,flag-2").unwrap();
        for name in SCHEDULERS {
            let before = tables_built_on_this_thread();
            let t = compile(name, &flags, &dests).unwrap();
            let t2 = compile(name, &flags, &dests[1..]).unwrap();
            assert_eq!(tables_built_on_this_thread(), before + 2, "{name}");
            let mut cursors: Vec<Box<dyn Scheduler>> =
                (0..4).map(|w| t.clone().cursor(w, 4)).collect();
            for (w, c) in cursors.iter_mut().enumerate() {
                c.schedule(&dests, &tests_util::key(w as u32));
                assert!(c.retable(&t2, &dests[1..]), "{name}");
                c.advance(1_000_000);
                c.schedule(&dests[1..], &tests_util::key(w as u32));
                assert!(c.retable(&t, &dests), "{name}");
            }
            assert_eq!(tables_built_on_this_thread(), before + 2, "{name}");
        }
        assert!(compile("nope", &flags, &dests).is_err());
        let built = tables_built_on_this_thread();
        let other = std::thread::spawn(tables_built_on_this_thread)
            .join()
            .unwrap();
        assert_eq!(other, 0, "the count is per thread");
        assert_eq!(tables_built_on_this_thread(), built);
    }

    /// A cursor takes a new table of its own kind only; across kinds it refuses
    /// and stays usable.
    #[test]
    fn retable_only_within_a_kind() {
        let dests = tests_util::dests_with_weights(&[1, 1, 1]);
        let flags = SchedFlags::default();
        for a in SCHEDULERS {
            for b in SCHEDULERS {
                let mut c = compile(a, &flags, &dests).unwrap().cursor(0, 1);
                let t = compile(b, &flags, &dests).unwrap();
                assert_eq!(c.retable(&t, &dests), a == b, "{a} cursor, {b} table");
                assert_eq!(c.name(), *a);
                assert!(c.schedule(&dests, &tests_util::key(7)).is_some(), "{a}");
            }
        }
    }

    #[test]
    fn spread_stays_in_the_cycle() {
        assert_eq!(spread(0, 4, 10), 0);
        assert_eq!(spread(3, 4, 10), 7);
        assert_eq!(spread(5, 4, 10), 2, "worker taken modulo");
        assert_eq!(spread(0, 0, 10), 0, "no workers counts as one");
        assert_eq!(spread(1, 2, 0), 0);
        assert!(spread(usize::MAX - 1, usize::MAX, u128::MAX) < u128::MAX);
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
