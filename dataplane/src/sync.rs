//! Connection synchronisation, IPVS's sync daemon (docs/ha.md): what a
//! master's workers tell the backups about their connections, and how a
//! backup's worker installs what it is told, so that the backup forwards
//! them after a failover as if it had made them.
//!
//! The wire format (IPVS sync protocol version 1 and this project's
//! extensions) and the sockets belong to the control plane
//! (`control/src/sync.rs`); here are the record both ends share and the
//! two ends inside the workers:
//!
//! - master: a worker queues a [`SyncConn`] when it creates a connection,
//!   when a connection's state moves (ESTABLISHED, FIN_WAIT, ...), and, for
//!   connections that carried traffic here, once per [`REFRESH_MS`] (so a
//!   long-lived connection does not time out on the backup). Connections
//!   installed from records are not sent on until a packet of theirs passes
//!   here (a director running both roles does not echo its peer). The queue is
//!   bounded and never blocks the worker: a full queue loses the record and
//!   counts `sync_queue_full`.
//! - backup: the control plane hands each record to the worker that owns
//!   the connection (the owner function, as for a packet), which creates it
//!   or brings it up to date: same dest, same FULLNAT local address and port
//!   (reserved in its pool), same state, same sequence offsets. A record for
//!   a connection that carries traffic here is ignored (`sync_ignored`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use arrayvec::ArrayVec;
use conntrack::{ConnId, NewConn, TcpState, Tuple};
use crossbeam::queue::ArrayQueue;

use crate::config::ForwardMode;
use crate::core::{mode_from_flags, mode_to_flags, Core};
use crate::events::Event;
use crate::io::Io;
use crate::snapshot::{Service, Snapshot};

/// Records a worker may have queued before the control plane takes them.
pub const QUEUE_LEN: usize = 16_384;

/// A connection that carried traffic is sent again this often.
pub const REFRESH_MS: u64 = 10_000;

/// Connections a worker looks at per step of its refresh scan.
const REFRESH_BUDGET: usize = 256;

/// This implementation's own per-connection state, carried beside IPVS's
/// fields as an extension: the FULLNAT sequence offset and TOA / Proxy
/// Protocol progress (`Conn.user`), the SYN proxy's sequence offset
/// (`Conn.user32`) and the connection's flag bits (mode, SYN proxy state,
/// window scale).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnExt {
    pub user: u64,
    pub user32: u32,
    pub flags: u8,
}

/// One connection as the sync protocol carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol (TCP or UDP).
    pub proto: u8,
    pub mode: ForwardMode,
    /// TCP state (IPVS numbering); `Udp` for UDP.
    pub state: TcpState,
    /// The client's address and port (CIP:cport).
    pub client: (IpAddr, u16),
    /// The service (VIP:vport).
    pub vip: (IpAddr, u16),
    /// The real server (RIP:rport).
    pub dest: (IpAddr, u16),
    /// FULLNAT: the local address and port the real server answers to.
    pub local: Option<(IpAddr, u16)>,
    /// Seconds before it expires on the master.
    pub timeout_s: u32,
    pub ext: ConnExt,
    /// A persistence template (IPVS's `IP_VS_CONN_F_TEMPLATE`): `client` is
    /// the client's masked address (port 0), `dest` where its new
    /// connections go, `timeout_s` what is left of the persistence timeout.
    pub template: bool,
}

impl SyncConn {
    /// The request tuple (CIP:cport -> VIP:vport).
    pub fn original(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.client.0,
            sport: self.client.1,
            dst: self.vip.0,
            dport: self.vip.1,
        }
    }
}

/// Why a backup's worker did not install a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No such service here (the backup's configuration differs).
    NoService,
    /// The service has no such real server here.
    NoDest,
    /// FULLNAT: the local address is not one of this director's.
    NoLocalAddr,
    /// The connection table is full.
    TableFull,
    /// A state that does not fit the protocol.
    BadState,
}

impl Reject {
    pub fn name(self) -> &'static str {
        match self {
            Reject::NoService => "no_service",
            Reject::NoDest => "no_dest",
            Reject::NoLocalAddr => "no_local_addr",
            Reject::TableFull => "table_full",
            Reject::BadState => "bad_state",
        }
    }
}

/// The master's side shared by the workers and the control plane: whether
/// to queue, and one queue per worker (single producer: its worker).
pub struct SyncOut {
    on: AtomicBool,
    queues: Vec<ArrayQueue<SyncConn>>,
}

impl SyncOut {
    pub fn new(nworkers: usize) -> SyncOut {
        SyncOut {
            on: AtomicBool::new(false),
            queues: (0..nworkers.max(1))
                .map(|_| ArrayQueue::new(QUEUE_LEN))
                .collect(),
        }
    }

    /// Start or stop queueing (the master sync daemon runs or not).
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            for q in &self.queues {
                while q.pop().is_some() {}
            }
        }
    }

    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Everything queued, oldest first per worker, at most `max` records.
    pub fn drain(&self, max: usize, out: &mut Vec<SyncConn>) {
        for q in &self.queues {
            while out.len() < max {
                match q.pop() {
                    Some(c) => out.push(c),
                    None => break,
                }
            }
        }
    }

    fn push(&self, worker: usize, c: SyncConn) -> bool {
        self.queues[worker].push(c).is_ok()
    }
}

impl<I: Io> Core<I> {
    /// Master: queue connection `id` for the backups when the sync daemon
    /// runs and `moved` (it is new or its state changed).
    #[inline]
    pub(crate) fn sync_note(&self, snap: &Snapshot, id: ConnId, moved: bool) {
        if moved && self.shared.sync.is_on() {
            self.sync_send(snap, id);
        }
    }

    fn sync_send(&self, snap: &Snapshot, id: ConnId) {
        if let Some(rec) = self.conns.get(id).and_then(|c| self.record(snap, c)) {
            self.sync_push(rec);
        }
    }

    /// What the backups are told about connection `c`.
    fn record(&self, snap: &Snapshot, c: &conntrack::Conn) -> Option<SyncConn> {
        let svc = snap.services_by_id.get(&c.service())?;
        let (o, r) = (c.original(), c.reply());
        let mode = mode_from_flags(c.flags());
        Some(SyncConn {
            proto: o.proto,
            mode,
            state: c.state(),
            client: (o.src, o.sport),
            vip: (svc.key.vip, svc.key.vport),
            dest: (r.src, r.sport),
            local: (mode == ForwardMode::FullNat).then_some((r.dst, r.dport)),
            timeout_s: (c.expires_at_ms().saturating_sub(self.now_ms) / 1000) as u32,
            ext: ConnExt {
                user: c.user,
                user32: c.user32,
                flags: c.flags(),
            },
            template: false,
        })
    }

    /// Every connection and persistence template of this worker, as records
    /// (a restart saves them: docs/ha.md "Restarting without losing
    /// connections").
    pub fn sync_all(&self, snap: &Snapshot) -> Vec<SyncConn> {
        let mut out = Vec::with_capacity(self.conns.len());
        let mut cursor = Some(0u32);
        while let Some(at) = cursor {
            cursor = self.conns.scan(at, 4096, |_, c| {
                out.extend(self.record(snap, c));
            });
        }
        let mut cursor = Some(0u32);
        while let Some(at) = cursor {
            cursor = self.persist.scan(at, 4096, |t| {
                let Some(svc) = snap.services_by_id.get(&t.service()) else {
                    return;
                };
                let Some(i) = svc.meta.iter().position(|m| m.id == t.dest()) else {
                    return;
                };
                let left = t.expires_at_ms().saturating_sub(self.now_ms) / 1000;
                out.push(template_record(svc, t.client(), i, left as u32));
            });
        }
        out
    }

    /// Master: queue the persistence template of `svc`'s client net
    /// `client` (to its real server `idx`), valid `left_s` more seconds.
    pub(crate) fn sync_template(&self, svc: &Service, client: IpAddr, idx: usize, left_s: u32) {
        if !self.shared.sync.is_on() {
            return;
        }
        self.sync_push(template_record(svc, client, idx, left_s));
    }

    fn sync_push(&self, rec: SyncConn) {
        let ev = if self.shared.sync.push(self.index, rec) {
            Event::SyncQueued
        } else {
            Event::SyncQueueFull
        };
        self.shared.events[self.index].bump(ev);
    }

    /// Master, now and then: one step of the refresh scan, which queues
    /// every connection that carried traffic since the last pass began.
    pub(crate) fn sync_refresh(&mut self, snap: &Snapshot) {
        if !self.shared.sync.is_on() {
            self.sync_scan = None;
            return;
        }
        let (since, cursor) = match self.sync_scan {
            Some(s) => s,
            None if self.now_ms >= self.sync_pass_at => {
                let since = self.sync_pass_at.saturating_sub(REFRESH_MS);
                self.sync_pass_at = self.now_ms + REFRESH_MS;
                (since, 0)
            }
            None => return,
        };
        let timeouts = self.conns.timeouts();
        let mut due: ArrayVec<ConnId, REFRESH_BUDGET> = ArrayVec::new();
        let next = self.conns.scan(cursor, REFRESH_BUDGET, |id, c| {
            // What a master told this director is not news for anyone.
            if c.is_synced() {
                return;
            }
            let last_seen = c
                .expires_at_ms()
                .saturating_sub(u64::from(c.timeout_s(&timeouts)) * 1000);
            if last_seen >= since {
                due.push(id);
            }
        });
        for id in due {
            self.sync_send(snap, id);
        }
        self.sync_scan = next.map(|n| (since, n));
    }

    /// Backup: create or update the connection `c` describes. It counts in
    /// its dest's ActiveConn/InActConn as any connection.
    pub fn sync_install(&mut self, snap: &Snapshot, c: &SyncConn) -> Result<(), Reject> {
        if c.template {
            return self.sync_install_template(snap, c);
        }
        if (c.proto == conntrack::PROTO_TCP) == (c.state == TcpState::Udp) {
            return Err(Reject::BadState);
        }
        let original = c.original();
        if let Some((id, _)) = self.conns.lookup(&original) {
            // A record never overrides a connection that carries traffic
            // here: this director is its master now (after a failover, or
            // when two masters echo each other's connections).
            if !self.conns.get(id).is_some_and(|x| x.is_synced()) {
                self.shared.events[self.index].bump(Event::SyncIgnored);
                return Ok(());
            }
            return self.sync_update(snap, id, c);
        }
        let svc = snap
            .service(c.proto, c.vip.0, c.vip.1)
            .ok_or(Reject::NoService)?;
        let idx = svc
            .dests
            .iter()
            .position(|d| d.addr == c.dest.0 && d.port == c.dest.1)
            .ok_or(Reject::NoDest)?;
        let dm = &svc.meta[idx];
        let (reply_dst, reply_dport) = match (dm.mode, c.local) {
            (ForwardMode::FullNat, Some((lip, lport))) => {
                // The master's LIP: one of the service's, or an address of
                // ours (where VRRP moves the LIPs it is not ours until the
                // failover).
                if !svc.laddrs.contains(&lip) && !snap.is_local(lip) {
                    return Err(Reject::NoLocalAddr);
                }
                let port = snap.local.get(&lip).map_or(0, |l| l.port);
                let partitioned = !self.shared.owners.lports_by_rss(port);
                self.lports
                    .reserve(lip, lport, snap.ext.local_port_range, partitioned);
                (lip, lport)
            }
            (ForwardMode::FullNat, None) => return Err(Reject::NoLocalAddr),
            _ => c.client,
        };
        let new = NewConn {
            original,
            reply: Tuple {
                proto: c.proto,
                src: c.dest.0,
                sport: c.dest.1,
                dst: reply_dst,
                dport: reply_dport,
            },
            service: svc.id,
            dest: dm.id,
            flags: mode_to_flags(dm.mode),
            timeout_override_s: svc.conn_timeout_s,
        };
        let Ok(id) = self.conns.insert(new, self.now_ms) else {
            if dm.mode == ForwardMode::FullNat {
                self.lports.release(reply_dst, reply_dport);
            }
            return Err(Reject::TableFull);
        };
        if matches!(dm.mode, ForwardMode::Dr | ForwardMode::Tun) {
            self.conns.set_input_only(id, true);
        }
        self.conns.set_synced(id);
        svc.dests[idx].counters.add(0, 1);
        self.shared.events[self.index].bump(Event::SyncInstalled);
        self.sync_update(snap, id, c)
    }

    /// Backup: the persistence template `c` describes, for what is left of
    /// its timeout.
    fn sync_install_template(&mut self, snap: &Snapshot, c: &SyncConn) -> Result<(), Reject> {
        let svc = snap
            .service(c.proto, c.vip.0, c.vip.1)
            .ok_or(Reject::NoService)?;
        if svc.persistence.is_none() {
            return Err(Reject::NoService);
        }
        let idx = svc
            .dests
            .iter()
            .position(|d| d.addr == c.dest.0 && d.port == c.dest.1)
            .ok_or(Reject::NoDest)?;
        self.persist
            .insert_or_refresh(
                svc.id,
                c.client.0,
                svc.meta[idx].id,
                c.timeout_s.max(1),
                self.now_ms,
            )
            .map_err(|_| Reject::TableFull)?;
        self.shared.events[self.index].bump(Event::SyncInstalled);
        Ok(())
    }

    /// The state, timer and per-connection state of `c` onto `id`.
    fn sync_update(&mut self, snap: &Snapshot, id: ConnId, c: &SyncConn) -> Result<(), Reject> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Err(Reject::TableFull);
        };
        let dest = conn.dest();
        conn.user = c.ext.user;
        conn.user32 = c.ext.user32;
        // The mode bits are this director's; the SYN proxy's and the
        // window scale's come from the master.
        let flags = (conn.flags() & 0x03) | (c.ext.flags & !0x03);
        self.conns.set_flags(id, flags);
        if let Some(tr) = self.conns.force_state(id, c.state, self.now_ms) {
            self.account_transition(snap, dest, tr);
        }
        self.shared.events[self.index].bump(Event::SyncUpdated);
        Ok(())
    }
}

/// The record of `svc`'s persistence template for client net `client` to
/// its real server `idx`, valid `left_s` more seconds.
fn template_record(svc: &Service, client: IpAddr, idx: usize, left_s: u32) -> SyncConn {
    let d = &svc.dests[idx];
    SyncConn {
        proto: svc.key.proto.number(),
        mode: svc.meta[idx].mode,
        state: TcpState::None,
        client: (client, 0),
        vip: (svc.key.vip, svc.key.vport),
        dest: (d.addr, d.port),
        local: None,
        timeout_s: left_s,
        ext: ConnExt::default(),
        template: true,
    }
}

/// The worker a backup hands record `c` to: the owner of its request, as
/// for a packet of it arriving on `port`.
pub fn owner_of(snap: &Snapshot, owners: &crate::owner::Owners, c: &SyncConn) -> usize {
    let port = snap.routes.lookup(c.client.0).map_or(0, |h| h.port);
    owners.of_tuple(snap, port, &c.original())
}
