//! The keeper of the real servers, dpvsd's side of keepalived's checker
//! process: starts the health checks, applies their verdicts, runs the
//! passive check, and announces a service's quorum changes (log, quorum
//! commands). The checks themselves are `crate::health`; what they found is
//! kept on the store (`crate::store`'s `health` and `quorum`).

use std::sync::Arc;

use super::{store_status, DpvsService};
use crate::store::Store;

impl DpvsService {
    /// Starts the health checks the configuration has (call from the tokio
    /// runtime; later changes start and stop them as they come).
    pub fn start_checks(&self) {
        self.checkers.reconcile(&self.lock().checks());
    }

    /// The passive health check (docs/health.md): every second, the
    /// dataplane's SYN counters of the real servers of services that have it
    /// on; a real server that leaves new connections unanswered is inhibited
    /// for a while, and tried again after.
    pub async fn passive_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut judge = crate::health::Passive::default();
        loop {
            tick.tick().await;
            if !self.lock().any_passive_check() {
                continue;
            }
            let Ok(stats) = self.blocking(|b| b.stats()).await else {
                continue;
            };
            let store = self.store();
            let mut seen = Vec::new();
            for s in stats
                .services
                .iter()
                .filter(|s| store.passive_check(&s.key))
            {
                let Some(spec) = store.service(&s.key) else {
                    continue;
                };
                for d in &s.dests {
                    // Configured real servers only (not the sorry server).
                    if !spec
                        .dests
                        .iter()
                        .any(|x| x.addr == d.addr && x.port == d.port)
                    {
                        continue;
                    }
                    let id = (s.key, d.addr, d.port);
                    seen.push((
                        id,
                        (d.syn_unanswered, d.syn_answered),
                        store.passive_down(&id),
                    ));
                }
            }
            for (id, down, why) in judge.sample(&seen, std::time::Instant::now()) {
                let changed = self.mutate(|s| Ok(s.set_passive_down(id, down)));
                if let Ok(true) = changed {
                    eprintln!(
                        "dpvsd: passive check: {} real server {} is {} ({why})",
                        crate::store::service_name(&id.0),
                        crate::addr::fmt_addr_port(&id.1, id.2),
                        if down { "DOWN" } else { "UP" },
                    );
                }
            }
        }
    }

    /// Applies the health checks' verdicts as they come: the dest is
    /// inhibited while down, restored when up, and each change is logged.
    pub async fn apply_verdicts_forever(self: Arc<Self>) {
        let Some(mut rx) = self.checkers.take_verdicts() else {
            return;
        };
        while let Some(v) = rx.recv().await {
            let (key, addr, port) = v.dest;
            let r = self.mutate(|s| s.set_health(&key, &addr, port, v.up).map_err(store_status));
            if let Ok(true) = r {
                eprintln!(
                    "dpvsd: health: {} real server {} is {} ({})",
                    crate::store::service_name(&key),
                    crate::addr::fmt_addr_port(&addr, port),
                    if v.up { "UP" } else { "DOWN" },
                    v.why
                );
            }
        }
    }
}

/// A service lost (`up` false) or regained its quorum: logged, and its
/// `quorum_up` / `quorum_down` command started.
pub(super) fn notify_quorum(store: &Store, key: &dataplane::ServiceKey, up: bool, alive: u64) {
    let (q, h) = store.quorum(key);
    let name = crate::store::service_name(key);
    eprintln!(
        "dpvsd: {name}: quorum {} (alive weight {alive}, quorum {q}, hysteresis {h})",
        if up { "regained" } else { "lost" },
    );
    let scripts = store.quorum_scripts(key);
    let command = if up { &scripts.up } else { &scripts.down };
    if command.is_empty() {
        return;
    }
    if let Err(e) = crate::health::run_quorum_script(command, &name, up, alive) {
        eprintln!(
            "dpvsd: {name}: cannot run quorum_{} {command:?}: {e}",
            if up { "up" } else { "down" }
        );
    }
}
