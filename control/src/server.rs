//! The `dpvs.v1` gRPC service: the [`Store`] in front of a [`Backend`].
//!
//! Every mutation runs on a copy of the store: validate, change, hand the full
//! new description to `Backend::apply`, and only then keep the copy. When the
//! dataplane refuses, the old store stays and the call fails, so the store always
//! describes what the dataplane runs. Reads of counters and connections run on a
//! blocking thread (they may take up to ~100 ms) and never hold the store lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::v1 as pb;
use proto::v1::dpvs_server::{Dpvs, DpvsServer};
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::convert;
use crate::ops;
use crate::store::{AclList, Store, StoreError};

mod keeper;
pub mod listen;

pub use listen::{
    bind, bind_tls, group_id, serve, share_socket, Bound, SocketFile, SHUTDOWN_GRACE,
};

/// The metadata key of a failed `Batch` naming the operation (0-based) that failed.
pub const OP_INDEX: &str = "dpvs-op-index";

/// ipvsadm's `size=` in the listing header (IPVS's default conn table bits = 12).
pub const DEFAULT_TABLE_SIZE: u32 = 4096;

/// The gRPC service over a store and a backend.
pub struct DpvsService {
    store: Mutex<Store>,
    backend: Arc<dyn Backend>,
    table_size: u32,
    /// `-Z`: what the counters read when they were zeroed.
    zero: crate::zero::Baselines,
    /// `[control] state_file`: rewritten after every change.
    state_file: Option<PathBuf>,
    /// `--rate`: IPVS's estimator over the raw counters.
    rates: crate::rate::Estimators,
    /// The real servers' health checks (one task each).
    checkers: crate::health::Checkers,
    /// Ports with a kernel interface: their addresses are mirrored to it.
    kni_ports: Vec<String>,
    /// The connection sync daemons (`--start-daemon`).
    pub sync: Arc<crate::sync::Daemons>,
    /// VIPs `crate::announce` put on a kernel interface: the address watch
    /// leaves them alone.
    announced: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
}

impl DpvsService {
    /// `store` must already be in force in `backend` (dpvsd starts the dataplane
    /// with `store.desc()`).
    pub fn new(store: Store, backend: Arc<dyn Backend>) -> DpvsService {
        DpvsService {
            store: Mutex::new(store),
            table_size: DEFAULT_TABLE_SIZE,
            zero: Default::default(),
            state_file: None,
            rates: Default::default(),
            checkers: Default::default(),
            kni_ports: Vec::new(),
            sync: Arc::new(crate::sync::Daemons::new(backend.clone())),
            announced: Mutex::default(),
            backend,
        }
    }

    /// The ports with a kernel interface (crate::kni): addresses the API adds
    /// or deletes there are put on or taken off it too.
    pub fn with_kni_ports(mut self, ports: Vec<String>) -> DpvsService {
        self.kni_ports = ports;
        self
    }

    /// An address appeared on or left a kernel interface: the dataplane's
    /// addresses follow (already so: nothing to do).
    /// `crate::announce` manages `vip` on a kernel interface from now on.
    pub fn announcer_owns(&self, vip: std::net::IpAddr) {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vip);
    }

    pub fn kernel_address(&self, ev: &crate::kni::AddrEvent) {
        if self
            .announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ev.addr)
        {
            return;
        }
        let a = dataplane::AddrSpec {
            port: ev.port.clone(),
            addr: ev.addr,
            prefix_len: ev.prefix_len,
        };
        let r = self.mutate(|s| {
            let has = s
                .addrs()
                .iter()
                .any(|x| x.addr == ev.addr && x.port == ev.port);
            match (ev.added, has) {
                (true, false) => s.add_kernel_addr(a).map(|()| true),
                (false, true) => s.delete_addr(&ev.port, &ev.addr).map(|()| true),
                _ => Ok(false),
            }
            .map_err(store_status)
        });
        match r {
            Ok(true) => eprintln!(
                "dpvsd: kni: {} {} {}/{}: {} the dataplane",
                ev.port,
                if ev.added { "gained" } else { "lost" },
                ev.addr,
                ev.prefix_len,
                if ev.added {
                    "now owned by"
                } else {
                    "no longer owned by"
                }
            ),
            Ok(false) => {}
            Err(e) => eprintln!(
                "dpvsd: kni: {} {}/{} on the kernel side cannot be the dataplane's: {}",
                ev.port,
                ev.addr,
                ev.prefix_len,
                e.message()
            ),
        }
    }

    /// After an API address change on a port with a kernel interface: the
    /// same change on the interface.
    fn mirror_addr(&self, op: &pb::op::Op) {
        let (r, add) = match op {
            pb::op::Op::AddAddr(r) => (r, true),
            pb::op::Op::DeleteAddr(r) => (r, false),
            _ => return,
        };
        let Ok(a) = convert::addr_from_pb(r.addr.as_ref()) else {
            return;
        };
        if !self.kni_ports.contains(&a.port) {
            return;
        }
        if let Err(e) = crate::kni::mirror(&a.port, a.addr, a.prefix_len, add) {
            eprintln!("dpvsd: kni: {e}");
        }
    }

    /// Keeps the running configuration in `path` (written now, and after every
    /// change).
    pub fn with_state_file(mut self, path: Option<PathBuf>) -> DpvsService {
        self.state_file = path;
        self.save_state(&self.lock());
        self
    }

    /// One estimator sample (`--rate`); dpvsd calls it every
    /// [`crate::rate::INTERVAL`] (see [`DpvsService::estimate_forever`]).
    pub async fn estimate(&self) -> Result<(), Status> {
        let stats = self.blocking(|b| b.stats()).await?;
        self.rates.sample(&stats);
        Ok(())
    }

    /// Samples the rates every 2 s, for as long as dpvsd runs.
    pub async fn estimate_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(crate::rate::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _ = self.estimate().await;
        }
    }

    /// The estimator's rates on a listed service and its dests.
    fn add_rates(&self, st: &mut pb::ServiceStatus) {
        let Some(key) = st.service.as_ref().and_then(|s| s.key.as_ref()) else {
            return;
        };
        let Ok(key) = convert::key_from_pb(Some(key)) else {
            return;
        };
        let pb_rate = |r: crate::rate::Rates| pb::Rate {
            cps: r.cps,
            inpps: r.inpps,
            outpps: r.outpps,
            inbps: r.inbps,
            outbps: r.outbps,
        };
        st.rate = Some(pb_rate(self.rates.service(&key)));
        for d in &mut st.dests {
            let Some(dest) = &d.dest else { continue };
            let (Ok(addr), Ok(port)) = (dest.addr.parse(), u16::try_from(dest.port)) else {
                continue;
            };
            d.rate = Some(pb_rate(self.rates.dest(&key, addr, port)));
        }
    }

    fn save_state(&self, store: &Store) {
        let Some(path) = &self.state_file else { return };
        if let Err(e) = crate::state::write_atomic(path, crate::state::render(store)) {
            // The change is in force; only its record failed. Say so loudly.
            eprintln!("dpvsd: cannot write state file {}: {e}", path.display());
        }
    }

    /// Makes `next`'s objects (addresses, routes, services, local addresses,
    /// timeouts) the running configuration, as one snapshot (`dpvsctl apply`,
    /// SIGHUP). Returns the lines of the running configuration that go and
    /// come; `dry_run` only computes them.
    pub fn replace(
        &self,
        next: Store,
        dry_run: bool,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        if next.ports() != self.lock().ports() {
            return Err(Status::failed_precondition(format!(
                "port: ports {:?} differ from the running ports {:?}: ports change with a restart",
                next.ports(),
                self.lock().ports()
            )));
        }
        let lines = |s: &Store| -> Vec<String> {
            crate::state::render(s)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        let (old, new) = (lines(&self.lock()), lines(&next));
        let removed: Vec<String> = old.iter().filter(|l| !new.contains(l)).cloned().collect();
        let added: Vec<String> = new.iter().filter(|l| !old.contains(l)).cloned().collect();
        if dry_run {
            return Ok((removed, added));
        }
        let mut next = next;
        let (gone, addrs): (Vec<dataplane::ServiceKey>, _) = self.mutate(|s| {
            let gone = s
                .services()
                .map(|x| x.key)
                .filter(|k| next.service(k).is_none())
                .collect();
            // What the checks found stays found: a real server that is down
            // and still checked the same way stays down.
            next.carry_health_from(s);
            next.carry_kernel_addrs_from(s);
            let old: Vec<dataplane::AddrSpec> = s.own_addrs().cloned().collect();
            let new: Vec<dataplane::AddrSpec> = next.own_addrs().cloned().collect();
            *s = next;
            Ok((gone, (old, new)))
        })?;
        for k in gone {
            self.zero.forget_service(&k);
        }
        // The kernel interfaces follow the file's addresses too.
        let (old, new) = addrs;
        for (list, other, add) in [(&old, &new, false), (&new, &old, true)] {
            for a in list.iter().filter(|a| !other.contains(a)) {
                if self.kni_ports.contains(&a.port) {
                    if let Err(e) = crate::kni::mirror(&a.port, a.addr, a.prefix_len, add) {
                        eprintln!("dpvsd: kni: {e}");
                    }
                }
            }
        }
        Ok((removed, added))
    }

    /// A snapshot of the current store.
    pub fn store(&self) -> Store {
        self.lock().clone()
    }

    pub fn into_server(self) -> DpvsServer<DpvsService> {
        DpvsServer::new(self)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave a half-made change: changes
        // are made on a copy and swapped in whole.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validate + change a copy, apply it, keep it only if the dataplane took it.
    fn mutate<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, Status>) -> Result<T, Status> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = f(&mut next)?;
        next.update_quorum();
        let before = (guard.desc(), guard.ext());
        let after = (next.desc(), next.ext());
        if before != after {
            let r = if after.1 == dataplane::ExtDesc::default() && before.1 == after.1 {
                self.backend.apply(&after.0)
            } else {
                self.backend.apply_ext(&after.0, &after.1)
            };
            r.map_err(|e| {
                Status::failed_precondition(format!("dataplane rejected the change: {e}"))
            })?;
        }
        let timeouts = guard.timeouts() != next.timeouts();
        if timeouts {
            self.backend.set_timeouts(next.timeouts());
        }
        let quorum = next.quorum_changes(&guard);
        *guard = next;
        if before != after || timeouts {
            self.save_state(&guard);
        }
        for (key, lost, alive) in quorum {
            keeper::notify_quorum(&guard, &key, !lost, alive);
        }
        self.checkers.reconcile(&guard.checks());
        Ok(out)
    }

    /// One change (a single call).
    fn change(&self, op: pb::op::Op) -> Result<Response<pb::Empty>, Status> {
        let forget = self.mutate(|s| ops::apply(s, &op))?;
        self.forget(forget);
        self.mirror_addr(&op);
        empty()
    }

    /// Several changes as one snapshot (`Batch`).
    fn batch(&self, list: &[pb::Op]) -> Result<(), Status> {
        let forgets = self.mutate(|s| {
            // A real server a Batch deletes and adds again with the same
            // check (`-C` then the table, import --replace) stays as its
            // check found it.
            let before = s.clone();
            let mut forgets = Vec::with_capacity(list.len());
            for (i, op) in list.iter().enumerate() {
                let r = match &op.op {
                    Some(op) => ops::apply(s, op).map_err(|e| {
                        Status::new(
                            e.code(),
                            format!("op {i} ({}): {}", ops::name(op), e.message()),
                        )
                    }),
                    None => Err(bad(format!("op {i}: empty operation"))),
                };
                match r {
                    Ok(f) => forgets.push(f),
                    Err(mut e) => {
                        if let Ok(v) = i.to_string().parse() {
                            e.metadata_mut().insert(OP_INDEX, v);
                        }
                        return Err(e);
                    }
                }
            }
            s.carry_health_from(&before);
            Ok(forgets)
        })?;
        for f in forgets {
            self.forget(f);
        }
        for op in list.iter().filter_map(|o| o.op.as_ref()) {
            self.mirror_addr(op);
        }
        Ok(())
    }

    fn forget(&self, f: ops::Forget) {
        match f {
            ops::Forget::Nothing => {}
            ops::Forget::Service(k) => self.zero.forget_service(&k),
            ops::Forget::Dest(k, a, p) => self.zero.forget_dest(&k, a, p),
            ops::Forget::All => self.zero.clear(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Backend) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let b = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || f(b.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("dataplane query failed: {e}")))
    }
}

/// NOT_FOUND / ALREADY_EXISTS / INVALID_ARGUMENT with the store's message
/// (`field: why` for INVALID_ARGUMENT).
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(m) => Status::not_found(m),
        StoreError::AlreadyExists(m) => Status::already_exists(m),
        e @ StoreError::Invalid { .. } => Status::invalid_argument(e.to_string()),
    }
}

fn bad(m: String) -> Status {
    Status::invalid_argument(m)
}

/// The service a list request is limited to, if any: a key the store does not
/// have is `NotFound`, as for the calls that change a service.
fn service_filter(
    store: &Store,
    key: Option<&pb::ServiceKey>,
) -> Result<Option<dataplane::ServiceKey>, Status> {
    let Some(k) = key else { return Ok(None) };
    let k = convert::key_from_pb(Some(k)).map_err(bad)?;
    if store.service(&k).is_none() {
        return Err(store_status(crate::store::not_found(&k)));
    }
    Ok(Some(k))
}

/// A service with its counters and the store's DPVS extras.
pub(crate) fn service_status(
    store: &Store,
    s: &dataplane::ServiceSpec,
    st: Option<&dataplane::ServiceStats>,
) -> pb::ServiceStatus {
    let sorry = store.sorry_in_use(&s.key);
    let mut out = convert::service_status(&store.effective(s), st);
    if let Some(svc) = out.service.as_mut() {
        svc.proxy_protocol = convert::proxy_protocol_to_pb(store.proxy_protocol(&s.key)) as i32;
        svc.passive_check = store.passive_check(&s.key);
        svc.synproxy = Some(store.synproxy(&s.key));
        svc.conn_limit = Some(store.conn_limit(&s.key));
        (svc.quorum, svc.hysteresis) = store.quorum(&s.key);
        let scripts = store.quorum_scripts(&s.key);
        (svc.quorum_up, svc.quorum_down) = (scripts.up, scripts.down);
        if let Some(acl) = store.acl(&s.key) {
            let text = |l: AclList| {
                acl.list(l)
                    .iter()
                    .map(|(a, len)| crate::addr::fmt_acl_entry(a, *len))
                    .collect()
            };
            svc.blacklist = text(AclList::Blacklist);
            svc.whitelist = text(AclList::Whitelist);
        }
        svc.sorry_server = store
            .sorry(&s.key)
            .map(|a| crate::addr::fmt_addr_port(&a.ip(), a.port()))
            .unwrap_or_default();
    }
    if let Some(d) = &sorry {
        for ds in &mut out.dests {
            if let Some(x) = ds.dest.as_mut() {
                x.sorry = x.addr == d.addr.to_string() && x.port == u32::from(d.port);
            }
        }
    }
    for ds in &mut out.dests {
        if let Some(d) = ds.dest.as_mut() {
            if let (Ok(addr), Ok(port)) = (d.addr.parse(), u16::try_from(d.port)) {
                d.check = store.check(&s.key, &addr, port).map(convert::check_to_pb);
            }
        }
    }
    out
}

fn empty() -> Result<Response<pb::Empty>, Status> {
    Ok(Response::new(pb::Empty {}))
}

#[tonic::async_trait]
impl Dpvs for DpvsService {
    async fn add_service(
        &self,
        req: Request<pb::AddServiceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddService(req.into_inner()))
    }

    async fn edit_service(
        &self,
        req: Request<pb::EditServiceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::EditService(req.into_inner()))
    }

    async fn delete_service(
        &self,
        req: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteService(req.into_inner()))
    }

    async fn clear_services(&self, req: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::ClearServices(req.into_inner()))
    }

    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let store = self.store();
        let only = service_filter(&store, req.get_ref().key.as_ref())?;
        let mut stats = self.blocking(|b| b.stats()).await?;
        self.zero.apply(&mut stats);
        let services = store
            .services()
            .filter(|s| only.is_none_or(|k| s.key == k))
            .map(|s| {
                let st = stats.services.iter().find(|x| x.key == s.key);
                let mut out = service_status(&store, s, st);
                self.add_rates(&mut out);
                out
            })
            .collect();
        Ok(Response::new(pb::ListServicesResponse {
            services,
            table_size: self.table_size,
        }))
    }

    async fn zero_stats(
        &self,
        req: Request<pb::ZeroStatsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let only = service_filter(&self.store(), req.get_ref().key.as_ref())?;
        let stats = self.blocking(|b| b.stats()).await?;
        self.zero.zero(&stats, only);
        empty()
    }

    async fn add_dest(&self, req: Request<pb::DestRequest>) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddDest(req.into_inner()))
    }

    async fn edit_dest(
        &self,
        req: Request<pb::DestRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::EditDest(req.into_inner()))
    }

    async fn delete_dest(
        &self,
        req: Request<pb::DeleteDestRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteDest(req.into_inner()))
    }

    async fn add_addr(&self, req: Request<pb::AddrRequest>) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddAddr(req.into_inner()))
    }

    async fn delete_addr(
        &self,
        req: Request<pb::AddrRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteAddr(req.into_inner()))
    }

    async fn list_addrs(
        &self,
        req: Request<pb::ListAddrsRequest>,
    ) -> Result<Response<pb::ListAddrsResponse>, Status> {
        let port = &req.get_ref().port;
        let store = self.store();
        if !port.is_empty() && !store.ports().iter().any(|p| p == port) {
            return Err(bad(format!("port: unknown port \"{port}\"")));
        }
        let addrs = store
            .addrs()
            .iter()
            .filter(|a| port.is_empty() || &a.port == port)
            .map(convert::addr_to_pb)
            .collect();
        Ok(Response::new(pb::ListAddrsResponse {
            addrs,
            ports: store.ports().to_vec(),
        }))
    }

    async fn add_route(
        &self,
        req: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddRoute(req.into_inner()))
    }

    async fn delete_route(
        &self,
        req: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteRoute(req.into_inner()))
    }

    async fn list_routes(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let store = self.store();
        let mut routes: Vec<pb::Route> = store
            .addrs()
            .iter()
            .filter(|a| a.prefix_len < crate::addr::max_prefix(&a.addr))
            .map(|a| {
                let (prefix, len) = crate::addr::network_of(&a.addr, a.prefix_len);
                convert::route_to_pb(
                    &dataplane::RouteSpec {
                        prefix,
                        prefix_len: len,
                        via: None,
                        port: a.port.clone(),
                    },
                    true,
                )
            })
            .collect();
        routes.extend(
            store
                .routes()
                .iter()
                .map(|r| convert::route_to_pb(r, false)),
        );
        Ok(Response::new(pb::ListRoutesResponse { routes }))
    }

    async fn add_local_addr(
        &self,
        req: Request<pb::LocalAddrRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddLocalAddr(req.into_inner()))
    }

    async fn delete_local_addr(
        &self,
        req: Request<pb::LocalAddrRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteLocalAddr(req.into_inner()))
    }

    async fn list_local_addrs(
        &self,
        req: Request<pb::ListLocalAddrsRequest>,
    ) -> Result<Response<pb::ListLocalAddrsResponse>, Status> {
        let store = self.store();
        let filter = service_filter(&store, req.get_ref().service.as_ref())?;
        let conns = self.blocking(|b| b.connections()).await?;
        let laddrs = store
            .laddrs()
            .iter()
            .filter(|l| filter.as_ref().is_none_or(|k| *k == l.service))
            .map(|l| {
                let n = conns
                    .iter()
                    .filter(|c| {
                        c.local.map(|x| x.0) == Some(l.addr)
                            && c.proto == l.service.proto
                            && c.virt == (l.service.vip, l.service.vport)
                    })
                    .count();
                convert::laddr_to_pb(l, n as u64)
            })
            .collect();
        Ok(Response::new(pb::ListLocalAddrsResponse { laddrs }))
    }

    async fn add_acl_entry(
        &self,
        req: Request<pb::AclEntryRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::AddAclEntry(req.into_inner()))
    }

    async fn delete_acl_entry(
        &self,
        req: Request<pb::AclEntryRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change(pb::op::Op::DeleteAclEntry(req.into_inner()))
    }

    async fn list_connections(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let conns = self.blocking(|b| b.connections()).await?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: conns.iter().map(convert::conn_to_pb).collect(),
        }))
    }

    async fn get_stats(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let store = self.store();
        let (mut stats, events) = self.blocking(|b| (b.stats(), b.events())).await?;
        self.zero.apply(&mut stats);
        let services = store
            .services()
            .map(|s| {
                let st = stats.services.iter().find(|x| x.key == s.key);
                service_status(&store, s, st)
            })
            .collect();
        Ok(Response::new(pb::StatsResponse {
            services,
            drops: stats
                .drops
                .iter()
                .map(|(r, n)| pb::DropCounter {
                    reason: r.name().to_string(),
                    packets: *n,
                })
                .collect(),
            ports: stats.ports.iter().map(convert::port_stats_to_pb).collect(),
            rx_packets: stats.rx_packets,
            tx_packets: stats.tx_packets,
            workers: stats
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| pb::WorkerStats {
                    worker: i as u32,
                    rx_packets: w.rx_packets,
                    tx_packets: w.tx_packets,
                    drops: w.drops,
                    handed_over: w.handed_over,
                    handover_in: w.handover_in,
                    conns: w.conns,
                })
                .collect(),
            events: events
                .into_iter()
                .map(|(name, count)| pb::EventCounter {
                    name: name.to_string(),
                    count,
                })
                .collect(),
        }))
    }

    async fn get_timeouts(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::Timeouts>, Status> {
        Ok(Response::new(convert::timeouts_to_pb(
            self.lock().timeouts(),
        )))
    }

    async fn set_timeouts(
        &self,
        req: Request<pb::Timeouts>,
    ) -> Result<Response<pb::Timeouts>, Status> {
        self.change(pb::op::Op::SetTimeouts(req.into_inner()))?;
        Ok(Response::new(convert::timeouts_to_pb(
            self.lock().timeouts(),
        )))
    }

    async fn start_daemon(
        &self,
        req: Request<pb::SyncDaemon>,
    ) -> Result<Response<pb::Empty>, Status> {
        let spec = convert::daemon_from_pb(req.get_ref()).map_err(bad)?;
        let role = spec.role;
        if self.sync.list().iter().any(|d| d.role == role) {
            return Err(Status::already_exists(format!(
                "a {} sync daemon is running already",
                role.name()
            )));
        }
        let sync = self.sync.clone();
        tokio::task::spawn_blocking(move || sync.start(spec))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(bad)?;
        empty()
    }

    async fn stop_daemon(
        &self,
        req: Request<pb::StopDaemonRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let role = crate::sync::Role::parse(&req.get_ref().state).map_err(bad)?;
        let sync = self.sync.clone();
        tokio::task::spawn_blocking(move || sync.stop(role))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::not_found)?;
        empty()
    }

    async fn list_daemons(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::ListDaemonsResponse>, Status> {
        Ok(Response::new(pb::ListDaemonsResponse {
            daemons: self.sync.list().iter().map(convert::daemon_to_pb).collect(),
            counters: self
                .sync
                .counters
                .snapshot()
                .into_iter()
                .map(|(name, count)| pb::EventCounter {
                    name: name.to_string(),
                    count,
                })
                .collect(),
        }))
    }

    async fn apply_config(
        &self,
        req: Request<pb::ApplyConfigRequest>,
    ) -> Result<Response<pb::ApplyConfigResponse>, Status> {
        let r = req.get_ref();
        // The request's field, then the key in the file: `toml: service[0].vip: ...`.
        let cfg = crate::config::parse(&r.toml).map_err(|e| bad(format!("toml: {e}")))?;
        let (removed, added) = self
            .replace(cfg.store, r.dry_run)
            .map_err(|e| Status::new(e.code(), format!("toml: {}", e.message())))?;
        Ok(Response::new(pb::ApplyConfigResponse { removed, added }))
    }

    async fn batch(&self, req: Request<pb::BatchRequest>) -> Result<Response<pb::Empty>, Status> {
        DpvsService::batch(self, &req.get_ref().ops)?;
        empty()
    }
}
