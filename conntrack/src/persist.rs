//! Persistence templates (`ipvsadm -p [timeout] -M netmask`): (service, masked
//! client address) -> dest, so one client keeps reaching the same real server.
//!
//! Same machinery as the conn table, smaller: a preallocated slab of [`Template`]s,
//! one cuckoo index entry each, and the timer wheel. Each new conn scheduled through a
//! template refreshes its timeout (`insert_or_refresh`). Unlike the kernel, a
//! template does not also wait for the conns it controls to end: it lives for its
//! timeout after the last conn that used it started. Service ids distinguish TCP from
//! UDP services. No clocks, no allocation after `new`.

use core::fmt;
use core::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use crate::index::Index;
use crate::table::TableFull;
use crate::timer::{Link, TimerNode, Wheel, NIL};
use crate::tuple::{pack_addr, random_state, unpack_addr};

/// One template: 48 bytes.
#[derive(Clone)]
pub struct Template {
    addr: [u8; 16],
    expires_at_ms: u64,
    link: Link,
    service: u32,
    dest: u32,
    v6: bool,
    live: bool,
}

impl Template {
    const FREE: Template = Template {
        addr: [0; 16],
        expires_at_ms: 0,
        link: Link::UNLINKED,
        service: 0,
        dest: 0,
        v6: false,
        live: false,
    };

    pub fn service(&self) -> u32 {
        self.service
    }
    /// The masked client address the template is keyed by.
    pub fn client(&self) -> IpAddr {
        unpack_addr(&self.addr, self.v6)
    }
    pub fn dest(&self) -> u32 {
        self.dest
    }
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("service", &self.service)
            .field("client", &self.client())
            .field("dest", &self.dest)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl TimerNode for Template {
    fn link(&self) -> Link {
        self.link
    }
    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
    fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

/// Per-worker persistence templates. See the module docs.
pub struct PersistTable {
    slab: Box<[Template]>,
    free_head: u32,
    len: u32,
    index: Index,
    wheel: Wheel,
    hasher: ahash::RandomState,
}

impl PersistTable {
    pub fn new(capacity: u32, hash_seed: u64) -> PersistTable {
        PersistTable::new_advised(capacity, hash_seed, &crate::mem::no_advice)
    }

    /// [`PersistTable::new`], with `advise` called on the slab and the index
    /// before they are first written (huge pages, see `mem`).
    pub fn new_advised(capacity: u32, hash_seed: u64, advise: crate::mem::Advise) -> PersistTable {
        let cap = capacity.min(crate::table::MAX_CAPACITY);
        let mut slab = crate::mem::filled(cap as usize, Template::FREE, advise);
        for (i, t) in slab.iter_mut().enumerate() {
            t.link.next = if i + 1 < cap as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        PersistTable {
            slab,
            free_head: if cap > 0 { 0 } else { NIL },
            len: 0,
            index: Index::new(cap as usize, hash_seed.rotate_left(7), advise),
            wheel: Wheel::new(),
            hasher: random_state(hash_seed ^ 0x7065_7273_6973_7421),
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    fn hash(&self, service: u32, addr: &[u8; 16], v6: bool) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u128(u128::from_ne_bytes(*addr));
        h.write_u64((u64::from(service) << 8) | u64::from(v6));
        h.finish()
    }

    fn find(&self, service: u32, client_masked: IpAddr) -> Option<(u32, u64)> {
        let (addr, v6) = pack_addr(client_masked);
        let h = self.hash(service, &addr, v6);
        let slab = &self.slab;
        self.index
            .find(h, |v| {
                let t = &slab[(v >> 1) as usize];
                t.service == service && t.v6 == v6 && t.addr == addr
            })
            .map(|v| (v >> 1, h))
    }

    /// The dest this client was sent to, unless the template has expired by `now_ms`
    /// (an expired template is dropped here rather than waiting for `expire`).
    pub fn lookup(&mut self, service: u32, client_masked: IpAddr, now_ms: u64) -> Option<u32> {
        let (i, _) = self.find(service, client_masked)?;
        let t = &self.slab[i as usize];
        if t.expires_at_ms <= now_ms {
            self.free(i);
            return None;
        }
        Some(t.dest)
    }

    /// The dest and expiry of a live template, without touching it.
    pub fn get(&self, service: u32, client_masked: IpAddr, now_ms: u64) -> Option<(u32, u64)> {
        let (i, _) = self.find(service, client_masked)?;
        let t = &self.slab[i as usize];
        (t.expires_at_ms > now_ms).then_some((t.dest, t.expires_at_ms))
    }

    /// Record (or refresh) that `client_masked` goes to `dest` for `service` for
    /// `timeout_s` from `now_ms`. Refreshing an existing template also moves it to
    /// `dest`.
    pub fn insert_or_refresh(
        &mut self,
        service: u32,
        client_masked: IpAddr,
        dest: u32,
        timeout_s: u32,
        now_ms: u64,
    ) -> Result<(), TableFull> {
        let exp = now_ms.saturating_add(u64::from(timeout_s) * 1000);
        if let Some((i, _)) = self.find(service, client_masked) {
            let t = &mut self.slab[i as usize];
            let old = t.expires_at_ms;
            t.expires_at_ms = exp;
            t.dest = dest;
            self.wheel.rearm(&mut self.slab, i, old);
            return Ok(());
        }
        let i = self.free_head;
        if i == NIL {
            return Err(TableFull);
        }
        let (addr, v6) = pack_addr(client_masked);
        let h = self.hash(service, &addr, v6);
        if !self.index.insert(h, i << 1) {
            return Err(TableFull);
        }
        let t = &mut self.slab[i as usize];
        self.free_head = t.link.next;
        *t = Template {
            addr,
            expires_at_ms: exp,
            link: Link::UNLINKED,
            service,
            dest,
            v6,
            live: true,
        };
        self.wheel.arm(&mut self.slab, i);
        self.len += 1;
        Ok(())
    }

    /// Drop a template now; true if there was one.
    pub fn remove(&mut self, service: u32, client_masked: IpAddr) -> bool {
        match self.find(service, client_masked) {
            Some((i, _)) => {
                self.free(i);
                true
            }
            None => false,
        }
    }

    fn free(&mut self, i: u32) {
        self.wheel.cancel(&mut self.slab, i);
        let t = &self.slab[i as usize];
        let h = self.hash(t.service, &t.addr, t.v6);
        self.index.remove(h, i << 1);
        let t = &mut self.slab[i as usize];
        *t = Template::FREE;
        t.link.next = self.free_head;
        self.free_head = i;
        self.len -= 1;
    }

    /// Drop templates whose timeout passed by `now_ms`, at most `budget` (examining
    /// at most `8 * budget` timer entries). Returns the number dropped.
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut work = budget.saturating_mul(8);
        let mut n = 0;
        while n < budget {
            let Some(i) = self.wheel.next_expired(&mut self.slab, now_ms, &mut work) else {
                break;
            };
            self.free(i);
            n += 1;
        }
        n
    }

    /// Incremental listing (`ipvsadm -Lnc --persistent-conn`): as
    /// [`crate::ConnTable::scan`].
    pub fn scan(&self, cursor: u32, max: usize, mut f: impl FnMut(&Template)) -> Option<u32> {
        let max = max.max(1);
        let limit = max.saturating_mul(16);
        let (mut i, end) = (cursor as usize, self.slab.len());
        let (mut visited, mut examined) = (0, 0);
        while i < end && visited < max && examined < limit {
            let t = &self.slab[i];
            if t.live {
                f(t);
                visited += 1;
            }
            examined += 1;
            i += 1;
        }
        (i < end).then_some(i as u32)
    }
}

impl fmt::Debug for PersistTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistTable")
            .field("len", &self.len)
            .field("capacity", &self.slab.len())
            .finish()
    }
}
