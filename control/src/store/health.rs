//! What the health checks (`crate::health`) and the passive check found,
//! kept on the store: the checks of real servers, who is inhibited, and how
//! a new configuration inherits those findings.

use std::net::IpAddr;

use dataplane::ServiceKey;

use super::{dest_not_found, invalid, not_found, Store, StoreError};
use crate::health::{CheckSpec, DestId};

impl Store {
    /// Sets (or with `None` removes) the health check of a real server.
    pub fn set_check(
        &mut self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
        check: Option<CheckSpec>,
    ) -> Result<(), StoreError> {
        let svc = self.services.get(key).ok_or_else(|| not_found(key))?;
        if !svc.dests.iter().any(|d| d.addr == *addr && d.port == port) {
            return Err(dest_not_found(key, addr, port));
        }
        match check {
            Some(c) => {
                c.validate()
                    .map_err(|m| invalid("check", m.trim_start_matches("check ").to_string()))?;
                self.checks.insert((*key, *addr, port), c);
            }
            None => {
                self.checks.remove(&(*key, *addr, port));
                // Without a check nothing keeps it down.
                self.set_health(key, addr, port, true)?;
            }
        }
        Ok(())
    }

    /// The health check of a real server, if any.
    pub fn check(&self, key: &ServiceKey, addr: &IpAddr, port: u16) -> Option<&CheckSpec> {
        self.checks.get(&(*key, *addr, port))
    }

    /// Every check, with whether its dest is down now.
    pub fn checks(&self) -> Vec<(DestId, CheckSpec, bool)> {
        self.checks
            .iter()
            .map(|(id, c)| {
                let down = self
                    .services
                    .get(&id.0)
                    .and_then(|s| s.dests.iter().find(|d| d.addr == id.1 && d.port == id.2))
                    .is_some_and(|d| d.inhibited);
                (*id, c.clone(), down)
            })
            .collect()
    }

    /// A health check's verdict: a down dest is inhibited (no new
    /// connections; existing ones continue). Returns whether it changed.
    pub fn set_health(
        &mut self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
        up: bool,
    ) -> Result<bool, StoreError> {
        let svc = self.service_mut(key)?;
        let d = svc
            .dests
            .iter_mut()
            .find(|d| d.addr == *addr && d.port == port)
            .ok_or_else(|| dest_not_found(key, addr, port))?;
        let changed = d.inhibited == up;
        d.inhibited = !up;
        // An active check that passes ends a passive inhibition too.
        let passive = up && self.passive_down.remove(&(*key, *addr, port));
        Ok(changed || passive)
    }

    /// After `*self` replaces `old` (SIGHUP, `apply`): real servers that
    /// `old`'s checks had down stay down when `self` checks them the same way
    /// (their checker keeps running and will say when they are back), and
    /// passive inhibitions of real servers still watched carry over.
    pub fn carry_health_from(&mut self, old: &Store) {
        for (key, svc) in self.services.iter_mut() {
            for d in &mut svc.dests {
                let id = (*key, d.addr, d.port);
                let was_down = old
                    .services
                    .get(key)
                    .and_then(|s| {
                        s.dests
                            .iter()
                            .find(|x| x.addr == d.addr && x.port == d.port)
                    })
                    .is_some_and(|x| x.inhibited);
                if was_down
                    && self.checks.contains_key(&id)
                    && self.checks.get(&id) == old.checks.get(&id)
                {
                    d.inhibited = true;
                }
            }
        }
        let watched: Vec<DestId> = old
            .passive_down
            .iter()
            .filter(|id| {
                self.passive.contains(&id.0)
                    && self
                        .service(&id.0)
                        .is_some_and(|s| s.dests.iter().any(|d| d.addr == id.1 && d.port == id.2))
            })
            .copied()
            .collect();
        self.passive_down.extend(watched);
        let lost: Vec<ServiceKey> = old
            .quorum_lost
            .iter()
            .filter(|k| self.quorum.get(k).is_some_and(|&(_, h)| h > 0))
            .copied()
            .collect();
        self.quorum_lost.extend(lost);
    }

    /// Turns the passive health check of a service on or off.
    pub fn set_passive_check(&mut self, key: &ServiceKey, on: bool) -> Result<(), StoreError> {
        if !self.services.contains_key(key) {
            return Err(not_found(key));
        }
        if on {
            self.passive.insert(*key);
        } else {
            self.passive.remove(key);
            self.passive_down.retain(|id| id.0 != *key);
        }
        Ok(())
    }

    /// Whether any service has the passive check on (nothing to sample if not).
    pub fn any_passive_check(&self) -> bool {
        !self.passive.is_empty()
    }

    pub fn passive_check(&self, key: &ServiceKey) -> bool {
        self.passive.contains(key)
    }

    /// The passive check's verdict on a real server; whether it changed.
    pub fn set_passive_down(&mut self, id: DestId, down: bool) -> bool {
        if down {
            self.passive_down.insert(id)
        } else {
            self.passive_down.remove(&id)
        }
    }

    pub fn passive_down(&self, id: &DestId) -> bool {
        self.passive_down.contains(id)
    }
}
