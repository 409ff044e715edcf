//! `dpvsd`: reads dpvs.toml, starts the DPDK dataplane, serves the `dpvs.v1`
//! gRPC API (and Prometheus metrics when `[metrics] listen` is set) until
//! SIGINT/SIGTERM, then stops the dataplane and removes its socket.

use std::path::{Path, PathBuf};

use control::store::Store;
use std::process::ExitCode;

use clap::Parser;

/// The director daemon.
#[derive(Parser, Debug)]
#[command(
    name = "dpvsd",
    version,
    about = "DPDK L4 load balancer daemon (LVS/DPVS style)"
)]
struct Args {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "/etc/dpvs/dpvs.toml")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match control::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpvsd: {e}");
            return ExitCode::from(1);
        }
    };
    // The TLS files are read now, so `--check` finds a bad one too.
    let tls = match cfg
        .tls
        .as_ref()
        .map(|f| f.load(&control::tls::CONFIG_NAMES))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dpvsd: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check {
        println!("dpvsd: {}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    match run(cfg, tls, &args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpvsd: {e}");
            ExitCode::from(1)
        }
    }
}

/// The configuration to start from: the state file when there is one (the
/// configuration dpvsd ran with last), else the config file's.
fn initial_store(cfg: &control::config::Config, config: &Path) -> Result<Store, String> {
    let Some(path) = &cfg.state_file else {
        return Ok(cfg.store.clone());
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut base = Store::new(cfg.store.ports().to_vec());
            base.set_claim_vips(cfg.store.claims_vips());
            let store = control::state::load_into(base, &text).map_err(|e| {
                format!(
                    "state file {}: {e} (fix it, or remove it to start from {})",
                    path.display(),
                    config.display()
                )
            })?;
            eprintln!("dpvsd: configuration restored from {}", path.display());
            Ok(store)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(cfg.store.clone()),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

/// SIGHUP: the config file's services, addresses, routes and timeouts become
/// the running ones (the difference is applied as one change and logged). A
/// file that does not validate changes nothing.
#[cfg(feature = "dataplane")]
async fn reload_on_sighup(svc: std::sync::Arc<control::server::DpvsService>, config: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        eprintln!("dpvsd: warning: cannot watch SIGHUP; reload with dpvsctl apply -f");
        return;
    };
    while hup.recv().await.is_some() {
        let shown = config.display();
        let cfg = match control::config::load(&config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("dpvsd: SIGHUP: {e}; configuration unchanged");
                continue;
            }
        };
        match svc.replace(cfg.store, false) {
            Ok((removed, added)) => {
                eprintln!(
                    "dpvsd: SIGHUP: {shown} applied ({} line(s) removed, {} added)",
                    removed.len(),
                    added.len()
                );
                for l in &removed {
                    eprintln!("dpvsd:   - {l}");
                }
                for l in &added {
                    eprintln!("dpvsd:   + {l}");
                }
            }
            Err(e) => eprintln!(
                "dpvsd: SIGHUP: {shown}: {}; configuration unchanged",
                e.message()
            ),
        }
    }
}

#[cfg(feature = "dataplane")]
fn run(
    cfg: control::config::Config,
    tls: Option<control::tls::TlsPem>,
    config: &Path,
) -> Result<(), String> {
    use std::sync::Arc;

    use control::backend::Backend;
    use control::server::{bind, bind_tls, serve, DpvsService};

    let store = initial_store(&cfg, config)?;
    // EAL init pins this (main) thread to the main lcore, which is not a worker.
    let dp =
        dataplane::Dataplane::start(&cfg.dataplane, &store.desc()).map_err(|e| e.to_string())?;
    let dp = Arc::new(dp);
    let ext = store.ext();
    if ext != dataplane::ExtDesc::default() {
        Backend::apply_ext(dp.as_ref(), &store.desc(), &ext)?;
    }
    dp.set_base_timeouts(cfg.tcp_states);
    if store.timeouts() != control::store::Timeouts::default()
        || cfg.tcp_states != conntrack::Timeouts::default()
    {
        Backend::set_timeouts(dp.as_ref(), store.timeouts());
    }
    let ports = dp.port_names();
    let configured: Vec<String> = store.ports().to_vec();
    if ports != configured {
        eprintln!("dpvsd: warning: dataplane ports {ports:?} differ from config {configured:?}");
    }
    eprintln!(
        "dpvsd: dataplane running: {} worker(s) on cores {:?}, ports {}",
        cfg.dataplane.worker_cores.len(),
        cfg.dataplane.worker_cores,
        ports.join(" ")
    );

    let rt = control_runtime(&cfg.dataplane.worker_cores)?;
    let backend: Arc<dyn Backend> = dp.clone();
    // The ports that got one (a PCI port's default one may have failed).
    let kni_ports: Vec<String> = dp.kni_ports();
    let svc = Arc::new(
        DpvsService::new(store, backend.clone())
            .with_state_file(cfg.state_file.clone())
            .with_kni_ports(kni_ports.clone()),
    );
    if let Some(path) = &cfg.conns_file {
        restore_conns(backend.as_ref(), path);
    }
    for d in &cfg.sync_daemons {
        svc.sync
            .start(d.clone())
            .map_err(|e| format!("sync_daemon: {e}"))?;
    }
    rt.spawn(control::kni::watch(svc.clone(), kni_ports));
    if let Some(port) = &cfg.announce_vips {
        rt.spawn(control::announce::announce_forever(
            svc.clone(),
            port.clone(),
        ));
    }
    rt.spawn(reload_on_sighup(svc.clone(), config.to_path_buf()));
    rt.spawn(svc.clone().estimate_forever());
    rt.spawn(svc.clone().apply_verdicts_forever());
    rt.spawn(svc.clone().passive_forever());
    {
        let _inside = rt.enter();
        svc.start_checks();
    }
    let listen = cfg.listen.clone();
    let group = cfg.socket_group.clone();
    let metrics = cfg.metrics;
    let metrics_backend = backend;
    let sync_counters = Some(svc.sync.counters.clone());
    let watched = dp.clone();
    let served = rt.block_on(async move {
        let bound = match &tls {
            Some(t) => bind_tls(&listen, t).await?,
            None => bind(&listen).await?,
        };
        if let (Some(g), control::config::Listen::Unix(path)) = (&group, &listen) {
            control::server::share_socket(path, g)?;
        }
        let how = if tls.is_some() { " (mutual TLS)" } else { "" };
        eprintln!("dpvsd: listening on {listen}{how}");
        if let Some(addr) = metrics {
            // Served until the runtime is dropped below.
            let l = control::metrics::bind(addr).await?;
            eprintln!("dpvsd: metrics on http://{addr}/metrics");
            tokio::spawn(control::metrics::serve(l, metrics_backend, sync_counters));
        }
        if let Some(w) = std::env::var(INJECT_PANIC_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            watched.inject_worker_panic(w, &format!("injected by {INJECT_PANIC_ENV}"));
        }
        let stop = async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = worker_failure(&watched) => {}
            }
        };
        serve(bound, svc, stop).await
    });
    drop(rt);
    if let Some(why) = dp.failure() {
        // systemd (Restart=on-failure) or the operator starts a fresh dpvsd.
        return Err(format!("{why}; stopping"));
    }
    eprintln!("dpvsd: stopping");
    if let Some(path) = &cfg.conns_file {
        let conns = dp.sync_dump();
        match control::sync::save::save(path, &conns) {
            Ok(n) => eprintln!("dpvsd: saved {n} connections to {}", path.display()),
            Err(e) => eprintln!(
                "dpvsd: cannot save the connections to {}: {e}",
                path.display()
            ),
        }
    }
    match Arc::try_unwrap(dp) {
        Ok(dp) => dp.stop(),
        Err(dp) => drop(dp), // last reference stops it on drop
    }
    served
}

#[cfg(not(feature = "dataplane"))]
fn run(
    _cfg: control::config::Config,
    _tls: Option<control::tls::TlsPem>,
    _config: &Path,
) -> Result<(), String> {
    Err("built without the dataplane feature".into())
}

/// The connections the last dpvsd saved when it stopped (`[control]
/// conns_file`), installed as a backup installs synced ones; the file is
/// removed so that a later start does not install them again.
#[cfg(feature = "dataplane")]
fn restore_conns(backend: &dyn control::backend::Backend, path: &Path) {
    if !path.exists() {
        return;
    }
    match control::sync::save::load(path) {
        Ok(conns) => {
            let n = conns.len();
            backend.sync_install(conns);
            eprintln!("dpvsd: restored {n} connections from {}", path.display());
        }
        Err(e) => eprintln!("dpvsd: connections not restored: {e}"),
    }
    if let Err(e) = std::fs::remove_file(path) {
        eprintln!("dpvsd: cannot remove {}: {e}", path.display());
    }
}

/// A small tokio runtime whose threads never run on a worker core.
#[cfg(feature = "dataplane")]
fn control_runtime(workers: &[u32]) -> Result<tokio::runtime::Runtime, String> {
    let free: Vec<core_affinity::CoreId> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| u32::try_from(c.id).is_ok_and(|id| !workers.contains(&id)))
        .collect();
    if free.is_empty() {
        eprintln!("dpvsd: warning: every core runs a worker; the control runtime is not pinned");
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(1).max_blocking_threads(4).enable_all();
    if !free.is_empty() {
        let next = std::sync::atomic::AtomicUsize::new(0);
        b.on_thread_start(move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            core_affinity::set_for_current(free[i % free.len()]);
        });
    }
    b.build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))
}

/// Test hook: a worker index whose worker panics once dpvsd serves, to prove
/// the failure path (dpvsd exits non-zero naming the worker).
#[cfg(feature = "dataplane")]
const INJECT_PANIC_ENV: &str = "DPVSD_INJECT_WORKER_PANIC";

/// Resolves when a worker failed (the dataplane stopped itself).
#[cfg(feature = "dataplane")]
async fn worker_failure(dp: &dataplane::Dataplane) {
    loop {
        if dp.failure().is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(feature = "dataplane")]
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("dpvsd: signal received, shutting down");
}
