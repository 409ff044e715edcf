//! Bringing the dataplane up and down, and the control plane's handle on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam::channel::{bounded, unbounded, Sender};

use crate::config::ConfigDesc;
use crate::counters::MAX_WORKERS;
use crate::dpdk::eal::Eal;
use crate::dpdk::lcore;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::port::{port_by_name, Port};
use crate::flowrules::FlowRule;
use crate::handover::Rings;
use crate::owner::{Owners, PortSteer};
use crate::rss::{Reta, RssSteer, Toeplitz};
use crate::shared::Shared;
use crate::snapshot::{Compiler, PortInfo};
use crate::stats::{
    ConnEntry, DestStats, DropReason, MempoolStats, PortStats, ServiceStats, Stats, WorkerStats,
};
use crate::worker::{Request, Worker, WorkerConfig};
use crate::{DataplaneError, DataplaneSpec, PortSpec, Steering};

/// The running dataplane. Dropping it stops workers, ports and EAL.
pub struct Dataplane {
    shared: Arc<Shared>,
    compiler: Mutex<Compiler>,
    /// The hand-over rings (freed before the EAL at shutdown).
    rings: Option<Arc<Rings>>,
    /// rte_flow rules installed on `PortSteer::Flow` ports, by port index.
    flows: Mutex<HashMap<(usize, FlowRule), crate::dpdk::flow::Flow>>,
    lcores: Vec<u32>,
    requests: Vec<Sender<Request>>,
    ports: Vec<Port>,
    port_infos: Vec<PortInfo>,
    pool: Option<Arc<Mempool>>,
    /// The kernel interfaces and their host thread (stopped before the ports).
    kni: Option<crate::kni::Kni>,
    eal: Option<Eal>,
    stopped: AtomicBool,
    /// What [`Dataplane::base_timeouts`] returns.
    base_timeouts: Mutex<conntrack::Timeouts>,
}

/// Whether a device string is a PCI address (`0000:03:00.0` or `03:00.0`).
pub fn is_pci(dev: &str) -> bool {
    let parts: Vec<&str> = dev.split(':').collect();
    (parts.len() == 2 || parts.len() == 3)
        && parts.last().is_some_and(|l| l.contains('.'))
        && dev
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
}

/// `args` with a core list added when it has none (`-l`, `--lcores`, `-c`):
/// `-l MAIN,WORKERS...`, MAIN being the lowest core that is not a worker. The
/// EAL must have the worker lcores enabled.
pub fn with_core_list(args: &[String], workers: &[u32]) -> Vec<String> {
    let has_cores = args.iter().any(|a| {
        a == "-l"
            || a == "-c"
            || a.starts_with("--lcores")
            || (a.starts_with("-l") && !a.starts_with("--"))
            || (a.starts_with("-c") && !a.starts_with("--"))
    });
    let mut out = args.to_vec();
    if !has_cores {
        let main = (0..).find(|c| !workers.contains(c)).unwrap_or(0);
        let mut list = vec![main.to_string()];
        list.extend(workers.iter().map(|c| c.to_string()));
        out.push("-l".into());
        out.push(list.join(","));
    }
    out
}

/// EAL arguments for `spec`: the user's plus PCI allow-list entries, and a
/// core list (main + workers) when the user gave none.
pub fn eal_args(spec: &DataplaneSpec) -> Vec<String> {
    let mut args = with_core_list(&spec.eal_args, &spec.worker_cores);
    for p in &spec.ports {
        if is_pci(&p.device) {
            args.push("-a".into());
            args.push(p.device.clone());
        }
    }
    args
}

/// How packets reach their owner on `port` (see [`Steering`]): the first of
/// RSS pre-calculation, rte_flow, hand-over that the port can do and the
/// configuration allows.
fn port_steer(spec: &PortSpec, port: &Port, nworkers: u16) -> Result<PortSteer, String> {
    let n = usize::from(nworkers);
    if n == 1 && !matches!(spec.steering, Steering::SoftRss { .. }) {
        // One worker owns everything: nothing to steer.
        return Ok(PortSteer::Handover);
    }
    let rss = || -> Result<RssSteer, String> {
        let s = match &spec.steering {
            Steering::SoftRss { key, reta } => RssSteer::new(
                Toeplitz::new(key).map_err(|e| format!("soft RSS: {e}"))?,
                Reta::new(reta.clone()).map_err(|e| format!("soft RSS: {e}"))?,
            ),
            _ => port.rss_steer()?,
        };
        let entries = s.reta().entries();
        if let Some(q) = entries.iter().find(|&&q| q >= nworkers) {
            return Err(format!(
                "the redirection table names queue {q}, beyond the {nworkers} workers"
            ));
        }
        if let Some(w) = (0..nworkers).find(|w| !entries.contains(w)) {
            return Err(format!("the redirection table never names queue {w}"));
        }
        Ok(s)
    };
    let flow = || -> Result<(), String> {
        if !crate::flowrules::maskable(n) {
            return Err(format!(
                "{n} workers: rte_flow steering needs a power-of-two worker count"
            ));
        }
        crate::dpdk::flow::validate(port.id, &crate::flowrules::probe(n))
    };
    match &spec.steering {
        Steering::Handover => Ok(PortSteer::Handover),
        Steering::SoftRss { .. } => rss().map(|s| PortSteer::Rss(Arc::new(s))),
        Steering::Rss => rss()
            .map(|s| PortSteer::Rss(Arc::new(s)))
            .map_err(|e| format!("steering = \"rss\" is not possible: {e}")),
        Steering::Flow => flow()
            .map(|()| PortSteer::Flow)
            .map_err(|e| format!("steering = \"flow\" is not possible: {e}")),
        Steering::Auto => Ok(match rss() {
            Ok(s) => PortSteer::Rss(Arc::new(s)),
            Err(_) if flow().is_ok() => PortSteer::Flow,
            Err(_) => PortSteer::Handover,
        }),
    }
}

impl Dataplane {
    /// Initialise EAL from `spec.eal_args`, bring up ports and launch workers.
    pub fn start(spec: &DataplaneSpec, initial: &ConfigDesc) -> Result<Dataplane, DataplaneError> {
        let eal = Eal::init(&eal_args(spec)).map_err(DataplaneError::Eal)?;
        let mut dp = Self::start_with_eal(spec, initial)?;
        dp.eal = Some(eal);
        Ok(dp)
    }

    /// Bring up ports and workers on an EAL the caller initialised (tests,
    /// benchmarks). Devices are vdev specs (hot-plugged here) or names of
    /// existing ethdevs (PCI addresses, ring ports).
    pub fn start_with_eal(
        spec: &DataplaneSpec,
        initial: &ConfigDesc,
    ) -> Result<Dataplane, DataplaneError> {
        if spec.worker_cores.is_empty() {
            return Err(DataplaneError::Workers("no worker cores".into()));
        }
        if spec.worker_cores.len() > MAX_WORKERS {
            return Err(DataplaneError::Workers(format!(
                "at most {MAX_WORKERS} workers"
            )));
        }
        let main = lcore::main_lcore();
        for &c in &spec.worker_cores {
            if !lcore::is_enabled(c) {
                return Err(DataplaneError::Workers(format!(
                    "lcore {c} is not in the EAL core list"
                )));
            }
            if c == main {
                return Err(DataplaneError::Workers(format!(
                    "lcore {c} is the main lcore; workers need their own cores"
                )));
            }
        }
        let nworkers = spec.worker_cores.len() as u16;
        let pool = Arc::new(
            Mempool::new(
                &format!("dpvs_pool_{}", crate::shared::random_u64() % 100000),
                spec.mbufs.max(1023),
                256,
                -1,
            )
            .map_err(|e| DataplaneError::Port {
                port: "mempool".into(),
                reason: e,
            })?,
        );
        let mut ports = Vec::new();
        let mut port_infos = Vec::new();
        for p in &spec.ports {
            let devname = p.device.split(',').next().unwrap_or("").trim().to_string();
            let existing = port_by_name(&devname);
            let id = match existing {
                Some(id) => id,
                None if !is_pci(&p.device) => {
                    crate::dpdk::port::vdev_init(&p.device).map_err(|e| DataplaneError::Port {
                        port: p.name.clone(),
                        reason: e,
                    })?;
                    port_by_name(&devname).ok_or_else(|| DataplaneError::Port {
                        port: p.name.clone(),
                        reason: format!("device {devname} created but no ethdev of that name"),
                    })?
                }
                None => {
                    return Err(DataplaneError::Port {
                        port: p.name.clone(),
                        reason: format!(
                            "no device {devname} (is it bound to vfio-pci and allowed with -a?)"
                        ),
                    })
                }
            };
            if p.queues < nworkers {
                return Err(DataplaneError::Port {
                    port: p.name.clone(),
                    reason: format!(
                        "{} queue(s) for {nworkers} workers: every worker needs its own rx/tx queue pair",
                        p.queues
                    ),
                });
            }
            let queues = nworkers;
            let mut port = Port::start(id, &p.name, queues, p.mtu, &pool).map_err(|e| {
                DataplaneError::Port {
                    port: p.name.clone(),
                    reason: e,
                }
            })?;
            // Ports the caller made (ring ports in tests) stay open for reuse.
            port.close_on_stop = existing.is_none() || is_pci(&p.device);
            port_infos.push(PortInfo {
                name: p.name.clone(),
                id,
                mac: port.mac,
                mtu: if p.mtu == 0 { 1500 } else { p.mtu },
            });
            ports.push(port);
        }
        let mut steers = Vec::new();
        for (p, port) in spec.ports.iter().zip(&ports) {
            if port.rx_ip_csum {
                eprintln!(
                    "dataplane: port {}: IPv4 header checksums verified by the NIC (rx offload)",
                    p.name
                );
            }
            let s = port_steer(p, port, nworkers).map_err(|reason| DataplaneError::Port {
                port: p.name.clone(),
                reason,
            })?;
            if nworkers > 1 {
                eprintln!(
                    "dataplane: port {}: {} queues, steering {}: {}",
                    p.name,
                    port.queues,
                    p.steering.name(),
                    s.name()
                );
            }
            steers.push(s);
        }
        let owners = Owners::new(usize::from(nworkers), steers);
        let rings = Rings::new(
            usize::from(nworkers),
            &format!("{}", crate::shared::random_u64() % 100000),
        )
        .map_err(DataplaneError::Workers)?;
        let kni = start_kni(spec, &port_infos, initial, usize::from(nworkers), &pool)?;
        let kni_rings = kni.as_ref().map(|k| k.rings.clone());
        let mut compiler = Compiler::default();
        let snap = compiler
            .compile(initial, &port_infos)
            .map_err(DataplaneError::Config)?;
        let shared = Arc::new(Shared::new(snap, owners));
        let rings = Arc::new(rings);
        let seed = crate::shared::random_u64();
        let mut requests = Vec::new();
        let mut launched = Vec::new();
        for (i, &lc) in spec.worker_cores.iter().enumerate() {
            let (tx, rx) = unbounded();
            requests.push(tx);
            let cfg = WorkerConfig {
                index: i,
                queue: i as u16,
                port_ids: port_infos.iter().map(|p| p.id).collect(),
                conn_capacity: spec.conn_capacity.max(1024),
                hash_seed: seed,
                adaptive_poll: spec.adaptive_poll,
                kni: kni_rings.clone(),
            };
            let (sh, pl, rg) = (shared.clone(), pool.clone(), rings.clone());
            let res = lcore::launch(lc, move || {
                let failed = sh.clone();
                // A panicking worker must not leave dpvsd limping without it:
                // record why and stop the dataplane (`Dataplane::failure`).
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    let mut w = Worker::new(cfg, sh, pl, rg, rx);
                    w.run();
                }));
                match run {
                    Ok(()) => 0,
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "(no message)".into());
                        failed.fail(format!("worker {i} (lcore {lc}) panicked: {msg}"));
                        -1
                    }
                }
            });
            if let Err(e) = res {
                shared.stop.store(true, Ordering::SeqCst);
                for &l in &launched {
                    lcore::wait(l);
                }
                return Err(DataplaneError::Workers(e));
            }
            launched.push(lc);
        }
        let dp = Dataplane {
            shared,
            compiler: Mutex::new(compiler),
            rings: Some(rings),
            flows: Mutex::new(HashMap::new()),
            lcores: launched,
            requests,
            ports,
            port_infos,
            pool: Some(pool),
            kni,
            eal: None,
            stopped: AtomicBool::new(false),
            base_timeouts: Mutex::new(conntrack::Timeouts::default()),
        };
        dp.sync_flows();
        Ok(dp)
    }

    /// Install and remove rte_flow rules so that each `PortSteer::Flow` port
    /// has exactly what the current snapshot wants (`crate::flowrules`). A
    /// rule the NIC refuses is logged; its replies are handed over instead.
    fn sync_flows(&self) {
        let owners = &self.shared.owners;
        if !owners.ports.iter().any(|p| matches!(p, PortSteer::Flow)) {
            return;
        }
        let snap = self.shared.snapshot.load();
        let mut installed = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        for (pi, steer) in owners.ports.iter().enumerate() {
            if !matches!(steer, PortSteer::Flow) {
                continue;
            }
            let (id, name) = (self.port_infos[pi].id, &self.port_infos[pi].name);
            let want = crate::flowrules::wanted(&snap, pi, owners.nworkers);
            let stale: Vec<(usize, FlowRule)> = installed
                .keys()
                .filter(|(p, r)| *p == pi && !want.contains(r))
                .copied()
                .collect();
            for k in stale {
                if let Some(Err(e)) = installed.remove(&k).map(|f| f.destroy()) {
                    eprintln!("dataplane: port {name}: removing {:?}: {e}", k.1);
                }
            }
            for r in want {
                if installed.contains_key(&(pi, r)) {
                    continue;
                }
                match crate::dpdk::flow::create(id, &r) {
                    Ok(f) => {
                        installed.insert((pi, r), f);
                    }
                    Err(e) => eprintln!(
                        "dataplane: port {name}: {r:?} refused ({e}); those replies are handed over"
                    ),
                }
            }
        }
    }

    /// Compile `desc` and publish it to the workers.
    pub fn apply(&self, desc: &ConfigDesc) -> Result<(), DataplaneError> {
        let snap = {
            let mut c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
            c.compile(desc, &self.port_infos)
                .map_err(DataplaneError::Config)?
        };
        // The old snapshot is dropped here, on the control thread.
        let old = self.shared.snapshot.swap(Arc::new(snap));
        drop(old);
        self.sync_flows();
        Ok(())
    }

    /// Compile `desc` with DPVS extras `ext` (FULLNAT local addresses, Proxy
    /// Protocol) and publish; later [`Dataplane::apply`]s keep `ext`.
    pub fn apply_ext(
        &self,
        desc: &ConfigDesc,
        ext: &crate::config::ExtDesc,
    ) -> Result<(), DataplaneError> {
        let snap = {
            let mut c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
            c.compile_ext(desc, ext, &self.port_infos)
                .map_err(DataplaneError::Config)?
        };
        let old = self.shared.snapshot.swap(Arc::new(snap));
        drop(old);
        self.sync_flows();
        Ok(())
    }

    pub fn port_names(&self) -> Vec<String> {
        self.port_infos.iter().map(|p| p.name.clone()).collect()
    }

    /// The ports that have a kernel interface (docs/kni.md).
    pub fn kni_ports(&self) -> Vec<String> {
        let Some(k) = &self.kni else {
            return Vec::new();
        };
        self.port_infos
            .iter()
            .enumerate()
            .filter(|(i, _)| k.rings.has(*i))
            .map(|(_, p)| p.name.clone())
            .collect()
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> Stats {
        let snap = self.shared.snapshot.load();
        let mut services: Vec<ServiceStats> = snap
            .services
            .values()
            .map(|s| ServiceStats {
                key: s.key,
                traffic: s.traffic.sum(),
                dests: s
                    .dests
                    .iter()
                    .zip(&s.meta)
                    .map(|(d, m)| DestStats {
                        addr: d.addr,
                        port: d.port,
                        mode: m.mode,
                        weight: d.effective_weight(),
                        inhibited: d.inhibited,
                        active_conns: d.active_conns(),
                        inactive_conns: d.inactive_conns(),
                        traffic: m.traffic.sum(),
                        syn_unanswered: d.counters.syn_unanswered.load(Ordering::Relaxed),
                        syn_answered: d.counters.syn_answered.load(Ordering::Relaxed),
                    })
                    .collect(),
                acl_drops: s.acl_drops.sum(),
                conn_limit_drops: s.conn_limit_drops.sum(),
            })
            .collect();
        services.sort_by_key(|s| s.key);
        let drops = DropReason::ALL
            .iter()
            .map(|&r| (r, self.shared.counters.iter().map(|c| c.drops(r)).sum()))
            .collect();
        let ports = self
            .ports
            .iter()
            .map(|p| {
                let c = p.counters();
                PortStats {
                    name: p.name.clone(),
                    mac: p.mac,
                    link_up: p.link_up(),
                    rx_packets: c.ipackets,
                    tx_packets: c.opackets,
                    rx_bytes: c.ibytes,
                    tx_bytes: c.obytes,
                    rx_missed: c.imissed,
                    rx_errors: c.ierrors,
                    tx_errors: c.oerrors,
                }
            })
            .collect();
        let workers: Vec<WorkerStats> = self
            .shared
            .counters
            .iter()
            .map(|c| WorkerStats {
                rx_packets: c.rx.load(Ordering::Relaxed),
                tx_packets: c.tx.load(Ordering::Relaxed),
                drops: DropReason::ALL.iter().map(|&r| c.drops(r)).sum(),
                drops_by_reason: DropReason::ALL.iter().map(|&r| (r, c.drops(r))).collect(),
                handed_over: c.handed_over.load(Ordering::Relaxed),
                handover_in: c.handover_in.load(Ordering::Relaxed),
                conns: c.conns.load(Ordering::Relaxed),
                conn_capacity: c.conn_capacity.load(Ordering::Relaxed),
                sched_tables_built: c.sched_tables_built.load(Ordering::Relaxed),
            })
            .collect();
        Stats {
            services,
            drops,
            ports,
            rx_packets: workers.iter().map(|w| w.rx_packets).sum(),
            tx_packets: workers.iter().map(|w| w.tx_packets).sum(),
            workers,
            mempool: self.pool.as_ref().map(|p| MempoolStats {
                in_use: u64::from(p.in_use()),
                capacity: u64::from(p.capacity()),
            }),
        }
    }

    /// Counters of what the modes did to forwarded packets, summed over
    /// workers: (name, count), every event listed.
    pub fn events(&self) -> Vec<(&'static str, u64)> {
        crate::events::Event::ALL
            .iter()
            .map(|&e| (e.name(), self.shared.events.iter().map(|c| c.get(e)).sum()))
            .collect()
    }

    /// Every worker's connections (each worker answers between bursts).
    pub fn connections(&self) -> Vec<ConnEntry> {
        let mut out = Vec::new();
        let mut replies = Vec::new();
        for r in &self.requests {
            let (tx, rx) = bounded(1);
            if r.send(Request::Conns(tx)).is_ok() {
                replies.push(rx);
            }
        }
        for rx in replies {
            if let Ok(mut v) = rx.recv_timeout(Duration::from_secs(2)) {
                out.append(&mut v);
            }
        }
        out
    }

    /// Replace the global connection timeouts on every worker.
    /// The TCP state timeouts the daemon's configuration starts from (DPVS's
    /// per-state settings); ipvsadm's `--set` changes three of them.
    pub fn base_timeouts(&self) -> conntrack::Timeouts {
        *self.base_timeouts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_base_timeouts(&self, t: conntrack::Timeouts) {
        *self.base_timeouts.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn set_timeouts(&self, t: conntrack::Timeouts) {
        for r in &self.requests {
            let _ = r.send(Request::SetTimeouts(t));
        }
    }

    /// Connection sync, master: start or stop queueing connection records.
    pub fn sync_master(&self, on: bool) {
        self.shared.sync.set_on(on);
    }

    /// Connection sync, master: the records the workers queued, at most
    /// `max`.
    pub fn sync_drain(&self, max: usize, out: &mut Vec<crate::sync::SyncConn>) {
        self.shared.sync.drain(max, out);
    }

    /// Every worker's connections and templates as sync records.
    pub fn sync_dump(&self) -> Vec<crate::sync::SyncConn> {
        let mut replies = Vec::new();
        for r in &self.requests {
            let (tx, rx) = bounded(1);
            if r.send(Request::SyncDump(tx)).is_ok() {
                replies.push(rx);
            }
        }
        let mut out = Vec::new();
        for rx in replies {
            if let Ok(mut v) = rx.recv_timeout(Duration::from_secs(5)) {
                out.append(&mut v);
            }
        }
        out
    }

    /// Connection sync, backup: hand each record to the worker that owns its
    /// connection, which installs it between bursts.
    pub fn sync_install(&self, conns: Vec<crate::sync::SyncConn>) {
        let snap = self.shared.snapshot.load();
        let mut per: Vec<Vec<crate::sync::SyncConn>> = vec![Vec::new(); self.requests.len()];
        for c in conns {
            let w = crate::sync::owner_of(&snap, &self.shared.owners, &c);
            if let Some(v) = per.get_mut(w) {
                v.push(c);
            }
        }
        for (r, v) in self.requests.iter().zip(per) {
            if !v.is_empty() {
                let _ = r.send(Request::SyncInstall(v));
            }
        }
    }

    /// Why the dataplane stopped on its own (a worker panicked), if it did:
    /// the daemon must then exit, since packets of that worker's queues and
    /// connections are no longer handled.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make worker `worker` panic with `msg` between bursts (fault injection
    /// for tests of the failure path).
    pub fn inject_worker_panic(&self, worker: usize, msg: &str) {
        if let Some(r) = self.requests.get(worker) {
            let _ = r.send(Request::Panic(msg.to_string()));
        }
    }

    /// Neighbour entries learned so far: (address, MAC, port name).
    pub fn neighbours(&self) -> Vec<(std::net::IpAddr, [u8; 6], String)> {
        self.shared
            .neigh
            .entries()
            .into_iter()
            .map(|(ip, n)| {
                (
                    ip,
                    n.mac,
                    self.port_infos
                        .get(n.port)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Stop workers, ports, free the pool and clean up EAL (if we initialised it).
    pub fn stop(self) {
        drop(self)
    }

    fn shutdown(&mut self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        for &l in &self.lcores {
            lcore::wait(l);
        }
        // Mbufs still on hand-over rings go back to the pool while it exists,
        // and the rings go before the EAL frees their memory (the workers have
        // returned, so this is the last reference).
        if let Some(r) = self.rings.take() {
            r.drain();
        }
        // The host thread stops and the TAPs close before the pool goes.
        self.kni = None;
        let flows = std::mem::take(&mut *self.flows.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, f) in flows {
            let _ = f.destroy();
        }
        for p in &mut self.ports {
            p.stop();
        }
        self.ports.clear();
        self.pool.take();
        self.eal.take();
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Creates the kernel interface of every port that wants one (a TAP named
/// after the port, with its MAC), brings it up with the port's configured
/// addresses, and starts the host thread. `None` when no port has one.
fn start_kni(
    spec: &DataplaneSpec,
    infos: &[PortInfo],
    initial: &ConfigDesc,
    nworkers: usize,
    pool: &Arc<Mempool>,
) -> Result<Option<crate::kni::Kni>, DataplaneError> {
    let tag = format!("{}", crate::shared::random_u64() % 100000);
    let mut taps = Vec::new();
    for (i, (p, info)) in spec.ports.iter().zip(infos).enumerate() {
        let tap = match p.kni {
            crate::KniMode::Off => continue,
            mode => match crate::kni::create_tap(i, &p.name, info.mac, info.mtu, &tag, pool) {
                Ok(t) => t,
                Err(reason) if mode == crate::KniMode::Auto => {
                    eprintln!(
                        "dataplane: port {}: no kernel interface ({reason}); the port runs \
                         without one (kni = false in dpvs.toml says so, kni = true requires it)",
                        p.name
                    );
                    continue;
                }
                Err(reason) => {
                    return Err(DataplaneError::Port {
                        port: p.name.clone(),
                        reason,
                    })
                }
            },
        };
        let addrs: Vec<String> = initial
            .addrs
            .iter()
            .filter(|a| a.port == p.name)
            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
            .collect();
        if let Err(e) = crate::kni::configure_kernel_side(&p.name, &addrs) {
            eprintln!("dataplane: kernel interface {}: {e}", p.name);
        }
        eprintln!(
            "dataplane: port {}: kernel interface {} ({}) with {}",
            p.name,
            p.name,
            tap.kind.name(),
            if addrs.is_empty() {
                "no addresses".to_string()
            } else {
                addrs.join(" ")
            }
        );
        taps.push(tap);
    }
    if taps.is_empty() {
        return Ok(None);
    }
    crate::kni::Kni::start(taps, nworkers, infos.len(), &tag)
        .map(Some)
        .map_err(DataplaneError::Workers)
}
