//! keepalived's quorum and sorry server on the store: a service whose real
//! servers' alive weight falls below its quorum (minus the hysteresis) hands
//! its new connections to the sorry server until the weight is back (plus
//! the hysteresis), and runs its `quorum_down` / `quorum_up` commands
//! (`crate::server` runs them; this module only decides).

use std::net::SocketAddr;

use dataplane::{DestSpec, ForwardMode, ServiceKey, ServiceSpec};

use super::{check_dest, invalid, not_found, Store, StoreError};

/// keepalived's `quorum_up` and `quorum_down`: shell commands run when a
/// service regains or loses its quorum (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumScripts {
    pub up: String,
    pub down: String,
}

impl Store {
    /// The weight of the real servers that can take connections now.
    fn alive_weight(&self, s: &ServiceSpec) -> u64 {
        s.dests
            .iter()
            .filter(|d| !d.inhibited && !self.passive_down.contains(&(s.key, d.addr, d.port)))
            .map(|d| u64::from(d.weight))
            .sum()
    }

    /// keepalived's quorum and hysteresis of a service.
    pub fn quorum(&self, key: &ServiceKey) -> (u32, u32) {
        self.quorum.get(key).copied().unwrap_or((1, 0))
    }

    /// Sets a service's quorum (minimum alive weight, at least 1) and
    /// hysteresis (how far the weight must cross it either way).
    pub fn set_quorum(
        &mut self,
        key: &ServiceKey,
        quorum: u32,
        hysteresis: u32,
    ) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        if quorum == 0 {
            return Err(invalid("quorum", "must be at least 1"));
        }
        if hysteresis >= quorum {
            return Err(invalid(
                "hysteresis",
                format!("{hysteresis} must be below the quorum {quorum}"),
            ));
        }
        if (quorum, hysteresis) == (1, 0) {
            self.quorum.remove(key);
        } else {
            self.quorum.insert(*key, (quorum, hysteresis));
        }
        self.update_quorum();
        Ok(())
    }

    /// keepalived's `quorum_up` and `quorum_down` commands of a service.
    pub fn quorum_scripts(&self, key: &ServiceKey) -> QuorumScripts {
        self.quorum_scripts.get(key).cloned().unwrap_or_default()
    }

    /// Sets a service's quorum commands (empty: none).
    pub fn set_quorum_scripts(
        &mut self,
        key: &ServiceKey,
        scripts: QuorumScripts,
    ) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        for (field, c) in [("quorum_up", &scripts.up), ("quorum_down", &scripts.down)] {
            if c.contains(['\n', '\0']) {
                return Err(invalid(field, "one line of shell, without NUL"));
            }
        }
        if scripts == QuorumScripts::default() {
            self.quorum_scripts.remove(key);
        } else {
            self.quorum_scripts.insert(*key, scripts);
        }
        Ok(())
    }

    /// The services whose quorum state differs from `before`'s (`true`:
    /// lost), with their alive weight; services new or gone are not changes.
    pub fn quorum_changes(&self, before: &Store) -> Vec<(ServiceKey, bool, u64)> {
        self.services
            .values()
            .filter(|s| before.services.contains_key(&s.key))
            .filter_map(|s| {
                let lost = self.quorum_lost(&s.key);
                (lost != before.quorum_lost(&s.key)).then(|| (s.key, lost, self.alive_weight(s)))
            })
            .collect()
    }

    /// Whether a service has lost its quorum: the alive weight went below
    /// `quorum - hysteresis`, and has not come back to `quorum + hysteresis`.
    pub fn quorum_lost(&self, key: &ServiceKey) -> bool {
        let (q, h) = self.quorum(key);
        match self.services.get(key) {
            None => false,
            Some(s) if h == 0 => self.alive_weight(s) < u64::from(q),
            Some(_) => self.quorum_lost.contains(key),
        }
    }

    /// Moves each service with a hysteresis across its quorum; returns the
    /// services that lost (`true`) or regained it. Call after every change.
    pub fn update_quorum(&mut self) -> Vec<(ServiceKey, bool)> {
        let mut out = Vec::new();
        for (key, &(q, h)) in &self.quorum {
            let Some(s) = self.services.get(key) else {
                continue;
            };
            let alive = self.alive_weight(s);
            let lost = self.quorum_lost.contains(key);
            if h == 0 {
                continue;
            }
            if !lost && alive < u64::from(q - h) {
                out.push((*key, true));
            } else if lost && alive >= u64::from(q) + u64::from(h) {
                out.push((*key, false));
            }
        }
        for (k, lost) in &out {
            if *lost {
                self.quorum_lost.insert(*k);
            } else {
                self.quorum_lost.remove(k);
            }
        }
        self.quorum_lost
            .retain(|k| self.quorum.get(k).is_some_and(|&(_, h)| h > 0));
        out
    }

    /// The sorry server of `key` as a real server, when it is in use: the
    /// service lost its quorum (by default: no real server with weight > 0
    /// is up). It is forwarded like
    /// the service's first real server (NAT when it has none).
    pub fn sorry_in_use(&self, key: &ServiceKey) -> Option<DestSpec> {
        let at = self.sorry.get(key)?;
        let s = self.services.get(key)?;
        if !self.quorum_lost(key) {
            return None;
        }
        if s.dests
            .iter()
            .any(|d| d.addr == at.ip() && d.port == at.port())
        {
            return None;
        }
        Some(DestSpec {
            addr: at.ip(),
            port: at.port(),
            weight: 1,
            mode: s.dests.first().map_or(ForwardMode::Nat, |d| d.mode),
            u_threshold: 0,
            l_threshold: 0,
            inhibited: false,
        })
    }

    /// The sorry server of `key`, if it has one.
    pub fn sorry(&self, key: &ServiceKey) -> Option<SocketAddr> {
        self.sorry.get(key).copied()
    }

    /// Sets (`None`: removes) the sorry server of a service.
    pub fn set_sorry(
        &mut self,
        key: &ServiceKey,
        at: Option<SocketAddr>,
    ) -> Result<(), StoreError> {
        let s = self.services.get(key).ok_or_else(|| not_found(key))?;
        match at {
            None => {
                self.sorry.remove(key);
            }
            Some(at) => {
                let mode = s.dests.first().map_or(ForwardMode::Nat, |d| d.mode);
                let probe = DestSpec {
                    addr: at.ip(),
                    port: at.port(),
                    weight: 1,
                    mode,
                    u_threshold: 0,
                    l_threshold: 0,
                    inhibited: false,
                };
                check_dest(key, &probe)
                    .map_err(|e| invalid("sorry_server", e.message().to_string()))?;
                self.sorry.insert(*key, at);
            }
        }
        Ok(())
    }
}
